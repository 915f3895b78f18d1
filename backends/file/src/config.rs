//! [`FileConfig`] and [`IoMode`]: where the file goes and how it is written.

use std::path::PathBuf;

/// Which I/O path the backend uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// io_uring where the kernel allows it, else positioned vectored
    /// syscalls (`pwritev`/`preadv`).
    #[default]
    Auto,
    /// io_uring, or fail to open.
    Uring,
    /// `pwritev`/`preadv` only.
    Sync,
}

/// Settings of a [`FileBackend`](crate::FileBackend).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FileConfig {
    /// Directory of the unlinked `O_TMPFILE` file (default: the system
    /// temporary directory). Ignored when `path` is set.
    pub dir: Option<PathBuf>,
    /// A named file to create instead (exclusively, mode 0600; an existing
    /// file is refused). It is removed when the backend is dropped.
    pub path: Option<PathBuf>,
    /// Most bytes of pages the file may hold (default: no limit but the file
    /// system's space).
    pub max_size: Option<u64>,
    /// The I/O path.
    pub io: IoMode,
}

impl FileConfig {
    /// Defaults: an unlinked file in the temporary directory, no size
    /// limit, io_uring where available.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the file in `dir`.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// With a named file at `path`.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// With a size limit.
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// With an I/O path.
    pub fn with_io(mut self, io: IoMode) -> Self {
        self.io = io;
        self
    }
}
