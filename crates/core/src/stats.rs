//! [`BackupStats`]: what a backend holds and what it costs.

/// Counters a backend reports from [`stats`](crate::BackupBackend::stats).
///
/// Fields that do not apply to a backend stay 0. The names follow zram's
/// `mm_stat` where they overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupStats {
    /// Live handles: pages backed up and not dropped.
    pub stored_pages: u64,
    /// Bytes of the pages held, before any compression (`stored_pages * 4096`).
    pub original_bytes: u64,
    /// Bytes the held pages take in the backend's store (compressed size,
    /// or the page size where stored as is). 0 once every handle is dropped.
    pub stored_bytes: u64,
    /// Bytes of process memory the backend uses, metadata and free slots
    /// kept for reuse included.
    pub memory_used: u64,
    /// Bytes of the backend's store that are resident in RAM, where it can
    /// tell (a memfd's resident pages).
    pub resident_bytes: u64,
    /// Pages the backend started writeback for.
    pub writeback_pages: u64,
    /// Pages stored as one repeated 8-byte word (zram's `same_pages`).
    pub same_filled_pages: u64,
    /// Pages stored uncompressed because they did not compress (zram's `huge_pages`).
    pub incompressible_pages: u64,
    /// Pages moved by compaction.
    pub compacted_pages: u64,
    /// Bytes of the backend's own metadata (slot tables, checksums, free
    /// lists, staging buffers), included in `memory_used`.
    pub metadata_bytes: u64,
    /// Bytes of storage still held for dropped pages, never counted in
    /// `stored_bytes`: kept for reuse and released past a budget (a slot
    /// store's deferred release), or quarantined until the restores reading
    /// them are over (a slot store's read pins). 0 once those restores end
    /// and the kept storage is released.
    pub unreleased_bytes: u64,
    /// Backups that failed.
    pub failed_backups: u64,
    /// Restores that failed (interruptions included).
    pub failed_restores: u64,
    /// Releases of storage (hole punches) that failed.
    pub failed_releases: u64,
    /// The I/O path the backend uses (`"io_uring"`, `"pwritev"`), where it
    /// does I/O.
    pub io_path: Option<&'static str>,
}
