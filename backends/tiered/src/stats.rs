//! Per-tier figures ([`TierStats`], zram's `bd_stat` counterpart) and the
//! policy's state ([`PolicyState`], [`PolicyReport`]).

use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup_core::BackupStats;

/// What one tier holds and what moved through it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// The tier's backend's name.
    pub name: &'static str,
    /// Its budget in bytes, if it has one.
    pub budget: Option<u64>,
    /// Pages of the tiered backend it holds.
    pub pages: u64,
    /// The bytes those pages are counted for against the budget (their
    /// [`stored_size`](pagebackup_core::BackupBackend::stored_size), or the
    /// tier's average cost where it cannot tell).
    pub held_bytes: u64,
    /// Pages moved from this tier to a lower one.
    pub moved_down: u64,
    /// Of `moved_down`, the pages that went down by a drop of their copy
    /// here, the copy they kept below serving them again: no copy made, no
    /// recompression (see [`TieredConfig::keep_lower`](crate::TieredConfig::keep_lower)).
    pub moved_down_to_kept: u64,
    /// Copies held here of pages promoted above and served from there (see
    /// [`TieredConfig::keep_lower`](crate::TieredConfig::keep_lower)): not in
    /// `pages`, but in `held_bytes` and the backend's own figures, as they
    /// take its space.
    pub kept_pages: u64,
    /// Pages moved from this tier to an upper one (promotion).
    pub moved_up: u64,
    /// Bytes of pages (4096 each) written into this tier by moves from above.
    pub written_back_bytes: u64,
    /// Moves out of this tier that failed (the page stayed here, readable).
    pub failed_moves: u64,
    /// Backups placed here directly because the tiers above were full or
    /// the caller asked for writeback.
    pub direct_backups: u64,
    /// The backend's own counters.
    pub backend: BackupStats,
}

/// Why a policy run stopped before reaching its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The rate limit's bytes for this period are used up.
    RateLimited,
    /// The lower tier has no space: moves stop, backups go on in the upper tier.
    NoSpaceBelow,
}

/// What one policy run or writeback did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// Pages moved.
    pub moved_pages: u64,
    /// Pages that were dropped or moved by someone else while being moved
    /// (their copy was discarded; nothing lost).
    pub raced_pages: u64,
    /// Pages whose move failed (they stayed where they were, readable;
    /// counted in the tier's `failed_moves`).
    pub failed_pages: u64,
    /// Why it stopped early, if it did.
    pub stopped: Option<Stop>,
}

/// The policy's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyState {
    /// Whether the automatic mode's thread runs.
    pub automatic: bool,
    /// Policy runs so far (automatic and explicit).
    pub runs: u64,
    /// Why the last run stopped early, if it did.
    pub last_stop: Option<Stop>,
    /// Bytes the rate limit still allows in the current period (`None`
    /// without a limit).
    pub rate_remaining: Option<u64>,
}

/// A tier's counters.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) pages: AtomicU64,
    pub(crate) held_bytes: AtomicU64,
    pub(crate) moved_down: AtomicU64,
    pub(crate) moved_down_to_kept: AtomicU64,
    pub(crate) kept: AtomicU64,
    pub(crate) moved_up: AtomicU64,
    pub(crate) written_back_bytes: AtomicU64,
    pub(crate) failed_moves: AtomicU64,
    pub(crate) direct_backups: AtomicU64,
}

impl TierCounters {
    /// Reserves `estimate` bytes, if the tier then holds at most `limit`
    /// (always, without a limit).
    pub(crate) fn reserve(&self, estimate: u64, limit: Option<u64>) -> bool {
        self.held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                limit.is_none_or(|l| held + estimate <= l).then_some(held + estimate)
            })
            .is_ok()
    }

    /// Turns a reservation of `estimate` into a page of `cost` bytes.
    pub(crate) fn commit(&self, estimate: u64, cost: u32) {
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.held_bytes.fetch_add(u64::from(cost), Ordering::AcqRel);
        self.cancel(estimate);
    }

    /// Gives a reservation of `estimate` back.
    pub(crate) fn cancel(&self, estimate: u64) {
        self.held_bytes.fetch_sub(estimate, Ordering::AcqRel);
    }

    /// Counts `pages` pages of `bytes` in all out.
    pub(crate) fn remove(&self, pages: u64, bytes: u64) {
        self.pages.fetch_sub(pages, Ordering::Relaxed);
        self.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A page of this tier, promoted, keeps its copy here: it leaves the
    /// pages served from here, its bytes stay counted.
    pub(crate) fn keep(&self) {
        self.pages.fetch_sub(1, Ordering::Relaxed);
        self.kept.fetch_add(1, Ordering::Relaxed);
    }

    /// A kept copy here serves its page again.
    pub(crate) fn serve_kept(&self) {
        self.kept.fetch_sub(1, Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a kept copy of `cost` bytes out.
    pub(crate) fn remove_kept(&self, cost: u32) {
        self.kept.fetch_sub(1, Ordering::Relaxed);
        self.held_bytes.fetch_sub(u64::from(cost), Ordering::Relaxed);
    }

    pub(crate) fn held(&self) -> u64 {
        self.held_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}
