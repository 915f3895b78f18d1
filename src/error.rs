//! [`OpenError`]: why [`open`](crate::open) could not build a backend.

use std::fmt;

use pagebackup_core::raw::params::ParamError;
use pagebackup_core::{BackupError, ErrorKind, Operation, Origin};

/// Why a backend spec could not be opened. Every message says what is valid.
///
/// `?` turns it into a [`BackupError`]: a backend's own failure to start as
/// it is, a spec that cannot be opened as [`ErrorKind::Config`] with this
/// error as its cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The spec is malformed, or its backend refuses a parameter: an
    /// unknown key, a bad value, a file it names that cannot be loaded.
    /// Shown as the parameter error itself.
    Param(ParamError),
    /// No backend has this name.
    UnknownBackend {
        /// The name given.
        name: String,
        /// The backends this build contains.
        available: Vec<&'static str>,
    },
    /// The backend exists but this build was compiled without it.
    NotCompiled {
        /// The backend.
        name: &'static str,
        /// The cargo feature of `pagebackup` that enables it.
        feature: &'static str,
    },
    /// The backend was configured but failed to start, or refused a value
    /// it can never work with ([`ErrorKind::Config`], the bound in the
    /// message). Shown as the backend's error itself, whose source is the
    /// next in the chain.
    Backend(BackupError),
    /// One tier of a tiered spec could not be opened.
    Tier {
        /// The tier's position, from 0 (the first, fastest).
        index: usize,
        /// The tier's spec as given (passwords hidden).
        spec: String,
        /// Why it could not be opened: the next error of the chain.
        source: Box<OpenError>,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Param(e) => write!(f, "{e}"),
            Self::UnknownBackend { name, available } => {
                write!(f, "unknown backend '{name}'; this build has: {}", available.join(", "))
            }
            Self::NotCompiled { name, feature } => write!(
                f,
                "backend '{name}' is not in this build; enable the cargo feature `{feature}` of pagebackup"
            ),
            Self::Backend(e) => write!(f, "{e}"),
            Self::Tier { index, spec, .. } => write!(f, "tiered: cannot open tier {index} '{spec}'"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the message is the inner error's, so its source comes next.
            Self::Param(e) => e.source(),
            Self::Backend(e) => e.source(),
            Self::Tier { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<OpenError> for BackupError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Backend(e) => e,
            // A file a parameter names failed to load: that failure, of its kind.
            OpenError::Param(ParamError::Load { error, .. }) => *error,
            spec => {
                let backend = match &spec {
                    OpenError::NotCompiled { name, .. } => name,
                    OpenError::Param(e) => e.backend().unwrap_or("pagebackup"),
                    OpenError::Tier { .. } => "tiered",
                    // The spec names no backend this crate knows.
                    _ => "pagebackup",
                };
                BackupError::Caused {
                    origin: Origin::new(backend, Operation::Open),
                    kind: ErrorKind::Config,
                    detail: "cannot open the spec".into(),
                    source: Box::new(spec),
                }
            }
        }
    }
}

impl From<ParamError> for OpenError {
    fn from(e: ParamError) -> Self {
        OpenError::Param(e)
    }
}

impl From<BackupError> for OpenError {
    fn from(e: BackupError) -> Self {
        OpenError::Backend(e)
    }
}
