//! [`Tiered`] and [`Tier`]: the backend over an ordered list of backends.

use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pagebackup_core::raw::{HandleCodec, Shards};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, ErrorKind, Handle, Interrupt, Operation, Origin, PAGE_SIZE,
    Page, Result,
};

use crate::rate::Limiter;
use crate::stats::{PolicyReport, PolicyState, TierCounters, TierStats};
use crate::table::{Clock, Entry, Table};
use crate::worker::{Wake, Worker};
use crate::{TieredConfig, WritebackFilter};

pub(crate) const NAME: &str = "tiered";
const SHARDS: usize = 16;
const PAGE: u64 = PAGE_SIZE as u64;
const MAX_TIERS: usize = 64;
/// Restores since a page went down before it is promoted.
const PROMOTE_HEAT: u8 = 2;

/// One tier: a backend and, for every tier but the last, an optional budget.
pub struct Tier {
    pub(crate) backend: Box<dyn BackupBackend>,
    pub(crate) budget: Option<u64>,
    pub(crate) counters: TierCounters,
    /// The cost counted for a page whose backend cannot tell its
    /// [`stored_size`](BackupBackend::stored_size): the tier's memory per
    /// page at the last policy run (a page to begin with); for a backend
    /// that tells sizes, the average of those. Also the estimate reserved
    /// against the budget before a backup.
    pub(crate) average_cost: AtomicU64,
    /// Whether the backend tells its pages' sizes.
    pub(crate) sizes_known: AtomicBool,
    /// Run after a policy step when pages left the tier since the last.
    pub(crate) maintenance: Option<Box<dyn Fn() + Send + Sync>>,
    /// Pages left the tier (moved or dropped) since maintenance last ran.
    pub(crate) vacated: AtomicBool,
    /// Pages the policy moved out since it last halved the tier's heat.
    pub(crate) moved_since_aging: AtomicU64,
    /// The heat of the page the policy would move out next (its coldest
    /// left), as of its last run over the tier: a page below is let in past
    /// the high watermark only if it is hotter (TinyLFU's admission test).
    pub(crate) victim_heat: AtomicU8,
}

impl Tier {
    /// A tier over `backend` (any backend, layers and tiered backends included).
    pub fn new(backend: impl BackupBackend + 'static) -> Self {
        Tier {
            backend: Box::new(backend),
            budget: None,
            counters: TierCounters::default(),
            average_cost: AtomicU64::new(PAGE),
            sizes_known: AtomicBool::new(false),
            maintenance: None,
            vacated: AtomicBool::new(false),
            moved_since_aging: AtomicU64::new(0),
            victim_heat: AtomicU8::new(0),
        }
    }

    /// With a budget of `bytes`: the policy keeps the pages counted in this
    /// tier between the watermarks of it, and a backup that would take the
    /// tier past it goes to a tier below. Ignored on the last tier.
    ///
    /// A budget below one page's cost (zero included) makes the tier a
    /// last resort: backups go below, nothing is promoted into it, and it
    /// takes pages only when every tier below refuses them (full or
    /// failing), from where the policy moves them down again.
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// With `maintenance` run by the policy after a step when pages left the
    /// tier since the last one: for a backend whose space comes back only
    /// when asked (compaction of a compressed arena, release of deferred
    /// slots). The policy thread, or the caller of
    /// [`Tiered::run_policy_step`], runs it.
    pub fn with_maintenance(mut self, maintenance: impl Fn() + Send + Sync + 'static) -> Self {
        self.maintenance = Some(Box::new(maintenance));
        self
    }

    /// The tier's backend.
    pub fn backend(&self) -> &dyn BackupBackend {
        &*self.backend
    }

    /// The cost to count for `handle`, a page just stored in this tier, and
    /// whether that is its real size.
    fn cost_of(&self, handle: Handle) -> (u32, bool) {
        match self.backend.stored_size(handle) {
            Some(bytes) => {
                self.sizes_known.store(true, Ordering::Relaxed);
                (bytes.min(u64::from(u32::MAX)) as u32, true)
            }
            None => (self.average_cost.load(Ordering::Relaxed) as u32, false),
        }
    }

    /// Notes that a page left the tier (one shared write per maintenance run).
    fn vacate(&self) {
        if self.maintenance.is_some() && !self.vacated.load(Ordering::Relaxed) {
            self.vacated.store(true, Ordering::Relaxed);
        }
    }

    /// `fraction` of the budget in bytes (`None` without a budget).
    pub(crate) fn mark(&self, fraction: f64) -> Option<u64> {
        self.budget.map(|budget| (budget as f64 * fraction) as u64)
    }

    /// Whether the tier holds more than `fraction` of its budget.
    pub(crate) fn above(&self, fraction: f64) -> bool {
        self.mark(fraction).is_some_and(|mark| self.counters.held() > mark)
    }
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("backend", &self.backend)
            .field("budget", &self.budget)
            .field("counters", &self.counters)
            .field("maintenance", &self.maintenance.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a page is, as the policy found it: enough to move it and to check,
/// at the switch, that nobody dropped or moved it meanwhile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub(crate) shard: usize,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) entry: Entry,
}

/// A page found by the policy and its rank (lower goes first).
#[derive(Debug)]
pub(crate) struct Ranked<K> {
    key: K,
    found: Located,
}

impl<K: Ord> PartialEq for Ranked<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Ord> Eq for Ranked<K> {}

impl<K: Ord> PartialOrd for Ranked<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> Ord for Ranked<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// The state the backend and its policy thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) codec: HandleCodec,
    pub(crate) shards: Shards<Table>,
    pub(crate) tiers: Box<[Tier]>,
    pub(crate) config: TieredConfig,
    pub(crate) clock: Clock,
    pub(crate) limiter: Limiter,
    /// Held by a policy run or writeback: one at a time.
    pub(crate) mover: Mutex<()>,
    pub(crate) wake: Wake,
    pub(crate) runs: AtomicU64,
    pub(crate) last_stop: Mutex<Option<crate::Stop>>,
    pub(crate) failed_backups: AtomicU64,
    pub(crate) failed_restores: AtomicU64,
    pub(crate) failed_releases: AtomicU64,
    pub(crate) writeback_pages: AtomicU64,
    /// Copies the table no longer maps whose release failed, by tier:
    /// retried after every policy run and writeback until they are freed.
    pub(crate) unreleased: Mutex<Vec<(usize, Handle)>>,
}

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
///   count halved each time the tier turns over); the policy moves the
///   least restored lately first and, among equals, the longest idle (with
///   no restores, that is idle order alone). A backup that
///   would take it past its budget goes to the next tier with room (or, when
///   every tier below is full, to any tier that takes it).
/// - **Poorly stored pages** ([`HugePolicy`](crate::HugePolicy)) go first, or at once.
/// - [`BackupFlags::writeback`] sends a page straight to the last tier.
/// - [`writeback`](Self::writeback) moves pages by filter on request;
///   the automatic mode (a background thread, [`TieredConfig::auto`]) runs
///   the policy by itself; [`run_policy_step`](Self::run_policy_step) runs
///   one step from any caller (an async task, a timer).
/// - **No loss while pages move**: a move copies the page down, switches
///   the mapping if the page is still where it was copied from, then drops
///   the upper copy. A failure at any step leaves the page where it was,
///   readable; a restore racing a move retries on the new mapping, a drop
///   racing a move makes the move discard its copy.
/// - **No tier I/O under the table's locks**: a restore looks its page up
///   and releases the shard lock before its tier's restore; a drop marks
///   its page, drops it in its tier outside the lock (a move meanwhile
///   leaves the page alone), then frees the handle, or clears the mark if
///   the tier's drop failed.
/// - `NoSpace` from a lower tier stops moves, not backups. A move in flight
///   holds its page in both tiers for a moment, so with every tier full a
///   backup may see `NoSpace` that a moment later would have fit.
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
pub struct Tiered {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl Tiered {
    /// A tiered backend over `tiers` (at least two, first the fastest).
    ///
    /// Fails with [`BackupError::InvalidInput`] for fewer than two or more
    /// than 64 tiers, or watermarks outside `0 <= low <= high <= 1`.
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
            mover: Mutex::new(()),
            wake: Wake::default(),
            runs: AtomicU64::new(0),
            last_stop: Mutex::new(None),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
            failed_releases: AtomicU64::new(0),
            writeback_pages: AtomicU64::new(0),
            unreleased: Mutex::new(Vec::new()),
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

impl Shared {
    fn origin(op: Operation) -> Origin {
        Origin::new(NAME, op)
    }

    fn invalid(op: Operation, handle: Handle) -> BackupError {
        BackupError::InvalidHandle {
            origin: Self::origin(op),
            handle,
        }
    }

    /// The shard, local slot and generation `handle` names.
    fn locate(&self, handle: Handle) -> (usize, u32, u32) {
        let (global, generation) = self.codec.decode(handle);
        let (shard, slot) = self.shards.split(global);
        (shard, slot, generation)
    }

    /// Runs `f` on the live entry of `handle` under its shard's lock.
    fn with_entry<R>(&self, handle: Handle, op: Operation, f: impl FnOnce(&mut Entry) -> R) -> Result<R> {
        let (shard, slot, generation) = self.locate(handle);
        let mut table = self.shards.lock(shard);
        table
            .get(slot, generation)
            .map(f)
            .ok_or_else(|| Self::invalid(op, handle))
    }

    /// Stores `page` in tier `index` and counts it there: the entry for
    /// it, or `None` if a page more would take the tier past `within` of its
    /// budget (the room is reserved first, so that racing backups cannot
    /// overshoot it together).
    pub(crate) fn store_in(
        &self,
        index: usize,
        page: &Page,
        idx: u64,
        flags: BackupFlags,
        within: Option<f64>,
    ) -> Result<Option<Entry>> {
        let tier = &self.tiers[index];
        let estimate = tier.average_cost.load(Ordering::Relaxed) as u32;
        if !tier.counters.reserve(estimate, within.and_then(|f| tier.mark(f))) {
            return Ok(None);
        }
        let inner = match tier.backend.backup_page(page, idx, flags) {
            Ok(inner) => inner,
            Err(e) => {
                tier.counters.cancel(estimate);
                return Err(e);
            }
        };
        let (cost, known) = tier.cost_of(inner);
        tier.counters.commit(estimate, cost);
        let huge = known && self.config.huge.is_some_and(|h| u64::from(cost) > h.threshold);
        Ok(Some(Entry {
            inner,
            tier: index as u8,
            huge,
            cost,
            last_use: self.clock.now(),
            heat: 0,
            dropping: false,
        }))
    }

    /// Places a backup: the last tier first for `writeback`, else the first
    /// tier with room under its budget; past a tier failing with `NoSpace`
    /// or `Io`, the next; then the tiers skipped for want of room, in the
    /// same order. The last error if none takes it.
    fn place(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Entry> {
        let count = self.tiers.len();
        let preferred = (0..count).map(|k| if flags.writeback { (k + count - 1) % count } else { k });
        let mut skipped = 0u64;
        let mut error = None;
        for index in preferred.clone() {
            match self.store_in(index, page, idx, flags, Some(1.0)) {
                Ok(Some(entry)) => return Ok(self.placed(entry)),
                Ok(None) => skipped |= 1 << index,
                Err(e) if falls_through(&e) => error = Some(e),
                Err(e) => return Err(e),
            }
        }
        for index in preferred.filter(|i| skipped & (1 << i) != 0) {
            match self.store_in(index, page, idx, flags, None) {
                Ok(Some(entry)) => return Ok(self.placed(entry)),
                Ok(None) => unreachable!("a store without a bound always has room"),
                Err(e) if falls_through(&e) => error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(error.expect("the last tier has no budget, so some tier was tried"))
    }

    /// Counts a backup placed below the first tier.
    fn placed(&self, entry: Entry) -> Entry {
        if entry.tier != 0 {
            TierCounters::bump(&self.tiers[entry.tier as usize].counters.direct_backups, 1);
        }
        entry
    }

    /// A huge page under `HugePolicy::at_once` moves down now: the caller's
    /// page is backed up one tier lower and the upper copy dropped. If the
    /// lower tier refuses, the page stays where it is.
    fn sink_huge(&self, entry: Entry, page: &Page, idx: u64) -> Entry {
        let at_once = self.config.huge.is_some_and(|h| h.at_once);
        let below = entry.tier as usize + 1;
        if !(entry.huge && at_once && below < self.tiers.len()) {
            return entry;
        }
        match self.store_in(below, page, idx, BackupFlags::NONE, None) {
            Ok(Some(lower)) => {
                self.tiers[entry.tier as usize].counters.remove(entry.cost);
                self.release_inner(entry.tier as usize, entry.inner);
                let from = &self.tiers[entry.tier as usize].counters;
                TierCounters::bump(&from.moved_down, 1);
                TierCounters::bump(&self.tiers[below].counters.written_back_bytes, PAGE);
                lower
            }
            Ok(None) | Err(_) => {
                TierCounters::bump(&self.tiers[entry.tier as usize].counters.failed_moves, 1);
                entry
            }
        }
    }

    /// Drops a copy the table no longer maps (after a move or a lost race);
    /// a copy whose drop fails is kept for [`retry_releases`](Self::retry_releases).
    pub(crate) fn release_inner(&self, tier: usize, inner: Handle) {
        if !self.try_release(tier, inner) {
            self.failed_releases.fetch_add(1, Ordering::Relaxed);
            lock(&self.unreleased).push((tier, inner));
        }
    }

    /// Drops the copy `inner` of tier `tier`: whether it is gone (dropped
    /// now, or already, which `InvalidHandle` says).
    fn try_release(&self, tier: usize, inner: Handle) -> bool {
        self.tiers[tier].vacate();
        match self.tiers[tier].backend.drop_handle(inner) {
            Ok(()) => true,
            Err(e) => e.kind() == ErrorKind::InvalidHandle,
        }
    }

    /// Drops again the copies whose release failed; those that fail again
    /// stay for the next time.
    pub(crate) fn retry_releases(&self) {
        let unreleased = std::mem::take(&mut *lock(&self.unreleased));
        let left = unreleased
            .into_iter()
            .filter(|&(tier, inner)| !self.try_release(tier, inner));
        lock(&self.unreleased).extend(left.collect::<Vec<_>>());
    }

    fn backup(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        let placed = self.place(page, idx, flags).inspect_err(|_| {
            self.failed_backups.fetch_add(1, Ordering::Relaxed);
        })?;
        let entry = self.sink_huge(placed, page, idx);
        if flags.writeback && entry.tier as usize == self.tiers.len() - 1 {
            self.writeback_pages.fetch_add(1, Ordering::Relaxed);
        }
        let shard = self.shards.mine();
        let tier = &self.tiers[entry.tier as usize];
        let Some((slot, generation)) = self.shards.lock(shard).insert(entry) else {
            tier.counters.remove(entry.cost);
            self.release_inner(entry.tier as usize, entry.inner);
            self.failed_backups.fetch_add(1, Ordering::Relaxed);
            return Err(BackupError::NoSpace {
                origin: Self::origin(Operation::BackupPage),
                detail: format!("all {} handles of shard {shard} are in use", self.shards.local_slots()),
            });
        };
        if tier.above(self.config.high) {
            self.wake.kick();
        }
        Ok(self.codec.encode(self.shards.slot(shard, slot), generation))
    }

    fn restore(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        if intr.is_some_and(Interrupt::is_interrupted) {
            return Err(BackupError::Interrupted {
                origin: Self::origin(Operation::CopyPage),
            });
        }
        let now = self.clock.now();
        let mut tried = None;
        loop {
            let entry = self.with_entry(handle, Operation::CopyPage, |e| {
                e.last_use = now;
                e.heat = e.heat.saturating_add(1);
                *e
            })?;
            match self.tiers[entry.tier as usize]
                .backend
                .copy_page(dst, entry.inner, intr)
            {
                Ok(()) => {
                    if self.config.promote && entry.tier > 0 && self.admits(entry.heat) {
                        self.promote(handle, entry, dst);
                    }
                    return Ok(());
                }
                // The page moved (or was dropped) between the lookup and the
                // copy: look again, unless it is still where it was.
                Err(e) if e.kind() == ErrorKind::InvalidHandle && tried != Some(entry.inner) => {
                    tried = Some(entry.inner);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a page restored from below with `heat` restores since it
    /// went there has proven hot enough for the first tier: restored twice
    /// at least, hotter than the page the policy would move out of the
    /// first tier next (as of its last run there), and within the first
    /// tier's budget. A page no hotter than what it would displace stays
    /// below, so an access pattern wider than the first tier does not churn
    /// pages up and down (no promotion storms).
    fn admits(&self, heat: u8) -> bool {
        let top = &self.tiers[0];
        if heat < PROMOTE_HEAT {
            return false;
        }
        // Past the budget (a tiny or zero one too) nothing comes up, and
        // nothing is taken from the rate limit for it.
        let fits = top
            .mark(1.0)
            .is_none_or(|mark| top.counters.held() + top.average_cost.load(Ordering::Relaxed) <= mark);
        fits && heat > top.victim_heat.load(Ordering::Relaxed)
    }

    /// Copies a page just restored from a lower tier back to the first tier,
    /// if that stays within its budget and the rate limit; past the high
    /// watermark, the policy then moves the first tier's coldest pages down.
    fn promote(&self, handle: Handle, entry: Entry, page: &Page) {
        if !self.limiter.take(PAGE) {
            return;
        }
        let (shard, slot, generation) = self.locate(handle);
        let Ok(Some(upper)) = self.store_in(0, page, u64::from(slot), BackupFlags::NONE, Some(1.0)) else {
            return;
        };
        if self.tiers[0].above(self.config.high) {
            self.wake.kick();
        }
        let found = Located {
            shard,
            slot,
            generation,
            entry,
        };
        if self.switch(found, upper) {
            TierCounters::bump(&self.tiers[entry.tier as usize].counters.moved_up, 1);
        }
    }

    /// Points a page found at `found` at `to` (a copy already stored and
    /// counted in its tier) instead, if it is still live and where it was
    /// found, then drops the old copy; else drops `to`. Returns whether it
    /// switched.
    pub(crate) fn switch(&self, found: Located, mut to: Entry) -> bool {
        let mut table = self.shards.lock(found.shard);
        match table.get(found.slot, found.generation) {
            Some(entry) if !entry.dropping && entry.tier == found.entry.tier && entry.inner == found.entry.inner => {
                to.last_use = entry.last_use;
                // A page moved down starts cold there; one moved up keeps its heat.
                to.heat = if to.tier > entry.tier { 0 } else { entry.heat };
                *entry = to;
                drop(table);
                self.tiers[found.entry.tier as usize].counters.remove(found.entry.cost);
                self.release_inner(found.entry.tier as usize, found.entry.inner);
                true
            }
            _ => {
                drop(table);
                self.tiers[to.tier as usize].counters.remove(to.cost);
                self.release_inner(to.tier as usize, to.inner);
                false
            }
        }
    }

    /// Moves the page at `found` to tier `to` through `buf`: copy, switch,
    /// drop above.
    pub(crate) fn move_page(&self, found: Located, to: usize, buf: &mut Page) -> Result<bool> {
        let from = &self.tiers[found.entry.tier as usize];
        match from.backend.copy_page(buf, found.entry.inner, None) {
            Ok(()) => {}
            // Dropped or moved since it was found.
            Err(e) if e.kind() == ErrorKind::InvalidHandle => return Ok(false),
            Err(e) => return Err(e),
        }
        let global = self.shards.slot(found.shard, found.slot);
        let lower = self
            .store_in(to, buf, u64::from(global), BackupFlags::NONE, None)?
            .expect("a store without a bound always has room");
        Ok(self.switch(found, lower))
    }

    fn drop_page(&self, handle: Handle) -> Result<()> {
        let (shard, slot, generation) = self.locate(handle);
        // Marked under the lock, dropped inside its tier outside it: the
        // mark keeps moves from switching the page away meanwhile, and a
        // failed drop clears it, leaving the handle live.
        let entry = {
            let mut table = self.shards.lock(shard);
            let entry = table
                .get(slot, generation)
                .filter(|e| !e.dropping)
                .ok_or_else(|| Self::invalid(Operation::DropHandle, handle))?;
            entry.dropping = true;
            *entry
        };
        let tier = &self.tiers[entry.tier as usize];
        let dropped = tier.backend.drop_handle(entry.inner);
        let mut table = self.shards.lock(shard);
        if let Err(e) = dropped {
            if let Some(live) = table.get(slot, generation) {
                live.dropping = false;
            }
            return Err(e);
        }
        table.remove(slot, generation);
        drop(table);
        tier.vacate();
        tier.counters.remove(entry.cost);
        Ok(())
    }

    /// The live pages of tier `tier` that `rank` selects, up to `keep` of
    /// them with the lowest ranks, in rank order, with where they are (and
    /// their heat as it was); with `age`, every live page's heat is halved,
    /// in all tiers. Pages being dropped are left out.
    pub(crate) fn coldest_in<K: Ord>(
        &self,
        tier: usize,
        age: bool,
        keep: usize,
        rank: impl Fn(&Entry) -> Option<K>,
    ) -> Vec<Located> {
        let mut kept: BinaryHeap<Ranked<K>> = BinaryHeap::new();
        for shard in 0..self.shards.len() {
            let mut table = self.shards.lock(shard);
            for (slot, generation, entry) in table.live() {
                if entry.tier as usize == tier
                    && !entry.dropping
                    && keep > 0
                    && let Some(key) = rank(entry)
                    && (kept.len() < keep || kept.peek().is_some_and(|warmest| key < warmest.key))
                {
                    if kept.len() == keep {
                        kept.pop();
                    }
                    kept.push(Ranked {
                        key,
                        found: Located {
                            shard,
                            slot,
                            generation,
                            entry: *entry,
                        },
                    });
                }
                if age {
                    entry.heat /= 2;
                }
            }
        }
        kept.into_sorted_vec().into_iter().map(|r| r.found).collect()
    }

    fn tier_stats(tier: &Tier) -> TierStats {
        let c = &tier.counters;
        TierStats {
            name: tier.backend.name(),
            budget: tier.budget,
            pages: c.pages.load(Ordering::Relaxed),
            held_bytes: c.held(),
            moved_down: c.moved_down.load(Ordering::Relaxed),
            moved_up: c.moved_up.load(Ordering::Relaxed),
            written_back_bytes: c.written_back_bytes.load(Ordering::Relaxed),
            failed_moves: c.failed_moves.load(Ordering::Relaxed),
            direct_backups: c.direct_backups.load(Ordering::Relaxed),
            backend: tier.backend.stats(),
        }
    }
}

/// Whether a backup that failed so in one tier is tried in the others: a
/// full tier (`NoSpace`) or a failing one (`Io`, a cold tier's device or
/// server) does not fail a backup that another tier can hold.
fn falls_through(e: &BackupError) -> bool {
    matches!(e.kind(), ErrorKind::NoSpace | ErrorKind::Io)
}

/// Locks `m`, a list that stays consistent whatever panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Flushes every tier.
    fn flush(&self) -> Result<()> {
        self.shared.tiers.iter().try_for_each(|t| t.backend.flush())
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
