//! The conformance suite on the file backend: io_uring and `pwritev` paths,
//! each with `writeback` as the caller passes it and forced on for every
//! backup; `O_DIRECT`, with and without blocks kept for reuse; checksums
//! off; sealing on, buffered and `O_DIRECT`.

use pagebackup_core::{BackupBackend, BackupFlags, BatchError, Handle, Page, Result};
use pagebackup_file::{FileBackend, FileConfig, IoMode};
use pagebackup_testkit::{Check, Subject, conformance};
use rstest::rstest;
use rstest_reuse::apply;

/// Passes every backup on with `writeback` set.
#[derive(Debug)]
struct AlwaysWriteback(FileBackend);

impl pagebackup_core::layers::Layer for AlwaysWriteback {
    type Inner = FileBackend;
    fn inner(&self) -> &FileBackend {
        &self.0
    }
    fn backup_page(&self, page: &Page, idx: u64, _flags: BackupFlags) -> Result<Handle> {
        BackupBackend::backup_page(&self.0, page, idx, BackupFlags::WRITEBACK)
    }
    fn backup_pages(&self, pages: &[&Page], idx: u64, _: BackupFlags, out: &mut Vec<Handle>) -> Result<(), BatchError> {
        BackupBackend::backup_pages(&self.0, pages, idx, BackupFlags::WRITEBACK, out)
    }
}

fn subject(io: IoMode, writeback: bool) -> Subject {
    subject_with(io, writeback, FileConfig::new())
}

fn subject_with(io: IoMode, writeback: bool, base: FileConfig) -> Subject {
    let name = format!("file {io:?} writeback {writeback} {base:?}");
    let limited = base.clone();
    let build = move |config: FileConfig| -> Box<dyn BackupBackend> {
        let backend = FileBackend::new(config.with_io(io)).unwrap();
        if writeback {
            Box::new(AlwaysWriteback(backend))
        } else {
            Box::new(backend)
        }
    };
    Subject::new(name, move || build(base.clone()))
        .with_limit(move |bytes| build(limited.clone().with_max_size(bytes)), true)
}

#[apply(conformance)]
fn io_uring(#[case] check: Check) {
    check.run(&subject(IoMode::Uring, false));
}

#[apply(conformance)]
fn io_uring_writeback(#[case] check: Check) {
    check.run(&subject(IoMode::Uring, true));
}

#[apply(conformance)]
fn pwritev(#[case] check: Check) {
    check.run(&subject(IoMode::Sync, false));
}

#[apply(conformance)]
fn pwritev_writeback(#[case] check: Check) {
    check.run(&subject(IoMode::Sync, true));
}

/// Whether the temporary directory takes `O_DIRECT`; says so when not.
fn direct_supported() -> bool {
    match FileBackend::new(FileConfig::new().with_direct(true)) {
        Ok(_) => true,
        Err(e) => {
            println!("SKIP: direct=on in {}: {e}", std::env::temp_dir().display());
            false
        }
    }
}

#[apply(conformance)]
fn direct(#[case] check: Check) {
    if !direct_supported() {
        return;
    }
    check.run(&subject_with(IoMode::Auto, false, FileConfig::new().with_direct(true)));
}

#[apply(conformance)]
fn direct_writeback(#[case] check: Check) {
    if !direct_supported() {
        return;
    }
    check.run(&subject_with(IoMode::Auto, true, FileConfig::new().with_direct(true)));
}

#[apply(conformance)]
fn direct_reuse(#[case] check: Check) {
    if !direct_supported() {
        return;
    }
    let config = FileConfig::new().with_direct(true).with_reuse(64 * 4096);
    check.run(&subject_with(IoMode::Auto, false, config));
}

#[apply(conformance)]
fn no_checksum(#[case] check: Check) {
    check.run(&subject_with(
        IoMode::Auto,
        false,
        FileConfig::new().with_checksum(false),
    ));
}

#[cfg(feature = "seal")]
fn sealed() -> FileConfig {
    FileConfig::new().with_seal(Some(pagebackup_core::raw::seal::SealKeySource::Random))
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn sealed_pwritev(#[case] check: Check) {
    check.run(&subject_with(IoMode::Sync, false, sealed()));
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn sealed_io_uring_writeback(#[case] check: Check) {
    check.run(&subject_with(IoMode::Uring, true, sealed()));
}

#[cfg(feature = "seal")]
#[apply(conformance)]
fn sealed_direct(#[case] check: Check) {
    if !direct_supported() {
        return;
    }
    check.run(&subject_with(IoMode::Auto, false, sealed().with_direct(true)));
}
