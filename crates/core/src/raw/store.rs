//! [`SlotStore`]: the store outline shared by the slot-backed backends —
//! placement, handles, batches, interrupts, checksums, counters and one
//! failure rule per operation — over a [`Device`] per shard.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use super::device::{Device, ReadRun, RunError, WriteRun};
use super::{FreeExtents, Generations, HandleCodec, ProcessEpoch, Shards, check_batch_lengths};
use crate::error::{BackupError, BatchError, Operation, Origin, Result};
use crate::{BackupBackend, BackupFlags, BackupStats, Handle, Interrupt, PAGE_SIZE, Page};

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
///   shard's lock, written, then published; restores check handles, read,
///   and check again that no drop raced them.
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
}

/// Slots reserved for a backup by [`SlotStore::reserve`], to be written
/// and then given to [`SlotStore::complete`].
#[derive(Debug)]
#[must_use = "a reservation holds its slots until it is completed"]
pub struct Reservation {
    shard: usize,
    runs: Vec<Range<u32>>,
    /// Per run: its slots kept their storage since they were dropped.
    resident: Vec<bool>,
    checksums: Vec<u32>,
    wanted: usize,
}

impl Reservation {
    /// The shard whose device the runs are on.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The runs of contiguous slots reserved, in the order of the pages:
    /// the first run takes the first pages. They may hold fewer slots than
    /// pages were given (the store is full): the rest are not backed up.
    pub fn runs(&self) -> &[Range<u32>] {
        &self.runs
    }

    /// The device writes of the runs, for `pages` (those given to `reserve`).
    pub fn writes<'a>(&self, pages: &'a [&'a Page]) -> Vec<WriteRun<'a>> {
        let mut at = 0;
        self.runs
            .iter()
            .zip(&self.resident)
            .map(|(r, &resident)| {
                let len = (r.end - r.start) as usize;
                at += len;
                WriteRun {
                    slot: r.start,
                    pages: &pages[at - len..at],
                    resident,
                }
            })
            .collect()
    }
}

/// The reads of a restore, from [`SlotStore::plan_read`], to be done and
/// then given to [`SlotStore::finish_read`].
#[derive(Debug)]
pub struct ReadPlan {
    entries: Vec<Entry>,
    /// Where the handles stopped being live, if they did.
    stopped: Option<BatchError>,
}

/// Batch-consecutive pages of one shard, to read with one device call.
#[derive(Debug)]
pub struct ReadSegment {
    /// The shard whose device holds them.
    pub shard: usize,
    /// The batch index of the first.
    pub start: usize,
    /// How many.
    pub len: usize,
    /// Their runs of contiguous slots, in order.
    pub runs: Vec<PlannedRun>,
}

/// Batch-consecutive pages in contiguous slots.
#[derive(Debug, Clone, Copy)]
pub struct PlannedRun {
    /// The batch index of the first.
    pub start: usize,
    /// The first slot (the device's numbering).
    pub slot: u32,
    /// How many.
    pub len: usize,
}

impl ReadPlan {
    /// Pages to read: the handles up to the first that is not live.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The reads, in batch order.
    pub fn segments(&self) -> Vec<ReadSegment> {
        let mut segments: Vec<ReadSegment> = Vec::new();
        for e in &self.entries {
            match segments.last_mut() {
                Some(seg) if seg.shard == e.shard => {
                    seg.len += 1;
                    let run = seg.runs.last_mut().expect("a segment has a run");
                    if run.slot.checked_add(run.len as u32) == Some(e.slot) {
                        run.len += 1;
                    } else {
                        seg.runs.push(PlannedRun {
                            start: e.k,
                            slot: e.slot,
                            len: 1,
                        });
                    }
                }
                _ => segments.push(ReadSegment {
                    shard: e.shard,
                    start: e.k,
                    len: 1,
                    runs: vec![PlannedRun {
                        start: e.k,
                        slot: e.slot,
                        len: 1,
                    }],
                }),
            }
        }
        segments
    }
}

/// A validated page of a batch: its position, shard, local slot and generation.
#[derive(Debug, Clone, Copy)]
struct Entry {
    k: usize,
    shard: usize,
    slot: u32,
    generation: u32,
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

    /// The error for an I/O failure: `ENOSPC`, `EFBIG`, `ENOMEM` and
    /// `EDQUOT` are [`BackupError::NoSpace`].
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

    /// Backs up `pages` at `first_idx, first_idx + 1, ...` (the batch rule
    /// of [`BackupBackend::backup_pages`]), reporting errors as `op`:
    /// [`reserve`](Self::reserve), the device's write, then
    /// [`complete`](Self::complete).
    pub fn backup(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let reservation = self.reserve(pages, first_idx, op)?;
        let writes = reservation.writes(pages);
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            self.devices[reservation.shard].write(&writes)
        };
        self.complete(reservation, outcome, flags, handles, op)
    }

    /// The first half of a backup, for backends that write the pages
    /// themselves (asynchronously, say): reserves slots for `pages` in the
    /// calling thread's shard, as one run where it can, and takes their
    /// checksums. The pages go to [`Reservation::runs`] of
    /// [`device`](Self::device)`(reservation.shard())`; then
    /// [`complete`](Self::complete) issues the handles. A reservation must
    /// be completed (with the write's outcome, or a failure): until then its
    /// slots stay taken.
    pub fn reserve(&self, pages: &[&Page], first_idx: u64, op: Operation) -> Result<Reservation, BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        let shard = self.shards.mine();
        let reserved = self.reserve_capacity(pages.len() as u64);
        let (runs, resident) = if reserved == 0 {
            (Vec::new(), Vec::new())
        } else {
            self.shards.lock(shard).place(first_idx, reserved as u32)
        };
        let placed: u64 = runs.iter().map(|r| u64::from(r.end - r.start)).sum();
        self.unreserve(reserved - placed);
        let checksums: Vec<u32> = if self.config.checksum {
            pages[..placed as usize].iter().map(|p| checksum(p)).collect()
        } else {
            Vec::new()
        };
        Ok(Reservation {
            shard,
            runs,
            resident,
            checksums,
            wanted: pages.len(),
        })
    }

    /// The second half of a backup: given the outcome of writing the
    /// reservation's runs, issues handles for the runs written (appended to
    /// `handles`), releases the storage and slots of the others, and gives
    /// the batch rule's result.
    pub fn complete(
        &self,
        reservation: Reservation,
        outcome: Result<(), RunError>,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let Reservation {
            shard,
            runs,
            checksums,
            wanted,
            ..
        } = reservation;
        let device = &self.devices[shard];
        let done = outcome.as_ref().err().map_or(runs.len(), |e| e.done.min(runs.len()));
        let (kept, failed) = runs.split_at(done);
        if !failed.is_empty() {
            // Nothing of a failed run stays held: its storage is released
            // before its slots are free again.
            let unreleased = release_runs(device, failed);
            let mut state = self.shards.lock(shard);
            for (range, released) in failed.iter().zip(unreleased) {
                state.give(range.clone(), !released);
            }
            self.unreserve(failed.iter().map(|r| u64::from(r.end - r.start)).sum());
        }
        let (completed, over_budget) = {
            let mut state = self.shards.lock(shard);
            let mut k = 0;
            handles.reserve(wanted);
            for range in kept {
                for slot in range.clone() {
                    let generation = state.generations.take(slot).expect("a reserved slot can be taken");
                    if let Some(&sum) = checksums.get(k) {
                        state.set_checksum(slot, sum);
                    }
                    handles.push(self.codec.encode(self.shards.slot(shard, slot), generation));
                    k += 1;
                }
            }
            (
                k,
                self.deferred_total.load(Ordering::Relaxed) > self.config.deferred_release_pages,
            )
        };
        if flags.writeback {
            for range in kept {
                let sent = device.writeback(range.start, range.end - range.start);
                self.counters.writeback_pages.fetch_add(sent, Ordering::Relaxed);
            }
            self.release_deferred();
        } else if over_budget {
            self.trim_deferred(shard);
        }
        let error = match outcome {
            Err(RunError { error, .. }) => Some(self.io_error(op, error)),
            Ok(()) if completed < wanted => Some(BackupError::NoSpace {
                origin: self.origin(op),
                detail: format!("all {} pages of the capacity are in use", self.capacity_pages()),
            }),
            Ok(()) => None,
        };
        match error {
            Some(error) => {
                self.counters.failed_backups.fetch_add(1, Ordering::Relaxed);
                Err(BatchError { completed, error })
            }
            None => Ok(()),
        }
    }

    /// The device of shard `shard`.
    pub fn device(&self, shard: usize) -> &D {
        &self.devices[shard]
    }

    /// Validates `handles` in order, up to the first that is not live;
    /// with `retire`, invalidates each valid one at once (so a repeat within
    /// the batch is refused), for a drop.
    fn validate(&self, handles: &[Handle], op: Operation, retire: bool) -> (Vec<Entry>, Option<BatchError>) {
        let mut entries = Vec::with_capacity(handles.len());
        let mut locks = ShardLocks::new(&self.shards);
        for (k, &handle) in handles.iter().enumerate() {
            let (global, generation) = self.codec.decode(handle);
            let (shard, slot) = self.shards.split(global);
            let state = locks.get(shard);
            if generation == 0 || state.generations.live_generation(slot) != Some(generation) {
                let error = BackupError::InvalidHandle {
                    origin: self.origin(op),
                    handle,
                };
                return (entries, Some(BatchError { completed: k, error }));
            }
            if retire {
                state.generations.retire(slot);
            }
            entries.push(Entry {
                k,
                shard,
                slot,
                generation,
            });
        }
        (entries, None)
    }

    /// Restores `handles` into `dsts` (of the same length; the batch rule
    /// of [`BackupBackend::copy_pages`]), reporting errors as `op`.
    pub fn restore(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        debug_assert_eq!(handles.len(), dsts.len());
        let result = self.restore_inner(handles, dsts, intr, op);
        if result.is_err() {
            self.counters.failed_restores.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn restore_inner(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let plan = self.plan_read(handles, op)?;
        let mut rest = &mut dsts[..plan.len()];
        let mut stop = None;
        for segment in plan.segments() {
            if intr.is_some_and(Interrupt::is_interrupted) {
                stop = Some(self.interrupted(segment.start, op));
                break;
            }
            let (mut pages, tail) = std::mem::take(&mut rest).split_at_mut(segment.len);
            rest = tail;
            let mut runs: Vec<ReadRun<'_, '_>> = Vec::with_capacity(segment.runs.len());
            for run in &segment.runs {
                let (these, tail) = std::mem::take(&mut pages).split_at_mut(run.len);
                pages = tail;
                runs.push(ReadRun {
                    slot: run.slot,
                    pages: these,
                });
            }
            if let Err(RunError { done, error }) = self.devices[segment.shard].read(&mut runs) {
                stop = Some(BatchError {
                    completed: segment.runs[done].start,
                    error: self.io_error(op, error),
                });
                break;
            }
        }
        self.finish_read(plan, stop, handles, |k| &*dsts[k], op)
    }

    /// The error of a restore interrupted before item `k`.
    pub fn interrupted(&self, k: usize, op: Operation) -> BatchError {
        BatchError {
            completed: k,
            error: BackupError::Interrupted {
                origin: self.origin(op),
            },
        }
    }

    /// The first half of a restore, for backends that read the pages
    /// themselves: checks `handles` in order, up to the first that is not
    /// live, and plans the reads as [`ReadPlan::segments`].
    pub fn plan_read(&self, handles: &[Handle], op: Operation) -> Result<ReadPlan, BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        let (entries, stopped) = self.validate(handles, op, false);
        Ok(ReadPlan { entries, stopped })
    }

    /// The second half of a restore: `stop` is where reading stopped (an
    /// interrupt, a failed read; `None` if every planned page was read, and
    /// `page(k)` gives the page read for item `k`). Checks that no drop raced
    /// the reads and that every page matches its checksum, and gives the
    /// batch rule's result.
    pub fn finish_read<'p>(
        &self,
        plan: ReadPlan,
        stop: Option<BatchError>,
        handles: &[Handle],
        page: impl Fn(usize) -> &'p Page,
        op: Operation,
    ) -> Result<(), BatchError> {
        let read_to = stop
            .as_ref()
            .map_or(plan.entries.len(), |s| s.completed.min(plan.entries.len()));
        // A drop that raced the read may have released what was read: check
        // every page read is still live, then its checksum.
        let mut locks = ShardLocks::new(&self.shards);
        for entry in &plan.entries[..read_to] {
            let state = locks.get(entry.shard);
            let handle = handles[entry.k];
            let error = if state.generations.live_generation(entry.slot) != Some(entry.generation) {
                BackupError::InvalidHandle {
                    origin: self.origin(op),
                    handle,
                }
            } else if self.config.checksum && state.checksums[entry.slot as usize] != checksum(page(entry.k)) {
                BackupError::Corrupt {
                    origin: self.origin(op),
                    handle,
                    detail: "the page read back does not match its checksum (the storage changed under the \
                             backend); the backup is unusable, drop it"
                        .to_string(),
                }
            } else {
                continue;
            };
            return Err(BatchError {
                completed: entry.k,
                error,
            });
        }
        match stop.or(plan.stopped) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drops `handles` in order (the batch rule of
    /// [`BackupBackend::drop_handles`]): exactly the first `completed` are dropped on error, every later one
    /// stays live.
    fn drop_handles_as(&self, handles: &[Handle], op: Operation) -> Result<(), BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        // Validation retires each handle, so restores and repeats see it
        // dropped while its storage is being released.
        let (entries, mut stopped) = self.validate(handles, op, true);
        let defer = self.config.deferred_release_pages > 0;
        let mut freed = entries.len();
        if !defer {
            // Release run by run, in batch order, outside the locks.
            let mut i = 0;
            while i < entries.len() {
                let e = entries[i];
                let len = 1 + entries[i + 1..]
                    .iter()
                    .zip(&entries[i..])
                    .take_while(|(next, prev)| next.shard == e.shard && prev.slot.checked_add(1) == Some(next.slot))
                    .count();
                if let Err(source) = self.devices[e.shard].release(e.slot, len as u32) {
                    self.counters.failed_releases.fetch_add(1, Ordering::Relaxed);
                    freed = i;
                    stopped = Some(BatchError {
                        completed: e.k,
                        error: BackupError::Io {
                            origin: self.origin(op),
                            source,
                        },
                    });
                    break;
                }
                i += len;
            }
        }
        let mut locks = ShardLocks::new(&self.shards);
        for (i, e) in entries.iter().enumerate() {
            let state = locks.get(e.shard);
            if i < freed {
                state.generations.free(e.slot);
                state.give(e.slot..e.slot + 1, defer);
            } else {
                // Its release failed or came after one that did: live again,
                // under the generation its handle carries (the retired one
                // was never issued).
                state.generations.unretire(e.slot);
            }
        }
        drop(locks);
        self.unreserve(freed as u64);
        if defer {
            let mut seen = Vec::new();
            for e in &entries {
                if !seen.contains(&e.shard) {
                    seen.push(e.shard);
                    self.trim_deferred(e.shard);
                }
            }
        }
        stopped.map_or(Ok(()), Err)
    }

    /// Releases the storage of every dropped slot kept for reuse.
    pub fn release_deferred(&self) {
        for shard in 0..self.shards.len() {
            self.release_shard_deferred(shard, 0);
        }
    }

    /// Once the store holds more deferred slots than its budget, releases
    /// the highest of `shard`'s until the store is down to half the budget
    /// (or the shard has none left).
    fn trim_deferred(&self, shard: usize) {
        let budget = self.config.deferred_release_pages;
        let total = self.deferred_total.load(Ordering::Relaxed);
        if total > budget {
            let excess = total - budget / 2;
            let keep = self.shards.lock(shard).deferred.count.saturating_sub(excess);
            self.release_shard_deferred(shard, keep);
        }
    }

    /// Releases the highest deferred slots of `shard` until at most `keep` remain.
    fn release_shard_deferred(&self, shard: usize, keep: u64) {
        let runs = {
            let mut state = self.shards.lock(shard);
            let excess = state.deferred.count.saturating_sub(keep);
            let runs = state.deferred.take_highest(excess);
            for r in &runs {
                assert!(state.extents.take_range(r.clone()), "deferred slots are free");
            }
            runs
        };
        if runs.is_empty() {
            return;
        }
        let unreleased = release_runs(&self.devices[shard], &runs);
        let mut state = self.shards.lock(shard);
        for (range, failed) in runs.iter().zip(unreleased) {
            if failed {
                self.counters.failed_releases.fetch_add(1, Ordering::Relaxed);
            }
            state.give(range.clone(), failed);
        }
    }

    /// Free capacity in bytes (the device's own space is the backend's to add).
    pub fn free_capacity_bytes(&self) -> u64 {
        self.capacity_pages().saturating_sub(self.taken.load(Ordering::Relaxed)) * PAGE
    }
}

/// A slot store is a backend: the backends built on it wrap it and forward
/// to it (as a [`Layer`](crate::layers::Layer) over it), adding their
/// constructors and inspection methods.
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
        let mut stats = BackupStats::default();
        let mut metadata = 0;
        for (state, device) in self.shards.each().zip(self.devices.iter()) {
            stats.stored_pages += state.generations.live();
            stats.unreleased_bytes += state.deferred.count * PAGE;
            metadata += state.metadata_bytes();
            drop(state);
            stats.stored_bytes += device.allocated_bytes();
            stats.resident_bytes += device.resident_bytes();
            metadata += device.buffered_bytes();
        }
        stats.original_bytes = stats.stored_pages * PAGE;
        stats.metadata_bytes = metadata;
        stats.memory_used = stats.resident_bytes + metadata;
        stats.writeback_pages = self.counters.writeback_pages.load(Ordering::Relaxed);
        stats.failed_backups = self.counters.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.counters.failed_restores.load(Ordering::Relaxed);
        stats.failed_releases = self.counters.failed_releases.load(Ordering::Relaxed);
        stats.io_path = self.devices[0].io_path();
        stats
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
    held: Option<(usize, MutexGuard<'a, ShardState>)>,
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

/// Releases each run's storage; returns, per run, whether it failed.
fn release_runs<D: Device>(device: &D, runs: &[Range<u32>]) -> Vec<bool> {
    runs.iter()
        .map(|r| device.release(r.start, r.end - r.start).is_err())
        .collect()
}

impl ShardState {
    /// Reserves up to `n` slots for the pages at `first_idx..`, continuing
    /// the previous object where the idx follows on.
    /// Returns the runs and, per run, whether all its slots kept their
    /// storage since they were dropped (deferred release).
    fn place(&mut self, first_idx: u64, n: u32) -> (Vec<Range<u32>>, Vec<bool>) {
        let near = self
            .cursor
            .filter(|&(idx, _)| idx.wrapping_add(1) == first_idx)
            .map(|(_, slot)| slot + 1);
        let runs = self.extents.take(near, n);
        if let Some(last) = runs.last() {
            let placed: u32 = runs.iter().map(|r| r.end - r.start).sum();
            self.cursor = Some((first_idx.wrapping_add(u64::from(placed) - 1), last.end - 1));
        }
        let resident = runs
            .iter()
            .map(|r| self.deferred.clear_range(r.clone()) == r.end - r.start)
            .collect();
        (runs, resident)
    }

    /// Returns `range` to the free slots, its storage still held if `held`.
    fn give(&mut self, range: Range<u32>, held: bool) {
        if held {
            self.deferred.set_range(range.clone());
        }
        // A worn-out slot (generation used up) is never handed out again.
        let mut start = range.start;
        for slot in range.clone() {
            if !self.generations.can_take(slot) {
                if start < slot {
                    self.extents.give(start..slot);
                }
                self.deferred.clear_range(slot..slot + 1);
                start = slot + 1;
            }
        }
        if start < range.end {
            self.extents.give(start..range.end);
        }
    }

    fn set_checksum(&mut self, slot: u32, sum: u32) {
        let index = slot as usize;
        if self.checksums.len() <= index {
            let len = self.generations.len();
            self.checksums.reserve_exact(len - self.checksums.len());
            self.checksums.resize(len, 0);
        }
        self.checksums[index] = sum;
    }

    fn metadata_bytes(&self) -> u64 {
        self.generations.metadata_bytes()
            + self.extents.metadata_bytes()
            + (self.checksums.capacity() * 4) as u64
            + self.deferred.metadata_bytes()
    }
}

/// A set of slots as a bitmap, with its count, also added to a total
/// shared by the store's shards.
#[derive(Debug, Default)]
struct SlotBits {
    words: Vec<u64>,
    count: u64,
    total: Arc<AtomicU64>,
}

impl SlotBits {
    /// An empty set whose changes are also counted in `total`.
    fn counting_in(total: Arc<AtomicU64>) -> Self {
        SlotBits {
            words: Vec::new(),
            count: 0,
            total,
        }
    }

    fn set_range(&mut self, range: Range<u32>) {
        for slot in range {
            let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if self.words.len() <= w {
                self.words.resize(w + 1, 0);
            }
            if self.words[w] & bit == 0 {
                self.words[w] |= bit;
                self.count += 1;
                self.total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes `range`; returns how many of its slots were in the set.
    fn clear_range(&mut self, range: Range<u32>) -> u32 {
        if self.count == 0 {
            return 0;
        }
        let mut cleared = 0;
        for slot in range {
            let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if let Some(word) = self.words.get_mut(w)
                && *word & bit != 0
            {
                *word &= !bit;
                self.count -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
                cleared += 1;
            }
        }
        cleared
    }

    /// Removes up to `n` of the highest slots; returns them as ascending
    /// runs, highest run first.
    fn take_highest(&mut self, mut n: u64) -> Vec<Range<u32>> {
        let mut runs: Vec<Range<u32>> = Vec::new();
        let mut w = self.words.len();
        while n > 0 && w > 0 {
            w -= 1;
            while n > 0 && self.words[w] != 0 {
                let bit = 63 - self.words[w].leading_zeros();
                self.words[w] &= !(1 << bit);
                self.count -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
                n -= 1;
                let slot = (w as u32) * 64 + bit;
                match runs.last_mut() {
                    Some(last) if last.start == slot + 1 => last.start = slot,
                    _ => runs.push(slot..slot + 1),
                }
            }
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        runs
    }

    fn metadata_bytes(&self) -> u64 {
        (self.words.capacity() * 8) as u64
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
