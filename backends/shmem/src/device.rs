//! [`MemfdDevice`]: one shard's sealed memfd and its mapping, as a slot
//! store device.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use pagebackup_core::raw::{Device, ReadRun, RunError, WriteRun};
use pagebackup_core::{PAGE_SIZE, Page};
use rustix::mm::Advice;

use crate::memfd;

const PAGE: u64 = PAGE_SIZE as u64;
/// Most iovecs one `pwritev` takes (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// A sealed memfd of a fixed size, mapped shared once.
///
/// - **Writes** of a run of slots whose memory was kept since they were
///   dropped ([`WriteRun::resident`]) are copies into the mapping: nothing
///   is allocated, so nothing can fail. A run of new slots goes through
///   `pwritev` (one call per run), so that a failed allocation comes back as
///   `ENOSPC`/`ENOMEM` instead of a `SIGBUS`, then `MADV_POPULATE_READ` maps
///   it, so that restores copy from a populated mapping and take no page
///   fault. (`MADV_POPULATE_WRITE` and a copy instead measured 0.56-0.66x
///   as fast: the kernel zeroes each new page before the copy overwrites
///   it, where `pwritev` fills it once.)
/// - **Reads** copy out of the mapping. The memfd is sealed against
///   shrinking, so a slot inside it never faults with `SIGBUS`.
/// - **Release** punches a hole; **writeback** is `MADV_PAGEOUT` (with swap).
///
/// Reads copy out of a shared mapping, so [`Device`]'s calls are `unsafe`
/// and only the slot store, which holds the slots, makes them; safe code
/// cannot read a slot another thread may be writing:
///
/// ```compile_fail,E0133
/// use pagebackup_core::raw::{Device, ReadRun};
/// use pagebackup_core::Page;
/// use pagebackup_shmem::raw::MemfdDevice;
///
/// let device = MemfdDevice::new(1).unwrap();
/// let mut page = Page::new_boxed();
/// // error[E0133]: call to unsafe function requires unsafe block
/// device.read(&mut [ReadRun { slot: 0, pages: &mut [&mut *page] }]).unwrap();
/// ```
#[derive(Debug)]
pub struct MemfdDevice {
    memfd: OwnedFd,
    map: MmapRaw,
    slots: u32,
}

impl MemfdDevice {
    /// A memfd of `slots` pages (sparse), sealed and mapped.
    pub fn new(slots: u32) -> io::Result<Self> {
        let len = u64::from(slots) * PAGE;
        let memfd = memfd::create_sealed("pagebackup-shmem", len)?;
        let map_len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let map = MmapOptions::new().len(map_len).map_raw(&memfd)?;
        Ok(MemfdDevice { memfd, map, slots })
    }

    /// The memfd, writable: writing through it changes slots the store may
    /// be reading (see [`ShmemBackend::writable_memfds`](crate::ShmemBackend::writable_memfds)).
    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// The mapping's address range.
    pub fn mapping_range(&self) -> std::ops::Range<usize> {
        let start = self.map.as_ptr() as usize;
        start..start + self.map.len()
    }

    fn slot_ptr(&self, slot: u32) -> *mut Page {
        assert!(slot < self.slots, "slot {slot} outside the memfd");
        // SAFETY: slot < slots, the mapping's length in pages: the offset stays inside it.
        unsafe { self.map.as_mut_ptr().add(slot as usize * PAGE_SIZE).cast() }
    }

    /// Writes `run`: a copy into the mapping if its slots are resident,
    /// else through `pwritev`.
    fn write_run(&self, run: &WriteRun<'_>) -> io::Result<()> {
        if !run.resident {
            return self.pwrite_run(run.pages, run.slot);
        }
        for (k, page) in run.pages.iter().enumerate() {
            // The store hands over slots it reserved for this write alone,
            // whose memory was kept since their drop; the sealed memfd
            // cannot shrink, so the copy neither allocates nor faults with SIGBUS.
            // SAFETY: the destination lies inside the mapping and no one else reads or writes it during the call; `page` is a distinct page.
            unsafe { std::ptr::copy_nonoverlapping(*page, self.slot_ptr(run.slot + k as u32), 1) };
        }
        Ok(())
    }

    /// Writes `pages` to the slots from `first` with `pwritev`, retrying
    /// short writes, then maps them (`MADV_POPULATE_READ`).
    fn pwrite_run(&self, pages: &[&Page], first: u32) -> io::Result<()> {
        let mut done = 0;
        while done < pages.len() {
            let chunk = &pages[done..pages.len().min(done + IOV_MAX)];
            let iov: Vec<IoSlice<'_>> = chunk.iter().map(|p| IoSlice::new(p.as_bytes())).collect();
            let offset = (u64::from(first) + done as u64) * PAGE;
            let written = rustix::io::pwritev(&self.memfd, &iov, offset)?;
            if written == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            // A short write may end mid-page: that page is written again whole.
            done += written / PAGE_SIZE;
        }
        // Best effort: a kernel without MADV_POPULATE_READ (before 5.14)
        // maps the pages at the first restore instead.
        let _ = self.advise(first, pages.len() as u32, Advice::LinuxPopulateRead);
        Ok(())
    }

    fn advise(&self, slot: u32, count: u32, advice: Advice) -> io::Result<()> {
        let end = slot.checked_add(count).filter(|&e| e <= self.slots);
        assert!(end.is_some(), "slots {slot}+{count} outside the memfd");
        let (addr, len) = (self.slot_ptr(slot).cast(), count as usize * PAGE_SIZE);
        // SAFETY: the range lies inside our mapping; the advice given here (populate, page out) never changes its contents.
        unsafe { rustix::mm::madvise(addr, len, advice) }?;
        Ok(())
    }
}

// SAFETY: a call touches only its runs' pages and the mapping's (or the
// memfd's) slots it is given, inside the mapping (`slot_ptr` checks the
// bounds); `read` copies whole pages and cannot fail part-way.
unsafe impl Device for MemfdDevice {
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        for (done, run) in runs.iter().enumerate() {
            self.write_run(run).map_err(|error| RunError { done, error })?;
        }
        Ok(())
    }

    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        for run in runs.iter_mut() {
            for (k, dst) in run.pages.iter_mut().enumerate() {
                // The caller's promise (`Device::read`): the slot was written and nothing
                // writes or releases it meanwhile; the sealed memfd cannot shrink, so no SIGBUS.
                // SAFETY: the source lies inside the mapping and is not being written; `dst` is a distinct, exclusive page.
                unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(run.slot + k as u32), &mut **dst, 1) };
            }
        }
        Ok(())
    }

    /// `MADV_POPULATE_WRITE`: the kernel allocates (and zeroes) the pages
    /// and maps them writable, so that a resident write is a copy that
    /// takes no fault. A failed allocation is an error (`ENOMEM`), not a
    /// `SIGBUS`.
    unsafe fn preallocate(&self, slot: u32, count: u32) -> io::Result<()> {
        self.advise(slot, count, Advice::LinuxPopulateWrite)
    }

    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        memfd::punch_hole(&self.memfd, u64::from(slot) * PAGE, u64::from(count) * PAGE)
    }

    fn writeback(&self, slot: u32, count: u32) -> u64 {
        if rustix::system::sysinfo().totalswap == 0 {
            // Without swap the kernel could not page them out.
            return 0;
        }
        match self.advise(slot, count, Advice::LinuxPageOut) {
            Ok(()) => u64::from(count),
            Err(_) => 0,
        }
    }

    /// The memfd's allocated bytes (in RAM or swapped) less those swapped
    /// out. Those are read from `/proc/self/smaps`, a file as long as the
    /// process's mappings, only when something is swapped out on the
    /// machine at all.
    fn resident_bytes(&self) -> u64 {
        let allocated = memfd::allocated_bytes(&self.memfd).unwrap_or(0);
        let info = rustix::system::sysinfo();
        if allocated == 0 || info.totalswap == info.freeswap {
            return allocated;
        }
        let swapped = crate::smaps::swap_bytes(self.mapping_range().start).unwrap_or(0);
        allocated.saturating_sub(swapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Box<Page> {
        let mut page = Page::new_boxed();
        page.as_bytes_mut().fill(byte);
        page
    }

    fn read_back(device: &MemfdDevice, slot: u32) -> Box<Page> {
        let mut out = Page::new_boxed();
        let mut dsts = [&mut *out];
        // SAFETY: the test owns the device and its slots; one call at a time.
        unsafe { device.read(&mut [ReadRun { slot, pages: &mut dsts }]) }.unwrap();
        out
    }

    /// A new run, written with `pwritev`, and a resident run copied over
    /// part of it, read back exactly; the resident rewrite allocates nothing.
    #[test]
    fn both_write_paths_read_back_exactly() {
        let device = MemfdDevice::new(8).unwrap();
        let (a, b, c) = (page(1), page(2), page(3));
        let pages = [&*a, &*b];
        // SAFETY: the test owns the device and its slots; one call at a time.
        unsafe {
            device.write(&[WriteRun {
                slot: 3,
                pages: &pages,
                resident: false,
            }])
        }
        .unwrap();
        assert_eq!(memfd::allocated_bytes(&device.memfd).unwrap(), 2 * PAGE);
        assert_eq!((read_back(&device, 3), read_back(&device, 4)), (a, b.clone()));
        // SAFETY: the test owns the device and its slots; one call at a time.
        unsafe {
            device.write(&[WriteRun {
                slot: 3,
                pages: &[&*c],
                resident: true,
            }])
        }
        .unwrap();
        assert_eq!(memfd::allocated_bytes(&device.memfd).unwrap(), 2 * PAGE);
        assert_eq!((read_back(&device, 3), read_back(&device, 4)), (c, b));
        // SAFETY: as above.
        unsafe { device.release(3, 2) }.unwrap();
        assert_eq!(memfd::allocated_bytes(&device.memfd).unwrap(), 0);
    }
}
