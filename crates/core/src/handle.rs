//! [`Handle`]: the opaque ticket for one backed-up page, and [`HandleCodec`],
//! the tagged slot encoding the crate's backends use for it.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mix::mix64;

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

/// Encodes a slot number and the slot's generation into a [`Handle`] that
/// only the issuing backend instance accepts.
///
/// Layout of the raw value (63 bits): the low 31 bits are the slot; the upper
/// 32 bits are a tag, a keyed hash of the instance key, the slot and the
/// slot's generation (lowest tag bit forced to 1, so no handle is zero).
/// A backend bumps a slot's generation each time the slot is freed, so:
///
/// - a dropped handle's tag no longer matches its slot's generation;
/// - a handle of another instance was tagged with another key;
/// - a forged value matches a live slot's tag with probability 2^-31.
///
/// Each codec gets a key of its own from [`HandleCodec::new`]; keys are
/// distinct within a process and unpredictable across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleCodec {
    key: u64,
}

impl HandleCodec {
    /// Number of slots a handle can address: 2^31.
    pub const MAX_SLOTS: u64 = 1 << SLOT_BITS;

    /// A codec with a fresh instance key.
    pub fn new() -> Self {
        static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);
        static PROCESS_SEED: OnceLock<u64> = OnceLock::new();
        let seed = *PROCESS_SEED.get_or_init(|| RandomState::new().hash_one(0x7061_6765_6261_636b_u64));
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        // mix64 is a bijection, so distinct counters give distinct keys.
        HandleCodec { key: mix64(n ^ seed) }
    }

    /// The handle for `slot` at `generation`.
    ///
    /// # Panics
    /// If `slot >= MAX_SLOTS`: slot allocators must stay below it.
    pub fn encode(&self, slot: u32, generation: u32) -> Handle {
        assert!(u64::from(slot) < Self::MAX_SLOTS, "slot {slot} out of handle range");
        let raw = (u64::from(self.tag(slot, generation)) << SLOT_BITS) | u64::from(slot);
        Handle::from_raw(raw).expect("tag is odd and below 2^32, so raw is in 1..2^63")
    }

    /// The slot a handle names, if it was issued by this codec: the caller
    /// still checks it against the slot's current generation with
    /// [`matches`](Self::matches).
    pub fn slot(&self, handle: Handle) -> u32 {
        (handle.to_raw() & SLOT_MASK) as u32
    }

    /// Whether `handle` is the handle of its slot at `generation`.
    pub fn matches(&self, handle: Handle, generation: u32) -> bool {
        let slot = self.slot(handle);
        (handle.to_raw() >> SLOT_BITS) == u64::from(self.tag(slot, generation))
    }

    fn tag(&self, slot: u32, generation: u32) -> u32 {
        let h = mix64(self.key ^ (u64::from(generation) << 32 | u64::from(slot)));
        ((h >> 32) as u32) | 1
    }
}

impl Default for HandleCodec {
    fn default() -> Self {
        Self::new()
    }
}

const SLOT_BITS: u32 = 31;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

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

    #[test]
    fn codec_round_trips_and_rejects_other_generations_and_instances() {
        let a = HandleCodec::new();
        let b = HandleCodec::new();
        assert_ne!(a, b);
        for slot in [0, 1, 2, 1000, (HandleCodec::MAX_SLOTS - 1) as u32] {
            for generation in [0, 1, 7, u32::MAX] {
                let h = a.encode(slot, generation);
                assert!(h.to_raw() <= Handle::MAX_RAW);
                assert_eq!(a.slot(h), slot);
                assert!(a.matches(h, generation));
                assert!(!a.matches(h, generation.wrapping_add(2)));
                assert!(!b.matches(h, generation), "foreign codec accepted {h:?}");
            }
        }
    }

    #[test]
    fn neighbouring_slots_do_not_share_tags() {
        let c = HandleCodec::new();
        let h = c.encode(4, 1);
        for bit in 0..63 {
            let flipped = Handle::from_raw(h.to_raw() ^ (1 << bit)).unwrap();
            assert!(!c.matches(flipped, 1), "bit {bit} flip accepted");
        }
    }
}
