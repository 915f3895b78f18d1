//! The policy: which pages move down, and when they stop moving.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use pagebackup_core::{BackupBackend, PAGE_SIZE};

use crate::table::Flag;

use crate::batch::{Batch, batch_len};
use crate::shared::{Located, Shared};
use crate::stats::{PolicyReport, Stop};
use crate::tier::Tier;
use crate::{Policy, WritebackFilter};

const PAGE: u64 = PAGE_SIZE as u64;
/// Restores lately from which a page above with a kept copy below is
/// settled there, and its kept copy released.
const SETTLED_HEAT: u8 = 8;

impl Shared {
    /// See [`Tiered::run_policy_step`](crate::Tiered::run_policy_step).
    pub(crate) fn run_policy_step(&self) -> PolicyReport {
        let mut scratch = self.mover.lock().unwrap_or_else(PoisonError::into_inner);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.promote_deferred(&mut scratch);
        let huge_first = self.config.huge.is_some();
        let mut report = PolicyReport::default();
        for index in 0..self.tiers.len() - 1 {
            let tier = &self.tiers[index];
            let Some(budget) = tier.budget else { continue };
            let usage = self.usage(tier);
            if usage as f64 <= budget as f64 * self.config.high {
                if self.config.trims() {
                    self.trim(index, &mut scratch.batch, &mut report);
                    if report.stopped.is_some() {
                        break;
                    }
                }
                continue;
            }
            // Pages came up since the last run that moved pages out: the
            // settled ones need their copy below no longer.
            self.release_settled(index);
            let target = (budget as f64 * self.config.low) as u64;
            // Copies kept here of pages promoted above go first: dropping one
            // loses nothing but a cheap move down later, so it comes before
            // a page of the tier's own goes down.
            let usage = usage.saturating_sub(self.release_kept_in(index, usage.saturating_sub(target)));
            if usage as f64 <= budget as f64 * self.config.high {
                continue;
            }
            let excess = usage.saturating_sub(target);
            let start = tier.counters.held();
            // Only the coldest pages that may be needed are kept (twice the
            // excess at the tier's average cost, and some for races), so a
            // run's scratch is bounded by what it moves, not the tier's size.
            let average = tier.average_cost.load(Ordering::Relaxed).max(1);
            let keep =
                usize::try_from(excess.div_ceil(average).saturating_mul(2).saturating_add(64)).unwrap_or(usize::MAX);
            let pages = match self.config.policy {
                Policy::Lfu => self.lfu_victims(index, huge_first, keep),
                Policy::S3Fifo => self.s3fifo_victims(index, huge_first, keep),
            };
            let before = report.moved_pages;
            let wanted = || excess.saturating_sub(start.saturating_sub(tier.counters.held()));
            let (stopped, tried) = self.move_all(&pages, index + 1, &mut scratch.batch, &mut report, wanted);
            report.stopped = stopped;
            // The next victim; past the pages kept, the warmest of them.
            let next = pages.get(tried).or(pages.last()).map_or(0, |p| p.entry.heat);
            tier.victim_heat.store(next, Ordering::Relaxed);
            tier.moved_since_aging
                .fetch_add(report.moved_pages - before, Ordering::Relaxed);
            if report.stopped.is_some() {
                break;
            }
        }
        self.finish(report)
    }

    /// Releases the kept copies of the pages of tier `index` that have
    /// settled there: restored at least [`SETTLED_HEAT`] times lately (heat
    /// halves as the policy ages it), so unlikely to move down soon. Their
    /// copies below are RAM spent for a move that is not coming; a settled
    /// page that does cool later is copied down again.
    fn release_settled(&self, index: usize) {
        if self.tiers[index + 1..]
            .iter()
            .all(|t| t.counters.kept.load(Ordering::Relaxed) == 0)
        {
            return;
        }
        let (mut settled, mut slots) = (Vec::new(), Vec::new());
        self.scan(|_, table, range| {
            slots.clear();
            slots.extend(
                table
                    .live_in(Some(index as u8), range)
                    .filter(|(_, _, e)| e.is(Flag::Kept) && !e.is(Flag::Dropping) && e.heat >= SETTLED_HEAT)
                    .map(|(slot, _, e)| {
                        e.set(Flag::Kept, false);
                        slot
                    }),
            );
            settled.extend(slots.iter().filter_map(|&slot| table.take_settled(slot)));
        });
        for kept in settled {
            self.release_kept(kept);
        }
    }

    /// Releases copies kept in tier `index` (a budgeted middle tier) of
    /// pages promoted above it, until `bytes` at least are freed: the
    /// bytes freed.
    fn release_kept_in(&self, index: usize, bytes: u64) -> u64 {
        if self.tiers[index].counters.kept.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let (mut freed, mut taken) = (0, Vec::new());
        for shard in 0..self.shards.len() {
            if freed >= bytes {
                break;
            }
            freed += self
                .shards
                .lock(shard)
                .take_kept_in(index as u8, bytes - freed, &mut taken);
        }
        for kept in taken {
            self.release_kept(kept);
        }
        freed
    }

    /// [`Policy::Lfu`]'s victims in tier `index`: huge pages first (under a
    /// huge policy), then the least restored, then the longest idle. Heat
    /// halves once the tier has turned over (as many pages moved out as it
    /// holds) or ten restores per page of the tier have passed (TinyLFU's
    /// window), so that it counts recent restores, not all: a page of a
    /// long tail restored twice in a long while does not pass for hot.
    fn lfu_victims(&self, index: usize, huge_first: bool, keep: usize) -> Vec<Located> {
        let age = self.aging_due(index, true);
        self.coldest_in(index, age, keep, |e| {
            Some((!(huge_first && e.is(Flag::Huge)), e.heat, e.last_use))
        })
    }

    /// Whether tier `index`'s heat is to be halved now, and if so, starts
    /// its next window: ten restores per page of the tier have passed (and
    /// some page is there), or, with `turnover`, the tier has turned over
    /// (as many pages moved out as it holds).
    fn aging_due(&self, index: usize, turnover: bool) -> bool {
        let tier = &self.tiers[index];
        let pages = tier.counters.pages.load(Ordering::Relaxed);
        let restores: u64 = self.shards.each().map(|t| t.restores).sum();
        let window = pages > 0
            && restores.saturating_sub(tier.restores_at_aging.load(Ordering::Relaxed)) >= pages.saturating_mul(10);
        let age = window || (turnover && tier.moved_since_aging.load(Ordering::Relaxed) >= pages);
        if age {
            tier.moved_since_aging.store(0, Ordering::Relaxed);
            tier.restores_at_aging.store(restores, Ordering::Relaxed);
        }
        age
    }

    /// [`TieredConfig::trim`](crate::TieredConfig::trim) for tier `index`,
    /// under its high watermark: once its window has passed, its pages
    /// restored at most once in it move down, coldest first, and the
    /// coldest page left sets the bar for promotions. Ages the heat of
    /// every tier's pages on the way (those below too, so that a page
    /// below needs its restores within a window or two to come up).
    fn trim(&self, index: usize, batch: &mut Batch, report: &mut PolicyReport) {
        if !self.aging_due(index, false) {
            return;
        }
        // Heat as it is after this halving.
        let mut coldest_left: Option<u8> = None;
        let pages = self.coldest_in(index, true, usize::MAX, |e| {
            if e.heat <= 1 {
                Some((e.heat, e.last_use))
            } else {
                coldest_left = Some(coldest_left.map_or(e.heat / 2, |c| c.min(e.heat / 2)));
                None
            }
        });
        let (stopped, tried) = self.move_all(&pages, index + 1, batch, report, || u64::MAX);
        report.stopped = stopped;
        // A page stopped short of moving is the coldest left.
        let next = pages.get(tried).map(|p| p.entry.heat / 2).or(coldest_left);
        self.tiers[index]
            .victim_heat
            .store(next.unwrap_or(0), Ordering::Relaxed);
    }

    /// [`Policy::S3Fifo`]'s victims in tier `index`, its FIFOs updated on
    /// the way: a page of the small FIFO restored since it came goes to
    /// the main one; one of the main FIFO restored since the last run is
    /// reinserted with one restore less. Huge pages first (under a huge
    /// policy), then the small FIFO's while it holds over a tenth of the
    /// tier's pages, then the main FIFO's; oldest (by the time they entered it) first. (Pages enter the
    /// main FIFO only in these runs and by promotion, so the main FIFO's
    /// size at the last run, plus promotions since, tells the small one's.)
    fn s3fifo_victims(&self, index: usize, huge_first: bool, keep: usize) -> Vec<Located> {
        let tier = &self.tiers[index];
        let pages = tier.counters.pages.load(Ordering::Relaxed);
        let small_first = pages.saturating_sub(tier.main_pages.load(Ordering::Relaxed)) * 10 > pages;
        let now = self.clock.now();
        let mut main = 0;
        let victims = self.coldest_in(index, false, keep, |e| {
            if e.heat > 0 {
                e.heat = if e.is(Flag::Main) { e.heat.min(3) - 1 } else { 0 };
                e.set(Flag::Main, true);
                e.since = now;
            }
            main += u64::from(e.is(Flag::Main));
            Some((
                !(huge_first && e.is(Flag::Huge)),
                e.is(Flag::Main) == small_first,
                e.since,
            ))
        });
        tier.main_pages.store(main, Ordering::Relaxed);
        victims
    }

    /// See [`Tiered::writeback`](crate::Tiered::writeback).
    pub(crate) fn writeback(&self, filter: WritebackFilter) -> PolicyReport {
        let mut scratch = self.mover.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        let last = self.tiers.len() - 1;
        let mut report = PolicyReport::default();
        for index in 0..last {
            let pages = self.coldest_in(index, false, usize::MAX, |e| {
                let selected = match filter {
                    WritebackFilter::Idle(idle) => u128::from(now.saturating_sub(e.last_use)) >= idle.as_millis(),
                    WritebackFilter::Huge => e.is(Flag::Huge),
                    WritebackFilter::All => true,
                };
                selected.then_some(e.last_use)
            });
            report.stopped = self
                .move_all(&pages, last, &mut scratch.batch, &mut report, || u64::MAX)
                .0;
            if report.stopped.is_some() {
                break;
            }
        }
        self.finish(report)
    }

    /// Ends a policy run or writeback: copies whose release failed are
    /// released again, each tier pages left since the last gets its
    /// maintenance, and the run's stop is kept for the state.
    fn finish(&self, report: PolicyReport) -> PolicyReport {
        self.retry_releases();
        for tier in self.tiers.iter() {
            if let Some(maintenance) = &tier.maintenance
                && tier.vacated.swap(false, Ordering::Relaxed)
            {
                maintenance();
            }
        }
        *self.last_stop.lock().unwrap_or_else(PoisonError::into_inner) = report.stopped;
        report
    }

    /// Moves `pages` to tier `to`, in order, in batches ([`batch_len`]),
    /// while `wanted` says bytes are still to be freed. A page whose move
    /// fails stays where it is and the next is tried; the rate limit and
    /// `NoSpace` below stop the moves. Returns why it stopped early and how
    /// many pages it went through (moved, raced or failed).
    fn move_all(
        &self,
        pages: &[Located],
        to: usize,
        batch: &mut Batch,
        report: &mut PolicyReport,
        wanted: impl Fn() -> u64,
    ) -> (Option<Stop>, usize) {
        let mut next = 0;
        while next < pages.len() {
            let len = batch_len(&pages[next..], wanted());
            if len == 0 {
                return (None, next);
            }
            let allowed = self.limiter.take_up_to(PAGE, len);
            if allowed == 0 {
                return (Some(Stop::RateLimited), next);
            }
            if let Some(at) = self.move_batch(&pages[next..next + allowed], to, batch, report) {
                return (Some(Stop::NoSpaceBelow), next + at + 1);
            }
            next += allowed;
        }
        (None, pages.len())
    }

    /// What a budgeted tier uses against its budget: the bytes counted for
    /// its pages, or, for a backend that cannot tell its pages' sizes, the
    /// larger of that and the memory it reports (fragmentation and metadata
    /// included, which the per-page estimate lags behind). Refreshes the
    /// tier's average cost per page on the way.
    fn usage(&self, tier: &Tier) -> u64 {
        let held = tier.counters.held();
        let (bytes, pages, usage) = if tier.sizes_known.load(Ordering::Relaxed) {
            let c = &tier.counters;
            (
                held,
                c.pages.load(Ordering::Relaxed) + c.kept.load(Ordering::Relaxed),
                held,
            )
        } else {
            let stats = tier.backend.stats();
            (stats.memory_used, stats.stored_pages, held.max(stats.memory_used))
        };
        if pages > 0 && bytes > 0 {
            let average = (bytes / pages).clamp(1, u64::from(u32::MAX));
            tier.average_cost.store(average, Ordering::Relaxed);
        }
        usage
    }
}
