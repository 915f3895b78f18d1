//! What the backend does when the server runs out of memory, may evict,
//! hands back values that are not pages, asks for a password, drops the
//! connection or dies in the middle of a batch.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pagebackup_core::{BackupBackend, ErrorKind, Handle, Page};
use pagebackup_redis::{RedisBackend, RedisConfig};
use support::{Server, backup_batch, dbsize, eventually, verify};

#[test]
fn out_of_memory_is_no_space_and_leaves_nothing_behind() {
    let Some(server) = Server::start("out of memory", &["--maxmemory", "4mb"]) else {
        return;
    };
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let avail = BackupBackend::bytes_avail(&b);
    assert!(avail > 0 && avail < 4 << 20, "bytes_avail {avail} of a 4 MiB server");
    let mut live = Vec::new();
    let error = loop {
        let (done, error) = backup_batch(&b, live.len() as u64, 64);
        live.extend(done);
        if let Some(e) = error {
            break e;
        }
        assert!(live.len() < 4096, "no NoSpace from a 4 MiB server");
    };
    assert_eq!(error.kind(), ErrorKind::NoSpace, "{error}");
    assert!(error.error.to_string().contains("out of memory"), "{error:?}");
    assert!(live.len() > 64, "only {} pages fit in 4 MiB", live.len());
    let stats = BackupBackend::stats(&b);
    assert_eq!(stats.stored_pages, live.len() as u64);
    assert_eq!(stats.failed_backups, 1);
    // The pages and the instance's registration.
    eventually("the failed batch's keys are deleted", || {
        dbsize(&server) == live.len() as u64 + 1
    });
    verify(&b, &live);

    // Dropping pages makes room again.
    let freed: Vec<Handle> = live.drain(..128).map(|(h, _)| h).collect();
    BackupBackend::drop_handles(&b, &freed).unwrap();
    let (done, error) = backup_batch(&b, 10_000, 64);
    assert!(error.is_none(), "{error:?}");
    live.extend(done);
    verify(&b, &live);
    drop(b);
    assert_eq!(dbsize(&server), 0, "dropping the backend deletes its keys");
}

#[test]
fn an_evicting_server_is_refused_unless_allowed() {
    let Some(server) = Server::start(
        "evicting server",
        &["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"],
    ) else {
        return;
    };
    let err = RedisBackend::new(RedisConfig::new(server.url())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("allkeys-lru") && message.contains("allow_eviction=on"),
        "{message}"
    );

    // Accepted: a missing key is Corrupt, never another page.
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_allow_eviction(true)).unwrap();
    let (live, error) = backup_batch(&b, 0, 4);
    assert!(error.is_none());
    let key = b.key(live[1].0).expect("a live handle has a key");
    assert_eq!(server.cli(&["DEL", &key]).trim(), "1");
    let mut dst = Page::new_boxed();
    let err = BackupBackend::copy_page(&b, &mut dst, live[1].0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("missing on the server"), "{err}");
    verify(&b, &live[2..]);
    let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
    BackupBackend::drop_handles(&b, &handles).unwrap();

    server.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    RedisBackend::new(RedisConfig::new(server.url())).expect("volatile policies never evict keys without a TTL");
}

#[test]
fn values_that_are_not_pages_are_corrupt() {
    let Some(server) = Server::start("corrupt values", &[]) else {
        return;
    };
    for checksum in [false, true] {
        let b = RedisBackend::new(RedisConfig::new(server.url()).with_checksum(checksum)).unwrap();
        let (live, _) = backup_batch(&b, 0, 3);
        let short = b.key(live[0].0).unwrap();
        server.cli(&["SET", &short, "not a page"]);
        let changed = b.key(live[1].0).unwrap();
        server.cli(&["SETRANGE", &changed, "100", "x"]);
        let mut dst = Page::new_boxed();
        dst.0.fill(0x5a);
        let err = BackupBackend::copy_page(&b, &mut dst, live[0].0, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("10 bytes"), "{err}");
        let changed_result = BackupBackend::copy_page(&b, &mut dst, live[1].0, None);
        if checksum {
            let err = changed_result.unwrap_err();
            assert!(err.to_string().contains("checksum mismatch"), "{err}");
        } else {
            changed_result.expect("without checksums a changed value of the right length is not detected");
        }
        let mut again = Page::new_boxed();
        again.0.fill(0x5a);
        BackupBackend::copy_page(&b, &mut again, live[0].0, None).unwrap_err();
        assert!(
            again.0.iter().all(|&x| x == 0x5a),
            "a corrupt value never reaches the page"
        );
        verify(&b, &live[2..]);
        let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
        BackupBackend::drop_handles(&b, &handles).unwrap();
    }
}

#[test]
fn passwords_stay_out_of_debug_and_errors() {
    let Some(server) = Server::start("passwords", &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port);
    let b = RedisBackend::new(RedisConfig::new(&url)).unwrap();
    let shown = format!("{b:?} {:?}", b.config());
    assert!(!shown.contains("s3cret-pw") && shown.contains(":***@"), "{shown}");
    let (live, error) = backup_batch(&b, 0, 2);
    assert!(error.is_none());
    verify(&b, &live);

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}", server.port);
    let err = RedisBackend::new(RedisConfig::new(&wrong).with_timeout(Duration::from_secs(1))).unwrap_err();
    let message = format!("{err} {err:?}");
    assert_eq!(err.kind(), ErrorKind::Io, "{message}");
    assert!(!message.contains("wrong-pw"), "{message}");
}

#[test]
fn cut_idle_connections_are_replaced_and_lose_nothing() {
    let Some(server) = Server::start("lost connection", &[]) else {
        return;
    };
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let (mut live, _) = backup_batch(&b, 0, 64);
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    let mut errors = 0;
    for round in 1..20 {
        match backup_batch(&b, round * 64, 64) {
            (done, None) => live.extend(done),
            (done, Some(e)) => {
                assert_eq!(e.kind(), ErrorKind::Io, "{e}");
                live.extend(done);
                errors += 1;
            }
        }
    }
    // Sync calls resend a pipeline whose idle pooled connection was cut.
    assert_eq!(errors, 0, "batches failed after the idle connections were cut");
    verify(&b, &live);
    assert!(b.redis_stats().round_trips >= 20);
}

#[test]
fn a_server_killed_mid_batch_gives_io_errors_and_its_pages_after_restart() {
    let Some(mut server) = Server::start("killed server", &["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let b = Arc::new(RedisBackend::new(RedisConfig::new(server.url()).with_timeout(Duration::from_secs(1))).unwrap());
    let (mut live, _) = backup_batch(&b, 0, 64);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut live = Vec::new();
            let mut errors = Vec::new();
            let mut next = 1_000;
            while !stop.load(Ordering::Relaxed) {
                let (done, error) = backup_batch(&b, next, 64);
                next += 64;
                live.extend(done);
                errors.extend(error.map(|e| e.kind()));
            }
            (live, errors)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    let mut dst = Page::new_boxed();
    let err = BackupBackend::copy_page(&*b, &mut dst, live[0].0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    server.restart();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (written, errors) = writer.join().expect("no panic in the writer");
    assert!(!errors.is_empty(), "no batch failed while the server was down");
    assert!(errors.iter().all(|&k| k == ErrorKind::Io), "{errors:?}");
    live.extend(written);

    // Reconnected: every page backed up before, during and after the crash is there.
    eventually("the backend reconnects", || backup_batch(&b, 99_000, 1).1.is_none());
    verify(&b, &live);
    assert_eq!(BackupBackend::stats(&*b).stored_pages, live.len() as u64 + 1);
}

#[test]
fn an_unreachable_server_is_an_io_error_whose_chain_holds_the_client_error() {
    // A port nothing listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let err = RedisBackend::new(RedisConfig::new(&url).with_timeout(Duration::from_secs(1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    let chain: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| e.source()).collect();
    let io = chain
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no io::Error in the chain of {err:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused, "{err:?}");
    assert!(
        io.get_ref()
            .is_some_and(|e| e.downcast_ref::<redis::RedisError>().is_some()),
        "the client's own error is kept: {io:?}"
    );
    assert!(chain[0].to_string().contains(&url), "{}", chain[0]);
}
