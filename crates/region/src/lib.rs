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
//! - **No tokio task serves faults.** A fault handed to a task leaves the
//!   faulting thread asleep in the kernel until the runtime polls the
//!   descriptor and the task answers: the handler thread's two cross-CPU
//!   wake-ups at best, where the signal mode serves it on the faulting
//!   thread. At worst it never ends: a task touching evicted memory blocks
//!   its worker thread inside the fault, so on a current-thread runtime
//!   (or a multi-thread one whose workers all fault at once) the task that
//!   would serve the fault can never run. Async programs use the signal
//!   mode, which serves a worker's fault on that worker, or the handler
//!   thread, which no task can starve.
//! - **Eviction runs ahead of the budget on its own thread**, in batches of
//!   up to 128 victims picked in address order by a clock hand over the
//!   page indices: dirty pages are write-protected (so what is copied is
//!   what stays) with one `UFFDIO_WRITEPROTECT` per span of victims (a span
//!   runs across pages between them that are not resident, clean, sampled,
//!   or dirty and kept for their credit, which then join the batch, at
//!   most as many as its victims: see the policy below), backed up with
//!   one batch call, and all released with one `process_madvise`. Each of those calls flushes the TLB of every CPU
//!   running the program, so the fewer, the better two faulting threads
//!   scale. The faulting thread waits only when the budget is full, and
//!   never compresses. It waits asleep after a short spin (a `futex` the
//!   evictor wakes when it frees pages): with more runnable threads than
//!   CPUs, a waiter that yielded instead kept the evictor it waited for
//!   off the CPU (two faulting threads on two CPUs, random workload over
//!   the 1 GiB heap: 116–121 k accesses/s yielding, 131–147 k asleep).
//!   Between its bursts of eviction, while the region is under its high
//!   watermark, the evictor does the backend's upkeep a bounded step at a time
//!   ([`BackupBackend::maintain_step`](pagebackup_core::BackupBackend::maintain_step), checking the watermark between
//!   steps): the compressed backend's arena, which operations keep within
//!   1/64 of its live bytes as garbage, goes down to 1/256 in that time.
//!   On the 1 GiB heap's hot workload its garbage went from 6.6 MiB to 2.0
//!   and the backend's ratio from 2.285 to 2.312 at the same accesses a
//!   second. A burst starts when the region passes its high watermark (a
//!   sixteenth of the budget under it) and stops a sixteenth of the budget
//!   lower, or a sixty-fourth after idle time (no upkeep left since the
//!   last burst): every eviction leaves the backend an old copy to drop,
//!   so a long burst leaves the arena its most garbage just when the
//!   evictor has time to take it back. With short bursts after idle time
//!   the hot workload's ratio stayed at 2.307–2.313 in 6 runs (2.285–2.312
//!   before, by where in the cycle a run ended); the random workload,
//!   whose evictor has no idle time, keeps the long bursts (fewer wake-ups).
//! - **What a fault still waits on is the backend.** Timing each step of
//!   the faults of the random workload (1 GiB Python heap, 256 MiB budget,
//!   lz4) found no waits for room (the evictor keeps ahead of one faulting
//!   thread) and the slow faults in the restore itself: a restore reads its
//!   page under a shard's shared lock, and the evictor's backups and drops
//!   (with the compaction a drop may do) hold that lock exclusively. The
//!   compressed backend keeps those holds to microseconds (its compaction
//!   moves a few objects per operation) and its restores and drops wait
//!   for each other spinning, not sleeping; a fault still waits for the
//!   hold it meets, and for the kernel's own work (`UFFDIO_COPY` beside
//!   the evictor's write-protect and release calls, and their TLB
//!   flushes). Every dirty page evicted is one backup and one
//!   drop of its stale copy, so the evictor's CPU per page (compression,
//!   the backend's bookkeeping, write-protect and release) also bounds how
//!   two faulting threads scale on two CPUs: their faults and the evictor
//!   share them.
//! - **The victim policy is a clock over page indices, with refaults as
//!   its access information**, since resident pages give none without
//!   kernel help. A page faulted back fewer evictions after its eviction
//!   than the budget holds pages would have stayed under an LRU: it is in
//!   use, and the hand passes it over for its next three turns (it does
//!   not count towards a batch's victims), unless it is dirty and lies
//!   inside a span the hand write-protects for its victims. A dirty page
//!   passed over loses its copy in the backend then (stale: the page is
//!   written back whole at its eviction) rather than at that eviction:
//!   on the 1 GiB heap's hot workload that took the backend from 259k
//!   pages to 233k and the region from 673–678 MiB to 629–633. Protected
//!   already, such a page is evicted with them: a write to it would now
//!   cost a write-protect fault, whose TLB flush waits on the evictor's
//!   CPU, and that costs the faulting thread more than the refault its
//!   eviction may bring. Keeping those pages instead, as samples of their
//!   use (a write renewing their credit), had the 1 GiB heap's random
//!   workload take 48 000 write-protect faults a run; evicting them took
//!   it from 83–97 k to 111–117 k accesses/s (fault p99 37–46 µs to
//!   32–35) and the hot workload from 546–556 k to 675–695 k, with fewer
//!   restores. [`RegionConfig::access_sampling`] samples every dirty page
//!   so, a turn before its eviction: off by default, as its faults cost
//!   what it saves in restores. Reads of resident pages are not seen.
//! - **What the other sources of access information need, and why they are
//!   not used.** Idle page tracking (`/sys/kernel/mm/page_idle`) needs
//!   `CONFIG_IDLE_PAGE_TRACKING`, `CAP_SYS_ADMIN` and PFNs from
//!   `/proc/self/pagemap`. `PAGEMAP_SCAN` (6.7) reports written pages, not
//!   accessed ones. DAMON's virtual-address monitoring (`CONFIG_DAMON_VADDR`,
//!   root, `/sys/kernel/mm/damon/admin`) gives access frequencies per
//!   region of at least `len / max_nr_regions` (1 MiB for 1 GiB at its
//!   default of 1000 regions) aggregated over its interval (100 ms by
//!   default), read back by writing `update_schemes_tried_regions`; its
//!   sysfs interface is one per machine, and changing `nr_kdamonds` is
//!   refused (`EBUSY`) while any kdamond runs, so a region cannot add its
//!   own monitor beside one that the system already runs (as on machines
//!   that start a physical-address kdamond at boot). A page-granular, free
//!   signal from the faults the region takes anyway serves the policy
//!   better.
//! - **Clean tracking** by userfaultfd write-protect: a page restored by a
//!   read is mapped write-protected; evicting it while clean is a release
//!   only, its copy kept. While restored pages are mostly written soon after
//!   (read-then-write access), reads restore them writable instead, with one
//!   clean probe in 64 restores to notice when that changes, one in 1024
//!   while the writes to clean pages keep the score at its bound. A probe maps
//!   one page clean (the faulting one when it is read, not every page read
//!   ahead with it), since each probed page that is written costs a
//!   write-protect fault: probing every page of one restore in 16 had made
//!   the sequential workload's faults 1.8x those a 1-page probe in 64 takes.

pub mod bench;
mod config;
mod error;
mod fault;
mod region;
mod room;
mod stats;
mod sys;

pub use config::{FaultMode, MAX_READ_AHEAD, RegionConfig};
pub use error::RegionError;
pub use region::{OffloadRegion, PinGuard, PinnedMut, RegionBackend};
pub use stats::RegionStats;
