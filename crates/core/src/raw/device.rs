//! [`Device`]: the storage under a [`SlotStore`](super::SlotStore), one
//! per shard, addressed in page-sized slots; [`DeviceLayer`]: a device
//! over another, that writes only what it changes.

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

/// What [`Device::read_arriving`] calls with each part of a run once it is
/// in: the run's index, the part's first page within the run, its pages.
pub type Arrived<'a> = dyn FnMut(usize, usize, &[&mut Page]) + 'a;

/// The outcome of a read of `runs` that is over, handed to `arrived` as
/// [`Device::read_arriving`] does once everything is in: each run that
/// completed, whole.
pub fn hand_over(
    runs: &[ReadRun<'_, '_>],
    result: Result<(), RunError>,
    arrived: &mut Arrived<'_>,
) -> Result<(), RunError> {
    let done = result.as_ref().map_or_else(|e| e.done, |()| runs.len());
    for (k, run) in runs.iter().enumerate().take(done) {
        arrived(k, 0, run.pages);
    }
    result
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

    /// Writes every run as [`write`](Self::write) does, calling `meanwhile`
    /// once while the writes may be in flight: so that the caller's own
    /// work on the pages (their checksums) overlaps the device's. The
    /// default calls `meanwhile`, then writes.
    ///
    /// # Safety
    ///
    /// As [`write`](Self::write); `meanwhile` only reads the runs' pages
    /// and does not call into this device (which may hold its own locks
    /// while it runs).
    unsafe fn write_overlapped(&self, runs: &[WriteRun<'_>], meanwhile: &mut dyn FnMut()) -> Result<(), RunError> {
        meanwhile();
        // SAFETY: the caller's runs, under the caller's promise.
        unsafe { self.write(runs) }
    }

    /// Fills every run's pages from its slots.
    ///
    /// # Safety
    ///
    /// Every slot of `runs` was written (a `write` of it returned `Ok`) and
    /// is neither written nor released until this returns; reads of the
    /// same slots may run at the same time.
    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError>;

    /// Reads every run as [`read`](Self::read) does, handing each part of
    /// a run to `arrived` once it is in (parts in any order), while later
    /// parts may still be in flight: so that the caller checks what has
    /// arrived while the device reads the rest. Every page of the runs
    /// before the first that failed (all of them on `Ok`) is handed over
    /// once. The default reads everything, then hands over each run
    /// ([`hand_over`]).
    ///
    /// # Safety
    ///
    /// As [`read`](Self::read).
    unsafe fn read_arriving(&self, runs: &mut [ReadRun<'_, '_>], arrived: &mut Arrived<'_>) -> Result<(), RunError> {
        // SAFETY: the caller's runs, under the caller's promise.
        let result = unsafe { self.read(runs) };
        hand_over(runs, result, arrived)
    }

    /// Frees the storage behind `count` slots from `slot` (punches a hole):
    /// their data is gone, their space given back.
    ///
    /// # Safety
    ///
    /// No `write` or `read` of those slots runs at the same time.
    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()>;

    /// Hands the stored bytes of `count` slots from `slot` to `visit`
    /// where they lie (a mapping of the storage, a staged copy), one page
    /// at a time in order with its position in the run, instead of copying
    /// them into a page: for a layer that transforms pages on their way out
    /// (sealing decrypts from the storage straight into the caller's page).
    /// Returns `Ok(false)`, having called `visit` for none, where the device
    /// cannot lend its storage (the default): the caller reads instead.
    ///
    /// # Safety
    ///
    /// As [`read`](Self::read): every slot was written and is neither
    /// written nor released until this returns.
    unsafe fn lend(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) -> io::Result<bool> {
        let _ = (slot, count, visit);
        Ok(false)
    }

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

/// A device over another device (sealing, fault injection, a choice
/// between devices): [`inner`](DeviceLayer::inner) names the device
/// underneath, and every method the layer does not write forwards to it.
/// Each method means what the [`Device`] method of the same name means.
///
/// Every `DeviceLayer` is a [`Device`] through one impl beside the trait,
/// so a method added to `Device` is added there once and forwards for
/// every layer; a layer cannot implement `Device` by hand as well (rustc
/// refuses the two impls). As with [`layers::Layer`](crate::layers::Layer),
/// implement it by its path (`impl raw::DeviceLayer for ...`) where `Device`
/// is in scope too, or call the methods as `Device::write(&layer, ..)`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pagebackup_core::raw::{Device, DeviceLayer, RunError, WriteRun};
///
/// /// Counts written pages; everything else goes to the device underneath.
/// #[derive(Debug)]
/// struct Counting<D> {
///     inner: D,
///     pages: AtomicU64,
/// }
///
/// // SAFETY: `write` passes its runs to the inner device unchanged and
/// // touches nothing but a counter; the rest forwards.
/// unsafe impl<D: Device> DeviceLayer for Counting<D> {
///     type Inner = D;
///     fn inner(&self) -> &D {
///         &self.inner
///     }
///     unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
///         let pages: usize = runs.iter().map(|r| r.pages.len()).sum();
///         self.pages.fetch_add(pages as u64, Ordering::Relaxed);
///         // SAFETY: the caller's runs, under the caller's promise.
///         unsafe { self.inner.write(runs) }
///     }
/// }
/// ```
///
/// # Safety
///
/// An implementation promises, for the methods it writes, what an
/// implementation of [`Device`] promises (see its `# Safety`); the
/// provided methods pass their arguments to [`inner`](DeviceLayer::inner)
/// unchanged, which keeps it. It also promises that the caller's
/// exclusivity reaches the device underneath: `inner` returns a device
/// that nothing but this layer calls (the layer owns it, or the
/// device it returns is the same one at every call and nobody else holds
/// it), and a layer that calls it on slots passes the caller's slots, or
/// slots that only the layer uses. A layer shared with another caller of
/// its inner device would pass on a promise for slots that the other
/// caller may be touching.
pub unsafe trait DeviceLayer: Send + Sync + Debug {
    /// The device underneath.
    type Inner: Device + ?Sized;

    /// The device underneath.
    fn inner(&self) -> &Self::Inner;

    /// [`Device::write`].
    ///
    /// # Safety
    ///
    /// As [`Device::write`].
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        // SAFETY: the caller's runs, under the caller's promise, which reaches the inner device (the trait's contract).
        unsafe { self.inner().write(runs) }
    }

    /// [`Device::write_overlapped`]: `meanwhile`, then the layer's own
    /// [`write`](Self::write), unless the layer says otherwise (the inner
    /// device's write is not what a layer that changes writes would do). A
    /// layer that writes the pages unchanged may forward it.
    ///
    /// # Safety
    ///
    /// As [`Device::write_overlapped`].
    unsafe fn write_overlapped(&self, runs: &[WriteRun<'_>], meanwhile: &mut dyn FnMut()) -> Result<(), RunError> {
        meanwhile();
        // SAFETY: the caller's runs, under the caller's promise.
        unsafe { DeviceLayer::write(self, runs) }
    }

    /// [`Device::read`].
    ///
    /// # Safety
    ///
    /// As [`Device::read`].
    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        // SAFETY: the caller's runs, under the caller's promise, which reaches the inner device (the trait's contract).
        unsafe { self.inner().read(runs) }
    }

    /// [`Device::read_arriving`]: the layer's own [`read`](Self::read),
    /// then each run handed over, unless the layer says otherwise (the
    /// inner device's parts are not what a layer that changes reads would
    /// give). A layer that reads its inner device's bytes unchanged may
    /// forward it.
    ///
    /// # Safety
    ///
    /// As [`Device::read_arriving`].
    unsafe fn read_arriving(&self, runs: &mut [ReadRun<'_, '_>], arrived: &mut Arrived<'_>) -> Result<(), RunError> {
        // SAFETY: the caller's runs, under the caller's promise.
        let result = unsafe { DeviceLayer::read(self, runs) };
        hand_over(runs, result, arrived)
    }

    /// [`Device::release`].
    ///
    /// # Safety
    ///
    /// As [`Device::release`].
    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        // SAFETY: the caller's slots, under the caller's promise, which reaches the inner device (the trait's contract).
        unsafe { self.inner().release(slot, count) }
    }

    /// [`Device::lend`]: lends nothing unless the layer says otherwise,
    /// since the inner device's stored bytes are not what a layer that
    /// changes reads (sealing, fault injection) would give. A layer that
    /// reads its inner device's bytes unchanged may forward it.
    ///
    /// # Safety
    ///
    /// As [`Device::lend`].
    unsafe fn lend(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) -> io::Result<bool> {
        let _ = (slot, count, visit);
        Ok(false)
    }

    /// [`Device::preallocate`].
    ///
    /// # Safety
    ///
    /// As [`Device::preallocate`].
    unsafe fn preallocate(&self, slot: u32, count: u32) -> io::Result<()> {
        // SAFETY: the caller's slots, under the caller's promise, which reaches the inner device (the trait's contract).
        unsafe { self.inner().preallocate(slot, count) }
    }

    /// [`Device::writeback`].
    fn writeback(&self, slot: u32, count: u32) -> u64 {
        self.inner().writeback(slot, count)
    }

    /// [`Device::flush`].
    fn flush(&self) -> io::Result<()> {
        self.inner().flush()
    }

    /// [`Device::resident_bytes`].
    fn resident_bytes(&self) -> u64 {
        self.inner().resident_bytes()
    }

    /// [`Device::space_avail`].
    fn space_avail(&self) -> u64 {
        self.inner().space_avail()
    }

    /// [`Device::io_path`].
    fn io_path(&self) -> Option<&'static str> {
        self.inner().io_path()
    }

    /// [`Device::buffered_bytes`].
    fn buffered_bytes(&self) -> u64 {
        self.inner().buffered_bytes()
    }
}

// SAFETY: every method is the layer's own, which keeps `Device`'s contract
// by `DeviceLayer`'s; the caller's promises pass through unchanged.
#[deny(clippy::missing_trait_methods)]
unsafe impl<L: DeviceLayer> Device for L {
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::write(self, runs) }
    }
    unsafe fn write_overlapped(&self, runs: &[WriteRun<'_>], meanwhile: &mut dyn FnMut()) -> Result<(), RunError> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::write_overlapped(self, runs, meanwhile) }
    }
    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::read(self, runs) }
    }
    unsafe fn read_arriving(&self, runs: &mut [ReadRun<'_, '_>], arrived: &mut Arrived<'_>) -> Result<(), RunError> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::read_arriving(self, runs, arrived) }
    }
    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::release(self, slot, count) }
    }
    unsafe fn lend(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) -> io::Result<bool> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::lend(self, slot, count, visit) }
    }
    unsafe fn preallocate(&self, slot: u32, count: u32) -> io::Result<()> {
        // SAFETY: the caller's promise is the layer's method's.
        unsafe { DeviceLayer::preallocate(self, slot, count) }
    }
    fn writeback(&self, slot: u32, count: u32) -> u64 {
        DeviceLayer::writeback(self, slot, count)
    }
    fn flush(&self) -> io::Result<()> {
        DeviceLayer::flush(self)
    }
    fn resident_bytes(&self) -> u64 {
        DeviceLayer::resident_bytes(self)
    }
    fn space_avail(&self) -> u64 {
        DeviceLayer::space_avail(self)
    }
    fn io_path(&self) -> Option<&'static str> {
        DeviceLayer::io_path(self)
    }
    fn buffered_bytes(&self) -> u64 {
        DeviceLayer::buffered_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::test_device::VecDevice;

    /// A device of pages in memory whose every other method says who it is.
    #[derive(Debug, Default)]
    struct Marked(VecDevice);

    // SAFETY: it owns its inner device and changes no unsafe method.
    unsafe impl DeviceLayer for Marked {
        type Inner = VecDevice;
        fn inner(&self) -> &VecDevice {
            &self.0
        }
        fn writeback(&self, _: u32, count: u32) -> u64 {
            u64::from(count) * 10
        }
        fn flush(&self) -> io::Result<()> {
            Err(io::Error::other("marked flush"))
        }
        fn resident_bytes(&self) -> u64 {
            11
        }
        fn space_avail(&self) -> u64 {
            12
        }
        fn io_path(&self) -> Option<&'static str> {
            Some("marked")
        }
        fn buffered_bytes(&self) -> u64 {
            13
        }
    }

    /// A layer that changes only its I/O path's name.
    #[derive(Debug)]
    struct Renamed(Marked);

    // SAFETY: it owns its inner device and changes no unsafe method.
    unsafe impl DeviceLayer for Renamed {
        type Inner = Marked;
        fn inner(&self) -> &Marked {
            &self.0
        }
        fn io_path(&self) -> Option<&'static str> {
            Some("renamed")
        }
    }

    /// After a read that failed at a run, the runs before it are handed
    /// over whole and nothing after; after one that succeeded, every run.
    #[test]
    fn hand_over_gives_every_run_read_whole() {
        let (mut a, mut b, mut c) = (Page::zeroed(), Page::zeroed(), Page::zeroed());
        let (mut first, mut second) = ([&mut a, &mut b], [&mut c]);
        let runs = [
            ReadRun {
                slot: 0,
                pages: &mut first,
            },
            ReadRun {
                slot: 9,
                pages: &mut second,
            },
        ];
        let mut seen = Vec::new();
        let failed = RunError {
            done: 1,
            error: io::Error::other("second run"),
        };
        let result = hand_over(&runs, Err(failed), &mut |run, at, pages| {
            seen.push((run, at, pages.len()))
        });
        assert_eq!(result.unwrap_err().done, 1);
        assert_eq!(seen, [(0, 0, 2)]);
        seen.clear();
        hand_over(&runs, Ok(()), &mut |run, at, pages| seen.push((run, at, pages.len()))).unwrap();
        assert_eq!(seen, [(0, 0, 2), (1, 0, 1)]);
    }

    #[test]
    fn a_layer_forwards_what_it_does_not_write() {
        let layer = Renamed(Marked::default());
        let device: &dyn Device = &layer;
        let mut page = Page::zeroed();
        page.as_bytes_mut()[7] = 7;
        // SAFETY: one thread, and the test owns every slot.
        unsafe {
            device.write(&[WriteRun {
                slot: 2,
                pages: &[&page],
                resident: false,
            }])
        }
        .unwrap();
        let mut out = Page::zeroed();
        // SAFETY: as above; slot 2 was written.
        unsafe {
            device.read(&mut [ReadRun {
                slot: 2,
                pages: &mut [&mut out],
            }])
        }
        .unwrap();
        assert_eq!(out, page);
        // SAFETY: as above.
        unsafe { device.release(2, 1) }.unwrap();
        assert_eq!(layer.inner().inner().stored(2), Page::zeroed());
        assert_eq!(device.writeback(0, 3), 30);
        assert_eq!(device.flush().unwrap_err().to_string(), "marked flush");
        assert_eq!(
            (device.resident_bytes(), device.space_avail(), device.buffered_bytes()),
            (11, 12, 13)
        );
        assert_eq!(device.io_path(), Some("renamed"));
    }
}
