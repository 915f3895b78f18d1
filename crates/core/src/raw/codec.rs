//! [`HandleCodec`]: a keyed bijection between (slot, generation) pairs and
//! handle values.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Handle;
use crate::mix::mix64;

/// Encodes a slot number and the slot's generation into a [`Handle`] that
/// only the issuing backend instance accepts.
///
/// The pair is packed into a 63-bit value (`generation << 31 | slot`) and
/// enciphered with a four-round Feistel network keyed per instance, over
/// the 63 bits themselves (an unbalanced network of a 31-bit and a 32-bit
/// half, so that one pass stays below 2^63; only the value 0 is walked
/// past, to stay in `1..2^63`). Because that is a bijection:
///
/// - two distinct (slot, generation) pairs never share a handle value, so a
///   dropped handle can never name a later backup in the same slot (slot
///   allocators make generations count allocations and retire a slot once
///   its 32-bit generation is used up, after 2^32 - 1 reuses);
/// - a value the instance did not issue (forged, or another instance's)
///   deciphers to an unrelated pair, which matches a live slot's current
///   generation with probability at most 2^-32.
///
/// Each codec gets a key of its own from [`HandleCodec::new`]; keys are
/// distinct within a process and unpredictable across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleCodec {
    keys: [u64; ROUNDS],
}

const ROUNDS: usize = 4;
const SLOT_BITS: u32 = 31;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const HALF: u32 = 32;
const LOW: u64 = (1 << HALF) - 1;
/// The high half's bits: 31, the top bit of a handle value is never set.
const HIGH: u64 = (1 << (63 - HALF)) - 1;

impl HandleCodec {
    /// Number of slots a handle can address: 2^31.
    pub const MAX_SLOTS: u64 = 1 << SLOT_BITS;

    /// A codec with a fresh instance key.
    pub fn new() -> Self {
        static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);
        static PROCESS_SEED: OnceLock<u64> = OnceLock::new();
        let seed = *PROCESS_SEED.get_or_init(|| RandomState::new().hash_one(0x7061_6765_6261_636b_u64));
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        // mix64 is a bijection, so distinct counters give distinct first keys.
        let mut key = mix64(n ^ seed);
        let keys = std::array::from_fn(|_| {
            let k = key;
            key = mix64(key ^ seed.rotate_left(17));
            k
        });
        HandleCodec { keys }
    }

    /// The handle for `slot` at `generation`.
    ///
    /// # Panics
    /// If `slot >= MAX_SLOTS` or `generation == 0`: slot allocators keep
    /// slots below the limit and count generations from 1.
    pub fn encode(&self, slot: u32, generation: u32) -> Handle {
        assert!(u64::from(slot) < Self::MAX_SLOTS, "slot {slot} out of handle range");
        assert!(generation != 0, "generations count from 1");
        let plain = (u64::from(generation) << SLOT_BITS) | u64::from(slot);
        let mut x = plain;
        loop {
            x = self.encipher(x);
            if let Some(handle) = Handle::from_raw(x) {
                return handle;
            }
        }
    }

    /// The (slot, generation) pair a handle deciphers to. For a handle this
    /// codec issued, that is the pair it was made from; for any other value,
    /// an unrelated pair (generation 0 never matches a live slot).
    pub fn decode(&self, handle: Handle) -> (u32, u32) {
        let mut x = handle.to_raw();
        loop {
            x = self.decipher(x);
            if Handle::from_raw(x).is_some() {
                return ((x & SLOT_MASK) as u32, (x >> SLOT_BITS) as u32);
            }
        }
    }

    /// The slot a handle names: check its generation with
    /// [`matches`](Self::matches) (or use [`decode`](Self::decode) for both).
    pub fn slot(&self, handle: Handle) -> u32 {
        self.decode(handle).0
    }

    /// Whether `handle` is the handle of its slot at `generation`.
    pub fn matches(&self, handle: Handle, generation: u32) -> bool {
        generation != 0 && self.decode(handle).1 == generation
    }

    fn round(&self, k: usize, half: u64) -> u64 {
        mix64(self.keys[k] ^ half) & LOW
    }

    /// Round `k` of the network on `(l, r)`, `l` of 31 bits and `r` of
    /// 32: even rounds change `r` by the key's function of `l`, odd ones
    /// `l` by that of `r`. Each round undoes itself.
    fn apply(&self, k: usize, (l, r): (u64, u64)) -> (u64, u64) {
        if k.is_multiple_of(2) {
            (l, r ^ self.round(k, l))
        } else {
            (l ^ (self.round(k, r) & HIGH), r)
        }
    }

    /// A bijection of `0..2^63`: one pass of the unbalanced network (a
    /// balanced one over 64 bits left the domain half the time, and a
    /// handle took two passes on average to decode, 5 % of an lz4 restore).
    fn encipher(&self, x: u64) -> u64 {
        let mut halves = (x >> HALF & HIGH, x & LOW);
        for k in 0..ROUNDS {
            halves = self.apply(k, halves);
        }
        (halves.0 << HALF) | halves.1
    }

    fn decipher(&self, x: u64) -> u64 {
        let mut halves = (x >> HALF & HIGH, x & LOW);
        for k in (0..ROUNDS).rev() {
            halves = self.apply(k, halves);
        }
        (halves.0 << HALF) | halves.1
    }
}

impl Default for HandleCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codec_round_trips_and_rejects_other_generations_and_instances() {
        let a = HandleCodec::new();
        let b = HandleCodec::new();
        assert_ne!(a, b);
        for slot in [0, 1, 2, 1000, (HandleCodec::MAX_SLOTS - 1) as u32] {
            for generation in [1, 2, 7, u32::MAX] {
                let h = a.encode(slot, generation);
                assert!(h.to_raw() <= Handle::MAX_RAW);
                assert_eq!(a.decode(h), (slot, generation));
                assert_eq!(a.slot(h), slot);
                assert!(a.matches(h, generation));
                assert!(!a.matches(h, generation.wrapping_add(1)));
                assert!(
                    !b.matches(h, generation) || b.slot(h) != slot,
                    "foreign codec accepted {h:?}"
                );
            }
        }
    }

    #[test]
    fn one_slot_reused_a_million_times_never_repeats_a_value() {
        // The old 32-bit tag collided after about 2^16 reuses (birthday bound).
        let c = HandleCodec::new();
        let mut seen = HashSet::with_capacity(1 << 20);
        for generation in 1..=1_000_000u32 {
            assert!(
                seen.insert(c.encode(7, generation).to_raw()),
                "generation {generation} repeats a value"
            );
        }
    }

    /// Enciphering stays below 2^63 in one pass and deciphering undoes it,
    /// 0 and the domain's top included.
    #[test]
    fn one_pass_is_a_bijection_of_63_bits() {
        let c = HandleCodec::new();
        let mut x = 0x0fed_cba9_8765_4321_u64;
        for i in 0..100_000 {
            x = mix64(x);
            let v = match i {
                0 => 0,
                1 => Handle::MAX_RAW,
                _ => x >> 1,
            };
            let e = c.encipher(v);
            assert!(e <= Handle::MAX_RAW, "{v:#x} enciphers to {e:#x}");
            assert_eq!(c.decipher(e), v);
        }
    }

    #[test]
    fn flipped_bits_are_rejected() {
        let c = HandleCodec::new();
        let h = c.encode(4, 1);
        for bit in 0..63 {
            let flipped = Handle::from_raw(h.to_raw() ^ (1 << bit)).unwrap();
            assert_ne!(c.decode(flipped), (4, 1), "bit {bit} flip accepted");
        }
    }

    #[test]
    fn decode_inverts_encode_on_random_values() {
        let c = HandleCodec::new();
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..100_000 {
            x = mix64(x);
            let Some(h) = Handle::from_raw(x >> 1) else { continue };
            let (slot, generation) = c.decode(h);
            if generation != 0 {
                assert_eq!(c.encode(slot, generation), h);
            }
        }
    }
}
