//! [`RegionStats`] and the counters behind them.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters, updated lock-free (from signal handlers too).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) faults: AtomicU64,
    pub(crate) fault_ns: AtomicU64,
    pub(crate) zero_fills: AtomicU64,
    pub(crate) restores: AtomicU64,
    pub(crate) restored_pages: AtomicU64,
    pub(crate) wp_faults: AtomicU64,
    pub(crate) probe_hits: AtomicU64,
    pub(crate) evicted_pages: AtomicU64,
    pub(crate) written_back: AtomicU64,
    pub(crate) clean_drops: AtomicU64,
    pub(crate) zero_drops: AtomicU64,
    pub(crate) stale_drops: AtomicU64,
    pub(crate) upkeep_steps: AtomicU64,
    pub(crate) evict_batches: AtomicU64,
    pub(crate) release_calls: AtomicU64,
    pub(crate) protect_calls: AtomicU64,
    pub(crate) over_budget: AtomicU64,
    pub(crate) restore_errors: AtomicU64,
    pub(crate) backup_errors: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) evictor_cpu_ns: AtomicU64,
    pub(crate) handler_cpu_ns: AtomicU64,
}

/// What a region has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionStats {
    /// Faults served (missing pages and writes to clean pages), each
    /// counted once served: by a handler thread after its copy has woken
    /// the faulting thread, so that thread may read the count just before.
    pub faults: u64,
    /// Time spent serving them, in nanoseconds (on the faulting thread in
    /// signal mode, on the handler thread otherwise).
    pub fault_ns: u64,
    /// Never-written pages mapped as zeros.
    pub zero_fills: u64,
    /// Restores (one backend batch call and one `UFFDIO_COPY` each).
    pub restores: u64,
    /// Pages restored (read-ahead included).
    pub restored_pages: u64,
    /// Writes to clean pages (write-protect faults).
    pub wp_faults: u64,
    /// Writes to pages the clock hand had write-protected as samples (access
    /// sampling): each earned its page another turn.
    pub probe_hits: u64,
    /// Pages evicted.
    pub evicted_pages: u64,
    /// Evicted pages that were written to the backend.
    pub written_back: u64,
    /// Evicted pages that were clean: dropped, their copy kept.
    pub clean_drops: u64,
    /// Evicted pages that were all zeros: dropped, no storage.
    pub zero_drops: u64,
    /// Stale copies dropped while their page stays resident: the copies of
    /// written pages in use, dropped as the evictor's hand passes them
    /// rather than at their next eviction.
    pub stale_drops: u64,
    /// Pieces of the backend's upkeep the evictor did while the region was
    /// under its watermark ([`BackupBackend::maintain_step`]).
    ///
    /// [`BackupBackend::maintain_step`]: pagebackup_core::BackupBackend::maintain_step
    pub upkeep_steps: u64,
    /// Eviction batches.
    pub evict_batches: u64,
    /// Release system calls (`process_madvise` or `madvise`).
    pub release_calls: u64,
    /// `UFFDIO_WRITEPROTECT` calls that protected dirty pages for eviction
    /// (one per span of victims, each a TLB flush).
    pub protect_calls: u64,
    /// Whether releases are batched with `process_madvise`.
    pub vectored_release: bool,
    /// Faults that went over the budget because the evictor could not keep up or fails.
    pub over_budget: u64,
    /// Restores the backend failed.
    pub restore_errors: u64,
    /// Backup batches the backend failed.
    pub backup_errors: u64,
    /// Errors met in all.
    pub errors: u64,
    /// CPU time of the evictor thread, in nanoseconds.
    pub evictor_cpu_ns: u64,
    /// CPU time of the handler thread, in nanoseconds (handler-thread mode).
    pub handler_cpu_ns: u64,
    /// Pages resident now.
    pub resident_pages: u64,
    /// Bytes the backend uses now (its `memory_used`).
    pub backend_bytes: u64,
    /// Bytes of original pages the backend holds now (its `original_bytes`).
    pub backend_original_bytes: u64,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        resident: usize,
        vectored: bool,
        backend: &pagebackup_core::BackupStats,
    ) -> RegionStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RegionStats {
            faults: g(&self.faults),
            fault_ns: g(&self.fault_ns),
            zero_fills: g(&self.zero_fills),
            restores: g(&self.restores),
            restored_pages: g(&self.restored_pages),
            wp_faults: g(&self.wp_faults),
            probe_hits: g(&self.probe_hits),
            evicted_pages: g(&self.evicted_pages),
            written_back: g(&self.written_back),
            clean_drops: g(&self.clean_drops),
            zero_drops: g(&self.zero_drops),
            stale_drops: g(&self.stale_drops),
            upkeep_steps: g(&self.upkeep_steps),
            evict_batches: g(&self.evict_batches),
            release_calls: g(&self.release_calls),
            protect_calls: g(&self.protect_calls),
            vectored_release: vectored,
            over_budget: g(&self.over_budget),
            restore_errors: g(&self.restore_errors),
            backup_errors: g(&self.backup_errors),
            errors: g(&self.errors),
            evictor_cpu_ns: g(&self.evictor_cpu_ns),
            handler_cpu_ns: g(&self.handler_cpu_ns),
            resident_pages: resident as u64,
            backend_bytes: backend.memory_used,
            backend_original_bytes: backend.original_bytes,
        }
    }
}
