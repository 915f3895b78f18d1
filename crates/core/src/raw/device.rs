//! [`Device`]: the storage under a [`SlotStore`](super::SlotStore), one
//! per shard, addressed in page-sized slots.

use std::fmt::Debug;
use std::io;

use crate::Page;

/// Pages to write to the contiguous slots from `slot` on.
#[derive(Debug)]
pub struct WriteRun<'a> {
    /// The first slot (the device's own numbering, from 0).
    pub slot: u32,
    /// The pages, one per slot.
    pub pages: &'a [&'a Page],
    /// Every slot of the run kept its storage since it was last dropped
    /// (the store's deferred release): writing it allocates nothing.
    pub resident: bool,
}

/// Pages to fill from the contiguous slots from `slot` on.
#[derive(Debug)]
pub struct ReadRun<'a, 'p> {
    /// The first slot.
    pub slot: u32,
    /// The destinations, one per slot.
    pub pages: &'a mut [&'p mut Page],
}

/// A failed [`Device::write`] or [`Device::read`]: the first `done` runs
/// completed whole; the others may have completed in part or not at all.
#[derive(Debug)]
pub struct RunError {
    /// Runs completed whole, from the first.
    pub done: usize,
    /// What failed.
    pub error: io::Error,
}

/// Page-sized slots of storage: a memfd, a file, a block device.
///
/// The store calls a device with slots that it owns exclusively for the
/// call (a write's slots are reserved for it; a read's are pinned: neither
/// written, reused nor released until the read is over, even if their
/// handles are dropped meanwhile), never under a lock, possibly from many
/// threads at once.
/// A device keeps no slot bookkeeping of its own: placement, handles,
/// checksums and failure rules are the store's.
pub trait Device: Send + Sync + Debug {
    /// Writes every run. When this returns `Ok`, a later [`read`](Self::read)
    /// of those slots returns the pages (the device may still hold them in
    /// memory, to be written by [`flush`](Self::flush)).
    fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError>;

    /// Fills every run's pages from its slots.
    fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError>;

    /// Frees the storage behind `count` slots from `slot` (punches a hole):
    /// their data is gone, their space given back.
    fn release(&self, slot: u32, count: u32) -> io::Result<()>;

    /// Starts moving `count` slots from `slot` to the device's slowest tier
    /// (swap, disk). Returns how many pages it sent. The default does nothing.
    fn writeback(&self, slot: u32, count: u32) -> u64 {
        let _ = (slot, count);
        0
    }

    /// Returns once every write that returned `Ok` has reached the device's
    /// storage. The default does nothing.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Bytes of the device's storage held in RAM (page cache, staging
    /// buffers).
    fn resident_bytes(&self) -> u64;

    /// A cheap estimate of the bytes the device's storage can still take
    /// (free swap, the file system's free space). The default is unbounded.
    fn space_avail(&self) -> u64 {
        u64::MAX
    }

    /// The I/O path in use, for stats (`"pwritev"`, `"io_uring"`).
    fn io_path(&self) -> Option<&'static str> {
        None
    }

    /// Bytes of memory the device holds beyond its storage (staging
    /// buffers), counted in the store's `memory_used`.
    fn buffered_bytes(&self) -> u64 {
        0
    }
}
