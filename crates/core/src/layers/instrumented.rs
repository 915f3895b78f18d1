//! [`Instrumented`]: a layer that counts and times every operation and wraps
//! each in a `tracing` span.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Layer;
use crate::error::{BatchError, Operation, Result};
use crate::{BackupBackend, BackupFlags, Handle, Interrupt, Page};

/// Counts and latencies of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls (single and batch).
    pub calls: u64,
    /// Pages the calls covered.
    pub pages: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Time spent in the calls.
    pub total: Duration,
    /// The slowest call.
    pub max: Duration,
}

impl OpStats {
    /// Mean time per page, if any page was handled.
    pub fn per_page(&self) -> Option<Duration> {
        (self.pages > 0).then(|| self.total / self.pages as u32)
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    pages: AtomicU64,
    errors: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Counters {
    fn record(&self, pages: usize, elapsed: Duration, failed: bool) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.pages.fetch_add(pages as u64, Ordering::Relaxed);
        self.errors.fetch_add(u64::from(failed), Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> OpStats {
        OpStats {
            calls: self.calls.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
        }
    }
}

/// Per-operation figures of an [`Instrumented`] backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstrumentedStats {
    /// `backup_page` and `backup_pages`.
    pub backup: OpStats,
    /// `copy_page` and `copy_pages`.
    pub restore: OpStats,
    /// `drop_handle` and `drop_handles`.
    pub drop: OpStats,
    /// `flush`.
    pub flush: OpStats,
}

/// Wraps a backend, counting and timing every operation, and running each
/// inside a `tracing` span (`pagebackup` at TRACE level, with the backend,
/// the operation and the page count; failures logged at DEBUG).
pub struct Instrumented<B> {
    inner: B,
    backup: Counters,
    restore: Counters,
    drop: Counters,
    flush: Counters,
}

impl<B: BackupBackend> Instrumented<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Instrumented {
            inner,
            backup: Counters::default(),
            restore: Counters::default(),
            drop: Counters::default(),
            flush: Counters::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The figures so far.
    pub fn op_stats(&self) -> InstrumentedStats {
        InstrumentedStats {
            backup: self.backup.snapshot(),
            restore: self.restore.snapshot(),
            drop: self.drop.snapshot(),
            flush: self.flush.snapshot(),
        }
    }

    fn run<T, E: fmt::Display>(
        &self,
        counters: &Counters,
        op: Operation,
        pages: usize,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let span = tracing::trace_span!("pagebackup", backend = self.inner.name(), op = op.name(), pages);
        let _entered = span.enter();
        let start = Instant::now();
        let result = f();
        counters.record(pages, start.elapsed(), result.is_err());
        if let Err(e) = &result {
            tracing::debug!(error = %e, "operation failed");
        }
        result
    }
}

/// The methods the layer changes; every other forwards to the inner backend.
impl<B: BackupBackend> Layer for Instrumented<B> {
    type Inner = B;

    fn inner(&self) -> &B {
        &self.inner
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        self.run(&self.backup, Operation::BackupPage, 1, || {
            self.inner.backup_page(page, idx, flags)
        })
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        self.run(&self.backup, Operation::BackupPages, pages.len(), || {
            self.inner.backup_pages(pages, first_idx, flags, handles)
        })
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.run(&self.restore, Operation::CopyPage, 1, || {
            self.inner.copy_page(dst, handle, intr)
        })
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        self.run(&self.restore, Operation::CopyPages, handles.len(), || {
            self.inner.copy_pages(handles, dsts, intr)
        })
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.run(&self.drop, Operation::DropHandle, 1, || self.inner.drop_handle(handle))
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.run(&self.drop, Operation::DropHandles, handles.len(), || {
            self.inner.drop_handles(handles)
        })
    }

    fn flush(&self) -> Result<()> {
        self.run(&self.flush, Operation::Flush, 0, || self.inner.flush())
    }
}

impl<B: BackupBackend> fmt::Debug for Instrumented<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("inner", &self.inner)
            .field("op_stats", &self.op_stats())
            .finish()
    }
}
