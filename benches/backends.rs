//! Criterion benches over the same adapters as `pagebackup bench`: every
//! backend and the baselines on the same pages, throughput in bytes.
//!
//! ```text
//! cargo bench                          # from the workspace root
//! cargo bench -p pagebackup-benches    # these benches alone
//! ```
//!
//! Each adapter backs up the corpus in batches of 64 pages and frees it
//! again (only the backup timed), then backs it up, restores it and frees it
//! (only the restore timed). The corpus is the built-in one, 16384 pages
//! (64 MiB), larger than the caches as the buffers a backup gives back are.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pagebackup::{PAGE_SIZE, Page};
use pagebackup_cli::adapters::{Adapter, Backend, PerPage, Prefaulted, RawCodec, Stored};
use pagebackup_cli::corpus::Corpus;

const PAGES: usize = 16384;
const BATCH: usize = 64;

fn adapters() -> Vec<Box<dyn Adapter>> {
    let mut all: Vec<Box<dyn Adapter>> = vec![
        Box::new(Prefaulted::new(PAGES)),
        Box::new(PerPage::memfd(PAGES).unwrap()),
        Box::new(PerPage::file(PAGES, false).unwrap()),
        Box::new(PerPage::file(PAGES, true).unwrap()),
        Box::new(RawCodec::lz4()),
        Box::new(RawCodec::zstd(1)),
    ];
    for spec in [
        "shmem",
        "file:io=uring",
        "file:io=sync",
        "compressed:algo=lz4",
        "compressed:algo=zstd,level=1",
    ] {
        all.push(Box::new(Backend::open(spec).unwrap()));
    }
    all
}

fn backup(a: &dyn Adapter, corpus: &[Page]) -> Vec<(usize, Stored)> {
    let stored = corpus
        .chunks(BATCH)
        .enumerate()
        .map(|(k, chunk)| {
            let refs: Vec<&Page> = chunk.iter().collect();
            (k * BATCH, a.backup(&refs, (k * BATCH) as u64).unwrap())
        })
        .collect();
    a.flush().unwrap();
    stored
}

fn restore(a: &dyn Adapter, stored: &[(usize, Stored)], out: &mut [Page]) {
    for (start, s) in stored {
        let len = match s {
            Stored::Handles(h) => h.len(),
            Stored::Slots { count, .. } => *count,
            Stored::Compressed { lens, .. } => lens.len(),
        };
        let mut refs: Vec<&mut Page> = out[*start..start + len].iter_mut().collect();
        a.restore(s, &mut refs).unwrap();
    }
}

fn release(a: &dyn Adapter, stored: Vec<(usize, Stored)>) {
    for (_, s) in stored {
        a.release(s).unwrap();
    }
}

fn compare(c: &mut Criterion) {
    let corpus = Corpus::built_in(PAGES).pages;
    let mut out = Page::new_boxed_slice(PAGES);
    let adapters = adapters();
    let bytes = (PAGES * PAGE_SIZE) as u64;
    for a in &adapters {
        let stored = backup(&**a, &corpus);
        restore(&**a, &stored, &mut out);
        assert!(
            out.iter().zip(corpus.iter()).all(|(x, y)| x == y),
            "{} restored the wrong bytes",
            a.name()
        );
        release(&**a, stored);
    }

    let mut group = c.benchmark_group("backup");
    group.throughput(Throughput::Bytes(bytes));
    for a in &adapters {
        group.bench_function(a.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let start = Instant::now();
                        let stored = backup(&**a, &corpus);
                        let took = start.elapsed();
                        release(&**a, stored);
                        took
                    })
                    .sum()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Bytes(bytes));
    for a in &adapters {
        group.bench_function(a.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let stored = backup(&**a, &corpus);
                        let start = Instant::now();
                        restore(&**a, &stored, &mut out);
                        let took = start.elapsed();
                        release(&**a, stored);
                        took
                    })
                    .sum::<Duration>()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = compare
}
criterion_main!(benches);
