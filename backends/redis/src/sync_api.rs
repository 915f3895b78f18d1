//! [`BackupBackend`] for [`RedisBackend`]: on a single server each call
//! makes its round trip on the calling thread, over a blocking connection
//! of its own (restores over the restore path's own, read straight into
//! the pages); on a cluster it waits for its round trip on the backend's
//! runtime.

use std::sync::Arc;
use std::time::Duration;

use pagebackup_core::{
    BackupBackend, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Operation, Page, Result,
};

use crate::backend::{stopped, wait_on};
use crate::raw::check_batch_lengths;
use crate::{NAME, RedisBackend};

impl RedisBackend {
    /// Waits for `fut` on the backend's runtime: at most the timeout and a
    /// second for scheduling (the calls bound their own round trips by the
    /// timeout; this only guards against a runtime that stopped serving).
    fn wait<T: Send + 'static>(&self, op: Operation, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let limit = self.inner.config.timeout + Duration::from_secs(1);
        wait_on(&self.inner.runtime, fut, Some(limit)).ok_or_else(|| stopped(&self.inner.config, op))
    }

    fn backup_batch(&self, op: Operation, pages: &[&Page], handles: &mut Vec<Handle>) -> Result<(), BatchError> {
        let prepared = self.inner.prepare_backup(pages.iter().copied());
        let outcome = match self.inner.blocking() {
            true => self.inner.backup_blocking(op, prepared),
            false => self
                .wait(op, Arc::clone(&self.inner).run_backup(op, prepared))
                .map_err(|error| BatchError { completed: 0, error })?,
        };
        handles.extend(outcome.issued.take());
        outcome.result
    }

    fn copy_batch(
        &self,
        op: Operation,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let mut prepared = self.inner.prepare_copy(op, handles, intr)?;
        if self.inner.direct() {
            let dsts = dsts.iter_mut().map(|d| &mut **d);
            return self.inner.copy_direct_blocking(op, prepared, dsts, intr);
        }
        let replies = if self.inner.blocking() {
            self.inner.fetch_blocking(&mut prepared)
        } else {
            let fetched = self.wait(op, Arc::clone(&self.inner).fetch(prepared));
            let (fetched, replies) = fetched.map_err(|error| BatchError { completed: 0, error })?;
            prepared = fetched;
            replies
        };
        self.inner
            .finish_copy(op, prepared, replies, dsts.iter_mut().map(|d| &mut **d), intr)
    }

    fn drop_batch(&self, op: Operation, handles: &[Handle]) -> Result<(), BatchError> {
        let prepared = self.inner.prepare_drop(op, handles);
        match self.inner.blocking() {
            true => self.inner.drop_blocking(prepared),
            false => self
                .wait(op, Arc::clone(&self.inner).run_drop(prepared))
                .map_err(|error| BatchError { completed: 0, error })?,
        }
    }
}

/// `writeback` is accepted and has no effect: the server is the only tier.
impl BackupBackend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, _idx: u64, _flags: BackupFlags) -> Result<Handle> {
        let mut handles = Vec::with_capacity(1);
        self.backup_batch(Operation::BackupPage, &[page], &mut handles)
            .map_err(|e| e.error)?;
        Ok(handles[0])
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.copy_batch(Operation::CopyPage, &[handle], &mut [dst], intr)
            .map_err(|e| e.error)
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.drop_batch(Operation::DropHandle, &[handle]).map_err(|e| e.error)
    }

    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        self.inner.stats()
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        _first_idx: u64,
        _flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        self.backup_batch(Operation::BackupPages, pages, handles)
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        check_batch_lengths(NAME, handles.len(), dsts.len())?;
        self.copy_batch(Operation::CopyPages, handles, dsts, intr)
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.drop_batch(Operation::DropHandles, handles)
    }
}
