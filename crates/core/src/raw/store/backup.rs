//! Backups: reserving slots, then issuing handles for what was written.

use std::ops::Range;
use std::sync::atomic::Ordering;

use super::{ShardState, SlotStore, checksum};
use crate::error::{BackupError, BatchError, Operation};
use crate::raw::device::{Device, RunError, WriteRun};
use crate::{BackupFlags, Handle, Page};

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

impl<D: Device> SlotStore<D> {
    /// Backs up `pages` at `first_idx, first_idx + 1, ...` (the batch rule
    /// of [`BackupBackend::backup_pages`](crate::BackupBackend::backup_pages)), reporting errors as `op`:
    /// [`reserve`](Self::reserve) (its checksums taken while the device
    /// writes: [`Device::write_overlapped`]), the device's write, then
    /// [`complete`](Self::complete).
    pub fn backup(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let mut reservation = self.reserve_slots(pages, first_idx, op)?;
        let writes = reservation.writes(pages);
        // The checksums are taken while the device writes the pages.
        let placed = &pages[..writes.iter().map(|w| w.pages.len()).sum()];
        let mut checksums = None;
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            self.write_reserved(reservation.shard, &writes, &mut || {
                checksums = Some(self.checksums(placed));
            })
        };
        drop(writes);
        reservation.checksums = checksums.unwrap_or_else(|| self.checksums(placed));
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
        let mut reservation = self.reserve_slots(pages, first_idx, op)?;
        let placed = reservation.runs.iter().map(|r| (r.end - r.start) as usize).sum();
        reservation.checksums = self.checksums(&pages[..placed]);
        Ok(reservation)
    }

    /// The checksums of `pages` if the store keeps them, else none.
    fn checksums(&self, pages: &[&Page]) -> Vec<u32> {
        if self.config.checksum {
            pages.iter().map(|p| checksum(p)).collect()
        } else {
            Vec::new()
        }
    }

    /// [`reserve`](Self::reserve) without the checksums.
    fn reserve_slots(&self, pages: &[&Page], first_idx: u64, op: Operation) -> Result<Reservation, BatchError> {
        self.check_process(op)
            .map_err(|error| BatchError { completed: 0, error })?;
        let shard = self.shards.mine();
        let reserved = self.reserve_capacity(pages.len() as u64);
        let slots = |runs: &[Range<u32>]| runs.iter().map(|r| u64::from(r.end - r.start)).sum::<u64>();
        let (mut runs, mut resident) = if reserved == 0 {
            (Vec::new(), Vec::new())
        } else {
            self.shards.lock(shard).place(first_idx, reserved as u32)
        };
        let mut placed = slots(&runs);
        // Too few free slots while the reserve is allocating some ahead:
        // they are free space taken for a moment, so wait for them.
        while placed < reserved {
            let mut state = self.shards.lock(shard);
            let filling = state.filling > 0;
            let (more, more_resident) = state.place(first_idx.wrapping_add(placed), (reserved - placed) as u32);
            drop(state);
            let got = slots(&more);
            runs.extend(more);
            resident.extend(more_resident);
            placed += got;
            if !filling {
                break;
            }
            if got == 0 {
                std::thread::yield_now();
            }
        }
        self.unreserve(reserved - placed);
        Ok(Reservation {
            shard,
            runs,
            resident,
            checksums: Vec::new(),
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
            let unreleased = self.release_runs(shard, failed);
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
            (k, self.deferred_total.load(Ordering::Relaxed) > self.kept_budget())
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
}

impl ShardState {
    /// Reserves up to `n` slots for the pages at `first_idx..`, continuing
    /// the previous object where the idx follows on.
    /// Returns the runs and, per run, whether all its slots kept their
    /// storage since they were dropped (deferred release).
    ///
    /// Free slots whose storage was kept (dropped, or allocated ahead for
    /// the reserve) come first, lowest first, since writing them allocates
    /// nothing; then the free slots placement chooses.
    fn place(&mut self, first_idx: u64, n: u32) -> (Vec<Range<u32>>, Vec<bool>) {
        let near = self
            .cursor
            .filter(|&(idx, _)| idx.wrapping_add(1) == first_idx)
            .map(|(_, slot)| slot + 1);
        let mut runs = self.deferred.take_lowest(u64::from(n));
        for run in &runs {
            assert!(self.extents.take_range(run.clone()), "kept slots are free");
        }
        let mut resident = vec![true; runs.len()];
        let kept: u32 = runs.iter().map(|r| r.end - r.start).sum();
        if kept < n {
            // No kept slot is left: the rest allocate.
            let more = self.extents.take(near, n - kept);
            resident.extend(std::iter::repeat_n(false, more.len()));
            runs.extend(more);
        }
        if let Some(last) = runs.last() {
            let placed: u32 = runs.iter().map(|r| r.end - r.start).sum();
            self.cursor = Some((first_idx.wrapping_add(u64::from(placed) - 1), last.end - 1));
        }
        (runs, resident)
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
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use crate::raw::device::{DeviceLayer, RunError, WriteRun};
    use crate::raw::test_device::VecDevice;
    use crate::raw::{SlotStore, StoreConfig};
    use crate::{BackupBackend, BackupFlags, ErrorKind, Page};

    /// A device that writes first and then runs the caller's work, as a
    /// device with the write in flight would, or (`skip`) never runs it;
    /// it logs what it did.
    #[derive(Debug, Default)]
    struct Overlapping {
        inner: VecDevice,
        skip: bool,
        log: Mutex<Vec<&'static str>>,
    }

    // SAFETY: it owns its inner device and writes through it unchanged.
    unsafe impl DeviceLayer for Overlapping {
        type Inner = VecDevice;
        fn inner(&self) -> &VecDevice {
            &self.inner
        }
        unsafe fn write_overlapped(&self, runs: &[WriteRun<'_>], meanwhile: &mut dyn FnMut()) -> Result<(), RunError> {
            // SAFETY: the caller's runs, under the caller's promise.
            let result = unsafe { crate::raw::Device::write(&self.inner, runs) };
            self.log.lock().unwrap().push("write");
            if !self.skip {
                meanwhile();
                self.log.lock().unwrap().push("meanwhile");
            }
            result
        }
    }

    fn pages(n: u8) -> Vec<Box<Page>> {
        (0..n)
            .map(|k| {
                let mut page = Page::new_boxed();
                page.0.fill(k + 1);
                page
            })
            .collect()
    }

    /// A batch's checksums are taken once, during the device's write when
    /// it runs the work, after it when the device does not: either way
    /// every page restores, and a slot changed underneath is caught.
    fn checksums_with(skip: bool) {
        let config = StoreConfig::new("vec", 16).with_checksum(true);
        let device = Overlapping {
            skip,
            ..Default::default()
        };
        let store = SlotStore::new(config, vec![device]);
        let batch = pages(4);
        let refs: Vec<&Page> = batch.iter().map(|p| &**p).collect();
        let mut handles = Vec::new();
        store
            .backup(&refs, 0, BackupFlags::NONE, &mut handles, crate::Operation::BackupPages)
            .unwrap();
        let expected: &[&str] = if skip { &["write"] } else { &["write", "meanwhile"] };
        assert_eq!(*store.device(0).log.lock().unwrap(), expected);
        let mut out = Page::new_boxed();
        for (h, page) in handles.iter().zip(&batch) {
            store.copy_page(&mut out, *h, None).unwrap();
            assert_eq!(out.0, page.0);
        }
        let mut changed = Page::new_boxed();
        changed.0.fill(0xaa);
        store.device(0).inner.put(2, &changed);
        let corrupt = store.copy_page(&mut out, handles[2], None).unwrap_err();
        assert_eq!(corrupt.kind(), ErrorKind::Corrupt);
        store.drop_handles(&handles).unwrap();
    }

    #[test]
    fn checksums_are_taken_while_the_device_writes() {
        checksums_with(false);
    }

    #[test]
    fn checksums_are_taken_after_a_device_that_skips_the_work() {
        checksums_with(true);
    }
}
