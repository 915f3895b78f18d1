//! The splitmix64 finaliser, shared by handle tags and fault injection.

/// A fast bijective 64-bit mixer: distinct inputs give distinct outputs,
/// and nearby inputs give unrelated ones.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
