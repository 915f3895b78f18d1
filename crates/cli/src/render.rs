//! The text and Markdown renderings of a [`Report`], for every mode: a
//! summary with its recommendation, and the full table of every row.
//! JSON is [`Report::json`]; the SVG chart is [`crate::chart::svg`].

use std::fmt::Write as _;

use pagebackup::PAGE_SIZE;

use crate::report::{Mode, Op, Report, Row};
use crate::table::{Format, Table};

/// The summary of `report`: what it ran on, then a section per mode with
/// rows, each with its table and recommendation, then where the time went.
pub fn summary(report: &Report, format: Format) -> String {
    let c = &report.corpus;
    let m = &report.machine;
    let mut out = format!(
        "{} pages ({} MiB) from {}; {} cores, {}, {} GiB; restored pages verified against the originals\n\n",
        c.pages,
        (c.pages * PAGE_SIZE) >> 20,
        c.source,
        m.cores,
        m.kernel,
        m.memory_bytes >> 30
    );
    for mode in [Mode::Plain, Mode::Async, Mode::WorkingSet, Mode::Redis, Mode::Region] {
        let rows: Vec<&Row> = report.rows(mode).collect();
        if rows.is_empty() {
            continue;
        }
        out += &match mode {
            Mode::Plain => plain(&rows, c.pages, format),
            Mode::Async => asynchronous(report, &rows, format),
            Mode::WorkingSet => working_set(report, &rows, format),
            Mode::Redis => redis(&rows, format),
            Mode::Region => region(&rows, format),
        };
        out.push('\n');
    }
    for skip in &report.skipped {
        let _ = writeln!(out, "skipped {}: {}", skip.backend, skip.reason);
    }
    if !report.skipped.is_empty() {
        out.push('\n');
    }
    if let Some(t) = &report.timing {
        let _ = writeln!(
            out,
            "bench overhead: {:.1}% of {:.2} s of measuring was outside the measured calls ({:.1}% outside the timed windows, \
             of which verifying restored pages {:.1}% and reading backend stats {:.1}%)",
            t.overhead_percent(),
            t.run_s,
            (100.0 - t.percent_of_run(t.windows_s)).max(0.0),
            t.percent_of_run(t.verify_s),
            t.percent_of_run(t.stats_s)
        );
    }
    out
}

/// A cell of an optional figure with `digits` decimals, empty if absent.
fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A column of the full table: its header, whether it is numeric, and its
/// cell for a row (`None`: the row has no such figure).
type Column = (&'static str, bool, fn(&Row) -> Option<String>);

/// Every column the full table may have, in order; a column appears only if
/// some row has its figure. A field added to [`Row`] gets its column here.
const COLUMNS: &[Column] = &[
    ("backend", false, |r| Some(r.backend.clone())),
    ("role", false, |r| Some(format!("{:?}", r.role).to_lowercase())),
    ("mode", false, |r| Some(r.mode.name().into())),
    ("op", false, |r| r.op.map(|o| o.name().into())),
    ("workload", false, |r| r.workload.clone()),
    ("threads", true, |r| r.threads.map(|v| v.to_string())),
    ("batch", true, |r| r.batch.map(|v| v.to_string())),
    ("depth", true, |r| r.depth.map(|v| v.to_string())),
    ("throughput", true, |r| match (r.gbps, r.ops_per_s) {
        (Some(g), _) => Some(format!("{g:.2} GB/s")),
        (None, Some(ops)) => Some(format!("{:.2} M ops/s", ops / 1e6)),
        (None, None) => None,
    }),
    ("p50 µs/page", true, |r| r.p50_us.map(|v| format!("{v:.2}"))),
    ("p99 µs/page", true, |r| r.p99_us.map(|v| format!("{v:.2}"))),
    ("speed vs baseline", false, |r| {
        Some(format!("{:.2}x {}", r.speed_ratio?, r.vs.as_ref()?))
    }),
    ("vs sync", true, |r| r.vs_sync.map(|v| format!("{v:.2}x"))),
    ("vs spawn_blocking", true, |r| {
        r.vs_spawn_blocking.map(|v| format!("{v:.2}x"))
    }),
    ("ticker p50/p99/max µs", true, |r| {
        Some(format!(
            "{:.0} / {:.0} / {:.0}",
            r.ticker_p50_us?, r.ticker_p99_us?, r.ticker_max_us?
        ))
    }),
    ("idle p99 µs", true, |r| r.idle_p99_us.map(|v| format!("{v:.0}"))),
    ("ttfb µs", true, |r| r.ttfb_us.map(|v| format!("{v:.1}"))),
    ("hot/cold GB/s", true, |r| {
        Some(format!("{:.2} / {:.2}", r.hot_gbps?, r.cold_gbps?))
    }),
    ("restores/s", true, |r| r.restores_per_s.map(|v| format!("{v:.0}"))),
    ("accesses/s", true, |r| r.accesses_per_s.map(|v| format!("{v:.0}"))),
    ("fault p50/p99 µs", true, |r| {
        Some(format!("{:.1} / {:.1}", r.fault_p50_us?, r.fault_p99_us?))
    }),
    ("vs kernel", true, |r| r.vs_kernel.map(|v| format!("{v:.2}x"))),
    ("CPU s", true, |r| r.cpu_s.map(|v| format!("{v:.2}"))),
    ("evictor/faults s", true, |r| {
        Some(format!("{:.2} / {:.2}", r.evictor_cpu_s?, r.fault_service_s?))
    }),
    ("effective ratio", true, |r| {
        r.effective_ratio.map(|v| format!("{v:.2}"))
    }),
    ("memory MiB", true, |r| r.memory_bytes.map(|v| format!("{:.2}", mib(v)))),
    ("RAM MiB", true, |r| r.ram_bytes.map(|v| format!("{:.1}", mib(v)))),
    ("budget MiB", true, |r| r.budget_bytes.map(|v| format!("{:.1}", mib(v)))),
    ("moved dn/up", true, |r| {
        Some(format!("{}/{}", r.moved_down?, r.moved_up?))
    }),
    ("pages per tier", true, |r| {
        Some(
            r.tiers
                .as_ref()?
                .iter()
                .map(|t| t.pages.to_string())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }),
    ("hot vs 1st", true, |r| r.hot_vs_first.map(|v| format!("{v:.2}x"))),
    ("restores vs 1st", true, |r| {
        r.restores_vs_first.map(|v| format!("{v:.2}x"))
    }),
    ("ideal hot vs 1st", true, |r| {
        r.ideal_hot_vs_first.map(|v| format!("{v:.2}x"))
    }),
    ("ideal restores vs 1st", true, |r| {
        r.ideal_restores_vs_first.map(|v| format!("{v:.2}x"))
    }),
    ("RAM vs last", true, |r| r.ram_vs_last.map(|v| format!("{v:.2}x"))),
    ("ideal RAM vs last", true, |r| {
        r.ideal_ram_vs_last.map(|v| format!("{v:.2}x"))
    }),
    ("policy CPU", true, |r| r.policy_cpu_percent.map(|v| format!("{v:.1}%"))),
];

/// Every row of `report`, with the columns some row fills.
pub fn table(report: &Report, format: Format) -> String {
    rows_table(&report.results.iter().collect::<Vec<_>>(), format)
}

fn rows_table(rows: &[&Row], format: Format) -> String {
    let used: Vec<&Column> = COLUMNS
        .iter()
        .filter(|(_, _, cell)| rows.iter().any(|r| cell(r).is_some()))
        .collect();
    let mut table = Table::new(&used.iter().map(|&&(h, right, _)| (h, right)).collect::<Vec<_>>());
    for r in rows {
        table.row(used.iter().map(|(_, _, cell)| cell(r).unwrap_or_default()).collect());
    }
    table.render(format)
}

/// One backend's line of the plain summary: the batched, single-threaded figures.
struct Line<'a> {
    backend: &'a str,
    backup: &'a Row,
    restore: &'a Row,
    ratio: f64,
}

impl Line<'_> {
    /// Harmonic mean of backup and restore GB/s: the rate of a round trip.
    fn round_trip_gbps(&self) -> f64 {
        round_trip(gbps(self.backup), gbps(self.restore))
    }

    /// Memory saved per second of round trip: what the balance is judged on.
    fn balance(&self) -> f64 {
        (1.0 - 1.0 / self.ratio).max(0.0) * self.round_trip_gbps()
    }

    fn saved_percent(&self) -> f64 {
        (1.0 - 1.0 / self.ratio) * 100.0
    }
}

/// Harmonic mean of two rates: the rate of doing one after the other.
fn round_trip(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        2.0 / (1.0 / a + 1.0 / b)
    } else {
        0.0
    }
}

fn gbps(row: &Row) -> f64 {
    row.gbps.unwrap_or(0.0)
}

/// The largest batch of `rows`: the batched runs'.
fn batch_of(rows: &[&Row]) -> usize {
    rows.iter().filter_map(|r| r.batch).max().unwrap_or(1)
}

/// The backends asked for among `rows`, in order, once each.
fn backends<'a>(rows: &[&'a Row]) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| !r.is_baseline()) {
        if !names.contains(&r.backend.as_str()) {
            names.push(&r.backend);
        }
    }
    names
}

/// The plain summary's lines: each backend asked for, batched on one thread.
fn lines<'a>(rows: &[&'a Row]) -> Vec<Line<'a>> {
    let batch = batch_of(rows);
    let row = |backend: &str, op: Op| {
        rows.iter()
            .copied()
            .find(|r| r.backend == backend && r.op == Some(op) && r.threads == Some(1) && r.batch == Some(batch))
    };
    backends(rows)
        .into_iter()
        .filter_map(|backend| {
            let (backup, restore) = (row(backend, Op::Backup)?, row(backend, Op::Restore)?);
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
fn plain(rows: &[&Row], pages: usize, format: Format) -> String {
    let lines = lines(rows);
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
        let saved = pages as f64 * PAGE_SIZE as f64 * (1.0 - 1.0 / l.ratio) / (1 << 20) as f64;
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
            format!("{} / {}", opt(l.backup.p99_us, 2), opt(l.restore.p99_us, 2)),
            match (&l.backup.vs, l.backup.speed_ratio) {
                (Some(vs), Some(ratio)) => format!("{ratio:.2}x {vs}"),
                _ => String::new(),
            },
        ]);
    }
    format!(
        "Batches of {} pages on one thread:\n\n{}\n{}\n",
        batch_of(rows),
        table.render(format),
        plain_recommendation(&lines)
    )
}

/// The one-line recommendation for this corpus, with its reason.
fn plain_recommendation(lines: &[Line<'_>]) -> String {
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

/// The async throughput per subject, batch and depth, against the sync
/// backend and the spawn_blocking baseline; then the ticker's lateness.
fn asynchronous(report: &Report, rows: &[&Row], format: Format) -> String {
    let mut out = match &report.async_setup {
        Some(s) => format!(
            "async API, {}-worker tokio runtime (GB/s; vs sync: the sync backend, same batch, one thread; \
             vs spawn_blocking: baseline:spawn_blocking-pwrite, single pages at the same depth):\n\n",
            s.workers
        ),
        None => "async API (GB/s):\n\n".into(),
    };
    let mut table = Table::new(&[
        ("subject", false),
        ("batch", true),
        ("depth", true),
        ("backup", true),
        ("restore", true),
        ("drop", true),
        ("bk vs sync", true),
        ("rs vs sync", true),
        ("bk vs spawn_b", true),
        ("rs vs spawn_b", true),
    ]);
    let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
    let mut best: Option<(&str, usize, usize, f64)> = None;
    for key in groups(rows) {
        let op = |op: Op| rows.iter().copied().find(|r| group(r) == key && r.op == Some(op));
        let (Some(backup), Some(restore)) = (op(Op::Backup), op(Op::Restore)) else {
            continue;
        };
        let drop = op(Op::Drop).map_or(0.0, gbps);
        table.row(vec![
            key.0.to_string(),
            key.1.to_string(),
            key.2.to_string(),
            format!("{:.2}", gbps(backup)),
            format!("{:.2}", gbps(restore)),
            format!("{drop:.2}"),
            ratio(backup.vs_sync),
            ratio(restore.vs_sync),
            ratio(backup.vs_spawn_blocking),
            ratio(restore.vs_spawn_blocking),
        ]);
        let rt = round_trip(gbps(backup), gbps(restore));
        if !backup.is_baseline() && best.is_none_or(|b| rt > b.3) {
            best = Some((key.0, key.1, key.2, rt));
        }
    }
    out += &table.render(format);
    let tickers: Vec<&Row> = rows.iter().copied().filter(|r| r.ticker_p99_us.is_some()).collect();
    if !tickers.is_empty() {
        let idle = tickers.iter().find_map(|r| r.idle_p99_us);
        let _ = write!(
            out,
            "\nresponsiveness: a {} µs ticker's lateness while 1 or {} tasks back up and restore the corpus (idle runtime: p99 {} µs), \
             and the time to first byte of a single-page restore on the idle runtime (median):\n\n",
            report
                .async_setup
                .map_or(String::from("periodic"), |s| s.tick_us.to_string()),
            report
                .async_setup
                .map_or(String::from("loading"), |s| s.load_tasks.to_string()),
            opt(idle, 0)
        );
        let mut table = Table::new(&[
            ("subject", false),
            ("batch", true),
            ("depth", true),
            ("p50 µs", true),
            ("p99 µs", true),
            ("max µs", true),
            ("ttfb µs", true),
        ]);
        for r in &tickers {
            table.row(vec![
                r.backend.clone(),
                r.batch.map_or(String::new(), |b| b.to_string()),
                r.depth.map_or(String::new(), |d| d.to_string()),
                opt(r.ticker_p50_us, 0),
                opt(r.ticker_p99_us, 0),
                opt(r.ticker_max_us, 0),
                opt(r.ttfb_us, 1),
            ]);
        }
        out += &table.render(format);
    }
    out += &match best {
        Some((backend, batch, depth, rt)) => {
            let late = rows
                .iter()
                .find(|r| {
                    r.backend == backend
                        && r.batch == Some(batch)
                        && r.depth.is_none_or(|d| d == depth)
                        && r.ticker_p99_us.is_some()
                })
                .and_then(|r| r.ticker_p99_us);
            format!(
                "\nrecommendation: {backend}: the fastest round trip through the async API ({rt:.2} GB/s in batches of {batch} at depth {depth}){}\n",
                late.map_or(String::new(), |l| format!(", ticker p99 {l:.0} µs under its load"))
            )
        }
        None => "\nrecommendation: none (no backend was measured)\n".into(),
    };
    out
}

/// A row's (subject, batch, depth).
fn group(r: &Row) -> (&str, usize, usize) {
    (r.backend.as_str(), r.batch.unwrap_or(1), r.depth.unwrap_or(1))
}

/// The (subject, batch, depth) of throughput rows, in order, once each.
fn groups<'a>(rows: &[&'a Row]) -> Vec<(&'a str, usize, usize)> {
    let mut keys = Vec::new();
    for r in rows.iter().filter(|r| r.op.is_some()) {
        let key = group(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The skewed replay's table and the backend that keeps the most memory
/// while serving hot restores at least half as fast as the fastest.
fn working_set(report: &Report, rows: &[&Row], format: Format) -> String {
    let mut out = match &report.skew {
        Some(s) => format!(
            "skewed replay: {} pages ({:.0} MiB), {}{:.0}% of pages take {:.0}% of {} restores after {} warm-up {} of as many; every restore verified\n\n",
            s.working_set,
            mib((s.working_set * PAGE_SIZE) as u64),
            s.zipf.map_or(String::new(), |z| format!("Zipf {z}: ")),
            s.hot_pages * 100.0,
            s.hot_restores * 100.0,
            s.restores,
            s.warmup_passes,
            if s.warmup_passes == 1 { "pass" } else { "passes" }
        ),
        None => "skewed replay:\n\n".into(),
    };
    let mut table = Table::new(&[
        ("backend", false),
        ("RAM MiB", true),
        ("peak MiB", true),
        ("budget MiB", true),
        ("RAM x", true),
        ("ratio", true),
        ("hot GB/s", true),
        ("cold GB/s", true),
        ("restores/s", true),
        ("moved dn/up", true),
        ("pages per tier", true),
        ("RAM MiB per tier", true),
        ("restores per tier", true),
        ("hot up", true),
        ("hot vs 1st", true),
        ("restores vs 1st", true),
        ("ideal hot vs 1st", true),
        ("ideal restores vs 1st", true),
        ("RAM vs last", true),
        ("ideal RAM vs last", true),
        ("policy CPU", true),
    ]);
    let mibs = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1}", mib(b)));
    let times = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    for r in rows {
        let tiers = r.tiers.as_deref().unwrap_or_default();
        table.row(vec![
            r.backend.clone(),
            mibs(r.ram_bytes),
            mibs(r.peak_ram_bytes),
            mibs(r.budget_bytes),
            opt(r.ram_ratio, 2),
            opt(r.effective_ratio, 2),
            opt(r.hot_gbps, 2),
            opt(r.cold_gbps, 2),
            opt(r.restores_per_s, 0),
            match (r.moved_down, r.moved_up) {
                (Some(d), Some(u)) => format!("{d}/{u}"),
                _ => "-".into(),
            },
            tiers.iter().map(|t| t.pages.to_string()).collect::<Vec<_>>().join("/"),
            tiers
                .iter()
                .map(|t| format!("{:.1}", mib(t.ram_bytes)))
                .collect::<Vec<_>>()
                .join("/"),
            tiers
                .iter()
                .map(|t| t.restores.map_or("-".into(), |r| format!("{:.1}%", r * 100.0)))
                .collect::<Vec<_>>()
                .join("/"),
            r.hot_from_first.map_or("-".into(), |f| format!("{:.0}%", f * 100.0)),
            times(r.hot_vs_first),
            times(r.restores_vs_first),
            times(r.ideal_hot_vs_first),
            times(r.ideal_restores_vs_first),
            times(r.ram_vs_last),
            times(r.ideal_ram_vs_last),
            r.policy_cpu_percent.map_or("-".into(), |p| format!("{p:.1}%")),
        ]);
    }
    out += &table.render(format);
    let fastest = rows.iter().filter_map(|r| r.hot_gbps).fold(0.0, f64::max);
    let pick = rows
        .iter()
        .filter(|r| r.hot_gbps.unwrap_or(0.0) >= fastest / 2.0)
        .max_by(|a, b| {
            let ratio = |r: &Row| r.effective_ratio.unwrap_or(0.0);
            ratio(a).total_cmp(&ratio(b))
        });
    out += &match pick {
        Some(r) => format!(
            "\nrecommendation: {}: the most memory kept (ratio {}) while hot restores run at {} GB/s, at least half the fastest ({fastest:.2} GB/s)\n",
            r.backend,
            opt(r.effective_ratio, 2),
            opt(r.hot_gbps, 2)
        ),
        None => "\nrecommendation: none (no backend was measured)\n".into(),
    };
    out
}

/// Each redis backend's figures against `redis-benchmark` on the same server.
fn redis(rows: &[&Row], format: Format) -> String {
    let mut table = Table::new(&[
        ("backend", false),
        ("op", false),
        ("batch", true),
        ("GB/s", true),
        ("reference", false),
        ("reference GB/s", true),
        ("speed vs reference", true),
    ]);
    for r in rows.iter().filter(|r| !r.is_baseline()) {
        let reference = rows
            .iter()
            .find(|b| b.is_baseline() && Some(&b.backend) == r.vs.as_ref() && b.op == r.op);
        table.row(vec![
            r.backend.clone(),
            r.op.map_or(String::new(), |o| o.name().into()),
            r.batch.map_or(String::new(), |b| b.to_string()),
            opt(r.gbps, 3),
            r.vs.clone().unwrap_or_default(),
            opt(reference.and_then(|b| b.gbps), 3),
            opt(r.speed_ratio, 2).to_string() + if r.speed_ratio.is_some() { "x" } else { "" },
        ]);
    }
    format!(
        "redis backends against redis-benchmark on the same server (one connection, pipelines as deep as the batches):\n\n{}",
        table.render(format)
    )
}

/// The region mode's rows: every figure they hold.
fn region(rows: &[&Row], format: Format) -> String {
    format!("offload region:\n\n{}", rows_table(rows, format))
}
