//! The report model every bench mode measures into: the machine, the corpus,
//! the mode's setup, and rows. Rows share one type whatever the mode; the
//! fields a mode does not fill are absent from the JSON. The renderers
//! ([`crate::render`] for text and Markdown, [`crate::chart`] for SVG) and
//! `--json` read this model and nothing else.
//!
//! A backend spec enters the model through [`Row::new`] or [`shown`] only,
//! which redact the password of every URL in it, so no output can show one.

use pagebackup::raw::params::redact_passwords;
use serde::{Deserialize, Serialize};

/// The version of the JSON layout; raised whenever a field changes meaning
/// or goes away (a new optional field does not raise it).
pub const SCHEMA_VERSION: u32 = 2;

/// `text` (a spec, a message) as it may be shown: every URL's password
/// replaced by `***`, by the function the spec parser uses.
pub fn shown(text: &str) -> String {
    redact_passwords(text)
}

/// The machine a benchmark ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// `uname -sr`.
    pub kernel: String,
    /// Bytes of RAM.
    pub memory_bytes: u64,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let uname = rustix::system::uname();
        let info = rustix::system::sysinfo();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: format!(
                "{} {}",
                uname.sysname().to_string_lossy(),
                uname.release().to_string_lossy()
            ),
            memory_bytes: (info.totalram as u64).saturating_mul(u64::from(info.mem_unit)),
        }
    }
}

/// The corpus the pages came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusInfo {
    /// `built-in` or the file's path.
    pub source: String,
    /// Pages.
    pub pages: usize,
    /// Pages by kind.
    pub page_classes: Vec<(String, usize)>,
}

/// The bench modes, each a way of measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every backend and its baselines over the corpus, batched and single
    /// pages, on one thread and several.
    Plain,
    /// Through the async API with operations in flight, and the runtime's
    /// timer lateness meanwhile.
    Async,
    /// A skewed restore pattern over a working set, against a RAM budget.
    WorkingSet,
    /// A redis backend against `redis-benchmark` on the same server.
    Redis,
    /// An offload region: ordinary memory paged to a backend on fault.
    Region,
}

impl Mode {
    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Async => "async",
            Mode::WorkingSet => "working-set",
            Mode::Redis => "redis",
            Mode::Region => "region",
        }
    }
}

/// The operations a benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `backup_pages`, then `flush`.
    Backup,
    /// `copy_pages`.
    Restore,
    /// `drop_handles`.
    Drop,
}

impl Op {
    /// The name in reports: `backup`, `restore`, `drop`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Restore => "restore",
            Op::Drop => "drop",
        }
    }
}

/// Whether a row is a backend asked for or what it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A backend asked for.
    Backend,
    /// A baseline (`baseline:...`, `kernel:...`, a reference tool).
    Baseline,
}

/// One tier's share at the end of a working-set replay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSplit {
    /// Pages the tier holds.
    pub pages: u64,
    /// Bytes of RAM the tier uses.
    pub ram_bytes: u64,
    /// Copies the tier keeps of pages promoted above it (in `ram_bytes`,
    /// not in `pages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_pages: Option<u64>,
    /// The share of the measured restores the tier served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<f64>,
    /// The mean time of a measured restore the tier served, µs (a restore
    /// that promotes its page includes the promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_us: Option<f64>,
}

/// One result: an adapter, a mode, and (for most modes) an operation and
/// how the pages were handed over. Fields a mode does not measure are `None`
/// and absent from the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The adapter: a backend spec (passwords redacted), `baseline:...` or `kernel:...`.
    pub backend: String,
    /// A backend asked for, or a baseline.
    pub role: Role,
    /// The mode that measured it.
    pub mode: Mode,
    /// The operation (absent for rows of a whole workload, such as ticker rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Pages per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Calls in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Pages in the corpus or working set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<usize>,
    /// GB/s of pages backed up or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Operations (pages) per second, where GB/s does not fit (drops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Median time per page of a call, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th percentile time per page of a call, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Original bytes / bytes used (RAM and storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ratio: Option<f64>,
    /// Bytes the backed-up pages took (RAM and storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The baseline this row is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs: Option<String>,
    /// Speed against `vs`: this row's GB/s over the baseline's in the same mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_ratio: Option<f64>,

    // Async rows.
    /// GB/s over the sync backend's with the same batch on one thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_sync: Option<f64>,
    /// GB/s over `baseline:spawn_blocking-pwrite`'s, single pages at the same depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_spawn_blocking: Option<f64>,
    /// Median lateness of the runtime's ticker under this load, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticker_p50_us: Option<f64>,
    /// 99th percentile lateness of the runtime's ticker under this load, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticker_p99_us: Option<f64>,
    /// Largest lateness of the runtime's ticker under this load, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticker_max_us: Option<f64>,
    /// 99th percentile lateness of the ticker on the idle runtime, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_p99_us: Option<f64>,
    /// Time to first byte: the median time of a single-page restore on
    /// the idle runtime, from the call to its page coming back, µs (on the
    /// batch-1, depth-1 ticker row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_us: Option<f64>,

    // Working-set rows (and region rows: `ram_bytes`).
    /// Bytes of RAM the backend used at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_bytes: Option<u64>,
    /// The highest RAM use seen during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_ram_bytes: Option<u64>,
    /// The RAM budget (the sum of the upper tiers' budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
    /// Original bytes per byte of RAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_ratio: Option<f64>,
    /// Hot-page restores, GB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_gbps: Option<f64>,
    /// Cold-page restores, GB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_gbps: Option<f64>,
    /// Restores per second, hot and cold together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores_per_s: Option<f64>,
    /// Pages moved down a tier during the measured pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_down: Option<u64>,
    /// Pages moved up a tier during the measured pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_up: Option<u64>,
    /// Measured restores during which another process ran (the thread was
    /// preempted): left out of the restore times and throughputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_restores: Option<u64>,
    /// The share of measured hot restores served by the first tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_from_first: Option<f64>,
    /// Each tier's pages and RAM at the end, first tier first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<TierSplit>>,
    /// A tiered stack's hot GB/s over its first tier's alone on the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_vs_first: Option<f64>,
    /// A tiered stack's restores/s over its first tier's alone on the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores_vs_first: Option<f64>,
    /// The `hot_vs_first` a two-tier stack would reach if each hot restore
    /// cost what it costs in its tier alone, at the stack's measured split
    /// of hot restores between its tiers: the bound its policy sets, with
    /// no cost of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal_hot_vs_first: Option<f64>,
    /// The same bound for `restores_vs_first`, at the measured split of
    /// all restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal_restores_vs_first: Option<f64>,
    /// A tiered stack's RAM over its last tier's alone holding the same pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_vs_last: Option<f64>,
    /// The `ram_vs_last` floor of a two-tier stack at its measured split of
    /// pages: each tier's pages at what a page costs in that tier alone on
    /// the same trace, plus the stack's own table, with no kept copies and
    /// no more slack than each tier alone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal_ram_vs_last: Option<f64>,
    /// CPU of a tiered stack's policy thread during the measured pass, in
    /// percent of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_cpu_percent: Option<f64>,

    // Region rows.
    /// The access pattern replayed on the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Accesses per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accesses_per_s: Option<f64>,
    /// Median time to serve a fault, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_p50_us: Option<f64>,
    /// 99th percentile time to serve a fault, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_p99_us: Option<f64>,
    /// Accesses per second over the kernel's (swap on zram) on the same workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_kernel: Option<f64>,
    /// CPU seconds (user and system) the run took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    /// Region mode: CPU seconds of the region's evictor, of `cpu_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evictor_cpu_s: Option<f64>,
    /// Region mode: seconds spent serving faults, of the workload's time
    /// (on the faulting threads in signal mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_service_s: Option<f64>,
}

impl Row {
    /// A row of `mode` for `backend` (a spec or a baseline's name, redacted
    /// here) with every figure absent.
    pub fn new(backend: &str, role: Role, mode: Mode) -> Row {
        Row {
            backend: shown(backend),
            role,
            mode,
            op: None,
            batch: None,
            depth: None,
            threads: None,
            pages: None,
            gbps: None,
            ops_per_s: None,
            p50_us: None,
            p99_us: None,
            effective_ratio: None,
            memory_bytes: None,
            vs: None,
            speed_ratio: None,
            vs_sync: None,
            vs_spawn_blocking: None,
            ticker_p50_us: None,
            ticker_p99_us: None,
            ticker_max_us: None,
            idle_p99_us: None,
            ttfb_us: None,
            ram_bytes: None,
            peak_ram_bytes: None,
            budget_bytes: None,
            ram_ratio: None,
            hot_gbps: None,
            cold_gbps: None,
            restores_per_s: None,
            moved_down: None,
            moved_up: None,
            preempted_restores: None,
            hot_from_first: None,
            tiers: None,
            hot_vs_first: None,
            restores_vs_first: None,
            ideal_hot_vs_first: None,
            ideal_restores_vs_first: None,
            ram_vs_last: None,
            ideal_ram_vs_last: None,
            policy_cpu_percent: None,
            workload: None,
            accesses_per_s: None,
            fault_p50_us: None,
            fault_p99_us: None,
            vs_kernel: None,
            cpu_s: None,
            evictor_cpu_s: None,
            fault_service_s: None,
        }
    }

    /// Whether this is a baseline's row.
    pub fn is_baseline(&self) -> bool {
        self.role == Role::Baseline
    }
}

/// A skewed restore pattern (`--working-set N --hot P/Q` or `--zipf S`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skew {
    /// Pages backed up.
    pub working_set: usize,
    /// The share of pages that are hot (with `zipf`: the most popular ranks).
    pub hot_pages: f64,
    /// The share of restores that go to hot pages (with `zipf`: their
    /// probability mass).
    pub hot_restores: f64,
    /// Restores measured, and in each warm-up pass before them.
    pub restores: usize,
    /// Passes of the restore sequence (each of `restores`) run before the
    /// measured one, so that a tiered policy has settled when it is timed.
    #[serde(default = "one_pass")]
    pub warmup_passes: usize,
    /// The Zipf exponent when restores follow a Zipf law over the pages'
    /// popularity ranks instead of two classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipf: Option<f64>,
}

/// The warm-up of a report that predates [`Skew::warmup_passes`].
fn one_pass() -> usize {
    1
}

/// How the async mode ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncSetup {
    /// Worker threads of the tokio runtime.
    pub workers: usize,
    /// The ticker's period, µs.
    pub tick_us: u64,
    /// Tasks backing up and restoring while the ticker runs (the deepest
    /// load; the ticker also runs beside one task).
    pub load_tasks: usize,
}

/// Where the run's time went, so that the bench's own overhead is known:
/// the whole measuring loop, the timed windows in it, and the time inside
/// the measured calls (in a window with several threads, its busiest
/// thread's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Seconds of the whole measuring loop.
    pub run_s: f64,
    /// Seconds of the timed windows.
    pub windows_s: f64,
    /// Seconds inside the measured calls.
    pub in_calls_s: f64,
    /// Seconds, outside the timed windows, spent verifying restored pages
    /// against the corpus.
    #[serde(default)]
    pub verify_s: f64,
    /// Seconds, outside the timed windows, spent reading the backends'
    /// stats for their footprint.
    #[serde(default)]
    pub stats_s: f64,
}

impl Timing {
    /// The share of the run spent outside the measured calls, in percent:
    /// the bench's own overhead (verifying, bookkeeping, timing, threads).
    pub fn overhead_percent(&self) -> f64 {
        match self.run_s > 0.0 {
            true => (100.0 - self.percent_of_run(self.in_calls_s)).max(0.0),
            false => 0.0,
        }
    }

    /// `seconds` as a percentage of the run (0 for an empty run).
    pub fn percent_of_run(&self, seconds: f64) -> f64 {
        if self.run_s > 0.0 {
            seconds / self.run_s * 100.0
        } else {
            0.0
        }
    }
}

/// A backend the run left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// The backend's name or spec (passwords redacted).
    pub backend: String,
    /// Why it did not run, and how to make it run.
    pub reason: String,
}

/// The whole report of one bench run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The mode the run was in (a plain run with a redis backend also has
    /// `redis` rows).
    pub mode: Mode,
    /// The machine.
    pub machine: Machine,
    /// The corpus.
    pub corpus: CorpusInfo,
    /// The skewed pattern (working-set runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<Skew>,
    /// The runtime (async runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_setup: Option<AsyncSetup>,
    /// Where the time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// The backends of the build the run left out, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// The rows, in the order they were measured.
    pub results: Vec<Row>,
}

impl Report {
    /// An empty report of `mode`.
    pub fn new(mode: Mode, machine: Machine, corpus: CorpusInfo) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            mode,
            machine,
            corpus,
            skew: None,
            async_setup: None,
            timing: None,
            skipped: Vec::new(),
            results: Vec::new(),
        }
    }

    /// The rows of `mode`.
    pub fn rows(&self, mode: Mode) -> impl Iterator<Item = &Row> {
        self.results.iter().filter(move |r| r.mode == mode)
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// `v` rounded to `digits` decimals.
pub fn round_to(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
