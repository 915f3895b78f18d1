//! The report model's renderings on a fixed model with a row of every mode:
//! text and Markdown summaries and full tables, JSON and SVG, each against
//! its snapshot in `tests/snapshots/` (`PAGEBACKUP_UPDATE_SNAPSHOTS=1`
//! rewrites them), and none showing a password.

use std::path::PathBuf;

use pagebackup_cli::chart;
use pagebackup_cli::render;
use pagebackup_cli::report::{
    AsyncSetup, CorpusInfo, Machine, Mode, Op, Report, Role, Row, SCHEMA_VERSION, Skew, TierSplit, Timing,
};
use pagebackup_cli::table::Format;

const PASSWORD: &str = "hunter2-s3cret";

fn secret_spec() -> String {
    format!("redis:url=redis://bench:{PASSWORD}@db.example:6379/0,prefix=pb")
}

fn op_row(backend: &str, role: Role, mode: Mode, op: Op, batch: usize, gbps: f64) -> Row {
    let mut row = Row::new(backend, role, mode);
    row.op = Some(op);
    row.batch = Some(batch);
    row.gbps = Some(gbps);
    row
}

/// A model with rows of every mode, as a bench would fill it.
fn fixture() -> Report {
    let mut report = Report::new(
        Mode::Plain,
        Machine {
            cores: 2,
            kernel: "Linux 6.14.0".into(),
            memory_bytes: 8 << 30,
        },
        CorpusInfo {
            source: "built-in".into(),
            pages: 512,
            page_classes: vec![("zero".into(), 64), ("text".into(), 448)],
        },
    );
    let secret = secret_spec();
    // Plain: two backends and their baselines, batched and single pages.
    let plain = [
        ("memory", Role::Backend, 1.0, 3.2, 4.1, Some("baseline:copy-prefaulted")),
        ("compressed", Role::Backend, 3.4, 1.1, 2.3, Some("baseline:lz4_flex")),
        (
            secret.as_str(),
            Role::Backend,
            1.0,
            0.4,
            0.6,
            Some("baseline:redis-per-page"),
        ),
        ("baseline:copy-prefaulted", Role::Baseline, 1.0, 6.4, 6.5, None),
        ("baseline:lz4_flex", Role::Baseline, 3.5, 1.4, 2.9, None),
        ("baseline:redis-per-page", Role::Baseline, 1.0, 0.05, 0.06, None),
    ];
    for batch in [64, 1] {
        for (name, role, ratio, backup, restore, vs) in plain {
            let scale = if batch == 1 { 0.5 } else { 1.0 };
            for (op, gbps) in [(Op::Backup, backup), (Op::Restore, restore), (Op::Drop, 0.0)] {
                let mut row = op_row(name, role, Mode::Plain, op, batch, gbps * scale);
                row.threads = Some(1);
                row.pages = Some(512);
                row.p50_us = Some(1.25);
                row.p99_us = Some(4.5);
                if op == Op::Drop {
                    row.gbps = None;
                    row.ops_per_s = Some(2.5e6);
                }
                if op == Op::Backup {
                    row.effective_ratio = Some(ratio);
                    row.memory_bytes = Some((512.0 * 4096.0 / ratio) as u64);
                }
                if let Some(vs) = vs.filter(|_| op != Op::Drop) {
                    row.vs = Some(vs.into());
                    row.speed_ratio = Some(0.5);
                }
                report.results.push(row);
            }
        }
    }
    // Redis against redis-benchmark.
    for (op, ours, theirs) in [(Op::Backup, 0.4, 0.8), (Op::Restore, 0.6, 0.9)] {
        let reference = "redis-benchmark -c 1 -P 64 -d 4096 (-r 512)";
        let base = op_row(reference, Role::Baseline, Mode::Redis, op, 64, theirs);
        let mut row = op_row(&secret, Role::Backend, Mode::Redis, op, 64, ours);
        row.vs = Some(reference.into());
        row.speed_ratio = Some(ours / theirs);
        report.results.extend([base, row]);
    }
    // Async: a backend batched and single, the baseline single; tickers.
    report.async_setup = Some(AsyncSetup {
        workers: 2,
        tick_us: 1000,
        load_tasks: 64,
    });
    for (name, role, batch, gbps) in [
        ("shmem", Role::Backend, 64, 2.0),
        ("shmem", Role::Backend, 1, 0.8),
        ("baseline:spawn_blocking-pwrite", Role::Baseline, 1, 0.4),
    ] {
        for op in [Op::Backup, Op::Restore, Op::Drop] {
            let mut row = op_row(name, role, Mode::Async, op, batch, gbps);
            row.depth = Some(64);
            if role == Role::Backend {
                row.vs_sync = Some(0.9);
                row.vs_spawn_blocking = Some(gbps / 0.4);
            }
            report.results.push(row);
        }
        for depth in [1, 64] {
            let mut ticker = Row::new(name, role, Mode::Async);
            ticker.batch = Some(batch);
            ticker.depth = Some(depth);
            ticker.ticker_p50_us = Some(30.0 * depth as f64);
            ticker.ticker_p99_us = Some(120.0 * gbps * depth as f64);
            ticker.ticker_max_us = Some(900.0 * depth as f64);
            ticker.idle_p99_us = Some(60.0);
            ticker.ttfb_us = (batch == 1 && depth == 1).then_some(12.5);
            report.results.push(ticker);
        }
    }
    // Working set: a tiered stack and a plain backend.
    report.skew = Some(Skew {
        working_set: 4096,
        hot_pages: 0.2,
        hot_restores: 0.8,
        restores: 16384,
        warmup_passes: 1,
        zipf: None,
    });
    let tiered = format!("tiered:tiers=[memory|budget=4MiB ; {secret}]");
    for (name, ram, hot, cold, tiers) in [
        (tiered.as_str(), 5 << 20, 3.0, 0.2, true),
        ("compressed", 6 << 20, 1.5, 1.4, false),
    ] {
        let mut row = Row::new(name, Role::Backend, Mode::WorkingSet);
        row.op = Some(Op::Restore);
        row.batch = Some(1);
        row.pages = Some(4096);
        row.ram_bytes = Some(ram);
        row.peak_ram_bytes = Some(ram + (1 << 20));
        row.ram_ratio = Some((16u64 << 20) as f64 / ram as f64);
        row.effective_ratio = Some(3.2);
        row.hot_gbps = Some(hot);
        row.cold_gbps = Some(cold);
        row.restores_per_s = Some(250_000.0);
        if tiers {
            row.budget_bytes = Some(4 << 20);
            row.moved_down = Some(3000);
            row.moved_up = Some(200);
            row.hot_from_first = Some(0.9);
            row.hot_vs_first = Some(2.0);
            row.restores_vs_first = Some(1.0);
            row.ideal_hot_vs_first = Some(2.5);
            row.ideal_restores_vs_first = Some(1.25);
            row.preempted_restores = Some(3);
            row.ram_vs_last = Some(0.833);
            row.ideal_ram_vs_last = Some(0.8);
            row.policy_cpu_percent = Some(1.5);
            row.tiers = Some(vec![
                TierSplit {
                    pages: 1000,
                    ram_bytes: 4 << 20,
                    kept_pages: Some(200),
                    restores: Some(0.8),
                    restore_us: Some(1.0),
                },
                TierSplit {
                    pages: 3096,
                    ram_bytes: 1 << 20,
                    kept_pages: None,
                    restores: Some(0.2),
                    restore_us: Some(4.0),
                },
            ]);
        }
        report.results.push(row);
    }
    // Region: the hook's fields.
    for (name, role, p50, p99) in [
        ("compressed", Role::Backend, 6.0, 40.0),
        ("kernel:swap-on-zram", Role::Baseline, 4.0, 30.0),
    ] {
        let mut row = Row::new(name, role, Mode::Region);
        row.workload = Some("zipf-0.99".into());
        row.accesses_per_s = Some(1.5e6);
        row.gbps = Some(0.8);
        row.fault_p50_us = Some(p50);
        row.fault_p99_us = Some(p99);
        row.ram_bytes = Some(8 << 20);
        row.effective_ratio = Some(2.5);
        row.vs_kernel = (role == Role::Backend).then_some(0.8);
        row.cpu_s = Some(1.75);
        report.results.push(row);
    }
    report.timing = Some(Timing {
        run_s: 10.0,
        windows_s: 9.9,
        in_calls_s: 9.8,
        verify_s: 0.05,
        stats_s: 0.02,
    });
    report
}

fn check(name: &str, actual: &str) {
    assert!(!actual.contains(PASSWORD), "{name} shows the password:\n{actual}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("PAGEBACKUP_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (PAGEBACKUP_UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert!(
        actual == expected,
        "{name} differs from its snapshot {}:\n{actual}",
        path.display()
    );
}

#[test]
fn the_text_and_markdown_summaries_and_tables_match_their_snapshots() {
    let report = fixture();
    check("summary.txt", &render::summary(&report, Format::Text));
    check("summary.md", &render::summary(&report, Format::Md));
    check("table.txt", &render::table(&report, Format::Text));
    check("table.md", &render::table(&report, Format::Md));
    let text = render::summary(&report, Format::Text);
    for section in [
        "Batches of 64 pages on one thread:",
        "async API, 2-worker tokio runtime",
        "responsiveness: a 1000 µs ticker's lateness while 1 or 64 tasks",
        "skewed replay: 4096 pages (16 MiB), 20% of pages take 80% of 16384 restores",
        "redis backends against redis-benchmark",
        "offload region:",
        "bench overhead: 2.0% of 10.00 s",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert_eq!(text.matches("\nrecommendation: ").count(), 3, "{text}");
}

#[test]
fn the_json_matches_its_snapshot_and_reads_back_as_the_model() {
    let report = fixture();
    let json = report.json();
    check("report.json", &json);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["schema_version"], SCHEMA_VERSION);
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    // The model refuses a field it does not know.
    let unknown = json.replacen("\"schema_version\"", "\"surprise\": 1, \"schema_version\"", 1);
    assert!(serde_json::from_str::<Report>(&unknown).is_err());
}

#[test]
fn every_mode_has_a_chart_that_parses_and_matches_its_snapshot() {
    let mut report = fixture();
    for (mode, points, title) in [
        (Mode::Plain, 6, "against effective ratio"),
        (Mode::Async, 3, "against the runtime's ticker lateness"),
        (Mode::WorkingSet, 2, "Restore throughput against RAM"),
        (Mode::Region, 2, "Fault latency against RAM"),
    ] {
        report.mode = mode;
        let svg = chart::svg(&report);
        check(&format!("chart-{}.svg", mode.name()), &svg);
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{mode:?}: {e}\n{svg}"));
        let markers = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle") || (n.has_tag_name("rect") && n.attribute("x").is_some()))
            .count();
        // Two markers and a legend marker per adapter, and the plot frame.
        assert_eq!(markers, points * 3 + 1, "{mode:?}: {svg}");
        assert!(svg.contains(title), "{mode:?}: {svg}");
    }
}

#[test]
fn passwords_are_redacted_on_the_way_into_the_model() {
    let row = Row::new(&secret_spec(), Role::Backend, Mode::Redis);
    assert_eq!(row.backend, "redis:url=redis://bench:***@db.example:6379/0,prefix=pb");
}
