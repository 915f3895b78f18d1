//! The restore path's own connections: replies that are not pages stop a
//! batch at the right page with the rest of the pages untouched and the
//! connection still in step, and async restores dropped at any point (the
//! server answering or stopped) never leave a reply to be read for another
//! request.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupBackend, ErrorKind, Handle, Page};
use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::PageSpec;
use support::{Server, backup_batch, verify};

const SENTINEL: u8 = 0x5a;

fn sentinels(n: usize) -> Vec<Box<Page>> {
    (0..n)
        .map(|_| {
            let mut p = Page::new_boxed();
            p.0.fill(SENTINEL);
            p
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A failed batch: its error's kind, how many pages it completed, and its
/// message with its chain.
type Failed = (ErrorKind, usize, String);

/// Restores `handles` in one batch, sync or async, into sentinel pages:
/// the pages and the batch's error as (kind, completed, message).
fn restore(
    b: &Arc<RedisBackend>,
    rt: &tokio::runtime::Runtime,
    sync: bool,
    handles: &[Handle],
) -> (Vec<Box<Page>>, Result<(), Failed>) {
    let mut dsts = sentinels(handles.len());
    let result = if sync {
        let mut refs: Vec<&mut Page> = dsts.iter_mut().map(|d| &mut **d).collect();
        BackupBackend::copy_pages(&**b, handles, &mut refs, None)
    } else {
        let (result, back) = rt.block_on(AsyncBackupBackend::copy_pages(&**b, handles, dsts, None));
        dsts = back;
        result
    };
    (
        dsts,
        result.map_err(|e| (e.kind(), e.completed, format!("{} {:?}", e.error, e.error))),
    )
}

fn check(dst: &Page, spec: &PageSpec) {
    spec.verify(dst).unwrap_or_else(|m| panic!("wrong bytes: {m}"));
}

#[test]
fn replies_that_are_not_pages_stop_the_batch_and_leave_the_connection_in_step() {
    let Some(server) = Server::start("replies that are not pages", &[]) else {
        return;
    };
    let rt = runtime();
    for sync in [true, false] {
        let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_checksum(true)).unwrap());
        let (live, _) = backup_batch(&b, 0, 6);
        let h: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
        // A value far larger than a page (and than the read buffer), and a
        // key of another type (the server answers WRONGTYPE).
        let big = b.key(h[1]).unwrap();
        server.cli(&["SETRANGE", &big, &(1 << 20).to_string(), "x"]);
        let list = b.key(h[3]).unwrap();
        server.cli(&["DEL", &list]);
        server.cli(&["RPUSH", &list, "x"]);

        let (dsts, result) = restore(&b, &rt, sync, &h[..3]);
        let (kind, completed, message) = result.unwrap_err();
        assert_eq!((kind, completed), (ErrorKind::Corrupt, 1), "{message}");
        assert!(message.contains(&format!("{} bytes", (1 << 20) + 1)), "{message}");
        check(&dsts[0], &live[0].1);
        for d in &dsts[1..] {
            assert!(
                d.0.iter().all(|&x| x == SENTINEL),
                "a page after the failure was written"
            );
        }

        let (dsts, result) = restore(&b, &rt, sync, &h[2..5]);
        let (kind, completed, message) = result.unwrap_err();
        assert_eq!((kind, completed), (ErrorKind::Io, 1), "{message}");
        assert!(message.contains("WRONGTYPE"), "{message}");
        check(&dsts[0], &live[2].1);
        assert!(dsts[1].0.iter().all(|&x| x == SENTINEL));

        // The same connections serve the next restores with the right bytes.
        let good: Vec<usize> = vec![0, 2, 4, 5];
        let handles: Vec<Handle> = good.iter().map(|&i| h[i]).collect();
        for _ in 0..3 {
            let (dsts, result) = restore(&b, &rt, sync, &handles);
            result.unwrap();
            for (d, &i) in dsts.iter().zip(&good) {
                check(d, &live[i].1);
            }
        }
        let (dsts, result) = restore(&b, &rt, sync, &[]);
        assert!(dsts.is_empty() && result.is_ok());
    }
}

#[test]
fn async_restores_dropped_at_any_point_never_desync_the_connection() {
    let Some(server) = Server::start("dropped async restores", &[]) else {
        return;
    };
    let rt = runtime();
    let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap());
    let (live, _) = backup_batch(&b, 0, 256);
    let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
    rt.block_on(async {
        for step in 0..60u64 {
            // Dropped after a growing delay: before the request, mid-reply,
            // or after it completed.
            let cut = Duration::from_micros(step * step * 20);
            let restore = AsyncBackupBackend::copy_pages(&*b, &handles, sentinels(handles.len()), None);
            let _ = tokio::time::timeout(cut, restore).await;
            let some = &handles[(step as usize * 7) % 200..][..56];
            let (result, dsts) = AsyncBackupBackend::copy_pages(&*b, some, sentinels(some.len()), None).await;
            result.unwrap_or_else(|e| panic!("restore after a dropped one: {e}"));
            for (d, h) in dsts.iter().zip(some) {
                let spec = live.iter().find(|(l, _)| l == h).unwrap().1;
                check(d, &spec);
            }
        }
    });
    verify(&b, &live);
}

#[test]
fn an_async_restore_dropped_while_the_server_is_stopped_leaves_nothing_to_misread() {
    let Some(server) = Server::start("restore dropped at a stopped server", &[]) else {
        return;
    };
    let rt = runtime();
    let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_timeout(Duration::from_secs(2))).unwrap());
    let (live, _) = backup_batch(&b, 0, 64);
    let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
    // Warm the pool, so the dropped restore takes a connection from it.
    verify(&b, &live);
    let stopped = server.stop();
    rt.block_on(async {
        let restore = AsyncBackupBackend::copy_pages(&*b, &handles, sentinels(handles.len()), None);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), restore).await.is_err(),
            "a stopped server answered"
        );
    });
    drop(stopped);
    rt.block_on(async {
        for _ in 0..3 {
            let (result, dsts) = AsyncBackupBackend::copy_pages(&*b, &handles, sentinels(handles.len()), None).await;
            result.unwrap_or_else(|e| panic!("restore after the server resumed: {e}"));
            for (d, (_, spec)) in dsts.iter().zip(&live) {
                check(d, spec);
            }
        }
    });
    verify(&b, &live);
}
