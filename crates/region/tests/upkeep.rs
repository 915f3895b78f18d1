//! The evictor's spare time goes to the backend's upkeep
//! (`maintain_step`), a step at a time, until the backend says it is done.

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
