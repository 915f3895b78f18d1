//! [`Shards`]: state split over a few locks, with each writer steered to a
//! shard no other thread holds. A thread keeps using the shard it last
//! wrote to and moves on only when another thread holds it, so the shards in
//! use are as many as the threads that write at the same time, not as many
//! as the threads that ever wrote: one thread fills one shard, and shards
//! of threads that have exited take no new pages.

use std::cell::Cell;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

thread_local! {
    /// The shard this thread last wrote to.
    static HINT: Cell<usize> = const { Cell::new(0) };
}

/// `T`s behind read-write locks.
#[derive(Debug)]
pub(crate) struct Shards<T> {
    locks: Box<[RwLock<T>]>,
}

impl<T> Shards<T> {
    /// `count` shards made by `make`.
    pub(crate) fn new(count: usize, make: impl FnMut(usize) -> T) -> Self {
        Shards {
            locks: (0..count).map(make).map(RwLock::new).collect(),
        }
    }

    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.locks.len()
    }

    // Shard updates that can panic (allocation) happen before any state
    // changes, so a poisoned shard is still consistent.

    /// Shard `index`, to read.
    pub(crate) fn read(&self, index: usize) -> RwLockReadGuard<'_, T> {
        self.locks[index].read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shard `index`, to write.
    pub(crate) fn write(&self, index: usize) -> RwLockWriteGuard<'_, T> {
        self.locks[index].write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A shard to write new state into: this thread's last one if it is
    /// free, else the first free one after it, else (all busy) the last
    /// one, waiting for it.
    pub(crate) fn pick(&self) -> (usize, RwLockWriteGuard<'_, T>) {
        let hint = HINT.get() % self.locks.len();
        for k in 0..self.locks.len() {
            let index = (hint + k) % self.locks.len();
            let guard = match self.locks[index].try_write() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            HINT.set(index);
            return (index, guard);
        }
        (hint, self.write(hint))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    #[test]
    fn one_thread_keeps_to_one_shard_and_busy_shards_are_passed_over() {
        let shards = Shards::new(4, |i| i);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    assert_eq!(shards.pick().0, 0);
                }
            });
        });
        let held = shards.write(0);
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let (index, guard) = shards.pick();
                assert_eq!((index, *guard), (1, 1));
                drop(guard);
                barrier.wait();
                // Shard 0 is free again, but this thread stays on shard 1.
                barrier.wait();
                assert_eq!(shards.pick().0, 1);
            });
            barrier.wait();
            drop(held);
            barrier.wait();
        });
        assert_eq!(*shards.read(3), 3);
        assert_eq!(shards.len(), 4);
    }
}
