//! Every interleaving (with `loom`) of a small model of the slot store's
//! read protocol: one slot, a restore of its handle, a drop of that handle
//! and a backup that reuses the slot as soon as it is free.
//!
//! The model keeps what the store keeps under a shard's lock (generation,
//! live bit, pin count, quarantine bit, whether the slot is free) and the
//! slot's storage outside it, read and written without the lock, as the
//! devices are. The storage holds the generation of the page written into
//! it, 0 once released, so a restore's result says whose bytes it got.
//!
//! The pinned protocol must give a restore its own page or `InvalidHandle`
//! with nothing written; the protocol it replaced (read, then check the
//! generation again) must be caught writing another page's bytes.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// What the store keeps under the shard's lock, for the one slot.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    live: bool,
    pins: u32,
    quarantined: bool,
    free: bool,
}

struct Store {
    slot: Mutex<Slot>,
    /// The slot's storage: the generation of the page in it, 0 if released.
    storage: AtomicU32,
    /// Read pins (the store's protocol) or a check after the read (the old one).
    pinned: bool,
}

/// The sentinel a restore's destination holds until something is written.
const UNTOUCHED: u32 = u32::MAX;

impl Store {
    /// A store whose slot holds the live page of generation 1.
    fn new(pinned: bool) -> Self {
        Store {
            slot: Mutex::new(Slot {
                generation: 1,
                live: true,
                ..Slot::default()
            }),
            storage: AtomicU32::new(1),
            pinned,
        }
    }

    /// Restores `handle` (a generation); returns the outcome and what the
    /// destination holds.
    fn restore(&self, handle: u32) -> (Result<(), ()>, u32) {
        {
            let mut s = self.slot.lock().unwrap();
            if !s.live || s.generation != handle {
                return (Err(()), UNTOUCHED);
            }
            if self.pinned {
                s.pins += 1;
            }
        }
        let dst = self.storage.load(Ordering::Acquire);
        let mut s = self.slot.lock().unwrap();
        if !self.pinned {
            let still = s.live && s.generation == handle;
            return (if still { Ok(()) } else { Err(()) }, dst);
        }
        s.pins -= 1;
        if s.pins == 0 && s.quarantined && !s.live {
            s.quarantined = false;
            drop(s);
            self.settle();
        }
        (Ok(()), dst)
    }

    /// Releases the slot's storage and gives the slot back.
    fn settle(&self) {
        self.storage.store(0, Ordering::Release);
        self.slot.lock().unwrap().free = true;
    }

    /// Drops `handle`: retires it, releases the storage unless restores
    /// have the slot pinned (then the last of them does), frees the slot.
    fn drop_handle(&self, handle: u32) {
        let quarantined = {
            let mut s = self.slot.lock().unwrap();
            assert!(s.live && s.generation == handle, "the dropper owns the handle");
            s.generation += 1;
            s.quarantined = s.pins > 0;
            s.quarantined
        };
        if !quarantined {
            self.storage.store(0, Ordering::Release);
        }
        let mut s = self.slot.lock().unwrap();
        s.live = false;
        if !quarantined {
            s.free = true;
        } else if s.pins == 0 {
            s.quarantined = false;
            drop(s);
            self.settle();
        }
    }

    /// Backs up a page into the slot if it is free: reserve, write, publish.
    fn backup(&self) -> bool {
        let generation = {
            let mut s = self.slot.lock().unwrap();
            if !s.free {
                return false;
            }
            s.free = false;
            s.generation + 1
        };
        self.storage.store(generation, Ordering::Release);
        let mut s = self.slot.lock().unwrap();
        s.generation = generation;
        s.live = true;
        true
    }
}

/// One restore of generation 1 racing its drop and a backup that reuses
/// the slot (tried twice, so that it may come after a late settle).
fn race(pinned: bool) {
    loom::model(move || {
        let store = Arc::new(Store::new(pinned));
        let reader = {
            let store = Arc::clone(&store);
            thread::spawn(move || store.restore(1))
        };
        let dropper = {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                store.drop_handle(1);
                if !store.backup() {
                    thread::yield_now();
                    store.backup();
                }
            })
        };
        let (result, dst) = reader.join().unwrap();
        dropper.join().unwrap();
        match result {
            Ok(()) => assert_eq!(dst, 1, "a restore that succeeded gave another page's bytes"),
            Err(()) => assert_eq!(dst, UNTOUCHED, "a refused restore wrote {dst} into its destination"),
        }
        let s = store.slot.lock().unwrap();
        assert!(!s.quarantined && s.pins == 0, "a slot stayed quarantined: {s:?}");
    });
}

#[test]
fn pinned_restores_give_their_own_page_or_nothing() {
    race(true);
}

#[test]
fn checking_after_the_read_is_caught_writing_on_failure() {
    let caught = std::panic::catch_unwind(|| race(false));
    assert!(
        caught.is_err(),
        "the model did not find the race of the unpinned protocol"
    );
}
