//! [`Rings`]: a few io_uring instances with the backend's file registered,
//! one per group of threads, each driven synchronously (submit, then wait
//! for every completion before returning).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Mutex, PoisonError};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use pagebackup_core::{PAGE_SIZE, thread_index};
use rustix::io::Errno;

use crate::io::{IOV_MAX, ReadRun, WriteRun, read_sync, write_sync};

/// Rings per backend: threads share them by `thread_index() % RINGS`.
const RINGS: usize = 4;
/// Submission queue entries per ring: operations submitted at once.
const ENTRIES: u32 = 64;

/// io_uring instances for one file.
pub(crate) struct Rings {
    rings: Vec<Mutex<IoUring>>,
    /// Whether the file is registered in every ring (index 0).
    registered: bool,
}

impl Rings {
    /// Rings for `fd`, or why io_uring cannot be used: setup refused
    /// (`ENOSYS`, `EPERM` from seccomp or `io_uring_disabled`), or an opcode
    /// the backend needs is missing.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Result<Rings, String> {
        let mut rings = Vec::with_capacity(RINGS);
        let mut registered = true;
        for _ in 0..RINGS {
            let ring = IoUring::new(ENTRIES).map_err(|e| format!("io_uring setup failed: {e}"))?;
            let mut probe = Probe::new();
            ring.submitter()
                .register_probe(&mut probe)
                .map_err(|e| format!("io_uring probe failed: {e}"))?;
            for (code, name) in [(opcode::Writev::CODE, "WRITEV"), (opcode::Readv::CODE, "READV")] {
                if !probe.is_supported(code) {
                    return Err(format!("io_uring lacks IORING_OP_{name}"));
                }
            }
            registered &= ring.submitter().register_files(&[fd.as_raw_fd()]).is_ok();
            rings.push(Mutex::new(ring));
        }
        Ok(Rings { rings, registered })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, IoUring> {
        // A ring is only used between a submission and its completions, all
        // inside one call: a panic in between cannot leave work behind.
        self.rings[thread_index() % self.rings.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn target(&self, fd: BorrowedFd<'_>) -> Target {
        if self.registered {
            Target::Fixed
        } else {
            Target::Fd(fd.as_raw_fd())
        }
    }

    /// Writes every run, one `WRITEV` per run (split at `IOV_MAX` pages);
    /// a short write is finished with `pwritev`.
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, runs: &[WriteRun<'_>]) -> io::Result<()> {
        let ops: Vec<(u64, &[&pagebackup_core::Page])> = split(runs.iter().map(|&(offset, pages)| (offset, pages)));
        let iovs: Vec<Vec<IoSlice<'_>>> = ops
            .iter()
            .map(|(_, pages)| pages.iter().map(|p| IoSlice::new(p.as_bytes())).collect())
            .collect();
        let target = self.target(fd);
        let entries = iovs.iter().zip(&ops).map(|(iov, &(offset, _))| {
            let op = match target {
                Target::Fixed => opcode::Writev::new(types::Fixed(0), iov.as_ptr().cast(), iov.len() as u32),
                Target::Fd(raw) => opcode::Writev::new(types::Fd(raw), iov.as_ptr().cast(), iov.len() as u32),
            };
            op.offset(offset).build()
        });
        let results = self.run(entries.collect())?;
        for ((offset, pages), done) in ops.into_iter().zip(results) {
            finish(done, pages.len(), |done| write_sync(fd, offset, pages, done))?;
        }
        Ok(())
    }

    /// Reads every run, one `READV` per run (split at `IOV_MAX` pages); a
    /// short read is finished with `preadv`.
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, runs: &mut [ReadRun<'_>]) -> io::Result<()> {
        let mut ops: Vec<(u64, &mut [&mut pagebackup_core::Page])> = Vec::new();
        for (offset, pages) in runs.iter_mut() {
            for (k, chunk) in pages.chunks_mut(IOV_MAX).enumerate() {
                ops.push((*offset + (k * IOV_MAX * PAGE_SIZE) as u64, chunk));
            }
        }
        let mut iovs: Vec<Vec<IoSliceMut<'_>>> = Vec::with_capacity(ops.len());
        let mut offsets = Vec::with_capacity(ops.len());
        let mut counts = Vec::with_capacity(ops.len());
        for (offset, pages) in ops.iter_mut() {
            offsets.push(*offset);
            counts.push(pages.len());
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
        let results = self.run(entries.collect())?;
        drop(iovs);
        for (((offset, pages), done), count) in ops.into_iter().zip(results).zip(counts) {
            finish(done, count, |done| read_sync(fd, offset, pages, done))?;
        }
        Ok(())
    }

    /// Submits `entries` (whose buffers the caller keeps alive) in groups of
    /// at most `ENTRIES` and waits for each group's completions; returns each
    /// entry's result.
    fn run(&self, entries: Vec<squeue::Entry>) -> io::Result<Vec<i32>> {
        let mut results = vec![0; entries.len()];
        let mut ring = self.ring();
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
            wait_all(&mut ring, chunk.len())?;
            for cqe in ring.completion() {
                results[cqe.user_data() as usize] = cqe.result();
            }
        }
        Ok(results)
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // A ring is torn down asynchronously by the kernel; unregistering the
        // file now releases the ring's reference to it before the backend
        // closes it, so that its file system can be unmounted at once.
        for ring in &self.rings {
            let ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
            if self.registered {
                let _ = ring.submitter().unregister_files();
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Fixed,
    Fd(i32),
}

/// Submits what is queued and waits for `count` completions. io_uring_enter
/// failing with operations in flight would leave the kernel writing into
/// memory the caller is about to free: transient errors are retried, and
/// anything else aborts rather than return.
fn wait_all(ring: &mut IoUring, count: usize) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(count) {
            Ok(_) if ring.completion().len() >= count => return Ok(()),
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

/// Splits runs longer than `IOV_MAX` pages.
fn split<'a>(runs: impl Iterator<Item = WriteRun<'a>>) -> Vec<WriteRun<'a>> {
    let mut ops = Vec::new();
    for (offset, pages) in runs {
        for (k, chunk) in pages.chunks(IOV_MAX).enumerate() {
            ops.push((offset + (k * IOV_MAX * PAGE_SIZE) as u64, chunk));
        }
    }
    ops
}
