//! [`CompressedConfig`]: how a compressed backend is set up.

use crate::Algorithm;
#[cfg(feature = "zstd")]
use crate::Dictionary;
use crate::arena::MAX_COMPRESSED;

/// Settings of a [`CompressedBackend`](crate::CompressedBackend).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompressedConfig {
    /// The codec.
    pub algorithm: Algorithm,
    /// Most bytes of memory the backend may use, metadata included; `None`
    /// for no limit.
    pub limit: Option<u64>,
    /// A zstd dictionary (zstd only).
    #[cfg(feature = "zstd")]
    pub dictionary: Option<Dictionary>,
    /// Keep a CRC-32 of every stored object and check it on restore, so that
    /// corrupted memory gives `Corrupt` instead of a wrong page. Off by
    /// default. Measured cost: 4 bytes per stored object, about 5% of lz4's
    /// restore throughput and 2% of zstd's; backups are not measurably slower.
    pub checksum: bool,
    /// Pages whose compressed form is larger than this many bytes are stored
    /// raw (zram's huge pages). Default and most: 3072, three quarters of a page.
    pub huge_threshold: usize,
}

impl CompressedConfig {
    /// `algorithm` with no limit, no dictionary, no checksum and the default threshold.
    pub fn new(algorithm: Algorithm) -> Self {
        CompressedConfig {
            algorithm,
            limit: None,
            #[cfg(feature = "zstd")]
            dictionary: None,
            checksum: false,
            huge_threshold: MAX_COMPRESSED,
        }
    }

    /// With a memory limit of `bytes`.
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// With a zstd dictionary.
    #[cfg(feature = "zstd")]
    pub fn with_dictionary(mut self, dictionary: Dictionary) -> Self {
        self.dictionary = Some(dictionary);
        self
    }

    /// With per-object checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// With another huge-page threshold (64 to 3072 bytes).
    pub fn with_huge_threshold(mut self, bytes: usize) -> Self {
        self.huge_threshold = bytes;
        self
    }
}
