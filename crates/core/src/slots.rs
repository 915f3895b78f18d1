//! [`SlotTable`]: slot allocation with per-slot generations, the bookkeeping
//! behind [`HandleCodec`](crate::HandleCodec) handles.

/// Allocates slot numbers and tracks each slot's generation.
///
/// A slot's generation is odd while the slot is live and even while it is
/// free; it is bumped on every allocation and every release, so a handle made
/// for one allocation never matches a later one (until the 32-bit generation
/// wraps, after 2^31 reuses of the same slot). Freed slots are reused last
/// freed first, which keeps the storage behind them warm.
#[derive(Debug, Clone, Default)]
pub struct SlotTable {
    generations: Vec<u32>,
    free: Vec<u32>,
    live: u64,
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
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.generations.len() < self.max_slots as usize => {
                self.generations.push(0);
                (self.generations.len() - 1) as u32
            }
            None => return None,
        };
        let generation = &mut self.generations[slot as usize];
        *generation = generation.wrapping_add(1);
        self.live += 1;
        Some((slot, *generation))
    }

    /// The generation of `slot` if it is live.
    pub fn live_generation(&self, slot: u32) -> Option<u32> {
        self.generations
            .get(slot as usize)
            .copied()
            .filter(|g| g % 2 == 1)
    }

    /// Frees a live slot. Returns `false`, changing nothing, if it was not live.
    pub fn release(&mut self, slot: u32) -> bool {
        if self.live_generation(slot).is_none() {
            return false;
        }
        let generation = &mut self.generations[slot as usize];
        *generation = generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        true
    }

    /// Live slots.
    pub fn live(&self) -> u64 {
        self.live
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
        ((self.generations.capacity() + self.free.capacity()) * std::mem::size_of::<u32>()) as u64
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
}
