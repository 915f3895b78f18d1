//! Every interleaving (with `loom`) of a small model of the staging
//! buffer's protocol (`Staging` in src/staging.rs): a flush writing a
//! slot's staged page, racing a release of that slot (discard, then the
//! hole punch) and a backup that reuses the slot at once, writing its page
//! straight to the file.
//!
//! The model keeps what the buffer keeps under its lock (whether the slot
//! has a page staged, whether a flush is writing it) and the flush lock;
//! the file's slot holds the generation of the page last written into it,
//! 0 once punched. The new page (generation 2) must be what the file holds
//! at the end: an old write landing after it is a page lost.
//!
//! The buffer's discard must keep that; the one it replaced (look for a
//! write in flight, let the lock go, then remove under the lock taken
//! again) must be caught losing the page.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

#[derive(Debug, Default)]
struct Slot {
    staged: bool,
    in_flight: bool,
}

struct Staging {
    slot: Mutex<Slot>,
    flushing: Mutex<()>,
    /// The file's slot: the generation of the page in it, 0 if punched.
    file: AtomicU32,
    /// The discard of the buffer (true) or the one it replaced.
    rechecks: bool,
}

impl Staging {
    /// Generation 1 staged, not yet written.
    fn new(rechecks: bool) -> Self {
        Staging {
            slot: Mutex::new(Slot {
                staged: true,
                in_flight: false,
            }),
            flushing: Mutex::new(()),
            file: AtomicU32::new(0),
            rechecks,
        }
    }

    /// `Staging::flush`: takes what is staged, writes it, and lets it go.
    fn flush(&self) {
        let _flushing = self.flushing.lock().unwrap();
        {
            let mut s = self.slot.lock().unwrap();
            if !s.staged || s.in_flight {
                return;
            }
            s.in_flight = true;
        }
        self.file.store(1, Ordering::Release);
        let mut s = self.slot.lock().unwrap();
        if s.in_flight {
            *s = Slot::default();
        }
    }

    /// `Staging::discard`: forgets the slot's page, waiting for a write of
    /// it in flight.
    fn discard(&self) {
        if self.rechecks {
            let mut flushing = None;
            loop {
                let mut s = self.slot.lock().unwrap();
                if flushing.is_none() && s.in_flight {
                    drop(s);
                    flushing = Some(self.flushing.lock().unwrap());
                    continue;
                }
                *s = Slot::default();
                return;
            }
        }
        let in_flight = self.slot.lock().unwrap().in_flight;
        let _flushing = in_flight.then(|| self.flushing.lock().unwrap());
        *self.slot.lock().unwrap() = Slot::default();
    }
}

/// A flush of generation 1 racing the slot's release and its reuse.
fn race(rechecks: bool) {
    loom::model(move || {
        let staging = Arc::new(Staging::new(rechecks));
        let flusher = {
            let staging = Arc::clone(&staging);
            thread::spawn(move || staging.flush())
        };
        // The release (discard, punch), then the reuse: the sync path's
        // multi-page write forgets what is staged and writes the file.
        staging.discard();
        staging.file.store(0, Ordering::Release);
        staging.discard();
        staging.file.store(2, Ordering::Release);
        flusher.join().unwrap();
        assert_eq!(
            staging.file.load(Ordering::Acquire),
            2,
            "an old write landed on the reused slot"
        );
    });
}

#[test]
fn a_discard_never_lets_an_old_write_land_on_a_reused_slot() {
    race(true);
}

#[test]
fn the_discard_that_let_the_lock_go_is_caught_losing_a_page() {
    let caught = std::panic::catch_unwind(|| race(false));
    assert!(caught.is_err(), "the model did not find the race of the old discard");
}
