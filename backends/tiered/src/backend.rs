//! [`Tiered`]: the backend over an ordered list of backends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pagebackup_core::raw::{HandleCodec, Shards};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, Handle, Interrupt, Operation, Origin, Page, Result,
};

use crate::batch::InFlight;
use crate::rate::Limiter;
use crate::shared::{NAME, Shared, Wake};
use crate::stats::{PolicyReport, PolicyState, TierStats};
use crate::table::{Clock, Table};
use crate::tier::{PAGE, Tier};
use crate::worker::Worker;
use crate::{Policy, TieredConfig, WritebackFilter};

const SHARDS: usize = 16;
const MAX_TIERS: usize = 64;

/// A backend over an ordered list of backends, the first the fastest:
/// backups go to the first tier, and pages move down by policy.
///
/// - **Handles** are the tiered backend's own ([`HandleCodec`] over a sharded
///   slot table), mapping to a tier and the page's handle there; they stay
///   valid while pages move, with the generation and instance rules of
///   every backend.
/// - **Budgets and watermarks**: a tier with a budget that holds more than
///   `high` of it has its coldest pages moved down until it holds `low` of
///   it. Cold is kept cheap, per page, with no list on the hot path: a
///   restore stamps the page with a millisecond clock and counts it (a
///   count halved each time the tier turns over or ten restores per page
///   of it have passed); the policy moves the
///   least restored lately first and, among equals, the longest idle (with
///   no restores, that is idle order alone); [`Policy::S3Fifo`](crate::Policy::S3Fifo)
///   runs S3-FIFO's queues instead. A backup that
///   would take it past its budget goes to the next tier with room (or, when
///   every tier below is full, to any tier that takes it).
/// - **Poorly stored pages** ([`HugePolicy`](crate::HugePolicy)) go first, or at once.
/// - [`BackupFlags::writeback`] sends a page straight to the last tier.
/// - [`writeback`](Self::writeback) moves pages by filter on request;
///   the automatic mode (a background thread, [`TieredConfig::auto`]) runs
///   the policy by itself; [`run_policy_step`](Self::run_policy_step) runs
///   one step from any caller (an async task, a timer).
/// - **Kept copies** ([`TieredConfig::keep_lower`], on by default): a page
///   promoted keeps its copy in the tier it came from, and a later move
///   down is a drop of its upper copy; a restore whose upper copy fails
///   (other than an invalid handle or an interrupt) is served from it; a
///   page that settles above (restored often lately) has its kept copy
///   released by the policy. A
///   page counts once in `stored_pages`; its two copies both count in
///   `memory_used` and their tiers' figures.
/// - **No loss while pages move**: a move copies the page down, switches
///   the mapping if the page is still where it was copied from, then drops
///   the upper copy. A failure at any step leaves the page where it was,
///   readable; a restore racing a move retries on the new mapping, a drop
///   racing a move makes the move discard its copy, and returns once the
///   move has (a drop of a page in a batch of moves in flight waits for
///   the batch to end), so that no copy of a dropped page is left in any
///   tier.
/// - **Moves in batches**: the policy moves up to 64 pages of one tier at
///   a time, with one batch call per step ([`copy_pages`](BackupBackend::copy_pages)
///   above, [`backup_pages`](BackupBackend::backup_pages) below,
///   [`drop_handles`](BackupBackend::drop_handles) of the copies left
///   above), so that tiers with real batches (io_uring writes, a lock held
///   across a run) serve moves with them. Each page of a batch still moves,
///   races or fails on its own, and is counted so.
/// - **No tier I/O under the table's locks**: a restore looks its page up
///   and releases the shard lock before its tier's restore; a drop marks
///   its page, drops it in its tier outside the lock (a move meanwhile
///   leaves the page alone), then frees the handle, or clears the mark if
///   the tier's drop failed.
/// - `NoSpace` from a lower tier stops moves, not backups. A move in flight
///   holds its page in both tiers for a moment, so with every tier full a
///   backup may see `NoSpace` that a moment later would have fit.
///
/// - A tier failing a backup with `Io` (a cold tier's disk or server) is
///   passed over as a full one is: the page goes to the next tier that
///   takes it, past its budget if need be, and the backup fails only if no
///   tier does (with the last error). A `writeback` backup then stays
///   above; the policy moves the page down once the tier below works again.
/// - A copy left above after a move whose release (its drop in the tier
///   above) failed is released again after every later policy run or
///   writeback until it is freed; each failure counts in `failed_releases`.
///
/// Dropping the backend stops its policy thread.
///
/// **Blocking class**: may block, whatever its tiers: a call can wait for a
/// move of its page in flight, and any tier below may do I/O, so an async
/// adapter sends each call to the blocking pool. It is CPU-bound when any
/// tier is (a compressed tier): the adapter's jobs then wait for one of
/// the process's CPU slots, so that many calls in flight leave a core to
/// the runtime's workers.
pub struct Tiered {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl Tiered {
    /// A tiered backend over `tiers` (at least two, first the fastest).
    ///
    /// Fails with [`BackupError::InvalidInput`] for fewer than two or more
    /// than 64 tiers, watermarks outside `0 <= low <= high <= 1`, or
    /// [`trim`](TieredConfig::trim) with a policy other than [`Policy::Lfu`].
    pub fn new(mut tiers: Vec<Tier>, config: TieredConfig) -> Result<Self> {
        let invalid = |detail: String| BackupError::InvalidInput {
            origin: Origin::new(NAME, Operation::Open),
            detail,
        };
        if !(2..=MAX_TIERS).contains(&tiers.len()) {
            return Err(invalid(format!(
                "{} tiers given; a tiered backend takes 2 to {MAX_TIERS}, first the fastest",
                tiers.len()
            )));
        }
        if !(0.0 <= config.low && config.low <= config.high && config.high <= 1.0) {
            return Err(invalid(format!(
                "watermarks high={} low={}: need 0 <= low <= high <= 1",
                config.high, config.low
            )));
        }
        if config.trim == Some(true) && config.policy != Policy::Lfu {
            return Err(invalid(format!(
                "trim with policy {}: trimming is the lfu policy's (S3-FIFO's queues decide what goes down)",
                config.policy.name()
            )));
        }
        if let Some(last) = tiers.last_mut() {
            last.budget = None;
        }
        let local_slots = (HandleCodec::MAX_SLOTS / SHARDS as u64) as u32;
        let auto = config.auto;
        let shared = Arc::new(Shared {
            codec: HandleCodec::new(),
            shards: Shards::new(SHARDS, |_| Table::new(local_slots)),
            tiers: tiers.into_boxed_slice(),
            limiter: Limiter::new(config.rate_limit),
            config,
            clock: Clock::new(),
            mover: Mutex::default(),
            wake: Wake::default(),
            runs: AtomicU64::new(0),
            last_stop: Mutex::new(None),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
            failed_releases: AtomicU64::new(0),
            writeback_pages: AtomicU64::new(0),
            promotions: Mutex::new(Vec::new()),
            in_flight: InFlight::default(),
            deferred: std::sync::atomic::AtomicBool::new(auto.is_some()),
            unreleased: std::sync::Mutex::new(Vec::new()),
        });
        let worker = auto.map(|interval| Worker::start(Arc::clone(&shared), interval));
        Ok(Tiered { shared, worker })
    }

    /// The tiers, first the fastest.
    pub fn tiers(&self) -> &[Tier] {
        &self.shared.tiers
    }

    /// The tier holding the page of `handle` now (0 is the first), or
    /// `None` for a handle that is not live.
    pub fn tier_of(&self, handle: Handle) -> Option<usize> {
        self.shared
            .with_entry(handle, Operation::Maintenance, |e| e.tier as usize)
            .ok()
    }

    /// Each tier's figures, first the fastest.
    pub fn tier_stats(&self) -> Vec<TierStats> {
        self.shared.tiers.iter().map(Shared::tier_stats).collect()
    }

    /// The policy's state.
    pub fn policy_state(&self) -> PolicyState {
        PolicyState {
            automatic: self.worker.is_some(),
            runs: self.shared.runs.load(Ordering::Relaxed),
            last_stop: *self
                .shared
                .last_stop
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            rate_remaining: self.shared.limiter.remaining(),
        }
    }

    /// Runs the watermark policy once, from the calling thread: every tier
    /// with a budget above its high watermark has pages moved down (huge
    /// ones first under [`HugePolicy`](crate::HugePolicy), then the least
    /// restored lately, then the longest idle) until it is at its low
    /// watermark, within the rate limit.
    ///
    /// The automatic mode's thread calls this; so can an async task (in a
    /// blocking section, as moves do I/O) or a caller's own timer.
    pub fn run_policy_step(&self) -> PolicyReport {
        self.shared.run_policy_step()
    }

    /// Runs the policy as a task on the tokio runtime `runtime`: every
    /// `interval`, and at once when a backup takes a tier past its high
    /// watermark, as the automatic thread does, sharing the rate limit with
    /// every other run. Each run goes to the runtime's blocking pool, as
    /// moves do the tiers' I/O. The task ends by itself once the backend is
    /// dropped (at its next wake-up); abort the returned handle to end it
    /// sooner. The runtime needs its timer (`enable_time` or `enable_all`).
    ///
    /// Fails with [`BackupError::InvalidInput`] if the backend runs its
    /// automatic thread ([`TieredConfig::auto`]): build it with
    /// `with_auto(None)` to run the policy as a task instead.
    #[cfg(feature = "async")]
    pub fn spawn_policy(
        &self,
        runtime: &tokio::runtime::Handle,
        interval: std::time::Duration,
    ) -> Result<tokio::task::JoinHandle<()>> {
        if self.worker.is_some() {
            return Err(BackupError::InvalidInput {
                origin: Origin::new(NAME, Operation::Maintenance),
                detail: "spawn_policy: the automatic thread already runs the policy; build the backend with \
                         TieredConfig::with_auto(None) to run it as a task instead"
                    .into(),
            });
        }
        Ok(crate::worker::spawn_task(&self.shared, runtime, interval))
    }

    /// Moves the pages of every upper tier that `filter` selects to the last
    /// tier now, within the rate limit, longest idle first.
    pub fn writeback(&self, filter: WritebackFilter) -> PolicyReport {
        self.shared.writeback(filter)
    }
}

impl BackupBackend for Tiered {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        self.shared.backup(page, idx, flags)
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.shared.restore(dst, handle, intr).inspect_err(|_| {
            self.shared.failed_restores.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.shared.drop_page(handle)
    }

    /// Whether any tier computes (a codec): its calls, and the policy's
    /// moves they may trigger, then spend their time computing.
    fn cpu_bound(&self) -> bool {
        self.shared.tiers.iter().any(|t| t.backend.cpu_bound())
    }

    /// What every tier can still take, each tier with a budget counted up to it.
    fn bytes_avail(&self) -> u64 {
        self.shared
            .tiers
            .iter()
            .map(|t| {
                let avail = t.backend.bytes_avail();
                t.budget
                    .map_or(avail, |b| avail.min(b.saturating_sub(t.counters.held())))
            })
            .fold(0, u64::saturating_add)
    }

    /// The sum over the tiers, with the tiered backend's own table in
    /// `metadata_bytes` and `memory_used`; `writeback_pages` counts the
    /// backups sent down with [`BackupFlags::writeback`] and every move down.
    fn stats(&self) -> BackupStats {
        let shared = &self.shared;
        let mut stats = BackupStats::default();
        let mut own = 0;
        for table in shared.shards.each() {
            stats.stored_pages += table.len();
            own += table.metadata_bytes();
        }
        stats.original_bytes = stats.stored_pages * PAGE;
        let mut moved = 0;
        for tier in shared.tiers.iter() {
            let s = tier.backend.stats();
            stats.stored_bytes += s.stored_bytes;
            stats.memory_used += s.memory_used;
            stats.resident_bytes += s.resident_bytes;
            stats.same_filled_pages += s.same_filled_pages;
            stats.incompressible_pages += s.incompressible_pages;
            stats.compacted_pages += s.compacted_pages;
            stats.metadata_bytes += s.metadata_bytes;
            stats.unreleased_bytes += s.unreleased_bytes;
            stats.failed_releases += s.failed_releases;
            stats.io_path = stats.io_path.or(s.io_path);
            moved += tier.counters.moved_down.load(Ordering::Relaxed);
        }
        stats.metadata_bytes += own;
        stats.memory_used += own;
        stats.writeback_pages = shared.writeback_pages.load(Ordering::Relaxed) + moved;
        stats.failed_backups = shared.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = shared.failed_restores.load(Ordering::Relaxed);
        stats.failed_releases += shared.failed_releases.load(Ordering::Relaxed);
        stats
    }

    /// Waits for a policy run or writeback in flight (a move holds its page
    /// in two tiers for a moment, and one whose page was dropped meanwhile
    /// releases its copy, dropping it before uncounting it), then flushes
    /// every tier. Once it returns, with no other call in flight, each
    /// tier's backend holds what its [`TierStats`] count: the pages served
    /// from it and the copies it keeps of pages promoted above
    /// ([`TieredConfig::keep_lower`]), and no others.
    fn flush(&self) -> Result<()> {
        drop(
            self.shared
                .mover
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.shared.tiers.iter().try_for_each(|t| t.backend.flush())
    }

    /// A step of the upkeep of the first tier that has some (a compressed
    /// tier's compaction in idle time, for one), for a caller with time to
    /// spare, such as a region's evictor.
    fn maintain_step(&self) -> Result<bool> {
        for tier in self.shared.tiers.iter() {
            if tier.backend.maintain_step()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The page's size in the tier that holds it.
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        let entry = self.shared.with_entry(handle, Operation::Maintenance, |e| *e).ok()?;
        self.shared.tiers[entry.tier as usize].backend.stored_size(entry.inner)
    }
}

impl Drop for Tiered {
    fn drop(&mut self) {
        // A policy task, if any, wakes to find the backend gone.
        #[cfg(feature = "async")]
        self.shared.wake.notify.notify_one();
        if let Some(worker) = self.worker.take() {
            worker.stop(&self.shared.wake);
        }
    }
}

impl fmt::Debug for Tiered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiered")
            .field("tiers", &self.shared.tiers)
            .field("config", &self.shared.config)
            .field("policy", &self.policy_state())
            .finish_non_exhaustive()
    }
}
