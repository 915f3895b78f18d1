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

impl BackupStats {
    /// How many times smaller the stored pages are than the originals
    /// (`original_bytes / stored_bytes`); `None` while nothing takes room
    /// in the store (no pages, or only same-filled ones).
    pub fn ratio(&self) -> Option<f64> {
        (self.stored_bytes > 0).then(|| self.original_bytes as f64 / self.stored_bytes as f64)
    }
}

/// One line of the figures that matter, sizes in binary units:
/// `3 pages (12.0 KiB) stored in 5.1 KiB, ratio 2.35; memory used 132.0 KiB
/// (metadata 1.2 KiB); unreleased 0 B`, then the I/O path and the failure
/// counts where there are any. [`Debug`] shows every field.
impl std::fmt::Display for BackupStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = if self.stored_pages == 1 { "page" } else { "pages" };
        write!(
            f,
            "{} {pages} ({}) stored in {}, ratio ",
            self.stored_pages,
            Bytes(self.original_bytes),
            Bytes(self.stored_bytes)
        )?;
        match self.ratio() {
            Some(ratio) => write!(f, "{ratio:.2}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            "; memory used {} (metadata {}); unreleased {}",
            Bytes(self.memory_used),
            Bytes(self.metadata_bytes),
            Bytes(self.unreleased_bytes)
        )?;
        if let Some(path) = self.io_path {
            write!(f, "; io {path}")?;
        }
        for (count, what) in [
            (self.failed_backups, "failed backups"),
            (self.failed_restores, "failed restores"),
            (self.failed_releases, "failed releases"),
        ] {
            if count > 0 {
                write!(f, "; {count} {what}")?;
            }
        }
        Ok(())
    }
}

/// A byte count in binary units: exact below 1 KiB, one decimal above.
struct Bytes(u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_of_the_figures_that_matter() {
        let stats = BackupStats {
            stored_pages: 3,
            original_bytes: 3 * 4096,
            stored_bytes: 5222,
            memory_used: 132 << 10,
            metadata_bytes: 1229,
            ..BackupStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "3 pages (12.0 KiB) stored in 5.1 KiB, ratio 2.35; memory used 132.0 KiB (metadata 1.2 KiB); unreleased 0 B"
        );
    }

    #[test]
    fn display_adds_the_io_path_and_failures_and_no_ratio_when_nothing_is_stored() {
        let stats = BackupStats {
            stored_pages: 1,
            original_bytes: 4096,
            unreleased_bytes: 8 << 20,
            failed_restores: 2,
            io_path: Some("io_uring"),
            ..BackupStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "1 page (4.0 KiB) stored in 0 B, ratio -; memory used 0 B (metadata 0 B); unreleased 8.0 MiB; io io_uring; 2 failed restores"
        );
        assert_eq!(BackupStats::default().ratio(), None);
    }
}
