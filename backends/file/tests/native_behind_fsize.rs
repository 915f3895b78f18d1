//! The native backend's write-behind when its writes fail: under
//! `RLIMIT_FSIZE`, buffered backups return once staged, their writes fail
//! behind them (`EFBIG`), and nothing is lost: every page restores from
//! memory, `flush` reports the failure, a backup that finds the writers
//! that far behind writes its own pages, gets the error and stores
//! nothing, a handed-over backup whose future is dropped leaves nothing
//! stored, and once the writes can go through, `flush` writes what was
//! kept. (A binary of its own: the limit applies to the whole process;
//! nothing is printed while it holds.)

use std::future::Future;
use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_file::{AsyncFileBackend, AsyncWrites, FileConfig};
use pagebackup_testkit::{PageClass, PageSpec};
use rustix::process::{Resource, Rlimit};

/// The file size limit while the test runs: 64 MiB.
const LIMIT: u64 = 64 << 20;

/// Restores the process's file size limit when dropped.
struct Limited(Rlimit);

impl Limited {
    fn to(bytes: u64) -> Self {
        let before = rustix::process::getrlimit(Resource::Fsize);
        // Writes past the limit fail with EFBIG instead of killing the process.
        // SAFETY: ignoring a signal installs no handler.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        rustix::process::setrlimit(
            Resource::Fsize,
            Rlimit {
                current: Some(bytes),
                maximum: before.maximum,
            },
        )
        .unwrap();
        Limited(before)
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        rustix::process::setrlimit(Resource::Fsize, self.0).unwrap();
    }
}

fn pages(seed: u64, n: u64) -> Vec<Box<Page>> {
    (0..n)
        .map(|i| PageSpec::new(seed, i, PageClass::Random).page())
        .collect()
}

/// Every handle restores its page, through the batch call, the
/// single-page call and the sync view.
async fn check(b: &AsyncFileBackend, handles: &[Handle], want: &[Box<Page>]) {
    let dsts: Vec<Box<Page>> = handles.iter().map(|_| Page::new_boxed()).collect();
    let (restored, dsts) = b.copy_pages(handles, dsts, None).await;
    restored.unwrap();
    for (k, (got, want)) in dsts.iter().zip(want).enumerate() {
        assert!(got.0 == want.0, "page {k} of the batch");
    }
    for k in [0, handles.len() / 2, handles.len() - 1] {
        let (restored, got) = b.copy_page(Page::new_boxed(), handles[k], None).await;
        restored.unwrap();
        assert!(got.0 == want[k].0, "page {k} alone");
        let mut got = Page::new_boxed();
        b.blocking().copy_page(&mut got, handles[k], None).unwrap();
        assert!(got.0 == want[k].0, "page {k} through the sync view");
    }
}

#[test]
fn writes_that_fail_behind_their_backups_lose_nothing_and_flush_says_so() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let b =
        Arc::new(AsyncFileBackend::new(FileConfig::new().with_shards(1).with_async_writes(AsyncWrites::Pool)).unwrap());
    assert_eq!(b.writes_through(), "pwritev");
    let limited = Limited::to(LIMIT);
    runtime.block_on(async {
        // Fill the file up to the limit with one page, written.
        let filler = PageSpec::new(1, 0, PageClass::Random).page();
        let mut held = Vec::new();
        for call in 0..LIMIT / PAGE_SIZE as u64 / 64 {
            let batch = (0..64).map(|_| filler.clone()).collect();
            let backed = b.backup_pages(batch, call * 64, BackupFlags::NONE).await;
            backed.result.unwrap();
            held.extend(backed.handles);
        }
        b.flush().await.unwrap();

        // Past the limit: each backup returns once staged; its write fails.
        let want = pages(2, 256);
        let mut handles = Vec::new();
        for (call, chunk) in want.chunks(64).enumerate() {
            let backed = b
                .backup_pages(chunk.to_vec(), 1 << 20 | (call as u64 * 64), BackupFlags::NONE)
                .await;
            backed.result.unwrap();
            handles.extend(backed.handles);
        }
        let failed = b.flush().await.unwrap_err();
        assert_eq!(failed.kind(), ErrorKind::NoSpace, "{failed}");
        assert!(b.stats().resident_bytes >= 256 * PAGE_SIZE as u64, "{:?}", b.stats());
        check(&b, &handles, &want).await;

        // More backups are staged until the writers are that far behind;
        // the next one writes its own pages, gets the error and stores
        // nothing.
        let more = pages(3, 4096);
        let stored = b.stats().stored_pages;
        let mut refused = None;
        let mut more_handles = Vec::new();
        let mut staged_before = 0;
        for (call, chunk) in more.chunks(64).enumerate() {
            staged_before = b.stats().resident_bytes;
            let backed = b
                .backup_pages(chunk.to_vec(), 2 << 20 | (call as u64 * 64), BackupFlags::NONE)
                .await;
            match backed.result {
                Ok(()) => more_handles.extend(backed.handles),
                Err(e) => {
                    assert_eq!(e.completed, 0);
                    assert!(backed.handles.is_empty());
                    refused = Some(e.error);
                    break;
                }
            }
        }
        let refused = refused.expect("a backup is refused once the writers are behind");
        assert_eq!(refused.kind(), ErrorKind::NoSpace, "{refused}");
        // One shard: staged up to the bound of 512 pages, then handed over.
        assert_eq!(more_handles.len(), 512 - 256, "pages staged before the refusal");
        assert_eq!(
            b.stats().resident_bytes,
            staged_before,
            "the refused backup staged nothing"
        );
        assert_eq!(b.stats().stored_pages, stored + more_handles.len() as u64);
        check(&b, &more_handles, &more[..more_handles.len()]).await;

        // A handed-over backup whose future is dropped once its write is
        // queued (into slots below the limit, freed by dropping filler, or
        // past it) leaves nothing stored once its write is done, whether
        // the write went through or not.
        b.drop_handles(&held.split_off(held.len() - 128)).await.unwrap();
        let stored = b.stats().stored_pages;
        let mut finished = Vec::new();
        for (call, chunk) in pages(4, 128).chunks(64).enumerate() {
            let mut backup = Box::pin(b.backup_pages(chunk.to_vec(), 3 << 20 | (call as u64 * 64), BackupFlags::NONE));
            std::future::poll_fn(|cx| {
                // A write done before the first poll ends finishes the call.
                if let std::task::Poll::Ready(backed) = backup.as_mut().poll(cx) {
                    finished.extend(backed.handles);
                }
                std::task::Poll::Ready(())
            })
            .await;
        }
        let _ = b.flush().await;
        assert_eq!(
            b.stats().stored_pages,
            stored + finished.len() as u64,
            "the dropped backups left handles behind"
        );
        b.drop_handles(&finished).await.unwrap();

        // The writes can go through again: flush writes what was kept.
        drop(limited);
        b.flush().await.unwrap();
        assert_eq!(b.stats().resident_bytes, 0, "{:?}", b.stats());
        check(&b, &handles, &want).await;
        check(&b, &more_handles, &more[..more_handles.len()]).await;
        held.extend(handles);
        held.extend(more_handles);
        b.drop_handles(&held).await.unwrap();
        b.flush().await.unwrap();
    });
    assert_eq!(b.stats().stored_pages, 0);
}
