//! [`Shards`]: a backend's state split over shards, one lock each, with the
//! slot numbering that names a slot's shard.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{HandleCodec, thread_index};

/// A backend's state in a power-of-two number of shards, each behind its
/// own lock. A thread works in its own shard ([`mine`](Self::mine)), so
/// threads rarely contend; a slot number carries its shard in its low bits
/// (`local << bits | shard`), so a handle leads to its shard.
#[derive(Debug)]
pub struct Shards<T> {
    shards: Box<[Mutex<T>]>,
    bits: u32,
}

impl<T> Shards<T> {
    /// `count` shards (rounded down to a power of two, at least one), the
    /// state of shard `i` made by `make(i)`.
    pub fn new(count: usize, make: impl FnMut(usize) -> T) -> Self {
        let count = 1usize << count.max(1).ilog2();
        Shards {
            shards: (0..count).map(make).map(Mutex::new).collect(),
            bits: count.trailing_zeros(),
        }
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Always `false`: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The calling thread's shard.
    pub fn mine(&self) -> usize {
        thread_index() & (self.shards.len() - 1)
    }

    /// Shard `index`, locked.
    ///
    /// A panic while a shard is locked leaves it poisoned; the lock is taken
    /// anyway, so every update of a shard's state must leave it consistent at
    /// any point a panic can happen (single table calls, allocation failure
    /// aborting).
    pub fn lock(&self, index: usize) -> MutexGuard<'_, T> {
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard, locked one at a time.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        (0..self.len()).map(|i| self.lock(i))
    }

    /// Slots a shard can number within the handle space.
    pub fn local_slots(&self) -> u32 {
        (HandleCodec::MAX_SLOTS >> self.bits) as u32
    }

    /// The slot number of `local` in `shard`.
    pub fn slot(&self, shard: usize, local: u32) -> u32 {
        (local << self.bits) | shard as u32
    }

    /// The shard and local slot of a slot number.
    pub fn split(&self, slot: u32) -> (usize, u32) {
        ((slot & ((1 << self.bits) - 1)) as usize, slot >> self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_their_shard() {
        let s = Shards::new(6, |i| i);
        assert_eq!(s.len(), 4, "rounded down to a power of two");
        assert_eq!(s.local_slots(), 1 << 29);
        for (shard, local) in [(0, 0), (3, 7), (2, (1 << 29) - 1)] {
            let slot = s.slot(shard, local);
            assert!(u64::from(slot) < HandleCodec::MAX_SLOTS);
            assert_eq!(s.split(slot), (shard, local));
        }
        assert_eq!(*s.lock(2), 2);
        assert_eq!(s.each().map(|g| *g).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(s.mine() < 4);
        assert_eq!(Shards::new(0, |_| ()).len(), 1);
    }
}
