//! [`Backoff`]: how a thread waits for another that is running and about
//! to finish (a short lock hold, a state change): spin, then yield.

/// A wait for another thread that is running: the first
/// [`SPINS`](Backoff::SPINS) snoozes spin (a few microseconds in all, no
/// system call), the ones after yield the CPU (to the thread waited for,
/// if it shares this one).
#[derive(Debug, Default)]
pub struct Backoff(u32);

impl Backoff {
    /// Snoozes that spin before the first yield.
    pub const SPINS: u32 = 64;

    /// A new wait.
    pub fn new() -> Self {
        Backoff(0)
    }

    /// Waits a little: spins or yields.
    pub fn snooze(&mut self) {
        if self.0 < Self::SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        self.0 = self.0.saturating_add(1);
    }

    /// Snoozes so far.
    pub fn count(&self) -> u32 {
        self.0
    }
}
