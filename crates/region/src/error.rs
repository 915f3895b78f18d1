//! [`RegionError`].

use std::{fmt, io};

use pagebackup_core::BackupError;

/// Why a region could not be made, or a page of it could not be served.
#[derive(Debug)]
#[non_exhaustive]
pub enum RegionError {
    /// The kernel lacks a userfaultfd feature the region needs.
    Unsupported {
        /// The feature, with the kernel version that brought it.
        what: &'static str,
        /// What the kernel offers instead.
        detail: String,
    },
    /// A system call failed.
    Os {
        /// What the region was doing.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The backend failed to restore (or back up) a page.
    Backend(BackupError),
    /// A length, budget, range or setting the region cannot work with.
    InvalidInput(String),
    /// The backend spec the region was to page to could not be opened.
    Open(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { what, detail } => {
                write!(f, "offload region: this kernel lacks {what} ({detail})")
            }
            Self::Os { op, source } => {
                let hint = if source.kind() == io::ErrorKind::PermissionDenied {
                    " (userfaultfd needs vm.unprivileged_userfaultfd=1, CAP_SYS_PTRACE or access to /dev/userfaultfd)"
                } else {
                    ""
                };
                write!(f, "offload region: {op}: {source}{hint}")
            }
            Self::Backend(e) => write!(f, "offload region: {e}"),
            Self::InvalidInput(detail) => write!(f, "offload region: {detail}"),
            Self::Open(e) => write!(f, "offload region: opening its backend: {e}"),
        }
    }
}

impl std::error::Error for RegionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os { source, .. } => source.source(),
            Self::Backend(e) => e.source(),
            Self::Open(e) => e.source(),
            _ => None,
        }
    }
}

impl From<BackupError> for RegionError {
    fn from(e: BackupError) -> Self {
        RegionError::Backend(e)
    }
}
