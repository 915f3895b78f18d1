//! [`MemfdDevice`]: one shard's sealed memfd and its mapping, as a slot
//! store device.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

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
/// - **Writes** are copies into the mapping. A run of slots whose memory
///   was kept since they were dropped ([`WriteRun::resident`]) is copied
///   into at once: nothing is allocated, so nothing can fail. A run of new
///   slots is first populated writable with one `MADV_POPULATE_WRITE` for
///   the whole run, so that a failed allocation comes back as
///   `ENOMEM`/`ENOSPC` instead of a `SIGBUS`, then copied into. On a
///   kernel without `MADV_POPULATE_WRITE` (before 5.14) new runs go
///   through `pwritev` instead (one call per run), then `MADV_POPULATE_READ`
///   maps them. Either way restores copy from a populated mapping and take
///   no page fault.
/// - **Reads** copy out of the mapping. The memfd is sealed against
///   shrinking, so a slot inside it never faults with `SIGBUS`.
/// - **Release** punches a hole; **writeback** is `MADV_PAGEOUT` (with swap).
#[derive(Debug)]
pub struct MemfdDevice {
    memfd: OwnedFd,
    map: MmapRaw,
    slots: u32,
    /// The kernel refused `MADV_POPULATE_WRITE`: new runs go through `pwritev`.
    no_populate_write: AtomicBool,
}

impl MemfdDevice {
    /// A memfd of `slots` pages (sparse), sealed and mapped.
    pub fn new(slots: u32) -> io::Result<Self> {
        let len = u64::from(slots) * PAGE;
        let memfd = memfd::create_sealed("pagebackup-shmem", len)?;
        let map_len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let map = MmapOptions::new().len(map_len).map_raw(&memfd)?;
        Ok(MemfdDevice {
            memfd,
            map,
            slots,
            no_populate_write: AtomicBool::new(false),
        })
    }

    /// The memfd.
    pub fn memfd(&self) -> BorrowedFd<'_> {
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

    /// Writes `run`: copies it into the mapping, after populating its
    /// slots unless they are resident; through `pwritev` where the kernel
    /// cannot populate for writing.
    fn write_run(&self, run: &WriteRun<'_>) -> io::Result<()> {
        let count = run.pages.len() as u32;
        if !run.resident {
            if self.no_populate_write.load(Ordering::Relaxed) {
                return self.pwrite_run(run.pages, run.slot);
            }
            match self.advise(run.slot, count, Advice::LinuxPopulateWrite) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.no_populate_write.store(true, Ordering::Relaxed);
                    return self.pwrite_run(run.pages, run.slot);
                }
                // EFAULT: populating would have raised SIGBUS (the memory
                // could not be charged, as under strict overcommit): the
                // storage is full, as `pwritev` would have said with ENOSPC.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::FAULT.raw_os_error()) => {
                    return Err(io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()));
                }
                Err(e) => return Err(e),
            }
        }
        for (k, page) in run.pages.iter().enumerate() {
            // The store hands over slots it reserved for this write alone;
            // they are populated (just now, or kept since their drop), and
            // the sealed memfd cannot shrink, so the copy neither allocates
            // nor faults with SIGBUS.
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

impl Device for MemfdDevice {
    fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        for (done, run) in runs.iter().enumerate() {
            self.write_run(run).map_err(|error| RunError { done, error })?;
        }
        Ok(())
    }

    fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        for run in runs.iter_mut() {
            for (k, dst) in run.pages.iter_mut().enumerate() {
                // The store hands over live slots only, fully written before
                // their handles existed; the sealed memfd cannot shrink, so no SIGBUS.
                // SAFETY: the source lies inside the mapping; `dst` is a distinct, exclusive page.
                unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(run.slot + k as u32), &mut **dst, 1) };
            }
        }
        Ok(())
    }

    fn release(&self, slot: u32, count: u32) -> io::Result<()> {
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

    fn allocated_bytes(&self) -> u64 {
        memfd::allocated_bytes(&self.memfd).unwrap_or(0)
    }

    fn resident_bytes(&self) -> u64 {
        let swapped = crate::smaps::swap_bytes(self.mapping_range().start).unwrap_or(0);
        self.allocated_bytes().saturating_sub(swapped)
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
        device.read(&mut [ReadRun { slot, pages: &mut dsts }]).unwrap();
        out
    }

    /// New runs, populated then copied or written with `pwritev`, and
    /// resident runs copied over them, read back exactly; a resident
    /// rewrite allocates nothing.
    #[test]
    fn every_write_path_reads_back_exactly() {
        for pwritev in [false, true] {
            let device = MemfdDevice::new(8).unwrap();
            device.no_populate_write.store(pwritev, Ordering::Relaxed);
            let (a, b, c) = (page(1), page(2), page(3));
            let pages = [&*a, &*b];
            device
                .write(&[WriteRun {
                    slot: 3,
                    pages: &pages,
                    resident: false,
                }])
                .unwrap();
            assert_eq!(device.allocated_bytes(), 2 * PAGE, "pwritev: {pwritev}");
            assert_eq!((read_back(&device, 3), read_back(&device, 4)), (a, b.clone()));
            device
                .write(&[WriteRun {
                    slot: 3,
                    pages: &[&*c],
                    resident: true,
                }])
                .unwrap();
            assert_eq!(device.allocated_bytes(), 2 * PAGE, "pwritev: {pwritev}");
            assert_eq!((read_back(&device, 3), read_back(&device, 4)), (c, b));
            device.release(3, 2).unwrap();
            assert_eq!(device.allocated_bytes(), 0);
        }
    }
}
