//! pagebackup: back up memory pages out of the way and get them back.
//!
//! A caller that must give memory back under pressure — a GPU or accelerator
//! driver's page pool, a VMM holding guest memory, a buffer pool — hands a
//! 4 KiB [`Page`] to a [`BackupBackend`] and keeps the opaque [`Handle`] it
//! returns; later it copies the page back by handle, or drops it. One handle
//! scheme fronts every backend, so switching stores changes only the
//! constructor, or the spec string given to [`open`].
//!
//! This crate re-exports `pagebackup-core` and, behind cargo features, the
//! backend crates. [`open`] builds any compiled-in backend from a spec such as
//! `memory` or `memory:limit=64MiB`; [`available_backends`] lists them.
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

mod error;
mod registry;
mod spec;

pub use error::OpenError;
pub use pagebackup_core::*;
pub use spec::{Spec, parse_size};

/// The compressed-RAM backend (feature `compressed`).
#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
pub use pagebackup_compressed as compressed;

/// The plain-file backend (feature `file`).
#[cfg(feature = "file")]
pub use pagebackup_file as file;

/// The tiered backend (feature `tiered`).
#[cfg(feature = "tiered")]
pub use pagebackup_tiered as tiered;

/// The shmem backend (feature `shmem`).
#[cfg(feature = "shmem")]
pub use pagebackup_shmem as shmem;

/// Builds a backend from a spec: `NAME` or `NAME:key=value,key=value`.
///
/// | backend  | feature | parameters |
/// |----------|---------|------------|
/// | `memory` | always  | `limit=SIZE`: most bytes of pages held (default: no limit) |
/// | `shmem`  | `shmem` | `capacity=SIZE`: most bytes held (default: RAM + swap), `checksum=on\|off` (default off), `reuse=SIZE`: dropped memory kept for reuse (default 16MiB), `shards=N` (default: CPUs, at most 8) |
/// | `file`   | `file`  | `dir=PATH` (default: the temp dir), `path=PATH` (a named file instead), `max_size=SIZE`, `io=auto\|uring\|sync`, `direct=on\|off` (`O_DIRECT`, default off), `checksum=on\|off` (default on), `shards=N` |
/// | `tiered` | `tiered` | `tiers=[SPEC \| SPEC ...]`: the tiers, first the fastest, each any spec (tiered too; at least two; default `[compressed \| file]`, or what this build has), `budget=SIZE` or `budget=[SIZE \| SIZE ...]`: budgets of the upper tiers (default: what each can take when opened), `high=90%`, `low=70%`: the watermarks, `huge=SIZE` and `huge_mode=first\|at_once` (default first), `promote=on\|off` (default off), `rate=SIZE`: most bytes moved down per second, `auto=on\|off`: the policy thread (default on) |
/// | `compressed` | `compressed` (`compressed-lz4`, `compressed-zstd`) | `algo=lz4\|zstd` (default lz4), `level=N` (zstd, default 1), `limit=SIZE` (memory, metadata included), `dict=PATH` (zstd dictionary file), `checksum=on\|off` (default off) |
///
/// Sizes are whole bytes with an optional suffix `B`, `KiB`, `MiB`, `GiB`
/// or `TiB`. Values end at the next comma, so a path given in a spec cannot
/// contain one (build such a backend with its crate's config instead). An unknown name, an unknown key, a bad value or a backend this
/// build lacks each gives an [`OpenError`] that says what is valid.
pub fn open(spec: &str) -> Result<Box<dyn BackupBackend>, OpenError> {
    registry::open_in(registry::BACKENDS, spec)
}

/// Builds a tiered backend from a `tiered:` spec (see [`open`]), as its own
/// type, for its per-tier figures and policy calls.
#[cfg(feature = "tiered")]
pub fn open_tiered(spec: &str) -> Result<tiered::Tiered, OpenError> {
    let spec = Spec::parse(spec)?;
    let entry = registry::BACKENDS
        .iter()
        .find(|e| e.name == "tiered")
        .expect("the tiered entry");
    if spec.name != "tiered" {
        return Err(OpenError::UnknownBackend {
            name: spec.name.to_string(),
            available: vec!["tiered"],
        });
    }
    registry::open_tiered(&registry::Params::new(entry, spec)?)
}

/// The names of the backends this build contains, for [`open`].
pub fn available_backends() -> Vec<&'static str> {
    registry::available_in(registry::BACKENDS)
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
