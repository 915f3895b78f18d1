//! Every bench mode through the command: `--json` writes a file that reads
//! back as the report model and holds that mode's rows, `--svg` a chart that
//! parses; a flag a mode cannot honour is a usage error (status 2); and no
//! output shows a password given in a spec.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pagebackup_cli::report::{Mode, Op, Report, Role, SCHEMA_VERSION};

fn pagebackup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagebackup"))
        .args(args)
        .output()
        .expect("the pagebackup binary runs")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pagebackup-modes-test-{}-{name}", std::process::id()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a bench with `--json` and `--svg`; gives its stdout and the report
/// read back as the model (which refuses unknown fields), having checked
/// that the chart parses.
fn bench_json(name: &str, args: &[&str]) -> (String, Report, String) {
    let (json, svg) = (temp(&format!("{name}.json")), temp(&format!("{name}.svg")));
    let mut all = vec![
        "bench",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    all.extend(args);
    let out = pagebackup(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = std::fs::read_to_string(&json).unwrap();
    let report: Report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    let chart = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&chart).unwrap_or_else(|e| panic!("{name}: {e}\n{chart}"));
    std::fs::remove_file(json).unwrap();
    std::fs::remove_file(svg).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), report, chart)
}

#[test]
fn region_json_holds_a_row_per_workload_and_backend() {
    if !std::path::Path::new("/dev/userfaultfd").exists() && !rustix::process::geteuid().is_root() {
        println!("SKIP: the region needs userfaultfd (/dev/userfaultfd or root)");
        return;
    }
    let (stdout, report, chart) = bench_json(
        "region",
        &[
            "--region",
            "--region-mib",
            "8",
            "--budget-mib",
            "2",
            "--accesses",
            "20000",
            "--pages",
            "256",
            "--rounds",
            "1",
            "--backend",
            "memory",
            "--backend",
            "compressed:algo=lz4",
        ],
    );
    assert_eq!(report.mode, Mode::Region);
    assert_eq!(report.results.len(), 2 * 4, "{report:?}");
    for (row, (backend, workload)) in report.results.iter().zip(
        ["memory", "compressed:algo=lz4"]
            .into_iter()
            .flat_map(|b| ["random", "hot", "seq", "scan"].map(|w| (b, w))),
    ) {
        assert_eq!((row.mode, row.role), (Mode::Region, Role::Backend), "{row:?}");
        assert_eq!(
            (row.backend.as_str(), row.workload.as_deref()),
            (backend, Some(workload))
        );
        assert_eq!(row.pages, Some(8 << 8), "{row:?}");
        assert_eq!(row.budget_bytes, Some(2 << 20), "{row:?}");
        let seq = matches!(workload, "seq" | "scan");
        assert_eq!(row.gbps.is_some(), seq, "{row:?}");
        assert_eq!(row.accesses_per_s.is_some(), !seq, "{row:?}");
        assert!(row.gbps.or(row.accesses_per_s).unwrap() > 0.0, "{row:?}");
        let (p50, p99) = (row.fault_p50_us.unwrap(), row.fault_p99_us.unwrap());
        assert!(p99 >= p50, "{row:?}");
        // The budget plus what the backend holds; evicted pages are held.
        assert!(row.ram_bytes.unwrap() > 0, "{row:?}");
        assert!(row.cpu_s.is_some(), "{row:?}");
        assert_eq!(row.vs_kernel, None, "no kernel run asked for");
    }
    let lz4 = &report.results[4];
    assert!(
        lz4.effective_ratio.unwrap() > 1.0,
        "the built-in corpus compresses: {lz4:?}"
    );
    assert!(stdout.contains("offload region"), "{stdout}");
    assert!(chart.contains("compressed:algo=lz4 (random)"), "{chart}");
}

#[test]
fn plain_json_holds_plain_rows_and_the_bench_overhead() {
    let (stdout, report, chart) = bench_json(
        "plain",
        &[
            "--pages",
            "256",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--backend",
            "memory",
        ],
    );
    assert_eq!(report.mode, Mode::Plain);
    assert!(report.results.iter().all(|r| r.mode == Mode::Plain), "{report:?}");
    let memory: Vec<_> = report.results.iter().filter(|r| r.backend == "memory").collect();
    assert_eq!(memory.len(), 2 * 3, "two ways of handing pages over, three ops");
    let t = report.timing.unwrap();
    assert!(
        t.in_calls_s > 0.0 && t.windows_s >= t.in_calls_s && t.run_s >= t.windows_s,
        "{t:?}"
    );
    assert!(stdout.contains("bench overhead: "), "{stdout}");
    assert!(chart.contains(">memory</text>"), "{chart}");
}

/// `--repeat 4` backs up four times the corpus's pages, and every row
/// counts them all.
#[test]
fn plain_json_with_a_repeated_corpus_counts_every_page() {
    let (_, report, _) = bench_json(
        "repeat",
        &[
            "--pages",
            "256",
            "--repeat",
            "4",
            "--rounds",
            "1",
            "--threads",
            "2",
            "--backend",
            "memory",
        ],
    );
    assert_eq!(report.corpus.pages, 256);
    let memory: Vec<_> = report.results.iter().filter(|r| r.backend == "memory").collect();
    assert_eq!(memory.len(), 3 * 3, "three ways of handing pages over, three ops");
    assert!(memory.iter().all(|r| r.pages == Some(1024)), "{memory:?}");
}

#[test]
fn async_json_holds_async_throughput_and_ticker_rows() {
    let (stdout, report, chart) = bench_json(
        "async",
        &[
            "--async",
            "--backend",
            "memory",
            "--pages",
            "256",
            "--rounds",
            "1",
            "--depth",
            "4",
            "--batch",
            "16",
        ],
    );
    assert_eq!(report.mode, Mode::Async);
    assert!(report.async_setup.is_some());
    assert!(report.results.iter().all(|r| r.mode == Mode::Async), "{report:?}");
    let throughput: Vec<_> = report.results.iter().filter(|r| r.op.is_some()).collect();
    // memory: single pages and batches at depth 4, batches at depth 1; the
    // baseline: single pages; three ops each.
    assert_eq!(throughput.len(), 4 * 3, "{throughput:?}");
    let batched = throughput
        .iter()
        .find(|r| r.backend == "memory" && r.op == Some(Op::Restore) && r.batch == Some(16) && r.depth == Some(4))
        .unwrap();
    assert!(batched.gbps.unwrap() > 0.0 && batched.vs_sync.unwrap() > 0.0 && batched.vs_spawn_blocking.is_some());
    let tickers: Vec<_> = report.results.iter().filter(|r| r.ticker_p99_us.is_some()).collect();
    assert_eq!(
        tickers.len(),
        10,
        "memory and the memcpy floor at two batches, the spawn_blocking baseline at one, each beside 1 and 64 tasks"
    );
    assert_eq!(
        tickers.iter().filter(|t| t.backend == "baseline:memcpy").count(),
        4,
        "the floor beside every ticker row of the backends"
    );
    for t in &tickers {
        assert!(
            t.ticker_p50_us.is_some() && t.ticker_max_us.is_some() && t.idle_p99_us.is_some(),
            "{t:?}"
        );
        assert_eq!(t.ttfb_us.is_some(), t.batch == Some(1) && t.depth == Some(1), "{t:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    let first = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "memory" && r["ttfb_us"].is_number())
        .unwrap();
    for field in [
        "ticker_p50_us",
        "ticker_p99_us",
        "ticker_max_us",
        "idle_p99_us",
        "batch",
        "depth",
    ] {
        assert!(first[field].is_number(), "{field} missing from {first}");
    }
    assert_eq!(first["mode"], "async");
    assert!(stdout.contains("\nrecommendation: memory"), "{stdout}");
    assert!(chart.contains("ticker lateness"), "{chart}");
}

#[test]
fn working_set_json_holds_the_stack_beside_its_tiers_alone() {
    let tiered = "tiered:tiers=[memory | compressed],budget=256KiB";
    let (stdout, report, chart) = bench_json(
        "working-set",
        &[
            "--working-set",
            "256",
            "--hot",
            "10/90",
            "--pages",
            "64",
            "--rounds",
            "1",
            "--backend",
            "memory",
            "--backend",
            tiered,
        ],
    );
    assert_eq!(report.mode, Mode::WorkingSet);
    let skew = report.skew.unwrap();
    assert_eq!(
        (skew.working_set, skew.hot_pages, skew.hot_restores, skew.zipf),
        (256, 0.1, 0.9, None)
    );
    // memory (asked for, and the first tier), compressed (the last tier
    // alone), then the stack.
    let shown: Vec<_> = report.results.iter().map(|r| (r.backend.as_str(), r.role)).collect();
    assert_eq!(
        shown,
        [
            ("memory", Role::Backend),
            ("compressed", Role::Baseline),
            (tiered, Role::Backend)
        ]
    );
    for r in &report.results {
        assert_eq!((r.mode, r.op), (Mode::WorkingSet, Some(Op::Restore)));
        assert!(r.ram_bytes.is_some() && r.effective_ratio.is_some() && r.restores_per_s.unwrap() > 0.0);
        assert!(r.hot_gbps.unwrap() > 0.0 && r.cold_gbps.unwrap() > 0.0, "{r:?}");
    }
    let stack = &report.results[2];
    assert_eq!(stack.budget_bytes, Some(256 << 10));
    let tiers = stack.tiers.as_ref().unwrap();
    assert_eq!(tiers.len(), 2);
    assert_eq!(tiers.iter().map(|t| t.pages).sum::<u64>(), 256);
    let served: f64 = tiers.iter().map(|t| t.restores.unwrap()).sum();
    assert!(
        (served - 1.0).abs() < 1e-3,
        "every measured restore served by a tier: {tiers:?}"
    );
    let (memory, compressed) = (&report.results[0], &report.results[1]);
    let ratio = |a: f64, b: f64| (a / b * 1000.0).round() / 1000.0;
    assert_eq!(
        stack.hot_vs_first,
        Some(ratio(stack.hot_gbps.unwrap(), memory.hot_gbps.unwrap()))
    );
    assert_eq!(
        stack.restores_vs_first,
        Some(ratio(stack.restores_per_s.unwrap(), memory.restores_per_s.unwrap()))
    );
    assert_eq!(
        stack.ram_vs_last,
        Some(ratio(
            stack.ram_bytes.unwrap() as f64,
            compressed.ram_bytes.unwrap() as f64
        ))
    );
    // The bound at the measured split: each hot restore at its tier's own speed.
    let first_share = stack.hot_from_first.unwrap();
    let per_restore = first_share + (1.0 - first_share) * memory.hot_gbps.unwrap() / compressed.hot_gbps.unwrap();
    let ideal = stack.ideal_hot_vs_first.unwrap();
    assert!((ideal - 1.0 / per_restore).abs() < 0.01, "{ideal} {per_restore}");
    assert!(stack.ideal_restores_vs_first.is_some_and(|v| v > 0.0), "{stack:?}");
    for alone in [memory, compressed] {
        assert!(alone.tiers.is_none() && alone.budget_bytes.is_none() && alone.hot_vs_first.is_none());
        assert!(alone.ideal_hot_vs_first.is_none());
    }
    assert!(stdout.contains("skewed replay: 256 pages"), "{stdout}");
    assert!(stdout.contains("RAM vs last"), "{stdout}");
    assert!(chart.contains("Restore throughput against RAM budget"), "{chart}");
}

#[test]
fn working_set_zipf_runs_each_budget_of_the_stack() {
    let tiered = "tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd],budget=64KiB";
    let (stdout, report, chart) = bench_json(
        "zipf",
        &[
            "--working-set",
            "256",
            "--zipf",
            "0.99",
            "--budgets",
            "128KiB,256KiB",
            "--warmup",
            "2",
            "--restores",
            "300",
            "--pages",
            "64",
            "--rounds",
            "1",
            "--backend",
            tiered,
        ],
    );
    let skew = report.skew.unwrap();
    assert_eq!((skew.zipf, skew.hot_pages, skew.warmup_passes), (Some(0.99), 0.2, 2));
    assert!((0.5..0.9).contains(&skew.hot_restores), "{skew:?}");
    let budgets: Vec<_> = report.results.iter().map(|r| (r.role, r.budget_bytes)).collect();
    assert_eq!(
        budgets,
        [
            (Role::Baseline, None),
            (Role::Baseline, None),
            (Role::Backend, Some(128 << 10)),
            (Role::Backend, Some(256 << 10))
        ]
    );
    assert_eq!(
        report.results[3].backend,
        "tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd],budget=256KiB"
    );
    assert!(
        report.results[2..]
            .iter()
            .all(|r| r.hot_vs_first.is_some() && r.ram_vs_last.is_some())
    );
    assert!(stdout.contains("Zipf 0.99: 20% of pages take"), "{stdout}");
    assert!(
        stdout.contains("of 300 restores after 2 warm-up passes of as many"),
        "{stdout}"
    );
    assert!(chart.contains("Zipf 0.99"), "{chart}");
}

/// A redis-server with a password on a free loopback port, killed on drop;
/// `None` (with a `SKIP:` line) where redis-server or redis-benchmark is missing.
struct Server(Child, u16);

impl Server {
    fn start(password: &str) -> Option<Server> {
        for tool in ["redis-server", "redis-benchmark"] {
            if Command::new(tool).arg("--version").output().is_err() {
                println!("SKIP: the redis mode needs {tool} (apt-get install redis-server)");
                return None;
            }
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--maxmemory-policy", "noeviction", "--requirepass", password])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Server(child, port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn redis_json_holds_the_comparison_rows_and_no_output_shows_the_password() {
    let password = "pw-4b1d-never-shown";
    let Some(server) = Server::start(password) else {
        return;
    };
    let spec = format!("redis:url=redis://default:{password}@127.0.0.1:{}", server.1);
    let shown = format!("redis:url=redis://default:***@127.0.0.1:{}", server.1);
    let (json, svg) = (temp("redis.json"), temp("redis.svg"));
    for format in ["text", "md"] {
        let out = pagebackup(&[
            "bench",
            "--backend",
            &spec,
            "--pages",
            "128",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--full",
            "--format",
            format,
            "--json",
            json.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (json_text, chart) = (
            std::fs::read_to_string(&json).unwrap(),
            std::fs::read_to_string(&svg).unwrap(),
        );
        for (what, text) in [
            ("stdout", &*stdout),
            ("stderr", &stderr(&out)),
            ("JSON", &json_text),
            ("SVG", &chart),
        ] {
            assert!(!text.contains(password), "{what} shows the password:\n{text}");
        }
        assert!(stdout.contains(&shown) && chart.contains(&shown), "{stdout}");
        let report: Report = serde_json::from_str(&json_text).unwrap();
        let redis: Vec<_> = report.rows(Mode::Redis).collect();
        // Two references (-r N, one key), two ops, a baseline and a backend row each.
        assert_eq!(redis.len(), 2 * 2 * 2, "{redis:?}");
        for r in redis.iter().filter(|r| r.role == Role::Backend) {
            assert_eq!(r.backend, shown);
            assert!(r.speed_ratio.unwrap() > 0.0 && r.vs.as_deref().unwrap().starts_with("redis-benchmark"));
        }
        assert!(report.rows(Mode::Plain).any(|r| r.backend == shown));
    }
    std::fs::remove_file(json).unwrap();
    std::fs::remove_file(svg).unwrap();
}

#[test]
fn a_password_in_a_failing_spec_stays_out_of_the_error() {
    let password = "pw-in-an-error";
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for mode in [&[][..], &["--async"][..], &["--working-set", "64"][..]] {
        let spec = format!("redis:url=redis://user:{password}@127.0.0.1:{port},timeout=200ms");
        let mut args = vec!["bench", "--pages", "64", "--rounds", "1", "--backend", &spec];
        args.extend(mode);
        let out = pagebackup(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{mode:?}: no server, yet it succeeded");
        assert!(!err.contains(password), "{mode:?}: {err}");
        assert!(err.contains("redis://user:***@127.0.0.1"), "{mode:?}: {err}");
    }
}

#[test]
fn a_flag_a_mode_cannot_honour_is_a_usage_error() {
    let cases: [(&[&str], &str); 21] = [
        (
            &["--async", "--threads", "2"],
            "--threads applies to the plain and region mode only, not to the async mode",
        ),
        (
            &["--async", "--baselines", "all"],
            "--baselines applies to the plain mode only",
        ),
        (&["--async", "--working-set", "64"], "separate modes"),
        (
            &["--working-set", "64", "--batch", "8"],
            "--batch applies to the plain and async mode",
        ),
        (
            &["--working-set", "64", "--depth", "8"],
            "--depth applies to the async mode only",
        ),
        (
            &["--working-set", "64", "--kernel-zram"],
            "--kernel-zram applies to the plain mode only",
        ),
        (
            &["--depth", "8"],
            "--depth applies to the async mode only, not to the plain mode",
        ),
        (&["--hot", "20/80"], "--hot applies to the working-set mode only"),
        (&["--zipf", "0.99"], "--zipf applies to the working-set mode only"),
        (&["--warmup", "2"], "--warmup applies to the working-set mode only"),
        (
            &["--restores", "100"],
            "--restores applies to the working-set mode only",
        ),
        (
            &["--async", "--budgets", "1MiB"],
            "--budgets applies to the working-set mode only",
        ),
        (
            &["--working-set", "64", "--hot", "20/80", "--zipf", "0.99"],
            "--hot and --zipf are two kinds of skew",
        ),
        (
            &["--working-set", "64", "--budgets", "1MiB"],
            "--budgets sets the budget of tiered stacks",
        ),
        (&["--region", "--async"], "separate modes"),
        (
            &["--region", "--batch", "8"],
            "--batch applies to the plain and async mode",
        ),
        (
            &["--region", "--kernel-zram"],
            "--kernel-zram applies to the plain mode only",
        ),
        (&["--kernel-swap"], "--kernel-swap applies to the region mode only"),
        (&["--budget-mib", "4"], "--budget-mib applies to the region mode only"),
        (
            &["--working-set", "64", "--accesses", "10"],
            "--accesses applies to the region mode only",
        ),
        (&["--async", "--repeat", "4"], "--repeat applies to the plain mode only"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["bench", "--pages", "16", "--rounds", "1", "--backend", "memory"];
        args.extend(flags);
        let out = pagebackup(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing measured");
    }
}

#[test]
fn a_working_set_of_no_pages_or_a_pass_of_no_restores_is_refused() {
    for (flags, expected) in [
        (&["--working-set", "0"][..], "--working-set must be at least 1 page"),
        (
            &["--working-set", "64", "--restores", "0"][..],
            "--restores must be at least 1",
        ),
    ] {
        let mut args = vec!["bench", "--rounds", "1", "--backend", "memory"];
        args.extend(flags);
        let out = pagebackup(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
    }
}
