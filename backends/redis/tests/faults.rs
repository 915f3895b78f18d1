//! Instances sharing a server, values moved between keys, a server stopped
//! with SIGSTOP, servers that cannot be reached, connections cut under the
//! async path, and restores racing drops: each against a real server.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, Page};
use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::PageSpec;
use support::{Server, backup_batch, dbsize, eventually, pages, verify};

/// A short timeout, so that calls to a stopped server give up quickly.
const TIMEOUT: Duration = Duration::from_millis(400);

/// How long the tests wait for calls to a stopped server before calling
/// them stuck: far past [`TIMEOUT`], far short of forever.
const STUCK: Duration = Duration::from_secs(30);

/// The timeout of the test that checks that calls keep it, long enough that
/// the scheduling slack below is small beside it.
const KEPT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a call to a stopped server may take past its timeout (scheduling on
/// a loaded machine): less than a second timeout, so that a call that
/// waited twice (a round trip, then a reconnection) is caught.
const SLACK: Duration = Duration::from_millis(1500);

/// A call made on its own thread against a stopped server.
type Call = Box<dyn FnOnce(&RedisBackend) + Send>;

/// The handles of `live`.
fn handles(live: &[(Handle, PageSpec)]) -> Vec<Handle> {
    live.iter().map(|&(h, _)| h).collect()
}

/// Restores `handle` into a page filled with a sentinel and checks that a
/// failure left it so: the error's kind.
fn failed_restore(b: &RedisBackend, handle: Handle) -> ErrorKind {
    let mut dst = Page::new_boxed();
    dst.0.fill(0xa5);
    let err = BackupBackend::copy_page(b, &mut dst, handle, None).expect_err("the restore should fail");
    assert!(
        dst.0.iter().all(|&x| x == 0xa5),
        "a failed restore wrote to its page: {err}"
    );
    err.kind()
}

#[test]
fn a_named_prefix_is_claimed_and_instances_never_read_each_others_pages() {
    let Some(server) = Server::start("shared prefix", &[]) else {
        return;
    };
    let config = RedisConfig::new(server.url()).with_prefix("app");
    let a = RedisBackend::new(config.clone()).unwrap();
    let err = RedisBackend::new(config.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("attach=on"), "{err}");
    let b = RedisBackend::new(config.clone().with_attach(true)).unwrap();
    assert_ne!(a.instance_id(), b.instance_id());

    // The same slots and generations in both, different bytes.
    let (live_a, _) = backup_batch(&a, 0, 32);
    let (live_b, _) = backup_batch(&b, 1000, 32);
    verify(&a, &live_a);
    verify(&b, &live_b);
    for (&(ha, _), &(hb, _)) in live_a.iter().zip(&live_b) {
        assert_ne!(a.key(ha), b.key(hb));
        assert_eq!(failed_restore(&a, hb), ErrorKind::InvalidHandle);
        assert_eq!(failed_restore(&b, ha), ErrorKind::InvalidHandle);
    }
    // Keys of the default, shared prefix are per instance too.
    let shared = [
        RedisBackend::new(RedisConfig::new(server.url())).unwrap(),
        RedisBackend::new(RedisConfig::new(server.url())).unwrap(),
    ];
    let shared_live: Vec<_> = shared.iter().map(|s| backup_batch(s, 2000, 8).0).collect();

    drop(b);
    verify(&a, &live_a);
    for (s, live) in shared.iter().zip(&shared_live) {
        verify(s, live);
    }
    drop(shared);
    // Only a's pages, its registration and its claim are left.
    assert_eq!(dbsize(&server), 32 + 2);
    drop(a);
    assert_eq!(
        dbsize(&server),
        0,
        "the claim and registrations go with their instances"
    );
    RedisBackend::new(config).expect("a released prefix can be claimed again");
}

#[test]
fn a_value_moved_to_another_pages_key_is_corrupt_with_checksums() {
    let Some(server) = Server::start("moved values", &[]) else {
        return;
    };
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_checksum(true)).unwrap();
    let (live, _) = backup_batch(&b, 0, 3);
    let (from, to) = (b.key(live[1].0).unwrap(), b.key(live[0].0).unwrap());
    assert_eq!(server.cli(&["COPY", &from, &to, "REPLACE"]).trim(), "1");
    let mut dst = Page::new_boxed();
    dst.0.fill(0xa5);
    let err = BackupBackend::copy_page(&b, &mut dst, live[0].0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(
        dst.0.iter().all(|&x| x == 0xa5),
        "another page's bytes reached the page"
    );
    verify(&b, &live[1..]);

    // A value of another instance (same slot and generation) fails too.
    let other = RedisBackend::new(RedisConfig::new(server.url()).with_checksum(true)).unwrap();
    let (theirs, _) = backup_batch(&other, 100, 3);
    let (from, to) = (other.key(theirs[2].0).unwrap(), b.key(live[2].0).unwrap());
    assert_eq!(from.rsplit_once('}').map(|p| p.1), to.rsplit_once('}').map(|p| p.1));
    assert_eq!(server.cli(&["COPY", &from, &to, "REPLACE"]).trim(), "1");
    assert_eq!(failed_restore(&b, live[2].0), ErrorKind::Corrupt);
    verify(&other, &theirs);
}

#[test]
fn a_stopped_server_makes_every_sync_call_fail_in_time_and_leaves_nothing_half_done() {
    let Some(server) = Server::start("stopped server (sync)", &[]) else {
        return;
    };
    let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_timeout(KEPT_TIMEOUT)).unwrap());
    let (live, _) = backup_batch(&b, 0, 40);
    let (kept, dropped) = live.split_at(20);
    let stopped = server.stop();
    let (tx, rx) = channel();
    let mut threads = Vec::new();
    for round in 0..2 {
        let calls: [(&str, Call); 4] = [
            ("copy_pages", {
                let kept = kept.to_vec();
                Box::new(move |b| {
                    let mut dsts = Page::new_boxed_slice(kept.len());
                    dsts.iter_mut().for_each(|d| d.0.fill(0xa5));
                    let mut refs: Vec<&mut Page> = dsts.iter_mut().collect();
                    let err = BackupBackend::copy_pages(b, &handles(&kept), &mut refs, None).unwrap_err();
                    assert_eq!((err.kind(), err.completed), (ErrorKind::Io, 0), "{err}");
                    assert!(dsts.iter().all(|d| d.0.iter().all(|&x| x == 0xa5)));
                })
            }),
            ("copy_page", {
                let handle = kept[0].0;
                Box::new(move |b| assert_eq!(failed_restore(b, handle), ErrorKind::Io))
            }),
            (
                "backup_pages",
                Box::new(move |b| {
                    let (done, err) = backup_batch(b, 100 + round * 20, 20);
                    let err = err.expect("a backup to a stopped server fails");
                    assert_eq!((err.kind(), done.len()), (ErrorKind::Io, 0), "{err}");
                    let report = format!("{err:?}");
                    assert!(report.contains("timeout") || report.contains("timed out"), "{report}");
                }),
            ),
            ("drop_handles", {
                let dropped = handles(&dropped[round as usize * 10..][..10]);
                Box::new(move |b| BackupBackend::drop_handles(b, &dropped).expect("drops are final at once"))
            }),
        ];
        for (name, call) in calls {
            let (b, tx) = (Arc::clone(&b), tx.clone());
            threads.push(std::thread::spawn(move || {
                let start = Instant::now();
                call(&b);
                tx.send((name, start.elapsed())).expect("the test waits");
            }));
        }
    }
    for _ in 0..threads.len() {
        let (name, took) = rx
            .recv_timeout(STUCK)
            .expect("a call to the stopped server did not return while it stayed stopped");
        assert!(
            took < KEPT_TIMEOUT + SLACK,
            "{name} took {took:?} with a timeout of {KEPT_TIMEOUT:?}"
        );
    }
    drop(stopped);
    for t in threads {
        t.join().expect("every call behaved as checked");
    }

    // Nothing half-done: the pages reported live are there, the dropped
    // ones are gone, and so are the failed backups' keys (and the dropped
    // pages' keys, once a call reaches the server again).
    let stats = BackupBackend::stats(&*b);
    assert_eq!(stats.stored_pages, kept.len() as u64);
    for &(h, _) in dropped {
        assert_eq!(failed_restore(&b, h), ErrorKind::InvalidHandle);
    }
    eventually("the dropped pages' and failed backups' keys are deleted", || {
        verify(&b, kept);
        dbsize(&server) == kept.len() as u64 + 1
    });
    assert_eq!(BackupBackend::stats(&*b).unreleased_bytes, 0);
    drop(b);
    assert_eq!(dbsize(&server), 0);
}

#[test]
fn a_drop_while_the_server_is_stopped_never_leaves_a_live_handle_unreadable() {
    let Some(server) = Server::start("stopped server (async)", &[]) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_timeout(TIMEOUT)).unwrap());
    let (live, _) = backup_batch(&b, 0, 40);
    let (kept, dropped) = live.split_at(20);
    let stopped = server.stop();
    let (tx, rx) = channel();
    {
        let (b, dropped, kept) = (Arc::clone(&b), handles(dropped), handles(kept));
        rt.spawn(async move {
            // A drop is final at once: Ok, whatever the server does.
            let b: &dyn AsyncBackupBackend = &*b;
            let drop_result = b.drop_handles(&dropped).await;
            let sentinel: Vec<Box<Page>> = (0..kept.len())
                .map(|_| {
                    let mut p = Page::new_boxed();
                    p.0.fill(0xa5);
                    p
                })
                .collect();
            let (restore, dsts) = b.copy_pages(&kept, sentinel, None).await;
            let untouched = dsts.iter().all(|d| d.0.iter().all(|&x| x == 0xa5));
            let backed_up = b.backup_pages(
                pages(500, 8).into_iter().map(|(_, p)| p).collect(),
                0,
                BackupFlags::NONE,
            );
            let backed_up = backed_up.await;
            let _ = tx.send((
                drop_result.map_err(|e| e.to_string()),
                restore.map_err(|e| (e.kind(), e.completed)),
                untouched,
                (backed_up.handles.len(), backed_up.result.map_err(|e| e.kind())),
            ));
        });
    }
    let (drop_result, restore, untouched, backed_up) = rx
        .recv_timeout(STUCK)
        .expect("async calls to the stopped server did not return while it stayed stopped");
    drop(stopped);
    assert_eq!(drop_result, Ok(()));
    assert_eq!(restore, Err((ErrorKind::Io, 0)));
    assert!(untouched, "a failed async restore wrote to its pages");
    assert_eq!(backed_up, (0, Err(ErrorKind::Io)));

    // Once the server resumes, the late DELs land: every page reported live
    // stays readable, the dropped ones are gone.
    eventually("the dropped pages' keys are deleted", || {
        verify(&b, kept);
        dbsize(&server) == kept.len() as u64 + 1
    });
    for &(h, _) in dropped {
        assert_eq!(failed_restore(&b, h), ErrorKind::InvalidHandle);
    }
    let (more, error) = backup_batch(&b, 600, 20);
    assert!(error.is_none(), "{error:?}");
    verify(&b, kept);
    verify(&b, &more);
}

#[test]
fn opening_an_unreachable_server_within_a_runtime_returns_the_error() {
    let closed = support::free_port();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let urls = [
        format!("redis://127.0.0.1:{closed}"),
        format!("redis://127.0.0.1:{silent_port}"),
    ];
    for multi_thread in [false, true] {
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .unwrap();
        for url in &urls {
            let config = RedisConfig::new(url.as_str()).with_timeout(TIMEOUT);
            let err = rt
                .block_on(async { RedisBackend::new(config) })
                .expect_err("nothing answers there");
            assert_eq!(err.kind(), ErrorKind::Io, "{url}: {err}");
            assert!(err.to_string().contains(url.as_str()), "{err}");
        }
    }
}

#[test]
fn the_first_async_call_after_the_connection_was_cut_succeeds() {
    let Some(mut server) = Server::start("cut connection (async)", &[]) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_timeout(Duration::from_secs(2))).unwrap();
    let a: &dyn AsyncBackupBackend = &b;
    let backup = |from: u64| {
        let batch = pages(from, 8);
        let specs: Vec<PageSpec> = batch.iter().map(|&(s, _)| s).collect();
        let done = rt.block_on(a.backup_pages(batch.into_iter().map(|(_, p)| p).collect(), from, BackupFlags::NONE));
        let kind = done.result.as_ref().err().map(|e| e.error.to_string());
        assert_eq!(kind, None, "the first call after the cut failed");
        done.handles.into_iter().zip(specs).collect::<Vec<_>>()
    };
    let mut live = backup(0);
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    live.extend(backup(100));
    verify(&b, &live);
    // A restart (without persistence: the pages are gone, the instance's
    // new pages are not).
    server.kill();
    server.restart();
    let after = backup(200);
    verify(&b, &after);
}

#[test]
fn restores_racing_drops_give_their_own_bytes_or_invalid_handle() {
    let Some(server) = Server::start("racing restores", &[]) else {
        return;
    };
    for checksum in [false, true] {
        let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_checksum(checksum)).unwrap());
        let (live, _) = backup_batch(&b, 0, 64);
        let live = Arc::new(Mutex::new(live));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|k| {
                let (b, live, stop) = (Arc::clone(&b), Arc::clone(&live), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let (mut ok, mut invalid, mut n) = (0u64, 0u64, k as usize);
                    let mut dst = Page::new_boxed();
                    while !stop.load(Ordering::Relaxed) {
                        let (handle, spec) = {
                            let live = live.lock().unwrap();
                            n = (n + 7) % live.len();
                            live[n]
                        };
                        dst.0.fill(0xa5);
                        match BackupBackend::copy_page(&*b, &mut dst, handle, None) {
                            Ok(()) => {
                                spec.verify(&dst)
                                    .unwrap_or_else(|m| panic!("another page's bytes: {m}"));
                                ok += 1;
                            }
                            Err(e) => {
                                assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
                                assert!(dst.0.iter().all(|&x| x == 0xa5), "a failed restore wrote to its page");
                                invalid += 1;
                            }
                        }
                    }
                    (ok, invalid)
                })
            })
            .collect();
        // Drop pages and back up new ones into the freed slots, at once.
        for round in 0..150 {
            let victim = {
                let live = live.lock().unwrap();
                live[(round * 13) % live.len()].0
            };
            BackupBackend::drop_handle(&*b, victim).unwrap();
            let (fresh, error) = backup_batch(&b, 1000 + round as u64, 1);
            assert!(error.is_none(), "{error:?}");
            let mut live = live.lock().unwrap();
            let at = live.iter().position(|&(h, _)| h == victim).unwrap();
            live[at] = fresh[0];
        }
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut invalid) = (0, 0);
        for r in readers {
            let (o, i) = r.join().expect("no reader saw a wrong page");
            ok += o;
            invalid += i;
        }
        assert!(ok > 0, "checksum {checksum}: no restore succeeded ({invalid} invalid)");
        verify(&b, &live.lock().unwrap());
    }
}
