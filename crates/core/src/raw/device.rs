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
/// threads at once. A device keeps no slot bookkeeping of its own:
/// placement, handles, checksums and failure rules are the store's.
///
/// The contract is in the types, as memmap2 puts it on `Mmap::map`: a
/// device may read and write its storage with plain memory copies (a shared
/// mapping), which is sound only while no other call touches the same
/// slots, so [`write`](Self::write), [`read`](Self::read) and
/// [`release`](Self::release) are `unsafe fn`s whose callers promise that
/// exclusivity, and the slot store is the one caller that keeps it (its
/// reservations and read pins). Safe code cannot reach the racing calls:
///
/// ```compile_fail,E0133
/// use pagebackup_core::raw::{Device, ReadRun};
/// use pagebackup_core::Page;
///
/// fn peek(device: &impl Device, dst: &mut Page) {
///     // error[E0133]: call to unsafe function requires unsafe block
///     let _ = device.read(&mut [ReadRun { slot: 0, pages: &mut [dst] }]);
/// }
/// ```
///
/// (The same call inside an `unsafe` block, with a `// SAFETY:` saying why no
/// other call touches slot 0, compiles.)
///
/// # Safety
///
/// An implementation promises that a call touches no memory but the pages
/// of its runs (read for a write, written whole for a read that returns
/// `Ok`, and only for the duration of the call) and the device's own
/// storage of the slots it is given, so that the caller's exclusivity over
/// those slots is all that concurrent calls need to be free of data races;
/// and that it neither panics nor leaves a destination page partly written
/// on `Ok`.
pub unsafe trait Device: Send + Sync + Debug {
    /// Writes every run. When this returns `Ok`, a later [`read`](Self::read)
    /// of those slots returns the pages (the device may still hold them in
    /// memory, to be written by [`flush`](Self::flush)).
    ///
    /// # Safety
    ///
    /// The caller holds every slot of `runs` exclusively until this returns:
    /// no other `write`, `read` or `release` of them runs at the same time.
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError>;

    /// Fills every run's pages from its slots.
    ///
    /// # Safety
    ///
    /// Every slot of `runs` was written (a `write` of it returned `Ok`) and
    /// is neither written nor released until this returns; reads of the
    /// same slots may run at the same time.
    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError>;

    /// Frees the storage behind `count` slots from `slot` (punches a hole):
    /// their data is gone, their space given back.
    ///
    /// # Safety
    ///
    /// No `write` or `read` of those slots runs at the same time.
    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()>;

    /// Allocates the storage of `count` free slots from `slot` ahead of
    /// their writes (its contents are unspecified until written), so that a
    /// later write of them, marked [`WriteRun::resident`], allocates
    /// nothing. Done off the backup path, by a store filling its reserve
    /// ([`SlotStore::fill_reserve`](super::SlotStore::fill_reserve)). The
    /// default says [`io::ErrorKind::Unsupported`].
    ///
    /// # Safety
    ///
    /// No `write`, `read` or `release` of those slots runs at the same time.
    unsafe fn preallocate(&self, slot: u32, count: u32) -> io::Result<()> {
        let _ = (slot, count);
        Err(io::ErrorKind::Unsupported.into())
    }

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
