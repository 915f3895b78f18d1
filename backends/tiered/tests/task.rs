//! The policy as a task on a tokio runtime: it moves pages while 8 threads
//! back up, restore and drop, shares the rate limit, ends with the backend,
//! and is refused beside the automatic thread.
#![cfg(feature = "async")]

use std::time::Duration;

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Page};
use pagebackup_testkit::PageSpec;
use pagebackup_tiered::{RateLimit, Stop, TieredConfig, WritebackFilter};

mod support;

use support::{PAGE, eight_threads_while_the_policy_moves, memory_over_shmem as stack};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_policy_task_moves_pages_while_8_threads_back_up_restore_and_drop() {
    let rt = runtime();
    for promote in [false, true] {
        let t = stack(32, TieredConfig::new().with_auto(None).with_promote(promote));
        let task = t.spawn_policy(rt.handle(), Duration::from_millis(1)).unwrap();
        eight_threads_while_the_policy_moves(&t, 21, &format!("promote={promote}"));
        drop(t);
        // The task ends by itself once the backend is gone.
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
            .expect("the policy task outlived its backend")
            .unwrap();
    }
}

#[test]
fn the_task_shares_the_rate_limit_and_is_refused_beside_the_thread() {
    let rt = runtime();
    let limit = RateLimit {
        bytes: 3 * PAGE,
        period: Duration::from_secs(3600),
    };
    let t = stack(4, TieredConfig::new().with_auto(None).with_rate_limit(limit));
    let pages: Vec<_> = (0..4)
        .map(|i| {
            let spec = PageSpec::mixed(22, i);
            (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
        })
        .collect();
    // 4 pages of 4 is past the high watermark: the task moves 2 down to
    // the low one (2.8 pages), taking 2 pages of the period's 3.
    assert_eq!(t.tier_stats()[0].pages, 4);
    let _task = t.spawn_policy(rt.handle(), Duration::from_millis(1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.tier_stats()[0].moved_down < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(t.tier_stats()[0].moved_down, 2);
    assert_eq!(t.policy_state().rate_remaining, Some(PAGE));
    // The caller's writeback has what the task left: one page.
    let report = t.writeback(WritebackFilter::All);
    assert_eq!((report.moved_pages, report.stopped), (1, Some(Stop::RateLimited)));
    let mut dst = pagebackup_core::Page::new_boxed();
    for &(h, spec) in &pages {
        t.copy_page(&mut dst, h, None).unwrap();
        spec.verify(&dst).unwrap();
        t.drop_handle(h).unwrap();
    }

    let auto = stack(4, TieredConfig::new().with_auto(Some(Duration::from_secs(1))));
    let e = auto.spawn_policy(rt.handle(), Duration::from_millis(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("with_auto(None)"), "{e}");
}

/// Once the policy task is gone (aborted here), restores from below
/// promote their pages themselves again: none waits on a policy that will
/// never run.
#[test]
fn an_aborted_policy_task_leaves_promotions_to_restores_again() {
    let rt = runtime();
    let t = stack(32, TieredConfig::new().with_auto(None).with_promote(true));
    let pages: Vec<_> = (0..4)
        .map(|i| {
            let spec = PageSpec::mixed(23, i);
            (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
        })
        .collect();
    let task = t.spawn_policy(rt.handle(), Duration::from_secs(3600)).unwrap();
    task.abort();
    let ended = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
    assert!(ended.expect("the aborted task ended").unwrap_err().is_cancelled());
    t.writeback(WritebackFilter::All);
    assert!(pages.iter().all(|&(h, _)| t.tier_of(h) == Some(1)));
    let mut dst = pagebackup_core::Page::new_boxed();
    for _ in 0..2 {
        for &(h, spec) in &pages {
            t.copy_page(&mut dst, h, None).unwrap();
            spec.verify(&dst).unwrap();
        }
    }
    let s = t.tier_stats();
    assert_eq!(s[1].moved_up, 4, "restores promoted their pages themselves: {s:?}");
    assert!(pages.iter().all(|&(h, _)| t.tier_of(h) == Some(0)));
    for &(h, _) in &pages {
        t.drop_handle(h).unwrap();
    }
}

/// A page restored again and again while its promotion waits for the
/// policy task is queued once, so the queue keeps room for the other pages
/// proving hot meanwhile.
#[test]
fn a_page_waiting_for_its_promotion_is_queued_once() {
    // A runtime that no thread drives: the task never runs, and the
    // promotions wait for `run_policy_step`.
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let t = stack(64, TieredConfig::new().with_auto(None).with_promote(true));
    let _task = t.spawn_policy(idle.handle(), Duration::from_secs(3600)).unwrap();
    let pages: Vec<_> = (0..2)
        .map(|i| {
            let spec = PageSpec::mixed(70, i);
            (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
        })
        .collect();
    t.writeback(WritebackFilter::All);
    let mut dst = Page::new_boxed();
    for &(h, spec) in std::iter::repeat_n(&pages[0], 1100).chain([&pages[1]; 2]) {
        t.copy_page(&mut dst, h, None).unwrap();
        spec.verify(&dst).unwrap();
    }
    assert!(
        pages.iter().all(|&(h, _)| t.tier_of(h) == Some(1)),
        "left to the policy"
    );
    t.run_policy_step();
    assert!(pages.iter().all(|&(h, _)| t.tier_of(h) == Some(0)), "both promoted");
    assert_eq!(t.tier_stats()[1].moved_up, 2);
}
