//! [`Ring`]: one io_uring instance with the shard's file registered, driven
//! synchronously (submit, then wait for every completion before returning).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Mutex, PoisonError};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use pagebackup_core::raw::{Arrived, RunError};
use pagebackup_core::{PAGE_SIZE, Page};
use rustix::io::Errno;

use crate::runs::{IOV_MAX, ReadRun, WriteRun, read_sync, write_sync};

/// Submission queue entries: operations submitted at once.
const ENTRIES: u32 = 64;

/// Why io_uring cannot be used: a setup step the kernel refused (with its
/// error as the source: `ENOSYS`, `EPERM` from seccomp or
/// `io_uring_disabled`), or an opcode the backend needs that it lacks.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// A setup step failed.
    Refused {
        /// The step ("setup", "probe", "file registration").
        step: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel's io_uring lacks `IORING_OP_{0}`.
    MissingOpcode(&'static str),
}

impl Unavailable {
    /// `step` failed with `source`.
    pub(crate) fn refused(step: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Unavailable::Refused { step, source }
    }

    /// The whole reason on one line, the kernel's error included: what
    /// [`FileBackend::fallback_reason`](crate::FileBackend::fallback_reason) says.
    pub(crate) fn reason(&self) -> String {
        match self {
            Unavailable::Refused { source, .. } => format!("{self}: {source}"),
            Unavailable::MissingOpcode(_) => self.to_string(),
        }
    }

    /// The error that refuses an `io=uring` (or native async) backend on
    /// this kernel, with this as its source.
    pub(crate) fn into_error(self) -> pagebackup_core::BackupError {
        pagebackup_core::BackupError::Caused {
            origin: pagebackup_core::Origin::new(crate::NAME, pagebackup_core::Operation::Open),
            kind: pagebackup_core::ErrorKind::Unsupported,
            detail: "io_uring cannot be used on this system; use io=sync or io=auto".into(),
            source: Box::new(self),
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Refused { step, .. } => write!(f, "io_uring {step} failed"),
            Unavailable::MissingOpcode(name) => write!(f, "io_uring lacks IORING_OP_{name}"),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unavailable::Refused { source, .. } => Some(source),
            Unavailable::MissingOpcode(_) => None,
        }
    }
}

/// An io_uring instance for one file. A shard's ring is used by the threads
/// that back up into the shard (one, usually) and by restores of its pages.
pub(crate) struct Ring {
    ring: Mutex<IoUring>,
    /// Whether the file is registered (index 0).
    registered: bool,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring for `fd`, or why io_uring cannot be used: setup refused
    /// (`ENOSYS`, `EPERM` from seccomp or `io_uring_disabled`), or an opcode
    /// the backend needs is missing.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Result<Ring, Unavailable> {
        let ring = IoUring::new(ENTRIES).map_err(Unavailable::refused("setup"))?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(Unavailable::refused("probe"))?;
        for (code, name) in [(opcode::Writev::CODE, "WRITEV"), (opcode::Readv::CODE, "READV")] {
            if !probe.is_supported(code) {
                return Err(Unavailable::MissingOpcode(name));
            }
        }
        let registered = ring.submitter().register_files(&[fd.as_raw_fd()]).is_ok();
        Ok(Ring {
            ring: Mutex::new(ring),
            registered,
        })
    }

    fn target(&self, fd: BorrowedFd<'_>) -> Target {
        if self.registered {
            Target::Fixed
        } else {
            Target::Fd(fd.as_raw_fd())
        }
    }

    /// Writes every run, one `WRITEV` per `op_pages` pages of a run, all in
    /// flight at once (in groups of `ENTRIES`), calling `meanwhile` once the
    /// first group is submitted; a short write is finished with `pwritev`.
    pub(crate) fn write(
        &self,
        fd: BorrowedFd<'_>,
        runs: &[WriteRun<'_>],
        op_pages: usize,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), RunError> {
        let op_pages = op_pages.min(IOV_MAX);
        // (run, offset, pages) per operation.
        let ops: Vec<(usize, u64, &[&Page])> = runs
            .iter()
            .enumerate()
            .flat_map(|(run, &(offset, pages))| {
                pages
                    .chunks(op_pages)
                    .enumerate()
                    .map(move |(k, chunk)| (run, offset + (k * op_pages * PAGE_SIZE) as u64, chunk))
            })
            .collect();
        let iovs: Vec<Vec<IoSlice<'_>>> = ops
            .iter()
            .map(|(_, _, pages)| pages.iter().map(|p| IoSlice::new(p.as_bytes())).collect())
            .collect();
        let target = self.target(fd);
        let entries = iovs.iter().zip(&ops).map(|(iov, &(_, offset, _))| {
            let op = match target {
                Target::Fixed => opcode::Writev::new(types::Fixed(0), iov.as_ptr().cast(), iov.len() as u32),
                Target::Fd(raw) => opcode::Writev::new(types::Fd(raw), iov.as_ptr().cast(), iov.len() as u32),
            };
            op.offset(offset).build()
        });
        let results = self.run(entries.collect(), meanwhile);
        let outcomes = ops.into_iter().zip(results).map(|((run, offset, pages), done)| {
            (
                run,
                finish(done, pages.len(), |done| write_sync(fd, offset, pages, done)),
            )
        });
        first_failed_run(outcomes)
    }

    /// Reads every run, one `READV` per `op_pages` pages of a run; a short
    /// read is finished with `preadv`.
    pub(crate) fn read(
        &self,
        fd: BorrowedFd<'_>,
        runs: &mut [ReadRun<'_, '_>],
        op_pages: usize,
    ) -> Result<(), RunError> {
        let op_pages = op_pages.min(IOV_MAX);
        let mut ops: Vec<(usize, u64, &mut [&mut Page])> = Vec::new();
        for (run, (offset, pages)) in runs.iter_mut().enumerate() {
            for (k, chunk) in pages.chunks_mut(op_pages).enumerate() {
                ops.push((run, *offset + (k * op_pages * PAGE_SIZE) as u64, chunk));
            }
        }
        let mut iovs: Vec<Vec<IoSliceMut<'_>>> = Vec::with_capacity(ops.len());
        let mut offsets = Vec::with_capacity(ops.len());
        for (_, offset, pages) in ops.iter_mut() {
            offsets.push(*offset);
            iovs.push(pages.iter_mut().map(|p| IoSliceMut::new(p.as_bytes_mut())).collect());
        }
        let target = self.target(fd);
        let entries = iovs.iter_mut().zip(&offsets).map(|(iov, &offset)| {
            let op = match target {
                Target::Fixed => opcode::Readv::new(types::Fixed(0), iov.as_mut_ptr().cast(), iov.len() as u32),
                Target::Fd(raw) => opcode::Readv::new(types::Fd(raw), iov.as_mut_ptr().cast(), iov.len() as u32),
            };
            op.offset(offset).build()
        });
        let results = self.run(entries.collect(), &mut || {});
        drop(iovs);
        let outcomes = ops.into_iter().zip(results).map(|((run, offset, pages), done)| {
            let count = pages.len();
            (run, finish(done, count, |done| read_sync(fd, offset, pages, done)))
        });
        first_failed_run(outcomes)
    }

    /// Reads every run, one `READV` per `part_pages` pages of a run, and
    /// hands each part to `arrived` as soon as it is in (a short read
    /// finished with `preadv` first), while the later parts are still in
    /// flight; returns the first run with a failed part.
    pub(crate) fn read_arriving(
        &self,
        fd: BorrowedFd<'_>,
        runs: &mut [ReadRun<'_, '_>],
        part_pages: usize,
        arrived: &mut Arrived<'_>,
    ) -> Result<(), RunError> {
        let part_pages = part_pages.clamp(1, IOV_MAX);
        // (run, first page within the run, offset, pages) per operation.
        let mut ops: Vec<(usize, usize, u64, &mut [&mut Page])> = Vec::new();
        for (run, (offset, pages)) in runs.iter_mut().enumerate() {
            for (k, part) in pages.chunks_mut(part_pages).enumerate() {
                let first = k * part_pages;
                ops.push((run, first, *offset + (first * PAGE_SIZE) as u64, part));
            }
        }
        // Plain iovecs, holding no borrow of the pages, so that a part that
        // is in can be handed over while the kernel fills the others.
        let iovs: Vec<Vec<libc::iovec>> = ops
            .iter_mut()
            .map(|(.., pages)| {
                pages
                    .iter_mut()
                    .map(|p| libc::iovec {
                        iov_base: p.as_bytes_mut().as_mut_ptr().cast(),
                        iov_len: PAGE_SIZE,
                    })
                    .collect()
            })
            .collect();
        let target = self.target(fd);
        let mut first: Option<RunError> = None;
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for (group, chunk) in iovs.chunks(ENTRIES as usize).enumerate() {
            let base = group * ENTRIES as usize;
            for (k, iov) in chunk.iter().enumerate() {
                let op = match target {
                    Target::Fixed => opcode::Readv::new(types::Fixed(0), iov.as_ptr(), iov.len() as u32),
                    Target::Fd(raw) => opcode::Readv::new(types::Fd(raw), iov.as_ptr(), iov.len() as u32),
                };
                let entry = op.offset(ops[base + k].2).build().user_data((base + k) as u64);
                // This function waits below for every entry it submitted
                // before returning; the queue has room (at most ENTRIES per
                // group, all reaped).
                // SAFETY: the iovecs point into the caller's pages, which outlive this call, and are neither read nor written here until their operation has completed.
                unsafe { ring.submission().push(&entry) }.expect("the submission queue has room for a group");
            }
            // `arrived` is the caller's code, run while the kernel still
            // fills the group's other pages: should it panic, unwinding
            // would free pages under the kernel's writes and leave their
            // completions in the ring, so the process aborts instead.
            let _in_flight = AbortOnUnwind;
            let mut left = chunk.len();
            while left > 0 {
                wait_all(&mut ring, 1);
                let completed: Vec<(usize, i32)> = ring
                    .completion()
                    .map(|cqe| (cqe.user_data() as usize, cqe.result()))
                    .collect();
                left -= completed.len();
                for (op, result) in completed {
                    let (run, at, offset, pages) = &mut ops[op];
                    let count = pages.len();
                    match finish(result, count, |done| read_sync(fd, *offset, pages, done)) {
                        Ok(()) => arrived(*run, *at, pages),
                        Err(error) if first.as_ref().is_none_or(|f| *run < f.done) => {
                            first = Some(RunError { done: *run, error });
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Submits `entries` (whose buffers the caller keeps alive) in groups of
    /// at most `ENTRIES` and waits for each group's completions, calling
    /// `meanwhile` once the first group is submitted; returns each entry's
    /// result.
    fn run(&self, entries: Vec<squeue::Entry>, meanwhile: &mut dyn FnMut()) -> Vec<i32> {
        let mut results = vec![0; entries.len()];
        let mut meanwhile = Some(meanwhile);
        // A ring is only used between a submission and its completions, all
        // inside this call: a panic in between (`meanwhile`'s is caught and
        // resumed once the group is in) cannot leave work behind.
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for (group, chunk) in entries.chunks(ENTRIES as usize).enumerate() {
            let base = group * ENTRIES as usize;
            for (k, entry) in chunk.iter().enumerate() {
                let entry = entry.clone().user_data((base + k) as u64);
                // This function waits below for every entry it submitted
                // before returning; the queue has room (at most ENTRIES per
                // group, all reaped).
                // SAFETY: the entry's iovecs and their pages are the caller's and outlive this call.
                unsafe { ring.submission().push(&entry) }.expect("the submission queue has room for a group");
            }
            let panicked = meanwhile.take().and_then(|work| {
                wait_all(&mut ring, 0);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).err()
            });
            wait_all(&mut ring, chunk.len());
            for cqe in ring.completion() {
                results[cqe.user_data() as usize] = cqe.result();
            }
            // Resumed with the ring drained: its next user reaps only its own.
            if let Some(panic) = panicked {
                std::panic::resume_unwind(panic);
            }
        }
        results
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // A ring is torn down asynchronously by the kernel; unregistering the
        // file now releases the ring's reference to it before the backend
        // closes it, so that its file system can be unmounted at once.
        if self.registered {
            let ring = self.ring.get_mut().unwrap_or_else(PoisonError::into_inner);
            let _ = ring.submitter().unregister_files();
        }
    }
}

/// Aborts the process when dropped during a panic: held while operations
/// are in flight into memory that unwinding would free.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pagebackup-file: a panic while reads were in flight into its pages; aborting");
            std::process::abort();
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Fixed,
    Fd(i32),
}

/// The runs' outcome from their operations' outcomes (in run order): the
/// first run with a failed operation, and how many runs before it completed.
fn first_failed_run(outcomes: impl Iterator<Item = (usize, io::Result<()>)>) -> Result<(), RunError> {
    let mut first: Option<RunError> = None;
    for (run, outcome) in outcomes {
        if let Err(error) = outcome
            && first.as_ref().is_none_or(|f| run < f.done)
        {
            first = Some(RunError { done: run, error });
        }
    }
    first.map_or(Ok(()), Err)
}

/// Submits what is queued and waits until `count` completions are in (0:
/// submits only). io_uring_enter failing with operations in flight would
/// leave the kernel writing into memory the caller is about to free:
/// transient errors are retried, and anything else aborts rather than return.
fn wait_all(ring: &mut IoUring, count: usize) {
    loop {
        match ring.submit_and_wait(count) {
            Ok(_) if ring.completion().len() >= count => return,
            Ok(_) => continue,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                eprintln!("pagebackup-file: io_uring_enter failed with I/O in flight: {e}; aborting");
                std::process::abort();
            }
        }
    }
}

/// Whether io_uring_enter may succeed if called again.
fn transient(e: &io::Error) -> bool {
    [Errno::INTR, Errno::AGAIN, Errno::BUSY]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Checks one operation's result: an error is returned, a short transfer
/// is finished by `rest`, given the bytes already done.
fn finish(result: i32, pages: usize, rest: impl FnOnce(usize) -> io::Result<()>) -> io::Result<()> {
    if result < 0 {
        return Err(io::Error::from_raw_os_error(-result));
    }
    let done = result as usize;
    if done < pages * PAGE_SIZE { rest(done) } else { Ok(()) }
}
