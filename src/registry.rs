//! The table of backends [`open`](crate::open) knows, with the parameters
//! each takes and the feature that compiles it in.

use pagebackup_core::{BackupBackend, MemoryBackend};

use crate::OpenError;
#[cfg(feature = "redis")]
use crate::spec::parse_duration;
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
    Entry {
        name: "file",
        feature: "file",
        keys: &["dir", "path", "max_size", "io"],
        #[cfg(feature = "file")]
        open: Some(open_file),
        #[cfg(not(feature = "file"))]
        open: None,
    },
    Entry {
        name: "compressed",
        feature: "compressed",
        keys: &["algo", "level", "limit", "dict", "checksum"],
        #[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
        open: Some(open_compressed),
        #[cfg(not(any(feature = "compressed-lz4", feature = "compressed-zstd")))]
        open: None,
    },
    Entry {
        name: "redis",
        feature: "redis",
        keys: &[
            "url",
            "prefix",
            "timeout",
            "cluster",
            "limit",
            "checksum",
            "allow_eviction",
        ],
        #[cfg(feature = "redis")]
        open: Some(open_redis),
        #[cfg(not(feature = "redis"))]
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
    table.iter().filter(|e| e.open.is_some()).map(|e| e.name).collect()
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

#[cfg(feature = "file")]
fn open_file(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_file::{FileBackend, FileConfig, IoMode};
    let io = match params.choice("io", &["auto", "uring", "sync"], "auto, uring or sync")? {
        Some("uring") => IoMode::Uring,
        Some("sync") => IoMode::Sync,
        _ => IoMode::Auto,
    };
    let mut config = FileConfig::new().with_io(io);
    if let Some(dir) = params.get("dir") {
        config = config.with_dir(dir);
    }
    if let Some(path) = params.get("path") {
        config = config.with_path(path);
    }
    if let Some(max) = params.size("max_size")? {
        config = config.with_max_size(max);
    }
    Ok(Box::new(FileBackend::new(config)?))
}

#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
fn open_compressed(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
    let default = if cfg!(feature = "compressed-lz4") {
        "lz4"
    } else {
        "zstd"
    };
    let algorithm = match params
        .choice("algo", &["lz4", "zstd"], "lz4 or zstd")?
        .unwrap_or(default)
    {
        "lz4" if params.get("level").is_some() => {
            return Err(params.bad("level", "no level with algo=lz4 (levels are for zstd)"));
        }
        #[cfg(feature = "compressed-lz4")]
        "lz4" => Algorithm::Lz4,
        #[cfg(feature = "compressed-zstd")]
        "zstd" => Algorithm::Zstd {
            level: params.int("level")?.unwrap_or(1),
        },
        _ => {
            return Err(params.bad(
                "algo",
                "a codec this build has (features compressed-lz4, compressed-zstd)",
            ));
        }
    };
    let mut config = CompressedConfig::new(algorithm).with_checksum(params.flag("checksum")?.unwrap_or(false));
    if let Some(limit) = params.size("limit")? {
        config = config.with_limit(limit);
    }
    if let Some(path) = params.get("dict") {
        #[cfg(feature = "compressed-zstd")]
        {
            config = config.with_dictionary(pagebackup_compressed::Dictionary::load(path)?);
        }
        #[cfg(not(feature = "compressed-zstd"))]
        {
            let _ = path;
            return Err(params.bad(
                "dict",
                "no dictionary: this build has no zstd (feature compressed-zstd)",
            ));
        }
    }
    Ok(Box::new(CompressedBackend::new(config)?))
}

#[cfg(feature = "redis")]
fn open_redis(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(pagebackup_redis::RedisBackend::new(redis_config(params)?)?))
}

/// The redis backend natively async, for `open_async`: `None` if `spec`
/// names another backend.
#[cfg(all(feature = "redis", feature = "async"))]
pub(crate) fn open_redis_async(
    spec: &str,
) -> Result<Option<std::sync::Arc<dyn pagebackup_async::AsyncBackupBackend>>, OpenError> {
    let spec = Spec::parse(spec)?;
    let Some(entry) = BACKENDS.iter().find(|e| e.name == spec.name && e.name == "redis") else {
        return Ok(None);
    };
    let config = redis_config(&Params::new(entry, spec)?)?;
    Ok(Some(std::sync::Arc::new(pagebackup_redis::RedisBackend::new(config)?)))
}

#[cfg(feature = "redis")]
fn redis_config(params: &Params<'_>) -> Result<pagebackup_redis::RedisConfig, OpenError> {
    let url = params
        .get("url")
        .ok_or_else(|| params.bad("url", "a URL redis://[user:password@]host:port[/db] (url is required)"))?;
    let mut config = pagebackup_redis::RedisConfig::new(url)
        .with_cluster(params.flag("cluster")?.unwrap_or(false))
        .with_checksum(params.flag("checksum")?.unwrap_or(false))
        .with_allow_eviction(params.flag("allow_eviction")?.unwrap_or(false));
    if let Some(prefix) = params.get("prefix") {
        config = config.with_prefix(prefix);
    }
    if let Some(timeout) = params.get("timeout") {
        let timeout = parse_duration(timeout)
            .filter(|t| !t.is_zero())
            .ok_or_else(|| params.bad("timeout", "a duration such as 500ms, 5s or 1m"))?;
        config = config.with_timeout(timeout);
    }
    if let Some(limit) = params.size("limit")? {
        config = config.with_limit(limit);
    }
    Ok(config)
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
        self.spec.params.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v)
    }

    /// The error for a bad value of `key`.
    pub(crate) fn bad(&self, key: &'static str, expected: &'static str) -> OpenError {
        OpenError::BadValue {
            backend: self.backend,
            key,
            value: self.get(key).unwrap_or("").to_string(),
            expected,
        }
    }

    /// `key`, which must be one of `options` (`expected` says so), if given.
    #[allow(dead_code, reason = "used by the backends some feature sets leave out")]
    pub(crate) fn choice(
        &self,
        key: &'static str,
        options: &[&'static str],
        expected: &'static str,
    ) -> Result<Option<&'static str>, OpenError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        options
            .iter()
            .find(|&&o| o == value)
            .map(|&o| Some(o))
            .ok_or_else(|| self.bad(key, expected))
    }

    /// `key` as a whole number, if given.
    #[allow(dead_code, reason = "used by the backends some feature sets leave out")]
    pub(crate) fn int(&self, key: &'static str) -> Result<Option<i32>, OpenError> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| self.bad(key, "a whole number")))
            .transpose()
    }

    /// `key` as on/off (`true`/`false`, `yes`/`no` and `1`/`0` too), if given.
    #[allow(dead_code, reason = "used by the backends some feature sets leave out")]
    pub(crate) fn flag(&self, key: &'static str) -> Result<Option<bool>, OpenError> {
        self.get(key)
            .map(|v| match v {
                "on" | "true" | "yes" | "1" => Ok(true),
                "off" | "false" | "no" | "0" => Ok(false),
                _ => Err(self.bad(key, "on or off")),
            })
            .transpose()
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
