//! The table of backends [`open`](crate::open) knows, with the feature that
//! compiles each in. Each backend parses its own parameters
//! (`from_params`, with its `PARAMS` table).

use pagebackup_core::raw::params::Spec;
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
}

pub(crate) const BACKENDS: &[Entry] = &[
    Entry {
        name: "memory",
        feature: "",
        open: Some(open_memory),
    },
    Entry {
        name: "shmem",
        feature: "shmem",
        #[cfg(feature = "shmem")]
        open: Some(open_shmem),
        #[cfg(not(feature = "shmem"))]
        open: None,
    },
    Entry {
        name: "file",
        feature: "file",
        #[cfg(feature = "file")]
        open: Some(open_file),
        #[cfg(not(feature = "file"))]
        open: None,
    },
    Entry {
        name: "compressed",
        feature: "compressed",
        #[cfg(any(feature = "compressed-lz4", feature = "compressed-zstd"))]
        open: Some(open_compressed),
        #[cfg(not(any(feature = "compressed-lz4", feature = "compressed-zstd")))]
        open: None,
    },
    Entry {
        name: "tiered",
        feature: "tiered",
        #[cfg(feature = "tiered")]
        open: Some(open_tiered_boxed),
        #[cfg(not(feature = "tiered"))]
        open: None,
    },
    Entry {
        name: "redis",
        feature: "redis",
        #[cfg(feature = "redis")]
        open: Some(open_redis),
        #[cfg(not(feature = "redis"))]
        open: None,
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

/// Opens a `tiered:` spec's parameters: each tier of `tiers=[SPEC | SPEC
/// ...]` with [`open_in`] (so tiers may be tiered too), the budgets of the
/// upper tiers, and the policies.
#[cfg(feature = "tiered")]
pub(crate) fn open_tiered(params: &[(&str, &str)]) -> Result<pagebackup_tiered::Tiered, OpenError> {
    use pagebackup_core::raw::params::{Params, parse_size, redact_passwords, split_top_level};
    use pagebackup_tiered::{HugePolicy, RateLimit, Tiered, TieredConfig};
    let params = Params::new("tiered", TieredConfig::PARAMS, params)?;
    let list = |key: &'static str| -> Result<Option<Vec<&str>>, OpenError> {
        let Some(value) = params.get(key) else { return Ok(None) };
        let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
        Ok(Some(match (key, inner) {
            (_, Some(inner)) => split_top_level('|')(inner).into_iter().map(str::trim).collect(),
            ("budget", None) => vec![value],
            _ => return Err(params.bad(key, "a bracketed list: [SPEC | SPEC ...]").into()),
        }))
    };
    let specs = list("tiers")?.unwrap_or_else(default_tiers);
    if specs.len() < 2 {
        return Err(params.bad("tiers", "at least two tiers: [SPEC | SPEC ...]").into());
    }
    let budgets = list("budget")?.unwrap_or_default();
    if budgets.len() >= specs.len() {
        return Err(params
            .bad("budget", "one size per tier but the last: [SIZE | SIZE ...]")
            .into());
    }
    let mut tiers = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let tier = open_tier(spec).map_err(|source| OpenError::Tier {
            index,
            spec: redact_passwords(spec),
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
                .ok_or_else(|| params.bad(key, "a percentage of the budget, 0% to 100%").into())
        })
    };
    let (high, low) = (percent("high", config.high)?, percent("low", config.low)?);
    config = config.with_watermarks(high, low);
    if config.low > config.high {
        return Err(params.bad("low", "a watermark at most the high one").into());
    }
    if let Some(threshold) = params.size("huge")? {
        let at_once = params.choice("huge_mode", &["first", "at_once"])? == Some("at_once");
        config = config.with_huge(HugePolicy { threshold, at_once });
    } else if params.get("huge_mode").is_some() {
        return Err(params.bad("huge_mode", "huge=SIZE with it (the threshold)").into());
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
    let pick = |names: &[&'static str]| {
        *names
            .iter()
            .find(|n| available.contains(n))
            .expect("memory is always built")
    };
    vec![pick(&["compressed", "memory"]), pick(&["file", "shmem", "memory"])]
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
            use pagebackup_compressed::{CompressedBackend, CompressedConfig};
            let config = CompressedConfig::from_params(&parsed.params)?;
            let backend = std::sync::Arc::new(CompressedBackend::new(config)?);
            let compact = std::sync::Arc::clone(&backend);
            return Ok(Tier::new(backend).with_maintenance(move || {
                compact.compact();
            }));
        }
    }
    Ok(Tier::new(open_in(BACKENDS, spec)?))
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
        },
        Entry {
            name: "absent",
            feature: "absent-feature",
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
