//! [`Generations`]: per-slot generation counters and live bits, the
//! bookkeeping that lets [`HandleCodec`](super::HandleCodec) handles be
//! checked.

/// Each slot's generation and whether it is live.
///
/// A slot's generation counts its allocations (from 1) and is also bumped by
/// [`retire`](Self::retire); it never goes back, so a handle made for one
/// allocation never matches a later one. A slot whose generation reaches
/// `u32::MAX` is worn out: it can be freed but never allocated again (after
/// 2^32 - 1 reuses), so handles never alias even then.
#[derive(Debug, Clone, Default)]
pub struct Generations {
    generations: Vec<u32>,
    live_bits: Vec<u64>,
    live: u64,
}

impl Generations {
    /// Slots known so far (one past the highest slot ever taken).
    pub fn len(&self) -> usize {
        self.generations.len()
    }

    /// Whether no slot was ever taken.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Live slots.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Whether `slot` is live.
    pub fn is_live(&self, slot: u32) -> bool {
        let slot = slot as usize;
        self.live_bits
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// The generation of `slot` if it is live.
    pub fn live_generation(&self, slot: u32) -> Option<u32> {
        self.is_live(slot).then(|| self.generations[slot as usize])
    }

    /// Whether `slot` can be taken: free and not worn out.
    pub fn can_take(&self, slot: u32) -> bool {
        !self.is_live(slot) && self.generations.get(slot as usize).is_none_or(|&g| g < u32::MAX)
    }

    /// Makes `slot` live with a new generation, growing the table if the
    /// slot is new. Returns the generation, or `None` (changing nothing) if
    /// the slot is live or worn out.
    pub fn take(&mut self, slot: u32) -> Option<u32> {
        if !self.can_take(slot) {
            return None;
        }
        let index = slot as usize;
        if index >= self.generations.len() {
            self.grow_to(index + 1);
        }
        let generation = &mut self.generations[index];
        *generation += 1;
        self.live_bits[index / 64] |= 1 << (index % 64);
        self.live += 1;
        Some(*generation)
    }

    /// Frees a live slot. Returns `false`, changing nothing, if it was not
    /// live. The generation stays, so the freed slot's handles stay invalid.
    pub fn free(&mut self, slot: u32) -> bool {
        if !self.is_live(slot) {
            return false;
        }
        let index = slot as usize;
        self.live_bits[index / 64] &= !(1 << (index % 64));
        self.live -= 1;
        true
    }

    /// Invalidates a live slot's handle but keeps the slot taken, for a
    /// backend that must finish work on it before [`free`](Self::free).
    /// Returns `false`, changing nothing, if the slot was not live.
    pub fn retire(&mut self, slot: u32) -> bool {
        if !self.is_live(slot) {
            return false;
        }
        let generation = &mut self.generations[slot as usize];
        *generation = generation.saturating_add(1);
        true
    }

    /// Undoes a [`retire`](Self::retire) whose new generation was never
    /// issued in a handle: the slot's previous handle is valid again.
    pub fn unretire(&mut self, slot: u32) {
        debug_assert!(self.is_live(slot));
        let generation = &mut self.generations[slot as usize];
        *generation -= 1;
    }

    /// Bytes of heap the table uses.
    pub fn metadata_bytes(&self) -> u64 {
        (self.generations.capacity() * 4 + self.live_bits.capacity() * 8) as u64
    }

    /// Grows by doubling up to 4096 slots, then in steps of 4096 slots, so
    /// that the slack stays below 16 KiB whatever the size.
    fn grow_to(&mut self, len: usize) {
        const STEP: usize = 4096;
        let target = if len < STEP {
            len.next_power_of_two().max(64)
        } else {
            len.div_ceil(STEP) * STEP
        };
        self.generations.reserve_exact(target - self.generations.len());
        self.generations.resize(len, 0);
        let words = target / 64;
        if self.live_bits.len() < words {
            self.live_bits.reserve_exact(words - self.live_bits.len());
            self.live_bits.resize(words, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_free_and_retire() {
        let mut g = Generations::default();
        assert_eq!(g.take(5), Some(1));
        assert_eq!(g.take(5), None, "live");
        assert_eq!(g.len(), 6);
        assert_eq!(g.live_generation(5), Some(1));
        assert_eq!(g.live_generation(4), None);
        assert!(g.retire(5));
        assert_eq!(g.live_generation(5), Some(2));
        assert!(g.free(5));
        assert!(!g.free(5));
        assert!(!g.retire(5));
        assert_eq!(g.take(5), Some(3));
        assert_eq!(g.live(), 1);
    }

    #[test]
    fn a_worn_out_slot_is_never_taken_again() {
        let mut g = Generations::default();
        g.take(0);
        g.generations[0] = u32::MAX - 1;
        g.free(0);
        assert_eq!(g.take(0), Some(u32::MAX));
        assert!(g.free(0));
        assert!(!g.can_take(0));
        assert_eq!(g.take(0), None);
    }
}
