//! [`FileConfig`] and [`IoMode`]: where the files go and how they are written.

use std::path::PathBuf;

use pagebackup_core::raw::params::{ParamDoc, ParamError, Params};
use pagebackup_core::raw::seal::{SEAL_KEY_PARAM, SEAL_PARAM, SealKeySource};

/// Which I/O path the backend uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// Per operation, what measures fastest: positioned vectored syscalls
    /// (`pwritev`/`preadv`) for buffered I/O, whose writes the kernel
    /// completes by copying into the page cache (through io_uring they are
    /// handed to worker threads and serialised per file); io_uring for
    /// `direct`, the runs of a batch in flight at once (a batch of one run
    /// through `pwritev`/`preadv`, which measured faster alone).
    #[default]
    Auto,
    /// io_uring for every read and write, or fail to open.
    Uring,
    /// `pwritev`/`preadv` only.
    Sync,
}

/// Where the native async backend
/// ([`AsyncFileBackend`](crate::AsyncFileBackend), feature `async`) writes
/// its backups; the sync [`FileBackend`](crate::FileBackend) ignores it.
/// Restores always go through the native backend's io_uring rings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AsyncWrites {
    /// The ring where the file system writes without blocking: with
    /// `direct`, and buffered where the file accepts a `RWF_NOWAIT`
    /// write (probed at open); elsewhere (ext4 refuses buffered
    /// `RWF_NOWAIT` writes, so io_uring hands each to a worker thread)
    /// the blocking pool.
    #[default]
    Auto,
    /// io_uring, one `WRITEV` per run.
    Ring,
    /// Written behind: a backup stages its pages in memory and returns,
    /// and `pwritev` jobs on tokio's blocking pool write them, a shard's
    /// one after another in one blocking job (see
    /// [`AsyncFileBackend`](crate::AsyncFileBackend)).
    Pool,
}

/// Settings of a [`FileBackend`](crate::FileBackend).
///
/// Each setting is a parameter of the `file:` spec (`dir`, `path`,
/// `max_size`, `io`, `direct`, `checksum`, `shards`, `async_writes`), which
/// [`from_params`](Self::from_params) parses:
///
/// ```
/// use pagebackup_core::{BackupBackend, BackupFlags, Page};
/// use pagebackup_file::{FileBackend, FileConfig, IoMode};
///
/// let config = FileConfig::new()
///     .with_dir(std::env::temp_dir())
///     .with_max_size(64 << 20)
///     .with_io(IoMode::Auto);
/// let backend = FileBackend::new(config)?;
/// let handle = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)?;
/// backend.drop_handle(handle)?;
/// // The same settings as a spec's parameters:
/// FileConfig::from_params(&[("max_size", "64MiB"), ("io", "auto")])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileConfig {
    /// Directory of the unlinked `O_TMPFILE` files (default: the system
    /// temporary directory). Ignored when `path` is set.
    pub dir: Option<PathBuf>,
    /// A named file to create instead (exclusively, mode 0600; an existing
    /// file is refused). It is removed when the backend is dropped — only
    /// if it is still the file the backend created (same device and inode).
    /// A named file means one shard. Nothing else may truncate it while
    /// the backend is open: with `seal` (and without `direct`), restores
    /// read it through a shared mapping, where a page cut off by a
    /// truncation raises `SIGBUS` instead of an error.
    pub path: Option<PathBuf>,
    /// Most bytes of pages the files may hold (default: no limit but the
    /// file system's space).
    pub max_size: Option<u64>,
    /// The I/O path.
    pub io: IoMode,
    /// Open the files with `O_DIRECT`: pages go to the disk without filling
    /// the page cache, so a backup really gives memory back. A file system
    /// that refuses `O_DIRECT` (tmpfs) is an error at open.
    pub direct: bool,
    /// Keep a CRC-32 per page and check it on restore (default on: the data
    /// sits on a disk, outside the process's control, and the check costs
    /// little beside the I/O). With `seal`, the seal's tag is the check and
    /// no CRC is kept.
    pub checksum: bool,
    /// Bytes of dropped pages whose blocks are kept for reuse instead of
    /// released at once (default 0: every drop punches its hole). Backups
    /// into them overwrite blocks the file already has, as `dd` rewriting
    /// a file does, instead of making the file system allocate new ones:
    /// with `direct`, allocating writes cost the file system's allocation
    /// and journal on each, and a block newly allocated may lie where the
    /// disk below is slower than where the pages were. Past the budget the
    /// highest are released, down to half of it;
    /// [`FileBackend::release_unused`](crate::FileBackend::release_unused)
    /// releases them all.
    pub reuse: u64,
    /// Files the pages are spread over, one per shard, so that threads
    /// writing at once do not serialise on one inode's lock; rounded down to
    /// a power of two. Default: the number of CPUs, at most 8.
    pub shards: Option<usize>,
    /// Seal every page (encrypt and authenticate it, bound to its slot and
    /// write) with a key from this source; `None` (the default) stores
    /// pages as they are. Needs the crate's `seal` feature. Without
    /// `direct`, sealed restores decrypt straight from a shared mapping of
    /// the file: a page the disk fails to read back (once the page cache
    /// has let it go) then raises `SIGBUS` in the restoring thread instead
    /// of an `Io` error. Where the disk's read errors must come back as
    /// errors, use `direct` (whose restores read into the caller's page).
    pub seal: Option<SealKeySource>,
    /// Where the native async backend writes its backups.
    pub async_writes: AsyncWrites,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            dir: None,
            path: None,
            max_size: None,
            io: IoMode::Auto,
            direct: false,
            checksum: true,
            reuse: 0,
            shards: None,
            seal: None,
            async_writes: AsyncWrites::Auto,
        }
    }
}

impl FileConfig {
    /// The parameters of the spec `file:...` ([`from_params`](Self::from_params)).
    pub const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            key: "dir",
            syntax: "PATH",
            default: "the temp dir",
            meaning: "directory of the unlinked files",
        },
        ParamDoc {
            key: "path",
            syntax: "PATH",
            default: "none",
            meaning: "a named file instead (created exclusively, one shard)",
        },
        ParamDoc {
            key: "max_size",
            syntax: "SIZE",
            default: "no limit",
            meaning: "most bytes held; one page (4096 bytes) to 8 TiB",
        },
        ParamDoc {
            key: "io",
            syntax: "auto|uring|sync",
            default: "auto",
            meaning: "the I/O path",
        },
        ParamDoc {
            key: "direct",
            syntax: "on|off",
            default: "off",
            meaning: "`O_DIRECT`, so that pages leave memory",
        },
        ParamDoc {
            key: "checksum",
            syntax: "on|off",
            default: "on",
            meaning: "a CRC-32 per page, checked on restore",
        },
        ParamDoc {
            key: "reuse",
            syntax: "SIZE",
            default: "0",
            meaning: "dropped pages' blocks kept for reuse",
        },
        ParamDoc {
            key: "shards",
            syntax: "N",
            default: "CPUs, at most 8",
            meaning: "files the pages are spread over",
        },
        ParamDoc {
            key: "async_writes",
            syntax: "auto|ring|pool",
            default: "auto",
            meaning: "the native async backend's writes: io_uring, or staged and written behind by pwritev on the blocking pool",
        },
        SEAL_PARAM,
        SEAL_KEY_PARAM,
    ];

    /// The config a spec's parameters (see [`PARAMS`](Self::PARAMS)) give.
    /// The size's bounds are checked when a backend is built from it.
    pub fn from_params(params: &[(&str, &str)]) -> Result<Self, ParamError> {
        let params = Params::new(crate::NAME, Self::PARAMS, params)?;
        let defaults = Self::default();
        Ok(FileConfig {
            dir: params.path("dir"),
            path: params.path("path"),
            max_size: params.size("max_size")?,
            io: match params.choice("io", &["auto", "uring", "sync"])? {
                Some("uring") => IoMode::Uring,
                Some("sync") => IoMode::Sync,
                _ => IoMode::Auto,
            },
            direct: params.flag("direct")?.unwrap_or(defaults.direct),
            checksum: params.flag("checksum")?.unwrap_or(defaults.checksum),
            reuse: params.size("reuse")?.unwrap_or(defaults.reuse),
            shards: params.count("shards")?,
            seal: SealKeySource::from_params(&params)?,
            async_writes: match params.choice("async_writes", &["auto", "ring", "pool"])? {
                Some("ring") => AsyncWrites::Ring,
                Some("pool") => AsyncWrites::Pool,
                _ => AsyncWrites::Auto,
            },
        })
    }

    /// Defaults: unlinked files in the temporary directory, no size limit,
    /// buffered, checksums on, the I/O path chosen per operation.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the files in `dir`.
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

    /// With `O_DIRECT` on or off.
    pub fn with_direct(mut self, on: bool) -> Self {
        self.direct = on;
        self
    }

    /// With checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// With a reuse budget in bytes (0 releases blocks at every drop).
    pub fn with_reuse(mut self, bytes: u64) -> Self {
        self.reuse = bytes;
        self
    }

    /// With this many shards.
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// With the native async backend's writes going where `writes` says.
    pub fn with_async_writes(mut self, writes: AsyncWrites) -> Self {
        self.async_writes = writes;
        self
    }

    /// With pages sealed under a key from `source`, or not (`None`).
    pub fn with_seal(mut self, source: Option<SealKeySource>) -> Self {
        self.seal = source;
        self
    }
}
