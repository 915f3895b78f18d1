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
            let failed = self.release_unused(shard, slot, 1).is_err();
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

#[cfg(test)]
mod tests {
    use crate::raw::device::ReadRun;
    use crate::raw::test_device::VecDevice;
    use crate::raw::{SlotStore, StoreConfig};
    use crate::{BackupBackend, BackupFlags, ErrorKind, Operation, PAGE_SIZE, Page};

    fn filled(byte: u8) -> Box<Page> {
        let mut page = Page::new_boxed();
        page.0.fill(byte);
        page
    }

    /// A drop while a read is planned: the handle is refused at once, the
    /// slot is neither released nor reused until the read is finished, the
    /// read gives the page as it was, and then the slot is given back.
    fn quarantine(defer: u64) {
        let config = StoreConfig::new("vec", 16)
            .with_checksum(true)
            .with_deferred_release(defer);
        let store = SlotStore::new(config, vec![VecDevice::default()]);
        let h = store.backup_page(&filled(1), 0, BackupFlags::NONE).unwrap();
        let op = Operation::CopyPages;
        let plan = store.plan_read(&[h], op).unwrap();
        store.drop_handle(h).unwrap();
        let mut dst = filled(0xee);
        let refused = store.copy_page(&mut dst, h, None).unwrap_err();
        assert_eq!((refused.kind(), dst.0[0]), (ErrorKind::InvalidHandle, 0xee));
        let s = store.stats();
        assert_eq!(
            (s.stored_pages, s.stored_bytes, s.unreleased_bytes),
            (0, 0, PAGE_SIZE as u64)
        );
        // The quarantined slot is not reused: the next backup goes elsewhere.
        let other = store.backup_page(&filled(2), 1, BackupFlags::NONE).unwrap();
        assert_eq!(
            store.device(0).0.lock().unwrap()[0].0[0],
            1,
            "slot 0 reused or released"
        );
        let mut pages = [filled(0)];
        let mut refs: Vec<&mut Page> = pages.iter_mut().map(|p| &mut **p).collect();
        store
            .read_pinned(
                0,
                &mut [ReadRun {
                    slot: 0,
                    pages: &mut refs,
                }],
                None,
            )
            .unwrap();
        store.finish_read(plan, None, &[h], |_| &*pages[0], op).unwrap();
        assert_eq!(pages[0].0[0], 1, "the read gave the page as of its validation");
        let s = store.stats();
        assert_eq!(
            (s.stored_pages, s.unreleased_bytes),
            (1, defer.min(1) * PAGE_SIZE as u64)
        );
        if defer == 0 {
            assert_eq!(
                store.device(0).0.lock().unwrap()[0].0[0],
                0,
                "released by the last unpin"
            );
        }
        // Given back: the next backup takes it again.
        let again = store.backup_page(&filled(3), 7, BackupFlags::NONE).unwrap();
        store.copy_page(&mut dst, again, None).unwrap();
        assert_eq!(dst.0[0], 3);
        assert_eq!(store.device(0).0.lock().unwrap()[0].0[0], 3, "slot 0 given back");
        store.drop_handles(&[other, again]).unwrap();
        store.release_deferred();
        let s = store.stats();
        assert_eq!((s.stored_pages, s.stored_bytes, s.unreleased_bytes), (0, 0, 0));
    }

    #[test]
    fn a_pinned_slot_is_quarantined_until_its_read_is_finished() {
        quarantine(0);
    }

    #[test]
    fn a_pinned_slot_is_quarantined_with_deferred_release_too() {
        quarantine(8);
    }

    #[test]
    fn an_abandoned_read_gives_its_pins_up() {
        let store = SlotStore::new(StoreConfig::new("vec", 16), vec![VecDevice::default()]);
        let h = store.backup_page(&filled(1), 0, BackupFlags::NONE).unwrap();
        let plan = store.plan_read(&[h, h], Operation::CopyPages).unwrap();
        store.drop_handle(h).unwrap();
        assert_eq!(store.stats().unreleased_bytes, PAGE_SIZE as u64);
        store.abandon_read(plan);
        let s = store.stats();
        assert_eq!((s.stored_pages, s.unreleased_bytes), (0, 0));
        assert_eq!(store.device(0).0.lock().unwrap()[0].0[0], 0, "released");
    }
}
