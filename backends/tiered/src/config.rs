//! [`TieredConfig`] and the policies it holds.

use std::time::Duration;

use pagebackup_core::raw::params::{ParamDoc, ParamError, Params, parse_size, split_top_level};

use crate::Tier;

/// How the tiered backend treats pages its upper tier stores poorly: pages
/// whose [`stored_size`](pagebackup_core::BackupBackend::stored_size) is above
/// `threshold` bytes (zram's huge pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePolicy {
    /// Pages costing more than this many bytes in their tier are huge.
    pub threshold: u64,
    /// `true`: a huge page moves down as soon as it is backed up (zram's
    /// `huge` writeback without the trigger); `false`: huge pages are the
    /// first the watermark policy moves, before cold ones.
    pub at_once: bool,
}

/// How the policy picks the pages a tier over its high watermark moves
/// down, and which pages restored from below it lets back up.
///
/// Measured with `pagebackup bench --working-set 16384` over
/// `[compressed:algo=lz4 | compressed:algo=zstd,level=9]`, a 4 MiB budget
/// and promotion on (three runs each): on a Zipf 0.99 replay the first
/// tier served 75–77% of restores under [`Lfu`](Policy::Lfu) against
/// 70–71% under [`S3Fifo`](Policy::S3Fifo); on a 90/10 one, 76–84%
/// against 81–84%, but S3-FIFO moved about twice the pages up (every page
/// restored twice below comes up) and its policy thread took 5–9% of a
/// core against under 0.1%, which cost it half its restore throughput.
/// Hence [`Lfu`](Policy::Lfu) is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// A counting clock with TinyLFU's admission test (the default): each
    /// page counts its restores, halved whenever the tier has turned over;
    /// the least restored lately go first, the longest idle among equals;
    /// a page restored twice below comes up only if hotter than the next
    /// victim. Best on skew that stays put (a hot set, Zipf), since
    /// frequency outlives a burst of one-time reads.
    #[default]
    Lfu,
    /// S3-FIFO (Yang et al., SOSP 2023), run in batches: pages enter a
    /// small FIFO; at each run, a page of it restored since is moved to
    /// the main FIFO, the others go down first, oldest first, while the
    /// small FIFO holds over a tenth of the tier; a page of the main FIFO
    /// restored since the last run is reinserted with its count less one
    /// (a second chance), the others go down oldest first. A page restored
    /// twice below (S3-FIFO's ghost hit) comes back up into the main FIFO.
    /// Quick to drop pages read once.
    S3Fifo,
}

impl Policy {
    /// The name in a spec's `policy=`: `lfu` or `s3fifo`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lfu => "lfu",
            Policy::S3Fifo => "s3fifo",
        }
    }
}

/// A bound on the bytes the policy writes down per period (zram's
/// `writeback_limit`): moves stop for the rest of a period once `bytes` of
/// pages (4096 per page) moved in it.
///
/// It bounds moves made by the policy and by
/// [`writeback`](crate::Tiered::writeback); backups placed in a lower tier
/// directly (a full upper tier, [`BackupFlags::writeback`](pagebackup_core::BackupFlags))
/// are the caller's writes and are not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Bytes of pages that may move per period.
    pub bytes: u64,
    /// The period.
    pub period: Duration,
}

impl RateLimit {
    /// `bytes` per second.
    pub const fn per_second(bytes: u64) -> Self {
        RateLimit {
            bytes,
            period: Duration::from_secs(1),
        }
    }
}

/// The policies of a [`Tiered`](crate::Tiered) backend. Budgets are per tier,
/// on [`Tier`](crate::Tier); everything else is here.
///
/// The `tiered:` spec's `high`, `low`, `huge`, `huge_mode`, `promote`,
/// `keep_lower`, `policy`, `trim`, `rate` and `auto` parameters set these fields; `tiers` and `budget` make
/// the [`Tier`](crate::Tier)s:
///
/// ```
/// use pagebackup_core::{BackupBackend, BackupFlags, MemoryBackend, Page};
/// use pagebackup_tiered::{RateLimit, Tier, Tiered, TieredConfig};
///
/// let config = TieredConfig::new()
///     .with_watermarks(0.9, 0.7)
///     .with_rate_limit(RateLimit::per_second(64 << 20))
///     .with_auto(None); // run the policy with `run_policy_step` instead
/// let tiered = Tiered::new(
///     vec![
///         Tier::new(MemoryBackend::new()).with_budget(64 * 4096),
///         Tier::new(MemoryBackend::new()),
///     ],
///     config,
/// )?;
/// let handle = tiered.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)?;
/// tiered.drop_handle(handle)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TieredConfig {
    /// The high watermark, a fraction of each budget: once a tier holds more,
    /// the policy moves its coldest pages down (default 0.9).
    pub high: f64,
    /// The low watermark: the policy moves pages until the tier holds at most
    /// this fraction of its budget (default 0.7), zswap's hysteresis.
    pub low: f64,
    /// Pages the upper tier stores poorly go down first or at once; `None`
    /// (the default) treats them like any other page.
    pub huge: Option<HugePolicy>,
    /// A page restored from a lower tier is copied back to the first tier
    /// once it proves hot: restored at least twice since it went down and
    /// at least twice as often lately as the page the policy would move
    /// out of the first tier next, counting one more restore for each
    /// (TinyLFU's admission test with a margin, on the per-page counts the
    /// policy keeps; under [`Policy::S3Fifo`], the two restores alone).
    /// Promotions take from the rate limit. The first tier takes the page
    /// within its budget, and the policy then makes room by moving the
    /// coldest pages down. With a policy thread ([`auto`](Self::auto)) or
    /// task (`Tiered::spawn_policy`), the restore only queues the page, and
    /// the policy reads it again and copies it up at its next run (brought
    /// forward once 64 pages wait): a restore from below costs its tier's
    /// restore, not a compression for the first tier too, and the policy
    /// wakes once per batch of promotions. Without either, the restore
    /// promotes the page itself.
    /// Off by default.
    pub promote: bool,
    /// A promoted page keeps its copy in the tier it came from (the
    /// default): the bytes under a handle never change, so that copy stays
    /// good, and when the policy moves the page down again it only drops
    /// the upper copy — no copy down, no recompression in the lower tier,
    /// and no hole left in it by the promotion. The kept copy takes its
    /// tier's space for as long as the page stays above (counted in that
    /// tier's `held_bytes`, its [`TierStats::kept_pages`](crate::TierStats::kept_pages)
    /// and `memory_used`; the page itself counts once in `stored_pages`).
    /// A page restored at least eight times lately above (heat halves as
    /// the policy ages it) has settled there: a policy run releases its
    /// kept copy, which would only cost RAM.
    /// Off: a promotion releases the lower copy, and a move down copies the
    /// page again.
    ///
    /// Measured with `pagebackup bench --working-set 16384` over
    /// `[compressed:algo=lz4 | compressed:algo=zstd,level=9]`, a 4 MiB
    /// budget, promotion on (three runs each, a loaded machine): on Zipf
    /// 0.99, the policy thread took 3.2–3.7% of a core with kept copies
    /// against 10.4–13.7% without, for 1.15–1.17x the RAM of zstd-9 alone
    /// against 1.10–1.11x; on 90/10, 0.0–1.9% against 0.4–7.0%, for the
    /// same RAM (1.10–1.11x).
    pub keep_lower: bool,
    /// A bound on the bytes moved per period, down and up; `None` (the default) for none.
    pub rate_limit: Option<RateLimit>,
    /// How victims and promotions are chosen (default [`Policy::Lfu`]).
    pub policy: Policy,
    /// Under [`Policy::Lfu`], a budgeted tier holds what is hot, not what
    /// fits: each time its restore window passes (as many restores as ten
    /// per page of the tier, the window after which the policy halves its
    /// pages' counts), its pages restored at most once in that window move
    /// down even while the tier is under its high watermark, and a page
    /// below must then be clearly hotter than the coldest page left above
    /// to come up. Off, a tier fills to its watermarks. `None` (the
    /// default): on under [`Policy::Lfu`]; [`Policy::S3Fifo`] does not trim
    /// (its queues decide what goes down), and refuses `Some(true)`.
    ///
    /// Measured with `pagebackup bench --working-set 4096` over
    /// `[compressed | compressed:algo=zstd,level=9]`, a 4 MiB budget and
    /// promotion on (three runs each): on 90/10 the stack kept 1.15x
    /// the RAM of zstd-9 alone with trimming against 1.33–1.34x without
    /// (505 pages above for a hot set of 410, against 1 345–1 364), its
    /// restores ran at 0.67–0.68x lz4 alone against 0.67–0.72x (90.6 % of
    /// them served above against 93.5 %: the cold pages that had come up
    /// served the rest), its hot restores at 0.90–0.91x against 0.86–0.90x,
    /// and its policy thread took 0.0 % of a core in the measured pass
    /// against 10.5–15.5 % (no page moved, against 322 promotions of cold
    /// pages). On Zipf 0.99, whose popularity has no edge between hot and
    /// cold, each window moves some 200 pages of the tail down and 64 come
    /// back up: 1.37–1.43x the RAM against 1.42–1.46x, the same restores
    /// (0.55–0.60x), and 1.3–16.8 % of a core in the measured pass against
    /// 0.0 %. Those passes came after one warm-up pass, within the stack's
    /// first window; after twelve (`--warmup 12`) the policy thread took
    /// 0.0 % on 90/10 and 2.7–3.3 % on Zipf 0.99 (two runs each).
    pub trim: Option<bool>,
    /// The automatic mode: a background thread runs the policy every
    /// interval, and at once when a tier passes its high watermark. `None`
    /// leaves the policy to [`run_policy_step`](crate::Tiered::run_policy_step)
    /// and [`writeback`](crate::Tiered::writeback). Default: every 100 ms.
    pub auto: Option<Duration>,
}

impl TieredConfig {
    /// The parameters of a `tiered:` spec, which
    /// [`from_params`](Self::from_params) parses.
    pub const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            key: "tiers",
            syntax: "[SPEC | SPEC ...]",
            default: "[compressed | file], or what the build has",
            meaning: "the tiers, first the fastest, each any spec (tiered too); at least two",
        },
        ParamDoc {
            key: "budget",
            syntax: "SIZE|[SIZE | ...]",
            default: "what each tier can take when opened",
            meaning: "the budgets of the upper tiers",
        },
        ParamDoc {
            key: "high",
            syntax: "PERCENT",
            default: "90%",
            meaning: "the high watermark: past it, pages move down",
        },
        ParamDoc {
            key: "low",
            syntax: "PERCENT",
            default: "70%",
            meaning: "the low watermark: moves stop at it",
        },
        ParamDoc {
            key: "huge",
            syntax: "SIZE",
            default: "none",
            meaning: "pages costing more in a tier move down first",
        },
        ParamDoc {
            key: "huge_mode",
            syntax: "first|at_once",
            default: "first",
            meaning: "huge pages move first, or at their backup",
        },
        ParamDoc {
            key: "promote",
            syntax: "on|off",
            default: "off",
            meaning: "a page restored twice while down moves back up",
        },
        ParamDoc {
            key: "keep_lower",
            syntax: "on|off",
            default: "on",
            meaning: "a promoted page keeps its copy below, so a move down is a drop",
        },
        ParamDoc {
            key: "policy",
            syntax: "lfu|s3fifo",
            default: "lfu",
            meaning: "which pages go down and come up: a counting clock, or S3-FIFO",
        },
        ParamDoc {
            key: "trim",
            syntax: "on|off",
            default: "on with policy=lfu",
            meaning: "pages restored at most once in a window leave a budgeted tier under its watermark too",
        },
        ParamDoc {
            key: "rate",
            syntax: "SIZE",
            default: "no limit",
            meaning: "most bytes moved down per second",
        },
        ParamDoc {
            key: "auto",
            syntax: "on|off",
            default: "on",
            meaning: "the policy thread",
        },
    ];

    /// Watermarks at 90% and 70%, no huge-page policy, no promotion, no rate
    /// limit, automatic mode every 100 ms.
    pub fn new() -> Self {
        TieredConfig {
            high: 0.9,
            low: 0.7,
            huge: None,
            promote: false,
            keep_lower: true,
            rate_limit: None,
            policy: Policy::Lfu,
            trim: None,
            auto: Some(Duration::from_millis(100)),
        }
    }

    /// With the eviction and admission policy `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// With trimming of budgeted tiers to their hot pages on or off
    /// ([`trim`](Self::trim)).
    pub fn with_trim(mut self, on: bool) -> Self {
        self.trim = Some(on);
        self
    }

    /// Whether budgeted tiers are trimmed: [`trim`](Self::trim), or by
    /// default under [`Policy::Lfu`].
    pub(crate) fn trims(&self) -> bool {
        self.policy == Policy::Lfu && self.trim != Some(false)
    }

    /// With the watermarks `high` and `low` (fractions, `0 <= low <= high <= 1`).
    pub fn with_watermarks(mut self, high: f64, low: f64) -> Self {
        self.high = high;
        self.low = low;
        self
    }

    /// With a huge-page policy.
    pub fn with_huge(mut self, huge: HugePolicy) -> Self {
        self.huge = Some(huge);
        self
    }

    /// With promotion on restore on or off.
    pub fn with_promote(mut self, on: bool) -> Self {
        self.promote = on;
        self
    }

    /// With promoted pages keeping their copy below on or off.
    pub fn with_keep_lower(mut self, on: bool) -> Self {
        self.keep_lower = on;
        self
    }

    /// With a rate limit on moves.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// With the automatic mode every `interval`, or off (`None`).
    pub fn with_auto(mut self, interval: Option<Duration>) -> Self {
        self.auto = interval;
        self
    }
}

impl TieredConfig {
    /// The tiers and the policies a `tiered:` spec's parameters give
    /// ([`PARAMS`](Self::PARAMS)). Each tier of `tiers=[SPEC | SPEC ...]`
    /// (`default_tiers` without it) is opened by `open_tier(index, spec)`,
    /// which knows the backends (a tier may be tiered too) and says which
    /// tier failed in its error; a tier without a `budget` gets what its
    /// backend can take when opened.
    pub fn from_params<E: From<ParamError>>(
        params: &[(&str, &str)],
        default_tiers: &[&str],
        mut open_tier: impl FnMut(usize, &str) -> Result<Tier, E>,
    ) -> Result<(Vec<Tier>, TieredConfig), E> {
        let params = Params::new("tiered", Self::PARAMS, params)?;
        let list = |key: &'static str| -> Result<Option<Vec<&str>>, ParamError> {
            let Some(value) = params.get(key) else { return Ok(None) };
            let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
            Ok(Some(match (key, inner) {
                (_, Some(inner)) => split_top_level('|')(inner).into_iter().map(str::trim).collect(),
                ("budget", None) => vec![value],
                _ => return Err(params.bad(key, "a bracketed list: [SPEC | SPEC ...]")),
            }))
        };
        let specs = list("tiers")?.unwrap_or_else(|| default_tiers.to_vec());
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
            let tier = open_tier(index, spec)?;
            let backend = tier.backend();
            let budget = match budgets.get(index) {
                Some(size) => parse_size(size).ok_or_else(|| params.bad("budget", "sizes such as [64MiB | 1GiB]"))?,
                None => backend.bytes_avail().saturating_add(backend.stats().memory_used),
            };
            tiers.push(tier.with_budget(budget));
        }
        let mut config = TieredConfig::new();
        let percent = |key: &'static str, default: f64| -> Result<f64, ParamError> {
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
        if let Some(on) = params.flag("keep_lower")? {
            config = config.with_keep_lower(on);
        }
        if params.choice("policy", &["lfu", "s3fifo"])? == Some("s3fifo") {
            config = config.with_policy(Policy::S3Fifo);
        }
        if let Some(on) = params.flag("trim")? {
            config = config.with_trim(on);
        }
        if let Some(bytes) = params.size("rate")? {
            config = config.with_rate_limit(RateLimit::per_second(bytes));
        }
        if params.flag("auto")? == Some(false) {
            config = config.with_auto(None);
        }
        Ok((tiers, config))
    }
}

impl Default for TieredConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Which pages an explicit [`writeback`](crate::Tiered::writeback) moves to
/// the lowest tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritebackFilter {
    /// Pages not backed up or restored for at least this long (zram's `idle`).
    Idle(Duration),
    /// Pages above the [`HugePolicy`] threshold (none without a huge policy).
    Huge,
    /// Every page of the upper tiers.
    All,
}
