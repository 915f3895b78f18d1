//! Runs the region anchor's workloads over offload regions, one line of
//! `key=value` figures per run, for comparison with the anchor tool's
//! kernel and floor figures measured in the same session.
//!
//! ```text
//! region_bench [--corpus FILE|built-in] [--spec SPEC]... [--workload W]... [--len-mib N]
//!              [--budget-mib N] [--mode signal|thread] [--threads N] [--runs N] [--clean on|off]
//!              [--sampling on|off] [--read-ahead N] [--evict-batch N] [--accesses N]
//! region_bench --corpus built-in --dump FILE      (writes the corpus as a page file)
//! ```

use std::path::Path;

use pagebackup_cli::corpus::Corpus;
use pagebackup_core::BackupBackend;
use pagebackup_region::bench::{self, Workload};
use pagebackup_region::{FaultMode, OffloadRegion, RegionConfig};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut corpus_arg = "built-in".to_string();
    let mut specs = Vec::new();
    let mut workloads = Vec::new();
    let (mut len_mib, mut budget_mib, mut threads, mut runs) = (1024usize, 256usize, 1usize, 1usize);
    let mut config = RegionConfig::new();
    let mut dump = None;
    let mut accesses_arg: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--corpus" => corpus_arg = value,
            "--dump" => dump = Some(value),
            "--accesses" => accesses_arg = Some(value.parse()?),
            "--spec" => specs.push(value),
            "--workload" => workloads.push(Workload::from_name(&value).ok_or_else(|| format!("no workload {value}"))?),
            "--len-mib" => len_mib = value.parse()?,
            "--budget-mib" => budget_mib = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--runs" => runs = value.parse()?,
            "--mode" => {
                config = config.with_mode(match value.as_str() {
                    "signal" => FaultMode::Signal,
                    "thread" => FaultMode::HandlerThread,
                    _ => return Err(format!("--mode signal|thread, not {value}").into()),
                })
            }
            "--clean" => config = config.with_clean_tracking(value == "on"),
            "--sampling" => config = config.with_access_sampling(value == "on"),
            "--read-ahead" => config = config.with_read_ahead(value.parse()?),
            "--evict-batch" => config = config.with_evict_batch(value.parse()?),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if specs.is_empty() {
        specs.push("compressed:algo=lz4".to_string());
    }
    if workloads.is_empty() {
        workloads.extend(Workload::ALL);
    }
    let corpus = if corpus_arg == "built-in" {
        Corpus::built_in(16384)
    } else {
        Corpus::from_file(Path::new(&corpus_arg))?
    };
    if let Some(path) = dump {
        // The corpus as a page file, for the anchor tool.
        let bytes: Vec<u8> = corpus.pages.iter().flat_map(|p| p.as_bytes().iter().copied()).collect();
        std::fs::write(&path, bytes)?;
        println!("wrote {} pages to {path}", corpus.pages.len());
        return Ok(());
    }
    let corpus_name = Path::new(&corpus_arg)
        .file_name()
        .map_or(corpus_arg.clone(), |n| n.to_string_lossy().into());
    for run in 0..runs {
        for spec in &specs {
            for &workload in &workloads {
                let backend = pagebackup::open(spec)?;
                let region = OffloadRegion::with_config(len_mib << 20, budget_mib << 20, backend, config.clone())?;
                let fill_s = bench::fill(&region, &corpus.pages);
                let accesses = accesses_arg.unwrap_or(match workload {
                    Workload::Hot => 2_000_000,
                    _ => 500_000,
                });
                let r = bench::run(&region, workload, accesses, threads);
                let s = &r.stats;
                let backend_stats = region.backend().stats();
                println!(
                    "corpus={corpus_name} run={run} spec={spec} mode={} clean={} sampling={} workload={} threads={} \
                     maccess_per_s={:.4} gbps={:.3} p50_us={:.2} p99_us={:.2} fill_s={:.2} \
                     evictor_cpu_s={:.2} fault_service_s={:.2} seconds={:.2} ram_mib={} \
                     backend_ratio={:.3} faults={} restored={} wp_faults={} probe_hits={} protect_calls={} evicted={} written={} clean_drops={} \
                     zero_drops={} stale_drops={} upkeep_steps={} batches={} release_calls={} over_budget={} errors={} \
                     backend_pages={} compacted={} backend_stored_mib={:.1} backend_metadata_mib={:.1} backend_other_mib={:.1}",
                    config.mode,
                    config.clean_tracking,
                    config.access_sampling,
                    workload.name(),
                    r.threads,
                    r.accesses_per_s / 1e6,
                    r.gbps,
                    r.access_p50_us,
                    r.access_p99_us,
                    fill_s,
                    r.evictor_cpu_s,
                    r.fault_service_s,
                    r.seconds,
                    r.ram_bytes >> 20,
                    s.backend_original_bytes as f64 / s.backend_bytes.max(1) as f64,
                    s.faults,
                    s.restored_pages,
                    s.wp_faults,
                    s.probe_hits,
                    s.protect_calls,
                    s.evicted_pages,
                    s.written_back,
                    s.clean_drops,
                    s.zero_drops,
                    s.stale_drops,
                    s.upkeep_steps,
                    s.evict_batches,
                    s.release_calls,
                    s.over_budget,
                    s.errors,
                    backend_stats.stored_pages,
                    backend_stats.compacted_pages,
                    mib(backend_stats.stored_bytes),
                    mib(backend_stats.metadata_bytes),
                    mib(backend_stats
                        .memory_used
                        .saturating_sub(backend_stats.stored_bytes + backend_stats.metadata_bytes)),
                );
            }
        }
    }
    Ok(())
}
