//! [`BackupFlags`]: per-backup requests to the backend.

/// Options for one backup.
///
/// None of them changes what a later `copy_page` returns; they only say how
/// the backend should treat the copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BackupFlags {
    /// Start moving the copy to the backend's slowest, cheapest tier now
    /// (swap, disk, a backing file), as the kernel's `writeback` flag does.
    pub writeback: bool,
}

impl BackupFlags {
    /// No options: the backend stores the copy as it sees fit.
    pub const NONE: BackupFlags = BackupFlags { writeback: false };
    /// Ask for writeback to start at once.
    pub const WRITEBACK: BackupFlags = BackupFlags { writeback: true };

    /// These flags with `writeback` set to `on`.
    pub const fn with_writeback(self, on: bool) -> Self {
        BackupFlags { writeback: on }
    }
}
