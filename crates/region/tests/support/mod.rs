//! Helpers of the region tests: making a region or skipping with the reason.

#![allow(dead_code)] // each test binary uses a part

use pagebackup_core::{BackupBackend, MemoryBackend, PAGE_SIZE};
use pagebackup_region::{FaultMode, OffloadRegion, RegionConfig, RegionError};

/// The budget of the small regions of the tests: 64 pages.
pub const BUDGET: usize = 64 * PAGE_SIZE;
/// Their length: eight times the budget.
pub const LEN: usize = 8 * BUDGET;
/// 64-bit words in a page.
pub const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

/// Both fault modes.
pub const MODES: [FaultMode; 2] = [FaultMode::Signal, FaultMode::HandlerThread];

/// A region, or `None` after printing why this kernel cannot make one.
pub fn region(
    len: usize,
    budget: usize,
    backend: Box<dyn BackupBackend>,
    config: RegionConfig,
) -> Option<OffloadRegion> {
    match OffloadRegion::with_config(len, budget, backend, config) {
        Ok(r) => Some(r),
        Err(e @ RegionError::Unsupported { .. }) => {
            println!("SKIP: {e}");
            None
        }
        Err(RegionError::Os { op, source })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound | std::io::ErrorKind::Unsupported
            ) || source.raw_os_error() == Some(38) =>
        {
            println!("SKIP: userfaultfd unavailable ({op}: {source})");
            None
        }
        Err(e) => panic!("making a region: {e}"),
    }
}

/// A region of [`LEN`] bytes under a [`BUDGET`] over a `MemoryBackend`,
/// in `mode`, or `None` after printing why this kernel cannot make one.
pub fn memory_region(mode: FaultMode) -> Option<OffloadRegion> {
    region(
        LEN,
        BUDGET,
        Box::new(MemoryBackend::new()),
        RegionConfig::new().with_mode(mode),
    )
}

/// A [`memory_region`] in `mode` whose 64-bit words hold their own index,
/// written through the region (so that its first pages are evicted by the
/// end), or `None` after printing why this kernel cannot make one.
pub fn filled(mode: FaultMode) -> Option<OffloadRegion> {
    let r = memory_region(mode)?;
    for (i, w) in r.words().iter().enumerate() {
        w.store(i as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Some(r)
}

/// Fills page `i` with the byte `i as u8 | 1`, page after page, so that the
/// first pages are evicted by the end.
pub fn fill(bytes: &mut [u8]) {
    for (i, chunk) in bytes.chunks_mut(PAGE_SIZE).enumerate() {
        chunk.fill(i as u8 | 1);
    }
}

/// xorshift64*: deterministic test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(2685821657736338717)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
