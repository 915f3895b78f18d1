//! Runs of contiguous pages at a file offset, and the positioned vectored
//! syscalls that write and read one whole: the ground both I/O paths stand
//! on (io_uring falls back to them to finish a short transfer, and the sync
//! path is made of them).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::BorrowedFd;

use pagebackup_core::Page;

/// Most iovecs one vectored call takes (`IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// Pages to write at a file offset.
pub(crate) type WriteRun<'a> = (u64, &'a [&'a Page]);
/// Pages to read from a file offset.
pub(crate) type ReadRun<'a, 'p> = (u64, &'a mut [&'p mut Page]);

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

/// Reads what of `pages` (from `offset`) the page cache holds, without
/// waiting for the device (`preadv2` with `RWF_NOWAIT`): the number of
/// whole pages read from the first; those after are to be read otherwise
/// (0 where the first page is not cached, or on any error).
#[cfg(feature = "async")]
pub(crate) fn read_cached(fd: BorrowedFd<'_>, offset: u64, pages: &mut [&mut Page]) -> usize {
    let mut iov: Vec<IoSliceMut<'_>> = pages
        .iter_mut()
        .take(IOV_MAX)
        .map(|p| IoSliceMut::new(p.as_bytes_mut()))
        .collect();
    rustix::io::preadv2(fd, &mut iov, offset, rustix::io::ReadWriteFlags::NOWAIT)
        .map_or(0, |n| n / pagebackup_core::PAGE_SIZE)
}
