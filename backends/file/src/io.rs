//! [`Io`]: writes and reads of runs of contiguous pages, through io_uring or
//! through `pwritev`/`preadv`. Every call waits for all its I/O: when it
//! returns, the kernel holds no reference to the caller's pages.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::BorrowedFd;

use pagebackup_core::Page;

use crate::uring::Rings;

/// Most iovecs one vectored call takes (`IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// Pages to write at a file offset.
pub(crate) type WriteRun<'a> = (u64, &'a [&'a Page]);
/// Pages to read from a file offset.
pub(crate) type ReadRun<'a> = (u64, Vec<&'a mut Page>);

/// The I/O path.
pub(crate) enum Io {
    /// io_uring rings.
    Uring(Rings),
    /// Positioned vectored syscalls.
    Sync,
}

impl Io {
    /// The path's name, for stats and `Debug`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Io::Uring(_) => "io_uring",
            Io::Sync => "pwritev",
        }
    }

    /// Writes every run whole.
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, runs: &[WriteRun<'_>]) -> io::Result<()> {
        match self {
            Io::Uring(rings) => rings.write(fd, runs),
            Io::Sync => runs
                .iter()
                .try_for_each(|&(offset, pages)| write_sync(fd, offset, pages, 0)),
        }
    }

    /// Fills every run's pages.
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, runs: &mut [ReadRun<'_>]) -> io::Result<()> {
        match self {
            Io::Uring(rings) => rings.read(fd, runs),
            Io::Sync => runs
                .iter_mut()
                .try_for_each(|(offset, pages)| read_sync(fd, *offset, pages, 0)),
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
