//! [`Space`]: the server's free memory as last read, for a cheap `bytes_avail`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::server::{SERVER_BYTES_PER_PAGE, ServerInfo};

/// How old the figures may get before `bytes_avail` asks for new ones.
const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// The server's free memory in pages at the last `INFO`, and the backend's
/// live pages then, so that the estimate follows the backend's own
/// backups and drops between two refreshes.
#[derive(Debug)]
pub(crate) struct Space {
    free_pages: AtomicU64,
    live_then: AtomicU64,
    refreshed: Mutex<Instant>,
    refreshing: AtomicBool,
}

impl Space {
    /// Figures from `infos` (one per server or master), taken when the
    /// backend held `live` pages.
    pub(crate) fn new(infos: &[ServerInfo], live: u64) -> Self {
        let space = Space {
            free_pages: AtomicU64::new(0),
            live_then: AtomicU64::new(0),
            refreshed: Mutex::new(Instant::now()),
            refreshing: AtomicBool::new(false),
        };
        space.update(infos, live);
        space
    }

    /// Pages the server may still take while the backend holds `live`.
    pub(crate) fn free_pages(&self, live: u64) -> u64 {
        let then = self.live_then.load(Ordering::Relaxed);
        (self.free_pages.load(Ordering::Relaxed) + then).saturating_sub(live)
    }

    /// Whether the figures are old and no refresh is under way; if so, the
    /// caller is to refresh them and then call [`update`](Self::update).
    pub(crate) fn begin_refresh(&self) -> bool {
        let stale = self.refreshed.lock().is_ok_and(|at| at.elapsed() >= REFRESH_AFTER);
        stale && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// New figures (or, with `infos` empty after a failed `INFO`, the old
    /// ones kept), ending a refresh.
    pub(crate) fn update(&self, infos: &[ServerInfo], live: u64) {
        if !infos.is_empty() {
            let free: u64 = infos.iter().map(ServerInfo::free_bytes).sum();
            self.free_pages.store(free / SERVER_BYTES_PER_PAGE, Ordering::Relaxed);
            self.live_then.store(live, Ordering::Relaxed);
        }
        if let Ok(mut at) = self.refreshed.lock() {
            *at = Instant::now();
        }
        self.refreshing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_live_pages_between_refreshes() {
        let info = ServerInfo::parse(&format!("maxmemory:{}\nused_memory:0\n", 100 * SERVER_BYTES_PER_PAGE));
        let space = Space::new(&[info.clone(), info], 10);
        assert_eq!(space.free_pages(10), 200);
        assert_eq!(space.free_pages(60), 150);
        assert_eq!(space.free_pages(0), 210);
        assert_eq!(space.free_pages(500), 0);
        assert!(!space.begin_refresh(), "fresh figures need no refresh");
    }
}
