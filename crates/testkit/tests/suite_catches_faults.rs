//! The conformance suite must fail on backends that break the contract:
//! each faulty backend below breaks one semantic, and the check for that
//! semantic has to panic on it.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, Handle, Interrupt, MemoryBackend, Operation, Origin, Page,
    Result,
};
use pagebackup_testkit::{Capabilities, Check, Subject};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Restores flip one bit.
    FlipsABit,
    /// Restores ignore the interrupt.
    IgnoresInterrupt,
    /// Drops return Ok but keep the page readable.
    DropDoesNothing,
    /// The limit is ignored.
    Unlimited,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryBackend,
    fault: Fault,
}

impl BackupBackend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        self.inner.backup_page(page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        let intr = if self.fault == Fault::IgnoresInterrupt {
            None
        } else {
            intr
        };
        self.inner.copy_page(dst, handle, intr)?;
        if self.fault == Fault::FlipsABit {
            dst.0[100] ^= 4;
        }
        Ok(())
    }
    fn drop_handle(&self, handle: Handle) -> Result<()> {
        if self.fault == Fault::DropDoesNothing {
            return Ok(());
        }
        self.inner.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }
    fn stats(&self) -> BackupStats {
        self.inner.stats()
    }
}

/// Stores pages by `idx` and returns `idx + 1` as the handle, as a naive
/// port of the kernel's shmem backup would.
#[derive(Debug, Default)]
struct KeyedByIdx(Mutex<HashMap<u64, Box<Page>>>);

impl BackupBackend for KeyedByIdx {
    fn name(&self) -> &'static str {
        "keyed-by-idx"
    }
    fn backup_page(&self, page: &Page, idx: u64, _flags: BackupFlags) -> Result<Handle> {
        let idx = idx % (1 << 40);
        self.0.lock().unwrap().insert(idx, Box::new(page.clone()));
        Ok(Handle::from_raw(idx + 1).unwrap())
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, _intr: Option<&Interrupt>) -> Result<()> {
        let map = self.0.lock().unwrap();
        let page = map.get(&(handle.to_raw() - 1)).ok_or(BackupError::InvalidHandle {
            origin: Origin::new("keyed-by-idx", Operation::CopyPage),
            handle,
        })?;
        dst.clone_from(page);
        Ok(())
    }
    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.0.lock().unwrap().remove(&(handle.to_raw() - 1));
        Ok(())
    }
    fn bytes_avail(&self) -> u64 {
        u64::MAX
    }
    fn stats(&self) -> BackupStats {
        let mut s = BackupStats::default();
        s.stored_pages = self.0.lock().unwrap().len() as u64;
        s
    }
}

fn faulty(fault: Fault) -> Subject {
    Subject::new(format!("{fault:?}"), move || {
        Box::new(Faulty {
            inner: MemoryBackend::new(),
            fault,
        })
    })
    .with_limit(
        move |bytes| {
            let inner = if fault == Fault::Unlimited {
                MemoryBackend::new()
            } else {
                MemoryBackend::with_limit(bytes)
            };
            Box::new(Faulty { inner, fault })
        },
        true,
    )
}

fn fails(check: Check, subject: &Subject) -> bool {
    catch_unwind(AssertUnwindSafe(|| check.run(subject))).is_err()
}

#[test]
fn each_fault_is_caught_by_its_check() {
    let cases = [
        (Fault::FlipsABit, Check::ExactBytes),
        (Fault::IgnoresInterrupt, Check::InterruptAndResume),
        (Fault::DropDoesNothing, Check::DroppedHandlesInvalid),
        (Fault::DropDoesNothing, Check::DropReleasesStorage),
        (Fault::Unlimited, Check::NoSpace),
    ];
    for (fault, check) in cases {
        assert!(
            fails(check, &faulty(fault)),
            "{check:?} passed a backend that {fault:?}"
        );
    }
    // The same checks pass on the healthy backend.
    let healthy = Subject::new("memory", || Box::new(MemoryBackend::new()))
        .with_limit(|bytes| Box::new(MemoryBackend::with_limit(bytes)), true);
    for (_, check) in cases {
        check.run(&healthy);
    }
}

#[test]
fn a_backend_keyed_by_idx_is_caught() {
    let subject = Subject::new("keyed-by-idx", || Box::new(KeyedByIdx::default()));
    for check in [
        Check::IdxNeverAliases,
        Check::ForgedHandlesInvalid,
        Check::ForeignHandlesInvalid,
        Check::DroppedHandlesInvalid,
    ] {
        assert!(fails(check, &subject), "{check:?} passed a backend keyed by idx");
    }
    assert_eq!(subject.capabilities(), Capabilities::NONE);
}
