//! The conformance suite over tiered stacks whose budgets are small enough
//! that pages move while the suite runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
use pagebackup_core::{BackupBackend, MemoryBackend, PAGE_SIZE};
use pagebackup_file::{FileBackend, FileConfig};
use pagebackup_shmem::{ShmemBackend, ShmemConfig};
use pagebackup_testkit::{Check, Subject, conformance};
use pagebackup_tiered::{Policy, Tier, Tiered, TieredConfig};
use rstest::rstest;
use rstest_reuse::apply;

const PAGE: u64 = PAGE_SIZE as u64;
/// The upper tier's budget: 16 pages, far below what most checks hold.
const BUDGET: u64 = 16 * PAGE;

/// A stack with the automatic policy running every millisecond and pages
/// restored twice below promoted, or with neither (`auto` off).
/// Promoted pages keep their copy below under `keep_lower`.
fn stack(
    upper: Box<dyn BackupBackend>,
    lower: Box<dyn BackupBackend>,
    budget: u64,
    auto: bool,
    policy: Policy,
    keep_lower: bool,
) -> Tiered {
    let config = TieredConfig::new()
        .with_auto(auto.then_some(Duration::from_millis(1)))
        .with_policy(policy)
        .with_promote(auto)
        .with_keep_lower(keep_lower);
    Tiered::new(vec![Tier::new(upper).with_budget(budget), Tier::new(lower)], config).unwrap()
}

fn lz4(limit: Option<u64>) -> Box<dyn BackupBackend> {
    let mut config = CompressedConfig::new(Algorithm::Lz4);
    if let Some(limit) = limit {
        config = config.with_limit(limit);
    }
    Box::new(CompressedBackend::new(config).unwrap())
}

fn zstd(limit: Option<u64>) -> Box<dyn BackupBackend> {
    let mut config = CompressedConfig::new(Algorithm::Zstd { level: 9 });
    if let Some(limit) = limit {
        config = config.with_limit(limit);
    }
    Box::new(CompressedBackend::new(config).unwrap())
}

fn file(limit: Option<u64>) -> Box<dyn BackupBackend> {
    let mut config = FileConfig::new();
    if let Some(limit) = limit {
        config = config.with_max_size(limit);
    }
    Box::new(FileBackend::new(config).unwrap())
}

fn shmem(limit: Option<u64>) -> Box<dyn BackupBackend> {
    let config = ShmemConfig::new().with_capacity(limit.unwrap_or(1 << 30));
    Box::new(ShmemBackend::with_config(config).unwrap())
}

fn memory(limit: Option<u64>) -> Box<dyn BackupBackend> {
    Box::new(limit.map_or_else(MemoryBackend::new, MemoryBackend::with_limit))
}

type Make = fn(Option<u64>) -> Box<dyn BackupBackend>;

/// The subject `upper` over `lower`; the instances it made, to look at
/// afterwards. A limited instance is memory over memory, with a quarter of
/// the limit above (its budget too) and the rest below, and no policy
/// thread: a move in flight holds a page in both tiers, so the exact point
/// where space runs out, which the check asserts, would move. (A compressed
/// tier's limit counts 64 KiB chunks and its fixed part, so a page dropped
/// from a full one gives back no room until compaction frees a chunk; its
/// own suite checks its limit.)
fn subject(
    name: &str,
    upper: Make,
    lower: Make,
    policy: Policy,
    keep_lower: bool,
) -> (Subject, Arc<Mutex<Vec<Arc<Tiered>>>>) {
    let made = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&made);
    let subject = Subject::new(name, move || {
        let tiered = Arc::new(stack(upper(None), lower(None), BUDGET, true, policy, keep_lower));
        keep.lock().unwrap().push(Arc::clone(&tiered));
        Box::new(tiered)
    })
    .with_limit(
        move |bytes| {
            Box::new(stack(
                memory(Some(bytes / 4)),
                memory(Some(bytes - bytes / 4)),
                bytes / 4,
                false,
                policy,
                keep_lower,
            ))
        },
        false,
    );
    (subject, made)
}

fn run(check: Check, name: &str, upper: Make, lower: Make) {
    let (subject, _) = subject(name, upper, lower, Policy::Lfu, true);
    check.run(&subject);
}

#[apply(conformance)]
fn lz4_over_file(#[case] check: Check) {
    run(check, "tiered lz4 over file", lz4, file);
}

#[apply(conformance)]
fn lz4_over_zstd(#[case] check: Check) {
    run(check, "tiered lz4 over zstd", lz4, zstd);
}

#[apply(conformance)]
fn memory_over_shmem(#[case] check: Check) {
    run(check, "tiered memory over shmem", memory, shmem);
}

#[apply(conformance)]
fn lz4_over_zstd_s3fifo(#[case] check: Check) {
    let (subject, _) = subject("tiered lz4 over zstd, S3-FIFO", lz4, zstd, Policy::S3Fifo, true);
    check.run(&subject);
}

/// Promoted pages release their copy below, and moves down copy again.
#[apply(conformance)]
fn lz4_over_zstd_copying_down(#[case] check: Check) {
    let (subject, _) = subject("tiered lz4 over zstd, keep_lower off", lz4, zstd, Policy::Lfu, false);
    check.run(&subject);
}

/// The budgets are small enough that the policy moves pages during the
/// checks that hold many pages (not only backups placed below directly).
#[test]
fn pages_move_during_the_suite() {
    for (name, upper, lower) in [
        ("lz4 over file", lz4 as Make, file as Make),
        ("lz4 over zstd", lz4, zstd),
        ("memory over shmem", memory, shmem),
    ] {
        let (subject, made) = subject(name, upper, lower, Policy::Lfu, true);
        for check in [Check::ExactBytes, Check::ModelSequence, Check::Threads] {
            check.run(&subject);
        }
        let made = made.lock().unwrap();
        let moved: u64 = made.iter().map(|t| t.tier_stats()[0].moved_down).sum();
        let direct: u64 = made.iter().map(|t| t.tier_stats()[1].direct_backups).sum();
        let to_kept: u64 = made.iter().map(|t| t.tier_stats()[0].moved_down_to_kept).sum();
        println!("{name}: {moved} pages moved down ({to_kept} to their kept copy), {direct} backed up below directly");
        assert!(moved > 0, "{name}: no page moved during the suite");
    }
}
