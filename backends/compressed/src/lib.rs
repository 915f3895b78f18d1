//! The compressed-RAM backend of pagebackup: pages compressed with lz4 or
//! zstd into a packed, log-structured arena in process memory.
//!
//! ```
//! use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
//! use pagebackup_core::{BackupBackend, BackupFlags, Page};
//!
//! let backend = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_limit(64 << 20))?;
//! let mut page = Page::new_boxed();
//! page.0[..11].copy_from_slice(b"hello pages");
//! let handle = backend.backup_page(&page, 0, BackupFlags::NONE)?;
//! let mut back = Page::new_boxed();
//! backend.copy_page(&mut back, handle, None)?;
//! assert_eq!(back, page);
//! assert!(backend.stats().stored_bytes < 100, "a mostly empty page compresses well");
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```
//!
//! Features: `lz4` and `zstd` (both on by default) choose the codecs built in;
//! `lz4-c` (on by default) encodes and decodes lz4 with the C library (its
//! bounds-checked decoder), through a safe wrapper (without it, lz4_flex's
//! safe Rust code does both). This crate has no unsafe code either way.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(not(any(feature = "lz4", feature = "zstd")))]
compile_error!("pagebackup-compressed needs a codec: enable the `lz4` or the `zstd` feature (or both)");

mod arena;
mod backend;
mod budget;
mod codec;
mod config;
#[cfg(feature = "zstd")]
mod dictionary;
mod entry;
mod seal;
mod shard;
mod table;

pub use backend::{ArenaStats, CHUNK_BYTES, Compaction, CompressedBackend, METADATA_BYTES_PER_PAGE};
pub use codec::Algorithm;
pub use config::{CompressedConfig, DEFAULT_HUGE_THRESHOLD, HUGE_THRESHOLDS};
#[cfg(feature = "zstd")]
#[cfg_attr(docsrs, doc(cfg(feature = "zstd")))]
pub use dictionary::{Dictionary, MAX_DICTIONARY_BYTES, train_dictionary};

/// The backend's name in errors and specs.
const NAME: &str = "compressed";
