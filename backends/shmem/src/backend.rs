//! [`ShmemBackend`] and [`ShmemConfig`].

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use pagebackup_core::raw::params::{ParamDoc, ParamError, Params};
use pagebackup_core::raw::seal::{MaybeSealed, SEAL_KEY_PARAM, SEAL_PARAM, SealKeySource};
use pagebackup_core::raw::{HandleCodec, SlotStore, StoreConfig};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BatchError, Handle, Operation, Origin, PAGE_SIZE, Page, Result,
};

use rustix::fs::{Mode, OFlags};

use crate::device::MemfdDevice;
use crate::reserve::{Reserve, Store};

const NAME: &str = "shmem";
const PAGE: u64 = PAGE_SIZE as u64;

/// Settings of a [`ShmemBackend`].
///
/// Each setting is a parameter of the `shmem:` spec (`capacity`, `checksum`,
/// `reuse`, `reserve`, `shards`), which [`from_params`](Self::from_params) parses:
///
/// ```
/// use pagebackup_core::{BackupBackend, BackupFlags, Page};
/// use pagebackup_shmem::{ShmemBackend, ShmemConfig};
///
/// let config = ShmemConfig::new().with_capacity(64 << 20).with_checksum(true);
/// assert_eq!(config, ShmemConfig::from_params(&[("capacity", "64MiB"), ("checksum", "on")])?);
/// let backend = ShmemBackend::with_config(config)?;
/// let handle = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)?;
/// backend.drop_handle(handle)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmemConfig {
    /// Most bytes of pages held (rounded down to whole pages). Default: the
    /// machine's RAM plus swap, which no backup can exceed anyway (the
    /// memfds are sparse, so a large capacity costs nothing until used).
    pub capacity: Option<u64>,
    /// Keep a CRC-32 per page and check it on restore (default off: see
    /// [`ShmemBackend`] for the measured cost). With `seal`, the seal's tag
    /// is the check and no CRC is kept.
    pub checksum: bool,
    /// Bytes of dropped pages whose memory is kept for reuse instead of
    /// released at once (default 64 MiB). Backups into them are plain copies
    /// into the mapping, with no system call (measured by median time per
    /// page in batches of 64: 0.87-0.98x the speed of a copy into pre-faulted
    /// memory, 4.5-5x that of a backup into new memory); past the budget the
    /// highest are released, down to half of it.
    pub reuse: u64,
    /// Most bytes of free memory per shard kept allocated ahead of the
    /// backups that will take it (default 64 MiB; 0: none), counting the
    /// dropped memory kept for reuse. The reserve starts at 1 MiB and
    /// doubles, up to this, whenever a backup finds no free memory left,
    /// so that it follows the backend's bursts of backups; when a backup
    /// finds less than half of it, a thread of the backend allocates more
    /// (`MADV_POPULATE_WRITE`, a batch at a time, into the lowest free
    /// slots, which backups take first), so that backups into new slots
    /// are copies too instead of allocating. Nothing is allocated ahead
    /// before the first backup, nor
    /// while the machine's available memory is low (then the free memory
    /// kept is released); [`ShmemBackend::release_unused`] releases it,
    /// and [`maintain`](pagebackup_core::BackupBackend::maintain) fills it
    /// on the calling thread. Shown, with the dropped memory kept, as
    /// `unreleased_bytes` in [`stats`](pagebackup_core::BackupBackend::stats).
    pub reserve: u64,
    /// Memfds the pages are spread over, one per shard, so that threads
    /// backing up at once do not share a memfd's inode lock; rounded down to
    /// a power of two. Default: the number of CPUs, at most 8.
    pub shards: Option<usize>,
    /// Seal every page (encrypt and authenticate it, bound to its slot and
    /// write) with a key from this source, so that the memfds (and the swap
    /// they go to) hold no plaintext; `None` (the default) stores pages as
    /// they are. Needs the crate's `seal` feature.
    pub seal: Option<SealKeySource>,
}

impl Default for ShmemConfig {
    fn default() -> Self {
        ShmemConfig {
            capacity: None,
            checksum: false,
            reuse: 64 << 20,
            reserve: 64 << 20,
            shards: None,
            seal: None,
        }
    }
}

impl ShmemConfig {
    /// The parameters of the spec `shmem:...` ([`from_params`](Self::from_params)).
    pub const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            key: "capacity",
            syntax: "SIZE",
            default: "RAM + swap",
            meaning: "most bytes held; one page (4096 bytes) to 8 TiB",
        },
        ParamDoc {
            key: "checksum",
            syntax: "on|off",
            default: "off",
            meaning: "a CRC-32 per page, checked on restore",
        },
        ParamDoc {
            key: "reuse",
            syntax: "SIZE",
            default: "64MiB",
            meaning: "dropped memory kept for reuse",
        },
        ParamDoc {
            key: "reserve",
            syntax: "SIZE",
            default: "64MiB",
            meaning: "most free memory per shard allocated ahead of backups",
        },
        ParamDoc {
            key: "shards",
            syntax: "N",
            default: "CPUs, at most 8",
            meaning: "memfds the pages are spread over",
        },
        SEAL_PARAM,
        SEAL_KEY_PARAM,
    ];

    /// The config a spec's parameters (see [`PARAMS`](Self::PARAMS)) give.
    /// The capacity's bounds are checked by
    /// [`ShmemBackend::with_config`], which every way of building one takes.
    pub fn from_params(params: &[(&str, &str)]) -> std::result::Result<Self, ParamError> {
        let params = Params::new(NAME, Self::PARAMS, params)?;
        let defaults = Self::default();
        Ok(ShmemConfig {
            capacity: params.size("capacity")?,
            checksum: params.flag("checksum")?.unwrap_or(defaults.checksum),
            reuse: params.size("reuse")?.unwrap_or(defaults.reuse),
            reserve: params.size("reserve")?.unwrap_or(defaults.reserve),
            shards: params.count("shards")?,
            seal: SealKeySource::from_params(&params)?,
        })
    }

    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a capacity in bytes.
    pub fn with_capacity(mut self, bytes: u64) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// With checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// With a reuse budget in bytes (0 releases memory at every drop).
    pub fn with_reuse(mut self, bytes: u64) -> Self {
        self.reuse = bytes;
        self
    }

    /// With a reserve of free memory allocated ahead, in bytes per shard
    /// (0: none).
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// With this many shards.
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// With pages sealed under a key from `source`, or not (`None`).
    pub fn with_seal(mut self, source: Option<SealKeySource>) -> Self {
        self.seal = source;
        self
    }
}

/// Pages copied into sealed memfds that the kernel can swap out: the
/// userspace form of the kernel's `ttm_backup` shmem backup.
///
/// - **Storage**: one memfd per shard (`MFD_CLOEXEC`, `MFD_NOEXEC_SEAL`),
///   each sized to the capacity (sparse: memory is allocated page by page as
///   pages are backed up), sealed against shrinking and growing so that no
///   holder of the fd can make the mapping fault, and mapped once. A thread
///   backs up into its own shard, so threads do not contend on one memfd.
/// - **Backup** copies the caller's pages into slots whose memory was kept
///   since their drop (see below): plain copies into the mapping. New slots
///   are written with `pwritev`, one call per run of contiguous slots (pages
///   with consecutive `idx` get consecutive slots where free), so that a
///   failed allocation comes back as `NoSpace` instead of a `SIGBUS`, then
///   mapped (`MADV_POPULATE_READ`).
/// - **Restore** copies out of the populated mapping: a memcpy, no fault.
/// - **Drop** frees the slot at once; its memory is kept for the next
///   backup (which copies into it), up to [`ShmemConfig::reuse`] bytes (shown as
///   `unreleased_bytes` in [`stats`](pagebackup_core::BackupBackend::stats)),
///   and past it released by punching a hole. A backup with `writeback`, and
///   [`release_unused`](Self::release_unused), release it all.
/// - **`writeback`** asks the kernel to page the new pages out
///   (`MADV_PAGEOUT`): with swap, they leave RAM; without swap this does
///   nothing, as in the kernel.
/// - **`bytes_avail`** is the smaller of free swap and free capacity, as the
///   kernel's `ttm_backup_bytes_avail()`: **0 on a machine without swap**,
///   although backups still succeed there (into RAM).
/// - **Checksums** (`checksum`, off by default): a CRC-32 per page, checked
///   on every restore, so that a page changed behind the backend's back
///   (through the memfd) gives `Corrupt`. The memfd is private to the
///   process and in RAM, where bit rot is the RAM's to catch; the check
///   costs a pass over every page on both paths.
/// - **Sealing** (`seal=on`, feature `seal`): every page is encrypted and
///   authenticated before it reaches the memfd, bound to its backend, slot
///   and write ([`raw::seal`](pagebackup_core::raw::seal)): the memfd and
///   the swap it is paged out to hold no plaintext, and a page changed
///   through the memfd restores as `Corrupt`.
/// - **fork()**: the memfds are shared with a child; a child that uses the
///   backend gets [`BackupError::Unsupported`] and the parent's pages stay
///   intact.
///
/// The slot store ([`SlotStore`]) gives the placement, handle, failure and
/// concurrency rules.
///
/// **Blocking class**: may block. A restore can fault its slot in from swap
/// (after `writeback` or memory pressure) and a backup can allocate pages of
/// the memfd, each of which may sleep in the kernel, so
/// [`never_blocks`](pagebackup_core::BackupBackend::never_blocks) is `false`
/// and an async adapter sends each call (a batch is one call) to the
/// blocking pool.
pub struct ShmemBackend {
    /// Stopped (its thread joined) before the store goes.
    reserve: Option<Reserve>,
    store: Arc<Store>,
}

/// Every operation is the slot store's; backups then let the reserve
/// know, and `maintain` fills it.
impl pagebackup_core::layers::Layer for ShmemBackend {
    type Inner = Store;
    fn inner(&self) -> &Self::Inner {
        &self.store
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        let handle = BackupBackend::backup_page(&*self.store, page, idx, flags);
        self.after_backup();
        handle
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        let done = BackupBackend::backup_pages(&*self.store, pages, first_idx, flags, handles);
        self.after_backup();
        done
    }

    /// Fills the reserve of the calling thread's shard, here and now.
    fn maintain(&self) -> Result<()> {
        if let Some(reserve) = &self.reserve {
            let shard = self.store.placing_shard();
            self.store
                .fill_reserve(shard, reserve.pages(), u32::MAX)
                .map_err(|source| BackupError::io(Origin::new(NAME, Operation::Maintenance), source))?;
        }
        Ok(())
    }
}

impl ShmemBackend {
    /// A backend with the default settings.
    pub fn new() -> Result<Self> {
        Self::with_config(ShmemConfig::default())
    }

    /// A backend that holds at most `capacity` bytes of pages, otherwise
    /// with the default settings.
    pub fn with_capacity(capacity: u64) -> Result<Self> {
        Self::with_config(ShmemConfig::default().with_capacity(capacity))
    }

    /// A backend with `config`. A capacity below one page or above the
    /// handle space (2^31 pages, 8 TiB), or no shards, gives
    /// [`BackupError::Config`] with the bound in its message.
    pub fn with_config(config: ShmemConfig) -> Result<Self> {
        let origin = Origin::new(NAME, Operation::Open);
        let invalid = |detail| BackupError::Config { origin, detail };
        let capacity = config.capacity.unwrap_or_else(|| {
            let info = rustix::system::sysinfo();
            (info.totalram as u64 + info.totalswap as u64).saturating_mul(u64::from(info.mem_unit))
        });
        let pages = capacity / PAGE;
        if pages == 0 {
            return Err(invalid(format!(
                "capacity {capacity} is less than one page ({PAGE_SIZE} bytes)"
            )));
        }
        if pages > HandleCodec::MAX_SLOTS {
            return Err(invalid(format!(
                "capacity {capacity} is above the most a backend can address, {} bytes (2^31 pages)",
                HandleCodec::MAX_SLOTS * PAGE
            )));
        }
        let shards = config
            .shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
        if shards == 0 {
            return Err(invalid("shards must be at least 1".to_string()));
        }
        let shards = 1 << shards.ilog2();
        let per_shard = pages.min(HandleCodec::MAX_SLOTS / shards as u64) as u32;
        let devices = (0..shards)
            .map(|_| MemfdDevice::new(per_shard))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| BackupError::Io { origin, source })?;
        let devices = MaybeSealed::wrap(devices, config.seal.as_ref(), origin)?;
        let store = StoreConfig::new(NAME, pages)
            // A sealed page's tag authenticates it: a CRC beside it checks nothing more.
            .with_checksum(config.checksum && config.seal.is_none())
            .with_deferred_release(config.reuse / PAGE);
        let reserve_pages = config.reserve / PAGE;
        let store = Arc::new(SlotStore::new(store.with_reserve(reserve_pages), devices));
        let reserve = (reserve_pages > 0)
            .then(|| Reserve::start(Arc::downgrade(&store), reserve_pages))
            .flatten();
        Ok(ShmemBackend { reserve, store })
    }

    fn after_backup(&self) {
        if let Some(reserve) = &self.reserve {
            reserve.after_backup(&self.store);
        }
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.store.capacity_pages() * PAGE
    }

    /// The backend's memfds, one per shard, for inspection (`fstat`, seals),
    /// each opened anew read-only through `/proc/self/fd`: they cannot write,
    /// punch holes or map the pages writable, so holding them cannot change
    /// a page a restore is copying. (An error if `/proc` is not mounted.)
    pub fn memfds(&self) -> io::Result<Vec<OwnedFd>> {
        self.store
            .devices()
            .map(|d| {
                let path = format!("/proc/self/fd/{}", d.base().memfd().as_raw_fd());
                Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
            })
            .collect()
    }

    /// The backend's own memfds, one per shard, writable. They cannot be
    /// shrunk or grown (sealed); a write changes backed-up pages (which a
    /// restore then gives as `Corrupt` with `checksum`, or as changed bytes).
    ///
    /// ```compile_fail,E0133
    /// let backend = pagebackup_shmem::ShmemBackend::new().unwrap();
    /// // error[E0133]: call to unsafe function requires unsafe block
    /// let fd = backend.writable_memfds().next();
    /// ```
    ///
    /// # Safety
    ///
    /// Nothing may write through them (`write`, `fallocate`, a writable
    /// mapping) while a call of this backend copies the pages written: a
    /// restore copies out of a shared mapping of the memfd, and a
    /// concurrent change of memory being copied is a data race.
    pub unsafe fn writable_memfds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.store.devices().map(|d| d.base().memfd())
    }

    /// The address ranges of the backend's mappings, one per memfd, as
    /// `/proc/self/maps` and `/proc/self/smaps` show them.
    pub fn mapping_ranges(&self) -> Vec<std::ops::Range<usize>> {
        self.store.devices().map(|d| d.base().mapping_range()).collect()
    }

    /// Bytes of the mappings that are swapped out, from their `Swap:` lines
    /// in `/proc/self/smaps`. Reads and parses that file: not for hot paths.
    pub fn swapped_bytes(&self) -> io::Result<u64> {
        self.mapping_ranges()
            .iter()
            .map(|r| crate::smaps::swap_bytes(r.start))
            .sum()
    }

    /// Releases the memory of every dropped page kept for reuse and of
    /// the reserve (which the next backups start filling again).
    pub fn release_unused(&self) {
        self.store.release_deferred();
    }
}

impl fmt::Debug for ShmemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmemBackend").field("store", &self.store).finish()
    }
}
