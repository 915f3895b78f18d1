//! [`BackupError`], [`BatchError`] and the context every error carries.
//!
//! One rule for every error of the crate, as in `std::io` and
//! `object_store`: its `Display` says what failed at its own level and
//! nothing below it, and [`source`](std::error::Error::source) is the error
//! that caused it, itself, so that `downcast_ref` finds it (the
//! [`std::io::Error`] of a failed write) and a report that walks the chain
//! (`anyhow`'s `{:#}`, `eyre`'s) prints each level once.

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
    /// [`PageArray::set`](crate::PageArray::set).
    ArraySet,
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
            Self::ArraySet => "PageArray::set",
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
    /// The backend could not be built from its configuration: a parameter
    /// is missing, malformed or out of range. Only construction
    /// ([`Operation::Open`]) gives it, never an operation on a backend.
    Config,
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
    /// A configuration value the backend can never work with (a size below
    /// one page, a level out of range); nothing was built. Only
    /// construction ([`Operation::Open`]) gives it.
    Config {
        /// Where it failed.
        origin: Origin,
        /// What is wrong, with the minimum or maximum where there is one.
        detail: String,
    },
    /// The operating system reported an error.
    Io {
        /// Where it failed.
        origin: Origin,
        /// The error.
        source: io::Error,
    },
    /// A failure another error caused (a codec's, a configuration's, the
    /// kernel's at setup), kept whole as `source` instead of flattened into
    /// a message.
    Caused {
        /// Where it failed.
        origin: Origin,
        /// What kind of failure it is.
        kind: ErrorKind,
        /// What was being done, in a few words ("cannot read the dictionary").
        detail: String,
        /// The error that caused it.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl BackupError {
    /// The error for an I/O failure at `origin`, with `source` as its
    /// cause: `ENOSPC`, `EFBIG`, `ENOMEM` and `EDQUOT` are
    /// [`ErrorKind::NoSpace`], anything else [`BackupError::Io`].
    pub fn io(origin: Origin, source: io::Error) -> Self {
        use rustix::io::Errno;
        match source.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::NOSPC | Errno::FBIG | Errno::NOMEM | Errno::DQUOT) => Self::Caused {
                origin,
                kind: ErrorKind::NoSpace,
                detail: "no space left: the storage refused the write; drop handles, flush, or give the backend \
                         more space"
                    .into(),
                source: Box::new(source),
            },
            _ => Self::Io { origin, source },
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSpace { .. } => ErrorKind::NoSpace,
            Self::InvalidHandle { .. } => ErrorKind::InvalidHandle,
            Self::Interrupted { .. } => ErrorKind::Interrupted,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::Config { .. } => ErrorKind::Config,
            Self::Io { .. } => ErrorKind::Io,
            Self::Caused { kind, .. } => *kind,
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
            | Self::Config { origin, .. }
            | Self::Io { origin, .. }
            | Self::Caused { origin, .. } => *origin,
        }
    }

    /// The same error, reported as coming from operation `op`: a batch
    /// method that fails in one of its pages reports itself, not the
    /// single-page method it called.
    pub fn in_op(mut self, op: Operation) -> Self {
        match &mut self {
            Self::NoSpace { origin, .. }
            | Self::InvalidHandle { origin, .. }
            | Self::Interrupted { origin }
            | Self::Corrupt { origin, .. }
            | Self::Unsupported { origin, .. }
            | Self::InvalidInput { origin, .. }
            | Self::Config { origin, .. }
            | Self::Io { origin, .. }
            | Self::Caused { origin, .. } => origin.op = op,
        }
        self
    }

    /// The error that caused this one, if any (the I/O error, the
    /// caused-by error): the same as [`source`](std::error::Error::source).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Caused { source, .. } => Some(&**source),
            _ => None,
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
            Self::Config { detail, .. } => write!(f, "{origin}: invalid configuration: {detail}"),
            Self::Io { .. } => write!(f, "{origin}: I/O error"),
            Self::Caused { detail, .. } => write!(f, "{origin}: {detail}"),
        }
    }
}

impl std::error::Error for BackupError {
    /// The cause ([`BackupError::cause`]), whose message `Display` leaves out.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause()
    }
}

/// A batch operation that stopped part-way: a backend's batch method, or a
/// [`PageArray`](crate::PageArray)'s backup, restore or purge.
///
/// Items `0..completed` of the batch were done (pages backed up, restored or
/// dropped); item `completed` failed with `error`, and it and every item after
/// it were left as they were, so calling again with the rest continues.
/// ([`PageArray::purge`](crate::PageArray::purge) is the one exception: it
/// goes on past a failed drop, and `completed` counts the positions it
/// emptied.) `?` turns it into its [`BackupError`], which is also its
/// [`source`](std::error::Error::source).
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
        write!(
            f,
            "batch stopped after {} items; the rest were left as they were",
            self.completed
        )
    }
}

impl std::error::Error for BatchError {
    /// `error`, why item `completed` failed.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<BatchError> for BackupError {
    fn from(e: BatchError) -> Self {
        e.error
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
        assert_eq!(
            b.to_string(),
            "batch stopped after 3 items; the rest were left as they were"
        );
        let io = BackupError::Io {
            origin: Origin::new("file", Operation::Flush),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(io.origin().op.name(), "flush");
        assert_eq!(
            io.cause().unwrap().to_string(),
            io::Error::from_raw_os_error(28).to_string()
        );
    }

    /// Every message of a chain, outermost first.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        std::iter::successors(Some(e), |e| e.source())
            .map(|e| e.to_string())
            .collect()
    }

    #[derive(Debug)]
    struct Leaf;
    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("leaf cause")
        }
    }
    impl std::error::Error for Leaf {}

    #[derive(Debug)]
    struct Middle(Leaf);
    impl fmt::Display for Middle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("middle")
        }
    }
    impl std::error::Error for Middle {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_chain_prints_every_message_once() {
        let caused = BackupError::Caused {
            origin: Origin::new("compressed", Operation::Open),
            kind: ErrorKind::Config,
            detail: "cannot load the dictionary".into(),
            source: Box::new(Middle(Leaf)),
        };
        assert_eq!(caused.kind(), ErrorKind::Config);
        assert!(caused.cause().unwrap().downcast_ref::<Middle>().is_some());
        let batch = BatchError {
            completed: 2,
            error: caused,
        };
        assert_eq!(
            chain(&batch),
            [
                "batch stopped after 2 items; the rest were left as they were",
                "compressed backend: open: cannot load the dictionary",
                "middle",
                "leaf cause"
            ]
        );
        let io = BackupError::Io {
            origin: Origin::new("file", Operation::Flush),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            chain(&io),
            [
                "file backend: flush: I/O error",
                &io::Error::from_raw_os_error(28).to_string()
            ]
        );
        let source = std::error::Error::source(&io).and_then(|e| e.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(28));
    }

    #[test]
    fn a_batch_error_composes_into_a_backup_error() {
        fn restore_all() -> Result<(), BatchError> {
            Err(BatchError {
                completed: 1,
                error: BackupError::Interrupted {
                    origin: Origin::new("memory", Operation::CopyPages),
                },
            })
        }
        fn caller() -> Result<()> {
            restore_all()?;
            Ok(())
        }
        let e = caller().unwrap_err();
        assert_eq!(
            (e.kind(), e.origin().op),
            (ErrorKind::Interrupted, Operation::CopyPages)
        );
    }

    #[test]
    fn in_op_relabels_only_the_operation() {
        let e = BackupError::InvalidHandle {
            origin: Origin::new("memory", Operation::CopyPage),
            handle: Handle::from_raw(7).unwrap(),
        }
        .in_op(Operation::CopyPages);
        assert_eq!(e.origin(), Origin::new("memory", Operation::CopyPages));
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
    }
}
