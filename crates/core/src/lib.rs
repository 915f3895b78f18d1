//! The core contract of pagebackup: [`Page`], [`Handle`], the tagged
//! [`PageWord`], the [`BackupBackend`] trait, its errors, flags and stats,
//! and [`MemoryBackend`], the in-memory reference backend.
//!
//! A backend takes a copy of a 4 KiB page and returns an opaque [`Handle`];
//! later the page is copied back by handle, or the handle is dropped. Every
//! backend keeps the same semantics (listed on [`BackupBackend`]), so callers
//! can switch between them by changing only the constructor.
//!
//! ```
//! use pagebackup_core::{BackupBackend, BackupFlags, MemoryBackend, Page};
//!
//! let backend = MemoryBackend::new();
//! let mut page = Page::new_boxed();
//! page.0[..5].copy_from_slice(b"hello");
//! let handle = backend.backup_page(&page, 0, BackupFlags::NONE)?;
//! page.0.fill(0); // the caller's page is free as soon as backup_page returns
//! backend.copy_page(&mut page, handle, None)?;
//! assert_eq!(&page.0[..5], b"hello");
//! backend.drop_handle(handle)?;
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```

mod backend;
mod error;
mod flags;
mod handle;
mod interrupt;
pub mod layers;
mod memory;
mod mix;
mod page;
mod page_array;
mod page_word;
pub mod raw;
mod slots;
mod stats;

pub use backend::BackupBackend;
pub use error::{BackupError, BatchError, ErrorKind, Operation, Origin, Result};
pub use flags::BackupFlags;
pub use handle::Handle;
pub use interrupt::Interrupt;
pub use memory::MemoryBackend;
pub use page::{PAGE_SIZE, Page, PageCastError};
pub use page_array::{Counts, PageArray, Slot};
pub use page_word::{PageState, PageWord};
pub use stats::BackupStats;
