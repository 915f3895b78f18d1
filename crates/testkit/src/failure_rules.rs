//! [`check_failure_rules`]: the failure rules of a slot-backed backend, with
//! a [`FailingDevice`](crate::FailingDevice) failing writes, reads and
//! releases below it.

use std::sync::Arc;

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page, PageArray};

use crate::{DeviceOp, FaultPlan, PageSpec};

const PAGE: u64 = PAGE_SIZE as u64;
const SEED: u64 = 0xfa11;
const EIO: i32 = 5;
const EOPNOTSUPP: i32 = 95;
const ENOSPC: i32 = 28;

/// Builds a backend (one shard, storage released at drop) over a device
/// that fails as the plan says.
pub type MakeFailing<'a> = &'a dyn Fn(Arc<FaultPlan>) -> Box<dyn BackupBackend>;

/// Runs every failure scenario on backends `make` builds, panicking with
/// what went wrong:
///
/// - a batch backup whose second run fails keeps exactly the pages of the
///   first run, and holds nothing of the second (`ENOSPC` is `NoSpace`);
/// - a single backup that fails issues no handle and holds nothing;
/// - a batch restore whose second run fails restores the first run's pages
///   and leaves every backup in place;
/// - a batch drop whose second release fails drops exactly the first run;
///   every later handle is live and gives its exact bytes;
/// - a device that can never release (no `PUNCH_HOLE`): every drop fails,
///   every handle stays live, and a [`PageArray`] restores all its pages;
/// - a `PageArray` backup that fails part-way restores every page exactly.
///
/// Every error the device's failure causes has the device's
/// [`std::io::Error`] in its chain of sources. After each scenario the
/// backend holds no page and no storage.
pub fn check_failure_rules(make: MakeFailing<'_>) {
    batch_backup_keeps_exactly_the_completed_runs(make);
    single_backup_failure_holds_nothing(make);
    restore_failure_leaves_backups(make);
    drop_failure_keeps_later_handles_live(make);
    no_punch_means_no_drop(make);
    page_array_survives_a_failed_backup(make);
}

fn pages(base: u64, n: u64) -> (Vec<PageSpec>, Vec<Box<Page>>) {
    let specs: Vec<PageSpec> = (0..n).map(|i| PageSpec::mixed(SEED ^ base, i)).collect();
    let pages = specs.iter().map(PageSpec::page).collect();
    (specs, pages)
}

fn refs(pages: &[Box<Page>]) -> Vec<&Page> {
    pages.iter().map(|p| &**p).collect()
}

fn verify(b: &dyn BackupBackend, handles: &[Handle], specs: &[PageSpec]) {
    let mut page = Page::new_boxed();
    for (k, (&h, spec)) in handles.iter().zip(specs).enumerate() {
        b.copy_page(&mut page, h, None)
            .unwrap_or_else(|e| panic!("{}: page {k} of a live handle: {e}", b.name()));
        spec.verify(&page)
            .unwrap_or_else(|e| panic!("{}: page {k}: {e}", b.name()));
    }
}

/// Panics unless the chain of `err` (by `source`) reaches the
/// [`std::io::Error`] the device failed with, `errno`, by `downcast_ref`.
fn assert_io_cause(b: &dyn BackupBackend, err: &(dyn std::error::Error + 'static), errno: i32) {
    let found = std::iter::successors(Some(err), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.raw_os_error() == Some(errno));
    assert!(
        found,
        "{}: the device's error {errno} is not in the chain of {err:?}",
        b.name()
    );
}

fn assert_holds(b: &dyn BackupBackend, pages: u64, when: &str) {
    let s = b.stats();
    assert_eq!(s.stored_pages, pages, "{}: pages held {when}: {s:?}", b.name());
    assert_eq!(s.stored_bytes, pages * PAGE, "{}: storage held {when}: {s:?}", b.name());
}

/// Backs up 16 pages at idx 0 and 16 at idx 1000, then drops the first 8:
/// slots 0..8 are free and 8..32 taken, so a batch of 24 is placed as two
/// runs (0..8, then 32..48).
fn fragmented(b: &dyn BackupBackend) -> (Vec<Handle>, Vec<PageSpec>) {
    let (specs, pages) = pages(1, 32);
    let refs = refs(&pages);
    let mut handles = Vec::new();
    b.backup_pages(&refs[..16], 0, BackupFlags::NONE, &mut handles).unwrap();
    b.backup_pages(&refs[16..], 1000, BackupFlags::NONE, &mut handles)
        .unwrap();
    b.drop_handles(&handles[..8]).unwrap();
    (handles[8..].to_vec(), specs[8..].to_vec())
}

/// The fragmented handles (slots 8..32) reordered as slots 16..24, 8..16,
/// 24..32: a batch of three runs whose second starts at item 8.
fn two_runs((handles, specs): (Vec<Handle>, Vec<PageSpec>)) -> (Vec<Handle>, Vec<PageSpec>) {
    let order = (8..16).chain(0..8).chain(16..24);
    order.map(|k| (handles[k], specs[k])).unzip()
}

fn batch_backup_keeps_exactly_the_completed_runs(make: MakeFailing<'_>) {
    for (errno, kind) in [(EIO, ErrorKind::Io), (ENOSPC, ErrorKind::NoSpace)] {
        let plan = FaultPlan::new();
        let b = make(plan.clone());
        let (old, old_specs) = fragmented(&*b);
        let (specs, pages) = pages(2, 24);
        plan.fail(DeviceOp::Write, 1, errno, false);
        let mut handles = Vec::new();
        let err = b
            .backup_pages(&refs(&pages), 5000, BackupFlags::NONE, &mut handles)
            .unwrap_err();
        assert_eq!(
            plan.failures(DeviceOp::Write),
            1,
            "{}: the second run was written",
            b.name()
        );
        assert_eq!(
            (err.kind(), err.completed, handles.len()),
            (kind, 8, 8),
            "{}: a batch whose second run failed: {err}",
            b.name()
        );
        assert_io_cause(&*b, &err, errno);
        assert_holds(&*b, 24 + 8, "after a failed batch");
        verify(&*b, &handles, &specs[..8]);
        verify(&*b, &old, &old_specs);
        b.drop_handles(&handles).unwrap();
        b.drop_handles(&old).unwrap();
        assert_holds(&*b, 0, "after every drop");
    }
}

fn single_backup_failure_holds_nothing(make: MakeFailing<'_>) {
    let plan = FaultPlan::new();
    let b = make(plan.clone());
    let (specs, pages) = pages(3, 2);
    let kept = b.backup_page(&pages[0], 0, BackupFlags::NONE).unwrap();
    plan.fail(DeviceOp::Write, 0, EIO, false);
    let err = b.backup_page(&pages[1], 1, BackupFlags::NONE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{}: {err}", b.name());
    assert_io_cause(&*b, &err, EIO);
    b.flush().unwrap();
    assert_holds(&*b, 1, "after a failed single backup");
    verify(&*b, &[kept], &specs[..1]);
    b.drop_handle(kept).unwrap();
    assert_holds(&*b, 0, "after every drop");
}

fn restore_failure_leaves_backups(make: MakeFailing<'_>) {
    let plan = FaultPlan::new();
    let b = make(plan.clone());
    let (handles, specs) = two_runs(fragmented(&*b));
    let mut out: Vec<Box<Page>> = (0..handles.len()).map(|_| Page::new_boxed()).collect();
    plan.fail(DeviceOp::Read, 1, EIO, false);
    {
        let mut dsts: Vec<&mut Page> = out.iter_mut().map(|p| &mut **p).collect();
        let err = b.copy_pages(&handles, &mut dsts, None).unwrap_err();
        assert_eq!(
            (err.kind(), err.completed),
            (ErrorKind::Io, 8),
            "{}: a restore whose second run failed: {err}",
            b.name()
        );
        assert_io_cause(&*b, &err, EIO);
    }
    for (k, page) in out[..8].iter().enumerate() {
        specs[k]
            .verify(page)
            .unwrap_or_else(|e| panic!("{}: restored page {k}: {e}", b.name()));
    }
    // Everything is still there, and a retry restores it all.
    verify(&*b, &handles, &specs);
    b.drop_handles(&handles).unwrap();
    assert_holds(&*b, 0, "after every drop");
}

fn drop_failure_keeps_later_handles_live(make: MakeFailing<'_>) {
    let plan = FaultPlan::new();
    let b = make(plan.clone());
    let (handles, specs) = two_runs(fragmented(&*b));
    plan.fail(DeviceOp::Release, 1, EIO, false);
    let err = b.drop_handles(&handles).unwrap_err();
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::Io, 8),
        "{}: a drop whose second release failed: {err}",
        b.name()
    );
    assert_io_cause(&*b, &err, EIO);
    let mut page = Page::new_boxed();
    for &h in &handles[..8] {
        assert_eq!(
            b.copy_page(&mut page, h, None).unwrap_err().kind(),
            ErrorKind::InvalidHandle,
            "{}: a dropped handle",
            b.name()
        );
    }
    verify(&*b, &handles[8..], &specs[8..]);
    assert_holds(&*b, 16, "after a failed drop");
    b.drop_handles(&handles[8..]).unwrap();
    assert_holds(&*b, 0, "after every drop");
}

fn no_punch_means_no_drop(make: MakeFailing<'_>) {
    let plan = FaultPlan::new();
    let b: Arc<dyn BackupBackend> = Arc::from(make(plan.clone()));
    let mut array = PageArray::new_zeroed(40, b.clone());
    for (i, page) in array.iter_mut() {
        PageSpec::mixed(SEED ^ 6, i as u64).fill(page);
    }
    assert_eq!(array.backup(BackupFlags::NONE).unwrap(), 40);
    plan.fail(DeviceOp::Release, 0, EOPNOTSUPP, true);
    let handle = array.words()[3].view();
    let pagebackup_core::PageState::Backed(handle) = handle else {
        panic!("{}: page 3 is backed up", b.name())
    };
    let err = b.drop_handle(handle).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{}: {err}", b.name());
    // The array restores every page: copies succeed, drops fail and leave
    // the handles live, so the array keeps them and tries again.
    let err = array.restore(None).unwrap_err();
    assert_eq!(
        (err.error.kind(), err.completed),
        (ErrorKind::Io, 0),
        "{}: {err}",
        b.name()
    );
    plan.heal();
    assert_eq!(array.restore(None).unwrap(), 40);
    for i in 0..40 {
        PageSpec::mixed(SEED ^ 6, i as u64)
            .verify(array.get(i).unwrap())
            .unwrap_or_else(|e| panic!("{}: array page {i}: {e}", b.name()));
    }
    assert_holds(&*b, 0, "after the array's restore");
}

fn page_array_survives_a_failed_backup(make: MakeFailing<'_>) {
    let plan = FaultPlan::new();
    let b: Arc<dyn BackupBackend> = Arc::from(make(plan.clone()));
    let (old, _) = fragmented(&*b);
    let mut array = PageArray::new_zeroed(64, b.clone());
    for (i, page) in array.iter_mut() {
        PageSpec::mixed(SEED ^ 7, i as u64).fill(page);
    }
    plan.fail(DeviceOp::Write, 1, EIO, false);
    let err = array.backup(BackupFlags::NONE).unwrap_err();
    assert_eq!(err.error.kind(), ErrorKind::Io, "{}: {err}", b.name());
    assert_eq!(array.counts().backed, err.completed, "{}: the array's words", b.name());
    assert_eq!(array.restore(None).unwrap(), err.completed);
    for i in 0..64 {
        PageSpec::mixed(SEED ^ 7, i as u64)
            .verify(array.get(i).unwrap())
            .unwrap_or_else(|e| panic!("{}: array page {i}: {e}", b.name()));
    }
    b.drop_handles(&old).unwrap();
    assert_holds(&*b, 0, "after the array's restore");
}
