//! The conformance suite and the checkers on the reference backend, used
//! directly and through `Box<dyn BackupBackend>` and `Arc<dyn BackupBackend>`.

use std::sync::Arc;

use pagebackup_core::{BackupBackend, MemoryBackend};
use pagebackup_testkit::{Check, ConcurrentConfig, ModelConfig, Subject, check_concurrent, check_model, conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn direct() -> Subject {
    Subject::new("memory", || Box::new(MemoryBackend::new()))
        .with_limit(|bytes| Box::new(MemoryBackend::with_limit(bytes)), true)
}

fn boxed_dyn() -> Subject {
    let wrap = |b: MemoryBackend| -> Box<dyn BackupBackend> { Box::new(Box::new(b) as Box<dyn BackupBackend>) };
    Subject::new("memory via Box<dyn BackupBackend>", move || wrap(MemoryBackend::new()))
        .with_limit(move |bytes| wrap(MemoryBackend::with_limit(bytes)), true)
}

fn arc_dyn() -> Subject {
    let wrap = |b: MemoryBackend| -> Box<dyn BackupBackend> { Box::new(Arc::new(b) as Arc<dyn BackupBackend>) };
    Subject::new("memory via Arc<dyn BackupBackend>", move || wrap(MemoryBackend::new()))
        .with_limit(move |bytes| wrap(MemoryBackend::with_limit(bytes)), true)
}

#[apply(conformance)]
fn memory(#[case] check: Check) {
    check.run(&direct());
}

#[apply(conformance)]
fn memory_boxed_dyn(#[case] check: Check) {
    check.run(&boxed_dyn());
}

#[apply(conformance)]
fn memory_arc_dyn(#[case] check: Check) {
    check.run(&arc_dyn());
}

#[test]
fn memory_through_a_reference() {
    let backend = MemoryBackend::new();
    let by_ref: &MemoryBackend = &backend;
    pagebackup_testkit::exact_bytes(&by_ref, &Default::default());
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn model_checker_100k_operations() {
    let backend = MemoryBackend::new();
    let config = ModelConfig {
        seed: 0x1ee7,
        ops: 100_000,
        max_live: 2048,
    };
    let report = check_model(&backend, &config).unwrap_or_else(|d| panic!("{d}"));
    println!("memory: model checker: {report}");
    assert_eq!(report.ops, 100_000);
    assert!(report.restores > 10_000 && report.stale_rejected > 1_000, "{report}");
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn model_checker_on_a_limited_backend_sees_no_space() {
    let backend = MemoryBackend::with_limit(32 * 4096);
    let config = ModelConfig {
        seed: 0xf00d,
        ops: 20_000,
        max_live: 64,
    };
    let report = check_model(&backend, &config).unwrap_or_else(|d| panic!("{d}"));
    println!("memory (32-page limit): model checker: {report}");
    assert!(report.no_space > 0, "{report}");
}

#[test]
fn multi_threaded_checker_8_threads() {
    let backend = MemoryBackend::new();
    let config = ConcurrentConfig {
        seed: 0xabcd,
        threads: 8,
        ops_per_thread: 20_000,
    };
    let report = check_concurrent(&backend, &config).unwrap_or_else(|e| panic!("{e}"));
    println!("memory: multi-threaded checker: {report}");
    assert!(report.handed_over > 1_000, "{report}");
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn emptied_slabs_go_back_to_the_allocator_but_one_spare() {
    use pagebackup_core::{BackupFlags, Page};
    let backend = MemoryBackend::new();
    let page = Page::new_boxed();
    let handles: Vec<_> = (0..1000)
        .map(|i| backend.backup_page(&page, i, BackupFlags::NONE).unwrap())
        .collect();
    let full = backend.stats().memory_used;
    assert!(full >= 1000 * 4096, "{full}");
    backend.drop_handles(&handles[..500]).unwrap();
    let half = backend.stats().memory_used;
    const SLAB: u64 = 64 * 4096;
    assert!(half < full * 6 / 10 + SLAB, "{full} -> {half}");
    backend.drop_handles(&handles[500..]).unwrap();
    assert!(backend.stats().memory_used < SLAB + (64 << 10), "{:?}", backend.stats());
}

#[test]
fn one_slot_reused_a_million_times_never_repeats_a_handle() {
    // The old 32-bit tags repeated after about 13,000 reuses, so a stale
    // handle could read a later page. Generations now map one to one.
    use pagebackup_core::{BackupFlags, ErrorKind, Page};
    let b = MemoryBackend::new();
    let page = Page::new_boxed();
    let first = b.backup_page(&page, 0, BackupFlags::NONE).unwrap();
    b.drop_handle(first).unwrap();
    let mut seen = std::collections::HashSet::with_capacity(1 << 20);
    seen.insert(first.to_raw());
    for k in 0..1_000_000 {
        let h = b.backup_page(&page, 0, BackupFlags::NONE).unwrap();
        assert!(seen.insert(h.to_raw()), "reuse {k} repeated the value {h:?}");
        b.drop_handle(h).unwrap();
    }
    let mut dst = Page::new_boxed();
    assert_eq!(
        b.copy_page(&mut dst, first, None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
}
