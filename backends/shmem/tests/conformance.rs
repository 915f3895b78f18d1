//! The conformance suite on the shmem backend: default settings (dropped
//! memory kept for reuse), memory released at every drop, checksums on,
//! and sealing on.

use pagebackup_shmem::{ShmemBackend, ShmemConfig};
use pagebackup_testkit::{Check, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn subject(name: &str, config: ShmemConfig) -> Subject {
    let limited = config.clone();
    Subject::new(name, move || {
        Box::new(ShmemBackend::with_config(config.clone()).unwrap())
    })
    .with_limit(
        move |bytes| Box::new(ShmemBackend::with_config(limited.clone().with_capacity(bytes)).unwrap()),
        false,
    )
}

#[apply(conformance)]
fn shmem(#[case] check: Check) {
    check.run(&subject("shmem", ShmemConfig::new()));
}

#[apply(conformance)]
fn shmem_releasing(#[case] check: Check) {
    check.run(&subject("shmem reuse=0", ShmemConfig::new().with_reuse(0)));
}

#[apply(conformance)]
fn shmem_small_reserve(#[case] check: Check) {
    let config = ShmemConfig::new().with_reuse(0).with_reserve(8 * 4096);
    check.run(&subject("shmem reuse=0,reserve=32KiB", config));
}

#[apply(conformance)]
fn shmem_checksum(#[case] check: Check) {
    check.run(&subject("shmem checksum=on", ShmemConfig::new().with_checksum(true)));
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn shmem_sealed(#[case] check: Check) {
    use pagebackup_core::raw::seal::SealKeySource;
    check.run(&subject(
        "shmem seal=on",
        ShmemConfig::new().with_seal(Some(SealKeySource::Random)),
    ));
}
