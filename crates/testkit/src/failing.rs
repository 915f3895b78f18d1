//! [`FailingDevice`]: a slot store device that fails chosen writes, reads
//! or releases, below a backend, to check what the backend does then.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagebackup_core::raw::{self, Device, ReadRun, RunError, WriteRun};

/// A device operation a [`FaultPlan`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceOp {
    /// [`Device::write`], counted per run.
    Write,
    /// [`Device::read`], counted per run.
    Read,
    /// [`Device::release`], counted per call.
    Release,
}

/// When each operation of a [`FailingDevice`] fails; shared with the test.
#[derive(Debug, Default)]
pub struct FaultPlan {
    triggers: [Trigger; 3],
}

#[derive(Debug, Default)]
struct Trigger {
    /// Runs (or calls) to let through before failing; `u64::MAX` when disarmed.
    countdown: AtomicU64,
    /// Keep failing once failed (a file system that cannot punch holes).
    persist: AtomicBool,
    failing: AtomicBool,
    errno: AtomicU64,
    failures: AtomicU64,
}

impl FaultPlan {
    /// A plan that fails nothing.
    pub fn new() -> Arc<Self> {
        let plan = FaultPlan::default();
        for t in &plan.triggers {
            t.countdown.store(u64::MAX, Ordering::Relaxed);
        }
        Arc::new(plan)
    }

    fn trigger(&self, op: DeviceOp) -> &Trigger {
        &self.triggers[op as usize]
    }

    /// Fails `op` after letting `after` more runs (or release calls)
    /// through, with `errno`; once, or from then on if `persist`.
    pub fn fail(&self, op: DeviceOp, after: u64, errno: i32, persist: bool) {
        let t = self.trigger(op);
        t.errno.store(errno as u64, Ordering::Relaxed);
        t.persist.store(persist, Ordering::Relaxed);
        t.failing.store(false, Ordering::Relaxed);
        t.countdown.store(after, Ordering::Relaxed);
    }

    /// Stops every failure.
    pub fn heal(&self) {
        for t in &self.triggers {
            t.countdown.store(u64::MAX, Ordering::Relaxed);
            t.failing.store(false, Ordering::Relaxed);
        }
    }

    /// How many times `op` failed.
    pub fn failures(&self, op: DeviceOp) -> u64 {
        self.trigger(op).failures.load(Ordering::Relaxed)
    }

    /// Whether the next unit of `op` fails (and counts it).
    fn fails_next(&self, op: DeviceOp) -> Option<io::Error> {
        let t = self.trigger(op);
        let fails = if t.failing.load(Ordering::Relaxed) {
            true
        } else {
            match t.countdown.load(Ordering::Relaxed) {
                u64::MAX => false,
                0 => {
                    t.countdown.store(u64::MAX, Ordering::Relaxed);
                    t.failing.store(t.persist.load(Ordering::Relaxed), Ordering::Relaxed);
                    true
                }
                n => {
                    t.countdown.store(n - 1, Ordering::Relaxed);
                    false
                }
            }
        };
        fails.then(|| {
            t.failures.fetch_add(1, Ordering::Relaxed);
            io::Error::from_raw_os_error(t.errno.load(Ordering::Relaxed) as i32)
        })
    }
}

/// A [`Device`] that passes everything to `inner` except what its
/// [`FaultPlan`] fails. A failed write or read passes the runs before the
/// failing one through (so they completed) and reports the failing one.
#[derive(Debug)]
pub struct FailingDevice<D> {
    inner: D,
    plan: Arc<FaultPlan>,
}

impl<D: Device> FailingDevice<D> {
    /// `inner`, failing as `plan` says.
    pub fn new(inner: D, plan: Arc<FaultPlan>) -> Self {
        FailingDevice { inner, plan }
    }
}

// SAFETY: it owns `inner`, and every call passes on to it (part of) what it
// was given, and touches nothing else.
unsafe impl<D: Device> raw::DeviceLayer for FailingDevice<D> {
    type Inner = D;

    /// The device underneath.
    fn inner(&self) -> &D {
        &self.inner
    }

    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        let done = (0..runs.len()).find_map(|k| self.plan.fails_next(DeviceOp::Write).map(|e| (k, e)));
        let to_write = done.as_ref().map_or(runs, |&(done, _)| &runs[..done]);
        // SAFETY: the caller holds these slots alone, as `Device::write` asks of it.
        unsafe { self.inner.write(to_write) }?;
        done.map_or(Ok(()), |(done, error)| Err(RunError { done, error }))
    }

    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        let done = (0..runs.len()).find_map(|k| self.plan.fails_next(DeviceOp::Read).map(|e| (k, e)));
        let end = done.as_ref().map_or(runs.len(), |&(done, _)| done);
        // SAFETY: the slots were written and nothing writes or releases them meanwhile, as `Device::read` asks of the caller.
        unsafe { self.inner.read(&mut runs[..end]) }?;
        done.map_or(Ok(()), |(done, error)| Err(RunError { done, error }))
    }

    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        match self.plan.fails_next(DeviceOp::Release) {
            Some(error) => Err(error),
            // SAFETY: no write or read of these slots runs meanwhile, as `Device::release` asks of the caller.
            None => unsafe { self.inner.release(slot, count) },
        }
    }
}
