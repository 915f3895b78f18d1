//! [`CompressedConfig`]: how a compressed backend is set up.

#[cfg(feature = "zstd")]
use pagebackup_core::Page;
use pagebackup_core::raw::params::{ParamDoc, ParamError, Params};
use pagebackup_core::raw::seal::{SEAL_KEY_PARAM, SEAL_PARAM, SealKeySource};

#[cfg(feature = "zstd")]
use crate::Dictionary;
use crate::{Algorithm, NAME};

/// The default huge threshold: pages that compress to more than this many
/// bytes are stored raw. Measured with lz4 and zstd-1 on the built-in
/// corpus, machine code and a Python heap (README): from 3840 bytes up the
/// effective ratio is the same to 0.1% on each, since almost no page
/// compresses to 3840-4095 bytes; 3584 loses 0.4% of it on machine code
/// with lz4, 3072 loses 8.5% there and 2.7% on the built-in corpus.
/// 3840 is the lowest threshold that keeps it all, so an object is kept
/// compressed only where it saves at least 1/16 of a page per decompression.
pub const DEFAULT_HUGE_THRESHOLD: usize = 3840;
/// The huge thresholds accepted.
pub const HUGE_THRESHOLDS: std::ops::RangeInclusive<usize> = 64..=4095;

/// Settings of a [`CompressedBackend`](crate::CompressedBackend).
///
/// Each setting is a parameter of the `compressed:` spec (`algo`, `level`,
/// `limit`, `dict`, `checksum`, `huge`, `seal`, `seal_key`), which
/// [`from_params`](Self::from_params) parses:
///
/// ```
/// use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
/// use pagebackup_core::{BackupBackend, BackupFlags, Page};
///
/// let config = CompressedConfig::new(Algorithm::Lz4).with_limit(64 << 20).with_checksum(true);
/// let backend = CompressedBackend::new(config)?;
/// let handle = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)?;
/// println!("{}", backend.stats()); // 1 page (4.0 KiB) stored in 0 B, ...
/// backend.drop_handle(handle)?;
/// // The same settings as a spec's parameters:
/// CompressedConfig::from_params(&[("algo", "lz4"), ("limit", "64MiB"), ("checksum", "on")])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompressedConfig {
    /// The codec.
    pub algorithm: Algorithm,
    /// Most bytes of memory the backend may use, metadata included; `None`
    /// for no limit.
    pub limit: Option<u64>,
    /// A zstd dictionary (zstd only).
    #[cfg(feature = "zstd")]
    pub dictionary: Option<Dictionary>,
    /// Pages like those the backend will store: at construction, the
    /// dictionary must make them smaller than no dictionary does.
    #[cfg(feature = "zstd")]
    pub dictionary_samples: Vec<Box<Page>>,
    /// Keep a CRC-32 of every stored object and check it on restore, so that
    /// corrupted memory gives `Corrupt` instead of a wrong page. Off by
    /// default. Measured cost: 4 bytes per stored object, about 5% of lz4's
    /// restore throughput and 2% of zstd's; backups are not measurably slower.
    pub checksum: bool,
    /// Pages whose compressed form is larger than this many bytes are stored
    /// raw (zram's huge pages): [`DEFAULT_HUGE_THRESHOLD`] unless set, in
    /// [`HUGE_THRESHOLDS`].
    pub huge_threshold: usize,
    /// Where the sealing key comes from, if every object is sealed
    /// (encrypted and authenticated after compression); `None` stores
    /// objects as they are. Needs the crate's `seal` feature.
    pub seal: Option<SealKeySource>,
}

impl CompressedConfig {
    /// The parameters of the spec `compressed:...` ([`from_params`](Self::from_params)).
    pub const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            key: "algo",
            syntax: "lz4|zstd",
            default: "lz4 (zstd without feature lz4)",
            meaning: "the codec",
        },
        ParamDoc {
            key: "level",
            syntax: "N",
            default: "1",
            meaning: "zstd's level, in zstd's range",
        },
        ParamDoc {
            key: "limit",
            syntax: "SIZE",
            default: "no limit",
            meaning: "most bytes of memory, metadata included; at least `CompressedBackend::min_limit()`",
        },
        ParamDoc {
            key: "dict",
            syntax: "PATH",
            default: "none",
            meaning: "a zstd dictionary file",
        },
        ParamDoc {
            key: "checksum",
            syntax: "on|off",
            default: "off",
            meaning: "a CRC-32 per stored object, checked on restore",
        },
        ParamDoc {
            key: "huge",
            syntax: "BYTES",
            default: "3840",
            meaning: "pages compressing to more are stored raw; 64 to 4095",
        },
        SEAL_PARAM,
        SEAL_KEY_PARAM,
    ];

    /// The config a spec's parameters (see [`PARAMS`](Self::PARAMS)) give,
    /// with its dictionary file loaded. The ranges of the level, the limit
    /// and the threshold are checked by
    /// [`CompressedBackend::new`](crate::CompressedBackend::new), which
    /// every way of building one takes.
    pub fn from_params(params: &[(&str, &str)]) -> Result<Self, ParamError> {
        let params = Params::new(NAME, Self::PARAMS, params)?;
        let default = if cfg!(feature = "lz4") { "lz4" } else { "zstd" };
        let algorithm = match params.choice("algo", &["lz4", "zstd"])?.unwrap_or(default) {
            "lz4" if params.get("level").is_some() => {
                return Err(params.bad("level", "no level: algo=lz4 takes none, only algo=zstd does"));
            }
            #[cfg(feature = "lz4")]
            "lz4" => Algorithm::Lz4,
            #[cfg(feature = "zstd")]
            "zstd" => Algorithm::Zstd {
                level: params.number("level")?.unwrap_or(1),
            },
            _ => {
                return Err(params.bad(
                    "algo",
                    "a codec this build has (features compressed-lz4, compressed-zstd)",
                ));
            }
        };
        let mut config = CompressedConfig::new(algorithm).with_checksum(params.flag("checksum")?.unwrap_or(false));
        config.limit = params.size("limit")?;
        config.seal = SealKeySource::from_params(&params)?;
        if let Some(huge) = params.size("huge")? {
            config.huge_threshold = usize::try_from(huge).unwrap_or(usize::MAX);
        }
        if let Some(path) = params.path("dict") {
            #[cfg(feature = "zstd")]
            {
                config.dictionary = Some(Dictionary::load(path).map_err(|e| params.unusable("dict", e))?);
            }
            #[cfg(not(feature = "zstd"))]
            {
                let _ = path;
                return Err(params.bad(
                    "dict",
                    "no dictionary: this build has no zstd (feature compressed-zstd)",
                ));
            }
        }
        Ok(config)
    }

    /// `algorithm` with no limit, no dictionary, no checksum and the default threshold.
    pub fn new(algorithm: Algorithm) -> Self {
        CompressedConfig {
            algorithm,
            limit: None,
            #[cfg(feature = "zstd")]
            dictionary: None,
            #[cfg(feature = "zstd")]
            dictionary_samples: Vec::new(),
            checksum: false,
            huge_threshold: DEFAULT_HUGE_THRESHOLD,
            seal: None,
        }
    }

    /// With a memory limit of `bytes`.
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// With a zstd dictionary.
    #[cfg(feature = "zstd")]
    pub fn with_dictionary(mut self, dictionary: Dictionary) -> Self {
        self.dictionary = Some(dictionary);
        self
    }

    /// With sample pages the dictionary is checked on at construction.
    #[cfg(feature = "zstd")]
    pub fn with_dictionary_samples(mut self, samples: Vec<Box<Page>>) -> Self {
        self.dictionary_samples = samples;
        self
    }

    /// With per-object checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// With objects sealed under a key from `source`, or not (`None`).
    pub fn with_seal(mut self, source: Option<SealKeySource>) -> Self {
        self.seal = source;
        self
    }

    /// With another huge-page threshold (in [`HUGE_THRESHOLDS`]).
    pub fn with_huge_threshold(mut self, bytes: usize) -> Self {
        self.huge_threshold = bytes;
        self
    }
}
