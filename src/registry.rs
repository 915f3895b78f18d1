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
        keys: &["capacity", "checksum", "reuse", "shards"],
        #[cfg(feature = "shmem")]
        open: Some(open_shmem),
        #[cfg(not(feature = "shmem"))]
        open: None,
    },
    Entry {
        name: "file",
        feature: "file",
        keys: &["dir", "path", "max_size", "io", "direct", "checksum", "shards"],
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
        name: "tiered",
        feature: "tiered",
        keys: &[
            "tiers",
            "budget",
            "high",
            "low",
            "huge",
            "huge_mode",
            "promote",
            "rate",
            "auto",
        ],
        #[cfg(feature = "tiered")]
        open: Some(open_tiered_boxed),
        #[cfg(not(feature = "tiered"))]
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
    use pagebackup_shmem::{ShmemBackend, ShmemConfig};
    let mut config = ShmemConfig::new();
    if let Some(capacity) = params.size("capacity")? {
        config = config.with_capacity(capacity);
    }
    if let Some(on) = params.flag("checksum")? {
        config = config.with_checksum(on);
    }
    if let Some(reuse) = params.size("reuse")? {
        config = config.with_reuse(reuse);
    }
    if let Some(shards) = params.shards()? {
        config = config.with_shards(shards);
    }
    Ok(Box::new(ShmemBackend::with_config(config)?))
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
    if let Some(on) = params.flag("direct")? {
        config = config.with_direct(on);
    }
    if let Some(on) = params.flag("checksum")? {
        config = config.with_checksum(on);
    }
    if let Some(shards) = params.shards()? {
        config = config.with_shards(shards);
    }
    Ok(Box::new(FileBackend::new(config)?))
}

#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
fn open_compressed(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(compressed_backend(params)?))
}

#[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
fn compressed_backend(params: &Params<'_>) -> Result<pagebackup_compressed::CompressedBackend, OpenError> {
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
    Ok(CompressedBackend::new(config)?)
}

#[cfg(feature = "tiered")]
fn open_tiered_boxed(params: &Params<'_>) -> Result<Box<dyn BackupBackend>, OpenError> {
    Ok(Box::new(open_tiered(params)?))
}

/// Opens a `tiered:` spec: each tier of `tiers=[SPEC | SPEC ...]` with
/// [`open_in`] (so tiers may be tiered too), the budgets of the upper tiers,
/// and the policies.
#[cfg(feature = "tiered")]
pub(crate) fn open_tiered(params: &Params<'_>) -> Result<pagebackup_tiered::Tiered, OpenError> {
    use pagebackup_tiered::{HugePolicy, RateLimit, Tiered, TieredConfig};

    use crate::spec::split_top_level;
    let list = |key: &'static str| -> Result<Option<Vec<&str>>, OpenError> {
        let Some(value) = params.get(key) else { return Ok(None) };
        let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
        Ok(Some(match (key, inner) {
            (_, Some(inner)) => split_top_level('|')(inner).into_iter().map(str::trim).collect(),
            ("budget", None) => vec![value],
            _ => return Err(params.bad(key, "a bracketed list: [SPEC | SPEC ...]")),
        }))
    };
    let specs = list("tiers")?.unwrap_or_else(default_tiers);
    if specs.len() < 2 {
        return Err(params.bad("tiers", "at least two tiers: [SPEC | SPEC ...]"));
    }
    let budgets = list("budget")?.unwrap_or_default();
    if budgets.len() >= specs.len() {
        return Err(params.bad("budget", "one size per tier but the last: [SIZE | SIZE ...]"));
    }
    let mut tiers = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let tier = open_tier(spec).map_err(|source| OpenError::Tier {
            index,
            spec: spec.to_string(),
            source: Box::new(source),
        })?;
        let backend = tier.backend();
        let budget = match budgets.get(index) {
            Some(size) => parse_size(size).ok_or_else(|| params.bad("budget", "sizes such as [64MiB | 1GiB]"))?,
            None => backend.bytes_avail().saturating_add(backend.stats().memory_used),
        };
        tiers.push(tier.with_budget(budget));
    }
    let mut config = TieredConfig::new();
    let percent = |key: &'static str, default: f64| -> Result<f64, OpenError> {
        params.get(key).map_or(Ok(default), |v| {
            v.strip_suffix('%')
                .and_then(|n| n.trim().parse::<u8>().ok())
                .filter(|&n| n <= 100)
                .map(|n| f64::from(n) / 100.0)
                .ok_or_else(|| params.bad(key, "a percentage of the budget, 0% to 100%"))
        })
    };
    let (high, low) = (percent("high", config.high)?, percent("low", config.low)?);
    config = config.with_watermarks(high, low);
    if config.low > config.high {
        return Err(params.bad("low", "a watermark at most the high one"));
    }
    if let Some(threshold) = params.size("huge")? {
        let at_once = params.choice("huge_mode", &["first", "at_once"], "first or at_once")? == Some("at_once");
        config = config.with_huge(HugePolicy { threshold, at_once });
    } else if params.get("huge_mode").is_some() {
        return Err(params.bad("huge_mode", "huge=SIZE with it (the threshold)"));
    }
    if let Some(on) = params.flag("promote")? {
        config = config.with_promote(on);
    }
    if let Some(bytes) = params.size("rate")? {
        config = config.with_rate_limit(RateLimit::per_second(bytes));
    }
    if params.flag("auto")? == Some(false) {
        config = config.with_auto(None);
    }
    Ok(Tiered::new(tiers, config)?)
}

/// The tiers of a bare `tiered`: compressed RAM over a file where this
/// build has them, else over shmem, else memory over memory.
#[cfg(feature = "tiered")]
fn default_tiers<'a>() -> Vec<&'a str> {
    let available = available_in(BACKENDS);
    let first = ["compressed", "memory"];
    let last = ["file", "shmem", "memory"];
    let pick = |names: &[&'static str]| {
        *names
            .iter()
            .find(|n| available.contains(n))
            .expect("memory is always built")
    };
    vec![pick(&first), pick(&last)]
}

/// One tier of a tiered spec. A compressed tier gets compaction as its
/// maintenance, so that the memory of pages moved out comes back.
#[cfg(feature = "tiered")]
fn open_tier(spec: &str) -> Result<pagebackup_tiered::Tier, OpenError> {
    use pagebackup_tiered::Tier;
    #[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
    {
        let parsed = Spec::parse(spec)?;
        if parsed.name == "compressed" {
            let entry = BACKENDS
                .iter()
                .find(|e| e.name == "compressed")
                .expect("the compressed entry");
            let backend = std::sync::Arc::new(compressed_backend(&Params::new(entry, parsed)?)?);
            let compact = std::sync::Arc::clone(&backend);
            return Ok(Tier::new(backend).with_maintenance(move || {
                compact.compact();
            }));
        }
    }
    Ok(Tier::new(open_in(BACKENDS, spec)?))
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

    /// `shards` as a count of at least 1, if given.
    #[allow(dead_code, reason = "used by the backends some feature sets leave out")]
    pub(crate) fn shards(&self) -> Result<Option<usize>, OpenError> {
        self.int("shards")?
            .map(|n| {
                usize::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| self.bad("shards", "a whole number of at least 1"))
            })
            .transpose()
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
