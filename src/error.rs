//! [`OpenError`]: why [`open`](crate::open) could not build a backend.

use std::fmt;

use pagebackup_core::raw::params::ParamError;
use pagebackup_core::{BackupError, ErrorKind, Operation, Origin};

/// Why a backend spec could not be opened. Every message says what is valid.
///
/// `?` turns it into a [`BackupError`] that names the backend once, in its
/// origin: a backend's own failure to start as it is; a parameter the
/// backend refuses, or a backend this build lacks, as
/// [`BackupError::Config`] of that backend; a tier that cannot be opened
/// as the `tiered` backend's error caused by the tier's; a spec naming no
/// known backend as [`ErrorKind::Config`] with this error as its cause.
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
            Self::NotCompiled { name, feature } => write!(f, "backend '{name}' is {}", not_compiled(feature)),
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
    /// Each level of the result names its backend once: the origin names
    /// the backend, and the message says only what is wrong with the spec.
    fn from(e: OpenError) -> Self {
        let open = |backend| Origin::new(backend, Operation::Open);
        match e {
            OpenError::Backend(e) => e,
            // A file a parameter names failed to load: that failure, of its kind.
            OpenError::Param(ParamError::Load { error, .. }) => *error,
            OpenError::Param(e) if e.backend().is_some() => BackupError::Config {
                origin: open(e.backend().unwrap_or("pagebackup")),
                detail: e.detail(),
            },
            OpenError::NotCompiled { name, feature } => BackupError::Config {
                origin: open(name),
                detail: not_compiled(feature),
            },
            // The tier's own error, with its own backend, comes next.
            OpenError::Tier { index, spec, source } => {
                let tier = BackupError::from(*source);
                BackupError::Caused {
                    origin: open("tiered"),
                    kind: tier.kind(),
                    detail: format!("cannot open tier {index} '{spec}'"),
                    source: Box::new(tier),
                }
            }
            // The spec names no backend this crate knows, or none at all.
            spec => BackupError::Caused {
                origin: open("pagebackup"),
                kind: ErrorKind::Config,
                detail: "cannot open the spec".into(),
                source: Box::new(spec),
            },
        }
    }
}

/// What [`OpenError::NotCompiled`] says after the backend's name.
fn not_compiled(feature: &str) -> String {
    format!("not in this build; enable the cargo feature `{feature}` of pagebackup")
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
