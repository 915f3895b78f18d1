//! The Redis/Valkey backend of pagebackup: pages on a Redis-protocol
//! server or a Redis Cluster, one key per page, one pipeline per batch,
//! natively async ([`AsyncBackupBackend`](pagebackup_async::AsyncBackupBackend))
//! and sync ([`BackupBackend`](pagebackup_core::BackupBackend)) alike.
//!
//! ```no_run
//! use pagebackup_core::{BackupBackend, BackupFlags, Page};
//! use pagebackup_redis::{RedisBackend, RedisConfig};
//!
//! let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379").with_checksum(true))?;
//! let mut page = Page::new_boxed();
//! page.0[..5].copy_from_slice(b"hello");
//! let handle = BackupBackend::backup_page(&backend, &page, 0, BackupFlags::NONE)?;
//! let mut back = Page::new_boxed();
//! BackupBackend::copy_page(&backend, &mut back, handle, None)?;
//! assert_eq!(back, page);
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```
//!
//! See [`RedisBackend`] for how it uses the server, what it refuses and what
//! each failure gives.

#![forbid(unsafe_code)]

mod async_api;
mod backend;
mod blocking;
mod config;
mod conn;
mod direct;
mod error;
mod inner;
mod keys;
mod resp;
mod server;
mod space;
mod stats;
mod sync_api;
mod tls;
mod value;

// rustls is a dependency only to give it its one crypto provider (`ring`).
#[cfg(feature = "tls")]
use rustls as _;

pub use backend::RedisBackend;
pub use config::RedisConfig;
pub use stats::RedisStats;

/// The backend's name in errors and specs.
const NAME: &str = "redis";

/// The implementer's helpers of `pagebackup-core`, imported in this one place.
mod raw {
    pub(crate) use pagebackup_core::raw::{HandleCodec, SlotTable, check_batch_lengths};
}
