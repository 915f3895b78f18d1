//! [`SyncAdapter`]: any sync [`BackupBackend`] behind [`AsyncBackupBackend`].

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pagebackup_core::{BackupBackend, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Page, Result};

use crate::blocking::{BlockingJobs, HandlesToDrop};
use crate::cancel::InterruptOnDrop;
use crate::cpu::cpu_slot;
use crate::gather::Gather;
use crate::{AsyncBackupBackend, BackedUp};

/// Where a [`SyncAdapter`] runs the sync backend's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Execution {
    /// On the calling task: for backends that never block
    /// ([`BackupBackend::never_blocks`]), where a thread hand-off would
    /// cost more than the call. The backups, restores and drops (which may
    /// compact the store) of a CPU-bound backend
    /// ([`BackupBackend::cpu_bound`]) each hold one of the process-wide
    /// [`cpu_slots`](crate::cpu_slots) while they compute, waiting for one
    /// without holding a worker (a drop whose future is dropped meanwhile is
    /// carried out there): however many tasks call
    /// at once, they compute on at most that many workers, and a worker is
    /// left to the runtime's timers and other tasks. Each call spends one unit of tokio's
    /// cooperative budget per page and may yield there: a backup or restore
    /// before anything is done, a drop after the drop. A batch runs in
    /// slices of pages, one sync batch call each, and yields between two
    /// slices once it has held the task for [`INLINE_SLICE`], so that a
    /// long batch never holds a runtime worker for longer than that (plus
    /// one slice). A backup whose future is dropped between two slices
    /// drops the handles it made; a restore leaves the rest of its pages
    /// as they were.
    Inline,
    /// On tokio's blocking pool, so that the runtime's workers never wait
    /// on the backend: one `spawn_blocking` per batch. Single-page backups
    /// and restores are gathered: one that finds no gathered job running
    /// starts one at once, and those made while it runs are served by it
    /// next, many per thread hand-off (consecutive `idx` backed up as one
    /// batch call), with no timer. The jobs of a CPU-bound backend
    /// ([`BackupBackend::cpu_bound`]) wait for one of the process-wide
    /// [`cpu_slots`](crate::cpu_slots) before they start, so that however
    /// many calls are in flight, they leave a core to the runtime's workers;
    /// those of other backends wait on I/O and all start at once.
    Blocking,
}

/// A sync backend as an [`AsyncBackupBackend`].
///
/// Each batch is one call of the sync backend (in slices, inline), run
/// where [`Execution`] says; on the blocking pool, concurrent single-page
/// calls are gathered into shared jobs. Owned pages move into the blocking job and come
/// back with its result; the sync backend sees references into them, so
/// nothing is copied on the way.
///
/// Cancellation keeps the trait's rule: a blocking job runs to its end
/// whatever happens to its future (see [`BlockingJobs`]). A backup's job
/// hands its handles to a guard that drops them again unless the future
/// takes them, so a backup whose future is gone leaves nothing behind (the
/// drop then runs where tokio drops the job's output: on the thread that
/// finishes the job or drops the future). A restore's future sets its
/// interrupt when dropped, and its job stops at the next page boundary. A
/// drop's job drops its handles even if the runtime shuts down before
/// running it. [`flush`](AsyncBackupBackend::flush) first waits for the
/// jobs of dropped futures, so once it returns, cancelled backups are
/// undone; this holds after the runtime that ran them shut down
/// (`shutdown_background` included), since their jobs end on their own.
///
/// # Panics
///
/// A panic of the sync backend is resumed in the awaiting task (for a
/// gathered single-page call, as a panic of its own); a backup
/// batch that panics part-way first drops the handles it had made, so the
/// pages it stored are not left behind. Calls outside a tokio runtime, or
/// whose runtime refuses or cancels their job (it shut down), run the job
/// on the awaiting thread instead.
#[derive(Debug)]
pub struct SyncAdapter<B: BackupBackend + ?Sized = dyn BackupBackend> {
    backend: Arc<B>,
    execution: Execution,
    /// The blocking jobs, so that `flush` waits for orphaned ones.
    jobs: BlockingJobs,
    /// Single-page calls gathered into blocking jobs.
    gather: Gather<B>,
    /// Whether its jobs take a CPU slot first.
    cpu_bound: bool,
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
        let cpu_bound = backend.cpu_bound();
        SyncAdapter {
            gather: Gather::new(&backend, cpu_bound),
            cpu_bound,
            backend,
            execution,
            jobs: BlockingJobs::new(),
        }
    }

    /// Where the calls run.
    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// The sync backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Runs `job` on the blocking pool and returns its output, tracked as
    /// [`BlockingJobs`] says (on this thread if the runtime refuses it).
    async fn on_blocking_thread<T: Send + 'static>(&self, job: impl FnOnce(&Arc<B>) -> T + Send + 'static) -> T {
        let backend = Arc::clone(&self.backend);
        self.jobs.run(move || job(&backend)).await
    }

    /// [`on_blocking_thread`](Self::on_blocking_thread) for a backup or a
    /// restore: a CPU-bound backend's job first waits for a CPU slot and
    /// holds it until it ends. A future dropped while it waits has started
    /// nothing.
    async fn compute<T: Send + 'static>(&self, job: impl FnOnce(&Arc<B>) -> T + Send + 'static) -> T {
        let slot = cpu_slot_if(self.cpu_bound).await;
        self.on_blocking_thread(move |backend| {
            let out = job(backend);
            drop(slot);
            out
        })
        .await
    }
}

/// How long an inline batch holds its task before it yields between two
/// of its slices.
pub const INLINE_SLICE: Duration = Duration::from_micros(100);

/// Runs `step` over the items `0..len` of an inline batch, in slices that
/// double while they take under a quarter of [`INLINE_SLICE`], yielding to
/// the runtime between two slices once the batch has run for
/// [`INLINE_SLICE`] since it started or last yielded. Stops at the first
/// failure, with `completed` counted over the whole batch.
/// Each slice of a CPU-bound backend's batch holds a CPU slot.
async fn sliced(
    len: usize,
    cpu_bound: bool,
    mut step: impl FnMut(Range<usize>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    cooperate(len).await;
    let (mut done, mut slice, mut since) = (0, 1, Instant::now());
    while done < len {
        let end = len.min(done + slice);
        let slot = cpu_slot_if(cpu_bound).await;
        let started = Instant::now();
        let stepped = step(done..end);
        drop(slot);
        stepped.map_err(|e| BatchError {
            completed: done + e.completed,
            error: e.error,
        })?;
        done = end;
        if started.elapsed() < INLINE_SLICE / 4 {
            slice *= 2;
        }
        if done < len && since.elapsed() >= INLINE_SLICE {
            tokio::task::yield_now().await;
            since = Instant::now();
        }
    }
    Ok(())
}

/// A CPU slot if `cpu_bound` (waited for without holding a worker),
/// nothing otherwise.
async fn cpu_slot_if(cpu_bound: bool) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match cpu_bound {
        true => Some(cpu_slot().await),
        false => None,
    }
}

/// Spends `units` of the task's cooperative budget (one per page) around an
/// inline call, yielding to the runtime if it runs out: a task that copies
/// inline then yields as often as one doing tokio I/O (every 128 units by
/// default), and a worker is never held by one task for long. For
/// backends whose calls complete without awaiting anything of tokio's
/// (they would otherwise never yield); outside a runtime it does nothing.
pub async fn cooperate(units: usize) {
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
    // A backend that panics part-way has stored the pages whose handles it
    // gave so far: nobody will receive them, so they are dropped before the
    // panic goes on.
    match catch_unwind(AssertUnwindSafe(|| {
        backend.backup_pages(&refs, first_idx, flags, &mut handles)
    })) {
        Ok(result) => (handles, result),
        Err(panic) => {
            let _ = backend.drop_handles(&handles);
            resume_unwind(panic)
        }
    }
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
            // Handles made so far are dropped again if the future is
            // dropped between two slices, or the backend panics.
            let mut made = HandlesToDrop::new(&self.backend, Vec::with_capacity(pages.len()));
            let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
            let result = sliced(pages.len(), self.cpu_bound, |range| {
                let idx = first_idx.wrapping_add(range.start as u64);
                self.backend.backup_pages(&refs[range], idx, flags, made.handles_mut())
            })
            .await;
            drop(refs);
            return BackedUp {
                pages,
                handles: made.take(),
                result,
            };
        }
        let (pages, issued, result) = self
            .compute(move |backend| {
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
            let result = match pagebackup_core::raw::check_batch_lengths(self.backend.name(), handles.len(), dsts.len())
            {
                Err(e) => Err(e),
                Ok(()) => {
                    let mut refs: Vec<&mut Page> = dsts.iter_mut().map(|p| &mut **p).collect();
                    sliced(handles.len(), self.cpu_bound, |range| {
                        self.backend
                            .copy_pages(&handles[range.clone()], &mut refs[range], intr.as_ref())
                    })
                    .await
                }
            };
            on_drop.disarm();
            return (result, dsts);
        }
        let intr = intr.unwrap_or_default();
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let handles = handles.to_vec();
        let out = self
            .compute(move |backend| {
                let result = copy_owned(&**backend, &handles, &mut dsts, Some(&intr));
                (result, dsts)
            })
            .await;
        on_drop.disarm();
        out
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        if self.execution == Execution::Inline {
            // Carried out when the future is dropped while it waits for a
            // CPU slot, so that a drop once polled is carried out.
            let guard = HandlesToDrop::new(&self.backend, handles.to_vec());
            let slot = cpu_slot_if(self.cpu_bound).await;
            let dropped = guard.drop_now();
            drop(slot);
            cooperate(1).await;
            return dropped;
        }
        self.jobs.drop_handles(&self.backend, handles).await
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
            Execution::Blocking => {
                // Cancelled backups are undone by their orphaned jobs, and
                // by the gathered jobs that serve them.
                self.gather.settle().await;
                self.jobs.settle().await;
                self.on_blocking_thread(|backend| backend.flush()).await
            }
        }
    }

    async fn backup_page(&self, page: Box<Page>, idx: u64, flags: BackupFlags) -> (Result<Handle>, Box<Page>) {
        if self.execution == Execution::Inline {
            cooperate(1).await;
            let _slot = cpu_slot_if(self.cpu_bound).await;
            return (self.backend.backup_page(&page, idx, flags), page);
        }
        let (issued, page) = self.gather.backup(page, idx, flags).await;
        (issued.map(|issued| issued.take()[0]), page)
    }

    async fn copy_page(&self, mut dst: Box<Page>, handle: Handle, intr: Option<Interrupt>) -> (Result<()>, Box<Page>) {
        if self.execution == Execution::Inline {
            let on_drop = InterruptOnDrop::new(intr.clone());
            cooperate(1).await;
            let slot = cpu_slot_if(self.cpu_bound).await;
            let result = self.backend.copy_page(&mut dst, handle, intr.as_ref());
            drop(slot);
            on_drop.disarm();
            return (result, dst);
        }
        let intr = intr.unwrap_or_default();
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let out = self.gather.restore(dst, handle, intr).await;
        on_drop.disarm();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pagebackup_core::MemoryBackend;

    use super::*;

    /// The memory backend, panicking at its third backup.
    #[derive(Debug, Default)]
    struct PanicsAtThird {
        inner: MemoryBackend,
        backups: AtomicUsize,
    }

    impl BackupBackend for PanicsAtThird {
        fn name(&self) -> &'static str {
            "panics-at-third"
        }
        fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
            assert!(
                self.backups.fetch_add(1, Ordering::SeqCst) != 2,
                "the third backup panics"
            );
            self.inner.backup_page(page, idx, flags)
        }
        fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
            self.inner.copy_page(dst, handle, intr)
        }
        fn drop_handle(&self, handle: Handle) -> Result<()> {
            self.inner.drop_handle(handle)
        }
        fn bytes_avail(&self) -> u64 {
            self.inner.bytes_avail()
        }
        fn stats(&self) -> BackupStats {
            self.inner.stats()
        }
    }

    #[test]
    fn a_backup_batch_that_panics_part_way_leaves_nothing_stored() {
        for execution in [Execution::Inline, Execution::Blocking] {
            let backend = Arc::new(PanicsAtThird::default());
            let adapter = SyncAdapter::with_execution(Arc::clone(&backend), execution);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap();
            let pages = (0..5).map(|_| Page::new_boxed()).collect();
            let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
                runtime.block_on(adapter.backup_pages(pages, 0, BackupFlags::NONE))
            }));
            assert!(
                panicked.is_err(),
                "{execution:?}: the backend's panic reaches the caller"
            );
            assert_eq!(backend.backups.load(Ordering::SeqCst), 3, "{execution:?}");
            assert_eq!(
                backend.stats().stored_pages,
                0,
                "{execution:?}: the two pages stored before the panic are left behind"
            );
        }
    }

    #[test]
    fn flush_waits_for_backups_whose_futures_were_dropped() {
        use std::task::{Context, Poll, Waker};
        let backend = Arc::new(MemoryBackend::new());
        let adapter = SyncAdapter::with_execution(Arc::clone(&backend), Execution::Blocking);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut finished = Vec::new();
            for _ in 0..64 {
                let pages = (0..64).map(|_| Page::new_boxed()).collect();
                let mut fut = adapter.backup_pages(pages, 0, BackupFlags::NONE);
                // Polled once (the job is queued), then dropped, unless the
                // job was already done.
                if let Poll::Ready(backed) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    finished.extend(backed.handles);
                }
            }
            adapter.flush().await.unwrap();
            assert_eq!(adapter.jobs.orphans(), 0);
            assert_eq!(
                backend.stats().stored_pages,
                finished.len() as u64,
                "cancelled backups still stored after flush"
            );
            backend.drop_handles(&finished).unwrap();
        });
    }
}
