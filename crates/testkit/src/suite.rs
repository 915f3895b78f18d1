//! The conformance suite: one function per semantic of the
//! [`BackupBackend`] contract, and [`Check`] to run them by name.
//!
//! Every check panics with a message naming the backend and what diverged,
//! and leaves the backend holding nothing it did not hold before.

use std::collections::HashSet;

use pagebackup_core::{
    BackupBackend, BackupFlags, ErrorKind, Handle, Interrupt, Operation, Origin, PAGE_SIZE, Page, PageState, PageWord,
};

use crate::concurrent::{ConcurrentConfig, check_concurrent};
use crate::model::{ModelConfig, check_model};
use crate::race::{RaceConfig, check_racing_restores};
use crate::{Capabilities, PageClass, PageSpec, SplitMix64, Subject};

const SEED: u64 = 0x5eed_c0de;

/// The suite's checks, listed once: each as its [`Check`] variant, its
/// rstest case name and how [`Check::run`] runs it on the subject, a fresh
/// backend of it and its capabilities. Produces the enum, [`Check::ALL`],
/// the dispatch and the rstest templates (`conformance`, and
/// `async_conformance` with the feature `async`).
macro_rules! checks {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident / $case:ident => |$subject:pat_param, $backend:pat_param, $caps:pat_param| $run:expr;
    )*) => {
        /// One case of the conformance suite.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Check {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Check {
            /// Every check, in the suite's order.
            pub const ALL: [Check; [$(stringify!($variant)),*].len()] = [$(Check::$variant),*];

            /// Runs the check on `backend`, a fresh instance of `subject`.
            fn dispatch(self, subject: &Subject, backend: &dyn BackupBackend, caps: &Capabilities) {
                match self {
                    $(Check::$variant => {
                        let ($subject, $backend, $caps) = (subject, backend, caps);
                        $run
                    })*
                }
            }
        }

        /// The suite as an rstest template: one test case per [`Check`]. See the
        /// [crate documentation](crate) for how a backend crate applies it.
        #[rstest_reuse::template]
        #[export]
        // rstest_reuse exports the template as a macro with a random suffix
        // (`conformance_7434186057334638599`) re-exported under its name: `hidden`
        // keeps the suffixed macro out of the docs.
        #[hidden]
        #[rstest]
        $(#[case::$case(pagebackup_testkit::Check::$variant)])*
        pub fn conformance(#[case] check: Check) {}

        /// The async suite as an rstest template: one test case per
        /// [`AsyncCheck`](crate::AsyncCheck). A crate applies it as the sync
        /// `conformance` template is applied, with an
        /// [`AsyncSubject`](crate::AsyncSubject).
        #[cfg(feature = "async")]
        #[rstest_reuse::template]
        #[export]
        #[hidden]
        #[rstest]
        $(#[case::$case(pagebackup_testkit::AsyncCheck::Sync(pagebackup_testkit::Check::$variant))])*
        #[case::buffers_come_back(pagebackup_testkit::AsyncCheck::BuffersComeBack)]
        #[case::dropped_restore_interrupts(pagebackup_testkit::AsyncCheck::DroppedRestoreInterrupts)]
        #[case::cancellation_current_thread(pagebackup_testkit::AsyncCheck::Cancellation(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::cancellation_multi_thread(pagebackup_testkit::AsyncCheck::Cancellation(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        #[case::page_array_cancellation_current_thread(pagebackup_testkit::AsyncCheck::PageArrayCancellation(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::page_array_cancellation_multi_thread(pagebackup_testkit::AsyncCheck::PageArrayCancellation(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        #[case::shutdown_in_flight_current_thread(pagebackup_testkit::AsyncCheck::ShutdownInFlight(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::shutdown_in_flight_multi_thread(pagebackup_testkit::AsyncCheck::ShutdownInFlight(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        #[case::drop_after_shutdown_current_thread(pagebackup_testkit::AsyncCheck::DropAfterShutdown(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::drop_after_shutdown_multi_thread(pagebackup_testkit::AsyncCheck::DropAfterShutdown(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        #[case::flush_after_cancel(pagebackup_testkit::AsyncCheck::FlushAfterCancel)]
        #[case::page_array_dropped_with_runtime_current_thread(pagebackup_testkit::AsyncCheck::PageArrayDroppedWithRuntime(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::page_array_dropped_with_runtime_multi_thread(pagebackup_testkit::AsyncCheck::PageArrayDroppedWithRuntime(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        #[case::drop_with_cancelled_ops_current_thread(pagebackup_testkit::AsyncCheck::DropWithCancelledOps(
            pagebackup_testkit::Flavor::CurrentThread
        ))]
        #[case::drop_with_cancelled_ops_multi_thread(pagebackup_testkit::AsyncCheck::DropWithCancelledOps(
            pagebackup_testkit::Flavor::MultiThread
        ))]
        pub fn async_conformance(#[case] check: pagebackup_testkit::AsyncCheck) {}
    };
}

checks! {
    /// [`exact_bytes`]
    ExactBytes / exact_bytes => |_, b, caps| exact_bytes(b, caps);
    /// [`idx_never_aliases`]
    IdxNeverAliases / idx_never_aliases => |_, b, caps| idx_never_aliases(b, caps);
    /// [`caller_page_reusable`]
    CallerPageReusable / caller_page_reusable => |_, b, caps| caller_page_reusable(b, caps);
    /// [`dropped_handles_invalid`]
    DroppedHandlesInvalid / dropped_handles_invalid => |_, b, caps| dropped_handles_invalid(b, caps);
    /// [`forged_handles_invalid`]
    ForgedHandlesInvalid / forged_handles_invalid => |_, b, caps| forged_handles_invalid(b, caps);
    /// [`foreign_handles_invalid`]
    ForeignHandlesInvalid / foreign_handles_invalid =>
        |subject, b, caps| foreign_handles_invalid(b, &*subject.create(), caps);
    /// [`no_space`]
    NoSpace / no_space => |subject, _, caps| match subject.limited(LIMIT_PAGES * PAGE_SIZE as u64) {
        Some(limited) => {
            no_space(&*limited, caps, LIMIT_PAGES * PAGE_SIZE as u64);
            assert_empty(&*limited);
        }
        None => println!("skipped: {} has no space limit to exhaust", subject.name()),
    };
    /// [`drop_releases_storage`]
    DropReleasesStorage / drop_releases_storage => |_, b, caps| drop_releases_storage(b, caps);
    /// [`upkeep_keeps_every_page`]
    UpkeepKeepsEveryPage / upkeep_keeps_every_page => |_, b, caps| upkeep_keeps_every_page(b, caps);
    /// [`batch_matches_single`]
    BatchMatchesSingle / batch_matches_single => |_, b, caps| batch_matches_single(b, caps);
    /// [`batch_stops_at_failure`]
    BatchStopsAtFailure / batch_stops_at_failure => |_, b, caps| batch_stops_at_failure(b, caps);
    /// [`interrupt_and_resume`]
    InterruptAndResume / interrupt_and_resume => |_, b, caps| interrupt_and_resume(b, caps);
    /// [`writeback_and_flush`]
    WritebackAndFlush / writeback_and_flush => |_, b, caps| writeback_and_flush(b, caps);
    /// [`errors_name_backend_and_operation`]
    ErrorsNameBackendAndOperation / errors_name_backend_and_operation =>
        |_, b, caps| errors_name_backend_and_operation(b, caps);
    /// [`model_sequence`]
    ModelSequence / model_sequence => |_, b, caps| model_sequence(b, caps);
    /// [`threads`]
    Threads / threads => |_, b, caps| threads(b, caps);
    /// [`racing_restores`]
    RacingRestores / racing_restores => |_, b, caps| racing_restores(b, caps);
}

impl Check {
    /// Runs the check on fresh instances of `subject`, then checks that the
    /// instance holds no page afterwards. Prints why it skips where the
    /// subject lacks a capability the check needs.
    pub fn run(self, subject: &Subject) {
        let caps = subject.capabilities();
        let backend = subject.create();
        self.dispatch(subject, &*backend, &caps);
        assert_empty(&*backend);
    }
}

/// Runs every check of the suite on `subject`.
pub fn run_all(subject: &Subject) {
    for check in Check::ALL {
        check.run(subject);
    }
}

/// Pages a limited backend is built for in [`Check::NoSpace`].
pub const LIMIT_PAGES: u64 = 64;

/// Flushes `b` (so that work a backend does in the background, such as a
/// tiered stack's moves, has ended), then checks it holds nothing.
fn assert_empty(b: &dyn BackupBackend) {
    b.flush().unwrap_or_else(|e| panic!("{}: flush: {e}", b.name()));
    assert_holds_nothing(b.name(), &b.stats());
}

/// Panics unless `stats` (of the backend `name`) show no page held, as
/// every check leaves its backend.
pub(crate) fn assert_holds_nothing(name: &str, stats: &pagebackup_core::BackupStats) {
    assert_eq!(
        (stats.stored_pages, stats.stored_bytes),
        (0, 0),
        "{name}: pages left behind after the check: {stats:?}"
    );
}

fn backup(b: &dyn BackupBackend, spec: PageSpec, idx: u64) -> Handle {
    b.backup_page(&spec.page(), idx, BackupFlags::NONE)
        .unwrap_or_else(|e| panic!("{}: backup of {spec:?} failed: {e}", b.name()))
}

fn expect_page(b: &dyn BackupBackend, handle: Handle, spec: PageSpec) {
    let mut dst = Page::new_boxed();
    dst.0.fill(0xa5);
    b.copy_page(&mut dst, handle, None)
        .unwrap_or_else(|e| panic!("{}: copy of {handle:?} ({spec:?}) failed: {e}", b.name()));
    if let Err(m) = spec.verify(&dst) {
        panic!("{}: handle {handle:?} gave the wrong bytes: {m}", b.name());
    }
}

fn expect_kind<T: std::fmt::Debug>(
    b: &dyn BackupBackend,
    result: Result<T, pagebackup_core::BackupError>,
    kind: ErrorKind,
    what: &str,
) {
    match result {
        Err(e) if e.kind() == kind => {}
        Err(e) => panic!("{}: {what}: expected {kind:?}, got {:?}: {e}", b.name(), e.kind()),
        Ok(v) => panic!("{}: {what}: expected {kind:?}, got Ok({v:?})", b.name()),
    }
}

fn drop_all(b: &dyn BackupBackend, handles: &[Handle]) {
    for &h in handles {
        b.drop_handle(h)
            .unwrap_or_else(|e| panic!("{}: drop of live {h:?} failed: {e}", b.name()));
    }
}

/// Semantic 1: every page class comes back byte for byte, as often as it is
/// read, whatever the other pages are.
pub fn exact_bytes(b: &dyn BackupBackend, _caps: &Capabilities) {
    let mut live = Vec::new();
    for round in 0..4 {
        for (k, class) in PageClass::ALL.into_iter().enumerate() {
            let spec = PageSpec::new(SEED, (round * 16 + k) as u64, class);
            live.push((backup(b, spec, live.len() as u64), spec));
        }
    }
    for _ in 0..2 {
        for &(h, spec) in &live {
            expect_page(b, h, spec);
        }
    }
    let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
    assert_eq!(
        handles.iter().collect::<HashSet<_>>().len(),
        handles.len(),
        "{}: duplicate handles",
        b.name()
    );
    drop_all(b, &handles);
}

/// Semantic 2: `idx` is only a hint: pages backed up at the same `idx`, at
/// extreme values and out of order, never share storage.
pub fn idx_never_aliases(b: &dyn BackupBackend, _caps: &Capabilities) {
    let idxs = [0, 0, 0, 1, 1, u64::MAX, u64::MAX, u64::MAX - 1, 1 << 40, 7, 3, 7, 0];
    let live: Vec<(Handle, PageSpec)> = idxs
        .iter()
        .enumerate()
        .map(|(k, &idx)| {
            let spec = PageSpec::new(SEED ^ 2, k as u64, PageClass::Random);
            (backup(b, spec, idx), spec)
        })
        .collect();
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    // Dropping one of several pages at the same idx leaves the others intact.
    b.drop_handle(live[1].0).unwrap();
    for &(h, spec) in live.iter().filter(|(h, _)| *h != live[1].0) {
        expect_page(b, h, spec);
    }
    drop_all(
        b,
        &live
            .iter()
            .filter(|(h, _)| *h != live[1].0)
            .map(|&(h, _)| h)
            .collect::<Vec<_>>(),
    );
}

/// Semantic 3: the caller's page is not kept: overwriting it right after
/// `backup_page` does not change the backup.
pub fn caller_page_reusable(b: &dyn BackupBackend, _caps: &Capabilities) {
    let mut page = Page::new_boxed();
    let mut live = Vec::new();
    for i in 0..32 {
        let spec = PageSpec::mixed(SEED ^ 3, i);
        spec.fill(&mut page);
        let flags = BackupFlags::NONE.with_writeback(i % 2 == 1);
        live.push((b.backup_page(&page, i, flags).expect("backup"), spec));
        page.0.fill(0xee);
    }
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    drop_all(b, &live.iter().map(|&(h, _)| h).collect::<Vec<_>>());
}

/// Semantic 4: a dropped handle is invalid for copy and drop, also after its
/// storage has been reused by later backups.
pub fn dropped_handles_invalid(b: &dyn BackupBackend, _caps: &Capabilities) {
    let first = PageSpec::new(SEED ^ 4, 0, PageClass::Random);
    let h = backup(b, first, 0);
    b.drop_handle(h).unwrap();
    let mut dst = Page::new_boxed();
    expect_kind(
        b,
        b.copy_page(&mut dst, h, None),
        ErrorKind::InvalidHandle,
        "copy of a dropped handle",
    );
    expect_kind(b, b.drop_handle(h), ErrorKind::InvalidHandle, "second drop of a handle");
    // Reuse the storage: the old handle must not reach the new pages.
    let later: Vec<(Handle, PageSpec)> = (1..17)
        .map(|i| {
            let spec = PageSpec::new(SEED ^ 4, i, PageClass::Random);
            (backup(b, spec, 0), spec)
        })
        .collect();
    assert!(
        later.iter().all(|&(l, _)| l != h),
        "{}: a dropped handle was issued again",
        b.name()
    );
    expect_kind(
        b,
        b.copy_page(&mut dst, h, None),
        ErrorKind::InvalidHandle,
        "copy of a dropped handle after reuse",
    );
    expect_kind(
        b,
        b.drop_handle(h),
        ErrorKind::InvalidHandle,
        "drop of a dropped handle after reuse",
    );
    for &(l, spec) in &later {
        expect_page(b, l, spec);
    }
    drop_all(b, &later.iter().map(|&(h, _)| h).collect::<Vec<_>>());
}

/// Semantic 4: forged handles — small values like the kernel's `idx + 1`,
/// every single-bit flip of live handles, the extremes, random values, and
/// what an odd page word decodes to — give `InvalidHandle` for copy and drop
/// and never disturb the live pages. A zero word is empty, never a handle.
pub fn forged_handles_invalid(b: &dyn BackupBackend, _caps: &Capabilities) {
    assert_eq!(Handle::from_raw(0), None);
    assert_eq!(PageWord::from_raw(0).view(), PageState::Empty);
    let live: Vec<(Handle, PageSpec)> = (0..8)
        .map(|i| {
            let spec = PageSpec::mixed(SEED ^ 5, i);
            (backup(b, spec, i), spec)
        })
        .collect();
    let issued: HashSet<Handle> = live.iter().map(|&(h, _)| h).collect();
    let mut forged: Vec<u64> = (1..=512).collect();
    forged.extend([Handle::MAX_RAW, Handle::MAX_RAW - 1, 1 << 62, (1 << 31) - 1, 1 << 31]);
    for &(h, _) in &live {
        forged.extend((0..63).map(|bit| h.to_raw() ^ (1 << bit)));
        forged.push(h.to_raw().wrapping_add(1));
        forged.push(h.to_raw() - 1);
    }
    let mut rng = SplitMix64::new(SEED);
    forged.extend((0..2000).map(|_| rng.next_u64() >> 1));
    forged.extend(
        (0..64).map(|_| match PageWord::from_raw((rng.next_u64() | 1) as usize).view() {
            PageState::Backed(h) => h.to_raw(),
            other => panic!("an odd page word must decode to a handle, got {other:?}"),
        }),
    );
    let mut dst = Page::new_boxed();
    for raw in forged {
        let Some(h) = Handle::from_raw(raw) else {
            continue;
        };
        if issued.contains(&h) {
            continue;
        }
        expect_kind(
            b,
            b.copy_page(&mut dst, h, None),
            ErrorKind::InvalidHandle,
            &format!("copy of forged {h:?}"),
        );
        expect_kind(
            b,
            b.drop_handle(h),
            ErrorKind::InvalidHandle,
            &format!("drop of forged {h:?}"),
        );
    }
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    drop_all(b, &live.iter().map(|&(h, _)| h).collect::<Vec<_>>());
}

/// Semantic 4: handles issued by one instance are rejected by another, in
/// both directions, and the rejection leaves both instances' pages intact.
pub fn foreign_handles_invalid(a: &dyn BackupBackend, other: &dyn BackupBackend, _caps: &Capabilities) {
    let fill = |b: &dyn BackupBackend, seed: u64| -> Vec<(Handle, PageSpec)> {
        (0..8)
            .map(|i| (backup(b, PageSpec::mixed(seed, i), i), PageSpec::mixed(seed, i)))
            .collect()
    };
    // Both instances get pages at the same idx 0..8, as two buffers would.
    let (in_a, in_other) = (fill(a, SEED ^ 6), fill(other, SEED ^ 7));
    let shared: Vec<Handle> = in_a
        .iter()
        .filter(|(h, _)| in_other.iter().any(|(o, _)| o == h))
        .map(|&(h, _)| h)
        .collect();
    assert!(
        shared.is_empty(),
        "{}: two instances issued the same handles {shared:?} for the same idx; handles must carry an instance tag",
        a.name()
    );
    let mut dst = Page::new_boxed();
    for (to, foreign) in [(other, &in_a), (a, &in_other)] {
        for &(h, _) in foreign {
            expect_kind(
                to,
                to.copy_page(&mut dst, h, None),
                ErrorKind::InvalidHandle,
                "copy of another instance's handle",
            );
            expect_kind(
                to,
                to.drop_handle(h),
                ErrorKind::InvalidHandle,
                "drop of another instance's handle",
            );
        }
    }
    for (backend, live) in [(a, &in_a), (other, &in_other)] {
        for &(h, spec) in live {
            expect_page(backend, h, spec);
        }
        drop_all(backend, &live.iter().map(|&(h, _)| h).collect::<Vec<_>>());
    }
    assert_empty(other);
}

/// Semantics 5 and 7 on a backend limited to `limit` bytes: backups past the
/// space give `NoSpace`, leave no storage in use and lose nothing; space
/// comes back when pages are dropped; `bytes_avail` never promises more than
/// the limit.
pub fn no_space(b: &dyn BackupBackend, caps: &Capabilities, limit: u64) {
    let limit_pages = limit / PAGE_SIZE as u64;
    assert!(
        b.bytes_avail() <= limit,
        "{}: bytes_avail {} above the limit {limit}",
        b.name(),
        b.bytes_avail()
    );
    let mut live = Vec::new();
    // Random pages take their full size in any store; give compressing
    // backends room for metadata and rounding, but stop eventually.
    let max_attempts = limit_pages * 4 + 64;
    let mut index = 0;
    let error = loop {
        assert!(
            index < max_attempts,
            "{}: {index} random pages fit in a limit of {limit_pages} pages",
            b.name()
        );
        let spec = PageSpec::new(SEED ^ 8, index, PageClass::Random);
        index += 1;
        match b.backup_page(&spec.page(), index, BackupFlags::NONE) {
            Ok(h) => live.push((h, spec)),
            Err(e) => break e,
        }
    };
    assert_eq!(
        error.kind(),
        ErrorKind::NoSpace,
        "{}: backing up past the limit gave {error}",
        b.name()
    );
    let before = b.stats().stored_pages;
    assert_eq!(
        before,
        live.len() as u64,
        "{}: a failed backup changed stored_pages",
        b.name()
    );
    if caps.exact_page_accounting {
        assert_eq!(
            live.len() as u64,
            limit_pages,
            "{}: a limit of {limit_pages} pages held {}",
            b.name(),
            live.len()
        );
        assert_eq!(b.bytes_avail(), 0, "{}: bytes_avail when full", b.name());
    }
    let mut batch = Vec::new();
    let page = PageSpec::new(SEED ^ 8, index, PageClass::Random).page();
    let err = b
        .backup_pages(&[&page, &page], 0, BackupFlags::NONE, &mut batch)
        .expect_err("batch past the limit");
    assert_eq!(
        (err.kind(), err.completed, batch.len()),
        (ErrorKind::NoSpace, 0, 0),
        "{}: {err}",
        b.name()
    );
    assert_eq!(
        b.stats().stored_pages,
        before,
        "{}: a failed batch left storage in use",
        b.name()
    );
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    // Space comes back when pages are dropped.
    let (freed, _) = live.swap_remove(0);
    b.drop_handle(freed).unwrap();
    if caps.exact_page_accounting {
        assert_eq!(
            b.bytes_avail(),
            PAGE_SIZE as u64,
            "{}: bytes_avail after one drop",
            b.name()
        );
    }
    let spec = PageSpec::new(SEED ^ 8, index + 1, PageClass::Random);
    live.push((backup(b, spec, 0), spec));
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    drop_all(b, &live.iter().map(|&(h, _)| h).collect::<Vec<_>>());
}

/// Semantic 6: `stats` counts what is held, and dropping every handle brings
/// the held pages and bytes back to zero (storage the backend keeps for
/// reuse is `unreleased_bytes`, never stored).
pub fn drop_releases_storage(b: &dyn BackupBackend, _caps: &Capabilities) {
    let base = b.stats();
    let handles: Vec<Handle> = (0..48).map(|i| backup(b, PageSpec::mixed(SEED ^ 9, i), i)).collect();
    let full = b.stats();
    assert_eq!(
        full.stored_pages,
        base.stored_pages + 48,
        "{}: stored_pages after 48 backups: {full:?}",
        b.name()
    );
    assert_eq!(
        full.original_bytes,
        base.original_bytes + 48 * PAGE_SIZE as u64,
        "{}: original_bytes: {full:?}",
        b.name()
    );
    drop_all(b, &handles[..24]);
    assert_eq!(
        b.stats().stored_pages,
        base.stored_pages + 24,
        "{}: stored_pages after 24 drops",
        b.name()
    );
    b.drop_handles(&handles[24..]).unwrap();
    let after = b.stats();
    assert_eq!(
        (after.stored_pages, after.original_bytes, after.stored_bytes),
        (base.stored_pages, base.original_bytes, base.stored_bytes),
        "{}: storage still held after every drop: {after:?}",
        b.name()
    );
}

/// Upkeep, in steps (`maintain_step`, called until it says there is
/// nothing left, which it must within a bound) and whole (`maintain`),
/// after drops that leave most of the storage reclaimable: every live
/// handle restores its exact bytes and dropped handles stay invalid. (What
/// upkeep gives back is each backend's own test: shmem's whole upkeep, for
/// one, fills a reserve.)
pub fn upkeep_keeps_every_page(b: &dyn BackupBackend, _caps: &Capabilities) {
    const PAGES: u64 = 512;
    const MOST_STEPS: u64 = 1 << 20;
    let handles: Vec<Handle> = (0..PAGES)
        .map(|i| backup(b, PageSpec::mixed(SEED ^ 11, i), i))
        .collect();
    let (kept, dropped): (Vec<_>, Vec<_>) = handles.iter().enumerate().partition(|(i, _)| i % 4 == 0);
    let dropped: Vec<Handle> = dropped.into_iter().map(|(_, &h)| h).collect();
    drop_all(b, &dropped);
    let mut steps = 0;
    while b
        .maintain_step()
        .unwrap_or_else(|e| panic!("{}: maintain_step: {e}", b.name()))
    {
        steps += 1;
        assert!(
            steps < MOST_STEPS,
            "{}: maintain_step still has work after {steps} steps",
            b.name()
        );
    }
    b.maintain().unwrap_or_else(|e| panic!("{}: maintain: {e}", b.name()));
    for &(i, &h) in &kept {
        expect_page(b, h, PageSpec::mixed(SEED ^ 11, i as u64));
    }
    for &h in &dropped {
        expect_kind(
            b,
            b.copy_page(&mut Page::new_boxed(), h, None),
            ErrorKind::InvalidHandle,
            "copy of a handle dropped before upkeep",
        );
    }
    let kept: Vec<Handle> = kept.into_iter().map(|(_, &h)| h).collect();
    drop_all(b, &kept);
}

/// The batch forms agree with the single-page forms: handles from
/// `backup_pages` restore through `copy_page` and vice versa, and
/// `drop_handles` invalidates like `drop_handle`.
pub fn batch_matches_single(b: &dyn BackupBackend, _caps: &Capabilities) {
    let specs: Vec<PageSpec> = (0..40).map(|i| PageSpec::mixed(SEED ^ 10, i)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut batch = Vec::new();
    b.backup_pages(&refs, 100, BackupFlags::NONE, &mut batch).unwrap();
    assert_eq!(
        batch.len(),
        specs.len(),
        "{}: backup_pages returned {} handles for {} pages",
        b.name(),
        batch.len(),
        specs.len()
    );
    let single: Vec<Handle> = specs
        .iter()
        .enumerate()
        .map(|(i, &s)| backup(b, s, 200 + i as u64))
        .collect();
    for (&h, &spec) in batch.iter().zip(&specs) {
        expect_page(b, h, spec);
    }
    for handles in [&batch, &single] {
        let mut dsts = Page::new_boxed_slice(specs.len());
        let mut dst_refs: Vec<&mut Page> = dsts.iter_mut().collect();
        b.copy_pages(handles, &mut dst_refs, None).unwrap();
        for (dst, spec) in dsts.iter().zip(&specs) {
            spec.verify(dst)
                .unwrap_or_else(|m| panic!("{}: copy_pages: {m}", b.name()));
        }
    }
    // Empty batches are no-ops.
    b.backup_pages(&[], 0, BackupFlags::NONE, &mut Vec::new()).unwrap();
    b.copy_pages(&[], &mut [], None).unwrap();
    b.drop_handles(&[]).unwrap();
    b.drop_handles(&batch).unwrap();
    b.drop_handles(&single).unwrap();
    let mut dst = Page::new_boxed();
    for &h in batch.iter().chain(&single) {
        expect_kind(
            b,
            b.copy_page(&mut dst, h, None),
            ErrorKind::InvalidHandle,
            "copy after drop_handles",
        );
    }
}

/// Semantic 5 for batches: a batch stops at the first failing item, reports
/// how many it completed, and leaves the rest untouched; mismatched slice
/// lengths are rejected before anything is done.
pub fn batch_stops_at_failure(b: &dyn BackupBackend, _caps: &Capabilities) {
    let specs: Vec<PageSpec> = (0..6).map(|i| PageSpec::new(SEED ^ 11, i, PageClass::Text)).collect();
    let live: Vec<Handle> = specs.iter().enumerate().map(|(i, &s)| backup(b, s, i as u64)).collect();
    let dead = backup(b, PageSpec::new(SEED ^ 11, 99, PageClass::Random), 9);
    b.drop_handle(dead).unwrap();

    let mut dsts = Page::new_boxed_slice(4);
    let mut dst_refs: Vec<&mut Page> = dsts.iter_mut().collect();
    let err = b
        .copy_pages(&[live[0], live[1], dead, live[2]], &mut dst_refs, None)
        .expect_err("copy_pages with a dropped handle");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidHandle, 2),
        "{}: {err}",
        b.name()
    );
    specs[0].verify(&dsts[0]).unwrap();
    specs[1].verify(&dsts[1]).unwrap();

    let mut dst_refs: Vec<&mut Page> = dsts.iter_mut().collect();
    let err = b
        .copy_pages(&live[..3], &mut dst_refs, None)
        .expect_err("copy_pages with 3 handles and 4 pages");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidInput, 0),
        "{}: {err}",
        b.name()
    );

    let err = b
        .drop_handles(&[live[0], dead, live[1]])
        .expect_err("drop_handles with a dropped handle");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidHandle, 1),
        "{}: {err}",
        b.name()
    );
    let mut dst = Page::new_boxed();
    expect_kind(
        b,
        b.copy_page(&mut dst, live[0], None),
        ErrorKind::InvalidHandle,
        "copy of a handle dropped by a failed batch",
    );
    for (&h, &spec) in live.iter().zip(&specs).skip(1) {
        expect_page(b, h, spec);
    }
    b.drop_handles(&live[1..]).unwrap();
}

/// `Interrupt`: a restore that sees the flag set stops at a page boundary,
/// reports its progress and keeps every backup; clearing the flag and
/// resuming from the reported point restores the rest.
pub fn interrupt_and_resume(b: &dyn BackupBackend, _caps: &Capabilities) {
    let specs: Vec<PageSpec> = (0..16).map(|i| PageSpec::mixed(SEED ^ 12, i)).collect();
    let handles: Vec<Handle> = specs.iter().enumerate().map(|(i, &s)| backup(b, s, i as u64)).collect();
    let intr = Interrupt::new();
    let mut dsts = Page::new_boxed_slice(specs.len());

    // A clear flag lets the first half through.
    let mut dst_refs: Vec<&mut Page> = dsts[..8].iter_mut().collect();
    b.copy_pages(&handles[..8], &mut dst_refs, Some(&intr)).unwrap();

    intr.interrupt();
    let mut single = Page::new_boxed();
    expect_kind(
        b,
        b.copy_page(&mut single, handles[8], Some(&intr)),
        ErrorKind::Interrupted,
        "copy_page with the interrupt set",
    );
    let mut dst_refs: Vec<&mut Page> = dsts[8..].iter_mut().collect();
    let err = b
        .copy_pages(&handles[8..], &mut dst_refs, Some(&intr))
        .expect_err("copy_pages with the interrupt set");
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{}: {err}", b.name());
    assert!(err.completed <= 8, "{}: completed {} of 8", b.name(), err.completed);
    let resume = 8 + err.completed;

    intr.clear();
    let mut dst_refs: Vec<&mut Page> = dsts[resume..].iter_mut().collect();
    b.copy_pages(&handles[resume..], &mut dst_refs, Some(&intr)).unwrap();
    for (dst, spec) in dsts.iter().zip(&specs) {
        spec.verify(dst)
            .unwrap_or_else(|m| panic!("{}: after resume: {m}", b.name()));
    }
    drop_all(b, &handles);
}

/// `writeback` never changes what a restore returns, before or after
/// `flush`, for single and batch backups.
pub fn writeback_and_flush(b: &dyn BackupBackend, _caps: &Capabilities) {
    let specs: Vec<PageSpec> = (0..24).map(|i| PageSpec::mixed(SEED ^ 13, i)).collect();
    let mut live: Vec<(Handle, PageSpec)> = specs[..8]
        .iter()
        .enumerate()
        .map(|(i, &s)| (b.backup_page(&s.page(), i as u64, BackupFlags::WRITEBACK).unwrap(), s))
        .collect();
    let pages: Vec<Box<Page>> = specs[8..].iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    b.backup_pages(&refs, 8, BackupFlags::WRITEBACK, &mut handles).unwrap();
    live.extend(handles.into_iter().zip(specs[8..].iter().copied()));
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    b.flush().unwrap_or_else(|e| panic!("{}: flush failed: {e}", b.name()));
    for &(h, spec) in &live {
        expect_page(b, h, spec);
    }
    drop_all(b, &live.iter().map(|&(h, _)| h).collect::<Vec<_>>());
    b.flush().unwrap();
}

/// Error messages say which backend and which operation failed: the batch
/// method for a failure inside a batch, not the single-page one.
pub fn errors_name_backend_and_operation(b: &dyn BackupBackend, _caps: &Capabilities) {
    let h = backup(b, PageSpec::new(SEED ^ 14, 0, PageClass::Text), 0);
    let h2 = backup(b, PageSpec::new(SEED ^ 14, 1, PageClass::Text), 1);
    b.drop_handles(&[h, h2]).unwrap();
    let (mut dst, mut dst2) = (Page::new_boxed(), Page::new_boxed());
    let errors = [
        (b.copy_page(&mut dst, h, None).unwrap_err(), Operation::CopyPage),
        (b.drop_handle(h).unwrap_err(), Operation::DropHandle),
        (
            b.copy_pages(&[h, h2], &mut [&mut *dst, &mut *dst2], None)
                .unwrap_err()
                .error,
            Operation::CopyPages,
        ),
        (b.drop_handles(&[h, h2]).unwrap_err().error, Operation::DropHandles),
    ];
    for (error, op) in errors {
        let msg = error.to_string();
        assert_eq!(error.origin(), Origin::new(b.name(), op), "{msg}");
        assert!(
            msg.starts_with(&format!("{} backend: {op}: ", b.name())),
            "{}: message does not name backend and {op}: {msg}",
            b.name()
        );
    }
}

/// A seeded random sequence of every operation, checked against a model
/// (see [`check_model`]).
pub fn model_sequence(b: &dyn BackupBackend, _caps: &Capabilities) {
    let report = check_model(
        b,
        &ModelConfig {
            seed: SEED,
            ops: 5_000,
            max_live: 256,
        },
    )
    .unwrap_or_else(|d| panic!("{d}"));
    println!("{}: model sequence: {report}", b.name());
}

/// Semantic 8: four threads back up, restore, hand over and drop pages at
/// once (see [`check_concurrent`]).
pub fn threads(b: &dyn BackupBackend, _caps: &Capabilities) {
    let config = ConcurrentConfig {
        seed: SEED,
        threads: 4,
        ops_per_thread: 2_000,
    };
    let report = check_concurrent(b, &config).unwrap_or_else(|e| panic!("{e}"));
    println!("{}: threads: {report}", b.name());
}

/// Semantics 1, 4 and 5 under races: restores of handles that other
/// threads drop and whose storage they reuse at once give each page's own
/// bytes or `InvalidHandle` with the failing page and every later one
/// untouched (see [`check_racing_restores`]).
pub fn racing_restores(b: &dyn BackupBackend, _caps: &Capabilities) {
    let report = check_racing_restores(
        b,
        &RaceConfig {
            seed: SEED,
            ..RaceConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("{}: racing restores: {report}", b.name());
}
