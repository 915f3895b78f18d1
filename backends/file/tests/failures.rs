//! The store's failure rules over the file device, on every I/O path, with
//! writes, reads and releases failing below it.

use pagebackup_core::raw::{SlotStore, StoreConfig};
use pagebackup_file::raw::FileDevice;
use pagebackup_file::{FileConfig, IoMode};
use pagebackup_testkit::{FailingDevice, check_failure_rules};

fn check(config: FileConfig) {
    check_failure_rules(&|plan| {
        let device = FailingDevice::new(FileDevice::open(&config).unwrap(), plan);
        Box::new(SlotStore::new(
            StoreConfig::new("file", 4096).with_checksum(true),
            vec![device],
        ))
    });
}

#[test]
fn failures_below_the_file_with_pwritev() {
    check(FileConfig::new().with_io(IoMode::Sync));
}

#[test]
fn failures_below_the_file_with_io_uring() {
    check(FileConfig::new().with_io(IoMode::Uring));
}

#[test]
fn failures_below_the_file_with_o_direct() {
    check(FileConfig::new().with_direct(true));
}
