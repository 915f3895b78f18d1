//! [`AsyncBackupBackend`] for [`RedisBackend`]: each call awaits its round
//! trip, run on the backend's runtime.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use pagebackup_async::{AsyncBackupBackend, BackedUp, InterruptOnDrop};
use pagebackup_core::{BackupError, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Operation, Page, Result};

use crate::backend::stopped;
use crate::raw::check_batch_lengths;
use crate::{NAME, RedisBackend};

impl RedisBackend {
    /// Runs `fut` on the backend's runtime and awaits it. The task goes on
    /// if this future is dropped: backups then undo themselves, drops are
    /// carried out.
    async fn on_runtime<T: Send + 'static>(
        &self,
        op: Operation,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        match self.inner.runtime.spawn(fut).await {
            Ok(out) => Ok(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(stopped(&self.inner.config, op)),
        }
    }

    async fn backup_owned(&self, op: Operation, pages: Vec<Box<Page>>) -> BackedUp {
        let prepared = self.inner.prepare_backup(pages.iter().map(|p| &**p));
        match self
            .on_runtime(op, Arc::clone(&self.inner).run_backup(op, prepared))
            .await
        {
            Ok(outcome) => BackedUp {
                pages,
                handles: outcome.issued.take(),
                result: outcome.result,
            },
            Err(error) => BackedUp {
                pages,
                handles: Vec::new(),
                result: Err(BatchError { completed: 0, error }),
            },
        }
    }

    async fn copy_owned(
        &self,
        op: Operation,
        handles: &[Handle],
        mut dsts: Vec<Box<Page>>,
        intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        let prepared = match self.inner.prepare_copy(op, handles, intr.as_ref()) {
            Ok(prepared) => prepared,
            Err(e) => return (Err(e), dsts),
        };
        // Dropped while the GETs are in flight: the restore was interrupted.
        let guard = InterruptOnDrop::new(intr.clone());
        if self.inner.direct() {
            // The pages go to the runtime's task for the time of the
            // restore, and come back whatever happens to it.
            let pages = Arc::new(Mutex::new(dsts));
            let restored = self
                .on_runtime(
                    op,
                    Arc::clone(&self.inner).copy_direct(op, prepared, Arc::clone(&pages), intr),
                )
                .await;
            guard.disarm();
            let dsts = std::mem::take(&mut *pages.lock().unwrap_or_else(PoisonError::into_inner));
            return match restored {
                Ok(result) => (result, dsts),
                Err(error) => (Err(BatchError { completed: 0, error }), dsts),
            };
        }
        let fetched = self.on_runtime(op, Arc::clone(&self.inner).fetch(prepared)).await;
        guard.disarm();
        let result = match fetched {
            Ok((prepared, replies)) => {
                self.inner
                    .finish_copy(op, prepared, replies, dsts.iter_mut().map(|d| &mut **d), intr.as_ref())
            }
            Err(error) => Err(BatchError { completed: 0, error }),
        };
        (result, dsts)
    }

    async fn drop_owned(&self, op: Operation, handles: &[Handle]) -> Result<(), BatchError> {
        let prepared = self.inner.prepare_drop(op, handles);
        self.on_runtime(op, Arc::clone(&self.inner).run_drop(prepared))
            .await
            .map_err(|error| BatchError { completed: 0, error })?
    }
}

/// `writeback` is accepted and has no effect: the server is the only tier.
#[async_trait]
impl AsyncBackupBackend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn backup_pages(&self, pages: Vec<Box<Page>>, _first_idx: u64, _flags: BackupFlags) -> BackedUp {
        self.backup_owned(Operation::BackupPages, pages).await
    }

    async fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: Vec<Box<Page>>,
        intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        if let Err(e) = check_batch_lengths(NAME, handles.len(), dsts.len()) {
            return (Err(e), dsts);
        }
        self.copy_owned(Operation::CopyPages, handles, dsts, intr).await
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.drop_owned(Operation::DropHandles, handles).await
    }

    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        self.inner.stats()
    }

    async fn backup_page(&self, page: Box<Page>, _idx: u64, _flags: BackupFlags) -> (Result<Handle>, Box<Page>) {
        let mut done = self.backup_owned(Operation::BackupPage, vec![page]).await;
        let page = done.pages.pop().expect("every page comes back");
        (done.result.map(|()| done.handles[0]).map_err(|e| e.error), page)
    }

    async fn copy_page(&self, dst: Box<Page>, handle: Handle, intr: Option<Interrupt>) -> (Result<()>, Box<Page>) {
        let (result, mut dsts) = self.copy_owned(Operation::CopyPage, &[handle], vec![dst], intr).await;
        (result.map_err(|e| e.error), dsts.pop().expect("every page comes back"))
    }

    async fn drop_handle(&self, handle: Handle) -> Result<(), BackupError> {
        self.drop_owned(Operation::DropHandle, &[handle])
            .await
            .map_err(|e| e.error)
    }
}
