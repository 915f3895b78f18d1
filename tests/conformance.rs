//! The conformance suite against every backend this build contains, each
//! built through `pagebackup::open` from its spec.

use pagebackup::open;
use pagebackup_testkit::{Check, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

/// A subject built from `name`'s spec; `limit_key` is the parameter that
/// bounds its space.
fn subject(name: &'static str, limit_key: &'static str, exact: bool) -> Subject {
    Subject::new(format!("open(\"{name}\")"), move || open(name).unwrap()).with_limit(
        move |bytes| {
            let spec = format!("{name}:{limit_key}={bytes}");
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
