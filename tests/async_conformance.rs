//! The async conformance suite against every backend this build contains,
//! each built through `pagebackup::open_async` from its spec.
#![cfg(feature = "async")]

mod support;

use pagebackup::open_async;
use pagebackup_testkit::{AsyncCheck, AsyncSubject, async_conformance};
use rstest::rstest;
use rstest_reuse::apply;

/// A subject built from `spec`; `limit_key` is the parameter that bounds
/// its space.
fn subject(spec: &'static str, limit_key: &'static str, exact: bool) -> AsyncSubject {
    let separator = if spec.contains(':') { ',' } else { ':' };
    AsyncSubject::new(format!("open_async(\"{spec}\")"), move || open_async(spec).unwrap()).with_limit(
        move |bytes| {
            let spec = format!("{spec}{separator}{limit_key}={bytes}");
            open_async(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
        },
        exact,
    )
}

#[apply(async_conformance)]
fn memory_spec(#[case] check: AsyncCheck) {
    check.run(&subject("memory", "limit", true));
}

#[cfg(feature = "shmem")]
#[apply(async_conformance)]
fn shmem_spec(#[case] check: AsyncCheck) {
    check.run(&subject("shmem", "capacity", false));
}

#[cfg(feature = "compressed")]
#[apply(async_conformance)]
fn compressed_spec(#[case] check: AsyncCheck) {
    check.run(&subject("compressed", "limit", false));
}

#[cfg(feature = "compressed")]
#[apply(async_conformance)]
fn compressed_zstd_spec(#[case] check: AsyncCheck) {
    check.run(&subject("compressed:algo=zstd,level=3,checksum=on", "limit", false));
}

#[cfg(feature = "file")]
#[apply(async_conformance)]
fn file_spec(#[case] check: AsyncCheck) {
    check.run(&subject("file", "max_size", true));
}

#[cfg(feature = "file")]
#[apply(async_conformance)]
fn file_sync_spec(#[case] check: AsyncCheck) {
    check.run(&subject("file:io=sync", "max_size", true));
}

/// Sealed, the file comes through the adapter over the sync backend.
#[cfg(all(feature = "file", feature = "seal"))]
#[apply(async_conformance)]
fn file_sealed_spec(#[case] check: AsyncCheck) {
    check.run(&subject("file:seal=on", "max_size", true));
}

#[cfg(feature = "redis")]
#[apply(async_conformance)]
fn redis_native(#[case] check: AsyncCheck) {
    if let Some(spec) = support::redis_spec("") {
        let subject = subject(spec, "limit", true);
        assert_eq!(subject.create().name(), "redis");
        check.run(&subject);
    }
}

/// A tiered stack through the async API (the adapter over it), with a
/// budget small enough that its policy thread moves pages during the checks;
/// the limited one is memory over memory with no policy thread, as in the
/// sync suite.
#[cfg(all(feature = "tiered", feature = "compressed", feature = "file"))]
#[apply(async_conformance)]
fn tiered_spec(#[case] check: AsyncCheck) {
    let spec = "tiered:tiers=[compressed:algo=lz4 | file],budget=64KiB";
    let subject = AsyncSubject::new(format!("open_async(\"{spec}\")"), move || open_async(spec).unwrap()).with_limit(
        |bytes| {
            let (upper, lower) = (bytes / 4, bytes - bytes / 4);
            let spec = format!("tiered:tiers=[memory:limit={upper} | memory:limit={lower}],budget={upper},auto=off");
            open_async(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
        },
        false,
    );
    check.run(&subject);
}
