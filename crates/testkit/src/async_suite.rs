//! The async conformance suite: every check of the sync suite run through
//! the async API, the checks of owned buffers, and the cancellation checks;
//! [`AsyncCheck`] runs them by name.

use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};

use crate::cancellation::{
    CancelConfig, Flavor, check_cancellation, check_drop_after_shutdown, check_drop_with_cancelled_ops,
    check_flush_after_cancel, check_page_array_cancellation, check_page_array_dropped_with_runtime,
    check_shutdown_in_flight, dropped_restore_interrupts,
};
use crate::{AsyncSubject, Check, LIMIT_PAGES, PageClass, PageSpec};

const SEED: u64 = 0xa5c_5eed;

/// One case of the async conformance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AsyncCheck {
    /// A check of the sync suite, through [`SyncView`](crate::SyncView) on
    /// a multi-thread runtime (with one blocking thread, except for
    /// [`Check::Threads`]).
    Sync(Check),
    /// [`buffers_come_back`]
    BuffersComeBack,
    /// [`dropped_restore_interrupts`]
    DroppedRestoreInterrupts,
    /// [`check_cancellation`] on a runtime of this flavor.
    Cancellation(Flavor),
    /// [`check_page_array_cancellation`] on a runtime of this flavor.
    PageArrayCancellation(Flavor),
    /// [`check_shutdown_in_flight`] on a runtime of this flavor.
    ShutdownInFlight(Flavor),
    /// [`check_drop_after_shutdown`] on a runtime of this flavor.
    DropAfterShutdown(Flavor),
    /// [`check_flush_after_cancel`]
    FlushAfterCancel,
    /// [`check_page_array_dropped_with_runtime`] on a runtime of this flavor.
    PageArrayDroppedWithRuntime(Flavor),
    /// [`check_drop_with_cancelled_ops`] on a runtime of this flavor.
    DropWithCancelledOps(Flavor),
}

impl AsyncCheck {
    /// Runs the check on fresh instances of `subject`, then checks that the
    /// instance holds no page afterwards.
    pub fn run(self, subject: &AsyncSubject) {
        if let AsyncCheck::Sync(check) = self {
            let runtime = match check {
                Check::Threads | Check::RacingRestores => Flavor::MultiThread.runtime(),
                _ => one_blocking_thread(),
            };
            return check.run(&subject.sync_view(runtime.handle().clone()));
        }
        let backend = subject.create();
        match self {
            AsyncCheck::Sync(_) => unreachable!("handled above"),
            AsyncCheck::BuffersComeBack => {
                let limited = subject.limited(LIMIT_PAGES * PAGE_SIZE as u64);
                one_blocking_thread().block_on(async {
                    buffers_come_back(&*backend).await;
                    match &limited {
                        Some(limited) => {
                            failed_backups_give_pages_back(&**limited, subject.capabilities().exact_page_accounting)
                                .await
                        }
                        None => println!("skipped the NoSpace part: {} has no space limit", subject.name()),
                    }
                });
                if let Some(limited) = limited {
                    assert_empty(&*limited);
                }
            }
            AsyncCheck::DroppedRestoreInterrupts => Flavor::MultiThread
                .runtime()
                .block_on(dropped_restore_interrupts(&*backend)),
            AsyncCheck::Cancellation(flavor) => {
                let config = CancelConfig {
                    seed: SEED,
                    tasks: 16,
                    ops_per_task: 300,
                    max_batch: 16,
                };
                let report = check_cancellation(Arc::clone(&backend), flavor, config);
                println!("{} ({flavor:?}): cancellation: {report}", subject.name());
            }
            AsyncCheck::PageArrayCancellation(flavor) => {
                check_page_array_cancellation(Arc::clone(&backend), flavor, SEED);
            }
            AsyncCheck::ShutdownInFlight(flavor) => check_shutdown_in_flight(Arc::clone(&backend), flavor, SEED),
            AsyncCheck::DropAfterShutdown(flavor) => check_drop_after_shutdown(&*backend, flavor),
            AsyncCheck::FlushAfterCancel => {
                Flavor::MultiThread
                    .runtime()
                    .block_on(check_flush_after_cancel(&*backend));
            }
            AsyncCheck::PageArrayDroppedWithRuntime(flavor) => {
                check_page_array_dropped_with_runtime(Arc::clone(&backend), flavor);
            }
            AsyncCheck::DropWithCancelledOps(flavor) => {
                check_drop_with_cancelled_ops(&|| subject.create(), flavor);
            }
        }
        assert_empty(&*backend);
    }
}

/// A multi-thread runtime whose blocking pool has one thread, so that the
/// calls of one test sequence reach a sync backend from one thread, as in
/// the sync suite. (A backend with per-thread shards, such as the compressed
/// one, may refuse a backup for space on one thread and take it on another.)
fn one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .build()
        .expect("a tokio runtime")
}

fn assert_empty(b: &dyn AsyncBackupBackend) {
    crate::suite::assert_holds_nothing(b.name(), &b.stats());
}

fn address(page: &Page) -> *const Page {
    page
}

fn addresses(pages: &[Box<Page>]) -> Vec<*const Page> {
    pages.iter().map(|p| address(p)).collect()
}

/// Owned buffers: every call gives back the very buffers it was given (the
/// same allocations, in order), on success and on failure, and batches keep
/// the sync trait's `completed` rule.
pub async fn buffers_come_back(b: &dyn AsyncBackupBackend) {
    let spec = PageSpec::mixed(SEED, 0);
    let page = spec.page();
    let at = address(&page);
    let (handle, page) = b.backup_page(page, 0, BackupFlags::NONE).await;
    let handle = handle.unwrap_or_else(|e| panic!("{}: backup_page: {e}", b.name()));
    assert_eq!(address(&page), at, "{}: backup_page gave back another buffer", b.name());
    spec.verify(&page).expect("the caller's page is not touched");

    let (result, dst) = b.copy_page(page, handle, None).await;
    result.unwrap();
    assert_eq!(address(&dst), at, "{}: copy_page gave back another buffer", b.name());
    b.drop_handle(handle).await.unwrap();
    let (result, dst) = b.copy_page(dst, handle, None).await;
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(ErrorKind::InvalidHandle),
        "{}: copy of a dropped handle",
        b.name()
    );
    assert_eq!(
        address(&dst),
        at,
        "{}: a failed copy_page gave back another buffer",
        b.name()
    );

    let specs: Vec<PageSpec> = (1..9).map(|i| PageSpec::mixed(SEED, i)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let ats = addresses(&pages);
    let backed = b.backup_pages(pages, 1, BackupFlags::NONE).await;
    backed.result.unwrap();
    assert_eq!(
        addresses(&backed.pages),
        ats,
        "{}: backup_pages gave back other buffers",
        b.name()
    );
    assert_eq!(backed.handles.len(), 8, "{}: one handle per page", b.name());
    let live: Vec<Handle> = backed.handles;

    let dead = b
        .backup_page(PageSpec::mixed(SEED, 99).page(), 9, BackupFlags::NONE)
        .await
        .0
        .unwrap();
    b.drop_handle(dead).await.unwrap();
    let dsts: Vec<Box<Page>> = (0..4).map(|_| Page::new_boxed()).collect();
    let ats = addresses(&dsts);
    let (result, dsts) = b.copy_pages(&[live[0], live[1], dead, live[2]], dsts, None).await;
    let err = result.expect_err("copy_pages with a dropped handle");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidHandle, 2),
        "{}: {err}",
        b.name()
    );
    assert_eq!(
        addresses(&dsts),
        ats,
        "{}: a failed copy_pages gave back other buffers",
        b.name()
    );
    specs[0].verify(&dsts[0]).unwrap();
    specs[1].verify(&dsts[1]).unwrap();
    let (result, dsts) = b.copy_pages(&live[..3], dsts, None).await;
    let err = result.expect_err("copy_pages with 3 handles and 4 pages");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidInput, 0),
        "{}: {err}",
        b.name()
    );
    assert_eq!(
        addresses(&dsts),
        ats,
        "{}: a rejected copy_pages gave back other buffers",
        b.name()
    );

    let err = b
        .drop_handles(&[live[0], dead, live[1]])
        .await
        .expect_err("drop_handles with a dropped handle");
    assert_eq!(
        (err.kind(), err.completed),
        (ErrorKind::InvalidHandle, 1),
        "{}: {err}",
        b.name()
    );
    b.drop_handles(&live[1..]).await.unwrap();
    let empty = b.backup_pages(Vec::new(), 0, BackupFlags::NONE).await;
    assert!(empty.result.is_ok() && empty.handles.is_empty() && empty.pages.is_empty());
}

/// On a backend limited to [`LIMIT_PAGES`] pages: a backup past the space
/// gives `NoSpace` and its buffers back; a batch that fits part-way backs up
/// exactly `completed` pages and gives every buffer back (where the limit
/// is exact).
pub async fn failed_backups_give_pages_back(b: &dyn AsyncBackupBackend, exact: bool) {
    let mut live = Vec::new();
    let keep_free = u64::from(exact);
    for i in 0.. {
        if exact && live.len() as u64 == LIMIT_PAGES - keep_free {
            break;
        }
        let (handle, _) = b
            .backup_page(PageSpec::new(SEED, i, PageClass::Random).page(), i, BackupFlags::NONE)
            .await;
        match handle {
            Ok(h) => live.push(h),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "{}: {e}", b.name());
                break;
            }
        }
        assert!(i < LIMIT_PAGES * 4 + 64, "{}: no NoSpace in sight", b.name());
    }
    let pages: Vec<Box<Page>> = (0..3)
        .map(|i| PageSpec::new(SEED ^ 1, i, PageClass::Random).page())
        .collect();
    let ats = addresses(&pages);
    let backed = b.backup_pages(pages, 0, BackupFlags::NONE).await;
    let err = backed.result.expect_err("a batch past the limit");
    assert_eq!(
        (err.kind(), err.completed, backed.handles.len()),
        (ErrorKind::NoSpace, keep_free as usize, keep_free as usize),
        "{}: {err}",
        b.name()
    );
    assert_eq!(
        addresses(&backed.pages),
        ats,
        "{}: a failed backup_pages gave back other buffers",
        b.name()
    );
    live.extend(backed.handles);
    let page = PageSpec::new(SEED ^ 2, 0, PageClass::Random).page();
    let at = address(&page);
    let (handle, page) = b.backup_page(page, 0, BackupFlags::NONE).await;
    assert_eq!(
        handle.map_err(|e| e.kind()),
        Err(ErrorKind::NoSpace),
        "{}: backup_page when full",
        b.name()
    );
    assert_eq!(
        address(&page),
        at,
        "{}: a failed backup_page gave back another buffer",
        b.name()
    );
    b.drop_handles(&live).await.unwrap();
}
