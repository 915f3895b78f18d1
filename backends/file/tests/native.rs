//! The async conformance suite on the native io_uring file backend,
//! buffered and with `O_DIRECT`.
#![cfg(feature = "async")]

use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_file::{AsyncFileBackend, AsyncWrites, FileConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, async_conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn subject(name: &str, base: FileConfig) -> AsyncSubject {
    let limited = base.clone();
    AsyncSubject::new(name, move || -> Arc<dyn AsyncBackupBackend> {
        Arc::new(AsyncFileBackend::new(base.clone()).unwrap())
    })
    .with_limit(
        move |bytes| Arc::new(AsyncFileBackend::new(limited.clone().with_max_size(bytes)).unwrap()),
        true,
    )
}

/// Restores each of `handles` through the sync view and checks it is its
/// spec's page.
fn verify_through_sync_view(
    b: &AsyncFileBackend,
    specs: &[pagebackup_testkit::PageSpec],
    handles: &[pagebackup_core::Handle],
    what: &str,
) {
    use pagebackup_core::{BackupBackend, Page};
    for (spec, &handle) in specs.iter().zip(handles) {
        let mut back = Page::new_boxed();
        b.blocking().copy_page(&mut back, handle, None).unwrap();
        spec.verify(&back).unwrap_or_else(|m| panic!("{what}, sync view: {m}"));
    }
}

#[apply(async_conformance)]
fn native_buffered(#[case] check: AsyncCheck) {
    check.run(&subject("native file", FileConfig::new()));
}

#[apply(async_conformance)]
fn native_buffered_ring(#[case] check: AsyncCheck) {
    let config = FileConfig::new().with_async_writes(AsyncWrites::Ring);
    check.run(&subject("native file async_writes=ring", config));
}

#[apply(async_conformance)]
fn native_buffered_pool(#[case] check: AsyncCheck) {
    let config = FileConfig::new().with_async_writes(AsyncWrites::Pool);
    check.run(&subject("native file async_writes=pool", config));
}

/// Written behind, with dropped slots kept for reuse: a reused slot may
/// still have its old page staged or in flight.
#[apply(async_conformance)]
fn native_buffered_pool_reuse(#[case] check: AsyncCheck) {
    let config = FileConfig::new()
        .with_async_writes(AsyncWrites::Pool)
        .with_reuse(1 << 20);
    check.run(&subject("native file async_writes=pool,reuse=1MiB", config));
}

#[apply(async_conformance)]
fn native_direct(#[case] check: AsyncCheck) {
    if let Err(e) = AsyncFileBackend::new(FileConfig::new().with_direct(true)) {
        println!("SKIP: native file backend with direct=on: {e}");
        return;
    }
    check.run(&subject("native file direct=on", FileConfig::new().with_direct(true)));
}

#[test]
fn open_async_gives_the_native_backend_and_its_handles_work_through_the_sync_view() {
    use pagebackup_core::{BackupBackend, BackupFlags, Page};
    let b = AsyncFileBackend::new(FileConfig::new().with_async_writes(AsyncWrites::Ring)).unwrap();
    assert_eq!(b.stats().io_path, Some("io_uring"));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut page = Page::new_boxed();
    page.0.fill(0x5a);
    let (handle, _page) = runtime.block_on(b.backup_page(page, 0, BackupFlags::NONE));
    let handle = handle.unwrap();
    let mut back = Page::new_boxed();
    b.blocking().copy_page(&mut back, handle, None).unwrap();
    assert_eq!(back.0, [0x5a; 4096]);
    b.blocking().drop_handle(handle).unwrap();
    assert_eq!(b.stats().stored_pages, 0);
}

/// A restore whose future is dropped while its reads are in flight keeps
/// the slots it read pinned until the kernel is done, then gives them up:
/// a drop of the same handles meanwhile is quarantined, not released under
/// the reads, and nothing stays held once the backend settles.
#[test]
fn a_dropped_restore_unpins_once_its_reads_are_in() {
    use std::future::Future;
    use std::task::{Context, Waker};

    use pagebackup_core::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page};
    use pagebackup_testkit::PageSpec;

    // With direct=on the reads wait on the device, so the restore is still
    // in flight when it is dropped; buffered ones served from the page
    // cache complete during their submission.
    let b = AsyncFileBackend::new(FileConfig::new().with_shards(1).with_direct(true))
        .or_else(|e| {
            println!("direct=on unavailable ({e}): buffered, where the reads may complete at once");
            AsyncFileBackend::new(FileConfig::new().with_shards(1))
        })
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let specs: Vec<PageSpec> = (0..64).map(|i| PageSpec::mixed(11, i)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles: Vec<Handle> = Vec::new();
    b.blocking()
        .backup_pages(&refs, 0, BackupFlags::NONE, &mut handles)
        .unwrap();
    let dsts: Vec<Box<Page>> = (0..64).map(|_| Page::new_boxed()).collect();
    let mut restore = Box::pin(b.copy_pages(&handles, dsts, None));
    let mut cx = Context::from_waker(Waker::noop());
    let in_flight = restore.as_mut().poll(&mut cx).is_pending();
    b.blocking().drop_handles(&handles).unwrap();
    let during = b.stats();
    assert_eq!((during.stored_pages, during.stored_bytes), (0, 0), "{during:?}");
    if in_flight {
        assert!(
            during.unreleased_bytes <= 64 * PAGE_SIZE as u64,
            "quarantined past the slots read: {during:?}"
        );
    }
    drop(restore);
    runtime.block_on(b.flush()).unwrap();
    let after = b.stats();
    assert_eq!(
        (after.stored_pages, after.stored_bytes, after.unreleased_bytes),
        (0, 0, 0),
        "the dropped restore's slots stay pinned: {after:?}"
    );
    // The slots are usable again and give the new pages.
    let mut again = Vec::new();
    b.blocking()
        .backup_pages(&refs, 0, BackupFlags::NONE, &mut again)
        .unwrap();
    let mut back = Page::new_boxed();
    for (h, spec) in again.iter().zip(&specs) {
        b.blocking().copy_page(&mut back, *h, None).unwrap();
        spec.verify(&back).unwrap();
    }
    b.blocking().drop_handles(&again).unwrap();
}

/// A buffered restore whose page is in the page cache completes while it
/// is submitted, and the submitting task reaps it there: the call is ready
/// at its first poll, single page (gathered) or batch, without a hop
/// through the reaper's thread.
#[test]
fn a_restore_served_from_the_page_cache_is_ready_at_its_first_poll() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use pagebackup_core::{BackupFlags, Page};
    use pagebackup_testkit::PageSpec;

    let b = AsyncFileBackend::new(FileConfig::new().with_shards(1)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let specs: Vec<PageSpec> = (0..8).map(|i| PageSpec::mixed(5, i)).collect();
    let backed = runtime.block_on(b.backup_pages(specs.iter().map(PageSpec::page).collect(), 0, BackupFlags::NONE));
    backed.result.unwrap();
    let handles = backed.handles;
    let mut cx = Context::from_waker(Waker::noop());
    // The first reads bring the pages into the cache if writeback let them go.
    runtime
        .block_on(b.copy_pages(&handles, (0..8).map(|_| Page::new_boxed()).collect(), None))
        .0
        .unwrap();
    let _entered = runtime.enter();
    for (k, (&handle, spec)) in handles.iter().zip(&specs).enumerate() {
        let mut restore = Box::pin(b.copy_page(Page::new_boxed(), handle, None));
        let Poll::Ready((restored, page)) = restore.as_mut().poll(&mut cx) else {
            panic!("single-page restore {k}: not ready at its first poll");
        };
        restored.unwrap();
        spec.verify(&page).unwrap();
    }
    let mut batch = Box::pin(b.copy_pages(&handles, (0..8).map(|_| Page::new_boxed()).collect(), None));
    let Poll::Ready((restored, pages)) = batch.as_mut().poll(&mut cx) else {
        panic!("batch restore: not ready at its first poll");
    };
    restored.unwrap();
    for (spec, page) in specs.iter().zip(&pages) {
        spec.verify(page).unwrap();
    }
    drop(batch);
    runtime.block_on(b.drop_handles(&handles)).unwrap();
}

/// Each write path, forced or chosen by the probe at open, stores what a
/// batch and single pages give it, restored through the ring and through
/// the sync view alike; the probe's page leaves nothing in the file.
#[test]
fn every_write_path_gives_the_same_bytes_back() {
    use pagebackup_core::{BackupBackend, BackupFlags, Handle, Page};
    use pagebackup_testkit::PageSpec;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let probed = AsyncFileBackend::new(FileConfig::new()).unwrap().writes_through();
    println!("buffered writes probed at open go through {probed}");
    for (writes, through) in [
        (AsyncWrites::Ring, "io_uring"),
        (AsyncWrites::Pool, "pwritev"),
        (AsyncWrites::Auto, probed),
    ] {
        let b = AsyncFileBackend::new(FileConfig::new().with_shards(1).with_async_writes(writes)).unwrap();
        assert_eq!(b.writes_through(), through, "{writes:?}");
        let specs: Vec<PageSpec> = (0..80).map(|i| PageSpec::mixed(29, i)).collect();
        let handles: Vec<Handle> = runtime.block_on(async {
            let batch = b.backup_pages(specs[..64].iter().map(PageSpec::page).collect(), 0, BackupFlags::NONE);
            let mut done = batch.await;
            done.result.unwrap();
            for (k, spec) in specs[64..].iter().enumerate() {
                let (handle, _) = b.backup_page(spec.page(), 64 + k as u64, BackupFlags::NONE).await;
                done.handles.push(handle.unwrap());
            }
            b.flush().await.unwrap();
            let (restored, pages) = b
                .copy_pages(&done.handles, (0..80).map(|_| Page::new_boxed()).collect(), None)
                .await;
            restored.unwrap();
            for (spec, page) in specs.iter().zip(&pages) {
                spec.verify(page).unwrap_or_else(|m| panic!("{writes:?}: {m}"));
            }
            done.handles
        });
        verify_through_sync_view(&b, &specs, &handles, &format!("{writes:?}"));
        b.blocking().drop_handles(&handles).unwrap();
        assert_eq!(b.stats().stored_pages, 0, "{writes:?}");
    }
}

/// A page staged by a single-page backup of the sync view, its handle then
/// dropped with its slot kept for reuse, does not shadow what the native
/// backend writes into that slot next: every write path and every restore
/// path gives the new page back, before and after a flush.
#[test]
fn a_stale_staged_page_never_shadows_a_reused_slot() {
    use pagebackup_core::{BackupBackend, BackupFlags, Page};
    use pagebackup_testkit::{PageClass, PageSpec};

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for writes in [AsyncWrites::Ring, AsyncWrites::Pool] {
        let config = FileConfig::new()
            .with_shards(1)
            .with_reuse(1 << 20)
            .with_async_writes(writes);
        let b = AsyncFileBackend::new(config).unwrap();
        let old = PageSpec::new(31, 0, PageClass::Random).page();
        let stale = b.blocking().backup_page(&old, 0, BackupFlags::NONE).unwrap();
        b.blocking().drop_handle(stale).unwrap();
        let new = PageSpec::new(31, 1, PageClass::Random).page();
        runtime.block_on(async {
            let (handle, _) = b.backup_page(new.clone(), 0, BackupFlags::NONE).await;
            let handle = handle.unwrap();
            for flushed in [false, true] {
                let (restored, got) = b.copy_page(Page::new_boxed(), handle, None).await;
                restored.unwrap_or_else(|e| panic!("{writes:?}, flushed {flushed}: {e}"));
                assert!(got.0 == new.0, "{writes:?}, flushed {flushed}: copy_page");
                let (restored, got) = b.copy_pages(&[handle], vec![Page::new_boxed()], None).await;
                restored.unwrap_or_else(|e| panic!("{writes:?}, flushed {flushed}: {e:?}"));
                assert!(got[0].0 == new.0, "{writes:?}, flushed {flushed}: copy_pages");
                let mut got = Page::new_boxed();
                b.blocking().copy_page(&mut got, handle, None).unwrap();
                assert!(got.0 == new.0, "{writes:?}, flushed {flushed}: sync view");
                b.flush().await.unwrap();
            }
            b.drop_handle(handle).await.unwrap();
        });
        assert_eq!(b.stats().stored_pages, 0, "{writes:?}");
    }
}

/// Buffered restores copy what the page cache holds on the calling task
/// and read the rest through the ring: with every other 64 KiB of the file
/// in the page cache (the first or the second, no read-ahead), batches and
/// single pages come back exact.
#[test]
fn restores_of_pages_partly_in_the_page_cache_are_exact() {
    use pagebackup_core::{BackupFlags, Page};
    use pagebackup_testkit::PageSpec;
    use rustix::fs::{Advice, fadvise};

    /// Drops the file from the page cache, then reads back every other
    /// 64 KiB from `first` on.
    fn cache_every_other(fd: std::os::fd::BorrowedFd<'_>, first: u64) {
        let len = rustix::fs::fstat(fd).unwrap().st_size as u64;
        fadvise(fd, 0, None, Advice::DontNeed).unwrap();
        let mut buf = vec![0; 64 << 10];
        for offset in (first..len).step_by(128 << 10) {
            rustix::io::pread(fd, &mut buf, offset).unwrap();
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (writes, first) in [(AsyncWrites::Ring, 0), (AsyncWrites::Pool, 64 << 10)] {
        let b = AsyncFileBackend::new(FileConfig::new().with_shards(1).with_async_writes(writes)).unwrap();
        let specs: Vec<PageSpec> = (0..256).map(|i| PageSpec::mixed(37, i)).collect();
        runtime.block_on(async {
            let backed = b
                .backup_pages(specs.iter().map(PageSpec::page).collect(), 0, BackupFlags::NONE)
                .await;
            backed.result.unwrap();
            b.flush().await.unwrap();
            let fd = b.fds().next().unwrap();
            rustix::fs::fdatasync(fd).unwrap();
            fadvise(fd, 0, None, Advice::Random).unwrap();
            cache_every_other(fd, first);
            let dsts = (0..256).map(|_| Page::new_boxed()).collect();
            let (restored, pages) = b.copy_pages(&backed.handles, dsts, None).await;
            restored.unwrap();
            for (spec, page) in specs.iter().zip(&pages) {
                spec.verify(page).unwrap_or_else(|m| panic!("{writes:?}, batch: {m}"));
            }
            cache_every_other(fd, first);
            for (spec, &handle) in specs.iter().zip(&backed.handles) {
                let (restored, page) = b.copy_page(Page::new_boxed(), handle, None).await;
                restored.unwrap();
                spec.verify(&page).unwrap_or_else(|m| panic!("{writes:?}, single: {m}"));
            }
            b.drop_handles(&backed.handles).await.unwrap();
        });
        assert_eq!(b.stats().stored_pages, 0, "{writes:?}");
    }
}

/// Backups written behind and restores served on the calling task never
/// await anything of tokio's: they spend the task's cooperative budget, so
/// a task making many of them still lets the runtime's other tasks run.
#[test]
fn inline_backups_and_restores_yield_to_other_tasks() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use pagebackup_core::{BackupFlags, Page};
    use pagebackup_testkit::{PageClass, PageSpec};

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let b = AsyncFileBackend::new(FileConfig::new().with_async_writes(AsyncWrites::Pool)).unwrap();
    let page = PageSpec::new(41, 0, PageClass::Random).page();
    runtime.block_on(async {
        let mut handles = Vec::new();
        for restores in [false, true] {
            let other = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&other);
            tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
            let mut calls = 0;
            while !other.load(Ordering::Relaxed) {
                assert!(calls < 1024, "restores {restores}: 1024 calls without a yield");
                if restores {
                    let k = calls % handles.len();
                    let (restored, got) = b.copy_page(Page::new_boxed(), handles[k], None).await;
                    restored.unwrap();
                    assert!(got.0 == page.0);
                } else {
                    let (handle, _) = b.backup_page(page.clone(), calls as u64, BackupFlags::NONE).await;
                    handles.push(handle.unwrap());
                }
                calls += 1;
            }
            if !restores {
                b.flush().await.unwrap();
            }
        }
        b.drop_handles(&handles).await.unwrap();
    });
    assert_eq!(b.stats().stored_pages, 0);
}

/// Backups written behind, drops (whose slots are kept for reuse and
/// reused), restores, and multi-page backups of the sync view writing
/// straight to the file, all at once: every restore gives its page back,
/// and nothing is left once every handle is dropped.
#[test]
fn writes_behind_drops_reuse_and_sync_writes_race_without_losing_a_page() {
    use pagebackup_core::{BackupBackend, BackupFlags, Handle, Page};
    use pagebackup_testkit::{PageSpec, SplitMix64};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let config = FileConfig::new()
        .with_shards(1)
        .with_async_writes(AsyncWrites::Pool)
        .with_reuse(256 << 10);
    let b = Arc::new(AsyncFileBackend::new(config).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sync_writer = {
        let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let specs: Vec<PageSpec> = (0..4).map(|i| PageSpec::mixed(53, round * 4 + i)).collect();
                let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
                let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
                let mut handles = Vec::new();
                b.blocking()
                    .backup_pages(&refs, (1 << 30) | (round * 4), BackupFlags::NONE, &mut handles)
                    .unwrap();
                verify_through_sync_view(&b, &specs, &handles, &format!("round {round}"));
                b.blocking().drop_handles(&handles).unwrap();
                round += 1;
            }
        })
    };
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let b = Arc::clone(&b);
            runtime.spawn(async move {
                let mut rng = SplitMix64::new(t);
                let mut kept: Vec<(Handle, PageSpec)> = Vec::new();
                for call in 0..300u64 {
                    let specs: Vec<PageSpec> = (0..8).map(|i| PageSpec::mixed(59 + t, call * 8 + i)).collect();
                    let idx = (t << 32) | (call * 8);
                    let backed = b
                        .backup_pages(specs.iter().map(PageSpec::page).collect(), idx, BackupFlags::NONE)
                        .await;
                    backed.result.unwrap();
                    kept.extend(backed.handles.into_iter().zip(specs));
                    // Drop about half of what is kept, at random.
                    while kept.len() > 16 {
                        let (handle, _) = kept.swap_remove(rng.below(kept.len() as u64) as usize);
                        b.drop_handle(handle).await.unwrap();
                    }
                    let (handle, spec) = &kept[rng.below(kept.len() as u64) as usize];
                    let (restored, page) = b.copy_page(Page::new_boxed(), *handle, None).await;
                    restored.unwrap_or_else(|e| panic!("task {t}, call {call}: {e}"));
                    spec.verify(&page)
                        .unwrap_or_else(|m| panic!("task {t}, call {call}: {m}"));
                }
                kept
            })
        })
        .collect();
    let kept: Vec<(Handle, PageSpec)> = runtime.block_on(async {
        let mut kept = Vec::new();
        for task in tasks {
            kept.extend(task.await.unwrap());
        }
        kept
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sync_writer.join().unwrap();
    runtime.block_on(async {
        b.flush().await.unwrap();
        let handles: Vec<Handle> = kept.iter().map(|(h, _)| *h).collect();
        let (restored, pages) = b
            .copy_pages(&handles, handles.iter().map(|_| Page::new_boxed()).collect(), None)
            .await;
        restored.unwrap();
        for ((_, spec), page) in kept.iter().zip(&pages) {
            spec.verify(page).unwrap();
        }
        b.drop_handles(&handles).await.unwrap();
        b.flush().await.unwrap();
    });
    assert_eq!(b.stats().stored_pages, 0);
}
