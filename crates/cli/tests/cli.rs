//! The `pagebackup` command end to end: bench, capture, stat, and the
//! messages bad input gets.

use std::path::PathBuf;
use std::process::{Command, Output};

fn pagebackup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagebackup"))
        .args(args)
        .output()
        .expect("the pagebackup binary runs")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pagebackup-cli-test-{}-{name}", std::process::id()))
}

/// Held by the tests that use `/dev/zram0`, which only one can hold at a time.
static ZRAM0: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The tiered stack a bench of 512 pages runs by default.
const TIERED_512: &str = "tiered:tiers=[compressed:algo=lz4|compressed:algo=zstd],budget=512KiB";

#[test]
fn bench_reports_a_row_or_a_skip_line_for_every_backend_of_the_build() {
    let json = temp("every-backend.json");
    let out = pagebackup(&[
        "bench",
        "--pages",
        "256",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    let ran = |name: &str| {
        report["results"].as_array().unwrap().iter().any(|r| {
            r["role"] == "backend"
                && (r["backend"] == name || r["backend"].as_str().unwrap().starts_with(&format!("{name}:")))
        })
    };
    let skipped = |name: &str| {
        report["skipped"].as_array().is_some_and(|s| {
            s.iter().any(|k| {
                let backend = k["backend"].as_str().unwrap();
                let reason = k["reason"].as_str().unwrap();
                (backend == name || backend.starts_with(&format!("{name}:")))
                    && !reason.is_empty()
                    && stdout.contains(&format!("skipped {backend}: {reason}"))
            })
        })
    };
    let all = pagebackup::available_backends();
    assert!(all.len() >= 6, "an all-features build: {all:?}");
    for name in all {
        assert!(
            ran(name) != skipped(name),
            "{name}: a row or a skip line, not both nor neither\n{stdout}"
        );
    }
    // Tiered runs as lz4 over zstd, its first tier a quarter of the corpus.
    assert!(
        ran("tiered:tiers=[compressed:algo=lz4|compressed:algo=zstd],budget=256KiB"),
        "{stdout}"
    );
}

#[test]
fn bench_explain_says_what_each_column_means_and_runs_nothing() {
    let out = pagebackup(&["bench", "--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (header, meaning) in pagebackup_cli::glossary::COLUMNS {
        assert!(
            stdout.contains(&format!("  {header} ")) && stdout.contains(meaning),
            "{header}: {stdout}"
        );
    }
    assert!(!stdout.contains("recommendation"), "{stdout}");
}

#[test]
fn backends_lists_each_backend_with_its_parameters_and_defaults() {
    let out = pagebackup(&["backends"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for name in pagebackup::available_backends() {
        let at = lines
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("{name}: {stdout}"));
        let params = pagebackup::backend_params(name).unwrap();
        assert!(!params.is_empty(), "{name}");
        // Its parameters follow its name, in the parser's order, each with its default.
        for (line, p) in lines[at + 1..].iter().zip(params) {
            assert!(
                line.trim_start().starts_with(&format!("{}={}", p.key, p.syntax)),
                "{line}"
            );
            assert!(line.ends_with(&format!("(default: {})", p.default)), "{line}");
        }
    }
    assert!(stdout.contains("  limit=SIZE"), "memory's limit: {stdout}");
}

#[test]
fn bench_compares_every_backend_with_its_baseline_and_writes_json_and_svg() {
    let (json, svg) = (temp("bench.json"), temp("bench.svg"));
    let out = pagebackup(&[
        "bench",
        "--pages",
        "512",
        "--rounds",
        "1",
        "--threads",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("restored pages verified against the originals"),
        "{stdout}"
    );
    // The summary: one aligned line per backend, no Markdown, then the
    // recommendation; the full table only with --full.
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("backend  "))
        .expect("a summary header");
    assert!(
        lines[header].contains("backup GB/s") && lines[header].contains("memory saved"),
        "{stdout}"
    );
    let names: Vec<&str> = lines[header + 2..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["memory", "shmem", "file", "compressed", TIERED_512], "{stdout}");
    // (The tiered spec has a `|` of its own, between its tiers.)
    assert!(
        !stdout.lines().any(|l| l.starts_with('|')) && !stdout.contains("**") && !stdout.contains('`'),
        "{stdout}"
    );
    assert!(stdout.contains("\nrecommendation: "), "{stdout}");
    assert!(!stdout.contains(" role "), "the full table without --full: {stdout}");

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["kernel"].as_str().unwrap().starts_with("Linux"));
    assert_eq!(report["corpus"]["source"], "built-in");
    assert_eq!(report["corpus"]["pages"], 512);
    let results = report["results"].as_array().unwrap();
    let names: std::collections::BTreeSet<(&str, &str)> = results
        .iter()
        .map(|r| (r["backend"].as_str().unwrap(), r["role"].as_str().unwrap()))
        .collect();
    // Only the baselines the backends are compared with.
    let expected: std::collections::BTreeSet<(&str, &str)> = [
        ("baseline:copy-prefaulted", "baseline"),
        ("baseline:pwrite-file", "baseline"),
        ("baseline:lz4_flex", "baseline"),
        ("memory", "backend"),
        ("shmem", "backend"),
        ("file", "backend"),
        ("compressed", "backend"),
        (TIERED_512, "backend"),
    ]
    .into();
    assert_eq!(names, expected);
    for r in results {
        for field in ["backend", "op", "threads", "batch", "pages", "p50_us", "p99_us"] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        match r["op"].as_str().unwrap() {
            "drop" => assert!(r["gbps"].is_null() && r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}"),
            op => {
                assert!(r["gbps"].as_f64().unwrap() > 0.0 && r["ops_per_s"].is_null(), "{r}");
                if op == "backup" {
                    assert!(
                        r["effective_ratio"].as_f64().unwrap() > 0.0 && r["memory_bytes"].as_u64().is_some(),
                        "{r}"
                    );
                }
            }
        }
    }
    let compressed = results
        .iter()
        .find(|r| r["backend"] == "compressed" && r["op"] == "backup")
        .unwrap();
    assert_eq!(compressed["vs"], "baseline:lz4_flex");
    assert!(compressed["speed_ratio"].as_f64().unwrap() > 0.0);
    let threads: std::collections::BTreeSet<u64> = results.iter().map(|r| r["threads"].as_u64().unwrap()).collect();
    let batches: std::collections::BTreeSet<u64> = results.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(
        (
            threads.into_iter().collect::<Vec<_>>(),
            batches.into_iter().collect::<Vec<_>>()
        ),
        (vec![1, 2], vec![1, 64])
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    // A legend entry per adapter; backends as circles, baselines as squares,
    // each with a backup and a restore marker besides its legend marker.
    for name in [
        "compressed",
        "baseline:lz4_flex",
        "backends",
        "baselines",
        "filled: backup, hollow: restore",
    ] {
        assert!(
            chart.contains(&format!(">{name}</text>")),
            "{name} missing from the chart"
        );
    }
    assert_eq!(chart.matches("<circle").count(), 5 * 3);
    assert_eq!(
        chart.matches("<rect x=").count(),
        1 + 3 * 3,
        "the plot frame and the baselines' squares"
    );
    std::fs::remove_file(json).unwrap();
    std::fs::remove_file(svg).unwrap();
}

#[test]
fn the_full_table_in_markdown_and_every_baseline_on_request() {
    let out = pagebackup(&[
        "bench",
        "--pages",
        "128",
        "--rounds",
        "1",
        "--backend",
        "memory",
        "--backend",
        "compressed:algo=zstd,level=3",
        "--baselines",
        "all",
        "--full",
        "--format",
        "md",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| backend "), "{stdout}");
    for name in [
        "baseline:copy-prefaulted",
        "baseline:pwrite-memfd",
        "baseline:pwritev-memfd",
        "baseline:pwrite-file",
        "baseline:lz4_flex",
        "baseline:zstd-1",
        "baseline:zstd-3",
    ] {
        assert!(stdout.contains(&format!("| {name} ")), "{name} missing: {stdout}");
    }
    assert!(
        stdout.contains(" M ops/s |"),
        "drops in operations per second: {stdout}"
    );
    assert!(
        stdout.contains("x baseline:zstd-3"),
        "the zstd-3 backend is compared with zstd-3: {stdout}"
    );
}

#[test]
fn a_captured_process_becomes_a_corpus() {
    let mut child = Command::new("sleep").arg("60").spawn().expect("sleep runs");
    // Wait until the child has finished exec'ing `sleep` and mapped its C
    // library (or, if it has none, at least its own binary, after a while):
    // captured before that, it is a half-built process.
    let maps = format!("/proc/{}/maps", child.id());
    let started = std::time::Instant::now();
    loop {
        let m = std::fs::read_to_string(&maps).unwrap_or_default();
        let waited = started.elapsed().as_secs_f64();
        if m.contains("libc") || (waited > 2.0 && m.contains("sleep")) {
            break;
        }
        assert!(waited < 10.0, "sleep did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let file = temp("capture.pages");
    let out = pagebackup(&[
        "capture",
        "--pid",
        &child.id().to_string(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        report.contains("captured") && report.contains("skipped") && report.contains("file-backed"),
        "{report}"
    );
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 0 && len.is_multiple_of(4096), "{len}");

    let stat = pagebackup(&["stat", file.to_str().unwrap()]);
    assert!(stat.status.success() && String::from_utf8_lossy(&stat.stdout).contains(&format!("{} pages", len / 4096)));

    let json = temp("capture.json");
    let out = pagebackup(&[
        "bench",
        "--corpus",
        file.to_str().unwrap(),
        "--rounds",
        "1",
        "--backend",
        "compressed",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["corpus"]["source"], file.to_str().unwrap());
    assert_eq!(report["corpus"]["pages"], len / 4096);
    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(json).unwrap();
}

#[test]
fn bad_input_gets_a_message_and_a_failing_status() {
    let odd = temp("odd.pages");
    std::fs::write(&odd, vec![1u8; 5000]).unwrap();
    let cases: [(Vec<&str>, &str); 7] = [
        (
            vec!["bench", "--backend", "tape", "--pages", "64"],
            "--backend tape: unknown backend 'tape'",
        ),
        (
            vec!["bench", "--backend", "compressed:algo=brotli", "--pages", "64"],
            "expected lz4 or zstd",
        ),
        (
            vec!["bench", "--corpus", odd.to_str().unwrap()],
            "is 5000 bytes, not a whole number of 4096-byte pages",
        ),
        (
            vec!["bench", "--corpus", "/nonexistent/corpus"],
            "cannot read the corpus /nonexistent/corpus",
        ),
        (
            vec!["capture", "--pid", "999999999", "--out", "/tmp/never-written"],
            "no process 999999999",
        ),
        (vec!["bench", "--batch", "0"], "must be at least 1"),
        (
            vec!["bench", "--corpus", odd.to_str().unwrap(), "--pages", "64"],
            "the argument '--corpus <CORPUS>' cannot be used with '--pages <PAGES>'",
        ),
    ];
    for (args, expected) in cases {
        let out = pagebackup(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!PathBuf::from("/tmp/never-written").exists());
    std::fs::remove_file(odd).unwrap();
}

#[test]
fn the_kernel_zram_baseline_is_measured_and_reset() {
    let _zram0 = ZRAM0.lock().unwrap_or_else(|e| e.into_inner());
    let free = std::fs::read_to_string("/sys/block/zram0/initstate").is_ok_and(|s| s.trim() == "0");
    if !rustix::process::geteuid().is_root() || !free {
        println!("SKIP: --kernel-zram needs root and an unused /dev/zram0");
        return;
    }
    let json = temp("zram.json");
    let out = pagebackup(&[
        "bench",
        "--pages",
        "4096",
        "--rounds",
        "1",
        "--backend",
        "compressed",
        "--kernel-zram",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let zram = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "kernel:zram-lz4" && r["op"] == "backup")
        .cloned();
    let zram = zram.expect("a kernel:zram-lz4 row");
    // On a few hundred pages zsmalloc's partly filled pages outweigh the
    // compression; 16 MiB of the built-in corpus compresses to about half.
    assert!(zram["effective_ratio"].as_f64().unwrap() > 1.5, "{zram}");
    assert_eq!(
        std::fs::read_to_string("/sys/block/zram0/initstate").unwrap().trim(),
        "0",
        "zram0 was not reset"
    );
    std::fs::remove_file(json).unwrap();
}

/// Runs the command, killing it and failing if it has not ended in `secs`.
fn pagebackup_within(args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagebackup"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the pagebackup binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_failed_capture_keeps_an_existing_output_and_special_files_are_refused() {
    let existing = temp("existing.pages");
    std::fs::write(&existing, b"keep me").unwrap();
    let path = existing.to_str().unwrap();
    let cases: [(Vec<&str>, String); 4] = [
        (
            vec!["capture", "--pid", "999999", "--out", path],
            format!("{path} exists; pass --force to replace it"),
        ),
        (
            vec!["capture", "--pid", "999999", "--out", path, "--force"],
            "no process 999999".into(),
        ),
        (
            vec!["capture", "--pid", "1", "--out", "/dev/null", "--force"],
            "/dev/null exists and is not a regular file; refusing to replace it".into(),
        ),
        (
            vec!["capture", "--pid", "1", "--out", "/tmp", "--force"],
            "/tmp exists and is not a regular file; refusing to replace it".into(),
        ),
    ];
    for (args, expected) in cases {
        let out = pagebackup(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr(&out), format!("pagebackup: {expected}\n"), "{args:?}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me", "{args:?}");
    }
    let dir = std::env::temp_dir();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!(".{}.", existing.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in {}: {leftovers:?}",
        dir.display()
    );
    std::fs::remove_file(existing).unwrap();
}

#[test]
fn fifo_and_device_inputs_are_refused_without_hanging() {
    let fifo = temp("input.fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let fifo_path = fifo.to_str().unwrap();
    for path in [fifo_path, "/dev/zero"] {
        for args in [vec!["stat", path], vec!["bench", "--corpus", path, "--rounds", "1"]] {
            let out = pagebackup_within(&args, 20);
            assert!(!out.status.success(), "{args:?} succeeded");
            assert_eq!(
                stderr(&out),
                format!("pagebackup: the corpus {path} is not a regular file; refusing to read it\n"),
                "{args:?}"
            );
        }
    }
    std::fs::remove_file(fifo).unwrap();
}

/// Sends `signal` to a running bench once `ready` holds for its pid, and
/// returns its output.
fn signalled_bench(args: &[&str], signal: rustix::process::Signal, ready: impl Fn(u32) -> bool) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_pagebackup"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the pagebackup binary runs");
    let started = std::time::Instant::now();
    while !ready(child.id()) {
        assert!(started.elapsed().as_secs() < 30, "the bench never got ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed().as_secs() < 20,
        "the bench took {:?} to stop",
        signalled.elapsed()
    );
    out
}

#[test]
fn sigint_stops_a_bench_with_the_shell_status() {
    let out = signalled_bench(
        &["bench", "--pages", "4096", "--rounds", "1000", "--backend", "memory"],
        rustix::process::Signal::INT,
        // Once the command blocks SIGINT (bit 1 of SigBlk) it takes the signal as a request.
        |pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & 0b10 != 0)
        },
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("pagebackup: stopped by SIGINT; everything it set up was undone\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_during_a_kernel_zram_bench_resets_zram0() {
    let _zram0 = ZRAM0.lock().unwrap_or_else(|e| e.into_inner());
    let initstate = || std::fs::read_to_string("/sys/block/zram0/initstate").map(|s| s.trim().to_string());
    if !rustix::process::geteuid().is_root() || initstate().ok().as_deref() != Some("0") {
        println!("SKIP: --kernel-zram needs root and an unused /dev/zram0");
        return;
    }
    let out = signalled_bench(
        &[
            "bench",
            "--pages",
            "4096",
            "--rounds",
            "1000",
            "--backend",
            "memory",
            "--kernel-zram",
        ],
        rustix::process::Signal::TERM,
        |_| initstate().is_ok_and(|s| s == "1"),
    );
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(initstate().unwrap(), "0", "zram0 was left initialised");
}

#[test]
fn a_shmem_reuse_bound_below_a_round_is_said_before_the_figures() {
    let out = pagebackup(&[
        "bench",
        "--pages",
        "512",
        "--rounds",
        "1",
        "--backend",
        "shmem:reuse=1MiB",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pagebackup: shmem:reuse=1MiB: its reuse bound (1024 KiB) is below the 2048 KiB"),
        "{}",
        stderr(&out)
    );
    let fits = pagebackup(&[
        "bench",
        "--pages",
        "128",
        "--rounds",
        "1",
        "--backend",
        "shmem:reuse=1MiB",
    ]);
    assert!(fits.status.success(), "{}", stderr(&fits));
    assert!(!stderr(&fits).contains("reuse bound"), "{}", stderr(&fits));
}
