//! The layers: the conformance suite through each (faults off), and what
//! each layer adds.

use std::sync::Arc;

use pagebackup_core::layers::{self, FaultConfig, FaultInjection, Instrumented};
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, MemoryBackend, Page};
use pagebackup_testkit::{Check, PageSpec, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn faults_off(b: MemoryBackend) -> Box<dyn BackupBackend> {
    Box::new(FaultInjection::new(b, FaultConfig::none(1)))
}

fn instrumented(b: MemoryBackend) -> Box<dyn BackupBackend> {
    Box::new(Instrumented::new(b))
}

fn stacked(b: MemoryBackend) -> Box<dyn BackupBackend> {
    Box::new(Instrumented::new(FaultInjection::new(
        Arc::new(b),
        FaultConfig::none(2),
    )))
}

/// A layer that writes no method of its own: every one forwards.
#[derive(Debug)]
struct Forwarding<B>(B);

impl<B: BackupBackend> layers::Layer for Forwarding<B> {
    type Inner = B;
    fn inner(&self) -> &B {
        &self.0
    }
}

fn forwarding(b: MemoryBackend) -> Box<dyn BackupBackend> {
    Box::new(Forwarding(b))
}

fn subject(name: &str, wrap: fn(MemoryBackend) -> Box<dyn BackupBackend>) -> Subject {
    Subject::new(name, move || wrap(MemoryBackend::new()))
        .with_limit(move |bytes| wrap(MemoryBackend::with_limit(bytes)), true)
}

#[apply(conformance)]
fn fault_injection_at_rate_0(#[case] check: Check) {
    check.run(&subject("FaultInjection<memory>", faults_off));
}

#[apply(conformance)]
fn a_layer_that_overrides_nothing(#[case] check: Check) {
    check.run(&subject("Forwarding<memory>", forwarding));
}

#[test]
fn a_layer_that_overrides_nothing_forwards_every_method() {
    let b = Forwarding(MemoryBackend::with_limit(8 * 4096));
    let inner = &b.0;
    assert_eq!(b.name(), inner.name());
    assert_eq!(b.never_blocks(), inner.never_blocks());
    let pages: Vec<Box<Page>> = (0..3).map(|i| PageSpec::mixed(9, i).page()).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    assert_eq!(b.stats(), inner.stats());
    assert_eq!(inner.stats().stored_pages, 3);
    assert_eq!(b.bytes_avail(), inner.bytes_avail());
    assert_eq!(b.stored_size(handles[0]), inner.stored_size(handles[0]));
    let mut out = Page::new_boxed();
    b.copy_page(&mut out, handles[1], None).unwrap();
    assert_eq!(out.0, pages[1].0);
    b.flush().unwrap();
    b.drop_handles(&handles[..2]).unwrap();
    assert_eq!(
        inner.copy_page(&mut out, handles[0], None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
    b.drop_handle(handles[2]).unwrap();
    assert_eq!(inner.stats().stored_pages, 0);
}

#[apply(conformance)]
fn instrumented_layer(#[case] check: Check) {
    check.run(&subject("Instrumented<memory>", instrumented));
}

#[apply(conformance)]
fn instrumented_over_fault_injection(#[case] check: Check) {
    check.run(&subject("Instrumented<FaultInjection<memory>>", stacked));
}

#[test]
fn instrumented_counts_pages_errors_and_time() {
    let b = Instrumented::new(MemoryBackend::with_limit(10 * 4096));
    let pages: Vec<Box<Page>> = (0..12).map(|i| PageSpec::mixed(3, i).page()).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    assert!(b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).is_err());
    let mut dst = Page::new_boxed();
    b.copy_page(&mut dst, handles[0], None).unwrap();
    b.drop_handles(&handles).unwrap();
    let s = b.op_stats();
    assert_eq!((s.backup.calls, s.backup.pages, s.backup.errors), (1, 12, 1));
    assert_eq!((s.restore.calls, s.restore.pages, s.restore.errors), (1, 1, 0));
    assert_eq!((s.drop.calls, s.drop.pages), (1, 10));
    assert!(s.backup.total >= s.backup.max && s.backup.max > std::time::Duration::ZERO);
    assert!(s.restore.per_page().is_some());
}

#[test]
fn fault_injection_is_deterministic_and_stores_nothing_for_failed_backups() {
    let run = |seed| {
        let config = FaultConfig {
            backup_failure_rate: 0.3,
            backup_failure: ErrorKind::Io,
            ..FaultConfig::none(seed)
        };
        let b = FaultInjection::new(MemoryBackend::new(), config);
        let page = PageSpec::mixed(1, 1).page();
        let outcomes: Vec<bool> = (0..200)
            .map(|i| b.backup_page(&page, i, BackupFlags::NONE).is_ok())
            .collect();
        let stored = b.inner().stats().stored_pages;
        assert_eq!(
            stored as usize,
            outcomes.iter().filter(|ok| **ok).count(),
            "a failed backup stored a page"
        );
        (outcomes, b.counts())
    };
    let (a, counts) = run(11);
    assert_eq!(a, run(11).0, "same seed, same faults");
    assert_ne!(a, run(12).0, "another seed, other faults");
    assert!((30..90).contains(&counts.failed_backups), "{counts:?}");
    let err = FaultInjection::new(
        MemoryBackend::new(),
        FaultConfig {
            backup_failure_rate: 1.0,
            ..FaultConfig::none(0)
        },
    )
    .backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory backend: backup_page: no space left (injected fault); drop handles, flush, or give the backend more space"
    );
}
