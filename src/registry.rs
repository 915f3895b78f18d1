//! The table of backends [`open`](crate::open) knows, with the feature that
//! compiles each in. Each backend parses its own parameters
//! (`from_params`, with its `PARAMS` table).

use pagebackup_core::raw::params::{ParamDoc, Spec};
use pagebackup_core::{BackupBackend, MemoryBackend};

use crate::OpenError;

/// Builds a backend from a spec's parameters.
type Opener = fn(&[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError>;

/// A backend [`open`](crate::open) can build when its feature is on.
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    /// The cargo feature that compiles it in ("" for always).
    pub(crate) feature: &'static str,
    /// `None` when this build was compiled without the feature.
    pub(crate) open: Option<Opener>,
    /// The parameters its opener parses (its config's `PARAMS`); empty
    /// when this build was compiled without it.
    pub(crate) params: &'static [ParamDoc],
}

pub(crate) const BACKENDS: &[Entry] = &[
    Entry {
        name: "memory",
        feature: "",
        open: Some(open_memory),
        params: MemoryBackend::PARAMS,
    },
    Entry {
        name: "shmem",
        feature: "shmem",
        #[cfg(feature = "shmem")]
        open: Some(open_shmem),
        #[cfg(not(feature = "shmem"))]
        open: None,
        #[cfg(feature = "shmem")]
        params: pagebackup_shmem::ShmemConfig::PARAMS,
        #[cfg(not(feature = "shmem"))]
        params: &[],
    },
    Entry {
        name: "file",
        feature: "file",
        #[cfg(feature = "file")]
        open: Some(open_file),
        #[cfg(not(feature = "file"))]
        open: None,
        #[cfg(feature = "file")]
        params: pagebackup_file::FileConfig::PARAMS,
        #[cfg(not(feature = "file"))]
        params: &[],
    },
    Entry {
        name: "compressed",
        feature: "compressed",
        #[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
        open: Some(open_compressed),
        #[cfg(not(any(feature = "compressed-lz4", feature = "compressed-zstd")))]
        open: None,
        #[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
        params: pagebackup_compressed::CompressedConfig::PARAMS,
        #[cfg(not(any(feature = "compressed-lz4", feature = "compressed-zstd")))]
        params: &[],
    },
    Entry {
        name: "tiered",
        feature: "tiered",
        #[cfg(feature = "tiered")]
        open: Some(open_tiered_boxed),
        #[cfg(not(feature = "tiered"))]
        open: None,
        #[cfg(feature = "tiered")]
        params: pagebackup_tiered::TieredConfig::PARAMS,
        #[cfg(not(feature = "tiered"))]
        params: &[],
    },
    Entry {
        name: "redis",
        feature: "redis",
        #[cfg(feature = "redis")]
        open: Some(open_redis),
        #[cfg(not(feature = "redis"))]
        open: None,
        #[cfg(feature = "redis")]
        params: pagebackup_redis::RedisConfig::PARAMS,
        #[cfg(not(feature = "redis"))]
        params: &[],
    },
];

/// Opens `spec` with the backends of `table`.
pub(crate) fn open_in(table: &[Entry], spec: &str) -> Result<Box<dyn BackupBackend>, OpenError> {
    let (open, spec) = parse_in(table, spec)?;
    open(&spec.params)
}

/// The opener of `spec`'s backend in `table`, and the parsed spec.
pub(crate) fn parse_in<'s>(table: &[Entry], spec: &'s str) -> Result<(Opener, Spec<'s>), OpenError> {
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
    Ok((open, spec))
}

/// The parameters `name`'s opener parses, if `table` has it compiled in.
pub(crate) fn params_in(table: &[Entry], name: &str) -> Option<&'static [ParamDoc]> {
    table
        .iter()
        .find(|e| e.name == name && e.open.is_some())
        .map(|e| e.params)
}

/// The compiled-in backends of `table`.
pub(crate) fn available_in(table: &[Entry]) -> Vec<&'static str> {
    table.iter().filter(|e| e.open.is_some()).map(|e| e.name).collect()
}

fn open_memory(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(MemoryBackend::from_params(params)?))
}

#[cfg(feature = "shmem")]
fn open_shmem(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_shmem::{ShmemBackend, ShmemConfig};
    Ok(Box::new(ShmemBackend::with_config(ShmemConfig::from_params(params)?)?))
}

#[cfg(feature = "file")]
fn open_file(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_file::{FileBackend, FileConfig};
    Ok(Box::new(FileBackend::new(FileConfig::from_params(params)?)?))
}

#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
fn open_compressed(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_compressed::{CompressedBackend, CompressedConfig};
    Ok(Box::new(CompressedBackend::new(CompressedConfig::from_params(
        params,
    )?)?))
}

#[cfg(feature = "tiered")]
fn open_tiered_boxed(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(open_tiered(params)?))
}

/// Opens a `tiered:` spec's parameters ([`TieredConfig::from_params`](pagebackup_tiered::TieredConfig::from_params)),
/// each tier with [`open_in`] (so tiers may be tiered too).
#[cfg(feature = "tiered")]
pub(crate) fn open_tiered(params: &[(&str, &str)]) -> Result<pagebackup_tiered::Tiered, OpenError> {
    use pagebackup_core::raw::params::redact_passwords;
    use pagebackup_tiered::{Tier, Tiered, TieredConfig};
    let (tiers, config) = TieredConfig::from_params(params, &default_tiers(), |index, spec| {
        let backend = open_in(BACKENDS, spec).map_err(|source| OpenError::Tier {
            index,
            spec: redact_passwords(spec),
            source: Box::new(source),
        })?;
        // The tier's own maintenance (a compressed tier compacts) once pages
        // left it; a failure only leaves space unclaimed until the next run.
        let backend: std::sync::Arc<dyn pagebackup_core::BackupBackend> = backend.into();
        let maintained = std::sync::Arc::clone(&backend);
        Ok::<_, OpenError>(Tier::new(backend).with_maintenance(move || {
            let _ = maintained.maintain();
        }))
    })?;
    Ok(Tiered::new(tiers, config)?)
}

/// The tiers of a bare `tiered`: compressed RAM over a file where this
/// build has them, else over shmem, else memory over memory.
#[cfg(feature = "tiered")]
fn default_tiers<'a>() -> Vec<&'a str> {
    let available = available_in(BACKENDS);
    let pick = |names: &[&'static str]| {
        *names
            .iter()
            .find(|n| available.contains(n))
            .expect("memory is always built")
    };
    vec![pick(&["compressed", "memory"]), pick(&["file", "shmem", "memory"])]
}

#[cfg(feature = "redis")]
fn open_redis(params: &[(&str, &str)]) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_redis::{RedisBackend, RedisConfig};
    Ok(Box::new(RedisBackend::new(RedisConfig::from_params(params)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Entry] = &[
        Entry {
            name: "memory",
            feature: "",
            open: Some(open_memory),
            params: MemoryBackend::PARAMS,
        },
        Entry {
            name: "absent",
            feature: "absent-feature",
            open: None,
            params: &[],
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
        assert_eq!(params_in(TABLE, "memory"), Some(MemoryBackend::PARAMS));
        assert_eq!(params_in(TABLE, "absent"), None);
        let unknown = open_in(TABLE, "nope").unwrap_err().to_string();
        assert_eq!(unknown, "unknown backend 'nope'; this build has: memory");
    }
}
