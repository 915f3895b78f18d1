//! pagebackup: back up memory pages out of the way and get them back.
//!
//! A caller that must give memory back under pressure — a GPU or accelerator
//! driver's page pool, a VMM holding guest memory, a buffer pool — hands a
//! 4 KiB [`Page`] to a [`BackupBackend`] and keeps the opaque [`Handle`] it
//! returns; later it copies the page back by handle, or drops it. One handle
//! scheme fronts every backend, so switching stores changes only the
//! constructor, or the spec string given to [`open`].
//!
//! Two audiences, two places. The crate root is the user contract: pages
//! ([`Page`], [`PAGE_SIZE`]), [`Handle`]s, tagged [`PageWord`]s, the
//! [`BackupBackend`] trait and [`MemoryBackend`], the errors, flags and
//! stats, [`Interrupt`], [`PageArray`], the [`layers`], and [`open`]; the
//! backend crates sit behind cargo features (`shmem`, `file`,
//! `compressed`, each with its typed config). Everything a backend
//! author needs — the slot store and its device trait, the handle codec,
//! shards, the spec parameter kit — is in [`raw`].
//!
//! [`open`] builds any compiled-in backend from a spec such as
//! `memory` or `memory:limit=64MiB`; [`available_backends`] lists them.
//! With the feature `async`, `open_async` builds the same backends behind
//! the async API on tokio (`AsyncBackupBackend`).
//!
//! ```
//! use pagebackup::{BackupFlags, Page};
//!
//! let backend = pagebackup::open("memory:limit=64MiB")?;
//! let mut page = Page::new_boxed();
//! page.0[..4].copy_from_slice(b"data");
//! let handle = backend.backup_page(&page, 0, BackupFlags::NONE)?;
//! page.0.fill(0);
//! backend.copy_page(&mut page, handle, None)?;
//! assert_eq!(&page.0[..4], b"data");
//! backend.drop_handle(handle)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(feature = "async")]
mod async_open;
mod error;
mod registry;

pub use error::OpenError;
// The user contract, by name; what backend authors need is in `raw`.
pub use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, BatchError, Counts, ErrorKind, Handle, Interrupt,
    MemoryBackend, Operation, Origin, PAGE_SIZE, Page, PageArray, PageCastError, PageState, PageWord, Result, Slot,
    layers, raw,
};

/// The async API (feature `async`): the trait, the adapter and the async page array.
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use async_open::open_async;
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use pagebackup_async::{AsyncBackupBackend, AsyncPageArray, BackedUp, Execution, SyncAdapter};

/// The compressed-RAM backend (feature `compressed`).
#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))))]
pub use pagebackup_compressed as compressed;

/// The plain-file backend (feature `file`).
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use pagebackup_file as file;

/// The Redis/Valkey backend (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use pagebackup_redis as redis;

/// The tiered backend (feature `tiered`).
#[cfg(feature = "tiered")]
#[cfg_attr(docsrs, doc(cfg(feature = "tiered")))]
pub use pagebackup_tiered as tiered;

/// The offload region (feature `region`): memory paged to any backend.
#[cfg(feature = "region")]
#[cfg_attr(docsrs, doc(cfg(feature = "region")))]
pub use pagebackup_region as region;

/// An offload region of `len` bytes keeping at most `budget` resident,
/// paging to the backend `spec` names (see [`open`]), with `config`.
#[cfg(feature = "region")]
#[cfg_attr(docsrs, doc(cfg(feature = "region")))]
pub fn open_region(
    spec: &str,
    len: usize,
    budget: usize,
    config: region::RegionConfig,
) -> Result<region::OffloadRegion, region::RegionError> {
    let backend = open(spec).map_err(|e| region::RegionError::Open(Box::new(e)))?;
    region::OffloadRegion::with_config(len, budget, backend, config)
}

/// The shmem backend (feature `shmem`).
#[cfg(feature = "shmem")]
#[cfg_attr(docsrs, doc(cfg(feature = "shmem")))]
pub use pagebackup_shmem as shmem;

/// Builds a backend from a spec: `NAME` or `NAME:key=value,key=value`.
///
/// The parameters of each backend, from its own table (its config's
/// `PARAMS`, which its `from_params` parses):
///
#[doc = include_str!("../docs/spec-params.md")]
///
/// Sizes are whole bytes with an optional suffix `B`, `KiB`, `MiB`, `GiB`
/// or `TiB`; flags are `on` or `off`. Values end at the next comma, so a path given in a spec cannot
/// contain one (build such a backend with its crate's config instead). An
/// unknown name, an unknown key, a bad value or a backend this build lacks
/// each gives an [`OpenError`] that says what is valid; a value the backend
/// can never work with (a limit below one page) is refused with the bound.
pub fn open(spec: &str) -> Result<Box<dyn BackupBackend>, OpenError> {
    registry::open_in(registry::BACKENDS, spec)
}

/// Builds a tiered backend from a `tiered:` spec (see [`open`]), as its own
/// type, for its per-tier figures and policy calls.
#[cfg(feature = "tiered")]
#[cfg_attr(docsrs, doc(cfg(feature = "tiered")))]
pub fn open_tiered(spec: &str) -> Result<tiered::Tiered, OpenError> {
    let parsed = raw::params::Spec::parse(spec)?;
    if parsed.name != "tiered" {
        return Err(OpenError::UnknownBackend {
            name: parsed.name.to_string(),
            available: vec!["tiered"],
        });
    }
    registry::open_tiered(&parsed.params)
}

/// The names of the backends this build contains, for [`open`].
pub fn available_backends() -> Vec<&'static str> {
    registry::available_in(registry::BACKENDS)
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
