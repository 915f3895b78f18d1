//! [`Shards`]: a backend's state split over shards, one lock each, with the
//! slot numbering that names a slot's shard, and two ways of choosing the
//! shard a thread writes new state into.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError, TryLockResult};

use super::{Backoff, HandleCodec, thread_index};

thread_local! {
    /// The shard this thread last took with [`Shards::pick`].
    static HINT: Cell<usize> = const { Cell::new(0) };
}

/// Snoozes of [`spin`] before a wait goes to sleep on the lock: a few
/// microseconds of spinning, then yields ([`Backoff`]).
const SPINS: u32 = 256;

/// A guard from `take` (a `try_` lock), tried with a [`Backoff`] between
/// tries, [`SPINS`] times; the guard of a poisoned lock is taken as it is.
/// `None` if the lock stayed held.
fn spin<G>(mut take: impl FnMut() -> TryLockResult<G>) -> Option<G> {
    let mut backoff = Backoff::new();
    while backoff.count() < SPINS {
        match take() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => backoff.snooze(),
        }
    }
    None
}

/// A backend's state in a power-of-two number of shards, each behind its
/// own read-write lock; a slot number carries its shard in its low bits
/// (`local << bits | shard`), so a handle leads to its shard.
///
/// A writer chooses its shard in one of two ways:
/// - [`mine`](Self::mine): a shard fixed by the thread, so threads rarely
///   contend and a thread's pages stay together;
/// - [`pick`](Self::pick): the shard this thread last wrote to if no other
///   thread holds it, else the next free one, so the shards in use are as
///   many as the threads that write at the same time, not as many as the
///   threads that ever wrote (one thread fills one shard, and shards of
///   threads that have exited take no new pages).
#[derive(Debug)]
pub struct Shards<T> {
    shards: Box<[RwLock<T>]>,
    /// Per shard, the threads in [`read_spinning`](Self::read_spinning)
    /// waiting for a writer.
    waiting: Box<[AtomicU32]>,
    bits: u32,
}

impl<T> Shards<T> {
    /// `count` shards (rounded down to a power of two, at least one), the
    /// state of shard `i` made by `make(i)`.
    pub fn new(count: usize, make: impl FnMut(usize) -> T) -> Self {
        let count = 1usize << count.max(1).ilog2();
        Shards {
            shards: (0..count).map(make).map(RwLock::new).collect(),
            waiting: (0..count).map(|_| AtomicU32::new(0)).collect(),
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

    /// Shard `index`, locked to write.
    ///
    /// A panic while a shard is locked leaves it poisoned; the lock is taken
    /// anyway, so every update of a shard's state must leave it consistent at
    /// any point a panic can happen (single table calls, allocation failure
    /// aborting).
    pub fn lock(&self, index: usize) -> RwLockWriteGuard<'_, T> {
        self.shards[index].write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shard `index`, locked to read, alongside other readers.
    pub fn read(&self, index: usize) -> RwLockReadGuard<'_, T> {
        self.shards[index].read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shard `index`, locked to read, waiting for a writer without
    /// sleeping: it spins, then yields, for up to 256 tries before it
    /// waits on the lock as [`read`](Self::read) does.
    ///
    /// For reads that must return quickly (a region's fault) when writers
    /// hold a shard for microseconds: a reader that sleeps on the lock is
    /// woken tens of microseconds after the writer is done, many times
    /// the writer's own hold.
    ///
    /// While it waits, [`readers_waiting`](Self::readers_waiting) says so to
    /// the writer, which can leave work that may wait for later.
    pub fn read_spinning(&self, index: usize) -> RwLockReadGuard<'_, T> {
        match self.shards[index].try_read() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        let waiting = &self.waiting[index];
        waiting.fetch_add(1, Ordering::Relaxed);
        let guard = spin(|| self.shards[index].try_read()).unwrap_or_else(|| self.read(index));
        waiting.fetch_sub(1, Ordering::Relaxed);
        guard
    }

    /// Whether a reader waits for shard `index` in
    /// [`read_spinning`](Self::read_spinning): a writer holding the shard
    /// can cut its hold short by leaving deferrable work (a compaction
    /// step) to a later hold.
    pub fn readers_waiting(&self, index: usize) -> bool {
        self.waiting[index].load(Ordering::Relaxed) != 0
    }

    /// Shard `index`, locked to write, waiting as
    /// [`read_spinning`](Self::read_spinning) does. For short updates
    /// beside fast readers: a writer that sleeps on the lock keeps every
    /// new reader out until it is woken and done (the standard lock lets
    /// no reader in while a writer waits), so its wake-up would be the
    /// readers' wait.
    ///
    /// Readers spinning for the shard go first, for as long as a
    /// [`Backoff`] spins before it yields: a writer that takes the shard
    /// back the moment it is free, as a batch of drops does, one lock per
    /// handle, would keep a spinning reader out until the batch is done.
    /// Only that long: where readers keep coming (two threads faulting on
    /// a region), a writer that yielded to each of them would starve.
    pub fn lock_spinning(&self, index: usize) -> RwLockWriteGuard<'_, T> {
        let mut backoff = Backoff::new();
        while self.readers_waiting(index) && backoff.count() < Backoff::SPINS {
            backoff.snooze();
        }
        spin(|| self.shards[index].try_write()).unwrap_or_else(|| self.lock(index))
    }

    /// Every shard, locked one at a time.
    pub fn each(&self) -> impl Iterator<Item = RwLockWriteGuard<'_, T>> {
        (0..self.len()).map(|i| self.lock(i))
    }

    /// A shard to write new state into, locked: this thread's last one if
    /// no other thread holds it, else the first free one after it, else (all
    /// busy) the last one, waiting for it.
    pub fn pick(&self) -> (usize, RwLockWriteGuard<'_, T>) {
        let hint = HINT.get() & (self.shards.len() - 1);
        for k in 0..self.shards.len() {
            let index = (hint + k) & (self.shards.len() - 1);
            let guard = match self.shards[index].try_write() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            HINT.set(index);
            return (index, guard);
        }
        (hint, self.lock(hint))
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
    use std::sync::Barrier;

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
        assert_eq!(*s.read(1), 1);
        assert_eq!(Shards::new(0, |_| ()).len(), 1);
    }

    #[test]
    fn a_picking_thread_keeps_to_one_shard_and_busy_shards_are_passed_over() {
        let shards = Shards::new(4, |i| i);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    assert_eq!(shards.pick().0, 0);
                }
            });
        });
        let held = shards.lock(0);
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
    }

    /// A spinning wait ends only once the holder is done, whether the hold
    /// is shorter than the spins or long enough to fall back to sleeping,
    /// and it takes a poisoned shard as it is.
    #[test]
    fn spinning_waits_last_until_the_holder_is_done() {
        use std::time::Duration;
        let shards = Shards::new(1, |_| 0u32);
        for (k, hold) in [Duration::from_micros(50), Duration::from_millis(30)]
            .into_iter()
            .enumerate()
        {
            let held = Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut value = shards.lock(0);
                    held.wait();
                    std::thread::sleep(hold);
                    *value += 1;
                });
                held.wait();
                assert_eq!(
                    *shards.read_spinning(0),
                    2 * k as u32 + 1,
                    "a read waited for the writer"
                );
            });
            std::thread::scope(|s| {
                let value = shards.read(0);
                s.spawn(|| *shards.lock_spinning(0) += 1);
                std::thread::sleep(hold);
                assert_eq!(*value, 2 * k as u32 + 1, "the writer waited for the reader");
            });
            assert_eq!(*shards.read(0), 2 * k as u32 + 2);
        }
        let poisoned = std::panic::catch_unwind(|| {
            let _held = shards.lock(0);
            panic!("poisons the shard");
        });
        assert!(poisoned.is_err());
        *shards.lock_spinning(0) += 1;
        assert_eq!(*shards.read_spinning(0), 5);
    }

    /// The writer of a shard sees a reader spinning for it, and only while
    /// it spins: neither before, nor once it has the shard, nor for a
    /// reader of another shard.
    #[test]
    fn a_writer_sees_the_readers_spinning_for_its_shard() {
        use std::time::{Duration, Instant};
        let shards = Shards::new(2, |i| i as u32);
        assert!(!shards.readers_waiting(0));
        let held = shards.lock(0);
        std::thread::scope(|s| {
            let reader = s.spawn(|| *shards.read_spinning(0));
            let other = *shards.read_spinning(1);
            assert_eq!(other, 1);
            assert!(!shards.readers_waiting(1));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !shards.readers_waiting(0) {
                assert!(Instant::now() < deadline, "the spinning reader was never seen");
                std::hint::spin_loop();
            }
            drop(held);
            assert_eq!(reader.join().unwrap(), 0);
        });
        assert!(!shards.readers_waiting(0), "the reader has the shard and is gone");
    }
}
