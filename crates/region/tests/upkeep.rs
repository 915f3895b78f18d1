//! The evictor's spare time goes to the backend's upkeep
//! (`maintain_step`), a step at a time, until the backend says it is done;
//! and a burst of evictions after such idle time is a short one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagebackup_core::{MemoryBackend, Result, layers};
use pagebackup_region::RegionConfig;
use support::{BUDGET, LEN, MODES, region};

/// A memory backend with `work` steps of upkeep to do, counting the calls.
#[derive(Debug)]
struct Upkeep {
    inner: MemoryBackend,
    calls: Arc<AtomicU64>,
    work: u64,
}

impl layers::Layer for Upkeep {
    type Inner = MemoryBackend;
    fn inner(&self) -> &MemoryBackend {
        &self.inner
    }
    fn maintain_step(&self) -> Result<bool> {
        Ok(self.calls.fetch_add(1, Ordering::Relaxed) < self.work)
    }
}

#[test]
fn the_evictor_steps_the_backends_upkeep_while_idle_and_stops_when_it_is_done() {
    const WORK: u64 = 1000;
    for mode in MODES {
        let calls = Arc::new(AtomicU64::new(0));
        let backend = Upkeep {
            inner: MemoryBackend::new(),
            calls: Arc::clone(&calls),
            work: WORK,
        };
        let Some(r) = region(LEN, BUDGET, Box::new(backend), RegionConfig::new().with_mode(mode)) else {
            return;
        };
        for (i, w) in r.words().iter().enumerate() {
            w.store(i as u64, Ordering::Relaxed);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while calls.load(Ordering::Relaxed) <= WORK {
            assert!(
                Instant::now() < deadline,
                "{mode}: {} calls",
                calls.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.stats().upkeep_steps, WORK, "{mode}");
        // Done: the evictor asks again only after its sleep, not in a loop.
        let done = calls.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let more = calls.load(Ordering::Relaxed) - done;
        assert!(
            more <= 12,
            "{mode}: {more} calls in 300 ms once the backend had nothing to do"
        );
        assert_eq!(r.stats().upkeep_steps, WORK, "{mode}");
        for (i, w) in r.words().iter().enumerate() {
            assert_eq!(w.load(Ordering::Relaxed), i as u64, "{mode}: word {i}");
        }
    }
}

/// Writes a word into each page of `pages` (each a first touch, so one
/// resident page more), then waits until the evictor has taken the region
/// back to or under `high`, and 100 ms more; the pages resident then.
fn touch_and_settle(r: &pagebackup_region::OffloadRegion, pages: std::ops::Range<usize>, high: u64) -> u64 {
    let words = r.words();
    for p in pages {
        words[p * support::WORDS_PER_PAGE].store(p as u64 + 1, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.stats().resident_pages > high {
        assert!(Instant::now() < deadline, "{:?}", r.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    r.stats().resident_pages
}

#[test]
fn a_burst_after_idle_time_stops_at_the_near_low_mark_and_one_without_at_the_far_one() {
    // 1024 pages of budget, batches of 8: the high mark is 960 (a sixteenth
    // of headroom), the far low mark 896 and the near one 944.
    const BUDGET_PAGES: usize = 1024;
    let (high, far, near) = (960u64, 896u64, 944u64);
    for mode in MODES {
        for busy in [false, true] {
            // A backend with upkeep always to do keeps the evictor from idling.
            let backend = Upkeep {
                inner: MemoryBackend::new(),
                calls: Arc::new(AtomicU64::new(0)),
                work: if busy { u64::MAX } else { 0 },
            };
            let config = RegionConfig::new()
                .with_mode(mode)
                .with_evict_batch(8)
                .with_read_ahead(1);
            let budget = BUDGET_PAGES * pagebackup_core::PAGE_SIZE;
            let Some(r) = region(4 * budget, budget, Box::new(backend), config) else {
                return;
            };
            // Past the high mark once: the evictor was idle, a short burst.
            let first = touch_and_settle(&r, 0..high as usize + 1, high);
            assert!((near - 8..=near).contains(&first), "{mode} busy={busy}: {first}");
            // Past it again: short after idle time, long without.
            let crossing = (high + 1 - first) as usize;
            let second = touch_and_settle(&r, high as usize + 1..high as usize + 1 + crossing, high);
            if busy {
                assert!((far - 8..=far).contains(&second), "{mode} busy: {second}");
            } else {
                assert!((near - 8..=near).contains(&second), "{mode} idle: {second}");
            }
            let words = r.words();
            for p in 0..high as usize + 1 + crossing {
                assert_eq!(
                    words[p * support::WORDS_PER_PAGE].load(Ordering::Relaxed),
                    p as u64 + 1,
                    "{mode} page {p}"
                );
            }
        }
    }
}
