//! What a store reports in its stats.

use std::sync::atomic::Ordering;

use super::{PAGE, ShardState, SlotStore};
use crate::BackupStats;
use crate::raw::device::Device;

impl<D: Device> SlotStore<D> {
    /// The store's stats (see [`BackupStats`]).
    pub(super) fn current_stats(&self) -> BackupStats {
        let mut stats = BackupStats::default();
        let mut metadata = 0;
        for (state, device) in self.shards.each().zip(self.devices.iter()) {
            stats.stored_pages += state.generations.live();
            stats.unreleased_bytes += (state.deferred.count + state.pins.quarantined) * PAGE;
            metadata += state.metadata_bytes();
            drop(state);
            stats.resident_bytes += device.resident_bytes();
            metadata += device.buffered_bytes();
        }
        // Every live page takes one slot, a whole page; slots kept for
        // reuse or quarantined are unreleased, not stored.
        stats.original_bytes = stats.stored_pages * PAGE;
        stats.stored_bytes = stats.original_bytes;
        stats.metadata_bytes = metadata;
        stats.memory_used = stats.resident_bytes + metadata;
        stats.writeback_pages = self.counters.writeback_pages.load(Ordering::Relaxed);
        stats.failed_backups = self.counters.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.counters.failed_restores.load(Ordering::Relaxed);
        stats.failed_releases = self.counters.failed_releases.load(Ordering::Relaxed);
        stats.io_path = self.devices[0].io_path();
        stats
    }
}

impl ShardState {
    fn metadata_bytes(&self) -> u64 {
        self.generations.metadata_bytes()
            + self.extents.metadata_bytes()
            + (self.checksums.capacity() * 4) as u64
            + self.deferred.metadata_bytes()
            + self.pins.metadata_bytes()
    }
}
