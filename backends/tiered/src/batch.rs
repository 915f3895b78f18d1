//! Moves in batches: the policy moves its pages [`BATCH`] at a time, with
//! one batch call to each tier per step of a batch (`copy_pages` from the
//! tier above, `backup_pages` into the tier below, `drop_handles` of the
//! copies left above), so that a tier that does better with batches (an
//! io_uring write of many pages, a lock held across a run of restores)
//! does so for moves too. Promotions left to the policy read their pages
//! from below in batches the same way.

use std::sync::{Condvar, Mutex, PoisonError};

use pagebackup_core::{BackupBackend, ErrorKind, Handle, Page};

use crate::shared::{Located, Moved, Shared};
use crate::stats::{PolicyReport, TierCounters};
use crate::table::{Entry, Flag};
use crate::tier::PAGE;

/// Pages moved together, at most: 256 KiB of copies in flight.
pub(crate) const BATCH: usize = 64;

/// What the batches of a policy run or writeback reuse from one batch to
/// the next: the pages the copies pass through, and the lists that say
/// where each page of a batch got to.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The pages the copies pass through: as many as the largest batch.
    pages: Vec<Box<Page>>,
    /// The pages to copy, by position in the batch; copy `p` goes through
    /// `pages[p]`.
    copying: Vec<usize>,
    /// Of `copying`, the indices of the pages read whole.
    copied: Vec<usize>,
    /// The handles of a batch call: the pages' handles above, then those
    /// made below.
    handles: Vec<Handle>,
    /// The entries of the pages stored below ...
    stored: Vec<Entry>,
    /// ... and their positions in the batch.
    stored_at: Vec<usize>,
    /// The copies left to release above, after the pages moved.
    above: Vec<Handle>,
    /// The copies left to release below, of the pages that raced.
    below: Vec<Handle>,
}

/// The batches of moves started and ended, which a drop of a page in a
/// batch waits on.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Batches (started, ended).
    batches: Mutex<(u64, u64)>,
    ended: Condvar,
}

impl InFlight {
    /// A batch starts; it ends when the guard goes, however it goes.
    fn start(&self) -> Flight<'_> {
        self.batches.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        Flight(self)
    }

    /// Waits until every batch started so far has ended.
    pub(crate) fn wait(&self) {
        let batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let started = batches.0;
        drop(
            self.ended
                .wait_while(batches, |&mut (_, ended)| ended < started)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// A batch in flight: ends it when dropped.
struct Flight<'a>(&'a InFlight);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.batches.lock().unwrap_or_else(PoisonError::into_inner).1 += 1;
        self.0.ended.notify_all();
    }
}

impl Shared {
    /// Moves `batch` (pages of one tier, at most [`BATCH`] of them, each
    /// already let through by the rate limit) to tier `to`, counting each
    /// page's move in the tiers' counters and `report` as a move of its own
    /// would be: a page with a copy kept in `to` goes down to it; the others
    /// are read in one batch, stored below in one batch, switched one by
    /// one, and their copies above released in one batch, outside any lock
    /// of the table. A page dropped or moved meanwhile is raced (its copy
    /// below, if made, released); one that fails to read or store stays
    /// where it was. Returns the position of the page whose store found no
    /// space below, if one did: the pages after it stay where they were,
    /// not tried.
    ///
    /// The pages are marked [`Flag::Moving`] while the batch is in flight,
    /// so that a drop of one returns only once the batch has released every
    /// copy of it that it made or left.
    pub(crate) fn move_batch(
        &self,
        batch: &[Located],
        to: usize,
        s: &mut Batch,
        report: &mut PolicyReport,
    ) -> Option<usize> {
        let _flight = self.in_flight.start();
        s.copying.clear();
        for (k, &found) in batch.iter().enumerate() {
            if !self.mark_moving(found, true) {
                self.count(found, to, Moved::Raced, report);
                continue;
            }
            match found.entry.is(Flag::Kept).then(|| self.fall_back(found, to)).flatten() {
                Some(moved) => self.count(found, to, moved, report),
                None => s.copying.push(k),
            }
        }
        self.copy_batch(batch, s, |found, moved| self.count(found, to, moved, report));
        let no_space = self.store_batch(batch, to, s, report);
        self.switch_batch(batch, to, s, report);
        for &found in batch {
            self.mark_moving(found, false);
        }
        no_space
    }

    /// Marks the page at `found` as in the batch in flight, if it is still
    /// where it was found (`on`: whether it was), or clears the mark,
    /// wherever the page is now.
    fn mark_moving(&self, found: Located, on: bool) -> bool {
        let mut table = self.shards.lock(found.shard);
        table
            .get(found.slot, found.generation)
            .filter(|e| !on || found.still(e))
            .map(|e| e.set(Flag::Moving, on))
            .is_some()
    }

    /// Promotes `batch`, pages of one lower tier that restores left to the
    /// policy: reads them in one batch, then copies each read whole up
    /// ([`promote`](Self::promote)). A page that fails to read stays where
    /// it is, for a restore to retry.
    pub(crate) fn promote_batch(&self, batch: &[Located], s: &mut Batch) {
        s.copying.clear();
        s.copying.extend(0..batch.len());
        self.copy_batch(batch, s, |_, _| {});
        for &p in &s.copied {
            self.promote(batch[s.copying[p]], &s.pages[p]);
        }
    }

    /// Reads the pages of `s.copying` from their tier into `s.pages` in one
    /// `copy_pages`, and past a page that fails, the rest in another: leaves
    /// in `s.copied` those read whole, and tells `failed` of the others: a
    /// page whose handle is no longer valid there was dropped or moved
    /// since it was found (raced); one that fails to read otherwise
    /// (interrupted, failing storage) failed.
    fn copy_batch(&self, batch: &[Located], s: &mut Batch, mut failed: impl FnMut(Located, Moved)) {
        s.copied.clear();
        let Some(&first) = s.copying.first() else { return };
        let from = &self.tiers[batch[first].entry.tier as usize].backend;
        let n = s.copying.len();
        if s.pages.len() < n {
            s.pages.resize_with(n, Page::new_boxed);
        }
        s.handles.clear();
        s.handles.extend(s.copying.iter().map(|&k| batch[k].entry.inner));
        let mut dsts: Vec<&mut Page> = s.pages[..n].iter_mut().map(|p| &mut **p).collect();
        let mut start = 0;
        while start < n {
            let (done, error) = match from.copy_pages(&s.handles[start..], &mut dsts[start..], None) {
                Ok(()) => (n - start, None),
                Err(e) => (e.completed.min(n - start), Some(e.error)),
            };
            s.copied.extend(start..start + done);
            start += done;
            if let Some(error) = error
                && start < n
            {
                let moved = if error.kind() == ErrorKind::InvalidHandle {
                    Moved::Raced
                } else {
                    Moved::Failed
                };
                failed(batch[s.copying[start]], moved);
                start += 1;
            }
        }
    }

    /// Stores the pages of `s.copied` in tier `to` in one `backup_pages`,
    /// and past a page that fails, the rest in another: leaves their
    /// entries in `s.stored` and their positions in `s.stored_at`. A page
    /// whose store fails stays above (failed); `NoSpace` stops the stores,
    /// and the position of its page is returned.
    fn store_batch(&self, batch: &[Located], to: usize, s: &mut Batch, report: &mut PolicyReport) -> Option<usize> {
        s.stored.clear();
        s.stored_at.clear();
        let pages: Vec<&Page> = s.copied.iter().map(|&p| &*s.pages[p]).collect();
        let mut start = 0;
        while start < pages.len() {
            // The first page's slot in the table places the batch below.
            let first = batch[s.copying[s.copied[start]]];
            let idx = u64::from(self.shards.slot(first.shard, first.slot));
            let before = s.stored.len();
            let stored = self.store_all_in(to, &pages[start..], idx, &mut s.handles, &mut s.stored);
            let done = (s.stored.len() - before).min(pages.len() - start);
            s.stored_at
                .extend(s.copied[start..start + done].iter().map(|&p| s.copying[p]));
            start += done;
            let Err(e) = stored else { break };
            let Some(&failed) = s.copied.get(start) else { break };
            let k = s.copying[failed];
            self.count(batch[k], to, Moved::Failed, report);
            if e.error.kind() == ErrorKind::NoSpace {
                return Some(k);
            }
            start += 1;
        }
        None
    }

    /// Points each page stored below at its copy there if it is still where
    /// it was found (moved), else releases that copy (raced); then releases
    /// the copies the pages moved left above, and those of the raced ones
    /// below, in one batch each.
    fn switch_batch(&self, batch: &[Located], to: usize, s: &mut Batch, report: &mut PolicyReport) {
        s.above.clear();
        s.below.clear();
        let (mut above, mut below) = (0, 0);
        for (&k, &entry) in s.stored_at.iter().zip(&s.stored) {
            let found = batch[k];
            let moved = match self.remap(found, entry) {
                Some(unmapped) => {
                    if let Some((inner, cost)) = unmapped.old {
                        s.above.push(inner);
                        above += u64::from(cost);
                    }
                    if let Some(stale) = unmapped.stale {
                        self.release_kept(stale);
                    }
                    Moved::Copied
                }
                None => {
                    s.below.push(entry.inner);
                    below += u64::from(entry.cost);
                    Moved::Raced
                }
            };
            self.count(found, to, moved, report);
        }
        if let Some(first) = batch.first() {
            self.release_all(first.entry.tier as usize, &s.above, above);
        }
        self.release_all(to, &s.below, below);
    }

    /// Counts how the move of `found` to tier `to` ended, in the tiers'
    /// counters and `report`.
    fn count(&self, found: Located, to: usize, moved: Moved, report: &mut PolicyReport) {
        let from = &self.tiers[found.entry.tier as usize].counters;
        match moved {
            Moved::Copied => {
                TierCounters::bump(&from.moved_down, 1);
                TierCounters::bump(&self.tiers[to].counters.written_back_bytes, PAGE);
                report.moved_pages += 1;
            }
            Moved::ToKept => {
                TierCounters::bump(&from.moved_down, 1);
                TierCounters::bump(&from.moved_down_to_kept, 1);
                report.moved_pages += 1;
            }
            Moved::Raced => report.raced_pages += 1,
            Moved::Failed => {
                TierCounters::bump(&from.failed_moves, 1);
                report.failed_pages += 1;
            }
        }
    }
}

/// How many of `pages` go in the next batch: up to [`BATCH`] of the first
/// page's tier, while the costs of the pages before come to less than
/// `wanted` bytes (none if `wanted` is zero).
pub(crate) fn batch_len(pages: &[Located], wanted: u64) -> usize {
    let Some(first) = pages.first() else { return 0 };
    let mut left = wanted;
    pages
        .iter()
        .take(BATCH)
        .take_while(|p| {
            let take = left > 0 && p.entry.tier == first.entry.tier;
            left = left.saturating_sub(u64::from(p.entry.cost));
            take
        })
        .count()
}
