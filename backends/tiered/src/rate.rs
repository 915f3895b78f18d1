//! [`Limiter`]: the policy's budget of bytes moved per period.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::RateLimit;

/// A fixed-window counter over a [`RateLimit`]: up to `bytes` per period,
/// the window restarting when a period has passed since it began.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: Option<RateLimit>,
    window: Mutex<(Instant, u64)>,
}

impl Limiter {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Limiter {
            limit,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes `bytes` from this period's allowance; `false` (taking nothing)
    /// if they do not fit.
    pub(crate) fn take(&self, bytes: u64) -> bool {
        self.take_up_to(bytes, 1) == 1
    }

    /// Takes `bytes` for each of up to `count` items (a batch of pages)
    /// from this period's allowance, in one hold of its lock: how many of
    /// them fit, which are taken (none, and nothing taken, if not one fits).
    pub(crate) fn take_up_to(&self, bytes: u64, count: usize) -> usize {
        let Some(limit) = self.limit else { return count };
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.0.elapsed() >= limit.period {
            *window = (Instant::now(), 0);
        }
        let left = limit.bytes.saturating_sub(window.1);
        let fit = left
            .checked_div(bytes)
            .map_or(count, |fit| usize::try_from(fit).unwrap_or(usize::MAX).min(count));
        window.1 += fit as u64 * bytes;
        fit
    }

    /// Bytes left in this period, `None` without a limit.
    pub(crate) fn remaining(&self) -> Option<u64> {
        let limit = self.limit?;
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        Some(if window.0.elapsed() >= limit.period {
            limit.bytes
        } else {
            limit.bytes - window.1
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_period_allows_its_bytes_then_refills() {
        let l = Limiter::new(Some(RateLimit {
            bytes: 8192,
            period: Duration::from_millis(50),
        }));
        assert!(l.take(4096) && l.take(4096));
        assert!(!l.take(4096));
        assert_eq!(l.remaining(), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.remaining(), Some(8192));
        assert!(l.take(4096));
        assert!(Limiter::new(None).take(u64::MAX));
    }

    #[test]
    fn a_batch_takes_as_many_items_as_the_period_allows() {
        let l = Limiter::new(Some(RateLimit {
            bytes: 10 * 4096,
            period: Duration::from_secs(3600),
        }));
        assert_eq!(l.take_up_to(4096, 4), 4);
        assert_eq!(l.take_up_to(4096, 64), 6, "the rest of the period's bytes");
        assert_eq!(l.take_up_to(4096, 64), 0);
        assert_eq!(l.remaining(), Some(0));
        assert_eq!(Limiter::new(None).take_up_to(4096, 64), 64);
    }
}
