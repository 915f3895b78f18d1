//! Reporting a benchmark: a table on stdout, JSON, and an SVG chart.

use std::fmt::Write as _;

use serde::Serialize;

use crate::adapters::Op;
use crate::measure::Run;

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
    /// `backup`, `restore` or `drop`.
    pub op: &'static str,
    /// Threads.
    pub threads: usize,
    /// Pages per call.
    pub batch: usize,
    /// Pages in the corpus.
    pub pages: usize,
    /// GB/s.
    pub gbps: f64,
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
    /// `gbps` over the baseline's `gbps` in the same mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
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

impl Report {
    /// The report of `runs`; `baseline` names each adapter's baseline for an op.
    pub fn new(
        machine: Machine,
        corpus: CorpusInfo,
        runs: &[Run],
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
                let backup = f.op == Op::Backup;
                results.push(ResultRow {
                    backend: run.adapter.clone(),
                    op: f.op.name(),
                    threads: run.mode.threads,
                    batch: run.mode.batch,
                    pages: run.pages,
                    gbps: round(f.gbps, 3),
                    p50_us: round(f.p50_us, 3),
                    p99_us: round(f.p99_us, 3),
                    effective_ratio: run.effective_ratio().filter(|_| backup).map(|r| round(r, 3)),
                    memory_bytes: run.footprint.filter(|_| backup),
                    ratio: base.filter(|&b| b > 0.0).map(|b| round(f.gbps / b, 3)),
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

    /// The results as a Markdown table, the best GB/s of each op and mode in bold.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| backend | op | threads | batch | GB/s | p50 µs/page | p99 µs/page | vs | ratio | effective ratio | memory MiB |\n\
             |---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
        );
        for r in &self.results {
            let best = self
                .results
                .iter()
                .filter(|o| o.op == r.op && o.threads == r.threads && o.batch == r.batch)
                .all(|o| o.gbps <= r.gbps);
            let gbps = if best {
                format!("**{:.2}**", r.gbps)
            } else {
                format!("{:.2}", r.gbps)
            };
            let opt = |v: Option<f64>, suffix: &str| v.map_or(String::new(), |v| format!("{v:.2}{suffix}"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {gbps} | {:.2} | {:.2} | {} | {} | {} | {} |",
                r.backend,
                r.op,
                r.threads,
                r.batch,
                r.p50_us,
                r.p99_us,
                r.vs.as_deref().unwrap_or(""),
                opt(r.ratio, "x"),
                opt(r.effective_ratio, ""),
                opt(r.memory_bytes.map(|b| b as f64 / (1 << 20) as f64), ""),
            );
        }
        out
    }

    /// An SVG chart: backup throughput (log scale) against effective
    /// ratio, one point per adapter (batched, one thread).
    pub fn svg(&self) -> String {
        let mut points: Vec<(&str, f64, f64)> = self
            .results
            .iter()
            .filter(|r| r.op == "backup" && r.threads == 1 && r.batch > 1)
            .filter_map(|r| Some((r.backend.as_str(), r.effective_ratio?, r.gbps.max(1e-3))))
            .collect();
        points.sort_by(|a, b| a.2.total_cmp(&b.2));
        let (w, h, m) = (900.0, 560.0, 80.0);
        let max_x = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
        let (lo, hi) = (
            points
                .iter()
                .map(|p| p.2)
                .fold(f64::MAX, f64::min)
                .min(1.0)
                .log10()
                .floor(),
            points.iter().map(|p| p.2).fold(0.1, f64::max).log10().ceil(),
        );
        let sx = |x: f64| m + x / max_x * (w - 2.0 * m);
        let sy = |y: f64| h - m - (y.log10() - lo) / (hi - lo) * (h - 2.0 * m);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">Backup throughput against effective ratio ({} pages, batches, one thread)</text>\n\
             <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">effective ratio (original bytes / bytes used)</text>\n\
             <text x=\"22\" y=\"{}\" transform=\"rotate(-90 22 {})\" text-anchor=\"middle\">backup GB/s (log scale)</text>\n",
            w / 2.0,
            self.corpus.pages,
            h - m,
            w - m,
            h - m,
            h - m,
            w / 2.0,
            h - 24.0,
            h / 2.0,
            h / 2.0
        );
        for i in 0..=6 {
            let x = max_x * f64::from(i) / 6.0;
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x:.1}</text>",
                sx(x),
                h - m + 18.0
            );
        }
        for exp in lo as i32..=hi as i32 {
            for mantissa in [1.0, 2.0, 5.0] {
                let y = mantissa * 10f64.powi(exp);
                if y.log10() <= hi {
                    let _ = writeln!(
                        svg,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{y}</text>",
                        m - 6.0,
                        sy(y) + 4.0
                    );
                    let _ = writeln!(
                        svg,
                        "<line x1=\"{m}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>",
                        sy(y),
                        w - m
                    );
                }
            }
        }
        for (k, (name, x, y)) in points.into_iter().enumerate() {
            // Alternate labels above and below their points, so that
            // neighbours do not write over each other.
            let dy = if k % 2 == 0 { -8.0 } else { 16.0 };
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"steelblue\"/>",
                sx(x),
                sy(y)
            );
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                sx(x) + 8.0,
                sy(y) + dy,
                escape(name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
