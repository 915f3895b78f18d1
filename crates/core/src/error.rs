//! [`BackupError`], [`BatchError`] and the context every error carries.

use std::{fmt, io};

use crate::Handle;

/// The operation that failed, named as the trait method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Creating or opening the backend.
    Open,
    /// `backup_page`.
    BackupPage,
    /// `backup_pages`.
    BackupPages,
    /// `copy_page`.
    CopyPage,
    /// `copy_pages`.
    CopyPages,
    /// `drop_handle`.
    DropHandle,
    /// `drop_handles`.
    DropHandles,
    /// `flush`.
    Flush,
    /// Compaction or another maintenance call.
    Maintenance,
}

impl Operation {
    /// The method's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::BackupPage => "backup_page",
            Self::BackupPages => "backup_pages",
            Self::CopyPage => "copy_page",
            Self::CopyPages => "copy_pages",
            Self::DropHandle => "drop_handle",
            Self::DropHandles => "drop_handles",
            Self::Flush => "flush",
            Self::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which backend failed, in which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The backend's name, as [`BackupBackend::name`](crate::BackupBackend::name) gives it.
    pub backend: &'static str,
    /// The operation.
    pub op: Operation,
}

impl Origin {
    /// The origin `backend`, `op`.
    pub const fn new(backend: &'static str, op: Operation) -> Self {
        Origin { backend, op }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.op)
    }
}

/// What went wrong, without the details: for matching and assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`BackupError::NoSpace`].
    NoSpace,
    /// See [`BackupError::InvalidHandle`].
    InvalidHandle,
    /// See [`BackupError::Interrupted`].
    Interrupted,
    /// See [`BackupError::Corrupt`].
    Corrupt,
    /// See [`BackupError::Unsupported`].
    Unsupported,
    /// See [`BackupError::InvalidInput`].
    InvalidInput,
    /// See [`BackupError::Io`].
    Io,
}

/// A failed backend operation.
///
/// Every error leaves the backend usable and loses nothing that was already
/// backed up: a failed backup issues no handle and holds no storage; a failed
/// restore leaves the backup in place to be retried.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackupError {
    /// The backend's space is used up (its limit, its file system, its swap).
    NoSpace {
        /// Where it failed.
        origin: Origin,
        /// What ran out.
        detail: String,
    },
    /// The handle is unknown to this backend: dropped already, issued by
    /// another backend instance, or never issued.
    InvalidHandle {
        /// Where it failed.
        origin: Origin,
        /// The rejected handle.
        handle: Handle,
    },
    /// An [`Interrupt`](crate::Interrupt) was set; the page was not restored.
    Interrupted {
        /// Where it stopped.
        origin: Origin,
    },
    /// The stored copy failed a consistency check.
    Corrupt {
        /// Where it failed.
        origin: Origin,
        /// The page's handle.
        handle: Handle,
        /// What check failed.
        detail: String,
    },
    /// The backend cannot do this (in this configuration, on this kernel).
    Unsupported {
        /// Where it failed.
        origin: Origin,
        /// What is missing.
        detail: String,
    },
    /// The arguments do not fit together (such as batch slices of different
    /// lengths); nothing was done.
    InvalidInput {
        /// Where it failed.
        origin: Origin,
        /// What is wrong.
        detail: String,
    },
    /// The operating system reported an error.
    Io {
        /// Where it failed.
        origin: Origin,
        /// The error.
        source: io::Error,
    },
}

impl BackupError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSpace { .. } => ErrorKind::NoSpace,
            Self::InvalidHandle { .. } => ErrorKind::InvalidHandle,
            Self::Interrupted { .. } => ErrorKind::Interrupted,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::Io { .. } => ErrorKind::Io,
        }
    }

    /// Which backend and operation failed.
    pub fn origin(&self) -> Origin {
        match self {
            Self::NoSpace { origin, .. }
            | Self::InvalidHandle { origin, .. }
            | Self::Interrupted { origin }
            | Self::Corrupt { origin, .. }
            | Self::Unsupported { origin, .. }
            | Self::InvalidInput { origin, .. }
            | Self::Io { origin, .. } => *origin,
        }
    }
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin();
        match self {
            Self::NoSpace { detail, .. } => write!(
                f,
                "{origin}: no space left ({detail}); drop handles, flush, or give the backend more space"
            ),
            Self::InvalidHandle { handle, .. } => write!(
                f,
                "{origin}: invalid handle {handle}: dropped already, issued by another backend instance, or never issued"
            ),
            Self::Interrupted { .. } => {
                write!(
                    f,
                    "{origin}: interrupted; the backup is still in place, clear the interrupt and retry"
                )
            }
            Self::Corrupt { handle, detail, .. } => {
                write!(f, "{origin}: stored copy of handle {handle} is corrupt: {detail}")
            }
            Self::Unsupported { detail, .. } => write!(f, "{origin}: unsupported: {detail}"),
            Self::InvalidInput { detail, .. } => write!(f, "{origin}: invalid input: {detail}"),
            Self::Io { source, .. } => write!(f, "{origin}: I/O error: {source}"),
        }
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A batch operation that stopped part-way.
///
/// Items `0..completed` of the batch were done (pages backed up, restored or
/// dropped); item `completed` failed with `error`, and it and every item after
/// it were left as they were.
#[derive(Debug)]
pub struct BatchError {
    /// Items done before the failure.
    pub completed: usize,
    /// Why item `completed` failed.
    pub error: BackupError,
}

impl BatchError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (batch stopped after {} items)", self.error, self.completed)
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Result of a single-page operation.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_backend_operation_and_remedy() {
        let origin = Origin::new("memory", Operation::BackupPage);
        let e = BackupError::NoSpace {
            origin,
            detail: "limit of 16 pages reached".into(),
        };
        assert_eq!(
            e.to_string(),
            "memory backend: backup_page: no space left (limit of 16 pages reached); \
             drop handles, flush, or give the backend more space"
        );
        let b = BatchError { completed: 3, error: e };
        assert_eq!(b.kind(), ErrorKind::NoSpace);
        assert!(b.to_string().ends_with("(batch stopped after 3 items)"));
        let io = BackupError::Io {
            origin: Origin::new("file", Operation::Flush),
            source: io::Error::from_raw_os_error(28),
        };
        assert!(std::error::Error::source(&io).is_some());
        assert_eq!(io.origin().op.name(), "flush");
    }
}
