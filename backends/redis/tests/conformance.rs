//! The conformance suites, sync and async, against a local server.

mod support;

use std::sync::Arc;

use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, Check, Subject, async_conformance, conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn open(config: RedisConfig) -> RedisBackend {
    RedisBackend::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn sync_subject(url: String, checksum: bool) -> Subject {
    let config = RedisConfig::new(url).with_checksum(checksum);
    let limited = config.clone();
    Subject::new(format!("redis (checksum {checksum})"), move || {
        Box::new(open(config.clone()))
    })
    .with_limit(move |bytes| Box::new(open(limited.clone().with_limit(bytes))), true)
}

#[apply(conformance)]
fn redis(#[case] check: Check) {
    if let Some(url) = support::shared_url("redis conformance") {
        check.run(&sync_subject(url, false));
    }
}

#[apply(conformance)]
fn redis_checksum(#[case] check: Check) {
    if let Some(url) = support::shared_url("redis conformance") {
        check.run(&sync_subject(url, true));
    }
}

#[apply(async_conformance)]
fn redis_async(#[case] check: AsyncCheck) {
    let Some(url) = support::shared_url("redis async conformance") else {
        return;
    };
    let config = RedisConfig::new(url);
    let limited = config.clone();
    let subject = AsyncSubject::new("redis (async)", move || Arc::new(open(config.clone())))
        .with_limit(move |bytes| Arc::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}
