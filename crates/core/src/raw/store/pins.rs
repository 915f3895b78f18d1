//! Read pins: a restore pins the slots it validated until its reads are
//! over, and a drop of a pinned slot quarantines it, so that no slot is
//! reused or released while a read of it is in flight.
//!
//! The protocol, per slot, under its shard's lock:
//!
//! - **pin** (a restore validates a live handle): the count goes up.
//! - **retire** (a drop validates the handle): the handle is invalid at
//!   once, so no new pin can be taken. If the slot has pins it is
//!   *quarantined*: the drop neither releases it nor gives it back.
//! - **free** (the drop is done with it): a quarantined slot stays out of
//!   the free slots; an unpinned one is released and given back as before.
//! - **unpin** (the restore's reads are over): the last unpin of a
//!   quarantined, freed slot ends the quarantine, and the unpinning thread
//!   releases the slot (outside the lock) and gives it back.

use std::sync::atomic::Ordering;

use super::{ShardState, SlotStore};
use crate::raw::device::Device;

/// The top bit of a slot's pin word: the slot is quarantined.
const QUARANTINED: u32 = 1 << 31;

/// Per-slot pin counts and quarantine bits of one shard.
#[derive(Debug, Default)]
pub(super) struct Pins {
    /// Per slot: its pin count, with [`QUARANTINED`] set while it is.
    words: Vec<u32>,
    /// Quarantined slots.
    pub(super) quarantined: u64,
}

impl Pins {
    /// Pins `slot` (live, validated under the lock).
    pub(super) fn pin(&mut self, slot: u32) {
        let index = slot as usize;
        if self.words.len() <= index {
            self.words.resize(index + 1, 0);
        }
        debug_assert!(self.words[index] & !QUARANTINED < QUARANTINED - 1, "pin count overflow");
        self.words[index] += 1;
    }

    /// Whether `slot` has pins.
    pub(super) fn is_pinned(&self, slot: u32) -> bool {
        self.words.get(slot as usize).is_some_and(|w| w & !QUARANTINED != 0)
    }

    /// Quarantines `slot` (pinned, just retired).
    pub(super) fn quarantine(&mut self, slot: u32) {
        debug_assert!(self.is_pinned(slot));
        self.words[slot as usize] |= QUARANTINED;
        self.quarantined += 1;
    }

    /// Ends `slot`'s quarantine.
    pub(super) fn end_quarantine(&mut self, slot: u32) {
        self.words[slot as usize] &= !QUARANTINED;
        self.quarantined -= 1;
    }

    /// Removes one pin of `slot`; returns whether the slot is now
    /// quarantined without pins.
    pub(super) fn unpin(&mut self, slot: u32) -> bool {
        let word = &mut self.words[slot as usize];
        debug_assert!(*word & !QUARANTINED > 0, "unpin of an unpinned slot");
        *word -= 1;
        *word == QUARANTINED
    }

    pub(super) fn metadata_bytes(&self) -> u64 {
        (self.words.capacity() * 4) as u64
    }
}

impl ShardState {
    /// Removes one pin of `slot`; returns whether the caller must now
    /// settle it (it was dropped while pinned and this was its last pin).
    pub(super) fn unpin(&mut self, slot: u32) -> bool {
        // A quarantined slot whose drop has not freed it yet is settled by
        // that drop.
        if self.pins.unpin(slot) && !self.generations.is_live(slot) {
            self.pins.end_quarantine(slot);
            return true;
        }
        false
    }
}

impl<D: Device> SlotStore<D> {
    /// Gives back a slot of `shard` that was dropped and is no longer
    /// quarantined or pinned: kept for reuse (deferred release) or released
    /// first.
    pub(super) fn settle(&self, shard: usize, slot: u32) {
        let defer = self.config.deferred_release_pages > 0;
        let held = defer || {
            let failed = self.devices[shard].release(slot, 1).is_err();
            if failed {
                self.counters.failed_releases.fetch_add(1, Ordering::Relaxed);
            }
            failed
        };
        self.shards.lock(shard).give(slot..slot + 1, held);
        self.unreserve(1);
        if defer {
            self.trim_deferred(shard);
        }
    }
}
