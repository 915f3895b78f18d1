//! The backing file: an unlinked `O_TMPFILE`, a create-then-unlink file where
//! the file system has no `O_TMPFILE`, or a named file removed on drop (if
//! it is still the one created, and only by the process that created it).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup_core::raw::ProcessEpoch;
use rustix::fs::{FallocateFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::FileConfig;

/// The backend's file.
#[derive(Debug)]
pub(crate) struct BackingFile {
    fd: OwnedFd,
    /// The path of a named file, with the device and inode it had when
    /// created: removed on drop if it still names that file.
    named: Option<(PathBuf, (u64, u64))>,
    /// The process that created the file: a `fork()` child never removes it.
    creator: ProcessEpoch,
    /// How the file was made: `O_TMPFILE`, `unlinked` or `named`.
    pub(crate) kind: &'static str,
}

const MODE: u32 = 0o600;

impl BackingFile {
    pub(crate) fn create(config: &FileConfig) -> io::Result<Self> {
        let mut flags = OFlags::RDWR | OFlags::CLOEXEC;
        if config.direct {
            flags |= OFlags::DIRECT;
        }
        let file = Self::open(config, flags).map_err(|e| match e.raw_os_error() {
            Some(code) if config.direct && code == Errno::INVAL.raw_os_error() => Context::wrap(
                io::ErrorKind::Unsupported,
                "the file system refuses O_DIRECT (direct=on); use another directory or direct=off".into(),
                e,
            ),
            _ => e,
        })?;
        Ok(file)
    }

    fn open(config: &FileConfig, flags: OFlags) -> io::Result<Self> {
        let creator = ProcessEpoch::current();
        if let Some(path) = &config.path {
            let fd = rustix::fs::open(path, flags | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(MODE))
                .map_err(|e| with_path(e, "create", path))?;
            let stat = rustix::fs::fstat(&fd)?;
            return Ok(BackingFile {
                fd,
                named: Some((path.clone(), (stat.st_dev, stat.st_ino))),
                creator,
                kind: "named",
            });
        }
        let dir = config.dir.clone().unwrap_or_else(std::env::temp_dir);
        match rustix::fs::open(&dir, flags | OFlags::TMPFILE, Mode::from_raw_mode(MODE)) {
            Ok(fd) => Ok(BackingFile {
                fd,
                named: None,
                creator,
                kind: "O_TMPFILE",
            }),
            // File systems without O_TMPFILE say EOPNOTSUPP (or EISDIR on old kernels).
            Err(Errno::OPNOTSUPP | Errno::ISDIR) => Self::create_unlinked(&dir, flags),
            Err(Errno::INVAL) if !flags.contains(OFlags::DIRECT) => Self::create_unlinked(&dir, flags),
            Err(e) => Err(with_path(e, "create a temporary file in", &dir)),
        }
    }

    fn create_unlinked(dir: &Path, flags: OFlags) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            ".pagebackup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let fd = rustix::fs::open(&path, flags | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(MODE))
            .map_err(|e| with_path(e, "create", &path))?;
        rustix::fs::unlink(&path).map_err(|e| with_path(e, "unlink", &path))?;
        Ok(BackingFile {
            fd,
            named: None,
            creator: ProcessEpoch::current(),
            kind: "unlinked",
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Releases the blocks behind `len` bytes at `offset`.
    pub(crate) fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        rustix::fs::fallocate(
            &self.fd,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )?;
        Ok(())
    }

    /// Bytes free for unprivileged users on the file's file system.
    pub(crate) fn free_space(&self) -> io::Result<u64> {
        let vfs = rustix::fs::fstatvfs(&self.fd)?;
        Ok(vfs.f_bavail.saturating_mul(vfs.f_frsize))
    }

    /// The named file's path, if the file has one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.named.as_ref().map(|(path, _)| path.as_path())
    }
}

impl Drop for BackingFile {
    fn drop(&mut self) {
        let Some((path, created)) = &self.named else { return };
        if !self.creator.is_current() {
            // A fork() child: the file is the parent's.
            return;
        }
        // Only the file the backend created: a file put at the path since
        // (after someone removed or renamed ours) is not ours to remove.
        // Nothing can be reported from drop; a file already gone is fine.
        if let Ok(now) = rustix::fs::stat(path)
            && (now.st_dev, now.st_ino) == *created
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn with_path(e: Errno, what: &str, path: &Path) -> io::Error {
    let e = io::Error::from(e);
    Context::wrap(e.kind(), format!("cannot {what} {}", path.display()), e)
}

/// What was being done when the kernel's error `source` came, as the
/// message of an [`io::Error`] whose source is `source` itself.
#[derive(Debug)]
struct Context {
    message: String,
    source: io::Error,
}

impl Context {
    /// An error of `kind` saying `message`, caused by `source`.
    fn wrap(kind: io::ErrorKind, message: String, source: io::Error) -> io::Error {
        io::Error::new(kind, Context { message, source })
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_then_unlink_fallback_leaves_no_name() {
        let dir = std::env::temp_dir().join(format!("pagebackup-unlinked-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let file = BackingFile::create_unlinked(&dir, OFlags::RDWR | OFlags::CLOEXEC).unwrap();
        assert_eq!(file.kind, "unlinked");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the file was unlinked at once"
        );
        assert_eq!(rustix::fs::fstat(file.fd()).unwrap().st_mode & 0o777, MODE);
        rustix::io::pwrite(file.fd(), b"still usable", 0).unwrap();
        drop(file);
        std::fs::remove_dir(&dir).unwrap();
    }
}
