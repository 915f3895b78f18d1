//! Backs up and restores the same corpus of pages through every backend this
//! build contains (or the specs given as arguments) and prints a table of
//! throughput, relative to the memory backend's plain copy, and of memory
//! used per byte held.
//!
//! ```text
//! cargo run --release --all-features --example compare [-- SPEC ...]
//! ```
//!
//! The corpus is built in: 64 MiB of pages mixing zero, same-filled, text,
//! heap-like, numeric and random content (`PAGEBACKUP_CORPUS_MIB` changes
//! its size). Each figure is the best of three rounds.

use std::time::{Duration, Instant};

use pagebackup::{BackupBackend, BackupFlags, Handle, Page, available_backends, open};
use pagebackup_testkit::PageSpec;

const ROUNDS: usize = 3;
const BATCH: usize = 64;

struct Row {
    spec: String,
    backup: Duration,
    restore: Duration,
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
    let bytes = (n * 4096) as f64;
    let gbps = |d: Duration| bytes / d.as_secs_f64() / 1e9;
    println!(
        "| backend | backup GB/s | vs memory | restore GB/s | vs memory | memory used / original |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| `{}` | {:.2} | {:.2}x | {:.2} | {:.2}x | {:.3} |",
            r.spec,
            gbps(r.backup),
            base.0.as_secs_f64() / r.backup.as_secs_f64(),
            gbps(r.restore),
            base.1.as_secs_f64() / r.restore.as_secs_f64(),
            r.memory_used as f64 / bytes
        );
    }
    Ok(())
}

fn measure(
    spec: &str,
    backend: &dyn BackupBackend,
    corpus: &[Page],
) -> Result<Row, Box<dyn std::error::Error>> {
    let mut restored = Page::new_boxed_slice(corpus.len());
    let (mut backup, mut restore, mut memory_used) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..ROUNDS {
        let mut handles: Vec<Handle> = Vec::with_capacity(corpus.len());
        let start = Instant::now();
        for (k, chunk) in corpus.chunks(BATCH).enumerate() {
            let refs: Vec<&Page> = chunk.iter().collect();
            backend.backup_pages(&refs, (k * BATCH) as u64, BackupFlags::NONE, &mut handles)?;
        }
        backend.flush()?;
        backup = backup.min(start.elapsed());
        memory_used = backend.stats().memory_used;

        let start = Instant::now();
        for (hs, dsts) in handles.chunks(BATCH).zip(restored.chunks_mut(BATCH)) {
            let mut refs: Vec<&mut Page> = dsts.iter_mut().collect();
            backend.copy_pages(hs, &mut refs, None)?;
        }
        restore = restore.min(start.elapsed());
        if restored.iter().zip(corpus).any(|(a, b)| a != b) {
            return Err(format!("{spec}: restored pages differ from the corpus").into());
        }
        backend.drop_handles(&handles)?;
    }
    Ok(Row {
        spec: spec.to_string(),
        backup,
        restore,
        memory_used,
    })
}
