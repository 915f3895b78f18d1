//! [`RegionConfig`] and [`FaultMode`].

use std::time::Duration;

use crate::error::RegionError;

/// Most pages restored by one fault (read-ahead) and copied by one `UFFDIO_COPY`.
pub const MAX_READ_AHEAD: usize = 16;

/// Where a fault is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FaultMode {
    /// On the faulting thread, in a `SIGBUS` handler (`UFFD_FEATURE_SIGBUS`):
    /// no hand-off between threads. A system call given evicted memory gets
    /// `EFAULT`; pin such memory first.
    #[default]
    Signal,
    /// By a handler thread reading the userfaultfd: system calls on evicted
    /// memory work; each fault costs a hand-off between threads.
    HandlerThread,
}

/// How a region serves faults and evicts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionConfig {
    /// Where faults are served.
    pub mode: FaultMode,
    /// Restore pages write-protected and drop clean ones without writing
    /// them again (userfaultfd write-protect). Off: every restored page is
    /// writable and written back when evicted.
    pub clean_tracking: bool,
    /// Sample the use of dirty pages before evicting them: the clock hand
    /// write-protects a dirty page on one turn and evicts it on the next
    /// unless it was written in between (one write-protect fault, and the
    /// page another turn). Off (the default): the hand evicts what it meets,
    /// and refaults tell it which pages are in use; measured on a 1 GiB
    /// Python heap under a 256 MiB budget, sampling cut the hot workload's
    /// restores by a fifth but its write-protect faults cost as much, and
    /// slowed random accesses by a fifth.
    pub access_sampling: bool,
    /// Pages restored by one fault when faults run sequentially, 1 to
    /// [`MAX_READ_AHEAD`].
    pub read_ahead: usize,
    /// Victims the clock hand picks for one batch (one backend batch call,
    /// one release call); the batch also takes the dirty pages between them
    /// that its write-protect spans cover, at most as many again.
    pub evict_batch: usize,
    /// How long the handler thread spins for the next fault before sleeping
    /// ([`FaultMode::HandlerThread`]).
    pub handler_spin: Duration,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            mode: FaultMode::Signal,
            clean_tracking: true,
            access_sampling: false,
            read_ahead: MAX_READ_AHEAD,
            evict_batch: 128,
            handler_spin: Duration::from_micros(50),
        }
    }
}

impl RegionConfig {
    /// The defaults: signal mode, clean tracking, 16-page read-ahead,
    /// batches of 128 pages, 50 µs of handler spin.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the fault mode `mode`.
    pub fn with_mode(mut self, mode: FaultMode) -> Self {
        self.mode = mode;
        self
    }

    /// With clean tracking on or off.
    pub fn with_clean_tracking(mut self, on: bool) -> Self {
        self.clean_tracking = on;
        self
    }

    /// With access sampling on or off.
    pub fn with_access_sampling(mut self, on: bool) -> Self {
        self.access_sampling = on;
        self
    }

    /// With `pages` of read-ahead.
    pub fn with_read_ahead(mut self, pages: usize) -> Self {
        self.read_ahead = pages;
        self
    }

    /// With eviction batches of at most `pages`.
    pub fn with_evict_batch(mut self, pages: usize) -> Self {
        self.evict_batch = pages;
        self
    }

    /// With the handler thread spinning `spin` before it sleeps.
    pub fn with_handler_spin(mut self, spin: Duration) -> Self {
        self.handler_spin = spin;
        self
    }

    pub(crate) fn check(&self) -> Result<(), RegionError> {
        if !(1..=MAX_READ_AHEAD).contains(&self.read_ahead) {
            return Err(RegionError::InvalidInput(format!(
                "read_ahead = {}: give 1 to {MAX_READ_AHEAD} pages",
                self.read_ahead
            )));
        }
        if !(1..=1024).contains(&self.evict_batch) {
            return Err(RegionError::InvalidInput(format!(
                "evict_batch = {}: give 1 to 1024 pages",
                self.evict_batch
            )));
        }
        Ok(())
    }
}
