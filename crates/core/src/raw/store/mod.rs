//! [`SlotStore`]: the store outline shared by the slot-backed backends —
//! placement, handles, batches, interrupts, checksums, counters and one
//! failure rule per operation — over a [`Device`] per shard.

mod backup;
mod pins;
mod plan;
mod release;
mod reserve;
mod slot_bits;
mod stats;

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLockWriteGuard};

use self::pins::Pins;
use self::slot_bits::SlotBits;
use super::device::{Arrived, Device, ReadRun, RunError, WriteRun};
use super::{FreeExtents, Generations, HandleCodec, ProcessEpoch, Shards, check_batch_lengths};
use crate::error::{BackupError, BatchError, Operation, Origin, Result};
use crate::{BackupBackend, BackupFlags, BackupStats, Handle, Interrupt, PAGE_SIZE, Page};

pub use self::backup::Reservation;
pub use self::plan::{PlannedRun, ReadPlan, ReadSegment};

const PAGE: u64 = PAGE_SIZE as u64;

/// Settings of a [`SlotStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The backend's name, for errors.
    pub name: &'static str,
    /// Most pages held at once, over all shards.
    pub capacity_pages: u64,
    /// Keep a CRC-32 of every page and check it on restore.
    pub checksum: bool,
    /// Most pages of dropped slots left unreleased (kept for reuse, which
    /// overwrites resident storage instead of allocating it again), over all
    /// shards. 0 releases storage in the drop call itself.
    pub deferred_release_pages: u64,
    /// Free slots whose storage is allocated ahead of the backups that
    /// will take them ([`SlotStore::fill_reserve`]), over all shards; kept
    /// beside the dropped slots above. 0 allocates nothing ahead.
    pub reserve_pages: u64,
}

impl StoreConfig {
    /// A store named `name` holding at most `capacity_pages`, without
    /// checksums, releasing storage at drop.
    pub fn new(name: &'static str, capacity_pages: u64) -> Self {
        StoreConfig {
            name,
            capacity_pages,
            checksum: false,
            deferred_release_pages: 0,
            reserve_pages: 0,
        }
    }

    /// With checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// With a budget of unreleased dropped pages.
    pub fn with_deferred_release(mut self, pages: u64) -> Self {
        self.deferred_release_pages = pages;
        self
    }

    /// With a reserve of free slots allocated ahead.
    pub fn with_reserve(mut self, pages: u64) -> Self {
        self.reserve_pages = pages;
        self
    }
}

/// Pages in slots of one [`Device`] per shard: the outline the shmem and
/// file backends (and any other slot-backed backend) share.
///
/// - **Handles** come from a [`HandleCodec`]: the global slot is
///   `local << shard_bits | shard`; generations come from [`Generations`].
/// - **Placement**: a thread backs up into its own shard
///   ([`Shards::mine`]), so threads do not share a device's locks; within a
///   shard, [`FreeExtents`] places a batch as one run where it can, after the
///   object's previous page (consecutive `idx`), else lowest address first.
///   A shard's slots never go past its peak number of slots in use at once.
/// - **No lock is held across device I/O**: slots are reserved under the
///   shard's lock, written, then published; restores check handles and
///   pin their slots under the lock, read, then unpin.
/// - **Read pins**: a drop retires its handle at once (a later restore is
///   refused before writing anything), but a slot that restores have
///   pinned is quarantined: neither reused nor released until its last
///   pin goes, and then given back by the thread that unpinned it. So a
///   restore that validated a live handle reads that page's bytes, whatever
///   drops and backups run meanwhile.
/// - **Failure rules**: after a failed batch backup exactly the first
///   `completed` pages have handles (and nothing else is held); after a
///   failed batch drop exactly the first `completed` handles are dropped and
///   every later one is live and restorable; a failed or interrupted restore
///   leaves every backup in place.
/// - **Checksums** (optional): a CRC-32 per slot, checked after every read;
///   a mismatch is [`BackupError::Corrupt`], never wrong bytes.
/// - **Deferred release** (optional): dropped slots keep their storage, up
///   to a budget over all shards, and are reused first (lowest first, as
///   every slot); past the budget, the highest are released down to half
///   of it. [`release_deferred`](Self::release_deferred) releases all.
/// - **Reserve** (optional): [`fill_reserve`](Self::fill_reserve), called
///   off the backup path, allocates the storage of the lowest free slots
///   ahead, so that the backups placed there next are plain writes; those
///   slots count with the deferred ones (the budget above grows by the
///   reserve) and are released with them.
/// - **fork()**: a store used in a child of the process that made it
///   refuses every operation with [`BackupError::Unsupported`], so the
///   parent's storage (shared with the child) is never written by the child.
pub struct SlotStore<D> {
    config: StoreConfig,
    codec: HandleCodec,
    shards: Shards<ShardState>,
    devices: Box<[D]>,
    epoch: ProcessEpoch,
    /// Slots taken over all shards (live, being written or being dropped).
    taken: AtomicU64,
    /// Deferred slots over all shards, against the budget.
    deferred_total: Arc<AtomicU64>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
    failed_releases: AtomicU64,
    writeback_pages: AtomicU64,
}

struct ShardState {
    generations: Generations,
    extents: FreeExtents,
    checksums: Vec<u32>,
    /// Free slots whose storage was not released yet.
    deferred: SlotBits,
    /// The `idx` and local slot of the last page placed.
    cursor: Option<(u64, u32)>,
    /// Restores' pins and the quarantine of dropped slots still pinned.
    pins: Pins,
    /// Free slots taken for a while by [`SlotStore::fill_reserve`] to
    /// allocate their storage: a backup that finds too few free slots waits
    /// for them instead of failing.
    filling: u32,
}

impl<D: Device> SlotStore<D> {
    /// A store over `devices`, one shard each (a power of two of them, at
    /// least one).
    ///
    /// # Panics
    /// If the number of devices is not a power of two.
    pub fn new(config: StoreConfig, devices: Vec<D>) -> Self {
        assert!(devices.len().is_power_of_two(), "shards come in powers of two");
        let local_slots = (HandleCodec::MAX_SLOTS / devices.len() as u64).min(config.capacity_pages) as u32;
        let deferred_total = Arc::new(AtomicU64::new(0));
        let shards = Shards::new(devices.len(), |_| ShardState {
            generations: Generations::default(),
            extents: FreeExtents::new(local_slots),
            checksums: Vec::new(),
            deferred: SlotBits::counting_in(Arc::clone(&deferred_total)),
            cursor: None,
            pins: Pins::default(),
            filling: 0,
        });
        SlotStore {
            config,
            codec: HandleCodec::new(),
            shards,
            devices: devices.into_boxed_slice(),
            deferred_total,
            epoch: ProcessEpoch::current(),
            taken: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// Most pages the store can address in total: the capacity, at most
    /// 2^31 (the handle space).
    pub fn capacity_pages(&self) -> u64 {
        self.config.capacity_pages.min(HandleCodec::MAX_SLOTS)
    }

    /// The shards' devices, in shard order.
    pub fn devices(&self) -> impl Iterator<Item = &D> {
        self.devices.iter()
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Live pages.
    pub fn live_pages(&self) -> u64 {
        self.shards.each().map(|s| s.generations.live()).sum()
    }

    fn origin(&self, op: Operation) -> Origin {
        Origin::new(self.config.name, op)
    }

    /// The error every operation gives in a `fork()` child.
    fn check_process(&self, op: Operation) -> Result<()> {
        if self.epoch.is_current() {
            return Ok(());
        }
        Err(BackupError::Unsupported {
            origin: self.origin(op),
            detail: format!(
                "this backend was made in process {} and this is a fork() child; its storage is shared with \
                 the parent, so the child may not use it (make a new backend in the child)",
                self.epoch.pid()
            ),
        })
    }

    /// Whether the store runs in the process that made it (not in a
    /// `fork()` child), for a device's `Drop` to know whether it may remove
    /// anything.
    pub fn in_creating_process(&self) -> bool {
        self.epoch.is_current()
    }

    /// The error for an I/O failure ([`BackupError::io`]): `ENOSPC`,
    /// `EFBIG`, `ENOMEM` and `EDQUOT` are [`ErrorKind::NoSpace`](crate::ErrorKind::NoSpace).
    pub fn io_error(&self, op: Operation, source: io::Error) -> BackupError {
        BackupError::io(self.origin(op), source)
    }

    /// Reserves up to `n` slots of the capacity; returns how many.
    fn reserve_capacity(&self, n: u64) -> u64 {
        let cap = self.capacity_pages();
        let mut taken = self.taken.load(Ordering::Relaxed);
        loop {
            let got = n.min(cap.saturating_sub(taken));
            match self
                .taken
                .compare_exchange_weak(taken, taken + got, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return got,
                Err(now) => taken = now,
            }
        }
    }

    fn unreserve(&self, n: u64) {
        self.taken.fetch_sub(n, Ordering::Relaxed);
    }

    /// Most free slots kept with their storage, over all shards: the
    /// deferred-release budget and the reserve.
    fn kept_budget(&self) -> u64 {
        self.config.deferred_release_pages + self.config.reserve_pages
    }

    /// Free capacity in bytes (the device's own space is the backend's to add).
    pub fn free_capacity_bytes(&self) -> u64 {
        self.capacity_pages().saturating_sub(self.taken.load(Ordering::Relaxed)) * PAGE
    }
}

/// A slot store is a backend: the backends built on it wrap it and forward
/// to it (as a [`Layer`](crate::layers::Layer) over it), adding their
/// constructors and inspection methods.
/// The one place the store calls its devices' `unsafe` methods, and why
/// each call holds its slots alone (see [`Device`]'s contract): a slot is
/// written only under a reservation of the backup writing it, read only
/// while a plan's pins hold it, and released only once neither can be
/// under way: a failed reservation's own slots, a dropped handle's slot
/// that no read pins (one that a read pins is quarantined, and released
/// when its last pin is given up), and free slots kept for reuse.
impl<D: Device> SlotStore<D> {
    /// Writes `runs`, the slots of a reservation, to shard `shard`'s device,
    /// calling `meanwhile` while the writes may be in flight.
    pub(super) fn write_reserved(
        &self,
        shard: usize,
        runs: &[WriteRun<'_>],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), RunError> {
        // SAFETY: the runs' slots were taken from the free slots under the shard lock for this backup alone and have no handle yet: nothing else reads, writes or releases them until it completes.
        unsafe { self.devices[shard].write_overlapped(runs, meanwhile) }
    }

    /// Reads `runs`, slots a read plan validated and pinned, from shard
    /// `shard`'s device.
    pub(super) fn read_pinned(
        &self,
        shard: usize,
        runs: &mut [ReadRun<'_, '_>],
        arrived: Option<&mut Arrived<'_>>,
    ) -> Result<(), RunError> {
        let device = &self.devices[shard];
        match arrived {
            // SAFETY: the plan pinned every slot after checking its handle live (so written): a pinned slot is neither reused (written) nor released until the plan gives its pins up, after this read.
            Some(arrived) => unsafe { device.read_arriving(runs, arrived) },
            // SAFETY: as above.
            None => unsafe { device.read(runs) },
        }
    }

    /// Releases `count` slots from `slot` on shard `shard`'s device, slots
    /// no reservation holds and no read pins (as said above).
    pub(super) fn release_unused(&self, shard: usize, slot: u32, count: u32) -> io::Result<()> {
        // SAFETY: every caller gives slots that no backup holds and no read pins (see above), so no write or read of them runs meanwhile.
        unsafe { self.devices[shard].release(slot, count) }
    }

    /// [`release_unused`](Self::release_unused) of each run; returns, per
    /// run, whether it failed.
    pub(super) fn release_runs(&self, shard: usize, runs: &[Range<u32>]) -> Vec<bool> {
        runs.iter()
            .map(|r| self.release_unused(shard, r.start, r.end - r.start).is_err())
            .collect()
    }
}

impl<D: Device> BackupBackend for SlotStore<D> {
    fn name(&self) -> &'static str {
        self.config.name
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        let mut handles = Vec::with_capacity(1);
        self.backup(&[page], idx, flags, &mut handles, Operation::BackupPage)
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
        self.backup(pages, first_idx, flags, handles, Operation::BackupPages)
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.restore(&[handle], &mut [dst], intr, Operation::CopyPage)
            .map_err(|e| e.error)
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        check_batch_lengths(self.config.name, handles.len(), dsts.len())?;
        self.restore(handles, dsts, intr, Operation::CopyPages)
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.drop_handles_as(&[handle], Operation::DropHandle)
            .map_err(|e| e.error)
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.drop_handles_as(handles, Operation::DropHandles)
    }

    /// The smaller of the free capacity and what the devices' storage can
    /// take (the first device's estimate: a store's devices share one swap
    /// or one file system).
    fn bytes_avail(&self) -> u64 {
        self.free_capacity_bytes().min(self.devices[0].space_avail())
    }

    /// Every live page takes one slot: a whole page.
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        let (global, generation) = self.codec.decode(handle);
        let (shard, slot) = self.shards.split(global);
        let live = self.shards.lock(shard).generations.live_generation(slot);
        (generation != 0 && live == Some(generation)).then_some(PAGE)
    }

    fn stats(&self) -> BackupStats {
        self.current_stats()
    }

    fn flush(&self) -> Result<()> {
        let op = Operation::Flush;
        self.check_process(op)?;
        for device in self.devices.iter() {
            device.flush().map_err(|e| self.io_error(op, e))?;
        }
        Ok(())
    }
}

/// The lock of one shard at a time, for walking a batch whose handles
/// name several shards: never two locks at once, so no lock order to keep.
struct ShardLocks<'a> {
    shards: &'a Shards<ShardState>,
    held: Option<(usize, RwLockWriteGuard<'a, ShardState>)>,
}

impl<'a> ShardLocks<'a> {
    fn new(shards: &'a Shards<ShardState>) -> Self {
        ShardLocks { shards, held: None }
    }

    /// The state of `shard`, locked (releasing the previous shard's lock first).
    fn get(&mut self, shard: usize) -> &mut ShardState {
        if self.held.as_ref().is_none_or(|(s, _)| *s != shard) {
            drop(self.held.take());
            self.held = Some((shard, self.shards.lock(shard)));
        }
        &mut self.held.as_mut().expect("just locked").1
    }
}

/// The checksum kept per page: CRC-32 (`crc32fast`, which uses the CPU's
/// carry-less multiply where it has one).
fn checksum(page: &Page) -> u32 {
    crc32fast::hash(page.as_bytes())
}

impl<D: Device> fmt::Debug for SlotStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotStore")
            .field("name", &self.config.name)
            .field("shards", &self.shards.len())
            .field("capacity_pages", &self.capacity_pages())
            .field("live_pages", &self.live_pages())
            .field("checksum", &self.config.checksum)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::checksum;
    use crate::Page;

    /// A page whose byte `i` is `byte(i)`.
    fn page(byte: impl Fn(usize) -> u8) -> Page {
        let mut page = Page::zeroed();
        for (i, b) in page.as_bytes_mut().iter_mut().enumerate() {
            *b = byte(i);
        }
        page
    }

    /// The checksum is the standard CRC-32 (ISO-HDLC, as zlib, gzip and
    /// PNG compute it) of the page's 4096 bytes, whatever code computes
    /// it: the values below are zlib's, so a checksum kept by any build
    /// verifies with any other.
    #[test]
    fn the_checksum_is_the_standard_crc32_of_the_page() {
        let cases: [(Page, u32); 4] = [
            (page(|_| 0), 0xc71c_0011),
            (page(|_| 0xff), 0xf154_670a),
            (page(|i| i as u8), 0xa291_2082),
            (page(|i| ((i * 7 + 3) % 251) as u8), 0x80e3_a247),
        ];
        for (page, crc) in &cases {
            assert_eq!(checksum(page), *crc, "{:02x?}", &page.as_bytes()[..8]);
        }
    }
}
