//! Cancellation checks: futures of an [`AsyncBackupBackend`] dropped at
//! seeded random points while many tasks work, then every surviving page
//! verified and nothing left behind.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use pagebackup_async::{AsyncBackupBackend, AsyncPageArray};
use pagebackup_core::{BackupFlags, Counts, Handle, Interrupt, Page};

use crate::{PageSpec, SplitMix64};

/// The kind of tokio runtime a check runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Every task on one thread.
    CurrentThread,
    /// Two worker threads.
    MultiThread,
}

impl Flavor {
    /// A runtime of this flavor (no I/O or timer driver: the checks need none).
    pub fn runtime(self) -> tokio::runtime::Runtime {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().build(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().worker_threads(2).build(),
        }
        .expect("a tokio runtime")
    }
}

/// Awaits `fut` for at most `polls` polls (`None`: to the end) and drops it
/// if it has not finished by then; `Some(0)` drops it without polling.
pub async fn within_polls<F: Future>(fut: F, polls: Option<u32>) -> Option<F::Output> {
    let Some(mut left) = polls else {
        return Some(fut.await);
    };
    if left == 0 {
        return None;
    }
    let mut fut = pin!(fut);
    poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => {
            left -= 1;
            if left == 0 {
                return Poll::Ready(None);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// How a cancellation run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelConfig {
    /// Seed of every task's operations and drop points.
    pub seed: u64,
    /// Tasks working at once.
    pub tasks: usize,
    /// Operations per task.
    pub ops_per_task: usize,
    /// Most pages in one batch.
    pub max_batch: usize,
}

/// What a cancellation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CancelReport {
    /// Operations awaited to their end.
    pub finished: u64,
    /// Operations whose futures were dropped before they finished.
    pub dropped: u64,
    /// Pages still backed up at the end, each verified, then dropped.
    pub surviving: u64,
}

impl fmt::Display for CancelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations finished, {} dropped part-way, {} surviving pages verified",
            self.finished, self.dropped, self.surviving
        )
    }
}

fn live_handles(live: &[(Handle, PageSpec)]) -> Vec<Handle> {
    live.iter().map(|&(h, _)| h).collect()
}

/// Restores every page of `live` and checks its bytes.
async fn verify_all(b: &dyn AsyncBackupBackend, live: &[(Handle, PageSpec)], what: &str) {
    for chunk in live.chunks(64) {
        let dsts = chunk.iter().map(|_| Page::new_boxed()).collect();
        let (result, pages) = b.copy_pages(&live_handles(chunk), dsts, None).await;
        result.unwrap_or_else(|e| panic!("{}: {what}: restore failed: {e}", b.name()));
        for (page, &(h, spec)) in pages.iter().zip(chunk) {
            spec.verify(page)
                .unwrap_or_else(|m| panic!("{}: {what}: handle {h:?} gave the wrong bytes: {m}", b.name()));
        }
    }
}

/// One task's seeded sequence of backups, restores and drops, each future
/// awaited to its end or dropped after a seeded number of polls. Returns
/// the pages it still holds.
async fn churn(
    b: Arc<dyn AsyncBackupBackend>,
    config: CancelConfig,
    task: u64,
) -> (Vec<(Handle, PageSpec)>, CancelReport) {
    let mut rng = SplitMix64::for_index(config.seed, task);
    let mut live: Vec<(Handle, PageSpec)> = Vec::new();
    let mut report = CancelReport::default();
    let mut next = 0;
    for _ in 0..config.ops_per_task {
        let polls = rng.percent(50).then(|| rng.below(5) as u32);
        let n = 1 + rng.index(config.max_batch);
        let finished = match rng.below(6) {
            0 | 1 => {
                let specs: Vec<PageSpec> = (0..n as u64)
                    .map(|k| PageSpec::mixed(config.seed ^ task, next + k))
                    .collect();
                next += n as u64;
                let pages = specs.iter().map(PageSpec::page).collect();
                let flags = BackupFlags::NONE.with_writeback(rng.percent(20));
                within_polls(b.backup_pages(pages, next, flags), polls)
                    .await
                    .map(|backed| {
                        backed
                            .result
                            .unwrap_or_else(|e| panic!("{}: backup_pages: {e}", b.name()));
                        for (page, spec) in backed.pages.iter().zip(&specs) {
                            spec.verify(page)
                                .expect("backup_pages gives the caller's pages back untouched");
                        }
                        live.extend(backed.handles.into_iter().zip(specs));
                    })
            }
            2 => {
                let spec = PageSpec::mixed(config.seed ^ task, next);
                next += 1;
                within_polls(b.backup_page(spec.page(), next, BackupFlags::NONE), polls)
                    .await
                    .map(|(handle, _)| live.push((handle.expect("backup_page"), spec)))
            }
            3 | 4 if !live.is_empty() => {
                let from = rng.index(live.len());
                let chunk = &live[from..live.len().min(from + n)];
                let dsts = chunk.iter().map(|_| Page::new_boxed()).collect();
                within_polls(b.copy_pages(&live_handles(chunk), dsts, None), polls)
                    .await
                    .map(|(result, pages)| {
                        result.unwrap_or_else(|e| panic!("{}: copy_pages: {e}", b.name()));
                        for (page, &(_, spec)) in pages.iter().zip(chunk) {
                            spec.verify(page)
                                .unwrap_or_else(|m| panic!("{}: copy_pages: {m}", b.name()));
                        }
                    })
            }
            5 if !live.is_empty() => {
                // A drop once polled is carried out whether or not its
                // future finishes, so the handles leave `live` either way;
                // a future dropped unpolled has done nothing.
                let from = rng.index(live.len());
                let range = from..live.len().min(from + n);
                let gone: Vec<Handle> = match polls {
                    Some(0) => live_handles(&live[range]),
                    _ => live.drain(range).map(|(h, _)| h).collect(),
                };
                within_polls(b.drop_handles(&gone), polls)
                    .await
                    .map(|result| result.unwrap_or_else(|e| panic!("{}: drop_handles: {e}", b.name())))
            }
            _ => Some(()),
        };
        match finished {
            Some(()) => report.finished += 1,
            None => report.dropped += 1,
        }
    }
    (live, report)
}

/// Runs `config.tasks` tasks of seeded operations on `b` on a runtime of
/// `flavor`, dropping about half the futures after 0 to 4 polls; then shuts
/// the runtime down (so every operation left running has ended), checks on
/// a fresh runtime that the backend holds exactly the surviving pages with
/// their bytes, drops them and checks that it holds nothing.
///
/// Panics with a message naming the backend and what diverged.
pub fn check_cancellation(b: Arc<dyn AsyncBackupBackend>, flavor: Flavor, config: CancelConfig) -> CancelReport {
    let runtime = flavor.runtime();
    let (live, mut report) = runtime.block_on(async {
        let tasks: Vec<_> = (0..config.tasks as u64)
            .map(|task| tokio::spawn(churn(Arc::clone(&b), config, task)))
            .collect();
        let mut live = Vec::new();
        let mut report = CancelReport::default();
        for task in tasks {
            let (held, r) = task.await.expect("a churn task panicked");
            live.extend(held);
            report.finished += r.finished;
            report.dropped += r.dropped;
        }
        (live, report)
    });
    drop(runtime);
    flavor.runtime().block_on(async {
        // Operations whose futures were dropped may still be in flight in a
        // native backend; flush waits for every backup made so far.
        b.flush().await.unwrap();
        assert_eq!(
            b.stats().stored_pages,
            live.len() as u64,
            "{}: after dropped futures the backend holds {} pages, the tasks hold {} handles",
            b.name(),
            b.stats().stored_pages,
            live.len()
        );
        verify_all(&*b, &live, "a page surviving the dropped futures").await;
        b.drop_handles(&live_handles(&live)).await.unwrap();
        assert_eq!(b.stats().stored_pages, 0, "{}: pages left behind", b.name());
    });
    report.surviving = live.len() as u64;
    report
}

/// A restore whose future is dropped part-way sets the interrupt it was
/// given, and leaves the backup in place.
pub async fn dropped_restore_interrupts(b: &dyn AsyncBackupBackend) {
    let spec = PageSpec::mixed(0xd0d0, 0);
    let (handle, _) = b.backup_page(spec.page(), 0, BackupFlags::NONE).await;
    let handle = handle.expect("backup_page");
    let intr = Interrupt::new();
    match within_polls(b.copy_page(Page::new_boxed(), handle, Some(intr.clone())), Some(1)).await {
        None => assert!(
            intr.is_interrupted(),
            "{}: a restore dropped part-way did not set its interrupt",
            b.name()
        ),
        Some((result, page)) => {
            result.expect("copy_page");
            spec.verify(&page).expect("copy_page's bytes");
            println!("{}: the restore finished within its first poll", b.name());
        }
    }
    let (result, page) = b.copy_page(Page::new_boxed(), handle, None).await;
    result.unwrap_or_else(|e| panic!("{}: the backup is gone after a dropped restore: {e}", b.name()));
    spec.verify(&page).expect("the backup's bytes after a dropped restore");
    b.drop_handle(handle).await.unwrap();
}

/// An [`AsyncPageArray`] of 300 pages backed up and restored while its
/// futures are dropped at seeded points: after each call settles, the
/// backend holds exactly the backed-up positions and every resident page
/// has its bytes; a last restore brings every page back.
pub fn check_page_array_cancellation(b: Arc<dyn AsyncBackupBackend>, flavor: Flavor, seed: u64) {
    const PAGES: usize = 300;
    let runtime = flavor.runtime();
    runtime.block_on(async {
        let mut array = AsyncPageArray::new(PAGES, Arc::clone(&b));
        for i in 0..PAGES {
            array.set(i, PageSpec::mixed(seed, i as u64).page()).await.unwrap();
        }
        let verify = |array: &AsyncPageArray| {
            for i in 0..PAGES {
                if let Some(page) = array.get(i) {
                    PageSpec::mixed(seed, i as u64)
                        .verify(page)
                        .unwrap_or_else(|m| panic!("{}: array page {i}: {m}", b.name()));
                }
            }
        };
        let mut rng = SplitMix64::new(seed);
        for _ in 0..60 {
            let polls = Some(rng.below(6) as u32);
            let outcome = if rng.percent(50) {
                within_polls(array.backup(BackupFlags::NONE), polls)
                    .await
                    .map(|r| r.map(|_| ()))
            } else {
                within_polls(array.restore(None), polls).await.map(|r| r.map(|_| ()))
            };
            if let Some(Err(stopped)) = outcome {
                panic!("{}: an array call awaited to its end failed: {stopped}", b.name());
            }
            array.settle().await;
            assert_eq!(
                b.stats().stored_pages as usize,
                array.counts().backed,
                "{}: the backend's pages and the array's backed-up positions differ",
                b.name()
            );
            verify(&array);
        }
        array.restore(None).await.unwrap();
        let all = Counts {
            resident: PAGES,
            backed: 0,
            empty: 0,
        };
        assert_eq!(array.counts(), all, "{}: after the last restore", b.name());
        verify(&array);
        assert_eq!(array.backup(BackupFlags::NONE).await.unwrap(), PAGES);
        assert_eq!(array.purge().await.unwrap(), PAGES);
        assert_eq!(b.stats().stored_pages, 0, "{}: pages left behind by purge", b.name());
    });
}

/// Backs up `n` pages of seed `seed` in one batch and returns their handles.
async fn back_up(b: &dyn AsyncBackupBackend, seed: u64, n: u64) -> Vec<(Handle, PageSpec)> {
    let specs: Vec<PageSpec> = (0..n).map(|k| PageSpec::mixed(seed, k)).collect();
    let backed = b
        .backup_pages(specs.iter().map(PageSpec::page).collect(), 0, BackupFlags::NONE)
        .await;
    backed
        .result
        .unwrap_or_else(|e| panic!("{}: backup_pages: {e}", b.name()));
    backed.handles.into_iter().zip(specs).collect()
}

/// Tasks of backups, restores and drops on a runtime of `flavor`, shut down
/// with `shutdown_background` while they are in flight: each task keeps the
/// handles it holds in a shared list (a handle leaves it when its drop is
/// polled). The runtime's blocking pool has one thread, so that blocking
/// jobs queue and the shutdown finds some not yet started. On a fresh
/// runtime, once `flush` returns, the backend holds exactly the listed
/// pages, with their bytes.
pub fn check_shutdown_in_flight(b: Arc<dyn AsyncBackupBackend>, flavor: Flavor, seed: u64) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    const TASKS: u64 = 16;
    let held: Arc<Mutex<HashMap<Handle, PageSpec>>> = Arc::default();
    let runtime = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    }
    .max_blocking_threads(1)
    .build()
    .expect("a tokio runtime");
    for task in 0..TASKS {
        let (b, held) = (Arc::clone(&b), Arc::clone(&held));
        runtime.spawn(async move {
            let mut rng = SplitMix64::for_index(seed, task);
            let mut mine: Vec<Handle> = Vec::new();
            for op in 0u64.. {
                let n = 1 + rng.below(16);
                match rng.below(3) {
                    0 if !mine.is_empty() => {
                        let gone: Vec<Handle> = mine.drain(..mine.len().min(n as usize)).collect();
                        // Polled at once below: carried out from here on.
                        {
                            let mut held = held.lock().unwrap();
                            for h in &gone {
                                held.remove(h);
                            }
                        }
                        b.drop_handles(&gone).await.expect("drop_handles");
                    }
                    1 if !mine.is_empty() => {
                        let dsts = mine.iter().take(n as usize).map(|_| Page::new_boxed()).collect();
                        let handles: Vec<Handle> = mine.iter().take(n as usize).copied().collect();
                        b.copy_pages(&handles, dsts, None).await.0.expect("copy_pages");
                    }
                    _ => {
                        let specs: Vec<PageSpec> = (0..n).map(|k| PageSpec::mixed(seed ^ task, op * 16 + k)).collect();
                        let backed = b
                            .backup_pages(specs.iter().map(PageSpec::page).collect(), op, BackupFlags::NONE)
                            .await;
                        backed.result.expect("backup_pages");
                        {
                            let mut held = held.lock().unwrap();
                            for (&h, spec) in backed.handles.iter().zip(specs) {
                                held.insert(h, spec);
                            }
                        }
                        mine.extend(backed.handles);
                    }
                }
                tokio::task::yield_now().await;
            }
        });
    }
    runtime.block_on(async {
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
    });
    runtime.shutdown_background();
    // The workers finish the polls they are in, then drop the tasks (each
    // holds a reference to the list): wait for that, not for the work.
    while Arc::strong_count(&held) > 1 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let held: Vec<(Handle, PageSpec)> = held.lock().unwrap().iter().map(|(&h, &s)| (h, s)).collect();
    Flavor::CurrentThread.runtime().block_on(async {
        b.flush().await.unwrap();
        assert_eq!(
            b.stats().stored_pages,
            held.len() as u64,
            "{}: after a runtime shut down with work in flight and a flush, the backend holds {} pages, the tasks held {}",
            b.name(),
            b.stats().stored_pages,
            held.len()
        );
        verify_all(&*b, &held, "a page held when the runtime shut down").await;
        b.drop_handles(&live_handles(&held)).await.unwrap();
    });
}

/// `drop_handles` awaited (with `Handle::block_on`) in the context of a
/// runtime that has shut down carries out the drop and reports it.
pub fn check_drop_after_shutdown(b: &dyn AsyncBackupBackend, flavor: Flavor) {
    let runtime = flavor.runtime();
    let live = runtime.block_on(back_up(b, 0x5d, 32));
    let handle = runtime.handle().clone();
    drop(runtime);
    handle
        .block_on(b.drop_handles(&live_handles(&live)))
        .unwrap_or_else(|e| panic!("{}: drop_handles after the runtime shut down: {e}", b.name()));
    assert_eq!(
        b.stats().stored_pages,
        0,
        "{}: drop_handles after the runtime shut down left pages stored",
        b.name()
    );
}

/// Backups whose futures are dropped after one poll are undone once
/// `flush` returns: the backend then holds only the pages of the backups
/// that finished within that poll (whose handles are dropped at the end).
pub async fn check_flush_after_cancel(b: &dyn AsyncBackupBackend) {
    let mut finished: Vec<Handle> = Vec::new();
    for round in 0..32u64 {
        let pages = (0..64).map(|k| PageSpec::mixed(0xf1, round * 64 + k).page()).collect();
        if let Some(backed) = within_polls(b.backup_pages(pages, round * 64, BackupFlags::NONE), Some(1)).await {
            backed.result.expect("backup_pages");
            finished.extend(backed.handles);
        }
    }
    b.flush().await.unwrap();
    assert_eq!(
        b.stats().stored_pages,
        finished.len() as u64,
        "{}: right after flush, cancelled backups are still stored",
        b.name()
    );
    b.drop_handles(&finished).await.unwrap();
}

/// An [`AsyncPageArray`] dropped at the end of `block_on` (with all its
/// pages backed up, and again with a backup batch left in flight by a
/// dropped call), then its runtime dropped: once `flush` returns, the
/// backend holds nothing for it.
pub fn check_page_array_dropped_with_runtime(b: Arc<dyn AsyncBackupBackend>, flavor: Flavor) {
    for in_flight in [false, true] {
        let runtime = flavor.runtime();
        runtime.block_on(async {
            let mut array = AsyncPageArray::new(200, Arc::clone(&b));
            for i in 0..200 {
                array.set(i, PageSpec::mixed(0xa7, i as u64).page()).await.unwrap();
            }
            array.backup(BackupFlags::NONE).await.unwrap();
            if in_flight {
                array.restore(None).await.unwrap();
                within_polls(array.backup(BackupFlags::NONE), Some(1)).await;
            }
        });
        drop(runtime);
        Flavor::CurrentThread.runtime().block_on(b.flush()).unwrap();
        assert_eq!(
            b.stats().stored_pages,
            0,
            "{}: an async page array dropped with its runtime (batch in flight: {in_flight}) left pages stored",
            b.name()
        );
    }
}

/// Instances of `create` dropped while backups and restores whose futures
/// were dropped are still in flight: the drop does not panic, and memory
/// allocated and filled right after it stays as written (no operation of
/// the dropped backend writes into it).
pub fn check_drop_with_cancelled_ops(create: &dyn Fn() -> Arc<dyn AsyncBackupBackend>, flavor: Flavor) {
    let runtime = flavor.runtime();
    for round in 0..8u64 {
        let b = create();
        let name = b.name();
        runtime.block_on(async {
            let live = back_up(&*b, round, 64).await;
            let handles = live_handles(&live);
            for k in 0..8 {
                let dsts = handles.iter().map(|_| Page::new_boxed()).collect();
                within_polls(b.copy_pages(&handles, dsts, Some(Interrupt::new())), Some(1)).await;
                let pages = (0..16)
                    .map(|i| PageSpec::mixed(round, 100 + k * 16 + i).page())
                    .collect();
                within_polls(b.backup_pages(pages, 64, BackupFlags::NONE), Some(1)).await;
            }
        });
        drop(b);
        let fresh: Vec<Box<Page>> = (0..512)
            .map(|_| {
                let mut page = Page::new_boxed();
                page.0.fill(0xe5);
                page
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let changed = fresh.iter().filter(|p| p.0.iter().any(|&b| b != 0xe5)).count();
        assert_eq!(
            changed, 0,
            "{name}: {changed} pages allocated after the backend was dropped were written to"
        );
    }
}
