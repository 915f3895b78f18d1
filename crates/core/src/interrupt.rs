//! [`Interrupt`]: a cheap, shareable cancellation flag for restores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation flag: clone it, hand a clone to a restore, set it from
/// anywhere (another thread, a signal handler's flag poller).
///
/// A restore that sees it set stops at a page boundary with
/// [`BackupError::Interrupted`](crate::BackupError::Interrupted), reports how
/// many pages it finished, and leaves the rest backed up so that the caller
/// can resume. The flag stays set until [`clear`](Self::clear).
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: restores that share it stop at their next page boundary.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Clears the flag, so that a resumed restore can run.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_interrupted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whether an optional interrupt is set.
pub(crate) fn is_set(intr: Option<&Interrupt>) -> bool {
    intr.is_some_and(Interrupt::is_interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = Interrupt::new();
        let b = a.clone();
        assert!(!b.is_interrupted());
        a.interrupt();
        assert!(b.is_interrupted() && is_set(Some(&b)));
        b.clear();
        assert!(!a.is_interrupted());
        assert!(!is_set(None));
    }
}
