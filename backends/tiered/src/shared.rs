//! [`Shared`]: the state the backend and its policy thread share, and the
//! moves on it (backup, restore, drop, the switch of a moved page), with
//! [`Wake`], how backups wake the policy thread or task.

use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use pagebackup_core::raw::{HandleCodec, Shards};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BatchError, ErrorKind, Handle, Interrupt, Operation, Origin, Page, Result,
};

use crate::batch::{Batch, InFlight, batch_len};
use crate::rate::Limiter;
use crate::stats::{TierCounters, TierStats};
use crate::table::{Clock, Entry, Flag, Kept, Table};
use crate::tier::{PAGE, Tier};
use crate::{Policy, TieredConfig};

pub(crate) const NAME: &str = "tiered";
/// Restores since a page went down before it is promoted.
const PROMOTE_HEAT: u8 = 2;
/// Promotions that may wait for the policy thread or task.
const DEFERRED: usize = 1024;
/// Promotions waiting that wake the policy thread or task before its
/// interval is up: fewer make it wait for the interval, so that it wakes
/// once per batch, not once per page.
const PROMOTION_BATCH: usize = 64;
/// Table slots a policy scan visits per hold of a shard's lock.
const SCAN_STEP: usize = 512;

/// Where a page is, as the policy found it: enough to move it and to check,
/// at the switch, that nobody dropped or moved it meanwhile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub(crate) shard: usize,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) entry: Entry,
}

impl Located {
    /// Whether `entry` (the page's entry now) is still the one found: not
    /// being dropped, in the same tier under the same handle there.
    pub(crate) fn still(&self, entry: &Entry) -> bool {
        !entry.is(Flag::Dropping) && entry.tier == self.entry.tier && entry.inner == self.entry.inner
    }
}

/// The copies a [`Shared::remap`] left unmapped, to release outside the
/// table's lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unmapped {
    /// The copy the page was served from (its handle and cost in the tier
    /// it was found in); `None` when it stays, kept below a promoted page.
    pub(crate) old: Option<(Handle, u32)>,
    /// A copy the page kept below that is no longer below it.
    pub(crate) stale: Option<Kept>,
}

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// The page was copied to the tier below.
    Copied,
    /// The page went down to the copy it had kept there.
    ToKept,
    /// The page was dropped or moved by someone else meanwhile; nothing moved.
    Raced,
    /// The page could not be read from its tier or stored in the other; it
    /// stays where it was.
    Failed,
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

/// What a policy run or writeback reuses from one run to the next, held
/// with [`Shared::mover`]: the list that deferred promotions are taken
/// into, where their pages were found, and what batches of moves and
/// promotions reuse.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) handles: Vec<Handle>,
    pub(crate) waiting: Vec<Located>,
    pub(crate) batch: Batch,
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
    /// Held by a policy run or writeback: one at a time, with what they
    /// reuse from one run to the next.
    pub(crate) mover: Mutex<Scratch>,
    pub(crate) wake: Wake,
    pub(crate) runs: AtomicU64,
    pub(crate) last_stop: Mutex<Option<crate::Stop>>,
    pub(crate) failed_backups: AtomicU64,
    pub(crate) failed_restores: AtomicU64,
    pub(crate) failed_releases: AtomicU64,
    pub(crate) writeback_pages: AtomicU64,
    /// Promotions restores left to the policy thread or task (by handle).
    pub(crate) promotions: Mutex<Vec<Handle>>,
    /// A policy thread or task runs, so restores leave promotions to it.
    pub(crate) deferred: AtomicBool,
    /// Copies the table no longer maps whose release failed, by tier:
    /// retried after every policy run and writeback until they are freed.
    pub(crate) unreleased: Mutex<Vec<(usize, Handle)>>,
    /// The batch of moves in flight, which drops of its pages wait for.
    pub(crate) in_flight: InFlight,
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
    pub(crate) fn with_entry<R>(&self, handle: Handle, op: Operation, f: impl FnOnce(&mut Entry) -> R) -> Result<R> {
        self.in_table(handle, op, |table, slot, generation| table.get(slot, generation).map(f))
    }

    /// Runs `f` on the shard table of `handle` under its lock, with the
    /// handle's slot and generation there; `InvalidHandle` if it gives `None`.
    fn in_table<R>(
        &self,
        handle: Handle,
        op: Operation,
        f: impl FnOnce(&mut Table, u32, u32) -> Option<R>,
    ) -> Result<R> {
        let (shard, slot, generation) = self.locate(handle);
        f(&mut self.shards.lock(shard), slot, generation).ok_or_else(|| Self::invalid(op, handle))
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
        let estimate = tier.average_cost.load(Ordering::Relaxed);
        if !tier.counters.reserve(estimate, within.and_then(|f| tier.mark(f))) {
            return Ok(None);
        }
        match tier.backend.backup_page(page, idx, flags) {
            Ok(inner) => Ok(Some(self.stored(index, inner, estimate))),
            Err(e) => {
                tier.counters.cancel(estimate);
                Err(e)
            }
        }
    }

    /// [`store_in`](Self::store_in) for a batch, with no bound (a move's
    /// stores): stores `pages` in tier `index` in one
    /// [`backup_pages`](BackupBackend::backup_pages), page `k` at index
    /// `first_idx + k`, and appends the entry of each page stored to
    /// `entries` (`inners` is the batch's scratch). On error, by the batch
    /// rule, the pages before the failing one are stored, counted and in
    /// `entries`, and the others hold nothing, not even a reservation.
    pub(crate) fn store_all_in(
        &self,
        index: usize,
        pages: &[&Page],
        first_idx: u64,
        inners: &mut Vec<Handle>,
        entries: &mut Vec<Entry>,
    ) -> Result<(), BatchError> {
        let tier = &self.tiers[index];
        let estimate = tier.average_cost.load(Ordering::Relaxed);
        // Without a bound the reservation always succeeds.
        tier.counters.reserve(estimate * pages.len() as u64, None);
        inners.clear();
        let stored = tier.backend.backup_pages(pages, first_idx, BackupFlags::NONE, inners);
        entries.extend(inners.iter().map(|&inner| self.stored(index, inner, estimate)));
        let unused = pages.len().saturating_sub(inners.len());
        tier.counters.cancel(estimate * unused as u64);
        stored
    }

    /// Counts `inner`, a page just stored in tier `index`, there in place
    /// of its reservation of `estimate` bytes: its entry.
    fn stored(&self, index: usize, inner: Handle, estimate: u64) -> Entry {
        let tier = &self.tiers[index];
        let (cost, known) = tier.cost_of(inner);
        tier.counters.commit(estimate, cost);
        let huge = known && self.config.huge.is_some_and(|h| u64::from(cost) > h.threshold);
        Entry::new(inner, index as u8, cost, huge, self.clock.now())
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
        if !(entry.is(Flag::Huge) && at_once && below < self.tiers.len()) {
            return entry;
        }
        match self.store_in(below, page, idx, BackupFlags::NONE, None) {
            Ok(Some(lower)) => {
                self.release(entry.tier as usize, entry.inner, entry.cost);
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

    /// Drops a copy the table no longer maps from tier `tier`, then takes
    /// its `cost` out of the tier's counters: in that order, so that a
    /// backup reserving the room freed never lands while the old copy is
    /// still stored, and the tier's backend holds no more than its budget.
    pub(crate) fn release(&self, tier: usize, inner: Handle, cost: u32) {
        self.release_all(tier, &[inner], u64::from(cost));
    }

    /// [`release`](Self::release) for many copies of tier `tier`, `bytes`
    /// in all: one [`drop_handles`](BackupBackend::drop_handles), then the
    /// counters.
    pub(crate) fn release_all(&self, tier: usize, inners: &[Handle], bytes: u64) {
        if inners.is_empty() {
            return;
        }
        self.drop_copies(tier, inners);
        self.tiers[tier].counters.remove(inners.len() as u64, bytes);
    }

    /// [`release`](Self::release) for a kept copy.
    pub(crate) fn release_kept(&self, kept: Kept) {
        self.drop_copies(kept.tier as usize, &[kept.inner]);
        self.tiers[kept.tier as usize].counters.remove_kept(kept.cost);
    }

    /// Drops copies of tier `tier` the table no longer maps (after moves or
    /// lost races), in one batch; past a copy whose drop fails, the rest
    /// are dropped in another, and the failed one is kept for
    /// [`retry_releases`](Self::retry_releases).
    fn drop_copies(&self, tier: usize, inners: &[Handle]) {
        self.tiers[tier].vacate();
        let mut rest = inners;
        while let Err(e) = self.tiers[tier].backend.drop_handles(rest) {
            let Some((&failed, after)) = rest.get(e.completed..).and_then(<[Handle]>::split_first) else {
                break;
            };
            if !gone(&e.error) {
                self.failed_releases.fetch_add(1, Ordering::Relaxed);
                lock(&self.unreleased).push((tier, failed));
            }
            rest = after;
        }
    }

    /// Drops the copy `inner` of tier `tier`: whether it is gone (dropped
    /// now, or already).
    fn try_release(&self, tier: usize, inner: Handle) -> bool {
        self.tiers[tier].vacate();
        self.tiers[tier]
            .backend
            .drop_handle(inner)
            .err()
            .is_none_or(|e| gone(&e))
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

    pub(crate) fn backup(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
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
            self.release(entry.tier as usize, entry.inner, entry.cost);
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

    pub(crate) fn restore(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        if intr.is_some_and(Interrupt::is_interrupted) {
            return Err(BackupError::Interrupted {
                origin: Self::origin(Operation::CopyPage),
            });
        }
        let now = self.clock.now();
        let mut tried = None;
        loop {
            let entry = self.in_table(handle, Operation::CopyPage, |table, slot, generation| {
                table.restored(slot, generation, now)
            })?;
            match self.tiers[entry.tier as usize]
                .backend
                .copy_page(dst, entry.inner, intr)
            {
                Ok(()) => {
                    if self.config.promote && entry.tier > 0 && self.admits(entry.heat) {
                        if self.deferred.load(Ordering::Relaxed) {
                            self.defer_promotion(handle);
                        } else {
                            self.promote(self.located(handle, entry), dst);
                        }
                    }
                    return Ok(());
                }
                // The page moved (or was dropped) between the lookup and the
                // copy: look again, unless it is still where it was.
                Err(e) if e.kind() == ErrorKind::InvalidHandle && tried != Some(entry.inner) => {
                    tried = Some(entry.inner);
                }
                // The upper copy failed (a failing device, corrupt data):
                // the copy kept below holds the same bytes.
                Err(e)
                    if entry.is(Flag::Kept)
                        && !matches!(e.kind(), ErrorKind::InvalidHandle | ErrorKind::Interrupted) =>
                {
                    let kept = self.in_table(handle, Operation::CopyPage, |table, slot, generation| {
                        let entry = *table.get(slot, generation)?;
                        table.kept(slot, &entry)
                    });
                    return match kept {
                        Ok(k)
                            if self.tiers[k.tier as usize]
                                .backend
                                .copy_page(dst, k.inner, intr)
                                .is_ok() =>
                        {
                            Ok(())
                        }
                        // The page moved down to its kept copy meanwhile,
                        // which now serves it: look again, once.
                        Err(_) if tried != Some(entry.inner) => {
                            tried = Some(entry.inner);
                            continue;
                        }
                        _ => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a page restored from below with `heat` restores since it
    /// went there has proven hot enough for the first tier: restored twice
    /// at least, within the first tier's budget, and under [`Policy::Lfu`]
    /// clearly hotter than the page the policy would move out of the first
    /// tier next (as of its last run there), TinyLFU's admission test with
    /// a margin, even with room under the watermarks: restored at least
    /// twice as often as that victim, counting one more restore for each.
    /// A page no hotter than what it would displace stays below, so an
    /// access pattern wider than the first tier does not churn pages up
    /// and down (no promotion storms; letting pages restored twice into the
    /// room under the high watermark moved 40% more pages and took the
    /// policy thread from 3% to 7% of a core on a Zipf 0.99 replay, for no
    /// more restores served from the first tier). The margin is for the
    /// long tail of Zipf, where pages on both sides of the first tier's
    /// edge are restored about as often: with `heat > victim` alone, the
    /// measured pass of `bench --working-set 16384 --zipf 0.99` over lz4
    /// and zstd-9 with a 4 MiB budget moved 980–1020 pages down and
    /// 570–800 up; with the margin 0–500 down and 120–420 up, for the
    /// same 91–92% of hot restores served from the first tier (3 runs
    /// each, a loaded machine). A promotion costs a decode below and an
    /// encode above, and a move down the encode below unless a copy was
    /// kept. Under [`Policy::S3Fifo`] two restores below are the ghost hit
    /// that sends a page to the main FIFO.
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
        fits && match self.config.policy {
            Policy::Lfu => u16::from(heat) >= 2 * (u16::from(top.victim_heat.load(Ordering::Relaxed)) + 1),
            Policy::S3Fifo => true,
        }
    }

    /// Leaves the promotion of the page of `handle` to the policy thread or
    /// task: the restore returns without compressing the page for the first
    /// tier. A page waits once in the queue, however often it is restored
    /// meanwhile. The policy takes the queue at its next run, which
    /// [`PROMOTION_BATCH`] pages waiting bring forward. Past [`DEFERRED`]
    /// waiting, the page stays below until it proves hot again.
    fn defer_promotion(&self, handle: Handle) {
        let queued = |on| self.with_entry(handle, Operation::CopyPage, |e| e.set(Flag::Queued, on));
        if !matches!(queued(true), Ok(false)) {
            return;
        }
        {
            let mut waiting = lock(&self.promotions);
            if waiting.len() < DEFERRED {
                waiting.push(handle);
                let batch = waiting.len() >= PROMOTION_BATCH;
                drop(waiting);
                if batch {
                    self.wake.kick();
                }
                return;
            }
        }
        let _ = queued(false);
    }

    /// Promotes the pages restores left to the policy: those still below
    /// are read again from their tier, in batches of one tier
    /// ([`promote_batch`](Self::promote_batch)), and copied up, within the
    /// first tier's budget and the rate limit.
    pub(crate) fn promote_deferred(&self, scratch: &mut Scratch) {
        // The queue and the scratch list trade places, so that neither is
        // allocated again once both have grown.
        std::mem::swap(&mut *lock(&self.promotions), &mut scratch.handles);
        scratch.waiting.clear();
        for &handle in &scratch.handles {
            let Ok(entry) = self.with_entry(handle, Operation::Maintenance, |e| {
                e.set(Flag::Queued, false);
                *e
            }) else {
                continue;
            };
            if entry.tier != 0 && !entry.is(Flag::Dropping) {
                scratch.waiting.push(self.located(handle, entry));
            }
        }
        scratch.handles.clear();
        // Pages of one tier together, each tier's in the order they came.
        scratch.waiting.sort_by_key(|found| found.entry.tier);
        let mut rest = &scratch.waiting[..];
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(batch_len(rest, u64::MAX));
            self.promote_batch(batch, &mut scratch.batch);
            rest = after;
        }
    }

    /// Copies a page just restored from a lower tier back to the first tier,
    /// if that stays within its budget and the rate limit; past the high
    /// watermark, the policy then moves the first tier's coldest pages down.
    pub(crate) fn promote(&self, found: Located, page: &Page) {
        if !self.limiter.take(PAGE) {
            return;
        }
        let idx = u64::from(found.slot);
        let Ok(Some(upper)) = self.store_in(0, page, idx, BackupFlags::NONE, Some(1.0)) else {
            return;
        };
        if self.tiers[0].above(self.config.high) {
            self.wake.kick();
        }
        if self.switch(found, upper) {
            TierCounters::bump(&self.tiers[found.entry.tier as usize].counters.moved_up, 1);
            TierCounters::bump(&self.tiers[0].main_pages, 1);
        }
    }

    /// Where the page of `handle`, whose entry is `entry`, is.
    fn located(&self, handle: Handle, entry: Entry) -> Located {
        let (shard, slot, generation) = self.locate(handle);
        Located {
            shard,
            slot,
            generation,
            entry,
        }
    }

    /// Points a page found at `found` at `to` (a copy already stored and
    /// counted in its tier) instead, if it is still live and where it was
    /// found, then drops the old copy (keeps it, for a promotion under
    /// [`TieredConfig::keep_lower`]); else drops `to`. A kept copy below
    /// stays while it is below the page's new tier. Returns whether it
    /// switched.
    pub(crate) fn switch(&self, found: Located, to: Entry) -> bool {
        let Some(unmapped) = self.remap(found, to) else {
            self.release(to.tier as usize, to.inner, to.cost);
            return false;
        };
        if let Some((inner, cost)) = unmapped.old {
            self.release(found.entry.tier as usize, inner, cost);
        }
        if let Some(k) = unmapped.stale {
            self.release_kept(k);
        }
        true
    }

    /// The table's part of [`switch`](Self::switch), under the shard's
    /// lock: points the page at `to` if it is still where it was found,
    /// and returns the copies that then need releasing (outside the lock,
    /// by the caller); `None` if the page was dropped or moved meanwhile,
    /// `to` then left to the caller to release.
    pub(crate) fn remap(&self, found: Located, mut to: Entry) -> Option<Unmapped> {
        let mut table = self.shards.lock(found.shard);
        let old = table
            .get(found.slot, found.generation)
            .map(|e| *e)
            .filter(|e| found.still(e))?;
        to.last_use = old.last_use;
        // A page moved down starts cold there, in its small FIFO; one moved
        // up keeps its heat and goes to the main FIFO.
        let up = to.tier < old.tier;
        to.heat = if up { old.heat } else { 0 };
        to.set(Flag::Main, up);
        to.set(Flag::Moving, old.is(Flag::Moving));
        let mut kept = table.take_kept(found.slot, &old);
        // A promotion keeps the copy it came from, unless it kept one already.
        let keep_old = up && self.config.keep_lower && kept.is_none();
        if keep_old {
            kept = Some(Kept {
                inner: old.inner,
                tier: old.tier,
                cost: old.cost,
            });
        }
        let stale = kept.filter(|k| k.tier <= to.tier);
        if stale.is_some() {
            kept = None;
        }
        to.set(Flag::Kept, kept.is_some());
        if let Some(k) = kept {
            table.keep(found.slot, k);
        }
        if let Some(entry) = table.get(found.slot, found.generation) {
            *entry = to;
        }
        if keep_old {
            // Counted kept before the lock lets a drop see (and uncount) it.
            self.tiers[old.tier as usize].counters.keep();
        }
        Some(Unmapped {
            old: (!keep_old).then_some((old.inner, old.cost)),
            stale,
        })
    }

    /// Moves the page at `found` down to its kept copy in tier `to`, if it
    /// has one there: the kept copy serves it again and the upper copy is
    /// dropped. `None` if it has no kept copy in `to` (the page must be
    /// copied down).
    pub(crate) fn fall_back(&self, found: Located, to: usize) -> Option<Moved> {
        let mut table = self.shards.lock(found.shard);
        let old = table.get(found.slot, found.generation).map(|e| *e);
        let Some(old) = old.filter(|e| found.still(e)) else {
            return Some(Moved::Raced);
        };
        let kept = table.kept(found.slot, &old).filter(|k| k.tier as usize == to)?;
        table.take_kept(found.slot, &old);
        let lower = &self.tiers[to];
        let huge = lower.sizes_known.load(Ordering::Relaxed)
            && self.config.huge.is_some_and(|h| u64::from(kept.cost) > h.threshold);
        if let Some(entry) = table.get(found.slot, found.generation) {
            *entry = Entry::new(kept.inner, kept.tier, kept.cost, huge, self.clock.now());
            entry.last_use = old.last_use;
            entry.set(Flag::Moving, old.is(Flag::Moving));
        }
        // Counted serving before the lock lets a drop see (and uncount) it.
        lower.counters.serve_kept();
        drop(table);
        self.release(old.tier as usize, old.inner, old.cost);
        Some(Moved::ToKept)
    }

    pub(crate) fn drop_page(&self, handle: Handle) -> Result<()> {
        let (shard, slot, generation) = self.locate(handle);
        // Marked under the lock, dropped inside its tier outside it: the
        // mark keeps moves from switching the page away meanwhile, and a
        // failed drop clears it, leaving the handle live.
        let entry = {
            let mut table = self.shards.lock(shard);
            let entry = table
                .get(slot, generation)
                .filter(|e| !e.is(Flag::Dropping))
                .ok_or_else(|| Self::invalid(Operation::DropHandle, handle))?;
            entry.set(Flag::Dropping, true);
            *entry
        };
        let tier = &self.tiers[entry.tier as usize];
        let dropped = tier.backend.drop_handle(entry.inner);
        let mut table = self.shards.lock(shard);
        if let Err(e) = dropped {
            if let Some(live) = table.get(slot, generation) {
                live.set(Flag::Dropping, false);
            }
            return Err(e);
        }
        let kept = table.remove(slot, generation).and_then(|(_, kept)| kept);
        drop(table);
        tier.vacate();
        tier.counters.remove(1, u64::from(entry.cost));
        if let Some(k) = kept {
            self.release_kept(k);
        }
        // A batch of moves may hold a copy of the page it made below, or
        // one it has yet to release above: the drop returns once it has
        // released them.
        if entry.is(Flag::Moving) {
            self.in_flight.wait();
        }
        Ok(())
    }

    /// The live pages of tier `tier` that `rank` selects, up to `keep` of
    /// them with the lowest ranks, in rank order, with where they are (and
    /// their entry as `rank` left it; `rank` may update the entry, as
    /// S3-FIFO's queues do); with `age`, every live page's heat is halved,
    /// in all tiers. Pages being dropped are left out.
    pub(crate) fn coldest_in<K: Ord>(
        &self,
        tier: usize,
        age: bool,
        keep: usize,
        mut rank: impl FnMut(&mut Entry) -> Option<K>,
    ) -> Vec<Located> {
        let mut kept: BinaryHeap<Ranked<K>> = BinaryHeap::new();
        // Without aging, only the tier's own pages are visited.
        let only = (!age).then_some(tier as u8);
        self.scan(|shard, table, range| {
            for (slot, generation, entry) in table.live_in(only, range) {
                if entry.tier as usize == tier
                    && !entry.is(Flag::Dropping)
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
        });
        kept.into_sorted_vec().into_iter().map(|r| r.found).collect()
    }

    /// Runs `visit` over every shard's table, [`SCAN_STEP`] slots at a time,
    /// each under a hold of the shard's lock of its own: a restore or
    /// backup of the shard waits for one step of a policy scan at most,
    /// not for all of it. An entry may change between steps; a move checks
    /// at its switch that its page is still where it was found.
    pub(crate) fn scan(&self, mut visit: impl FnMut(usize, &mut Table, Range<usize>)) {
        for shard in 0..self.shards.len() {
            let mut start = 0;
            loop {
                let mut table = self.shards.lock(shard);
                let end = table.slots().min(start + SCAN_STEP);
                if start >= end {
                    break;
                }
                visit(shard, &mut table, start..end);
                start = end;
            }
        }
    }

    pub(crate) fn tier_stats(tier: &Tier) -> TierStats {
        let c = &tier.counters;
        TierStats {
            name: tier.backend.name(),
            budget: tier.budget,
            pages: c.pages.load(Ordering::Relaxed),
            held_bytes: c.held(),
            moved_down: c.moved_down.load(Ordering::Relaxed),
            moved_down_to_kept: c.moved_down_to_kept.load(Ordering::Relaxed),
            kept_pages: c.kept.load(Ordering::Relaxed),
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

/// Whether a copy whose drop failed with `e` is gone all the same: its
/// tier knows its handle no more (it was dropped already).
fn gone(e: &BackupError) -> bool {
    e.kind() == ErrorKind::InvalidHandle
}

/// Locks `m`, a list that stays consistent whatever panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How backups wake the policy thread and the backend stops it.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    /// (kicked, stop)
    pub(crate) state: Mutex<(bool, bool)>,
    pub(crate) changed: Condvar,
    /// A kick is pending: further backups need not take the lock.
    pub(crate) pending: AtomicBool,
    /// How a kick wakes a policy task.
    #[cfg(feature = "async")]
    pub(crate) notify: std::sync::Arc<tokio::sync::Notify>,
}

impl Wake {
    /// Asks the policy thread (if any) to run now.
    pub(crate) fn kick(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
        self.changed.notify_one();
        #[cfg(feature = "async")]
        self.notify.notify_one();
    }

    /// A policy run is starting: later backups may kick again.
    pub(crate) fn taken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}
