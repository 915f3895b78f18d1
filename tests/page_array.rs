//! Page arrays under injected faults with every backend this build contains,
//! and a shrink scenario like the kernel's: more data than the memory
//! budget, backed up and restored in turns.

mod support;

use std::sync::Arc;

use pagebackup::layers::{FaultConfig, FaultInjection};
use pagebackup::{BackupBackend, BackupFlags, ErrorKind, Interrupt, PAGE_SIZE, PageArray, open};
use pagebackup_testkit::PageSpec;

const PAGES: usize = 512;

fn fill(array: &mut PageArray, seed: u64) {
    for (i, page) in array.iter_mut() {
        PageSpec::mixed(seed, i as u64).fill(page);
    }
}

fn verify(array: &PageArray, seed: u64, what: &str) {
    for i in 0..array.len() {
        let page = array
            .get(i)
            .unwrap_or_else(|| panic!("{what}: page {i} is {:?}", array.slot(i)));
        PageSpec::mixed(seed, i as u64)
            .verify(page)
            .unwrap_or_else(|m| panic!("{what}: {m}"));
    }
}

/// Backs up and restores an array through faults until both are done;
/// returns (backup calls, restore interruptions).
fn round_trip(array: &mut PageArray, flags: BackupFlags) -> (usize, usize) {
    let (mut calls, mut interruptions) = (0, 0);
    while array.counts().resident > 0 {
        calls += 1;
        if let Err(stopped) = array.backup(flags) {
            assert!(
                matches!(stopped.error.kind(), ErrorKind::NoSpace | ErrorKind::Io),
                "{stopped}"
            );
        }
        assert!(calls < 100_000, "backup makes no progress");
    }
    while array.counts().backed > 0 {
        if let Err(stopped) = array.restore(None) {
            assert_eq!(stopped.error.kind(), ErrorKind::Interrupted, "{stopped}");
            interruptions += 1;
        }
        assert!(interruptions < 100_000, "restore makes no progress");
    }
    (calls, interruptions)
}

#[test]
fn every_backend_survives_injected_faults() {
    for name in support::default_specs() {
        for (rate, half_batches) in [(0.0, false), (0.02, false), (0.2, false), (0.05, true)] {
            for seed in [1, 2, 3] {
                let config = FaultConfig {
                    backup_failure_rate: rate,
                    backup_failure: if seed % 2 == 0 {
                        ErrorKind::Io
                    } else {
                        ErrorKind::NoSpace
                    },
                    interrupt_rate: rate,
                    half_batches,
                    ..FaultConfig::none(seed)
                };
                let faulty = Arc::new(FaultInjection::new(open(name).unwrap(), config));
                let mut array = PageArray::new_zeroed(PAGES, faulty.clone());
                fill(&mut array, seed);
                let flags = BackupFlags::NONE.with_writeback(seed == 3);
                let (calls, interruptions) = round_trip(&mut array, flags);
                let what = format!("{name}, rate {rate}, half batches {half_batches}, seed {seed}");
                verify(&array, seed, &what);
                drop(array);
                assert_eq!(faulty.stats().stored_pages, 0, "{what}: pages leaked");
                println!(
                    "{what}: {calls} backup calls, {interruptions} restore interruptions, {:?}",
                    faulty.counts()
                );
                if rate > 0.0 {
                    assert!(interruptions > 0 && calls > 1, "{what}: no fault was injected");
                }
            }
        }
    }
}

/// Four buffers of 1 MiB each, a budget of 2 MiB resident: to use a buffer,
/// the others are backed up first (interrupted restores included), as a
/// driver's shrinker and its users would take turns.
#[test]
fn buffers_larger_than_the_budget_take_turns() {
    const BUFFERS: usize = 4;
    const PAGES_EACH: usize = 256;
    const BUDGET_PAGES: usize = 512;
    for name in support::default_specs() {
        let config = FaultConfig {
            interrupt_rate: 0.05,
            ..FaultConfig::none(9)
        };
        let backend: Arc<dyn BackupBackend> = Arc::new(FaultInjection::new(open(name).unwrap(), config));
        let mut buffers: Vec<PageArray> = (0..BUFFERS)
            .map(|b| {
                let mut array = PageArray::new_zeroed(PAGES_EACH, backend.clone());
                fill(&mut array, 100 + b as u64);
                array.backup(BackupFlags::NONE).unwrap();
                array
            })
            .collect();
        let intr = Interrupt::new();
        let mut interruptions = 0;
        for turn in 0..12 {
            let using = turn % BUFFERS;
            // Shrink: back up every other buffer until the one in use fits.
            for (b, other) in buffers.iter_mut().enumerate() {
                if b != using {
                    other.backup(BackupFlags::WRITEBACK).unwrap();
                }
            }
            while let Err(stopped) = buffers[using].restore(Some(&intr)) {
                assert_eq!(stopped.error.kind(), ErrorKind::Interrupted);
                interruptions += 1;
            }
            let resident: usize = buffers.iter().map(|a| a.counts().resident).sum();
            assert!(
                resident <= BUDGET_PAGES,
                "{name}: {resident} pages resident, over the budget"
            );
            verify(&buffers[using], 100 + using as u64, name);
            // The user writes to its buffer; the new contents must survive too.
            let seed = 200 + turn as u64;
            fill(&mut buffers[using], seed);
            verify(&buffers[using], seed, name);
            fill(&mut buffers[using], 100 + using as u64);
        }
        let held = backend.stats().stored_pages;
        assert_eq!(held as usize, (BUFFERS - 1) * PAGES_EACH, "{name}");
        drop(buffers);
        assert_eq!(backend.stats().stored_pages, 0, "{name}: pages leaked");
        println!(
            "{name}: 12 turns over {} MiB with a {} MiB budget, {interruptions} interrupted restores",
            (BUFFERS * PAGES_EACH * PAGE_SIZE) >> 20,
            (BUDGET_PAGES * PAGE_SIZE) >> 20
        );
    }
}
