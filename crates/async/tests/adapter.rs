//! Where `SyncAdapter` runs the sync backend's calls.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pagebackup_async::{AsyncBackupBackend, Execution, SyncAdapter};
use pagebackup_core::{BackupBackend, BackupFlags, Handle, Interrupt, MemoryBackend, Page};

fn page(fill: u8) -> Box<Page> {
    let mut page = Page::new_boxed();
    page.0.fill(fill);
    page
}

/// Polls `fut` once with a waker that does nothing, outside any runtime
/// unless the caller entered one.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_backend_that_never_blocks_runs_inline_without_a_runtime() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::new(memory.clone());
    assert_eq!(adapter.execution(), Execution::Inline);
    // No runtime: a call that needed spawn_blocking would panic here.
    let Poll::Ready((handle, page)) = poll_once(adapter.backup_page(page(7), 0, BackupFlags::NONE)) else {
        panic!("an inline backup finishes in its first poll");
    };
    let handle = handle.unwrap();
    let Poll::Ready((restored, page)) = poll_once(adapter.copy_page(page, handle, None)) else {
        panic!("an inline restore finishes in its first poll");
    };
    restored.unwrap();
    assert_eq!(page.0, [7; 4096]);
    assert!(poll_once(adapter.drop_handle(handle)).is_ready());
    assert_eq!(memory.stats().stored_pages, 0);
}

#[test]
fn a_backend_that_may_block_goes_to_the_blocking_pool() {
    let memory: Arc<dyn BackupBackend> = Arc::new(Undeclared(MemoryBackend::new()));
    let adapter = SyncAdapter::new(memory);
    assert_eq!(
        adapter.execution(),
        Execution::Blocking,
        "the default capability is `may block`"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _entered = runtime.enter();
    assert!(
        poll_once(adapter.backup_page(page(1), 0, BackupFlags::NONE)).is_pending(),
        "the first poll hands the call to a blocking thread"
    );
}

#[test]
fn a_call_whose_runtime_shut_down_runs_on_the_awaiting_thread() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::with_execution(memory.clone(), Execution::Blocking);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    let _entered = handle.enter();
    // spawn_blocking on a runtime that shut down gives a cancelled job.
    let Poll::Ready(backed) = poll_once(adapter.backup_pages(vec![page(3), page(4)], 0, BackupFlags::NONE)) else {
        panic!("the call runs here once its job is refused");
    };
    backed.result.unwrap();
    assert_eq!((backed.pages.len(), backed.handles.len()), (2, 2));
    assert_eq!(memory.stats().stored_pages, 2);
    let Poll::Ready((restored, pages)) = poll_once(adapter.copy_pages(&backed.handles, vec![page(0), page(0)], None))
    else {
        panic!("the restore runs here too");
    };
    restored.unwrap();
    assert_eq!((pages[0].0[0], pages[1].0[0]), (3, 4));
    assert!(matches!(
        poll_once(adapter.drop_handles(&backed.handles)),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(memory.stats().stored_pages, 0);
}

#[test]
fn inline_calls_yield_to_other_tasks() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::new(memory.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = Arc::clone(&ran);
            async move { ran.store(true, std::sync::atomic::Ordering::Relaxed) }
        });
        let mut handles = Vec::new();
        let mut page = page(9);
        // On a current-thread runtime the other task runs only if these
        // calls yield: 1000 pages are several budgets.
        for i in 0..1000 {
            let (handle, back) = adapter.backup_page(page, i, BackupFlags::NONE).await;
            handles.push(handle.unwrap());
            page = back;
        }
        assert!(
            ran.load(std::sync::atomic::Ordering::Relaxed),
            "inline calls never yielded"
        );
        other.await.unwrap();
        adapter.drop_handles(&handles).await.unwrap();
    });
    assert_eq!(memory.stats().stored_pages, 0);
}

/// The memory backend without its `never_blocks` declaration: a backend
/// that says nothing about blocking.
#[derive(Debug)]
struct Undeclared(MemoryBackend);

impl BackupBackend for Undeclared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.0.backup_page(page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> pagebackup_core::Result<()> {
        self.0.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.0.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.0.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.0.stats()
    }
}

#[test]
fn a_blocking_adapter_awaited_outside_a_runtime_runs_on_the_awaiting_thread() {
    let memory = Arc::new(MemoryBackend::new());
    let adapter = SyncAdapter::with_execution(memory.clone(), Execution::Blocking);
    // No runtime: without one, spawn_blocking would panic ("there is no reactor running").
    let Poll::Ready((handle, page)) = poll_once(adapter.backup_page(page(9), 3, BackupFlags::NONE)) else {
        panic!("a backup outside a runtime finishes in its first poll");
    };
    let handle = handle.unwrap();
    assert_eq!(page.0[0], 9, "the page comes back");
    let Poll::Ready((restored, back)) = poll_once(adapter.copy_page(Page::new_boxed(), handle, None)) else {
        panic!("a restore outside a runtime finishes in its first poll");
    };
    restored.unwrap();
    assert!(back.0.iter().all(|&b| b == 9));
    let Poll::Ready(dropped) = poll_once(adapter.drop_handle(handle)) else {
        panic!("a drop outside a runtime finishes in its first poll");
    };
    dropped.unwrap();
    assert_eq!(memory.stats().stored_pages, 0);
}
