//! Where `SyncAdapter` runs the sync backend's calls.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pagebackup_async::{AsyncBackupBackend, Execution, INLINE_SLICE, SyncAdapter};
use pagebackup_core::{BackupBackend, BackupFlags, Handle, Interrupt, MemoryBackend, Page};

fn page(fill: u8) -> Box<Page> {
    let mut page = Page::new_boxed();
    page.0.fill(fill);
    page
}

/// Polls `fut` once with a waker that does nothing, outside any runtime
/// unless the caller entered one.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_backend_that_never_blocks_runs_inline_without_a_runtime() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::new(memory.clone());
    assert_eq!(adapter.execution(), Execution::Inline);
    // No runtime: a call that needed spawn_blocking would panic here.
    let Poll::Ready((handle, page)) = poll_once(adapter.backup_page(page(7), 0, BackupFlags::NONE)) else {
        panic!("an inline backup finishes in its first poll");
    };
    let handle = handle.unwrap();
    let Poll::Ready((restored, page)) = poll_once(adapter.copy_page(page, handle, None)) else {
        panic!("an inline restore finishes in its first poll");
    };
    restored.unwrap();
    assert_eq!(page.0, [7; 4096]);
    assert!(poll_once(adapter.drop_handle(handle)).is_ready());
    assert_eq!(memory.stats().stored_pages, 0);
}

#[test]
fn a_backend_that_may_block_goes_to_the_blocking_pool() {
    let memory: Arc<dyn BackupBackend> = Arc::new(Undeclared(MemoryBackend::new()));
    let adapter = SyncAdapter::new(memory);
    assert_eq!(
        adapter.execution(),
        Execution::Blocking,
        "the default capability is `may block`"
    );
    // A backend that holds its first call until told: the call cannot
    // finish before the first poll, so a pending poll means a hand-off.
    let (gated, waiting, open) = Gated::new();
    let adapter = SyncAdapter::new(gated.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _entered = runtime.enter();
    let mut fut = adapter.backup_page(page(1), 0, BackupFlags::NONE);
    assert!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending(),
        "the first poll hands the call to a blocking thread"
    );
    // The call waits at the gate on another thread while this one goes on.
    waiting.recv().unwrap();
    open.send(()).unwrap();
    let (handle, _) = runtime.block_on(fut);
    runtime.block_on(adapter.drop_handle(handle.unwrap())).unwrap();
    assert_eq!(gated.stats().stored_pages, 0);
}

#[test]
fn a_call_whose_runtime_shut_down_runs_on_the_awaiting_thread() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::with_execution(memory.clone(), Execution::Blocking);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    let _entered = handle.enter();
    // spawn_blocking on a runtime that shut down gives a cancelled job.
    let Poll::Ready(backed) = poll_once(adapter.backup_pages(vec![page(3), page(4)], 0, BackupFlags::NONE)) else {
        panic!("the call runs here once its job is refused");
    };
    backed.result.unwrap();
    assert_eq!((backed.pages.len(), backed.handles.len()), (2, 2));
    assert_eq!(memory.stats().stored_pages, 2);
    let Poll::Ready((restored, pages)) = poll_once(adapter.copy_pages(&backed.handles, vec![page(0), page(0)], None))
    else {
        panic!("the restore runs here too");
    };
    restored.unwrap();
    assert_eq!((pages[0].0[0], pages[1].0[0]), (3, 4));
    assert!(matches!(
        poll_once(adapter.drop_handles(&backed.handles)),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(memory.stats().stored_pages, 0);
}

#[test]
fn inline_calls_yield_to_other_tasks() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::new(memory.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = Arc::clone(&ran);
            async move { ran.store(true, std::sync::atomic::Ordering::Relaxed) }
        });
        let mut handles = Vec::new();
        let mut page = page(9);
        // On a current-thread runtime the other task runs only if these
        // calls yield: 1000 pages are several budgets.
        for i in 0..1000 {
            let (handle, back) = adapter.backup_page(page, i, BackupFlags::NONE).await;
            handles.push(handle.unwrap());
            page = back;
        }
        assert!(
            ran.load(std::sync::atomic::Ordering::Relaxed),
            "inline calls never yielded"
        );
        other.await.unwrap();
        adapter.drop_handles(&handles).await.unwrap();
    });
    assert_eq!(memory.stats().stored_pages, 0);
}

/// The memory backend, declared never to block, with every call taking
/// longer than [`INLINE_SLICE`]: a slow inline backend.
#[derive(Debug, Default)]
struct SlowInline(MemoryBackend);

fn spin_past_a_slice() {
    let start = std::time::Instant::now();
    while start.elapsed() < INLINE_SLICE * 2 {
        std::hint::spin_loop();
    }
}

impl BackupBackend for SlowInline {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        spin_past_a_slice();
        self.0.backup_page(page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        spin_past_a_slice();
        self.0.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.0.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.0.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.0.stats()
    }
    fn never_blocks(&self) -> bool {
        true
    }
}

#[test]
fn a_long_inline_batch_lets_other_tasks_run_between_its_slices() {
    let backend = Arc::new(SlowInline::default());
    let adapter = SyncAdapter::new(backend.clone());
    assert_eq!(adapter.execution(), Execution::Inline);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = tokio::spawn({
            let (polls, stop) = (Arc::clone(&polls), Arc::clone(&stop));
            async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        tokio::task::yield_now().await;
        let before = polls.load(std::sync::atomic::Ordering::Relaxed);
        let pages = (0..8).map(|i| page(i as u8 + 1)).collect();
        let backed = adapter.backup_pages(pages, 0, BackupFlags::NONE).await;
        backed.result.unwrap();
        let during_backup = polls.load(std::sync::atomic::Ordering::Relaxed) - before;
        let dsts = (0..8).map(|_| page(0)).collect();
        let (restored, dsts) = adapter.copy_pages(&backed.handles, dsts, None).await;
        restored.unwrap();
        let during_both = polls.load(std::sync::atomic::Ordering::Relaxed) - before;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        other.await.unwrap();
        assert!(
            during_backup >= 7,
            "the other task ran {during_backup} times during 8 slow pages"
        );
        assert!(
            during_both - during_backup >= 7,
            "and {} times during their restore",
            during_both - during_backup
        );
        for (i, dst) in dsts.iter().enumerate() {
            assert_eq!(dst.0, [i as u8 + 1; 4096]);
        }
        adapter.drop_handles(&backed.handles).await.unwrap();
    });
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn an_inline_batch_dropped_between_slices_leaves_nothing_behind() {
    for runtime in [
        tokio::runtime::Builder::new_current_thread().build().unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    ] {
        let backend = Arc::new(SlowInline::default());
        let adapter = SyncAdapter::new(backend.clone());
        let _entered = runtime.enter();
        // Dropped after 1..=5 polls of a batch of 6 slow pages: each poll
        // runs one slice.
        for polls in 1..=5 {
            let pages = (0..6).map(|_| page(polls)).collect();
            let mut fut = adapter.backup_pages(pages, 0, BackupFlags::NONE);
            for _ in 0..polls {
                assert!(
                    fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending(),
                    "a batch of slow pages yields between its slices"
                );
            }
            drop(fut);
            assert_eq!(
                backend.stats().stored_pages,
                0,
                "a backup dropped after {polls} polls left pages stored"
            );
        }
        // A restore dropped part-way leaves the pages stored and sets its
        // interrupt; the pages it did not reach keep their bytes.
        let backed = runtime.block_on(adapter.backup_pages((0..6).map(|_| page(5)).collect(), 0, BackupFlags::NONE));
        backed.result.unwrap();
        let intr = Interrupt::new();
        let dsts = (0..6).map(|_| page(0)).collect();
        let mut fut = adapter.copy_pages(&backed.handles, dsts, Some(intr.clone()));
        assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        drop(fut);
        assert!(intr.is_interrupted());
        assert_eq!(backend.stats().stored_pages, 6);
        let (restored, dsts) =
            runtime.block_on(adapter.copy_pages(&backed.handles, (0..6).map(|_| page(0)).collect(), None));
        restored.unwrap();
        assert!(dsts.iter().all(|d| d.0 == [5; 4096]));
        backend.drop_handles(&backed.handles).unwrap();
        assert_eq!(backend.stats().stored_pages, 0);
    }
}

/// The memory backend without its `never_blocks` declaration: a backend
/// that says nothing about blocking.
#[derive(Debug)]
struct Undeclared(MemoryBackend);

impl BackupBackend for Undeclared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.0.backup_page(page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.0.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.0.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.0.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.0.stats()
    }
}

/// The memory backend behind a gate: its first backup call waits until the
/// test opens the gate, so that calls made meanwhile queue up. Counts the
/// batch calls and their pages.
#[derive(Debug)]
struct Gated {
    inner: MemoryBackend,
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    gate: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    calls: std::sync::Mutex<Vec<usize>>,
}

impl Gated {
    /// The backend, a receiver told when the first call waits at the gate,
    /// and the sender that opens it.
    fn new() -> (Arc<Self>, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (entered, waiting) = std::sync::mpsc::channel();
        let (open, gate) = std::sync::mpsc::channel();
        let gated = Gated {
            inner: MemoryBackend::new(),
            entered: std::sync::Mutex::new(Some(entered)),
            gate: std::sync::Mutex::new(Some(gate)),
            calls: std::sync::Mutex::new(Vec::new()),
        };
        (Arc::new(gated), waiting, open)
    }
}

impl BackupBackend for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), pagebackup_core::BatchError> {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            entered.send(()).unwrap();
            let gate = self.gate.lock().unwrap().take().unwrap();
            gate.recv().unwrap();
        }
        self.calls.lock().unwrap().push(pages.len());
        self.inner.backup_pages(pages, first_idx, flags, handles)
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        let mut handles = Vec::new();
        self.backup_pages(&[page], idx, flags, &mut handles)
            .map_err(|e| e.error)?;
        Ok(handles[0])
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.inner.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.inner.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.inner.stats()
    }
}

#[test]
fn single_pages_made_while_a_job_runs_are_gathered_into_one_batch() {
    let (backend, waiting, open) = Gated::new();
    let adapter = Arc::new(SyncAdapter::new(backend.clone()));
    assert_eq!(adapter.execution(), Execution::Blocking);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let submitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    runtime.block_on(async {
        let spawn = |i: u64| {
            let adapter = Arc::clone(&adapter);
            let submitted = Arc::clone(&submitted);
            tokio::spawn(async move {
                // Counted in the same poll as the call's submission.
                submitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (handle, _) = adapter.backup_page(page(i as u8), i, BackupFlags::NONE).await;
                (i, handle.unwrap())
            })
        };
        let first = spawn(0);
        tokio::task::yield_now().await;
        // The first page's job waits at the gate: the next 63 queue up.
        tokio::task::spawn_blocking(move || waiting.recv().unwrap())
            .await
            .unwrap();
        let rest: Vec<_> = (1..64).map(spawn).collect();
        while submitted.load(std::sync::atomic::Ordering::SeqCst) < 64 {
            tokio::task::yield_now().await;
        }
        open.send(()).unwrap();
        let mut handles = vec![first.await.unwrap()];
        for task in rest {
            handles.push(task.await.unwrap());
        }
        assert_eq!(
            *backend.calls.lock().unwrap(),
            [1, 63],
            "the queued pages, with consecutive idx, go as one batch"
        );
        for (i, handle) in handles {
            let (restored, dst) = adapter.copy_page(page(0xff), handle, None).await;
            restored.unwrap();
            assert_eq!(dst.0, [i as u8; 4096]);
        }
    });
}

#[test]
fn gathered_calls_dropped_or_left_at_shutdown_leave_nothing_behind() {
    for multi_thread in [false, true] {
        let (backend, waiting, open) = Gated::new();
        let adapter = Arc::new(SyncAdapter::new(backend.clone()));
        let runtime = match multi_thread {
            true => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
            false => tokio::runtime::Builder::new_current_thread().build().unwrap(),
        };
        // Handles that tasks finished before the shutdown received.
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = runtime.block_on(async {
            let stored = adapter.backup_page(page(1), 100, BackupFlags::NONE);
            let mut stored = Box::pin(stored);
            assert!(
                stored
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            waiting.recv().unwrap();
            // Queued behind the gate: backups dropped after 1 poll, a
            // restore dropped after 1 poll, and tasks still waiting when
            // the runtime shuts down.
            for i in 0..8 {
                let mut fut = adapter.backup_page(page(2), i, BackupFlags::NONE);
                assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
            }
            for i in 0..8 {
                let (adapter, held) = (Arc::clone(&adapter), Arc::clone(&held));
                drop(tokio::spawn(async move {
                    let (handle, _) = adapter.backup_page(page(3), 50 + i, BackupFlags::NONE).await;
                    held.lock().unwrap().push(handle.unwrap());
                }));
            }
            tokio::task::yield_now().await;
            open.send(()).unwrap();
            let (handle, _) = stored.await;
            handle.unwrap()
        });
        // Shut down with tasks still waiting for gathered calls (the
        // workers stop before the handles held are counted).
        runtime.shutdown_timeout(std::time::Duration::from_secs(30));
        let settle = tokio::runtime::Builder::new_current_thread().build().unwrap();
        settle.block_on(adapter.flush()).unwrap();
        let held = std::mem::take(&mut *held.lock().unwrap());
        assert_eq!(
            backend.stats().stored_pages,
            1 + held.len() as u64,
            "multi_thread {multi_thread}: only the pages whose futures took their handles are stored"
        );
        backend.drop_handles(&held).unwrap();
        let (restored, dst) = settle.block_on(adapter.copy_page(page(0), kept, None));
        restored.unwrap();
        assert_eq!(dst.0, [1; 4096]);
        let intr = Interrupt::new();
        let _entered = settle.enter();
        let mut fut = adapter.copy_page(page(0), kept, Some(intr.clone()));
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        drop(fut);
        settle.block_on(adapter.flush()).unwrap();
        assert_eq!(backend.stats().stored_pages, 1, "a dropped restore keeps the page");
    }
}

#[test]
fn a_blocking_adapter_awaited_outside_a_runtime_runs_on_the_awaiting_thread() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::with_execution(memory.clone(), Execution::Blocking);
    // No runtime: without one, spawn_blocking would panic ("there is no reactor running").
    let Poll::Ready((handle, page)) = poll_once(adapter.backup_page(page(9), 3, BackupFlags::NONE)) else {
        panic!("a backup outside a runtime finishes in its first poll");
    };
    let handle = handle.unwrap();
    assert_eq!(page.0[0], 9, "the page comes back");
    let Poll::Ready((restored, back)) = poll_once(adapter.copy_page(Page::new_boxed(), handle, None)) else {
        panic!("a restore outside a runtime finishes in its first poll");
    };
    restored.unwrap();
    assert!(back.0.iter().all(|&b| b == 9));
    let Poll::Ready(dropped) = poll_once(adapter.drop_handle(handle)) else {
        panic!("a drop outside a runtime finishes in its first poll");
    };
    dropped.unwrap();
    assert_eq!(memory.stats().stored_pages, 0);
}

/// The memory backend declared CPU-bound (or not), each call holding its
/// thread for a while; counts how many calls run at once, at most.
#[derive(Debug, Default)]
struct Busy {
    inner: MemoryBackend,
    cpu_bound: bool,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Busy {
    /// Enters a call: counts it, then waits until `want` calls are in at
    /// once or a while has passed, and leaves.
    fn hold(&self, want: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let start = std::time::Instant::now();
        while self.running.load(SeqCst) < want && start.elapsed() < std::time::Duration::from_millis(20) {
            std::thread::yield_now();
        }
        self.most.fetch_max(self.running.load(SeqCst), SeqCst);
        self.running.fetch_sub(1, SeqCst);
    }
}

impl BackupBackend for Busy {
    fn name(&self) -> &'static str {
        "busy"
    }
    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), pagebackup_core::BatchError> {
        self.hold(usize::MAX);
        self.inner.backup_pages(pages, first_idx, flags, handles)
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.inner.backup_page(page, idx, flags)
    }
    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), pagebackup_core::BatchError> {
        // Uncapped, every call of the test comes in at once.
        self.hold(if self.cpu_bound { usize::MAX } else { 16 });
        self.inner.copy_pages(handles, dsts, intr)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.inner.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.inner.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.inner.stats()
    }
    fn cpu_bound(&self) -> bool {
        self.cpu_bound
    }
}

#[test]
fn cpu_bound_jobs_run_at_most_cpu_slots_at_once_and_others_all_at_once() {
    for cpu_bound in [true, false] {
        let backend = Arc::new(Busy {
            cpu_bound,
            ..Busy::default()
        });
        let adapter = Arc::new(SyncAdapter::new(backend.clone()));
        assert_eq!(adapter.execution(), Execution::Blocking);
        // 16 batches in flight: each backed up, restored and checked.
        batches_at_once(&adapter, 16, 4);
        let most = backend.most.load(std::sync::atomic::Ordering::SeqCst);
        match cpu_bound {
            true => assert!(
                (1..=pagebackup_async::cpu_slots()).contains(&most),
                "{most} CPU-bound jobs ran at once on {} slots",
                pagebackup_async::cpu_slots()
            ),
            false => assert!(
                most > pagebackup_async::cpu_slots(),
                "I/O-bound jobs are not capped: {most} ran at once"
            ),
        }
        assert_eq!(backend.stats().stored_pages, 0);
    }
}

#[test]
fn gathered_cpu_bound_calls_left_waiting_for_a_slot_at_shutdown_are_served() {
    for multi_thread in [false, true] {
        let backend = Arc::new(Busy {
            cpu_bound: true,
            ..Busy::default()
        });
        let adapter = Arc::new(SyncAdapter::new(backend.clone()));
        let runtime = match multi_thread {
            true => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
            false => tokio::runtime::Builder::new_current_thread().build().unwrap(),
        };
        let _entered = runtime.enter();
        // Single pages polled once (queued, their job waiting for a slot
        // or started), then dropped with the runtime.
        let mut futs: Vec<_> = (0..8u64)
            .map(|i| adapter.backup_page(page(i as u8), i, BackupFlags::NONE))
            .collect();
        for fut in &mut futs {
            let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
        drop(futs);
        drop(_entered);
        runtime.shutdown_background();
        // Another runtime's flush waits for the gathered job, which drops
        // the handles nobody received.
        let other = tokio::runtime::Builder::new_current_thread().build().unwrap();
        other.block_on(adapter.flush()).unwrap();
        assert_eq!(backend.stats().stored_pages, 0, "multi_thread: {multi_thread}");
    }
}

#[test]
fn inline_calls_of_a_cpu_bound_backend_compute_on_at_most_cpu_slots_workers() {
    for cpu_bound in [true, false] {
        let backend = Arc::new(Busy {
            cpu_bound,
            ..Busy::default()
        });
        let adapter = Arc::new(SyncAdapter::with_execution(backend.clone(), Execution::Inline));
        batches_at_once(&adapter, 8, 2);
        let most = backend.most.load(std::sync::atomic::Ordering::SeqCst);
        let slots = pagebackup_async::cpu_slots();
        match cpu_bound {
            true => assert!(
                (1..=slots.min(2)).contains(&most),
                "{most} inline CPU-bound calls ran at once on {slots} slots"
            ),
            false => assert_eq!(most, 2, "inline calls of other backends run on every worker"),
        }
        assert_eq!(backend.stats().stored_pages, 0);
    }
}

/// The memory backend, each drop taking a while; counts how many drops run
/// at once, at most.
#[derive(Debug, Default)]
struct SlowDrops {
    inner: MemoryBackend,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl BackupBackend for SlowDrops {
    fn name(&self) -> &'static str {
        "slow-drops"
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.inner.backup_page(page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.inner.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.running.fetch_sub(1, SeqCst);
        self.inner.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.inner.stats()
    }
}

#[test]
fn concurrent_drops_share_one_blocking_job_each_with_its_own_outcome() {
    for multi_thread in [false, true] {
        let backend = Arc::new(SlowDrops::default());
        let adapter = Arc::new(SyncAdapter::new(backend.clone()));
        assert_eq!(adapter.execution(), Execution::Blocking);
        let runtime = match multi_thread {
            true => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
            false => tokio::runtime::Builder::new_current_thread().build().unwrap(),
        };
        let handles: Vec<Handle> = (0..16u8)
            .map(|i| backend.backup_page(&page(i), u64::from(i), BackupFlags::NONE).unwrap())
            .collect();
        // The last handle is dropped twice: one of its two drops fails.
        let mut drops = handles.clone();
        drops.push(handles[15]);
        let outcomes: Vec<_> = runtime.block_on(async {
            let tasks: Vec<_> = drops
                .into_iter()
                .map(|h| {
                    let adapter = Arc::clone(&adapter);
                    tokio::spawn(async move { adapter.drop_handle(h).await })
                })
                .collect();
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            adapter.flush().await.unwrap();
            outcomes
        });
        assert!(outcomes[..15].iter().all(Result::is_ok), "{outcomes:?}");
        let last: Vec<_> = outcomes[15..]
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.kind()))
            .collect();
        assert!(
            last.contains(&None) && last.contains(&Some(pagebackup_core::ErrorKind::InvalidHandle)),
            "one drop of the twice-dropped handle succeeds, the other finds it invalid: {last:?}"
        );
        assert_eq!(backend.stats().stored_pages, 0);
        assert_eq!(
            backend.most.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "drops in flight at once took a blocking thread each"
        );
    }
}

/// `tasks` tasks at once on a 2-worker runtime, each backing up `per`
/// pages of its own, restoring them exactly and dropping them.
fn batches_at_once<B: BackupBackend + 'static>(adapter: &Arc<SyncAdapter<B>>, tasks: u8, per: u8) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..tasks)
            .map(|t| {
                let adapter = Arc::clone(adapter);
                tokio::spawn(async move {
                    let pages = (0..per).map(|k| page(t * per + k)).collect();
                    let first = u64::from(t) * u64::from(per);
                    let backed = adapter.backup_pages(pages, first, BackupFlags::NONE).await;
                    backed.result.unwrap();
                    let dsts = (0..per).map(|_| page(0xff)).collect();
                    let (restored, dsts) = adapter.copy_pages(&backed.handles, dsts, None).await;
                    restored.unwrap();
                    for (k, dst) in dsts.iter().enumerate() {
                        assert_eq!(dst.0, [t * per + k as u8; 4096]);
                    }
                    adapter.drop_handles(&backed.handles).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}
