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
//! backend crates sit behind cargo features, each a module here with its
//! typed config. Everything a backend author needs — the slot store and its
//! device trait, the handle codec, shards, the spec parameter kit — is in
//! [`raw`]. `cargo doc -p pagebackup --all-features --open` shows every
//! backend; a build's own docs show the backends of its features.
//!
//! # Sync
//!
//! [`open`] builds any compiled-in backend from a spec such as
//! `memory` or `compressed:algo=zstd,limit=256MiB`; [`available_backends`]
//! lists them. [`BackupStats`] prints as one line.
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
//! println!("{}", backend.stats()); // 1 page (4.0 KiB) stored in 4.0 KiB, ratio 1.00; ...
//! backend.drop_handle(handle)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends
//!
//! Each backend is a module here (its crate, re-exported) behind its cargo
//! feature; its config type builds it in code, and each config setting is a
//! parameter of its spec (the full table is on [`open`]).
//!
//! | module | feature | backend, config | spec parameters |
//! |---|---|---|---|
//! | (root) | always | [`MemoryBackend`] | `limit` |
#![cfg_attr(
    feature = "shmem",
    doc = "| [`shmem`] | `shmem` | [`ShmemBackend`](shmem::ShmemBackend), [`ShmemConfig`](shmem::ShmemConfig) | `capacity`, `checksum`, `reuse`, `reserve`, `shards` |"
)]
#![cfg_attr(
    not(feature = "shmem"),
    doc = "| `shmem` | `shmem` | `ShmemBackend`, `ShmemConfig` (not in this build) | `capacity`, `checksum`, `reuse`, `reserve`, `shards` |"
)]
#![cfg_attr(
    feature = "file",
    doc = "| [`file`](mod@file) | `file` | [`FileBackend`](file::FileBackend), [`FileConfig`](file::FileConfig) (with `async`: [`AsyncFileBackend`](file::AsyncFileBackend)) | `dir`, `path`, `max_size`, `io`, `direct`, `checksum`, `shards` |"
)]
#![cfg_attr(
    not(feature = "file"),
    doc = "| `file` | `file` | `FileBackend`, `FileConfig` (not in this build) | `dir`, `path`, `max_size`, `io`, `direct`, `checksum`, `shards` |"
)]
#![cfg_attr(
    any(feature = "compressed-lz4", feature = "compressed-zstd"),
    doc = "| [`compressed`] | `compressed` (or `compressed-lz4`, `compressed-zstd`) | [`CompressedBackend`](compressed::CompressedBackend), [`CompressedConfig`](compressed::CompressedConfig) | `algo`, `level`, `limit`, `dict`, `checksum`, `huge` |"
)]
#![cfg_attr(
    not(any(feature = "compressed-lz4", feature = "compressed-zstd")),
    doc = "| `compressed` | `compressed` (or `compressed-lz4`, `compressed-zstd`) | `CompressedBackend`, `CompressedConfig` (not in this build) | `algo`, `level`, `limit`, `dict`, `checksum`, `huge` |"
)]
#![cfg_attr(
    feature = "tiered",
    doc = "| [`tiered`] | `tiered` | [`Tiered`](tiered::Tiered) over [`Tier`](tiered::Tier)s, [`TieredConfig`](tiered::TieredConfig) | `tiers`, `budget`, `high`, `low`, `huge`, `huge_mode`, `promote`, `rate`, `auto` |"
)]
#![cfg_attr(
    not(feature = "tiered"),
    doc = "| `tiered` | `tiered` | `Tiered`, `TieredConfig` (not in this build) | `tiers`, `budget`, `high`, `low`, `huge`, `huge_mode`, `promote`, `rate`, `auto` |"
)]
#![cfg_attr(
    feature = "redis",
    doc = "| [`redis`] | `redis` | [`RedisBackend`](redis::RedisBackend), [`RedisConfig`](redis::RedisConfig) | `url`, `prefix`, `attach`, `timeout`, `cluster`, `limit`, `checksum`, `allow_eviction` |"
)]
#![cfg_attr(
    not(feature = "redis"),
    doc = "| `redis` | `redis` | `RedisBackend`, `RedisConfig` (not in this build) | `url`, `prefix`, `attach`, `timeout`, `cluster`, `limit`, `checksum`, `allow_eviction` |"
)]
//!
//! # Async (feature `async`)
//!
//! `open_async(spec)` takes the same specs and returns an
//! `Arc<dyn AsyncBackupBackend>`. Its calls own their buffers, because an
//! io_uring operation must keep its pages whatever happens to the future,
//! so pages go in as `Box<Page>`s and always come back, on success and on
//! failure:
//!
//! | sync ([`BackupBackend`]) | async (`AsyncBackupBackend`) |
//! |---|---|
//! | `backup_page(&page, idx, flags) -> Result<Handle>` | `backup_page(Box<Page>, idx, flags).await -> (Result<Handle>, Box<Page>)` |
//! | `backup_pages(&[&Page], first_idx, flags, &mut handles) -> Result<(), BatchError>` | `backup_pages(Vec<Box<Page>>, first_idx, flags).await -> BackedUp { pages, handles, result }` |
//! | `copy_page(&mut page, handle, Option<&Interrupt>) -> Result<()>` | `copy_page(Box<Page>, handle, Option<Interrupt>).await -> (Result<()>, Box<Page>)` |
//! | `copy_pages(&handles, &mut [&mut Page], Option<&Interrupt>)` | `copy_pages(&handles, Vec<Box<Page>>, Option<Interrupt>).await -> (Result<(), BatchError>, Vec<Box<Page>>)` |
//! | `drop_handle(handle)`, `drop_handles(&handles)` | the same, `.await` |
//!
//! The interrupt is borrowed by a sync restore (`Option<&Interrupt>`) but
//! owned by an async one (`Option<Interrupt>`, a cheap clone): the future
//! may outlive the caller's frame, and dropping it sets the interrupt so the
//! restore stops at a page boundary. A batch keeps the sync rule: on error,
//! exactly the first `completed` items took effect (`BackedUp::handles`
//! holds the handles of the pages backed up).
//!
//! The backends that may block run each call on tokio's blocking pool
//! (`SyncAdapter`); awaited outside a tokio runtime such a call runs on the
//! awaiting thread instead. An async user's `Cargo.toml` needs tokio with
//! `rt-multi-thread` and `macros` for `#[tokio::main]` (the library itself
//! enables only `rt`).
//!
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
#[doc(inline)]
pub use pagebackup_compressed as compressed;

/// The plain-file backend (feature `file`).
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
#[doc(inline)]
pub use pagebackup_file as file;

/// The Redis/Valkey backend (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use pagebackup_redis as redis;

/// The tiered backend (feature `tiered`).
#[cfg(feature = "tiered")]
#[cfg_attr(docsrs, doc(cfg(feature = "tiered")))]
#[doc(inline)]
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
#[doc(inline)]
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

/// The parameters [`open`] takes for the backend `name`, with their
/// defaults: the very table its spec parser checks keys against. `None`
/// if this build does not contain `name`.
pub fn backend_params(name: &str) -> Option<&'static [raw::params::ParamDoc]> {
    registry::params_in(registry::BACKENDS, name)
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
