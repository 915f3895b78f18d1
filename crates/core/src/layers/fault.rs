//! [`FaultInjection`]: a layer that makes backups fail and restores stop,
//! deterministically, to test the paths that handle them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Layer;
use crate::error::{BackupError, BatchError, ErrorKind, Operation, Origin, Result};
use crate::mix::mix64;
use crate::{BackupBackend, BackupFlags, Handle, Interrupt, Page};

const PPM: u64 = 1_000_000;

/// What [`FaultInjection`] injects. Rates are probabilities in `0.0..=1.0`
/// per page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Seed of the fault sequence: the same seed and the same calls give the
    /// same faults.
    pub seed: u64,
    /// Probability that a page's backup fails.
    pub backup_failure_rate: f64,
    /// The error a failed backup gives: [`ErrorKind::NoSpace`] or
    /// [`ErrorKind::Io`] (any other kind is taken as `Io`).
    pub backup_failure: ErrorKind,
    /// Probability that a page's restore is interrupted.
    pub interrupt_rate: f64,
    /// Like the kernel's `backup_fault_inject`: every `backup_pages` call of
    /// more than one page backs up only the first half of its pages, then
    /// reports `NoSpace`.
    pub half_batches: bool,
}

impl FaultConfig {
    /// No faults: the layer passes everything through.
    pub const fn none(seed: u64) -> Self {
        FaultConfig {
            seed,
            backup_failure_rate: 0.0,
            backup_failure: ErrorKind::NoSpace,
            interrupt_rate: 0.0,
            half_batches: false,
        }
    }
}

/// Faults injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Page backups made to fail.
    pub failed_backups: u64,
    /// Restores interrupted.
    pub interrupted_restores: u64,
    /// Batches cut to half.
    pub halved_batches: u64,
}

/// Wraps a backend and injects failed backups and interrupted restores.
///
/// Every decision is drawn from the seed and a per-layer sequence number, so
/// a single-threaded test sees the same faults on every run. An injected
/// failure never reaches the inner backend: a failed backup stores nothing,
/// an interrupted restore leaves the backup in place, exactly as the real
/// errors do. With every rate 0 and `half_batches` off, the layer is
/// transparent (and passes the conformance suite).
pub struct FaultInjection<B> {
    inner: B,
    config: FaultConfig,
    sequence: AtomicU64,
    failed_backups: AtomicU64,
    interrupted_restores: AtomicU64,
    halved_batches: AtomicU64,
}

impl<B: BackupBackend> FaultInjection<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, config: FaultConfig) -> Self {
        FaultInjection {
            inner,
            config,
            sequence: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            interrupted_restores: AtomicU64::new(0),
            halved_batches: AtomicU64::new(0),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            failed_backups: self.failed_backups.load(Ordering::Relaxed),
            interrupted_restores: self.interrupted_restores.load(Ordering::Relaxed),
            halved_batches: self.halved_batches.load(Ordering::Relaxed),
        }
    }

    /// Draws the next decision: true with probability `rate`.
    fn roll(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        mix64(self.config.seed ^ mix64(n)) % PPM < (rate.min(1.0) * PPM as f64) as u64
    }

    /// Index of the first of `n` pages whose backup is made to fail, if any.
    fn first_failing_backup(&self, n: usize) -> Option<usize> {
        let cut = (self.config.half_batches && n > 1).then(|| {
            self.halved_batches.fetch_add(1, Ordering::Relaxed);
            n / 2
        });
        let failing = (0..cut.unwrap_or(n)).find(|_| self.roll(self.config.backup_failure_rate));
        failing.or(cut)
    }

    fn backup_fault(&self, op: Operation) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        let origin = Origin::new(self.inner.name(), op);
        match self.config.backup_failure {
            ErrorKind::NoSpace => BackupError::NoSpace {
                origin,
                detail: "injected fault".into(),
            },
            _ => BackupError::Io {
                origin,
                source: std::io::Error::other("injected fault"),
            },
        }
    }

    fn interrupted(&self, op: Operation) -> BackupError {
        self.interrupted_restores.fetch_add(1, Ordering::Relaxed);
        BackupError::Interrupted {
            origin: Origin::new(self.inner.name(), op),
        }
    }
}

/// The methods the layer changes; every other forwards to the inner backend.
impl<B: BackupBackend> Layer for FaultInjection<B> {
    type Inner = B;

    fn inner(&self) -> &B {
        &self.inner
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        if self.roll(self.config.backup_failure_rate) {
            return Err(self.backup_fault(Operation::BackupPage));
        }
        self.inner.backup_page(page, idx, flags)
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        let Some(failing) = self.first_failing_backup(pages.len()) else {
            return self.inner.backup_pages(pages, first_idx, flags, handles);
        };
        self.inner.backup_pages(&pages[..failing], first_idx, flags, handles)?;
        Err(BatchError {
            completed: failing,
            error: self.backup_fault(Operation::BackupPages),
        })
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        if self.roll(self.config.interrupt_rate) {
            return Err(self.interrupted(Operation::CopyPage));
        }
        self.inner.copy_page(dst, handle, intr)
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let failing = if handles.len() == dsts.len() {
            (0..handles.len()).find(|_| self.roll(self.config.interrupt_rate))
        } else {
            None
        };
        let Some(failing) = failing else {
            return self.inner.copy_pages(handles, dsts, intr);
        };
        self.inner.copy_pages(&handles[..failing], &mut dsts[..failing], intr)?;
        Err(BatchError {
            completed: failing,
            error: self.interrupted(Operation::CopyPages),
        })
    }
}

impl<B: BackupBackend> fmt::Debug for FaultInjection<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjection")
            .field("config", &self.config)
            .field("counts", &self.counts())
            .field("inner", &self.inner)
            .finish()
    }
}
