//! [`Dictionary`]: a zstd dictionary, trained on sample pages or loaded from
//! a file, with the identity that keeps pages from being decoded with the
//! wrong one.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use pagebackup_core::{BackupError, Operation, Origin, Page};

use crate::NAME;

/// A zstd dictionary. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Dictionary {
    bytes: Arc<[u8]>,
    id: u64,
}

impl Dictionary {
    /// A dictionary from its bytes (as `zstd --train` or
    /// [`train_dictionary`] makes them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.is_empty() {
            return Err(invalid("the dictionary is empty".into()));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(bytes);
        let id = u64::from(crc.finalize()) << 32 | (bytes.len() as u64 & 0xffff_ffff);
        Ok(Dictionary {
            bytes: bytes.into(),
            id,
        })
    }

    /// Loads a dictionary file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BackupError> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| invalid(format!("cannot read dictionary {}: {e}", path.display())))?;
        Self::from_bytes(&bytes)
    }

    /// The dictionary's bytes, to save with `std::fs::write`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The dictionary's identity: its CRC-32 and length. Codec contexts are
    /// cached per identity, so a page is always decoded with the dictionary
    /// it was encoded with.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dictionary {{ id: {:#018x}, len: {} }}", self.id, self.bytes.len())
    }
}

/// Trains a zstd dictionary of at most `max_size` bytes on `samples`, pages
/// like those the backend will store (a few hundred make a useful one).
pub fn train_dictionary(samples: &[&Page], max_size: usize) -> Result<Dictionary, BackupError> {
    let samples: Vec<&[u8]> = samples.iter().map(|p| p.as_bytes().as_slice()).collect();
    let bytes = zstd::dict::from_samples(&samples, max_size).map_err(|e| {
        invalid(format!(
            "training a {max_size}-byte dictionary on {} pages failed: {e}",
            samples.len()
        ))
    })?;
    Dictionary::from_bytes(&bytes)
}

fn invalid(detail: String) -> BackupError {
    BackupError::InvalidInput {
        origin: Origin::new(NAME, Operation::Open),
        detail,
    }
}
