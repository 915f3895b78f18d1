//! The conformance suite against every backend this build contains, each
//! built through `pagebackup::open` from its spec.

mod support;

use pagebackup::open;
use pagebackup_testkit::{Check, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

/// A subject built from `spec`; `limit_key` is the parameter that bounds
/// its space.
fn subject(spec: &'static str, limit_key: &'static str, exact: bool) -> Subject {
    let separator = if spec.contains(':') { ',' } else { ':' };
    Subject::new(format!("open(\"{spec}\")"), move || open(spec).unwrap()).with_limit(
        move |bytes| {
            let spec = format!("{spec}{separator}{limit_key}={bytes}");
            open(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
        },
        exact,
    )
}

#[apply(conformance)]
fn memory_spec(#[case] check: Check) {
    check.run(&subject("memory", "limit", true));
}

#[cfg(feature = "shmem")]
#[apply(conformance)]
fn shmem_spec(#[case] check: Check) {
    check.run(&subject("shmem", "capacity", false));
}

#[cfg(feature = "compressed")]
#[apply(conformance)]
fn compressed_spec(#[case] check: Check) {
    check.run(&subject("compressed", "limit", false));
}

#[cfg(feature = "compressed")]
#[apply(conformance)]
fn compressed_zstd_spec(#[case] check: Check) {
    check.run(&subject("compressed:algo=zstd,level=3,checksum=on", "limit", false));
}

#[cfg(feature = "file")]
#[apply(conformance)]
fn file_spec(#[case] check: Check) {
    check.run(&subject("file", "max_size", true));
}

#[cfg(feature = "file")]
#[apply(conformance)]
fn file_sync_spec(#[case] check: Check) {
    check.run(&subject("file:io=sync", "max_size", true));
}

#[cfg(feature = "redis")]
#[apply(conformance)]
fn redis_spec_checked(#[case] check: Check) {
    if let Some(spec) = support::redis_spec(",checksum=on,timeout=5s") {
        check.run(&subject(spec, "limit", true));
    }
}

/// A tiered stack from its nested spec, with a budget small enough that
/// pages move during the checks; the limited one splits the limit between
/// its tiers and runs no policy thread (a move in flight holds a page in
/// both tiers, so the exact point where space runs out would move).
#[cfg(all(feature = "tiered", feature = "compressed", feature = "file"))]
#[apply(conformance)]
fn tiered_spec(#[case] check: Check) {
    let spec = "tiered:tiers=[compressed:algo=lz4 | file],budget=64KiB";
    let subject = Subject::new(format!("open(\"{spec}\")"), move || open(spec).unwrap()).with_limit(
        |bytes| {
            let (upper, lower) = (bytes / 4, bytes - bytes / 4);
            let spec = format!("tiered:tiers=[memory:limit={upper} | memory:limit={lower}],budget={upper},auto=off");
            open(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
        },
        false,
    );
    check.run(&subject);
}

#[cfg(all(feature = "file", feature = "seal"))]
#[apply(conformance)]
fn file_sealed_spec(#[case] check: Check) {
    check.run(&subject("file:seal=on", "max_size", true));
}

#[cfg(all(feature = "shmem", feature = "seal"))]
#[apply(conformance)]
fn shmem_sealed_spec(#[case] check: Check) {
    check.run(&subject("shmem:seal=on", "capacity", false));
}

/// A tiered stack whose cold tier is a sealed file: sealing comes with the
/// tier's own spec.
#[cfg(all(feature = "tiered", feature = "compressed", feature = "file", feature = "seal"))]
#[apply(conformance)]
fn tiered_sealed_spec(#[case] check: Check) {
    let spec = "tiered:tiers=[compressed:algo=lz4 | file:seal=on],budget=64KiB";
    check.run(&Subject::new(format!("open(\"{spec}\")"), move || open(spec).unwrap()));
}
