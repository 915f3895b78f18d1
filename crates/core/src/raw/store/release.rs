//! Drops: retiring handles, releasing storage now or keeping it for
//! reuse (deferred release) and trimming what is kept.

use std::ops::Range;
use std::sync::atomic::Ordering;

use super::{ShardLocks, ShardState, SlotStore};
use crate::Handle;
use crate::error::{BackupError, BatchError, Operation};
use crate::raw::device::Device;

impl<D: Device> SlotStore<D> {
    /// Drops `handles` in order (the batch rule of
    /// [`BackupBackend::drop_handles`]): exactly the first `completed` are dropped on error, every later one
    /// stays live.
    pub(super) fn drop_handles_as(&self, handles: &[Handle], op: Operation) -> Result<(), BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        // Validation retires each handle, so restores and repeats see it
        // dropped while its storage is being released, and quarantines the
        // slots that restores are reading.
        let (entries, mut stopped) = self.validate(handles, op, true);
        let defer = self.config.deferred_release_pages > 0;
        let mut freed = entries.len();
        if !defer {
            // Release run by run, in batch order, outside the locks; a
            // quarantined slot is released once its last restore is over.
            let mut i = 0;
            while i < entries.len() {
                let e = entries[i];
                if e.quarantined {
                    i += 1;
                    continue;
                }
                let len = 1 + entries[i + 1..]
                    .iter()
                    .zip(&entries[i..])
                    .take_while(|(next, prev)| {
                        next.shard == e.shard && !next.quarantined && prev.slot.checked_add(1) == Some(next.slot)
                    })
                    .count();
                if let Err(source) = self.release_unused(e.shard, e.slot, len as u32) {
                    self.counters.failed_releases.fetch_add(1, Ordering::Relaxed);
                    freed = i;
                    stopped = Some(BatchError {
                        completed: e.k,
                        error: BackupError::Io {
                            origin: self.origin(op),
                            source,
                        },
                    });
                    break;
                }
                i += len;
            }
        }
        let mut settle = Vec::new();
        let mut given = 0;
        let mut locks = ShardLocks::new(&self.shards);
        for (i, e) in entries.iter().enumerate() {
            let state = locks.get(e.shard);
            if i >= freed {
                // Its release failed or came after one that did: live again,
                // under the generation its handle carries (the retired one
                // was never issued).
                if e.quarantined {
                    state.pins.end_quarantine(e.slot);
                }
                state.generations.unretire(e.slot);
                continue;
            }
            state.generations.free(e.slot);
            if !e.quarantined {
                state.give(e.slot..e.slot + 1, defer);
                given += 1;
            } else if !state.pins.is_pinned(e.slot) {
                // Its restores finished while it was being dropped.
                state.pins.end_quarantine(e.slot);
                settle.push((e.shard, e.slot));
            }
        }
        drop(locks);
        self.unreserve(given);
        for (shard, slot) in settle {
            self.settle(shard, slot);
        }
        if defer {
            let mut seen = Vec::new();
            for e in &entries {
                if !seen.contains(&e.shard) {
                    seen.push(e.shard);
                    self.trim_deferred(e.shard);
                }
            }
        }
        stopped.map_or(Ok(()), Err)
    }

    /// Releases the storage of every dropped slot kept for reuse.
    pub fn release_deferred(&self) {
        for shard in 0..self.shards.len() {
            self.release_shard_deferred(shard, 0);
        }
    }

    /// Once the store holds more deferred slots than its budget, releases
    /// the highest of `shard`'s until the store is down to half the budget
    /// (or the shard has none left).
    pub(super) fn trim_deferred(&self, shard: usize) {
        let budget = self.kept_budget();
        let total = self.deferred_total.load(Ordering::Relaxed);
        if total > budget {
            let excess = total - budget / 2;
            let keep = self.shards.lock(shard).deferred.count.saturating_sub(excess);
            self.release_shard_deferred(shard, keep);
        }
    }

    /// Releases the highest deferred slots of `shard` until at most `keep` remain.
    fn release_shard_deferred(&self, shard: usize, keep: u64) {
        let runs = {
            let mut state = self.shards.lock(shard);
            let excess = state.deferred.count.saturating_sub(keep);
            let runs = state.deferred.take_highest(excess);
            for r in &runs {
                assert!(state.extents.take_range(r.clone()), "deferred slots are free");
            }
            runs
        };
        if runs.is_empty() {
            return;
        }
        let unreleased = self.release_runs(shard, &runs);
        let mut state = self.shards.lock(shard);
        for (range, failed) in runs.iter().zip(unreleased) {
            if failed {
                self.counters.failed_releases.fetch_add(1, Ordering::Relaxed);
            }
            state.give(range.clone(), failed);
        }
    }
}

impl ShardState {
    /// Returns `range` to the free slots, its storage still held if `held`.
    pub(super) fn give(&mut self, range: Range<u32>, held: bool) {
        if held {
            self.deferred.set_range(range.clone());
        }
        // A worn-out slot (generation used up) is never handed out again.
        let mut start = range.start;
        for slot in range.clone() {
            if !self.generations.can_take(slot) {
                if start < slot {
                    self.extents.give(start..slot);
                }
                self.deferred.clear_range(slot..slot + 1);
                start = slot + 1;
            }
        }
        if start < range.end {
            self.extents.give(start..range.end);
        }
    }
}
