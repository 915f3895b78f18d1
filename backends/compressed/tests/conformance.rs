//! The conformance suite on the compressed backend: lz4, zstd, zstd with a
//! dictionary, checksums, the highest and lowest huge thresholds, sealing
//! (compressed and raw objects), each also with a memory limit.

use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig, Dictionary, train_dictionary};
use pagebackup_core::{BackupBackend, Page};
use pagebackup_testkit::{Check, PageSpec, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn subject(name: &str, config: impl Fn() -> CompressedConfig + Send + Sync + Clone + 'static) -> Subject {
    let limited = config.clone();
    let build = |c: CompressedConfig| -> Box<dyn BackupBackend> { Box::new(CompressedBackend::new(c).unwrap()) };
    Subject::new(name, move || build(config())).with_limit(move |bytes| build(limited().with_limit(bytes)), false)
}

fn dictionary() -> Dictionary {
    let samples: Vec<Box<Page>> = (0..300).map(|i| PageSpec::mixed(0xd1c7, i).page()).collect();
    let refs: Vec<&Page> = samples.iter().map(|p| &**p).collect();
    train_dictionary(&refs, 16 << 10).unwrap()
}

#[apply(conformance)]
fn lz4(#[case] check: Check) {
    check.run(&subject("compressed lz4", || CompressedConfig::new(Algorithm::Lz4)));
}

#[apply(conformance)]
fn zstd_level_3(#[case] check: Check) {
    check.run(&subject("compressed zstd-3", || {
        CompressedConfig::new(Algorithm::Zstd { level: 3 })
    }));
}

#[apply(conformance)]
fn zstd_with_dictionary(#[case] check: Check) {
    let dict = dictionary();
    check.run(&subject("compressed zstd-1 + dictionary", move || {
        CompressedConfig::new(Algorithm::Zstd { level: 1 }).with_dictionary(dict.clone())
    }));
}

#[apply(conformance)]
fn lz4_with_checksums(#[case] check: Check) {
    check.run(&subject("compressed lz4 + checksums", || {
        CompressedConfig::new(Algorithm::Lz4).with_checksum(true)
    }));
}

#[apply(conformance)]
fn zstd_with_checksums_and_the_highest_threshold(#[case] check: Check) {
    check.run(&subject("compressed zstd-1 + checksums, huge=4095", || {
        CompressedConfig::new(Algorithm::Zstd { level: 1 })
            .with_checksum(true)
            .with_huge_threshold(4095)
    }));
}

#[apply(conformance)]
fn lz4_with_the_lowest_threshold(#[case] check: Check) {
    check.run(&subject("compressed lz4, huge=64", || {
        CompressedConfig::new(Algorithm::Lz4).with_huge_threshold(64)
    }));
}

#[cfg(feature = "seal")]
fn sealed(config: CompressedConfig) -> CompressedConfig {
    config.with_seal(Some(pagebackup_core::raw::seal::SealKeySource::Random))
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn lz4_sealed(#[case] check: Check) {
    check.run(&subject("compressed lz4, seal=on", || {
        sealed(CompressedConfig::new(Algorithm::Lz4))
    }));
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn zstd_sealed_with_the_lowest_threshold(#[case] check: Check) {
    check.run(&subject("compressed zstd-1, seal=on, huge=64", || {
        sealed(CompressedConfig::new(Algorithm::Zstd { level: 1 }).with_huge_threshold(64))
    }));
}
