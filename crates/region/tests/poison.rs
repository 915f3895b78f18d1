//! A backend that fails restores: the documented error from `prefault`,
//! the page intact once the backend heals, and `SIGBUS` for an access.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagebackup_core::raw::{SlotStore, StoreConfig};
use pagebackup_core::{BackupBackend, ErrorKind, PAGE_SIZE};
use pagebackup_region::{OffloadRegion, RegionConfig, RegionError};
use pagebackup_shmem::raw::MemfdDevice;
use pagebackup_testkit::{DeviceOp, FailingDevice, FaultPlan};
use support::{MODES, region};

const BUDGET: usize = 64 * PAGE_SIZE;
const EIO: i32 = 5;

fn failing_backend(plan: &Arc<FaultPlan>) -> Box<dyn BackupBackend> {
    let device = FailingDevice::new(MemfdDevice::new(4096).unwrap(), Arc::clone(plan));
    Box::new(SlotStore::new(StoreConfig::new("shmem", 4096), vec![device]))
}

/// Writes a word naming each page; page 0 ends up evicted.
fn fill(r: &OffloadRegion) {
    for p in 0..r.len() / PAGE_SIZE {
        r.words()[p * PAGE_SIZE / 8].store(p as u64 + 1, Ordering::Relaxed);
    }
}

#[test]
fn a_failing_restore_is_an_io_error_from_prefault_and_the_page_survives_it() {
    for mode in MODES {
        let plan = FaultPlan::new();
        let config = RegionConfig::new().with_mode(mode);
        let Some(r) = region(8 * BUDGET, BUDGET, failing_backend(&plan), config) else {
            return;
        };
        fill(&r);
        plan.fail(DeviceOp::Read, 0, EIO, true);
        let err = r.prefault(0..PAGE_SIZE).unwrap_err();
        let RegionError::Backend(e) = &err else {
            panic!("{mode}: {err}")
        };
        assert_eq!(e.kind(), ErrorKind::Io, "{mode}: {err}");
        assert!(err.to_string().contains("shmem"), "{mode}: {err}");
        // Poisoned, not zero: the failed page is retried once the backend heals.
        plan.heal();
        r.prefault(0..PAGE_SIZE).unwrap();
        assert_eq!(r.words()[0].load(Ordering::Relaxed), 1, "{mode}");
        assert_eq!(r.stats().restore_errors, 1, "{mode}");
    }
}

#[test]
fn an_access_to_a_page_that_cannot_be_restored_raises_sigbus() {
    for mode in MODES {
        // SAFETY: the child makes its own region, touches it and leaves with _exit.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let plan = FaultPlan::new();
                let config = RegionConfig::new().with_mode(mode);
                let code = match OffloadRegion::with_config(8 * BUDGET, BUDGET, failing_backend(&plan), config) {
                    Ok(r) => {
                        fill(&r);
                        plan.fail(DeviceOp::Read, 0, EIO, true);
                        // Must not return: the page is not its own to read.
                        let v = r.words()[0].load(Ordering::Relaxed);
                        if v == 0 { 3 } else { 4 }
                    }
                    Err(_) => 2,
                };
                // SAFETY: leaves the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 2 {
                    println!("SKIP: userfaultfd unavailable in the child");
                    return;
                }
                assert!(
                    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
                    "{mode}: the child ended with status {status:#x}, not SIGBUS (exit 3: read zeros, 4: read data)"
                );
            }
        }
    }
}
