//! Backs up and restores the same corpus of pages through every backend this
//! build contains (or the specs given as arguments), with one thread and with
//! two, and prints throughput, scaling, and the effective compression ratio
//! (original bytes / memory used, metadata included) next to the raw codecs'
//! ratio on the same pages.
//!
//! ```text
//! cargo run --release --all-features --example compare [-- SPEC ...]
//! ```
//!
//! The corpus is built in: 64 MiB of pages mixing zero, same-filled, text,
//! heap-like, numeric and random content (`PAGEBACKUP_CORPUS_MIB` changes
//! its size). Each figure is the best of three rounds.

use std::time::{Duration, Instant};

use pagebackup::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page, available_backends, open};
use pagebackup_testkit::PageSpec;

const ROUNDS: usize = 3;
const BATCH: usize = 64;

struct Row {
    spec: String,
    backup: Duration,
    restore: Duration,
    backup_2_threads: Duration,
    memory_used: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::var("PAGEBACKUP_CORPUS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let n = mib * 256;
    let mut corpus = Page::new_boxed_slice(n);
    for (i, page) in corpus.iter_mut().enumerate() {
        PageSpec::mixed(0xc0ffee, i as u64).fill(page);
    }
    let mut specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        specs = available_backends().into_iter().map(String::from).collect();
        if specs.iter().any(|s| s == "compressed") {
            specs.push("compressed:algo=zstd,level=1".into());
        }
    }
    if !specs.iter().any(|s| s == "memory") {
        specs.insert(0, "memory".into());
    }
    println!("corpus: {n} pages ({mib} MiB), batches of {BATCH} pages, best of {ROUNDS} rounds\n");
    let mut rows = Vec::new();
    for spec in &specs {
        let backend = open(spec)?;
        rows.push(measure(spec, &*backend, &corpus)?);
    }
    let base = rows
        .iter()
        .find(|r| r.spec == "memory")
        .map(|r| (r.backup, r.restore))
        .expect("memory row");
    let bytes = (n * PAGE_SIZE) as f64;
    let gbps = |d: Duration| bytes / d.as_secs_f64() / 1e9;
    println!(
        "| backend | backup GB/s | vs memory | restore GB/s | vs memory | 2-thread backup GB/s | 2 vs 1 thread | effective ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| `{}` | {:.2} | {:.2}x | {:.2} | {:.2}x | {:.2} | {:.2}x | {:.2} |",
            r.spec,
            gbps(r.backup),
            base.0.as_secs_f64() / r.backup.as_secs_f64(),
            gbps(r.restore),
            base.1.as_secs_f64() / r.restore.as_secs_f64(),
            gbps(r.backup_2_threads),
            r.backup.as_secs_f64() / r.backup_2_threads.as_secs_f64(),
            bytes / r.memory_used as f64,
        );
    }
    println!("\nraw codecs on the same pages (compressed bytes only, no store):");
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    let lz4: usize = corpus
        .iter()
        .map(|p| lz4_flex::block::compress_into(p.as_bytes(), &mut out).unwrap())
        .sum();
    let mut zstd = zstd::bulk::Compressor::new(1)?;
    let zstd: usize = corpus
        .iter()
        .map(|p| zstd.compress_to_buffer(p.as_bytes().as_slice(), &mut out).unwrap())
        .sum();
    println!(
        "| codec | ratio |\n|---|---:|\n| lz4_flex | {:.2} |\n| zstd-1 | {:.2} |",
        bytes / lz4 as f64,
        bytes / zstd as f64
    );
    Ok(())
}

fn backup_all(
    backend: &dyn BackupBackend,
    pages: &[Page],
    first_idx: usize,
) -> Result<Vec<Handle>, pagebackup::BatchError> {
    let mut handles = Vec::with_capacity(pages.len());
    for (k, chunk) in pages.chunks(BATCH).enumerate() {
        let refs: Vec<&Page> = chunk.iter().collect();
        backend.backup_pages(&refs, (first_idx + k * BATCH) as u64, BackupFlags::NONE, &mut handles)?;
    }
    Ok(handles)
}

fn measure(spec: &str, backend: &dyn BackupBackend, corpus: &[Page]) -> Result<Row, Box<dyn std::error::Error>> {
    let mut restored = Page::new_boxed_slice(corpus.len());
    let mut row = Row {
        spec: spec.to_string(),
        backup: Duration::MAX,
        restore: Duration::MAX,
        backup_2_threads: Duration::MAX,
        memory_used: 0,
    };
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let handles = backup_all(backend, corpus, 0)?;
        backend.flush()?;
        row.backup = row.backup.min(start.elapsed());
        row.memory_used = backend.stats().memory_used;

        let start = Instant::now();
        for (hs, dsts) in handles.chunks(BATCH).zip(restored.chunks_mut(BATCH)) {
            let mut refs: Vec<&mut Page> = dsts.iter_mut().collect();
            backend.copy_pages(hs, &mut refs, None)?;
        }
        row.restore = row.restore.min(start.elapsed());
        if restored.iter().zip(corpus).any(|(a, b)| a != b) {
            return Err(format!("{spec}: restored pages differ from the corpus").into());
        }
        backend.drop_handles(&handles)?;

        let (first, second) = corpus.split_at(corpus.len() / 2);
        let start = Instant::now();
        let halves = std::thread::scope(|s| {
            let other = s.spawn(|| backup_all(backend, second, first.len()));
            let mine = backup_all(backend, first, 0);
            (mine, other.join().expect("backup thread"))
        });
        backend.flush()?;
        row.backup_2_threads = row.backup_2_threads.min(start.elapsed());
        backend.drop_handles(&halves.0?)?;
        backend.drop_handles(&halves.1?)?;
    }
    Ok(row)
}
