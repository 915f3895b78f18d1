//! [`Io`]: writes and reads of runs of contiguous pages, through io_uring or
//! through `pwritev`/`preadv`. Every call waits for all its I/O: when it
//! returns, the kernel holds no reference to the caller's pages.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::BorrowedFd;

use pagebackup_core::Page;
use pagebackup_core::raw::RunError;

use crate::uring::Ring;

/// Most iovecs one vectored call takes (`IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// Pages to write at a file offset.
pub(crate) type WriteRun<'a> = (u64, &'a [&'a Page]);
/// Pages to read from a file offset.
pub(crate) type ReadRun<'a, 'p> = (u64, &'a mut [&'p mut Page]);

/// The I/O path.
#[derive(Debug)]
pub(crate) enum Io {
    /// An io_uring ring, with the most pages one operation carries.
    Uring(Box<Ring>, usize),
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

    /// Writes every run whole.
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        match self {
            Io::Uring(ring, op_pages) => ring.write(fd, runs, *op_pages),
            Io::Sync => runs.iter().enumerate().try_for_each(|(done, &(offset, pages))| {
                write_sync(fd, offset, pages, 0).map_err(|error| RunError { done, error })
            }),
        }
    }

    /// Fills every run's pages.
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        match self {
            Io::Uring(ring, op_pages) => ring.read(fd, runs, *op_pages),
            Io::Sync => runs.iter_mut().enumerate().try_for_each(|(done, (offset, pages))| {
                read_sync(fd, *offset, pages, 0).map_err(|error| RunError { done, error })
            }),
        }
    }
}

/// Writes `pages` at `offset` with `pwritev`, skipping the first `done`
/// bytes (already written), retrying short writes.
pub(crate) fn write_sync(fd: BorrowedFd<'_>, offset: u64, pages: &[&Page], mut done: usize) -> io::Result<()> {
    let total = pages.len() * pagebackup_core::PAGE_SIZE;
    while done < total {
        let mut iov: Vec<IoSlice<'_>> = pages.iter().map(|p| IoSlice::new(p.as_bytes())).collect();
        let mut slices = &mut iov[..];
        IoSlice::advance_slices(&mut slices, done);
        let n = rustix::io::pwritev(fd, &slices[..slices.len().min(IOV_MAX)], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        done += n;
    }
    Ok(())
}

/// Reads `pages` from `offset` with `preadv`, skipping the first `done`
/// bytes (already read), retrying short reads.
pub(crate) fn read_sync(fd: BorrowedFd<'_>, offset: u64, pages: &mut [&mut Page], mut done: usize) -> io::Result<()> {
    let total = pages.len() * pagebackup_core::PAGE_SIZE;
    while done < total {
        let mut iov: Vec<IoSliceMut<'_>> = pages.iter_mut().map(|p| IoSliceMut::new(p.as_bytes_mut())).collect();
        let mut slices = &mut iov[..];
        IoSliceMut::advance_slices(&mut slices, done);
        let end = slices.len().min(IOV_MAX);
        let n = rustix::io::preadv(fd, &mut slices[..end], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ends before a stored page",
            ));
        }
        done += n;
    }
    Ok(())
}
