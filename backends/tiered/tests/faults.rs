//! Faults on each tier, injected by the fault layer under the tiered
//! backend: moves that fail, restores that are interrupted, a lower tier
//! that is full or fails its writes, an upper tier whose drops fail. Every page is verified, and nothing is held after all drops.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use pagebackup_core::layers::{FaultConfig, FaultInjection, Instrumented};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, ErrorKind, Handle, Interrupt, MemoryBackend, Operation,
    Origin, PAGE_SIZE, Page,
};
use pagebackup_testkit::PageSpec;
use pagebackup_tiered::{Stop, Tier, Tiered, TieredConfig, WritebackFilter};

const PAGE: u64 = PAGE_SIZE as u64;

type Faulty = Arc<FaultInjection<MemoryBackend>>;

fn faulty(config: FaultConfig, limit: Option<u64>) -> Faulty {
    let inner = limit.map_or_else(MemoryBackend::new, MemoryBackend::with_limit);
    Arc::new(FaultInjection::new(inner, config))
}

fn tiered(upper: &Faulty, lower: &Faulty, budget_pages: u64) -> Tiered {
    stack(upper, lower, budget_pages, TieredConfig::new().with_auto(None))
}

/// `upper` with a budget of `budget_pages` over `lower`, under `config`.
fn stack<U: BackupBackend + 'static, L: BackupBackend + 'static>(
    upper: &Arc<U>,
    lower: &Arc<L>,
    budget_pages: u64,
    config: TieredConfig,
) -> Tiered {
    Tiered::new(
        vec![
            Tier::new(Arc::clone(upper)).with_budget(budget_pages * PAGE),
            Tier::new(Arc::clone(lower)),
        ],
        config,
    )
    .unwrap()
}

/// Backs up `n` pages, retrying injected backup failures as a caller would.
fn backup_all(t: &Tiered, seed: u64, n: u64) -> Vec<(Handle, PageSpec)> {
    (0..n)
        .map(|i| {
            let spec = PageSpec::mixed(seed, i);
            loop {
                match t.backup_page(&spec.page(), i, BackupFlags::NONE) {
                    Ok(h) => break (h, spec),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{e}"),
                }
            }
        })
        .collect()
}

/// Restores and checks every page, resuming interrupted restores.
fn verify_all(t: &Tiered, pages: &[(Handle, PageSpec)]) -> u64 {
    let mut dst = Page::new_boxed();
    let mut interrupted = 0;
    for &(h, spec) in pages {
        loop {
            match t.copy_page(&mut dst, h, None) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => interrupted += 1,
                Err(e) => panic!("restore of {h:?} failed: {e}"),
            }
        }
        spec.verify(&dst).unwrap();
    }
    interrupted
}

fn drop_all_and_check_empty(t: &Tiered, pages: &[(Handle, PageSpec)], tiers: [&Faulty; 2]) {
    for &(h, _) in pages {
        t.drop_handle(h).unwrap();
    }
    assert_eq!(t.stats().stored_pages, 0);
    for (k, tier) in tiers.iter().enumerate() {
        assert_eq!(tier.inner().stats().stored_pages, 0, "tier {k} still holds pages");
    }
    assert!(t.tier_stats().iter().all(|s| s.pages == 0 && s.held_bytes == 0));
}

#[test]
fn interrupted_reads_above_make_moves_fail_and_leave_pages_readable() {
    let mut config = FaultConfig::none(1);
    config.interrupt_rate = 0.3;
    let upper = faulty(config, None);
    let lower = faulty(FaultConfig::none(2), None);
    let t = tiered(&upper, &lower, 64);
    let pages = backup_all(&t, 1, 200);
    let mut moved = 0;
    for _ in 0..20 {
        moved += t.writeback(WritebackFilter::All).moved_pages;
    }
    let s = t.tier_stats();
    assert!(s[0].failed_moves > 0, "no move failed: {s:?}");
    assert_eq!(s[0].moved_down, moved);
    assert_eq!(s[0].pages + s[1].pages, 200);
    let interrupted = verify_all(&t, &pages);
    assert!(interrupted > 0 || s[0].pages == 0);
    assert!(upper.counts().interrupted_restores > 0);
    drop_all_and_check_empty(&t, &pages, [&upper, &lower]);
}

#[test]
fn failing_writes_below_make_moves_fail_and_interrupted_restores_below_resume() {
    let mut config = FaultConfig::none(3);
    config.backup_failure_rate = 0.3;
    config.backup_failure = ErrorKind::Io;
    config.interrupt_rate = 0.2;
    let upper = faulty(FaultConfig::none(4), None);
    let lower = faulty(config, None);
    let t = tiered(&upper, &lower, 64);
    let pages = backup_all(&t, 2, 200);
    let report = t.writeback(WritebackFilter::All);
    let s = t.tier_stats();
    assert!(report.failed_pages > 0 && report.stopped.is_none(), "{report:?}");
    assert_eq!(s[0].failed_moves, report.failed_pages);
    assert_eq!(s[0].pages, report.failed_pages, "each failed move left its page above");
    assert!(verify_all(&t, &pages) > 0, "no restore below was interrupted");
    drop_all_and_check_empty(&t, &pages, [&upper, &lower]);
}

#[test]
fn a_full_lower_tier_stops_moves_not_backups() {
    let upper = faulty(FaultConfig::none(5), None);
    let lower = faulty(FaultConfig::none(6), Some(100 * PAGE));
    let t = tiered(&upper, &lower, 64);
    // 64 pages above, 100 below, and the rest above again: past its budget,
    // because the tier below is full.
    let pages = backup_all(&t, 3, 300);
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages), (200, 100));
    let report = t.run_policy_step();
    assert_eq!((report.moved_pages, report.stopped), (0, Some(Stop::NoSpaceBelow)));
    assert_eq!(t.policy_state().last_stop, Some(Stop::NoSpaceBelow));
    verify_all(&t, &pages);
    // Space below comes back with drops, and moves resume.
    for &(h, _) in &pages[64..114] {
        t.drop_handle(h).unwrap();
    }
    let report = t.run_policy_step();
    assert_eq!(report.moved_pages, 50);
    assert_eq!(report.stopped, Some(Stop::NoSpaceBelow));
    let rest: Vec<_> = pages[..64].iter().chain(&pages[114..]).copied().collect();
    verify_all(&t, &rest);
    drop_all_and_check_empty(&t, &rest, [&upper, &lower]);
}

#[test]
fn a_full_tier_everywhere_gives_no_space_and_holds_nothing_for_it() {
    let upper = faulty(FaultConfig::none(7), Some(8 * PAGE));
    let lower = faulty(FaultConfig::none(8), Some(8 * PAGE));
    let t = tiered(&upper, &lower, 8);
    let pages = backup_all(&t, 4, 16);
    let err = t
        .backup_page(&PageSpec::mixed(4, 99).page(), 0, BackupFlags::NONE)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert_eq!(t.stats().stored_pages, 16);
    assert_eq!(
        t.tier_stats()[0].held_bytes,
        8 * PAGE,
        "a failed backup keeps no reservation"
    );
    verify_all(&t, &pages);
    drop_all_and_check_empty(&t, &pages, [&upper, &lower]);
}

/// A memory backend whose drops fail with `Io` while `failing` is set,
/// its restores while `failing_restores` is, and its backups while
/// `failing_backups` is; `after_backup` and `after_drop` run once after its
/// next backup or drop took effect, `before_copy` once before its next
/// restore starts. Its batches are the trait's loops over single pages.
#[derive(Debug, Default)]
struct FailingDrops {
    inner: MemoryBackend,
    failing: AtomicBool,
    failing_restores: AtomicBool,
    failing_backups: AtomicBool,
    after_backup: Hook,
    after_drop: Hook,
    before_copy: Hook,
}

/// Code a backend runs once, at a point of one of its calls.
#[derive(Default)]
struct Hook(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Hook {
    fn set(&self, f: impl FnOnce() + Send + 'static) {
        *self.0.lock().unwrap() = Some(Box::new(f));
    }

    /// Makes the hook stop its caller until told: the receiver hears that
    /// the caller reached it, and a send on the sender lets the caller go on.
    fn pause(&self) -> (Receiver<()>, Sender<()>) {
        let (reached, on_reached) = channel();
        let (go, on_go) = channel::<()>();
        self.set(move || {
            reached.send(()).unwrap();
            on_go.recv().unwrap();
        });
        (on_reached, go)
    }

    fn run(&self) {
        let f = self.0.lock().unwrap().take();
        if let Some(f) = f {
            f();
        }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

fn injected(op: Operation) -> BackupError {
    BackupError::Io {
        origin: Origin::new("failing-drops", op),
        source: std::io::Error::other("injected failure"),
    }
}

impl BackupBackend for FailingDrops {
    fn name(&self) -> &'static str {
        "failing-drops"
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        if self.failing_backups.load(Ordering::Relaxed) {
            return Err(injected(Operation::BackupPage));
        }
        let handle = self.inner.backup_page(page, idx, flags);
        self.after_backup.run();
        handle
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.before_copy.run();
        if self.failing_restores.load(Ordering::Relaxed) {
            return Err(injected(Operation::CopyPage));
        }
        self.inner.copy_page(dst, handle, intr)
    }

    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(injected(Operation::DropHandle));
        }
        let dropped = self.inner.drop_handle(handle);
        self.after_drop.run();
        dropped
    }

    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        self.inner.stats()
    }
}

#[test]
fn copies_whose_release_failed_above_are_released_by_later_runs() {
    let upper = Arc::new(FailingDrops::default());
    let lower = faulty(FaultConfig::none(9), None);
    let t = stack(&upper, &lower, 64, TieredConfig::new().with_auto(None));
    let pages = backup_all(&t, 5, 8);
    upper.failing.store(true, Ordering::Relaxed);
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 8);
    assert_eq!(t.tier_stats()[0].pages, 0);
    assert_eq!(upper.stats().stored_pages, 8, "the moved pages' copies are still above");
    assert_eq!(t.stats().failed_releases, 8);
    // Still failing: the copies stay listed, and are tried again.
    t.run_policy_step();
    assert_eq!(upper.stats().stored_pages, 8);
    assert_eq!(t.stats().failed_releases, 8, "a retry is not a new failed release");
    upper.failing.store(false, Ordering::Relaxed);
    t.run_policy_step();
    assert_eq!(upper.stats().stored_pages, 0, "a later run released the copies");
    verify_all(&t, &pages);
    for &(h, _) in &pages {
        t.drop_handle(h).unwrap();
    }
    assert_eq!((upper.stats().stored_pages, lower.inner().stats().stored_pages), (0, 0));
}

#[test]
fn a_cold_tier_failing_writes_does_not_fail_backups_another_tier_can_hold() {
    let mut config = FaultConfig::none(10);
    config.backup_failure_rate = 1.0;
    config.backup_failure = ErrorKind::Io;
    let upper = faulty(FaultConfig::none(11), None);
    let lower = faulty(config, None);
    let t = tiered(&upper, &lower, 4);
    // Past the budget above, and sent to the last tier: both stay above.
    let mut pages = Vec::new();
    for i in 0..8 {
        let spec = PageSpec::mixed(6, i);
        let flags = if i % 2 == 0 {
            BackupFlags::NONE
        } else {
            BackupFlags::WRITEBACK
        };
        pages.push((t.backup_page(&spec.page(), i, flags).unwrap(), spec));
    }
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages), (8, 0));
    verify_all(&t, &pages);
    // With every tier failing, the backup fails with the error.
    let mut config = FaultConfig::none(12);
    config.backup_failure_rate = 1.0;
    config.backup_failure = ErrorKind::Io;
    let failing_above = faulty(config, None);
    let t2 = tiered(&failing_above, &lower, 4);
    let err = t2
        .backup_page(&PageSpec::mixed(6, 99).page(), 0, BackupFlags::NONE)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert_eq!(t2.stats().stored_pages, 0);
    drop_all_and_check_empty(&t, &pages, [&upper, &lower]);
}

#[test]
fn a_promoted_page_is_restored_from_its_kept_copy_while_the_tier_above_fails() {
    let upper = Arc::new(FailingDrops::default());
    let lower = faulty(FaultConfig::none(13), None);
    let t = stack(
        &upper,
        &lower,
        64,
        TieredConfig::new().with_auto(None).with_promote(true),
    );
    let mut pages = backup_all(&t, 14, 2);
    t.writeback(WritebackFilter::All);
    verify_all(&t, &pages[..1]);
    verify_all(&t, &pages[..1]);
    assert_eq!((t.tier_of(pages[0].0), t.tier_stats()[1].kept_pages), (Some(0), 1));
    pages.extend(backup_all(&t, 15, 1));
    assert_eq!(t.tier_of(pages[2].0), Some(0));
    upper.failing_restores.store(true, Ordering::Relaxed);
    // The promoted page comes from its copy below; the page with no copy
    // below fails with the upper tier's error, and stays live.
    verify_all(&t, &pages[..2]);
    let err = t.copy_page(&mut Page::new_boxed(), pages[2].0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    upper.failing_restores.store(false, Ordering::Relaxed);
    verify_all(&t, &pages);
    for &(h, _) in &pages {
        t.drop_handle(h).unwrap();
    }
    assert_eq!((upper.stats().stored_pages, lower.inner().stats().stored_pages), (0, 0));
}

#[test]
fn a_full_lower_tier_still_takes_promoted_pages_back_to_their_kept_copies() {
    let upper = faulty(FaultConfig::none(16), None);
    let lower = faulty(FaultConfig::none(17), Some(4 * PAGE));
    let t = stack(
        &upper,
        &lower,
        64,
        TieredConfig::new().with_auto(None).with_promote(true),
    );
    let pages = backup_all(&t, 18, 4);
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 4);
    verify_all(&t, &pages[..2]);
    verify_all(&t, &pages[..2]);
    // Idle longer than the new pages, so they are tried first.
    support::tick();
    let more = backup_all(&t, 19, 2);
    // Below is full (its four copies, two kept): the new pages cannot go
    // down, the promoted ones can.
    let report = t.writeback(WritebackFilter::All);
    assert_eq!(report.moved_pages, 2, "{report:?}");
    assert_eq!(report.stopped, Some(Stop::NoSpaceBelow));
    assert_eq!(t.tier_stats()[0].moved_down_to_kept, 2);
    assert!(more.iter().all(|&(h, _)| t.tier_of(h) == Some(0)));
    verify_all(&t, &pages);
    verify_all(&t, &more);
    drop_all_and_check_empty(&t, &[pages, more].concat(), [&upper, &lower]);
}

/// A move whose page is dropped while its copy lands below releases that
/// copy, dropping it below before uncounting it: in between, the tier's
/// counters still hold a page its backend no longer stores. `flush` waits
/// for the move, so that the counters and the backends agree once it
/// returns; so does the drop, its page being in the move's batch.
#[test]
fn flush_waits_for_a_move_releasing_the_copy_of_a_page_dropped_meanwhile() {
    let upper = faulty(FaultConfig::none(20), None);
    let lower = Arc::new(FailingDrops::default());
    let t = stack(&upper, &lower, 64, TieredConfig::new().with_auto(None));
    let (h, _) = backup_all(&t, 21, 1)[0];
    let (on_landed, go) = lower.after_backup.pause();
    let (on_dropped, release) = lower.after_drop.pause();
    std::thread::scope(|scope| {
        let mover = scope.spawn(|| t.writeback(WritebackFilter::All));
        on_landed.recv().unwrap();
        let dropper = scope.spawn(|| t.drop_handle(h));
        // The drop took the page out of the table (and its copy above).
        while t.tier_stats()[0].pages > 0 {
            std::thread::yield_now();
        }
        go.send(()).unwrap();
        // The move found its page gone and dropped its copy below.
        on_dropped.recv().unwrap();
        let s = &t.tier_stats()[1];
        assert_eq!((s.pages, s.backend.stored_pages), (1, 0), "{s:?}");
        let flushed = scope.spawn(|| t.flush());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!flushed.is_finished(), "flush returned with a move in flight");
        assert!(
            !dropper.is_finished(),
            "the drop returned with its page's move in flight"
        );
        release.send(()).unwrap();
        flushed.join().unwrap().unwrap();
        dropper.join().unwrap().unwrap();
        let report = mover.join().unwrap();
        assert_eq!((report.moved_pages, report.raced_pages), (0, 1), "{report:?}");
    });
    assert!(t.tier_stats().iter().all(|s| s.pages == 0 && s.held_bytes == 0));
    assert_eq!((upper.inner().stats().stored_pages, lower.stats().stored_pages), (0, 0));
}

/// Backs up `n` pages a few milliseconds apart, so that the policy finds
/// them coldest first in the order they came.
fn backup_apart(t: &Tiered, seed: u64, n: u64) -> Vec<(Handle, PageSpec)> {
    (0..n)
        .map(|i| {
            support::tick();
            backup_all(t, seed ^ (i << 32), 1)[0]
        })
        .collect()
}

/// The tiers' figures against what their backends hold: `above` pages in
/// the first tier, `below` in the second, each counted exactly once.
fn assert_holds(t: &Tiered, stored: [u64; 2], above: u64, below: u64) {
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages), (above, below), "{s:?}");
    assert_eq!(
        stored,
        [above, below],
        "the tiers' backends hold other pages than counted"
    );
    assert_eq!(t.stats().stored_pages, above + below);
    assert_eq!(
        (s[0].held_bytes, s[1].held_bytes),
        (above * PAGE, below * PAGE),
        "a reservation was left behind"
    );
}

/// A page dropped between being found by a move and being read for it is
/// raced; the pages before and after it in its batch move, read in two
/// batch calls (before and after it) and stored in one. The drop returns
/// once the batch has ended.
#[test]
fn a_page_dropped_before_its_batch_is_read_races_and_the_rest_of_the_batch_moves() {
    let upper = Arc::new(FailingDrops::default());
    let counted_upper = Arc::new(Instrumented::new(Arc::clone(&upper)));
    let lower = faulty(FaultConfig::none(22), None);
    let counted_lower = Arc::new(Instrumented::new(Arc::clone(&lower)));
    let t = stack(&counted_upper, &counted_lower, 64, TieredConfig::new().with_auto(None));
    let pages = backup_apart(&t, 23, 10);
    let raced = pages[4].0;
    let (on_reading, go) = upper.before_copy.pause();
    let (dropped, on_dropped) = channel();
    upper.after_drop.set(move || dropped.send(()).unwrap());
    let report = std::thread::scope(|scope| {
        let mover = scope.spawn(|| t.writeback(WritebackFilter::All));
        on_reading.recv().unwrap();
        let dropper = scope.spawn(|| t.drop_handle(raced));
        on_dropped.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !dropper.is_finished(),
            "the drop returned with its page's batch in flight"
        );
        go.send(()).unwrap();
        dropper.join().unwrap().unwrap();
        mover.join().unwrap()
    });
    assert_eq!(
        (report.moved_pages, report.raced_pages, report.failed_pages),
        (9, 1, 0),
        "{report:?}"
    );
    let (read, stored) = (counted_upper.op_stats().restore, counted_lower.op_stats().backup);
    assert_eq!(
        (read.calls, read.pages),
        (2, 15),
        "one read of the batch, another past the raced page"
    );
    assert_eq!((stored.calls, stored.pages), (1, 9), "one store of the pages read");
    assert_eq!(
        counted_upper.op_stats().drop.calls,
        2,
        "the raced page's drop, then the batch's release"
    );
    assert_holds(
        &t,
        [upper.stats().stored_pages, lower.inner().stats().stored_pages],
        0,
        9,
    );
    let err = t.copy_page(&mut Page::new_boxed(), raced, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidHandle);
    let rest: Vec<_> = pages.iter().filter(|&&(h, _)| h != raced).copied().collect();
    verify_all(&t, &rest);
    for &(h, _) in &rest {
        t.drop_handle(h).unwrap();
    }
    assert_holds(
        &t,
        [upper.stats().stored_pages, lower.inner().stats().stored_pages],
        0,
        0,
    );
}

/// A lower tier whose writes start failing in the middle of a batch: the
/// pages stored before stay moved, each page after fails its move and stays
/// above, and every page is held exactly once; once the tier heals, the
/// pages left above move.
#[test]
fn a_lower_tier_failing_mid_batch_leaves_the_rest_above_and_loses_nothing() {
    let upper = faulty(FaultConfig::none(24), None);
    let lower = Arc::new(FailingDrops::default());
    let t = stack(&upper, &lower, 64, TieredConfig::new().with_auto(None));
    let pages = backup_apart(&t, 25, 20);
    let breaks = Arc::clone(&lower);
    lower
        .after_backup
        .set(move || breaks.failing_backups.store(true, Ordering::Relaxed));
    let report = t.writeback(WritebackFilter::All);
    assert_eq!(
        (
            report.moved_pages,
            report.failed_pages,
            report.raced_pages,
            report.stopped
        ),
        (1, 19, 0, None),
        "{report:?}"
    );
    assert_eq!(t.tier_stats()[0].failed_moves, 19);
    assert_eq!(
        t.tier_of(pages[0].0),
        Some(1),
        "the coldest page moved before the tier failed"
    );
    let held = || [upper.inner().stats().stored_pages, lower.stats().stored_pages];
    assert_holds(&t, held(), 19, 1);
    verify_all(&t, &pages);
    lower.failing_backups.store(false, Ordering::Relaxed);
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 19);
    assert_holds(&t, held(), 0, 20);
    verify_all(&t, &pages);
    for &(h, _) in &pages {
        t.drop_handle(h).unwrap();
    }
    assert_holds(&t, held(), 0, 0);
}

/// A lower tier that runs out of space in the middle of a batch (the
/// kernel's fault knob: a batch stores its first half, then `NoSpace`):
/// the half stored moves, the page that found no space fails, the moves
/// stop there, and the pages after it stay above, untried.
#[test]
fn a_lower_tier_full_mid_batch_stops_moves_and_keeps_the_rest_above() {
    let upper = faulty(FaultConfig::none(26), None);
    let mut config = FaultConfig::none(27);
    config.half_batches = true;
    let lower = faulty(config, None);
    let t = tiered(&upper, &lower, 64);
    let pages = backup_apart(&t, 28, 20);
    let report = t.writeback(WritebackFilter::All);
    assert_eq!(
        (report.moved_pages, report.failed_pages, report.stopped),
        (10, 1, Some(Stop::NoSpaceBelow)),
        "{report:?}"
    );
    assert_eq!(lower.counts().halved_batches, 1, "the pages went down in one batch");
    for (k, &(h, _)) in pages.iter().enumerate() {
        assert_eq!(t.tier_of(h), Some(usize::from(k < 10)), "page {k}");
    }
    let s = t.tier_stats();
    assert_eq!(
        (s[0].failed_moves, s[0].moved_down, s[1].written_back_bytes),
        (1, 10, 10 * PAGE)
    );
    assert_holds(
        &t,
        [upper.inner().stats().stored_pages, lower.inner().stats().stored_pages],
        10,
        10,
    );
    verify_all(&t, &pages);
    drop_all_and_check_empty(&t, &pages, [&upper, &lower]);
}
