//! Guards that keep the cancellation rule of
//! [`AsyncBackupBackend`](crate::AsyncBackupBackend) when a future is dropped.

use pagebackup_core::Interrupt;

/// Sets an [`Interrupt`] when dropped before [`disarm`](Self::disarm): a
/// restore whose future is dropped stops at its next page boundary. For
/// native async backends, which keep the same rule.
#[derive(Debug)]
pub struct InterruptOnDrop(Option<Interrupt>);

impl InterruptOnDrop {
    /// A guard over `intr`.
    pub fn new(intr: Interrupt) -> Self {
        InterruptOnDrop(Some(intr))
    }

    /// The operation finished: dropping the guard no longer interrupts.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(intr) = self.0.take() {
            intr.interrupt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_interrupts_unless_disarmed() {
        let intr = Interrupt::new();
        InterruptOnDrop::new(intr.clone()).disarm();
        assert!(!intr.is_interrupted());
        drop(InterruptOnDrop::new(intr.clone()));
        assert!(intr.is_interrupted());
    }
}
