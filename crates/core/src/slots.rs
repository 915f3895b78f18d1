//! [`SlotTable`]: slot allocation with per-slot generations, most recently
//! freed first, for backends that keep their own storage per slot.

use crate::raw::Generations;

/// Allocates slot numbers and tracks each slot's generation.
///
/// Freed slots are reused last freed first, which keeps the storage behind
/// them warm; [`alloc_at`](Self::alloc_at) takes a particular slot instead.
/// Generations follow [`Generations`]: a handle made for one allocation never
/// matches a later one, and a slot is retired for good after 2^32 - 1 reuses.
#[derive(Debug, Clone, Default)]
pub struct SlotTable {
    generations: Generations,
    free: Vec<u32>,
    max_slots: u32,
}

impl SlotTable {
    /// A table that hands out at most `max_slots` slots, numbered from 0.
    pub fn new(max_slots: u32) -> Self {
        SlotTable {
            max_slots,
            ..Self::default()
        }
    }

    /// Allocates a slot: returns `(slot, generation)`, or `None` when every
    /// slot is live.
    pub fn alloc(&mut self) -> Option<(u32, u32)> {
        // The free list may hold slots since taken by `alloc_at`: skip them.
        while let Some(slot) = self.free.pop() {
            if let Some(generation) = self.generations.take(slot) {
                return Some((slot, generation));
            }
        }
        let slot = u32::try_from(self.generations.len()).ok()?;
        self.alloc_at(slot).map(|generation| (slot, generation))
    }

    /// Allocates `slot` itself if it is free, or if it is the next slot never
    /// used (one past the highest so far, within the limit). Returns its generation.
    pub fn alloc_at(&mut self, slot: u32) -> Option<u32> {
        if slot as usize > self.generations.len() || slot >= self.max_slots {
            return None;
        }
        let generation = self.generations.take(slot)?;
        // Keep stale free-list entries bounded.
        let free_slots = self.generations.len() - self.generations.live() as usize;
        if self.free.len() > 2 * free_slots + 64 {
            let generations = &self.generations;
            self.free.retain(|&s| generations.can_take(s));
            self.free.sort_unstable_by(|a, b| b.cmp(a));
            self.free.dedup();
        }
        Some(generation)
    }

    /// The generation of `slot` if it is live.
    pub fn live_generation(&self, slot: u32) -> Option<u32> {
        self.generations.live_generation(slot)
    }

    /// Frees a live slot. Returns `false`, changing nothing, if it was not live.
    pub fn release(&mut self, slot: u32) -> bool {
        if !self.generations.free(slot) {
            return false;
        }
        if self.generations.can_take(slot) {
            self.free.push(slot);
        }
        true
    }

    /// Invalidates a live slot's handle but keeps the slot taken, for a
    /// backend that must finish work on it (an in-flight write) before
    /// [`release`](Self::release) frees it. Returns `false`, changing
    /// nothing, if the slot was not live. The slot still counts as live.
    pub fn retire(&mut self, slot: u32) -> bool {
        self.generations.retire(slot)
    }

    /// Live slots.
    pub fn live(&self) -> u64 {
        self.generations.live()
    }

    /// Slots created so far, live or free: one past the highest slot number.
    pub fn len(&self) -> usize {
        self.generations.len()
    }

    /// Whether no slot was ever created.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Bytes of heap the table itself uses.
    pub fn metadata_bytes(&self) -> u64 {
        self.generations.metadata_bytes() + (self.free.capacity() * std::mem::size_of::<u32>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_up_to_the_limit_and_reuses_freed_slots() {
        let mut t = SlotTable::new(3);
        let a = t.alloc().unwrap();
        let b = t.alloc().unwrap();
        let c = t.alloc().unwrap();
        assert_eq!([a.0, b.0, c.0], [0, 1, 2]);
        assert_eq!(t.alloc(), None);
        assert_eq!(t.live(), 3);

        assert!(t.release(b.0));
        assert!(!t.release(b.0), "double release must be refused");
        assert_eq!(t.live_generation(b.0), None);
        let again = t.alloc().unwrap();
        assert_eq!(again.0, b.0);
        assert_ne!(again.1, b.1, "a reused slot gets a new generation");
        assert_eq!(t.live_generation(b.0), Some(again.1));
        assert_eq!(t.live_generation(99), None);
        assert!(!t.release(99));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn alloc_at_takes_free_or_next_slots_only() {
        let mut t = SlotTable::new(4);
        assert_eq!(t.alloc_at(1), None, "slot 1 is beyond the next unused slot");
        assert!(t.alloc_at(0).is_some());
        assert_eq!(t.alloc_at(0), None, "slot 0 is live");
        assert!(t.alloc_at(1).is_some());
        assert!(t.release(0) && t.release(1));
        assert!(t.alloc_at(0).is_some() && t.alloc_at(1).is_some());
        // The free list's stale entries for 0 and 1 are skipped.
        assert_eq!(t.alloc().map(|(s, _)| s), Some(2));
        assert_eq!(t.alloc().map(|(s, _)| s), Some(3));
        assert_eq!(t.alloc(), None);
        assert_eq!(t.alloc_at(4), None, "beyond the limit");
        assert_eq!(t.live(), 4);
    }

    #[test]
    fn a_retired_slot_has_a_new_generation_and_stays_taken() {
        let mut t = SlotTable::new(2);
        let (slot, generation) = t.alloc().unwrap();
        assert!(t.retire(slot));
        let now = t.live_generation(slot).unwrap();
        assert_ne!(now, generation, "the old handle no longer matches");
        assert_eq!(t.alloc_at(slot), None, "a retired slot is not free");
        assert!(t.release(slot));
        assert!(!t.retire(slot), "a free slot cannot be retired");
        assert_eq!(t.alloc().map(|(s, _)| s), Some(slot));
    }

    #[test]
    fn stale_free_entries_stay_bounded() {
        let mut t = SlotTable::new(1000);
        for _ in 0..10_000 {
            let (slot, _) = t.alloc().unwrap();
            t.release(slot);
            assert!(t.alloc_at(slot).is_some());
            t.release(slot);
        }
        assert!(t.free.len() <= 2 * t.len() + 64 + 1, "{}", t.free.len());
        assert_eq!(t.live(), 0);
    }
}
