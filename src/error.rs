//! [`OpenError`]: why [`open`](crate::open) could not build a backend.

use std::fmt;

use pagebackup_core::BackupError;

/// Why a backend spec could not be opened. Every message says what is valid.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The spec does not follow `NAME` or `NAME:key=value,...`.
    Syntax {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        detail: String,
    },
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
    /// The backend takes no parameter of this name.
    UnknownKey {
        /// The backend.
        backend: &'static str,
        /// The key given.
        key: String,
        /// The keys it takes.
        valid: &'static [&'static str],
    },
    /// A parameter's value is not valid.
    BadValue {
        /// The backend.
        backend: &'static str,
        /// The parameter.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The backend was configured but failed to start.
    Backend(BackupError),
    /// One tier of a tiered spec could not be opened.
    Tier {
        /// The tier's position, from 0 (the first, fastest).
        index: usize,
        /// The tier's spec as given.
        spec: String,
        /// Why it could not be opened.
        source: Box<OpenError>,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { spec, detail } => write!(f, "bad backend spec '{spec}': {detail}"),
            Self::UnknownBackend { name, available } => {
                write!(f, "unknown backend '{name}'; this build has: {}", available.join(", "))
            }
            Self::NotCompiled { name, feature } => write!(
                f,
                "backend '{name}' is not in this build; enable the cargo feature `{feature}` of pagebackup"
            ),
            Self::UnknownKey {
                backend,
                key,
                valid: [],
            } => {
                write!(f, "backend '{backend}' takes no parameters, but '{key}' was given")
            }
            Self::UnknownKey { backend, key, valid } => {
                write!(
                    f,
                    "backend '{backend}' has no parameter '{key}'; valid: {}",
                    valid.join(", ")
                )
            }
            Self::BadValue {
                backend,
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "backend '{backend}': bad value '{value}' for '{key}': expected {expected}"
                )
            }
            Self::Backend(e) => write!(f, "{e}"),
            Self::Tier { index, spec, source } => write!(f, "tiered: tier {index} '{spec}': {source}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            Self::Tier { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<BackupError> for OpenError {
    fn from(e: BackupError) -> Self {
        OpenError::Backend(e)
    }
}
