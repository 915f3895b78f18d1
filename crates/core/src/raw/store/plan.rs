//! Restores: validating handles, planning the reads, reading, and
//! checking what was read.

use std::sync::atomic::Ordering;

use super::{ShardLocks, SlotStore, checksum};
use crate::error::{BackupError, BatchError, Operation};
use crate::raw::device::{Arrived, Device, ReadRun, RunError};
use crate::{Handle, Interrupt, Page};

/// The reads of a restore, from [`SlotStore::plan_read`], to be done and
/// then given to [`SlotStore::finish_read`].
#[derive(Debug)]
#[must_use = "a read plan pins its slots until it is finished or abandoned"]
pub struct ReadPlan {
    entries: Vec<Entry>,
    /// Where the handles stopped being live, if they did.
    stopped: Option<BatchError>,
}

/// Batch-consecutive pages of one shard, to read with one device call.
#[derive(Debug)]
pub struct ReadSegment {
    /// The shard whose device holds them.
    pub shard: usize,
    /// The batch index of the first.
    pub start: usize,
    /// How many.
    pub len: usize,
    /// Their runs of contiguous slots, in order.
    pub runs: Vec<PlannedRun>,
}

/// Batch-consecutive pages in contiguous slots.
#[derive(Debug, Clone, Copy)]
pub struct PlannedRun {
    /// The batch index of the first.
    pub start: usize,
    /// The first slot (the device's numbering).
    pub slot: u32,
    /// How many.
    pub len: usize,
}

impl ReadPlan {
    /// Pages to read: the handles up to the first that is not live.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The reads, in batch order.
    pub fn segments(&self) -> Vec<ReadSegment> {
        let mut segments: Vec<ReadSegment> = Vec::new();
        for e in &self.entries {
            match segments.last_mut() {
                Some(seg) if seg.shard == e.shard => {
                    seg.len += 1;
                    let run = seg.runs.last_mut().expect("a segment has a run");
                    if run.slot.checked_add(run.len as u32) == Some(e.slot) {
                        run.len += 1;
                    } else {
                        seg.runs.push(PlannedRun {
                            start: e.k,
                            slot: e.slot,
                            len: 1,
                        });
                    }
                }
                _ => segments.push(ReadSegment {
                    shard: e.shard,
                    start: e.k,
                    len: 1,
                    runs: vec![PlannedRun {
                        start: e.k,
                        slot: e.slot,
                        len: 1,
                    }],
                }),
            }
        }
        segments
    }
}

/// How many pages of `plan` were read: all, or those before `stop`.
fn read_to(plan: &ReadPlan, stop: &Option<BatchError>) -> usize {
    stop.as_ref()
        .map_or(plan.entries.len(), |s| s.completed.min(plan.entries.len()))
}

/// A validated page of a batch: its position, shard and local slot; for a
/// restore, the checksum it must match; for a drop, whether it was pinned
/// (and is quarantined).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) k: usize,
    pub(super) shard: usize,
    pub(super) slot: u32,
    pub(super) sum: u32,
    pub(super) quarantined: bool,
}

impl<D: Device> SlotStore<D> {
    /// Validates `handles` in order, up to the first that is not live.
    /// Without `retire` (a restore), pins each valid one until
    /// [`finish_read`](Self::finish_read). With `retire` (a drop),
    /// invalidates each valid one at once (so restores and a repeat within
    /// the batch are refused) and quarantines it if restores have it pinned.
    pub(super) fn validate(&self, handles: &[Handle], op: Operation, retire: bool) -> (Vec<Entry>, Option<BatchError>) {
        let mut entries = Vec::with_capacity(handles.len());
        let mut locks = ShardLocks::new(&self.shards);
        for (k, &handle) in handles.iter().enumerate() {
            let (global, generation) = self.codec.decode(handle);
            let (shard, slot) = self.shards.split(global);
            let state = locks.get(shard);
            if generation == 0 || state.generations.live_generation(slot) != Some(generation) {
                let error = BackupError::InvalidHandle {
                    origin: self.origin(op),
                    handle,
                };
                return (entries, Some(BatchError { completed: k, error }));
            }
            let mut entry = Entry {
                k,
                shard,
                slot,
                sum: 0,
                quarantined: false,
            };
            if retire {
                state.generations.retire(slot);
                if state.pins.is_pinned(slot) {
                    state.pins.quarantine(slot);
                    entry.quarantined = true;
                }
            } else {
                state.pins.pin(slot);
                if self.config.checksum {
                    entry.sum = state.checksums[slot as usize];
                }
            }
            entries.push(entry);
        }
        (entries, None)
    }

    /// Restores `handles` into `dsts` (of the same length; the batch rule
    /// of [`BackupBackend::copy_pages`](crate::BackupBackend::copy_pages)), reporting errors as `op`.
    pub fn restore(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        debug_assert_eq!(handles.len(), dsts.len());
        let result = self.restore_inner(handles, dsts, intr, op);
        if result.is_err() {
            self.counters.failed_restores.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn restore_inner(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let plan = self.plan_read(handles, op)?;
        let mut rest = &mut dsts[..plan.len()];
        let mut stop = None;
        // The first page read that does not match its checksum.
        let mut corrupt: Option<usize> = None;
        for segment in plan.segments() {
            if intr.is_some_and(Interrupt::is_interrupted) {
                stop = Some(self.interrupted(segment.start, op));
                break;
            }
            let (mut pages, tail) = std::mem::take(&mut rest).split_at_mut(segment.len);
            rest = tail;
            let mut runs: Vec<ReadRun<'_, '_>> = Vec::with_capacity(segment.runs.len());
            for run in &segment.runs {
                let (these, tail) = std::mem::take(&mut pages).split_at_mut(run.len);
                pages = tail;
                runs.push(ReadRun {
                    slot: run.slot,
                    pages: these,
                });
            }
            // With checksums, each part of a run is checked as it arrives,
            // while the device reads the rest.
            let mut check = |run: usize, first: usize, pages: &[&mut Page]| {
                let start = segment.runs[run].start + first;
                if let Some((k, _)) = (start..)
                    .zip(pages)
                    .find(|(k, page)| plan.entries[*k].sum != checksum(page))
                {
                    corrupt = Some(corrupt.map_or(k, |c| c.min(k)));
                }
            };
            let arrived = self.config.checksum.then_some(&mut check as &mut Arrived<'_>);
            if let Err(RunError { done, error }) = self.read_pinned(segment.shard, &mut runs, arrived) {
                // A sealed page that fails authentication names itself.
                let bad = crate::raw::seal::Unauthentic::of(&error);
                // The pages of the failed run before the unauthentic one
                // were read but not handed over: check them too.
                if let Some(b) = bad
                    && self.config.checksum
                {
                    check(done, 0, &runs[done].pages[..b.page]);
                }
                let completed = segment.runs[done].start + bad.map_or(0, |b| b.page);
                let error = match bad {
                    Some(_) => BackupError::Corrupt {
                        origin: self.origin(op),
                        handle: handles[completed],
                        detail: error.to_string(),
                    },
                    None => self.io_error(op, error),
                };
                stop = Some(BatchError { completed, error });
                break;
            }
        }
        self.conclude(plan, stop, corrupt, handles, op)
    }

    /// The error of a restore interrupted before item `k`.
    pub fn interrupted(&self, k: usize, op: Operation) -> BatchError {
        BatchError {
            completed: k,
            error: BackupError::Interrupted {
                origin: self.origin(op),
            },
        }
    }

    /// The first half of a restore, for backends that read the pages
    /// themselves: checks `handles` in order, up to the first that is not
    /// live, and plans the reads as [`ReadPlan::segments`].
    pub fn plan_read(&self, handles: &[Handle], op: Operation) -> Result<ReadPlan, BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        let (entries, stopped) = self.validate(handles, op, false);
        Ok(ReadPlan { entries, stopped })
    }

    /// The second half of a restore: `stop` is where reading stopped (an
    /// interrupt, a failed read; `None` if every planned page was read, and
    /// `page(k)` gives the page read for item `k`). Checks that every page
    /// read matches its checksum, unpins the plan's slots and gives the
    /// batch rule's result. (The pins kept every slot read from being reused
    /// or released, so a page read is its handle's as of validation.)
    pub fn finish_read<'p>(
        &self,
        plan: ReadPlan,
        stop: Option<BatchError>,
        handles: &[Handle],
        page: impl Fn(usize) -> &'p Page,
        op: Operation,
    ) -> Result<(), BatchError> {
        let corrupt = match self.config.checksum {
            true => plan.entries[..read_to(&plan, &stop)]
                .iter()
                .find(|e| e.sum != checksum(page(e.k)))
                .map(|e| e.k),
            false => None,
        };
        self.conclude(plan, stop, corrupt, handles, op)
    }

    /// [`finish_read`](Self::finish_read) with the first page read that
    /// does not match its checksum already found (`corrupt`; pages past
    /// where reading stopped do not count).
    fn conclude(
        &self,
        plan: ReadPlan,
        stop: Option<BatchError>,
        corrupt: Option<usize>,
        handles: &[Handle],
        op: Operation,
    ) -> Result<(), BatchError> {
        let corrupt = corrupt.filter(|&k| k < read_to(&plan, &stop)).map(|k| BatchError {
            completed: k,
            error: BackupError::Corrupt {
                origin: self.origin(op),
                handle: handles[k],
                detail: "the page read back does not match its checksum (the storage changed under the backend); \
                         the backup is unusable, drop it"
                    .to_string(),
            },
        });
        let ReadPlan { entries, stopped } = plan;
        self.unpin(&entries);
        match corrupt.or(stop).or(stopped) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gives up a restore planned by [`plan_read`](Self::plan_read)
    /// without reading (its future was dropped, say): unpins its slots. A
    /// plan must end here or in [`finish_read`](Self::finish_read), once
    /// nothing reads its slots any more; a plan that ends in neither keeps
    /// the slots of its dropped handles out of use.
    pub fn abandon_read(&self, plan: ReadPlan) {
        self.unpin(&plan.entries);
    }

    /// Unpins the slots of `entries`, settling those whose last pin this
    /// was (outside the lock).
    fn unpin(&self, entries: &[Entry]) {
        let mut settle = Vec::new();
        let mut locks = ShardLocks::new(&self.shards);
        for e in entries {
            if locks.get(e.shard).unpin(e.slot) {
                settle.push((e.shard, e.slot));
            }
        }
        drop(locks);
        for (shard, slot) in settle {
            self.settle(shard, slot);
        }
    }
}
