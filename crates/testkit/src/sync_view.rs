//! [`SyncView`]: an async backend seen through the sync trait, so that the
//! sync suite runs through the async API.

use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupBackend, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Page, Result};
use tokio::runtime::Handle as Runtime;

/// A [`BackupBackend`] whose every call is the matching call of an
/// [`AsyncBackupBackend`], awaited on a tokio runtime from the calling
/// thread: single pages go to the single-page methods and batches to the
/// batch methods, so the sync checks exercise both.
///
/// Each call copies the caller's pages into owned buffers and back, which a
/// test can afford. Calls must come from threads outside the runtime.
#[derive(Debug)]
pub struct SyncView {
    backend: Arc<dyn AsyncBackupBackend>,
    runtime: Runtime,
}

impl SyncView {
    /// A view of `backend` that awaits its calls on `runtime`.
    pub fn new(backend: Arc<dyn AsyncBackupBackend>, runtime: Runtime) -> Self {
        SyncView { backend, runtime }
    }
}

fn owned(page: &Page) -> Box<Page> {
    let mut copy = Page::new_boxed();
    (*copy).clone_from(page);
    copy
}

impl BackupBackend for SyncView {
    fn name(&self) -> &'static str {
        self.backend.name()
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        self.runtime
            .block_on(self.backend.backup_page(owned(page), idx, flags))
            .0
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        let (result, page) = self
            .runtime
            .block_on(self.backend.copy_page(Page::new_boxed(), handle, intr.cloned()));
        result.map(|()| dst.clone_from(&*page))
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.runtime.block_on(self.backend.drop_handle(handle))
    }

    fn bytes_avail(&self) -> u64 {
        self.backend.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        self.backend.stats()
    }

    fn flush(&self) -> Result<()> {
        self.runtime.block_on(self.backend.flush())
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        let owned = pages.iter().map(|&p| owned(p)).collect();
        let backed = self
            .runtime
            .block_on(self.backend.backup_pages(owned, first_idx, flags));
        handles.extend(backed.handles);
        backed.result
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let owned = dsts.iter().map(|_| Page::new_boxed()).collect();
        let (result, pages) = self
            .runtime
            .block_on(self.backend.copy_pages(handles, owned, intr.cloned()));
        let restored = result.as_ref().map_or_else(|e| e.completed, |()| handles.len());
        for (dst, page) in dsts.iter_mut().zip(&pages).take(restored) {
            (**dst).clone_from(page);
        }
        result
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.runtime.block_on(self.backend.drop_handles(handles))
    }
}
