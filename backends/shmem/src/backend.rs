//! [`ShmemBackend`].

use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use memmap2::{MmapOptions, MmapRaw};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, BatchError, Handle, HandleCodec, Interrupt, Operation,
    Origin, PAGE_SIZE, Page, Placement, Result, check_batch_lengths, contiguous_runs,
};
use rustix::mm::Advice;

use crate::memfd;

const NAME: &str = "shmem";
const PAGE: u64 = PAGE_SIZE as u64;
/// Most iovecs one `pwritev` takes (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Pages copied into one sealed memfd that the kernel can swap out: the
/// userspace form of the kernel's `ttm_backup` shmem backup.
///
/// - **Storage**: one memfd per backend (`MFD_CLOEXEC`, `MFD_NOEXEC_SEAL`),
///   sized to the capacity (sparse: memory is allocated page by page as
///   pages are backed up), sealed against shrinking and growing so that no
///   holder of the fd can make the mapping fault, and mapped once.
/// - **Backup** writes the caller's pages with `pwritev`, one call per run of
///   contiguous slots (pages with consecutive `idx` get consecutive slots
///   where free). Measured against copying into the mapping, this is 1.6x
///   faster (the mapping pays a page fault and a page clear per new page),
///   and a failed allocation comes back as `NoSpace` instead of a `SIGBUS`
///   or an OOM kill.
/// - **Restore** copies out of the mapping (the kernel maps 16 pages per
///   fault, so this beats `preadv` by about 1.35x).
/// - **`writeback`** maps the new pages (`MADV_POPULATE_READ`) and asks the
///   kernel to page them out (`MADV_PAGEOUT`): with swap, they leave RAM;
///   without swap this does nothing, as in the kernel.
/// - **Drop** punches a hole over the slot (`fallocate(PUNCH_HOLE)`, one call
///   per contiguous run in `drop_handles`), so its memory or swap is freed.
/// - **`bytes_avail`** is the smaller of free swap and free capacity, as the
///   kernel's `ttm_backup_bytes_avail()`: **0 on a machine without swap**,
///   although backups still succeed there (into RAM).
///
/// Handles carry the slot, its generation and the instance's key
/// ([`HandleCodec`]). Restores run in parallel under a read lock; slot
/// allocation and drops take the write lock briefly; the data is written
/// outside any lock, into slots no one else can reach yet.
///
/// The memfd is never shared by this crate; code that obtains the fd
/// (through [`memfd`](Self::memfd) or `/proc`) and writes to it changes
/// backed-up pages behind the backend's back.
pub struct ShmemBackend {
    codec: HandleCodec,
    memfd: OwnedFd,
    map: MmapRaw,
    capacity_pages: u32,
    placement: RwLock<Placement>,
    writeback_pages: AtomicU64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
}

impl ShmemBackend {
    /// A backend with the default capacity: the machine's RAM plus swap,
    /// which no backup can exceed anyway (the memfd is sparse, so a large
    /// capacity costs nothing until used).
    pub fn new() -> Result<Self> {
        let info = rustix::system::sysinfo();
        let unit = u64::from(info.mem_unit);
        Self::with_capacity((info.totalram as u64 + info.totalswap as u64).saturating_mul(unit))
    }

    /// A backend that holds at most `capacity` bytes of pages (rounded down
    /// to whole pages, at most 2^31 pages); backups past it give `NoSpace`.
    /// A capacity below one page gives [`BackupError::InvalidInput`].
    pub fn with_capacity(capacity: u64) -> Result<Self> {
        let pages = (capacity / PAGE).min(HandleCodec::MAX_SLOTS);
        let origin = Origin::new(NAME, Operation::Open);
        if pages == 0 {
            return Err(BackupError::InvalidInput {
                origin,
                detail: format!("capacity {capacity} is less than one page ({PAGE_SIZE} bytes)"),
            });
        }
        let len = pages * PAGE;
        let io = |source| BackupError::Io { origin, source };
        let memfd = memfd::create_sealed("pagebackup-shmem", len).map_err(io)?;
        let map_len = usize::try_from(len).map_err(|_| io(io::Error::from(io::ErrorKind::OutOfMemory)))?;
        let map = MmapOptions::new().len(map_len).map_raw(&memfd).map_err(io)?;
        Ok(ShmemBackend {
            codec: HandleCodec::new(),
            memfd,
            map,
            capacity_pages: pages as u32,
            placement: RwLock::new(Placement::new(pages as u32)),
            writeback_pages: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
        })
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity_pages) * PAGE
    }

    /// The backend's memfd, for inspection (`fstat`, seals). Writing to it
    /// changes backed-up pages; it cannot be shrunk or grown (sealed).
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// The address range of the backend's mapping of the memfd, as
    /// `/proc/self/maps` and `/proc/self/smaps` show it.
    pub fn mapping_range(&self) -> std::ops::Range<usize> {
        let start = self.map.as_ptr() as usize;
        start..start + self.map.len()
    }

    /// Bytes of the mapping that are swapped out, from the mapping's `Swap:`
    /// line in `/proc/self/smaps`. Reads and parses that file: not for hot paths.
    pub fn swapped_bytes(&self) -> io::Result<u64> {
        crate::smaps::swap_bytes(self.mapping_range().start)
    }

    fn read(&self) -> RwLockReadGuard<'_, Placement> {
        // Every update of the placement is a single table call: a panic
        // cannot leave it half-done, so a poisoned lock is still consistent.
        self.placement.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Placement> {
        self.placement.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The batch error for `handle`, item `k` of the batch, not being live.
    fn invalid(&self, handle: Handle, k: usize, op: Operation) -> BatchError {
        BatchError {
            completed: k,
            error: BackupError::InvalidHandle {
                origin: Origin::new(NAME, op),
                handle,
            },
        }
    }

    fn slot_ptr(&self, slot: u32) -> *mut Page {
        debug_assert!(slot < self.capacity_pages);
        // SAFETY: slot < capacity_pages, the mapping's length in pages: the offset stays inside it.
        unsafe { self.map.as_mut_ptr().add(slot as usize * PAGE_SIZE).cast() }
    }

    /// Writes `pages` to the contiguous slots starting at `first`, retrying
    /// short writes.
    fn write_run(&self, pages: &[&Page], first: u32) -> io::Result<()> {
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
        Ok(())
    }

    /// Asks the kernel to page out `count` slots from `first`. Best effort:
    /// skipped without swap (where the kernel could not page them out), and a kernel without
    /// `MADV_POPULATE_READ` / `MADV_PAGEOUT` leaves the pages in RAM.
    fn page_out(&self, first: u32, count: usize) {
        if rustix::system::sysinfo().totalswap == 0 {
            return;
        }
        let (addr, len) = (self.slot_ptr(first).cast(), count * PAGE_SIZE);
        // POPULATE_READ maps the pages already written; PAGEOUT moves them to
        // swap, from where a later access brings them back.
        // SAFETY: the range lies inside our mapping, and neither advice changes its contents.
        let paged = unsafe {
            rustix::mm::madvise(addr, len, Advice::LinuxPopulateRead)
                .and_then(|()| rustix::mm::madvise(addr, len, Advice::LinuxPageOut))
        };
        if paged.is_ok() {
            self.writeback_pages.fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    /// Frees slots whose backup failed: nothing of theirs stays allocated.
    fn abandon(&self, slots: &[u32]) {
        let mut placement = self.write();
        for run in contiguous_runs(slots) {
            let (first, len) = (u64::from(slots[run.start]), run.len() as u64);
            // A failed punch leaves memory allocated, never data readable:
            // the slots are not live and their next use overwrites them.
            let _ = memfd::punch_hole(&self.memfd, first * PAGE, len * PAGE);
        }
        for &slot in slots.iter().rev() {
            placement.table.release(slot);
        }
    }

    /// Backs up `pages` into slots placed from `first_idx` (the batch
    /// semantics of `backup_pages`), reporting errors as `op`.
    fn store(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let placed = self.write().place_run(first_idx, pages.len());
        let slots: Vec<u32> = placed.iter().map(|&(slot, _)| slot).collect();
        for run in contiguous_runs(&slots) {
            if let Err(source) = self.write_run(&pages[run.clone()], slots[run.start]) {
                self.abandon(&slots[run.start..]);
                return Err(BatchError {
                    completed: run.start,
                    error: self.backup_error(op, source),
                });
            }
            if flags.writeback {
                self.page_out(slots[run.start], run.len());
            }
            handles.extend(
                placed[run]
                    .iter()
                    .map(|&(slot, generation)| self.codec.encode(slot, generation)),
            );
        }
        if placed.len() < pages.len() {
            return Err(BatchError {
                completed: placed.len(),
                error: self.full(op),
            });
        }
        Ok(())
    }

    /// Restores `handles` into `dsts` (same lengths), reporting errors as `op`.
    fn load(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let placement = self.read();
        let (slots, invalid) = placement.live_slots(&self.codec, handles);
        let mut stopped = invalid.map(|k| self.invalid(handles[k], k, op));
        for (k, (dst, &slot)) in dsts.iter_mut().zip(&slots).enumerate() {
            if intr.is_some_and(Interrupt::is_interrupted) {
                stopped = Some(BatchError {
                    completed: k,
                    error: BackupError::Interrupted {
                        origin: Origin::new(NAME, op),
                    },
                });
                break;
            }
            // The slot stays live while we hold the read lock (drops and reuse
            // take the write lock), and its data was fully written before its
            // handle existed; the sealed memfd cannot shrink, so no SIGBUS.
            // SAFETY: the source is a live slot inside the mapping; `dst` is a distinct, exclusive page.
            unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(slot), &mut **dst, 1) };
        }
        match stopped {
            Some(e) => {
                self.failed_restores.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Drops `handles` in order (the batch semantics of `drop_handles`),
    /// punching one hole per contiguous run of slots, reporting errors as `op`.
    fn release(&self, handles: &[Handle], op: Operation) -> Result<(), BatchError> {
        let mut placement = self.write();
        let (mut slots, invalid) = placement.live_slots(&self.codec, handles);
        let mut stopped = invalid.map(|k| self.invalid(handles[k], k, op));
        if let Some(k) = first_repeat(&slots) {
            stopped = Some(self.invalid(handles[k], k, op));
            slots.truncate(k);
        }
        let failed_punch = contiguous_runs(&slots).find_map(|run| {
            let (first, len) = (u64::from(slots[run.start]), run.len() as u64);
            memfd::punch_hole(&self.memfd, first * PAGE, len * PAGE)
                .err()
                .map(|source| (run.start, source))
        });
        if let Some((k, source)) = failed_punch {
            slots.truncate(k);
            stopped = Some(BatchError {
                completed: k,
                error: BackupError::Io {
                    origin: Origin::new(NAME, op),
                    source,
                },
            });
        }
        // Released highest first, so that the free list hands them out
        // lowest first: a later batch refills them as one contiguous run.
        for &slot in slots.iter().rev() {
            placement.table.release(slot);
        }
        stopped.map_or(Ok(()), Err)
    }

    fn backup_error(&self, op: Operation, source: io::Error) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        let origin = Origin::new(NAME, op);
        match source.raw_os_error() {
            Some(code)
                if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::NOMEM.raw_os_error() =>
            {
                BackupError::NoSpace {
                    origin,
                    detail: format!("the kernel refused more shmem: {source}"),
                }
            }
            _ => BackupError::Io { origin, source },
        }
    }

    fn full(&self, op: Operation) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        BackupError::NoSpace {
            origin: Origin::new(NAME, op),
            detail: format!("all {} pages of the capacity are in use", self.capacity_pages),
        }
    }
}

impl BackupBackend for ShmemBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        let mut handles = Vec::with_capacity(1);
        self.store(&[page], idx, flags, &mut handles, Operation::BackupPage)
            .map_err(|e| e.error)?;
        Ok(handles[0])
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        self.store(pages, first_idx, flags, handles, Operation::BackupPages)
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.load(&[handle], &mut [dst], intr, Operation::CopyPage)
            .map_err(|e| e.error)
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        check_batch_lengths(NAME, handles.len(), dsts.len())?;
        self.load(handles, dsts, intr, Operation::CopyPages)
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.release(&[handle], Operation::DropHandle).map_err(|e| e.error)
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.release(handles, Operation::DropHandles)
    }

    fn bytes_avail(&self) -> u64 {
        let info = rustix::system::sysinfo();
        let free_swap = (info.freeswap as u64).saturating_mul(u64::from(info.mem_unit));
        let live = self.read().table.live();
        let free_capacity = (u64::from(self.capacity_pages) - live) * PAGE;
        free_swap.min(free_capacity)
    }

    fn stats(&self) -> BackupStats {
        let (live, metadata) = {
            let placement = self.read();
            (placement.table.live(), placement.table.metadata_bytes())
        };
        let mut stats = BackupStats::default();
        stats.stored_pages = live;
        stats.original_bytes = live * PAGE;
        stats.stored_bytes = memfd::allocated_bytes(&self.memfd).unwrap_or(0);
        stats.resident_bytes = stats.stored_bytes.saturating_sub(self.swapped_bytes().unwrap_or(0));
        stats.memory_used = stats.resident_bytes + metadata;
        stats.writeback_pages = self.writeback_pages.load(Ordering::Relaxed);
        stats.failed_backups = self.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.failed_restores.load(Ordering::Relaxed);
        stats
    }
}

impl fmt::Debug for ShmemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmemBackend")
            .field("capacity", &self.capacity())
            .field("stored_pages", &self.read().table.live())
            .field("mapping", &format_args!("{:#x?}", self.mapping_range()))
            .finish_non_exhaustive()
    }
}

/// The index of the first entry of `slots` that repeats an earlier one: a
/// handle given twice in one batch is dropped once, then invalid.
fn first_repeat(slots: &[u32]) -> Option<usize> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        return None;
    }
    let mut seen = std::collections::HashSet::with_capacity(slots.len());
    slots.iter().position(|slot| !seen.insert(slot))
}
