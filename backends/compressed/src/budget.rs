//! [`Budget`]: the memory a backend has charged, held under its limit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes charged for everything the backend allocates, checked against the
/// limit before each allocation: the memory the backend uses never passes
/// the limit, not even inside an operation.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes (`u64::MAX`: none) with `fixed` charged.
    pub(crate) fn new(limit: Option<u64>, fixed: u64) -> Self {
        Budget {
            used: AtomicU64::new(fixed),
            limit: limit.unwrap_or(u64::MAX),
        }
    }

    /// Charges `bytes` if they fit under the limit with `keep` bytes to spare.
    pub(crate) fn reserve(&self, bytes: u64, keep: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total.saturating_add(keep) <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` charged before.
    pub(crate) fn release(&self, bytes: u64) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "released {bytes} of {before} charged bytes");
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit, if there is one.
    pub(crate) fn limit(&self) -> Option<u64> {
        (self.limit != u64::MAX).then_some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit() {
        let budget = Budget::new(Some(100), 40);
        assert!(!budget.reserve(50, 11), "the bytes to spare are kept");
        assert!(budget.reserve(50, 10));
        assert!(budget.reserve(10, 0));
        assert!(!budget.reserve(1, 0));
        budget.release(10);
        assert!(!budget.reserve(11, 0));
        assert!(budget.reserve(10, 0));
        assert_eq!((budget.used(), budget.limit()), (100, Some(100)));
        let unlimited = Budget::new(None, 0);
        assert!(unlimited.reserve(u64::MAX, 0));
        assert!(!unlimited.reserve(1, 0), "an overflowing charge is refused");
        assert_eq!(unlimited.limit(), None);
    }
}
