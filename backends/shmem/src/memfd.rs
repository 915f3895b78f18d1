//! The backend's memfd: created close-on-exec and no-exec, sized, and sealed
//! so that no holder of the fd can shrink it under the mapping.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};

/// Creates a memfd of `len` bytes (sparse: nothing is allocated yet),
/// sealed against shrinking, growing and further sealing.
///
/// `MFD_NOEXEC_SEAL` (Linux 6.3+) is asked for; older kernels reject it with
/// `EINVAL`, and the memfd is then created without it (it is never mapped
/// executable by this crate either way).
pub(crate) fn create_sealed(name: &str, len: u64) -> io::Result<OwnedFd> {
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match rustix::fs::memfd_create(name, base | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, base)?,
        other => other?,
    };
    rustix::fs::ftruncate(&fd, len)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// Releases the memory behind `len` bytes at `offset`; the size stays.
pub(crate) fn punch_hole(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)?;
    Ok(())
}

/// Bytes of memory allocated to the memfd (in RAM or swapped out).
pub(crate) fn allocated_bytes(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_blocks as u64 * 512)
}
