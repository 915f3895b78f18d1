//! The shmem backend of pagebackup: pages copied into a sealed memfd that the
//! kernel can swap out, as the kernel's `ttm_backup_shmem_create()` does.
//!
//! ```
//! use pagebackup_core::{BackupBackend, BackupFlags, Page};
//! use pagebackup_shmem::ShmemBackend;
//!
//! let backend = ShmemBackend::with_capacity(64 << 20)?;
//! let mut page = Page::new_boxed();
//! page.0[0] = 7;
//! // `WRITEBACK` asks the kernel to move the copy to swap at once.
//! let handle = backend.backup_page(&page, 0, BackupFlags::WRITEBACK)?;
//! page.0[0] = 0;
//! backend.copy_page(&mut page, handle, None)?;
//! assert_eq!(page.0[0], 7);
//! backend.drop_handle(handle)?;
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```

mod backend;
mod device;
mod memfd;
mod reserve;
mod smaps;

pub use backend::{ShmemBackend, ShmemConfig};

/// For backend authors: the memfd as a slot store device, to build other
/// stores on (see `pagebackup_core::raw`).
pub mod raw {
    pub use crate::device::MemfdDevice;
}
