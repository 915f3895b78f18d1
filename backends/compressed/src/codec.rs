//! The codecs, with contexts kept per thread: lz4 (lz4_flex's block format,
//! its hash table reused) and zstd (bulk API, frame header trimmed, one
//! context per level and dictionary identity; an object stored in two
//! pieces is decoded by streaming them in turn).

use std::fmt;

use pagebackup_core::{PAGE_SIZE, Page};

#[cfg(feature = "zstd")]
use crate::Dictionary;

/// A compression algorithm and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// LZ4 (lz4_flex, safe Rust): the fastest, zram's usual choice.
    #[cfg(feature = "lz4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lz4")))]
    Lz4,
    /// Zstandard at `level` (negative levels are faster, up to 22 smaller).
    #[cfg(feature = "zstd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zstd")))]
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => f.write_str("lz4"),
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level } => write!(f, "zstd-{level}"),
        }
    }
}

/// Bytes of the per-thread buffer pages are compressed into: room for
/// lz4's worst case (`lz4_flex::block::get_maximum_output_size(4096)`).
pub(crate) const SCRATCH_LEN: usize = 2 * PAGE_SIZE;

/// An algorithm with its dictionary: what encodes and decodes one backend's pages.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    algorithm: Algorithm,
    #[cfg(feature = "zstd")]
    dictionary: Option<Dictionary>,
}

impl Codec {
    #[cfg(feature = "zstd")]
    pub(crate) fn new(algorithm: Algorithm, dictionary: Option<Dictionary>) -> Self {
        Codec { algorithm, dictionary }
    }

    #[cfg(not(feature = "zstd"))]
    pub(crate) fn new(algorithm: Algorithm) -> Self {
        Codec { algorithm }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Compresses `page` into `out`; `None` if the result is longer than
    /// `max_len` (the page is then stored raw) or the codec fails.
    pub(crate) fn compress(&self, page: &Page, out: &mut [u8; SCRATCH_LEN], max_len: usize) -> Option<usize> {
        let len = match self.algorithm {
            // lz4_flex wants room for its worst case, and stops only at the end.
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => lz4::compress(page, out),
            // zstd gives up as soon as `max_len` is exceeded.
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level } => {
                zstd_codec::compress(level, self.dictionary.as_ref(), page, &mut out[..max_len])
            }
        }?;
        (len <= max_len).then_some(len)
    }

    /// Decompresses `src`, stored in one piece or in two (`src.1` empty
    /// when in one), into `dst`, which it must fill exactly. zstd reads two
    /// pieces as they are; lz4 needs them joined, in `scratch`.
    pub(crate) fn decompress(
        &self,
        src: (&[u8], &[u8]),
        dst: &mut Page,
        scratch: &mut [u8; SCRATCH_LEN],
    ) -> Result<(), DecodeError> {
        let len = match self.algorithm {
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => {
                if src.1.is_empty() {
                    lz4::decompress(src.0, dst)
                } else {
                    let (a, b) = src;
                    let joined = scratch
                        .get_mut(..a.len() + b.len())
                        .ok_or(DecodeError::TooLong(a.len() + b.len()))?;
                    joined[..a.len()].copy_from_slice(a);
                    joined[a.len()..].copy_from_slice(b);
                    lz4::decompress(joined, dst)
                }
            }
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { .. } => {
                let _ = &scratch;
                zstd_codec::decompress(self.dictionary.as_ref(), src, dst)
            }
        }?;
        if len != PAGE_SIZE {
            return Err(DecodeError::Length(len));
        }
        Ok(())
    }
}

/// Why a stored object did not decode to a page: the codec's own error,
/// kept as the source, or a length that is not a page's.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// lz4 refused the object.
    #[cfg(feature = "lz4")]
    Lz4(lz4_flex::block::DecompressError),
    /// zstd refused the object (its error name as an `io::Error`).
    #[cfg(feature = "zstd")]
    Zstd(std::io::Error),
    /// The object is longer than any compressed page.
    TooLong(usize),
    /// The object decoded to this many bytes, not to a page; for zstd, a
    /// frame that ends early, or decodes to more than a page.
    Length(usize),
    /// A zstd frame that would decode to more than a page.
    #[cfg(feature = "zstd")]
    Overlong,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "lz4")]
            DecodeError::Lz4(_) => f.write_str("lz4 cannot decode the object"),
            #[cfg(feature = "zstd")]
            DecodeError::Zstd(_) => f.write_str("zstd cannot decode the object"),
            DecodeError::TooLong(len) => write!(f, "an object of {len} bytes is longer than any compressed page"),
            DecodeError::Length(len) => write!(f, "the object decoded to {len} bytes instead of a page"),
            #[cfg(feature = "zstd")]
            DecodeError::Overlong => f.write_str("the zstd frame decodes to more than a page"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "lz4")]
            DecodeError::Lz4(e) => Some(e),
            #[cfg(feature = "zstd")]
            DecodeError::Zstd(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "lz4")]
mod lz4 {
    use std::cell::RefCell;

    use lz4_flex::block::{CompressTable, compress_into_with_table, decompress_into};
    use pagebackup_core::Page;

    thread_local! {
        static TABLE: RefCell<CompressTable> = RefCell::new(CompressTable::small());
    }

    pub(super) fn compress(page: &Page, out: &mut [u8]) -> Option<usize> {
        TABLE.with(|t| compress_into_with_table(page.as_bytes(), out, &mut t.borrow_mut()).ok())
    }

    pub(super) fn decompress(src: &[u8], dst: &mut Page) -> Result<usize, super::DecodeError> {
        decompress_into(src, dst.as_bytes_mut()).map_err(super::DecodeError::Lz4)
    }
}

#[cfg(feature = "zstd")]
mod zstd_codec {
    use std::cell::RefCell;
    use std::io;

    use pagebackup_core::Page;
    use zstd::bulk::Compressor;
    use zstd::zstd_safe::{CParameter, DCtx, InBuffer, OutBuffer, ResetDirective};

    use super::DecodeError;
    use crate::Dictionary;

    /// Contexts kept per thread; a few, for the few level and dictionary
    /// combinations one program uses.
    const KEPT: usize = 8;

    #[derive(Default)]
    struct Contexts {
        compressors: Vec<((i32, u64), Compressor<'static>)>,
        decompressors: Vec<(u64, DCtx<'static>)>,
    }

    thread_local! {
        static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
    }

    fn keep<K: PartialEq, V>(
        list: &mut Vec<(K, V)>,
        key: K,
        make: impl FnOnce() -> io::Result<V>,
    ) -> io::Result<&mut V> {
        let pos = match list.iter().position(|(k, _)| *k == key) {
            Some(pos) => pos,
            None => {
                if list.len() == KEPT {
                    list.remove(0);
                }
                list.push((key, make()?));
                list.len() - 1
            }
        };
        Ok(&mut list[pos].1)
    }

    fn compressor(level: i32, dict: Option<&Dictionary>) -> io::Result<Compressor<'static>> {
        let mut c = match dict {
            Some(d) => Compressor::with_dictionary(level, d.bytes())?,
            None => Compressor::new(level)?,
        };
        // The backend knows every page's size and dictionary: leave them,
        // and the frame checksum, out of the frame header.
        c.set_parameter(CParameter::ContentSizeFlag(false))?;
        c.set_parameter(CParameter::ChecksumFlag(false))?;
        c.set_parameter(CParameter::DictIdFlag(false))?;
        Ok(c)
    }

    pub(super) fn compress(level: i32, dict: Option<&Dictionary>, page: &Page, out: &mut [u8]) -> Option<usize> {
        CONTEXTS.with(|ctx| {
            let mut ctx = ctx.borrow_mut();
            let key = (level, dict.map_or(0, Dictionary::id));
            let c = keep(&mut ctx.compressors, key, || compressor(level, dict)).ok()?;
            c.compress_to_buffer(page.as_bytes().as_slice(), out).ok()
        })
    }

    fn decompressor(dict: Option<&Dictionary>) -> io::Result<DCtx<'static>> {
        let mut d = DCtx::try_create().ok_or_else(|| io::Error::other("zstd cannot make a context"))?;
        if let Some(dict) = dict {
            d.load_dictionary(dict.bytes()).map_err(zstd_error)?;
        }
        Ok(d)
    }

    fn zstd_error(code: usize) -> io::Error {
        io::Error::other(zstd::zstd_safe::get_error_name(code))
    }

    /// Decodes a frame stored in one piece (`src.1` empty) or two.
    pub(super) fn decompress(
        dict: Option<&Dictionary>,
        src: (&[u8], &[u8]),
        dst: &mut Page,
    ) -> Result<usize, DecodeError> {
        CONTEXTS.with(|ctx| {
            let mut ctx = ctx.borrow_mut();
            let d = keep(&mut ctx.decompressors, dict.map_or(0, Dictionary::id), || {
                decompressor(dict)
            })
            .map_err(DecodeError::Zstd)?;
            let out = dst.as_bytes_mut().as_mut_slice();
            if src.1.is_empty() {
                return d.decompress(out, src.0).map_err(|e| DecodeError::Zstd(zstd_error(e)));
            }
            // Read the two pieces in turn, with no copy to join them.
            d.reset(ResetDirective::SessionOnly)
                .map_err(|e| DecodeError::Zstd(zstd_error(e)))?;
            let mut output = OutBuffer::around(out);
            let mut left = usize::MAX;
            // The empty piece last lets zstd flush what it holds.
            for piece in [src.0, src.1, &[]] {
                let mut input = InBuffer::around(piece);
                while left != 0 {
                    let before = (input.pos(), output.pos());
                    left = d
                        .decompress_stream(&mut output, &mut input)
                        .map_err(|e| DecodeError::Zstd(zstd_error(e)))?;
                    if (input.pos(), output.pos()) == before {
                        if input.pos() < piece.len() {
                            return Err(DecodeError::Overlong);
                        }
                        break;
                    }
                }
            }
            if left != 0 {
                return Err(DecodeError::Length(output.pos()));
            }
            Ok(output.pos())
        })
    }
}
