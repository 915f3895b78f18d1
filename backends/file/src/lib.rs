//! The plain-file backend of pagebackup: pages written to a file through
//! io_uring, with a `pwritev`/`preadv` fallback — the "backuping to a file"
//! that the kernel's `ttm_backup` was kept opaque for.
//!
//! ```
//! use pagebackup_core::{BackupBackend, BackupFlags, Page};
//! use pagebackup_file::{FileBackend, FileConfig};
//!
//! let backend = FileBackend::new(FileConfig::new().with_max_size(64 << 20))?;
//! let mut page = Page::new_boxed();
//! page.0[0] = 42;
//! let handle = backend.backup_page(&page, 0, BackupFlags::NONE)?;
//! backend.flush()?; // staged pages reach the file
//! let mut back = Page::new_boxed();
//! backend.copy_page(&mut back, handle, None)?;
//! assert_eq!(back.0[0], 42);
//! println!("written through {}", backend.io_path());
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod config;
mod device;
mod file;
mod io;
mod mapping;
#[cfg(feature = "async")]
mod native;
mod runs;
mod staging;
mod uring;

pub use backend::FileBackend;
pub use config::{AsyncWrites, FileConfig, IoMode};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use native::AsyncFileBackend;

/// The backend's name in errors and specs.
const NAME: &str = "file";

/// For backend authors: the file as a slot store device, to build other
/// stores on (see `pagebackup_core::raw`).
pub mod raw {
    pub use crate::device::FileDevice;
}
