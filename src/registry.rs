//! The table of backends [`open`](crate::open) knows, with the parameters
//! each takes and the feature that compiles it in.

use pagebackup_core::{BackupBackend, MemoryBackend};

use crate::OpenError;
use crate::spec::{Spec, parse_size};

type Opener = fn(&Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError>;

/// A backend [`open`](crate::open) can build when its feature is on.
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    /// The cargo feature that compiles it in ("" for always).
    pub(crate) feature: &'static str,
    pub(crate) keys: &'static [&'static str],
    /// `None` when this build was compiled without the feature.
    pub(crate) open: Option<Opener>,
}

pub(crate) const BACKENDS: &[Entry] = &[
    Entry {
        name: "memory",
        feature: "",
        keys: &["limit"],
        open: Some(open_memory),
    },
    Entry {
        name: "shmem",
        feature: "shmem",
        keys: &["capacity"],
        #[cfg(feature = "shmem")]
        open: Some(open_shmem),
        #[cfg(not(feature = "shmem"))]
        open: None,
    },
];

/// Opens `spec` with the backends of `table`.
pub(crate) fn open_in(table: &[Entry], spec: &str) -> Result<Box<dyn BackupBackend>, OpenError> {
    let spec = Spec::parse(spec)?;
    let Some(entry) = table.iter().find(|e| e.name == spec.name) else {
        return Err(OpenError::UnknownBackend {
            name: spec.name.to_string(),
            available: available_in(table),
        });
    };
    let Some(open) = entry.open else {
        return Err(OpenError::NotCompiled {
            name: entry.name,
            feature: entry.feature,
        });
    };
    open(&Params::new(entry, spec)?)
}

/// The compiled-in backends of `table`.
pub(crate) fn available_in(table: &[Entry]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|e| e.open.is_some())
        .map(|e| e.name)
        .collect()
}

fn open_memory(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(match params.size("limit")? {
        Some(limit) => MemoryBackend::with_limit(limit),
        None => MemoryBackend::new(),
    }))
}

#[cfg(feature = "shmem")]
fn open_shmem(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_shmem::ShmemBackend;
    Ok(Box::new(match params.size("capacity")? {
        Some(capacity) => ShmemBackend::with_capacity(capacity)?,
        None => ShmemBackend::new()?,
    }))
}

/// A spec's parameters, checked against the keys its backend takes.
pub(crate) struct Params<'a> {
    backend: &'static str,
    spec: Spec<'a>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(entry: &Entry, spec: Spec<'a>) -> Result<Self, OpenError> {
        if let Some(&(key, _)) = spec.params.iter().find(|(k, _)| !entry.keys.contains(k)) {
            return Err(OpenError::UnknownKey {
                backend: entry.name,
                key: key.to_string(),
                valid: entry.keys,
            });
        }
        Ok(Params {
            backend: entry.name,
            spec,
        })
    }

    /// The raw value of `key`, if given.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.spec
            .params
            .iter()
            .find(|&&(k, _)| k == key)
            .map(|&(_, v)| v)
    }

    /// `key` as a size (`64MiB`), if given.
    pub(crate) fn size(&self, key: &'static str) -> Result<Option<u64>, OpenError> {
        self.get(key)
            .map(|v| {
                parse_size(v).ok_or_else(|| OpenError::BadValue {
                    backend: self.backend,
                    key,
                    value: v.to_string(),
                    expected: "a size in bytes, optionally with a suffix B, KiB, MiB, GiB or TiB (such as 64MiB)",
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Entry] = &[
        Entry {
            name: "memory",
            feature: "",
            keys: &["limit"],
            open: Some(open_memory),
        },
        Entry {
            name: "absent",
            feature: "absent-feature",
            keys: &[],
            open: None,
        },
    ];

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        let err = open_in(TABLE, "absent:x=1").unwrap_err();
        assert!(matches!(
            err,
            OpenError::NotCompiled {
                name: "absent",
                feature: "absent-feature"
            }
        ));
        assert_eq!(
            err.to_string(),
            "backend 'absent' is not in this build; enable the cargo feature `absent-feature` of pagebackup"
        );
        assert_eq!(available_in(TABLE), ["memory"]);
        let unknown = open_in(TABLE, "nope").unwrap_err().to_string();
        assert_eq!(unknown, "unknown backend 'nope'; this build has: memory");
    }
}
