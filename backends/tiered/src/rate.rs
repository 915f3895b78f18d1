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
        let Some(limit) = self.limit else { return true };
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.0.elapsed() >= limit.period {
            *window = (Instant::now(), 0);
        }
        if window.1 + bytes > limit.bytes {
            return false;
        }
        window.1 += bytes;
        true
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
}
