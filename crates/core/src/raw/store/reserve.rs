//! The reserve: free slots whose storage is allocated ahead of the backups
//! that will take them, so that those backups are plain writes.

use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering;

use super::SlotStore;
use crate::error::Operation;
use crate::raw::device::Device;

impl<D: Device> SlotStore<D> {
    /// Free slots whose storage is resident, over all shards: those kept
    /// since their drop and those of the reserve. A cheap read of one
    /// counter, for deciding whether to [`fill_reserve`](Self::fill_reserve).
    pub fn resident_free_pages(&self) -> u64 {
        self.deferred_total.load(Ordering::Relaxed)
    }

    /// The shard the calling thread's backups are placed in.
    pub fn placing_shard(&self) -> usize {
        self.shards.mine()
    }

    /// Allocates the storage of free slots of `shard` ahead
    /// ([`Device::preallocate`]), `batch` slots at a time with the shard's
    /// lock given up meanwhile, until the shard holds `target` free slots
    /// with storage or the store holds its budget of them (the
    /// deferred-release budget and the reserve). It takes the lowest free
    /// slots without storage, which placement hands out first. Returns the
    /// slots allocated.
    ///
    /// While a batch is being allocated its slots are taken, so no backup
    /// is placed there (a backup that finds too few other free slots waits
    /// for them, rather than fail for want of space the store has); then
    /// they are free again, with storage, and a backup placed on them writes
    /// into it. A batch whose allocation fails is
    /// released again and given back without storage, and the error (such
    /// as `ENOMEM`, or `Unsupported` from a device that cannot allocate
    /// ahead) returned; what earlier batches allocated stays.
    pub fn fill_reserve(&self, shard: usize, target: u64, batch: u32) -> io::Result<u64> {
        if self.check_process(Operation::Maintenance).is_err() {
            return Ok(0);
        }
        let mut filled = 0;
        loop {
            let room = self.kept_budget().saturating_sub(self.resident_free_pages());
            let runs = {
                let mut state = self.shards.lock(shard);
                let want = target
                    .saturating_sub(state.deferred.count)
                    .min(room)
                    .min(u64::from(batch));
                let runs = lowest_unbacked(&state.extents, &state.deferred, want as u32);
                for run in &runs {
                    assert!(state.extents.take_range(run.clone()), "free runs can be taken");
                    state.filling += run.end - run.start;
                }
                runs
            };
            if runs.is_empty() {
                return Ok(filled);
            }
            let mut failed = None;
            for run in &runs {
                if failed.is_none() {
                    // SAFETY: the run was taken from the free slots above, under the shard lock, for this call alone: no backup holds it, no handle names it, so no write, read or release of it runs until it is given back below.
                    let allocated = unsafe { self.devices[shard].preallocate(run.start, run.end - run.start) };
                    if let Err(error) = allocated {
                        // Whatever part of it was allocated goes again.
                        let _ = self.release_unused(shard, run.start, run.end - run.start);
                        failed = Some((run.start, error));
                    }
                }
            }
            let mut state = self.shards.lock(shard);
            for run in &runs {
                state.filling -= run.end - run.start;
                let held = failed.as_ref().is_none_or(|&(start, _)| run.start < start);
                if held {
                    filled += u64::from(run.end - run.start);
                }
                state.give(run.clone(), held);
            }
            drop(state);
            if let Some((_, error)) = failed {
                return Err(error);
            }
        }
    }
}

/// Up to `want` of the lowest free slots in `extents` that are not in
/// `backed`, as ascending runs.
fn lowest_unbacked(
    extents: &crate::raw::FreeExtents,
    backed: &super::slot_bits::SlotBits,
    mut want: u32,
) -> Vec<Range<u32>> {
    let mut runs: Vec<Range<u32>> = Vec::new();
    for free in extents.free_runs() {
        let mut slot = free.start;
        while want > 0 && slot < free.end {
            if !backed.contains(slot) {
                match runs.last_mut() {
                    Some(last) if last.end == slot => last.end += 1,
                    _ => runs.push(slot..slot + 1),
                }
                want -= 1;
            }
            slot += 1;
        }
        if want == 0 {
            break;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::raw::test_device::VecDevice;
    use crate::raw::{SlotStore, StoreConfig};
    use crate::{BackupBackend, BackupFlags, Page};

    /// A backup that needs the slots the reserve is allocating ahead waits
    /// for them: the store is not full, so it must not say so.
    #[test]
    fn a_backup_waits_for_slots_taken_by_the_reserve_rather_than_fail() {
        let (started, start) = mpsc::channel();
        let device = VecDevice(Default::default(), Some((started, Duration::from_millis(100))));
        let config = StoreConfig::new("vec", 8).with_reserve(8);
        let store = SlotStore::new(config, vec![device]);
        let pages: Vec<Box<Page>> = (0..8u8)
            .map(|i| {
                let mut page = Page::new_boxed();
                page.0.fill(i + 1);
                page
            })
            .collect();
        std::thread::scope(|s| {
            let filler = s.spawn(|| store.fill_reserve(0, 8, 8));
            start.recv().unwrap();
            let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
            let mut handles = Vec::new();
            store
                .backup_pages(&refs, 0, BackupFlags::NONE, &mut handles)
                .expect("every slot of the capacity is free");
            assert_eq!(filler.join().unwrap().unwrap(), 8);
            for (h, page) in handles.iter().zip(&pages) {
                let mut back = Page::new_boxed();
                store.copy_page(&mut back, *h, None).unwrap();
                assert_eq!(back.0, page.0);
            }
        });
    }
}
