//! `seal=on` against a real server: the conformance suites, and values a
//! second client changes, swaps, replays or takes from another instance,
//! each restoring as `Corrupt`, never as bytes.
#![cfg(feature = "seal")]

mod support;

use std::sync::Arc;

use pagebackup_core::raw::seal::SealKeySource;
use pagebackup_core::{BackupBackend, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, Check, Subject, async_conformance, conformance};
use rstest::rstest;
use rstest_reuse::apply;
use support::{Server, backup_batch, verify};

fn open(config: RedisConfig) -> RedisBackend {
    RedisBackend::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn sealed(url: String) -> RedisConfig {
    RedisConfig::from_params(&[("url", &url), ("seal", "on")]).unwrap()
}

#[apply(conformance)]
fn redis_sealed(#[case] check: Check) {
    let Some(url) = support::shared_url("redis sealed conformance") else {
        return;
    };
    let config = sealed(url);
    let limited = config.clone();
    let subject = Subject::new("redis (sealed)", move || Box::new(open(config.clone())))
        .with_limit(move |bytes| Box::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[apply(async_conformance)]
fn redis_sealed_async(#[case] check: AsyncCheck) {
    let Some(url) = support::shared_url("redis sealed async conformance") else {
        return;
    };
    let config = sealed(url);
    let limited = config.clone();
    let subject = AsyncSubject::new("redis (sealed, async)", move || Arc::new(open(config.clone())))
        .with_limit(move |bytes| Arc::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

/// Restores `handle`, which must fail as `Corrupt` by authentication,
/// leaving its page untouched.
fn assert_unauthentic(b: &RedisBackend, handle: Handle) {
    let mut dst = Page::new_boxed();
    dst.0.fill(0xa5);
    let err = BackupBackend::copy_page(b, &mut dst, handle, None).expect_err("the restore should fail");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("fails authentication"), "{err}");
    assert!(
        dst.0.iter().all(|&x| x == 0xa5),
        "a refused value reached the page: {err}"
    );
}

/// The slot and generation of a key (`PREFIX:{IID:GROUP}:SLOT:GENERATION`).
fn slot_and_generation(key: &str) -> (u32, u32) {
    let (_, tail) = key.rsplit_once('}').expect("a hash tag");
    let mut parts = tail.trim_start_matches(':').split(':').map(|p| p.parse().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn sealed_values_changed_or_swapped_by_another_client_are_corrupt() {
    let Some(server) = Server::start("sealed tamper and swap", &[]) else {
        return;
    };
    let b = open(sealed(server.url()));
    let (live, _) = backup_batch(&b, 0, 5);
    let key = |i: usize| b.key(live[i].0).unwrap();
    assert_eq!(
        server.cli(&["STRLEN", &key(0)]).trim(),
        (PAGE_SIZE + 16).to_string(),
        "a sealed value is the page and its tag"
    );
    // One bit of the page, one of the tag.
    server.cli(&["SETRANGE", &key(0), "100", "x"]);
    server.cli(&["SETRANGE", &key(1), &(PAGE_SIZE + 3).to_string(), "x"]);
    // Two values swapped.
    server.cli(&["COPY", &key(2), "swap"]);
    assert_eq!(server.cli(&["COPY", &key(3), &key(2), "REPLACE"]).trim(), "1");
    assert_eq!(server.cli(&["COPY", "swap", &key(3), "REPLACE"]).trim(), "1");
    for (handle, _) in &live[..4] {
        assert_unauthentic(&b, *handle);
    }
    verify(&b, &live[4..]);
}

#[test]
fn an_older_value_of_a_reused_slot_replayed_is_corrupt() {
    let Some(server) = Server::start("sealed replay", &[]) else {
        return;
    };
    let b = open(sealed(server.url()));
    let (first, _) = backup_batch(&b, 0, 1);
    let old = b.key(first[0].0).unwrap();
    server.cli(&["COPY", &old, "stash"]);
    BackupBackend::drop_handles(&b, &[first[0].0]).unwrap();
    let (second, _) = backup_batch(&b, 1, 1);
    let new = b.key(second[0].0).unwrap();
    let ((old_slot, old_generation), (new_slot, new_generation)) =
        (slot_and_generation(&old), slot_and_generation(&new));
    assert_eq!(old_slot, new_slot, "the slot is reused");
    assert!(new_generation > old_generation);
    assert_eq!(server.cli(&["COPY", "stash", &new, "REPLACE"]).trim(), "1");
    assert_unauthentic(&b, second[0].0);
}

#[test]
fn a_value_of_another_instance_under_the_same_key_is_corrupt() {
    let Some(server) = Server::start("sealed cross-instance", &[]) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("pagebackup-redis-seal-key-{}", std::process::id()));
    std::fs::write(&dir, "7f".repeat(32)).unwrap();
    let config = RedisConfig::new(server.url()).with_seal(Some(SealKeySource::File(dir.clone())));
    let (a, b) = (open(config.clone()), open(config));
    std::fs::remove_file(&dir).unwrap();
    let (ours, _) = backup_batch(&a, 0, 2);
    let (theirs, _) = backup_batch(&b, 100, 2);
    let (from, to) = (b.key(theirs[1].0).unwrap(), a.key(ours[1].0).unwrap());
    assert_eq!(
        slot_and_generation(&from),
        slot_and_generation(&to),
        "the same slot and generation"
    );
    assert_eq!(server.cli(&["COPY", &from, &to, "REPLACE"]).trim(), "1");
    assert_unauthentic(&a, ours[1].0);
    verify(&a, &ours[..1]);
    verify(&b, &theirs);
}

#[test]
fn a_key_that_cannot_be_loaded_is_a_config_error_at_open() {
    let Some(server) = Server::start("sealed bad key", &[]) else {
        return;
    };
    let path = std::env::temp_dir().join(format!("pagebackup-redis-short-key-{}", std::process::id()));
    std::fs::write(&path, "abcd").unwrap();
    let config = RedisConfig::from_params(&[
        ("url", &server.url()),
        ("seal", "on"),
        ("seal_key", &format!("file:{}", path.display())),
    ])
    .unwrap();
    let err = RedisBackend::new(config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("does not hold a key"), "{err}");
    assert!(!err.to_string().contains("abcd"), "the key's text appears: {err}");
    std::fs::remove_file(&path).unwrap();
}
