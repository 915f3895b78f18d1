//! Single-page backups and restores of the native io_uring backend,
//! gathered while others are in flight: 64 tasks at once, about half of
//! their futures dropped at a seeded await point, on current-thread and
//! multi-thread runtimes, buffered (backups written through the ring and
//! on the blocking pool) and `direct=on`; then a runtime shut
//! down with gathered calls in flight. Nothing may be lost, leaked or
//! mixed up.
#![cfg(feature = "async")]

use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupFlags, Handle, Page};
use pagebackup_file::{AsyncFileBackend, AsyncWrites, FileConfig};
use pagebackup_testkit::{Flavor, PageSpec, SplitMix64, within_polls};

const TASKS: u64 = 64;
const OPS: u64 = 48;

fn configs() -> Vec<(&'static str, FileConfig)> {
    let mut configs = vec![
        ("buffered", FileConfig::new()),
        ("buffered, ring", FileConfig::new().with_async_writes(AsyncWrites::Ring)),
        ("buffered, pool", FileConfig::new().with_async_writes(AsyncWrites::Pool)),
    ];
    match AsyncFileBackend::new(FileConfig::new().with_direct(true)) {
        Ok(_) => configs.push(("direct=on", FileConfig::new().with_direct(true))),
        Err(e) => println!("SKIP: native file backend with direct=on: {e}"),
    }
    configs
}

/// One task: single-page backups and restores of its own pages, each
/// future awaited or dropped after a seeded number of polls. Returns the
/// pages it holds.
async fn task(b: Arc<AsyncFileBackend>, seed: u64, t: u64) -> Vec<(Handle, PageSpec)> {
    let mut rng = SplitMix64::for_index(seed, t);
    let mut live: Vec<(Handle, PageSpec)> = Vec::new();
    for k in 0..OPS {
        let polls = rng.percent(40).then(|| rng.below(4) as u32);
        if live.is_empty() || rng.percent(50) {
            let spec = PageSpec::mixed(seed ^ t, k);
            if let Some((handle, page)) =
                within_polls(b.backup_page(spec.page(), t * OPS + k, BackupFlags::NONE), polls).await
            {
                spec.verify(&page).expect("backup_page gives the page back untouched");
                live.push((handle.expect("backup_page"), spec));
            }
        } else {
            let (handle, spec) = live[rng.index(live.len())];
            if let Some((restored, page)) = within_polls(b.copy_page(Page::new_boxed(), handle, None), polls).await {
                restored.expect("copy_page");
                spec.verify(&page)
                    .unwrap_or_else(|m| panic!("task {t}: {handle:?}: {m}"));
            }
        }
    }
    live
}

#[test]
fn concurrent_single_pages_dropped_at_random_await_points_lose_and_leak_nothing() {
    for (name, config) in configs() {
        for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
            let b = Arc::new(AsyncFileBackend::new(config.clone()).unwrap());
            let runtime = flavor.runtime();
            let live: Vec<(Handle, PageSpec)> = runtime.block_on(async {
                let tasks: Vec<_> = (0..TASKS).map(|t| tokio::spawn(task(Arc::clone(&b), 7, t))).collect();
                let mut live = Vec::new();
                for t in tasks {
                    live.extend(t.await.expect("a task panicked"));
                }
                live
            });
            drop(runtime);
            flavor.runtime().block_on(async {
                b.flush().await.unwrap();
                assert_eq!(
                    b.stats().stored_pages,
                    live.len() as u64,
                    "{name} {flavor:?}: the backend holds pages nobody holds"
                );
                for &(handle, spec) in &live {
                    let (restored, page) = b.copy_page(Page::new_boxed(), handle, None).await;
                    restored.unwrap();
                    spec.verify(&page).unwrap_or_else(|m| panic!("{name} {flavor:?}: {m}"));
                }
                let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
                b.drop_handles(&handles).await.unwrap();
                b.flush().await.unwrap();
                assert_eq!(b.stats().stored_pages, 0, "{name} {flavor:?}");
            });
        }
    }
}

#[test]
fn a_runtime_shut_down_with_gathered_calls_in_flight_leaves_nothing_behind() {
    for (name, config) in configs() {
        for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
            let b = Arc::new(AsyncFileBackend::new(config.clone()).unwrap());
            let runtime = flavor.runtime();
            let kept = runtime.block_on(b.backup_page(PageSpec::mixed(3, 0).page(), 0, BackupFlags::NONE));
            let kept = kept.0.unwrap();
            // Handles the tasks received before the shutdown: theirs to drop.
            let received = Arc::new(std::sync::Mutex::new(Vec::new()));
            for t in 0..TASKS {
                let (backing, received) = (Arc::clone(&b), Arc::clone(&received));
                runtime.spawn(async move {
                    let b = backing;
                    let (handle, _) = b
                        .backup_page(PageSpec::mixed(3, t + 1).page(), t + 1, BackupFlags::NONE)
                        .await;
                    let handle = handle.unwrap();
                    received.lock().unwrap().push(handle);
                    let _ = b.copy_page(Page::new_boxed(), handle, None).await;
                    std::future::pending::<()>().await;
                });
                let b = Arc::clone(&b);
                runtime.spawn(async move { b.copy_page(Page::new_boxed(), kept, None).await });
            }
            // Let the tasks submit (a current-thread runtime runs them here).
            runtime.block_on(async {
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            });
            // Shut down with the calls in flight, but let the workers finish
            // the poll they are in: a task that took its handle has pushed it.
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            let other = Flavor::CurrentThread.runtime();
            other.block_on(async {
                b.flush().await.unwrap();
                let received = std::mem::take(&mut *received.lock().unwrap());
                assert_eq!(
                    b.stats().stored_pages,
                    1 + received.len() as u64,
                    "{name} {flavor:?}: backups of tasks gone before their handles came are dropped, the rest stay"
                );
                b.drop_handles(&received).await.unwrap();
                let (restored, page) = b.copy_page(Page::new_boxed(), kept, None).await;
                restored.unwrap();
                PageSpec::mixed(3, 0).verify(&page).unwrap();
                b.drop_handle(kept).await.unwrap();
            });
        }
    }
}
