//! The async API of pagebackup, on tokio: the [`AsyncBackupBackend`] trait
//! (object-safe, with owned page buffers that come back from every call),
//! [`SyncAdapter`], which puts any sync backend behind it, and
//! [`AsyncPageArray`], the async twin of the page array.
//!
//! ```
//! use std::sync::Arc;
//!
//! use pagebackup_async::{AsyncBackupBackend, SyncAdapter};
//! use pagebackup_core::{BackupFlags, MemoryBackend, Page};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let backend: Arc<dyn AsyncBackupBackend> = Arc::new(SyncAdapter::new(Arc::new(MemoryBackend::new())));
//! let mut page = Page::new_boxed();
//! page.0[..5].copy_from_slice(b"hello");
//! let (handle, mut page) = backend.backup_page(page, 0, BackupFlags::NONE).await;
//! let handle = handle?;
//! page.0.fill(0); // the page came back: reuse it
//! let (restored, page) = backend.copy_page(page, handle, None).await;
//! restored?;
//! assert_eq!(&page.0[..5], b"hello");
//! backend.drop_handle(handle).await?;
//! # Ok::<(), pagebackup_core::BackupError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]

mod adapter;
mod backend;
mod blocking;
mod cancel;
mod cpu;
mod gather;
mod page_array;

pub use adapter::{Execution, INLINE_SLICE, SyncAdapter, cooperate};
pub use backend::{AsyncBackupBackend, BackedUp};
pub use blocking::{BlockingJobs, Outstanding, Serial};
pub use cancel::InterruptOnDrop;
pub use cpu::cpu_slots;
pub use page_array::AsyncPageArray;
