//! An offload region: ordinary memory that pages itself to any pagebackup
//! backend under a budget.
//!
//! [`OffloadRegion`] maps anonymous memory and registers it with
//! `userfaultfd`. The program uses it as normal memory (`&[u8]`,
//! `&mut [u8]`, atomic words shared between threads, a raw pointer); pages
//! above the budget are backed up to the backend in batches by a background
//! thread and released, and faulted back on access, on the faulting thread
//! by default ([`FaultMode::Signal`]) or by a handler thread
//! ([`FaultMode::HandlerThread`]).
//!
//! ```no_run
//! use pagebackup_core::MemoryBackend;
//! use pagebackup_region::OffloadRegion;
//!
//! let mut region = OffloadRegion::new(64 << 20, 8 << 20, MemoryBackend::new())?;
//! let bytes = region.as_mut_slice();
//! for (i, b) in bytes.iter_mut().enumerate() {
//!     *b = i as u8; // 64 MiB written through an 8 MiB budget
//! }
//! assert!(bytes.iter().enumerate().all(|(i, &b)| b == i as u8));
//! # Ok::<(), pagebackup_region::RegionError>(())
//! ```
//!
//! What the kernel must offer: userfaultfd (with `vm.unprivileged_userfaultfd=1`,
//! `CAP_SYS_PTRACE` or access to `/dev/userfaultfd`), write-protect on
//! anonymous memory (Linux 5.7), `UFFD_FEATURE_SIGBUS` for the signal mode
//! (4.14); `UFFDIO_POISON` (6.6) to poison pages that cannot be restored,
//! and `process_madvise` (5.10) to release a batch with one call, each used
//! where present. A missing requirement gives [`RegionError::Unsupported`].
//! Only x86-64 tells the signal handler whether a fault was a write; on other
//! architectures a write to a page restored clean takes a second fault.
//!
//! # Choices, and what they cost
//!
//! - **Signal mode is the default** because a fault served on the faulting
//!   thread costs a few microseconds where one handed to a handler thread
//!   that sleeps costs two cross-CPU wake-ups (the region anchor measures
//!   4.6–4.9 µs against 49–55 µs on a 2-vCPU machine). The handler thread
//!   spins a while after each fault to narrow that gap.
//! - **Eviction runs ahead of the budget on its own thread**, in batches of
//!   up to 128 pages: dirty pages are write-protected (so what is copied is
//!   what stays), backed up with one batch call per run of pages, and all
//!   released with one `process_madvise`. The faulting thread waits only
//!   when the budget is full, and never compresses.
//! - **The victim policy is oldest-restored first (FIFO) with a second
//!   chance for refaulted pages.** Resident pages give no access
//!   information without kernel help (no accessed bits through
//!   userfaultfd; `PAGEMAP_SCAN` reports written, not accessed; idle page
//!   tracking needs `CONFIG_IDLE_PAGE_TRACKING` and PFNs), but a page
//!   faulted back fewer evictions after its eviction than the budget holds
//!   pages would have stayed under an LRU: it is in use, and the evictor
//!   passes it over for the next three turns of the FIFO. A hot set that
//!   fits the budget thus stays resident after a short warm-up, while a
//!   page that stops being used loses its turns and goes.
//! - **Clean tracking** by userfaultfd write-protect: a page restored by a
//!   read is mapped write-protected; evicting it while clean is a release
//!   only, its copy kept. While restored pages are mostly written soon after
//!   (read-then-write access), reads restore them writable instead, with one
//!   clean probe in sixteen to notice when that changes.

pub mod bench;
mod config;
mod error;
mod region;
mod stats;
mod sys;

pub use config::{FaultMode, MAX_READ_AHEAD, RegionConfig};
pub use error::RegionError;
pub use region::{OffloadRegion, PinGuard, PinnedMut, RegionBackend};
pub use stats::RegionStats;
