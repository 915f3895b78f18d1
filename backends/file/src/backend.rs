//! [`FileBackend`].

use std::fmt;
use std::path::Path;

use pagebackup_core::raw::seal::MaybeSealed;
use pagebackup_core::raw::{HandleCodec, SlotStore, StoreConfig};
use pagebackup_core::{BackupError, Operation, Origin, PAGE_SIZE, Result};

use crate::device::FileDevice;
use crate::{FileConfig, NAME};

const PAGE: u64 = PAGE_SIZE as u64;

/// Pages written to plain files, through `pwritev`/`preadv` or io_uring.
///
/// - **The files** are unlinked `O_TMPFILE`s (mode 0600), one per shard, in
///   a directory of the caller's choice, so nothing is left behind and
///   nobody else can open them; where the file system has no `O_TMPFILE`,
///   each is created and unlinked at once. With [`FileConfig::path`], one
///   named file is created exclusively with mode 0600 and removed when the
///   backend is dropped — only if the path still names that file (same
///   device and inode), and never by a `fork()` child.
/// - **Placement**: a thread writes to its own shard's file, so threads do
///   not serialise on one inode; consecutive `idx` of one object get
///   consecutive slots, written, read and punched as one range; freed slots
///   are reused lowest first, so a file never grows past the peak number
///   of pages held at once in its shard.
/// - **`backup_page`** copies the page into a staging buffer and returns: the
///   caller's page is free at once. Every 64 staged pages are written, runs
///   of contiguous slots coalesced, by the thread that staged the 64th;
///   `writeback` writes what is staged at once. A staged page stays in
///   memory until its write has completed, and restores serve it from
///   there; a failed write leaves it staged, to be written by a later flush —
///   never lost. [`flush`](pagebackup_core::BackupBackend::flush) writes
///   everything staged and reports a failure.
/// - **`backup_pages`** writes straight from the caller's pages and waits
///   for the writes before returning.
/// - **I/O path** ([`IoMode`](crate::IoMode)): by default `pwritev`/`preadv` for buffered
///   files, io_uring for `direct` (one operation per run of contiguous
///   slots, the runs of a batch in flight at once; the async
///   [`AsyncFileBackend`](crate::AsyncFileBackend) keeps many batches in
///   flight).
/// - **`direct`**: `O_DIRECT`, so pages leave memory; a file system that
///   refuses it is an error at open.
/// - **Checksums** (on by default): a CRC-32 per page, checked on every
///   restore: a page changed on the disk gives `Corrupt`, never wrong bytes.
/// - **Drops** punch holes (`fallocate(PUNCH_HOLE)`), one per contiguous run;
///   a dropped staged page is never written. Where the file system cannot
///   punch, the drop fails and the handle stays live.
/// - **Space**: `ENOSPC`, `EFBIG` and `EDQUOT` become `NoSpace` for the backup
///   that hit them, with no handle issued; so does `max_size`. `bytes_avail`
///   is the smaller of what `max_size` leaves and the file system's free space.
/// - **Sealing** (`seal=on`, feature `seal`): every page is encrypted and
///   authenticated before it reaches the file, bound to its backend, slot
///   and write ([`raw::seal`](pagebackup_core::raw::seal)): the file holds
///   no plaintext, and a page changed, moved, replayed or taken from
///   another backend restores as `Corrupt`. The key is random and held in
///   memory unless `seal_key` names one. Pages are sealed from the caller's
///   page straight into the write buffer, and (without `direct`) restores
///   decrypt from a read-only shared mapping of the file, that is from the
///   page cache, straight into the caller's page: no copy beside the
///   cipher's pass. With `direct`, a restore reads the page and decrypts it
///   in place.
/// - **fork()**: a child that uses the backend gets `Unsupported`; the
///   parent's pages stay intact.
///
/// **Blocking class**: blocks (file I/O, waits for io_uring completions),
/// so under an async adapter each call goes to the blocking pool; from async
/// code use [`AsyncFileBackend`](crate::AsyncFileBackend), which awaits its
/// completions without a thread per call.
pub struct FileBackend {
    store: SlotStore<MaybeSealed<FileDevice>>,
}

/// Every operation is the slot store's.
impl pagebackup_core::layers::Layer for FileBackend {
    type Inner = SlotStore<MaybeSealed<FileDevice>>;
    fn inner(&self) -> &Self::Inner {
        &self.store
    }
}

impl FileBackend {
    /// A backend with `config`. A `max_size` below one page or above the
    /// handle space (2^31 pages, 8 TiB), or no shards, gives
    /// [`BackupError::Config`] with the bound in its message; a file that
    /// cannot be created gives [`BackupError::Io`].
    pub fn new(config: FileConfig) -> Result<Self> {
        Ok(FileBackend {
            store: open_store(&config)?,
        })
    }

    /// The I/O path in use: `"io_uring"` or `"pwritev"`.
    pub fn io_path(&self) -> &'static str {
        self.first().io.name()
    }

    /// Why io_uring is not in use, if it is not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.first().fallback.as_deref()
    }

    /// The named file's path, if the backend was given one.
    pub fn path(&self) -> Option<&Path> {
        self.first().file.path()
    }

    /// How the files were created: `"O_TMPFILE"`, `"unlinked"` (created,
    /// then unlinked, where `O_TMPFILE` is missing) or `"named"`.
    pub fn file_kind(&self) -> &'static str {
        self.first().file.kind
    }

    /// Whether pages are sealed (`seal=on`).
    pub fn is_sealed(&self) -> bool {
        self.store.devices().any(MaybeSealed::is_sealed)
    }

    /// The files' descriptors, one per shard, for inspection (`fstat`).
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.store.devices().map(|d| d.base().file.fd())
    }

    /// Releases the blocks of every dropped page kept for reuse
    /// ([`FileConfig::reuse`]).
    pub fn release_unused(&self) {
        self.store.release_deferred();
    }

    fn first(&self) -> &FileDevice {
        self.store
            .devices()
            .next()
            .expect("a store has at least one shard")
            .base()
    }
}

/// The store of a file backend with `config`: its capacity and shards
/// checked, one file device per shard.
pub(crate) fn open_store(config: &FileConfig) -> Result<SlotStore<MaybeSealed<FileDevice>>> {
    let origin = Origin::new(NAME, Operation::Open);
    let invalid = |detail| BackupError::Config { origin, detail };
    let capacity_pages = config.max_size.map_or(HandleCodec::MAX_SLOTS, |b| b / PAGE);
    if capacity_pages == 0 {
        return Err(invalid(format!(
            "max_size {} is less than one page ({PAGE_SIZE} bytes)",
            config.max_size.unwrap_or(0)
        )));
    }
    if capacity_pages > HandleCodec::MAX_SLOTS {
        return Err(invalid(format!(
            "max_size {} is above the most a backend can address, {} bytes (2^31 pages)",
            config.max_size.unwrap_or(0),
            HandleCodec::MAX_SLOTS * PAGE
        )));
    }
    let shards = match (&config.path, config.shards) {
        (Some(_), _) => 1,
        (None, Some(0)) => return Err(invalid("shards must be at least 1".to_string())),
        (None, Some(n)) => n,
        (None, None) => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
    };
    let shards = 1usize << shards.ilog2();
    let devices = (0..shards)
        .map(|_| FileDevice::open(config))
        .collect::<Result<Vec<_>>>()?;
    let devices = MaybeSealed::wrap(devices, config.seal.as_ref(), origin)?;
    // A sealed page's tag authenticates it: a CRC beside it checks nothing more.
    let store = StoreConfig::new(NAME, capacity_pages)
        .with_checksum(config.checksum && config.seal.is_none())
        .with_deferred_release(config.reuse / PAGE);
    Ok(SlotStore::new(store, devices))
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("io", &self.io_path())
            .field("fallback_reason", &self.fallback_reason())
            .field("file", &self.file_kind())
            .field("sealed", &self.is_sealed())
            .field("store", &self.store)
            .finish()
    }
}
