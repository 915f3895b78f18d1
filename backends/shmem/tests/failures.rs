//! The store's failure rules over the memfd device, with writes, reads and
//! releases failing below it.

use pagebackup_core::raw::{SlotStore, StoreConfig};
use pagebackup_shmem::raw::MemfdDevice;
use pagebackup_testkit::{FailingDevice, check_failure_rules};

#[test]
fn failures_below_the_memfd_lose_nothing_and_leak_nothing() {
    check_failure_rules(&|plan| {
        let device = FailingDevice::new(MemfdDevice::new(1024).unwrap(), plan);
        Box::new(SlotStore::new(StoreConfig::new("shmem", 1024), vec![device]))
    });
}

#[test]
fn failures_with_checksums_on() {
    check_failure_rules(&|plan| {
        let device = FailingDevice::new(MemfdDevice::new(1024).unwrap(), plan);
        Box::new(SlotStore::new(
            StoreConfig::new("shmem", 1024).with_checksum(true),
            vec![device],
        ))
    });
}
