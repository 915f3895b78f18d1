//! [`Handle`]: the opaque ticket for one backed-up page.

use std::fmt;
use std::num::NonZeroU64;

/// An opaque handle to one backed-up page.
///
/// One word, never zero and always below 2^63, so that `Option<Handle>` is one
/// word and a handle fits a [tagged page word](crate::PageWord) (`raw << 1 | 1`).
/// The bit layout belongs to the backend that issued it; [`to_raw`](Self::to_raw)
/// and [`from_raw`](Self::from_raw) exist for FFI and logs. Any value can be
/// turned into a handle: backends reject handles they did not issue with
/// [`BackupError::InvalidHandle`](crate::BackupError::InvalidHandle).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Handle(NonZeroU64);

const _: () = assert!(std::mem::size_of::<Option<Handle>>() == 8);

impl Handle {
    /// The largest raw value a handle can have: 2^63 - 1.
    pub const MAX_RAW: u64 = (1 << 63) - 1;

    /// The handle with this raw value, or `None` for 0 and values above
    /// [`MAX_RAW`](Self::MAX_RAW).
    pub const fn from_raw(raw: u64) -> Option<Handle> {
        if raw > Self::MAX_RAW {
            return None;
        }
        match NonZeroU64::new(raw) {
            Some(v) => Some(Handle(v)),
            None => None,
        }
    }

    /// The raw value: in `1..=MAX_RAW`.
    pub const fn to_raw(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({:#x})", self.0)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_range_is_one_to_max() {
        assert_eq!(Handle::from_raw(0), None);
        assert_eq!(Handle::from_raw(1).unwrap().to_raw(), 1);
        assert_eq!(Handle::from_raw(Handle::MAX_RAW).unwrap().to_raw(), Handle::MAX_RAW);
        assert_eq!(Handle::from_raw(Handle::MAX_RAW + 1), None);
        assert_eq!(Handle::from_raw(u64::MAX), None);
    }
}
