//! Reporting a benchmark: a summary with a recommendation, the full table
//! (aligned text or Markdown), JSON, and an SVG chart.

use pagebackup::PAGE_SIZE;
use serde::Serialize;

use crate::adapters::Op;
use crate::measure::Run;
use crate::table::{Format, Table};

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
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

/// The corpus, as the JSON report gives it.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusInfo {
    /// `built-in` or the file's path.
    pub source: String,
    /// Pages.
    pub pages: usize,
    /// Pages by kind.
    pub page_classes: Vec<(String, usize)>,
}

/// One result row of the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// The adapter: a backend spec, `baseline:...` or `kernel:...`.
    pub backend: String,
    /// `backend` for a backend asked for, `baseline` for what it is compared with.
    pub role: &'static str,
    /// `backup`, `restore` or `drop`.
    pub op: &'static str,
    /// Threads.
    pub threads: usize,
    /// Pages per call.
    pub batch: usize,
    /// Pages in the corpus.
    pub pages: usize,
    /// GB/s of pages backed up or restored (not for drops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Pages dropped per second (drops only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Median time per page of a call, µs.
    pub p50_us: f64,
    /// 99th percentile time per page of a call, µs.
    pub p99_us: f64,
    /// Original bytes / bytes used (backups only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_ratio: Option<f64>,
    /// Bytes the backed-up corpus took (backups only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The baseline this row is compared with (backends only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs: Option<String>,
    /// Speed against `vs`: this row's GB/s over the baseline's in the same mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_ratio: Option<f64>,
}

/// The whole JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The corpus.
    pub corpus: CorpusInfo,
    /// One row per adapter, mode and operation.
    pub results: Vec<ResultRow>,
}

/// One backend's line of the summary: the batched, single-threaded figures.
struct Line<'a> {
    backend: &'a str,
    backup: &'a ResultRow,
    restore: &'a ResultRow,
    ratio: f64,
}

impl Line<'_> {
    /// Harmonic mean of backup and restore GB/s: the rate of a round trip.
    fn round_trip_gbps(&self) -> f64 {
        let (b, r) = (gbps(self.backup), gbps(self.restore));
        if b > 0.0 && r > 0.0 {
            2.0 / (1.0 / b + 1.0 / r)
        } else {
            0.0
        }
    }

    /// Memory saved per second of round trip: what the balance is judged on.
    fn balance(&self) -> f64 {
        (1.0 - 1.0 / self.ratio).max(0.0) * self.round_trip_gbps()
    }

    fn saved_percent(&self) -> f64 {
        (1.0 - 1.0 / self.ratio) * 100.0
    }
}

fn gbps(row: &ResultRow) -> f64 {
    row.gbps.unwrap_or(0.0)
}

impl Report {
    /// The report of `runs`. `is_baseline` tells baselines from the backends
    /// asked for; `baseline` names each backend's baseline for an op.
    pub fn new(
        machine: Machine,
        corpus: CorpusInfo,
        runs: &[Run],
        is_baseline: impl Fn(&str) -> bool,
        baseline: impl Fn(&str, Op) -> Option<String>,
    ) -> Report {
        let mut results = Vec::new();
        for run in runs {
            for f in &run.ops {
                let vs = baseline(&run.adapter, f.op);
                let base = vs.as_ref().and_then(|name| {
                    runs.iter()
                        .find(|r| r.adapter == *name && r.mode == run.mode)
                        .map(|r| r.op(f.op).gbps)
                });
                let (backup, drop) = (f.op == Op::Backup, f.op == Op::Drop);
                results.push(ResultRow {
                    backend: run.adapter.clone(),
                    role: if is_baseline(&run.adapter) {
                        "baseline"
                    } else {
                        "backend"
                    },
                    op: f.op.name(),
                    threads: run.mode.threads,
                    batch: run.mode.batch,
                    pages: run.pages,
                    gbps: (!drop).then(|| round(f.gbps, 3)),
                    ops_per_s: drop.then(|| (f.gbps * 1e9 / PAGE_SIZE as f64).round()),
                    p50_us: round(f.p50_us, 3),
                    p99_us: round(f.p99_us, 3),
                    effective_ratio: run.effective_ratio().filter(|_| backup).map(|r| round(r, 3)),
                    memory_bytes: run.footprint.filter(|_| backup),
                    speed_ratio: base.filter(|&b| b > 0.0).map(|b| round(f.gbps / b, 3)),
                    vs: base.and(vs),
                });
            }
        }
        Report {
            machine,
            corpus,
            results,
        }
    }

    /// The summary's lines: each backend asked for, batched on one thread.
    fn lines(&self) -> Vec<Line<'_>> {
        let batch = self.results.iter().map(|r| r.batch).max().unwrap_or(1);
        let row = |backend: &str, op: &str| {
            self.results
                .iter()
                .find(|r| r.backend == backend && r.op == op && r.threads == 1 && r.batch == batch)
        };
        let mut names: Vec<&str> = self
            .results
            .iter()
            .filter(|r| r.role == "backend")
            .map(|r| r.backend.as_str())
            .collect();
        names.dedup();
        names
            .into_iter()
            .filter_map(|backend| {
                let (backup, restore) = (row(backend, "backup")?, row(backend, "restore")?);
                Some(Line {
                    backend,
                    backup,
                    restore,
                    ratio: backup.effective_ratio.unwrap_or(1.0),
                })
            })
            .collect()
    }

    /// One line per backend asked for (batched, one thread): backup and
    /// restore GB/s, effective ratio, memory saved, p99, and backup speed
    /// against its baseline; then a one-line recommendation.
    pub fn summary(&self, format: Format) -> String {
        let lines = self.lines();
        let batch = self.results.iter().map(|r| r.batch).max().unwrap_or(1);
        let mut table = Table::new(&[
            ("backend", false),
            ("backup GB/s", true),
            ("restore GB/s", true),
            ("effective ratio", true),
            ("memory saved", true),
            ("p99 µs/page backup/restore", true),
            ("backup speed vs baseline", false),
        ]);
        for l in &lines {
            let saved = self.corpus.pages as f64 * PAGE_SIZE as f64 * (1.0 - 1.0 / l.ratio) / (1 << 20) as f64;
            table.row(vec![
                l.backend.to_string(),
                format!("{:.2}", gbps(l.backup)),
                format!("{:.2}", gbps(l.restore)),
                format!("{:.2}", l.ratio),
                // `+ 0.0` turns a rounded -0 into 0.
                format!(
                    "{:.0}% ({:.0} MiB)",
                    l.saved_percent().round() + 0.0,
                    saved.round() + 0.0
                ),
                format!("{:.2} / {:.2}", l.backup.p99_us, l.restore.p99_us),
                match (&l.backup.vs, l.backup.speed_ratio) {
                    (Some(vs), Some(ratio)) => format!("{ratio:.2}x {vs}"),
                    _ => String::new(),
                },
            ]);
        }
        format!(
            "Batches of {batch} pages on one thread:\n\n{}\n{}\n",
            table.render(format),
            recommendation(&lines)
        )
    }

    /// The SVG chart ([`crate::chart`]).
    pub fn svg(&self) -> String {
        crate::chart::svg(self)
    }

    /// Every row: each adapter, mode and operation.
    pub fn table(&self, format: Format) -> String {
        let mut table = Table::new(&[
            ("backend", false),
            ("role", false),
            ("op", false),
            ("threads", true),
            ("batch", true),
            ("throughput", true),
            ("p50 µs/page", true),
            ("p99 µs/page", true),
            ("speed vs baseline", false),
            ("effective ratio", true),
            ("memory MiB", true),
        ]);
        for r in &self.results {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
            table.row(vec![
                r.backend.clone(),
                r.role.to_string(),
                r.op.to_string(),
                r.threads.to_string(),
                r.batch.to_string(),
                match (r.gbps, r.ops_per_s) {
                    (Some(g), _) => format!("{g:.2} GB/s"),
                    (None, Some(ops)) => format!("{:.2} M drops/s", ops / 1e6),
                    (None, None) => String::new(),
                },
                format!("{:.2}", r.p50_us),
                format!("{:.2}", r.p99_us),
                match (&r.vs, r.speed_ratio) {
                    (Some(vs), Some(ratio)) => format!("{ratio:.2}x {vs}"),
                    _ => String::new(),
                },
                opt(r.effective_ratio),
                opt(r.memory_bytes.map(|b| b as f64 / (1 << 20) as f64)),
            ]);
        }
        table.render(format)
    }
}

/// The one-line recommendation for this corpus, with its reason.
fn recommendation(lines: &[Line<'_>]) -> String {
    let best = |key: fn(&Line<'_>) -> f64| {
        lines
            .iter()
            .max_by(|a, b| key(a).total_cmp(&key(b)))
            .expect("at least one line")
    };
    match lines {
        [] => "recommendation: none (no backend was measured)".into(),
        [only] => format!(
            "recommendation: {} (the only backend measured; compare it with others with more --backend)",
            only.backend
        ),
        _ => {
            let fastest = best(|l| l.round_trip_gbps());
            let smallest = best(|l| l.ratio);
            let balanced = best(|l| l.balance());
            let why = if balanced.balance() <= 0.0 {
                format!(
                    "{}: no backend saves memory on this corpus, so the fastest round trip ({:.2} GB/s) wins",
                    fastest.backend,
                    fastest.round_trip_gbps()
                )
            } else {
                format!(
                    "{}: saves {:.0}% of the memory at a {:.2} GB/s round trip, the most memory saved per second",
                    balanced.backend,
                    balanced.saved_percent(),
                    balanced.round_trip_gbps()
                )
            };
            format!(
                "recommendation: {why} (fastest: {} at {:.2} GB/s; smallest: {} at ratio {:.2})",
                fastest.backend,
                fastest.round_trip_gbps(),
                smallest.backend,
                smallest.ratio
            )
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
