//! [`SyncAdapter`]: any sync [`BackupBackend`] behind [`AsyncBackupBackend`].

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use pagebackup_core::{BackupBackend, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Page, Result};

use crate::cancel::InterruptOnDrop;
use crate::{AsyncBackupBackend, BackedUp};

/// Where a [`SyncAdapter`] runs the sync backend's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Execution {
    /// On the calling task: for backends that never block
    /// ([`BackupBackend::never_blocks`]), where a thread hand-off would
    /// cost more than the call. Each call spends one unit of tokio's
    /// cooperative budget per page and may yield there: a backup or restore
    /// before anything is done, a drop after the drop.
    Inline,
    /// On tokio's blocking pool, one `spawn_blocking` per call (a batch is
    /// one call), so that the runtime's workers never wait on the backend.
    Blocking,
}

/// A sync backend as an [`AsyncBackupBackend`].
///
/// Each call, single page or batch, is one call of the sync backend, run
/// where [`Execution`] says. Owned pages move into the blocking job and come
/// back with its result; the sync backend sees references into them, so
/// nothing is copied on the way.
///
/// Cancellation keeps the trait's rule: a blocking job runs to its end
/// whatever happens to its future. A backup's job hands its handles to a
/// guard that drops them again unless the future takes them, so a backup
/// whose future is gone leaves nothing behind (the drop then runs where
/// tokio drops the job's output: on the thread that finishes the job or
/// drops the future). A restore's future sets its interrupt when dropped,
/// and its job stops at the next page boundary. A drop's job drops its
/// handles even if the runtime shuts down before running it.
///
/// # Outside a tokio runtime
///
/// With [`Execution::Blocking`], calls made within a tokio runtime run on
/// its blocking pool ([`tokio::task::spawn_blocking`]); a call awaited
/// outside one (`futures::executor::block_on`, another executor) runs the
/// sync call on the awaiting thread instead, as does a call whose runtime
/// shuts down before its job ran. Nothing panics for want of a runtime.
///
/// # Panics
///
/// A panic of the sync backend is resumed in the awaiting task.
#[derive(Debug)]
pub struct SyncAdapter<B: ?Sized = dyn BackupBackend> {
    backend: Arc<B>,
    execution: Execution,
}

impl<B: BackupBackend + ?Sized + 'static> SyncAdapter<B> {
    /// An adapter running `backend` inline if it declares that it never
    /// blocks, on the blocking pool otherwise.
    pub fn new(backend: Arc<B>) -> Self {
        let execution = if backend.never_blocks() {
            Execution::Inline
        } else {
            Execution::Blocking
        };
        Self::with_execution(backend, execution)
    }

    /// An adapter running `backend` as `execution` says.
    pub fn with_execution(backend: Arc<B>, execution: Execution) -> Self {
        SyncAdapter { backend, execution }
    }

    /// Where the calls run.
    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// The sync backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Runs `job` on the blocking pool and returns its output. Outside a
    /// tokio runtime, or if the runtime shuts down before the job ran, it
    /// runs here instead, so that its pages still come back.
    async fn on_blocking_thread<T: Send + 'static>(&self, job: impl FnOnce(&Arc<B>) -> T + Send + 'static) -> T {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return job(&self.backend);
        };
        let job = Arc::new(Mutex::new(Some(job)));
        let queued = Arc::clone(&job);
        let backend = Arc::clone(&self.backend);
        let ran = runtime.spawn_blocking(move || take(&queued).map(|job| job(&backend))).await;
        match ran {
            Ok(Some(out)) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(None) | Err(_) => take(&job).expect("a job runs once")(&self.backend),
        }
    }
}

/// Takes a queued job out, once.
fn take<F>(job: &Mutex<Option<F>>) -> Option<F> {
    job.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Handles to be dropped from `backend` unless [`take`](Self::take)n: the
/// handles of a backup until its future receives them, or those of a drop
/// until its job runs.
struct HandlesToDrop<B: BackupBackend + ?Sized> {
    backend: Arc<B>,
    handles: Vec<Handle>,
}

impl<B: BackupBackend + ?Sized> HandlesToDrop<B> {
    fn new(backend: &Arc<B>, handles: Vec<Handle>) -> Self {
        HandlesToDrop {
            backend: Arc::clone(backend),
            handles,
        }
    }

    /// The handles, no longer to be dropped.
    fn take(mut self) -> Vec<Handle> {
        std::mem::take(&mut self.handles)
    }

    /// Drops the handles now.
    fn drop_now(self) -> Result<(), BatchError> {
        let backend = Arc::clone(&self.backend);
        backend.drop_handles(&self.take())
    }
}

impl<B: BackupBackend + ?Sized> Drop for HandlesToDrop<B> {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            // Nothing can be reported from here: these handles are live and
            // ours, so only an I/O failure of the backend can refuse them.
            let _ = self.backend.drop_handles(&self.handles);
        }
    }
}

/// Spends `units` of the task's cooperative budget (one per page) around an
/// inline call, yielding to the runtime if it runs out: a task that copies
/// inline then yields as often as one doing tokio I/O (every 128 units by
/// default), and a worker is never held by one task for long.
async fn cooperate(units: usize) {
    for _ in 0..units {
        tokio::task::coop::consume_budget().await;
    }
}

fn backup_owned(
    backend: &(impl BackupBackend + ?Sized),
    pages: &[Box<Page>],
    first_idx: u64,
    flags: BackupFlags,
) -> (Vec<Handle>, Result<(), BatchError>) {
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::with_capacity(pages.len());
    let result = backend.backup_pages(&refs, first_idx, flags, &mut handles);
    (handles, result)
}

fn copy_owned(
    backend: &(impl BackupBackend + ?Sized),
    handles: &[Handle],
    dsts: &mut [Box<Page>],
    intr: Option<&Interrupt>,
) -> Result<(), BatchError> {
    let mut refs: Vec<&mut Page> = dsts.iter_mut().map(|p| &mut **p).collect();
    backend.copy_pages(handles, &mut refs, intr)
}

#[async_trait]
impl<B: BackupBackend + ?Sized + 'static> AsyncBackupBackend for SyncAdapter<B> {
    fn name(&self) -> &'static str {
        self.backend.name()
    }

    async fn backup_pages(&self, pages: Vec<Box<Page>>, first_idx: u64, flags: BackupFlags) -> BackedUp {
        if self.execution == Execution::Inline {
            cooperate(pages.len()).await;
            let (handles, result) = backup_owned(&*self.backend, &pages, first_idx, flags);
            return BackedUp { pages, handles, result };
        }
        let (pages, issued, result) = self
            .on_blocking_thread(move |backend| {
                let (handles, result) = backup_owned(&**backend, &pages, first_idx, flags);
                (pages, HandlesToDrop::new(backend, handles), result)
            })
            .await;
        BackedUp {
            pages,
            handles: issued.take(),
            result,
        }
    }

    async fn copy_pages(
        &self,
        handles: &[Handle],
        mut dsts: Vec<Box<Page>>,
        intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        if self.execution == Execution::Inline {
            let on_drop = InterruptOnDrop::new(intr.clone());
            cooperate(dsts.len()).await;
            let result = copy_owned(&*self.backend, handles, &mut dsts, intr.as_ref());
            on_drop.disarm();
            return (result, dsts);
        }
        let intr = intr.unwrap_or_default();
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let handles = handles.to_vec();
        let out = self
            .on_blocking_thread(move |backend| {
                let result = copy_owned(&**backend, &handles, &mut dsts, Some(&intr));
                (result, dsts)
            })
            .await;
        on_drop.disarm();
        out
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        if self.execution == Execution::Inline {
            // After the drop, so that a drop once polled is carried out.
            let dropped = self.backend.drop_handles(handles);
            cooperate(1).await;
            return dropped;
        }
        let job = HandlesToDrop::new(&self.backend, handles.to_vec());
        self.on_blocking_thread(move |_| job.drop_now()).await
    }

    fn bytes_avail(&self) -> u64 {
        self.backend.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        self.backend.stats()
    }

    async fn flush(&self) -> Result<()> {
        match self.execution {
            Execution::Inline => {
                cooperate(1).await;
                self.backend.flush()
            }
            Execution::Blocking => self.on_blocking_thread(|backend| backend.flush()).await,
        }
    }

    async fn backup_page(&self, page: Box<Page>, idx: u64, flags: BackupFlags) -> (Result<Handle>, Box<Page>) {
        if self.execution == Execution::Inline {
            cooperate(1).await;
            return (self.backend.backup_page(&page, idx, flags), page);
        }
        let (issued, page) = self
            .on_blocking_thread(move |backend| {
                let issued = backend
                    .backup_page(&page, idx, flags)
                    .map(|h| HandlesToDrop::new(backend, vec![h]));
                (issued, page)
            })
            .await;
        (issued.map(|issued| issued.take()[0]), page)
    }

    async fn copy_page(&self, mut dst: Box<Page>, handle: Handle, intr: Option<Interrupt>) -> (Result<()>, Box<Page>) {
        if self.execution == Execution::Inline {
            let on_drop = InterruptOnDrop::new(intr.clone());
            cooperate(1).await;
            let result = self.backend.copy_page(&mut dst, handle, intr.as_ref());
            on_drop.disarm();
            return (result, dst);
        }
        let intr = intr.unwrap_or_default();
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let out = self
            .on_blocking_thread(move |backend| (backend.copy_page(&mut dst, handle, Some(&intr)), dst))
            .await;
        on_drop.disarm();
        out
    }
}
