//! The region mode (`bench --region`): the region anchor's four workloads
//! (random, hot, seq, scan) over an offload region for each backend spec,
//! and with `--kernel-swap` the same workloads over plain memory under the
//! kernel's swap: a v1 memory cgroup limited to the budget, swap on
//! `/dev/zram0` (lz4), `vm.page-cluster=0`, set up here and torn down after.
//!
//! The kernel's run happens in a child process (this same program, with the
//! hidden `kernel-workload` command) that puts itself in the cgroup first,
//! so that only its memory is limited.
//!
//! The rows' `fault_p50_us`/`fault_p99_us` are the latencies of single
//! accesses (random, hot) or pages (seq, scan), timed on the workload's
//! thread as the region anchor times them, for both sides alike: with the
//! region several times its budget most random accesses fault, so they are
//! fault latencies there; in hot, the median is a resident access.
//! `cpu_s` is the whole process's CPU time during the workload (the
//! region's evictor included; for the kernel, reclaim done in the process);
//! a region's rows split out its evictor's CPU time (`evictor_cpu_s`) and
//! the time spent serving faults (`fault_service_s`).

use std::path::{Path, PathBuf};
use std::process::Command;

use pagebackup::PAGE_SIZE;
use pagebackup::region::RegionConfig;
use pagebackup::region::bench::{self, Replay, Workload};
use serde::{Deserialize, Serialize};

use crate::adapters::Error;
use crate::report::{self, Mode, Role, Row, round_to};

/// The name of the kernel's rows.
pub const KERNEL_SWAP: &str = "kernel:swap-zram-lz4";

/// What a region bench runs.
#[derive(Debug, Clone)]
pub struct RegionBench {
    /// The backend specs, each behind its own region.
    pub specs: Vec<String>,
    /// Bytes of the region.
    pub len: usize,
    /// Bytes it may keep resident.
    pub budget: usize,
    /// Accesses of random and hot (`None`: 500 000 and 2 000 000, as the anchor).
    pub accesses: Option<u64>,
    /// Threads of random and hot.
    pub threads: usize,
    /// Rounds of each workload; the best is kept.
    pub rounds: usize,
    /// Also run the kernel's swap on zram.
    pub kernel_swap: bool,
}

impl RegionBench {
    fn accesses(&self, workload: Workload) -> u64 {
        self.accesses.unwrap_or(match workload {
            Workload::Hot => 2_000_000,
            _ => 500_000,
        })
    }
}

/// One workload's figures, from a region or from the kernel's child.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Figures {
    /// Threads.
    pub threads: usize,
    /// Accesses per second (random, hot).
    pub accesses_per_s: f64,
    /// GB/s (seq, scan).
    pub gbps: f64,
    /// Median access latency, µs.
    pub p50_us: f64,
    /// 99th percentile access latency, µs.
    pub p99_us: f64,
    /// Bytes of RAM used at the end (resident pages and the store of evicted ones).
    pub ram_bytes: u64,
    /// Original bytes over bytes of the store of evicted pages.
    pub effective_ratio: Option<f64>,
    /// CPU seconds of the whole process during the workload (every thread).
    pub cpu_s: f64,
    /// Of those, the region's evictor's (absent for the kernel).
    #[serde(default)]
    pub evictor_cpu_s: Option<f64>,
    /// Seconds the region spent serving faults (absent for the kernel).
    #[serde(default)]
    pub fault_service_s: Option<f64>,
}

impl Figures {
    fn new(r: &Replay, ram_bytes: u64, effective_ratio: Option<f64>, cpu_s: f64) -> Figures {
        Figures {
            threads: r.threads,
            accesses_per_s: r.accesses_per_s,
            gbps: r.gbps,
            p50_us: r.access_p50_us,
            p99_us: r.access_p99_us,
            ram_bytes,
            effective_ratio,
            cpu_s,
            evictor_cpu_s: None,
            fault_service_s: None,
        }
    }

    /// The figure the workload is judged by: accesses/s or GB/s.
    fn speed(&self) -> f64 {
        self.accesses_per_s.max(self.gbps)
    }

    fn row(&self, name: &str, role: Role, workload: Workload, pages: usize, kernel: Option<&Figures>) -> Row {
        let mut row = Row::new(name, role, Mode::Region);
        row.workload = Some(workload.name().into());
        row.threads = Some(self.threads);
        row.pages = Some(pages);
        row.accesses_per_s = (self.accesses_per_s > 0.0).then(|| self.accesses_per_s.round());
        row.gbps = (self.gbps > 0.0).then(|| round_to(self.gbps, 3));
        row.fault_p50_us = Some(round_to(self.p50_us, 2));
        row.fault_p99_us = Some(round_to(self.p99_us, 2));
        row.ram_bytes = Some(self.ram_bytes);
        row.effective_ratio = self.effective_ratio.map(|r| round_to(r, 3));
        row.cpu_s = Some(round_to(self.cpu_s, 3));
        row.evictor_cpu_s = self.evictor_cpu_s.map(|s| round_to(s, 3));
        row.fault_service_s = self.fault_service_s.map(|s| round_to(s, 3));
        row.vs_kernel = kernel
            .map(Figures::speed)
            .filter(|&k| k > 0.0)
            .map(|k| round_to(self.speed() / k, 3));
        row
    }
}

/// CPU seconds the process has used so far, every thread.
fn cpu_now() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Of several rounds' figures, the fastest.
fn best(rounds: impl Iterator<Item = Result<Figures, Error>>) -> Result<Figures, Error> {
    let mut best: Option<Figures> = None;
    for f in rounds {
        let f = f?;
        if best.is_none_or(|b| f.speed() > b.speed()) {
            best = Some(f);
        }
    }
    best.ok_or_else(|| "no round ran".into())
}

/// One workload over a fresh region of `spec` filled with `corpus`.
fn region_round(
    bench: &RegionBench,
    spec: &str,
    workload: Workload,
    corpus: &[pagebackup::Page],
) -> Result<Figures, Error> {
    let region = pagebackup::open_region(spec, bench.len, bench.budget, RegionConfig::new())
        .map_err(|e| format!("--backend {}: region mode: {e}", report::shown(spec)))?;
    bench::fill(&region, corpus);
    let cpu = cpu_now();
    let r = bench::run(&region, workload, bench.accesses(workload), bench.threads);
    let cpu_s = cpu_now() - cpu;
    if let Some(e) = region.last_error() {
        return Err(format!(
            "--backend {}: region mode, {}: {e}",
            report::shown(spec),
            workload.name()
        )
        .into());
    }
    let s = &r.stats;
    let ratio = (s.backend_bytes > 0).then(|| s.backend_original_bytes as f64 / s.backend_bytes as f64);
    Ok(Figures {
        evictor_cpu_s: Some(r.evictor_cpu_s),
        fault_service_s: Some(r.fault_service_s),
        ..Figures::new(&r.replay(), r.ram_bytes, ratio, cpu_s)
    })
}

/// Runs the region mode; `corpus_args` are the arguments that give the
/// kernel's child the same corpus (`--corpus FILE` or `--pages N`).
pub fn run(bench: &RegionBench, corpus: &[pagebackup::Page], corpus_args: &[String]) -> Result<Vec<Row>, Error> {
    let pages = bench.len / PAGE_SIZE;
    let mut kernel = Vec::new();
    if bench.kernel_swap {
        match KernelSwap::set_up(bench) {
            Ok(swap) => {
                let (figures, skips) = kernel_rounds(bench.rounds, |w| swap.run(bench, w, corpus_args));
                for skip in skips {
                    eprintln!("pagebackup: {skip}");
                }
                kernel = figures;
            }
            Err(e) => eprintln!("pagebackup: --kernel-swap skipped: {e}"),
        }
    }
    let mut rows: Vec<Row> = kernel
        .iter()
        .map(|(w, f)| f.row(KERNEL_SWAP, Role::Baseline, *w, pages, None))
        .collect();
    for spec in &bench.specs {
        for workload in Workload::ALL {
            crate::stop::check()?;
            let f = best((0..bench.rounds).map(|_| region_round(bench, spec, workload, corpus)))?;
            let k = kernel.iter().find(|(w, _)| *w == workload).map(|(_, k)| k);
            let mut row = f.row(spec, Role::Backend, workload, pages, k);
            row.budget_bytes = Some(bench.budget as u64);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The kernel's figures for each workload that `run` measured, and a skip
/// line (with the reason) for each it could not: a child killed by the OOM
/// killer or a signal, or failing otherwise, costs that workload its kernel
/// row, not the bench.
fn kernel_rounds(
    rounds: usize,
    mut run: impl FnMut(Workload) -> Result<Figures, Error>,
) -> (Vec<(Workload, Figures)>, Vec<String>) {
    let mut figures = Vec::new();
    let mut skips = Vec::new();
    for workload in Workload::ALL {
        match best((0..rounds).map(|_| run(workload))) {
            Ok(f) => figures.push((workload, f)),
            Err(e) => skips.push(format!("--kernel-swap, {}: skipped: {e}", workload.name())),
        }
    }
    (figures, skips)
}

/// The figures a kernel child printed, or why there are none: killed (by
/// which signal, and whether the cgroup's OOM killer did it, from
/// `oom_kills` counted before and after), or failed.
fn child_figures(
    workload: Workload,
    out: &std::process::Output,
    oom_kills: impl FnOnce() -> Option<u64>,
) -> Result<Figures, Error> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = out.status.signal() {
        let by = match oom_kills() {
            Some(n) if n > 0 => " by the OOM killer (the cgroup's memory limit)".to_string(),
            _ => String::new(),
        };
        return Err(format!(
            "{KERNEL_SWAP}, {}: the workload was killed{by} (signal {signal}){}",
            workload.name(),
            stderr_tail(&out.stderr)
        )
        .into());
    }
    if !out.status.success() {
        return Err(format!(
            "{KERNEL_SWAP}, {}: the workload failed ({}){}",
            workload.name(),
            out.status,
            stderr_tail(&out.stderr)
        )
        .into());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{KERNEL_SWAP}, {}: unreadable figures: {e}", workload.name()).into())
}

/// `: ` and the child's last line of error output, if it wrote one.
fn stderr_tail(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .trim()
        .lines()
        .last()
        .map_or(String::new(), |l| format!(": {l}"))
}

const ZRAM: &str = "/sys/block/zram0";
const CGROUP_V1: &str = "/sys/fs/cgroup/memory";
const PAGE_CLUSTER: &str = "/proc/sys/vm/page-cluster";

/// The kernel's swap on zram under a memory cgroup, torn down on drop.
struct KernelSwap {
    cgroup: PathBuf,
    old_cluster: Option<String>,
    swap_on: bool,
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {value} to {}: {e}", path.display()).into())
}

fn tool(name: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(name)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

impl KernelSwap {
    /// Sets it up, or says why it cannot: not root, no zram0 or zram0 in
    /// use, no v1 memory controller, no lz4, `mkswap`/`swapon` missing.
    fn set_up(bench: &RegionBench) -> Result<KernelSwap, Error> {
        crate::zram::check_free()?;
        if !Path::new(CGROUP_V1).join("memory.limit_in_bytes").exists() {
            return Err(format!("no v1 memory cgroup controller at {CGROUP_V1}").into());
        }
        let mut swap = KernelSwap {
            cgroup: Path::new(CGROUP_V1).join(format!("pagebackup-bench-{}", std::process::id())),
            old_cluster: None,
            swap_on: false,
        };
        write(&Path::new(ZRAM).join("comp_algorithm"), "lz4")?;
        // Room for the whole region even if nothing compresses.
        write(
            &Path::new(ZRAM).join("disksize"),
            &(2 * bench.len).max(64 << 20).to_string(),
        )?;
        tool("mkswap", &["/dev/zram0"])?;
        tool("swapon", &["/dev/zram0"])?;
        swap.swap_on = true;
        swap.old_cluster = Some(
            std::fs::read_to_string(PAGE_CLUSTER)
                .map_err(|e| format!("cannot read {PAGE_CLUSTER}: {e}"))?
                .trim()
                .to_string(),
        );
        write(Path::new(PAGE_CLUSTER), "0")?;
        std::fs::create_dir(&swap.cgroup).map_err(|e| format!("cannot create {}: {e}", swap.cgroup.display()))?;
        write(&swap.cgroup.join("memory.limit_in_bytes"), &bench.budget.to_string())?;
        Ok(swap)
    }

    /// One workload in a child in the cgroup.
    fn run(&self, bench: &RegionBench, workload: Workload, corpus_args: &[String]) -> Result<Figures, Error> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let oom_control = self.cgroup.join("memory.oom_control");
        let kills = || read_field(&oom_control, "oom_kill");
        let before = kills();
        let out = Command::new(exe)
            .arg("kernel-workload")
            .args(["--cgroup", &self.cgroup.to_string_lossy()])
            .args(["--workload", workload.name()])
            .args(["--len", &bench.len.to_string()])
            .args(["--accesses", &bench.accesses(workload).to_string()])
            .args(["--threads", &bench.threads.to_string()])
            .args(corpus_args)
            .output()
            .map_err(|e| format!("{KERNEL_SWAP}: cannot start the workload: {e}"))?;
        child_figures(workload, &out, || Some(kills()?.saturating_sub(before.unwrap_or(0))))
    }
}

impl Drop for KernelSwap {
    fn drop(&mut self) {
        // Best effort: nothing more to do about a failure than leave it set up.
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(old) = &self.old_cluster {
            let _ = std::fs::write(PAGE_CLUSTER, old);
        }
        if self.swap_on {
            let _ = tool("swapoff", &["/dev/zram0"]);
        }
        let _ = std::fs::write(Path::new(ZRAM).join("reset"), "1");
    }
}

/// The kernel's side, in the child: joins `cgroup`, fills `len` bytes of
/// plain memory with `corpus` and replays `workload`; returns the figures,
/// with the cgroup's and zram's use read before the memory goes away.
pub fn kernel_workload(
    cgroup: &Path,
    workload: Workload,
    len: usize,
    accesses: u64,
    threads: usize,
    corpus: &[pagebackup::Page],
) -> Result<Figures, Error> {
    write(&cgroup.join("tasks"), &std::process::id().to_string())?;
    if corpus.is_empty() {
        return Err("the corpus is empty".into());
    }
    // Filled as it is built, each word written once, in order, into memory
    // allocated once (a reallocation would copy through the swap).
    let mut words = Vec::with_capacity(len / 8);
    words.extend(
        (0..len / PAGE_SIZE)
            .flat_map(|p| corpus[p % corpus.len()].words())
            .map(std::sync::atomic::AtomicU64::new),
    );
    let cpu = cpu_now();
    let r = bench::replay(&words, workload, accesses, threads);
    let cpu_s = cpu_now() - cpu;
    let usage: u64 = read_number(&cgroup.join("memory.usage_in_bytes"), 0)?;
    // mm_stat: orig_data_size compr_data_size mem_used_total ...
    let orig = read_number(&Path::new(ZRAM).join("mm_stat"), 0)?;
    let used = read_number(&Path::new(ZRAM).join("mm_stat"), 2)?;
    drop(words);
    let ratio = (used > 0).then(|| orig as f64 / used as f64);
    Ok(Figures::new(&r, usage + used, ratio, cpu_s))
}

/// The value of the line `name VALUE` of a file such as `memory.oom_control`.
fn read_field(path: &Path, name: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        (fields.next()? == name).then(|| fields.next()?.parse().ok())?
    })
}

fn read_number(path: &Path, field: usize) -> Result<u64, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.split_whitespace()
        .nth(field)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: no number in field {field}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that kills itself, as the OOM killer or an operator would.
    fn killed_child() -> std::process::Output {
        Command::new("sh")
            .args(["-c", "echo about to die >&2; kill -9 $$"])
            .output()
            .expect("sh runs")
    }

    fn figures() -> Figures {
        Figures {
            threads: 1,
            accesses_per_s: 1000.0,
            gbps: 0.0,
            p50_us: 1.0,
            p99_us: 2.0,
            ram_bytes: 4096,
            effective_ratio: None,
            cpu_s: 0.5,
            evictor_cpu_s: None,
            fault_service_s: None,
        }
    }

    #[test]
    fn a_killed_child_is_an_error_naming_the_signal_and_the_oom_killer() {
        let out = killed_child();
        let e = child_figures(Workload::Random, &out, || Some(1))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "kernel:swap-zram-lz4, random: the workload was killed by the OOM killer \
             (the cgroup's memory limit) (signal 9): about to die"
        );
        let e = child_figures(Workload::Seq, &out, || Some(0)).unwrap_err().to_string();
        assert_eq!(
            e,
            "kernel:swap-zram-lz4, seq: the workload was killed (signal 9): about to die"
        );
    }

    #[test]
    fn a_killed_kernel_child_skips_its_rows_and_the_bench_goes_on() {
        let mut calls = Vec::new();
        let (figures, skips) = kernel_rounds(2, |w| {
            calls.push(w);
            if w == Workload::Hot {
                child_figures(w, &killed_child(), || None)
            } else {
                Ok(figures())
            }
        });
        // Every workload was tried; hot stopped at its first killed round.
        assert_eq!(
            calls,
            [
                Workload::Random,
                Workload::Random,
                Workload::Hot,
                Workload::Seq,
                Workload::Seq,
                Workload::Scan,
                Workload::Scan
            ]
        );
        let measured: Vec<Workload> = figures.iter().map(|(w, _)| *w).collect();
        assert_eq!(measured, [Workload::Random, Workload::Seq, Workload::Scan]);
        assert_eq!(
            skips,
            [
                "--kernel-swap, hot: skipped: kernel:swap-zram-lz4, hot: the workload was killed (signal 9): about to die"
            ]
        );
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_status() {
        let out = Command::new("sh")
            .args(["-c", "echo no cgroup >&2; exit 3"])
            .output()
            .unwrap();
        let e = child_figures(Workload::Scan, &out, || None).unwrap_err().to_string();
        assert_eq!(
            e,
            "kernel:swap-zram-lz4, scan: the workload failed (exit status: 3): no cgroup"
        );
    }
}
