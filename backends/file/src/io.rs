//! [`Io`]: writes and reads of runs of contiguous pages, through io_uring or
//! through `pwritev`/`preadv`. Every call waits for all its I/O: when it
//! returns, the kernel holds no reference to the caller's pages.

use std::os::fd::BorrowedFd;

use pagebackup_core::raw::RunError;

use crate::runs::{ReadRun, WriteRun, read_sync, write_sync};
use crate::uring::Ring;

/// The I/O path.
#[derive(Debug)]
pub(crate) enum Io {
    /// An io_uring ring, with the most pages one operation carries and
    /// whether a call of one run goes through the syscall instead (nothing
    /// to overlap, and measured about twice as fast with `O_DIRECT` on
    /// ext4 over virtio: 0.96-1.16x `dd oflag=direct bs=256K` against
    /// 0.45-0.51x through the ring, whose allocating writes are handed to
    /// a worker thread). The store's backups use the ring for one run
    /// as well, to take their checksums during the write
    /// (`FileDevice::write_overlapped`).
    Uring(Box<Ring>, usize, bool),
    /// Positioned vectored syscalls.
    Sync,
}

impl Io {
    /// The path's name, for stats and `Debug`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Io::Uring(..) => "io_uring",
            Io::Sync => "pwritev",
        }
    }

    /// The ring and the most pages one of its operations carries, for a
    /// call that goes through it: any call on a ring, but a call that is
    /// `single` (one run, one operation's worth) on a ring that sends
    /// those through the syscall.
    pub(crate) fn ring(&self, single: bool) -> Option<(&Ring, usize)> {
        match self {
            Io::Uring(ring, op_pages, one_sync) if !(*one_sync && single) => Some((ring, *op_pages)),
            _ => None,
        }
    }

    /// Writes every run whole.
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        match self.ring(runs.len() == 1) {
            Some((ring, op_pages)) => ring.write(fd, runs, op_pages, &mut || {}),
            None => runs.iter().enumerate().try_for_each(|(done, &(offset, pages))| {
                write_sync(fd, offset, pages, 0).map_err(|error| RunError { done, error })
            }),
        }
    }

    /// Fills every run's pages.
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        match self.ring(runs.len() == 1) {
            Some((ring, op_pages)) => ring.read(fd, runs, op_pages),
            None => runs.iter_mut().enumerate().try_for_each(|(done, (offset, pages))| {
                read_sync(fd, *offset, pages, 0).map_err(|error| RunError { done, error })
            }),
        }
    }
}
