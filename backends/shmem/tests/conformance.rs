//! The conformance suite on the shmem backend.

use pagebackup_shmem::ShmemBackend;
use pagebackup_testkit::{Check, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

#[apply(conformance)]
fn shmem(#[case] check: Check) {
    let subject = Subject::new("shmem", || Box::new(ShmemBackend::new().unwrap()))
        .with_limit(|bytes| Box::new(ShmemBackend::with_capacity(bytes).unwrap()), false);
    check.run(&subject);
}
