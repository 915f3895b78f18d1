//! [`Room`]: where faulting threads sleep while the budget is full, until
//! the evictor gives pages back.
//!
//! A thread waiting for room that spins or yields keeps its CPU from the
//! evictor it waits for: with more runnable threads than CPUs (two
//! faulting threads and the evictor on two CPUs), the evictor then runs
//! only part of the time and every waiter waits longer. A sleeping waiter
//! gives its CPU up. Waits and wake-ups are a `futex` on a sequence number
//! (system calls only, no lock and no allocation: safe in a signal
//! handler), and the evictor makes the wake-up call only while a thread
//! sleeps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::thread::futex;

/// The sequence faulting threads sleep on while the budget is full.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Bumped each time pages leave residency: a sleeper wakes when it
    /// changes.
    seq: AtomicU32,
    /// Threads between announcing a sleep and waking from it.
    sleepers: AtomicU32,
}

impl Room {
    /// Sleeps until [`freed`](Self::freed) is called or `timeout` passes,
    /// unless `full` (checked after the sleep is announced, so that no
    /// wake-up between the check and the sleep is missed) says there is
    /// room already. May return early (a signal, a stale sequence); the
    /// caller checks the budget again.
    pub(crate) fn wait(&self, full: impl FnOnce() -> bool, timeout: Duration) {
        let seq = self.seq.load(Ordering::SeqCst);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if full() {
            let timeout = futex::Timespec {
                tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: timeout.subsec_nanos().into(),
            };
            // EAGAIN (the sequence moved), EINTR and ETIMEDOUT all mean: look again.
            let _ = futex::wait(&self.seq, futex::Flags::PRIVATE, seq, Some(&timeout));
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Says that pages left residency (or that waiting no longer helps):
    /// wakes every sleeper, with a system call only if there is one.
    pub(crate) fn freed(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(&self.seq, futex::Flags::PRIVATE, u32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::*;

    /// A timeout no wake-up in these tests comes near: reaching it means the
    /// wake-up was missed.
    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn a_sleeper_wakes_when_room_is_freed_not_at_its_timeout() {
        let room = Room::default();
        let full = AtomicBool::new(true);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                let start = Instant::now();
                while full.load(Ordering::SeqCst) {
                    room.wait(|| full.load(Ordering::SeqCst), LONG);
                }
                start.elapsed()
            });
            while room.sleepers.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            full.store(false, Ordering::SeqCst);
            room.freed();
            let slept = sleeper.join().unwrap();
            assert!(slept < LONG, "woke at its timeout, not at freed(): {slept:?}");
        });
        assert_eq!(room.sleepers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn no_sleep_when_there_is_room_once_announced() {
        let room = Room::default();
        let start = Instant::now();
        room.wait(|| false, LONG);
        assert!(start.elapsed() < LONG);
        assert_eq!(room.sleepers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_freed_between_reading_the_sequence_and_sleeping_is_not_missed() {
        // `full` runs after the sequence is read: a `freed` there moves the
        // sequence, so the futex returns at once instead of sleeping.
        let room = Room::default();
        let start = Instant::now();
        room.wait(
            || {
                room.freed();
                true
            },
            LONG,
        );
        assert!(start.elapsed() < LONG);
    }
}
