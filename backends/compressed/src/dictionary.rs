//! [`Dictionary`]: a zstd dictionary, trained on sample pages or loaded from
//! a file, with an identity no other dictionary shares.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup_core::{BackupError, ErrorKind, Operation, Origin, PAGE_SIZE, Page};
use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::CParameter;

use crate::NAME;

/// The largest dictionary accepted, from a file or from bytes: 4 MiB, far
/// more than zstd makes use of for 4 KiB pages (its trainer's default is
/// 110 KiB).
pub const MAX_DICTIONARY_BYTES: usize = 4 << 20;

/// A zstd dictionary. Cloning shares the bytes and the identity.
///
/// Each dictionary made by [`from_bytes`](Self::from_bytes), [`load`](Self::load)
/// or [`train_dictionary`] gets an identity of its own, unique in the
/// process, whatever its bytes: codec contexts are cached per identity,
/// so a page is always decoded with the very dictionary it was encoded
/// with, even when two dictionaries share a length and a checksum.
/// Equality compares the bytes.
#[derive(Clone)]
pub struct Dictionary {
    bytes: Arc<[u8]>,
    id: u64,
}

impl Dictionary {
    /// A dictionary from its bytes (as `zstd --train` or
    /// [`train_dictionary`] makes them). Refused (`Config`) if empty,
    /// larger than [`MAX_DICTIONARY_BYTES`], or if zstd rejects it or
    /// cannot round-trip a page with it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.is_empty() {
            return Err(invalid("the dictionary is empty".into()));
        }
        if bytes.len() > MAX_DICTIONARY_BYTES {
            return Err(invalid(format!(
                "the dictionary is {} bytes, more than the {MAX_DICTIONARY_BYTES} accepted",
                bytes.len()
            )));
        }
        probe(bytes)?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Dictionary {
            bytes: bytes.into(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Loads a dictionary file: a regular file of at most
    /// [`MAX_DICTIONARY_BYTES`]. FIFOs, devices and directories are refused
    /// without being read (a FIFO is opened without waiting for a writer).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BackupError> {
        let path = path.as_ref();
        let cannot = |what: &str| invalid(format!("cannot read dictionary {}: {what}", path.display()));
        let io = |source: std::io::Error| BackupError::Caused {
            origin: Origin::new(NAME, Operation::Open),
            kind: ErrorKind::Io,
            detail: format!("cannot read dictionary {}", path.display()),
            source: Box::new(source),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(io)?;
        let kind = file.metadata().map_err(io)?.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else if kind.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(cannot(&format!("{what}; a dictionary must be a regular file")));
        }
        let mut bytes = Vec::new();
        file.take(MAX_DICTIONARY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() > MAX_DICTIONARY_BYTES {
            return Err(cannot(&format!("more than the {MAX_DICTIONARY_BYTES} bytes accepted")));
        }
        Self::from_bytes(&bytes).map_err(|e| match e {
            BackupError::Config { detail, .. } => invalid(format!("dictionary {}: {detail}", path.display())),
            other => other,
        })
    }

    /// The dictionary's bytes, to save with `std::fs::write`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The dictionary's identity, unique in the process: codec contexts are
    /// cached per identity.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Checks that the dictionary helps on `samples`: with it, zstd at
    /// `level` must compress them to fewer bytes than without it.
    /// Returns (bytes with, bytes without); `Config` saying both if
    /// the dictionary does not help or zstd fails with it.
    pub fn check_on(&self, level: i32, samples: &[&Page]) -> Result<(u64, u64), BackupError> {
        let zstd = |e: std::io::Error| invalid(format!("zstd refuses the dictionary: {e}"));
        let mut with = Compressor::with_dictionary(level, &self.bytes).map_err(zstd)?;
        let mut without = Compressor::new(level).map_err(zstd)?;
        // Frames as the backend makes them: no size, checksum or dictionary id.
        for c in [&mut with, &mut without] {
            c.set_parameter(CParameter::ContentSizeFlag(false)).map_err(zstd)?;
            c.set_parameter(CParameter::ChecksumFlag(false)).map_err(zstd)?;
            c.set_parameter(CParameter::DictIdFlag(false)).map_err(zstd)?;
        }
        let mut out = vec![0; zstd::zstd_safe::compress_bound(PAGE_SIZE)];
        let (mut a, mut b) = (0, 0);
        for page in samples {
            a += with
                .compress_to_buffer(page.as_bytes().as_slice(), &mut out)
                .map_err(zstd)? as u64;
            b += without
                .compress_to_buffer(page.as_bytes().as_slice(), &mut out)
                .map_err(zstd)? as u64;
        }
        if a >= b && !samples.is_empty() {
            return Err(invalid(format!(
                "the dictionary does not help: {} sample pages take {a} bytes with it and {b} without",
                samples.len()
            )));
        }
        Ok((a, b))
    }
}

/// zstd must take `bytes` as a dictionary for both directions and decode a
/// page it encoded with it: a page of the dictionary's own last bytes
/// (the content zstd matches against).
fn probe(bytes: &[u8]) -> Result<(), BackupError> {
    let refused = |e: std::io::Error| invalid(format!("zstd refuses the dictionary: {e}"));
    let mut page = Page::new_boxed();
    let tail = &bytes[bytes.len().saturating_sub(PAGE_SIZE)..];
    for (dst, src) in page.as_bytes_mut().iter_mut().zip(tail.iter().cycle()) {
        *dst = *src;
    }
    let mut compressor = Compressor::with_dictionary(1, bytes).map_err(refused)?;
    let mut decompressor = Decompressor::with_dictionary(bytes).map_err(refused)?;
    let frame = compressor.compress(page.as_bytes().as_slice()).map_err(refused)?;
    let mut back = Page::new_boxed();
    let len = decompressor
        .decompress_to_buffer(&frame, back.as_bytes_mut().as_mut_slice())
        .map_err(refused)?;
    if len != PAGE_SIZE || back != page {
        return Err(invalid("zstd does not round-trip a page with the dictionary".into()));
    }
    Ok(())
}

impl PartialEq for Dictionary {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes) || self.bytes == other.bytes
    }
}

impl Eq for Dictionary {}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dictionary {{ id: {}, len: {} }}", self.id, self.bytes.len())
    }
}

/// Trains a zstd dictionary of at most `max_size` bytes on `samples`, pages
/// like those the backend will store (a few hundred make a useful one).
/// Refused if the trained dictionary does not make the samples smaller at
/// zstd's level 1 ([`Dictionary::check_on`]).
pub fn train_dictionary(samples: &[&Page], max_size: usize) -> Result<Dictionary, BackupError> {
    let slices: Vec<&[u8]> = samples.iter().map(|p| p.as_bytes().as_slice()).collect();
    let bytes = zstd::dict::from_samples(&slices, max_size).map_err(|e| {
        invalid(format!(
            "training a {max_size}-byte dictionary on {} pages failed: {e}",
            samples.len()
        ))
    })?;
    let dictionary = Dictionary::from_bytes(&bytes)?;
    dictionary.check_on(1, samples)?;
    Ok(dictionary)
}

fn invalid(detail: String) -> BackupError {
    BackupError::Config {
        origin: Origin::new(NAME, Operation::Open),
        detail,
    }
}
