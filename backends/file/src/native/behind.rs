//! Write-behind of the native backend's buffered backups ([`Route::Pool`]):
//! a backup copies its pages into its shard's staging buffer (the file
//! device's, which the sync backend stages single pages in) and returns;
//! one `pwritev` job per shard on the blocking pool writes whatever is
//! staged, runs of contiguous slots coalesced, while the callers go on.
//!
//! Why: where the file system refuses buffered writes without blocking
//! (ext4), every write is handed to a thread, and a backup that waits for
//! its write pays two thread hand-offs; with one backup in flight, batches
//! of 64 ran at 0.54–0.77x the sync backend. A backup that returns once
//! its pages are staged pays a copy instead, and its write runs beside the
//! caller's next backup.
//!
//! The staging buffer's rules keep what a backup returned readable and
//! its slot safe to reuse: a page leaves it only once its write has
//! completed, so a restore that finds no staged copy finds the page on the
//! file (restores look in the buffer first); a release of a slot waits for
//! a write of it in flight; a failed write leaves its pages staged, in
//! memory, for the next flush to write again and report. Staged pages are
//! bounded: a backup that finds [`WRITE_BEHIND_PAGES`] or more staged waits
//! for the writers, or fails with the writers' error if a write fails
//! meanwhile (before it reserved anything), so at most that many and one
//! batch per caller are staged.
//!
//! [`Route::Pool`]: super::Route::Pool

use std::ops::Range;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pagebackup_async::Serial;
use pagebackup_core::raw::seal::MaybeSealed;
use pagebackup_core::raw::{Reservation, SlotStore};
use pagebackup_core::{BackupError, BackupFlags, Handle, Operation, Page, Result};
use tokio::sync::Notify;

use super::Inner;
use crate::device::FileDevice;

/// The most pages staged across the shards before backups wait for the
/// writers: 8 MiB.
pub(crate) const WRITE_BEHIND_PAGES: usize = 2048;

/// The writers of a backend's staged pages, one [`Serial`] queue per shard.
#[derive(Debug)]
pub(super) struct WriteBehind {
    /// Per shard, its queue of write jobs on the blocking pool.
    writers: Box<[Arc<Serial>]>,
    /// Per shard: a write job is queued that has not started yet.
    queued: Box<[AtomicBool]>,

    /// Woken after every write job.
    written: Notify,
    /// Write jobs that failed so far.
    failures: AtomicU64,
    /// The error of the last write job that failed.
    last_error: Mutex<Option<std::io::Error>>,
}

impl WriteBehind {
    /// The writers of `store`'s shards, whose staging buffers keep as many
    /// spare buffers as they stage at most, between them.
    pub(super) fn new(store: &SlotStore<MaybeSealed<FileDevice>>) -> Self {
        let shards = store.devices().count();
        for device in store.devices() {
            device.base().staging().keep_spares(WRITE_BEHIND_PAGES.div_ceil(shards));
        }
        WriteBehind {
            writers: (0..shards).map(|_| Arc::new(Serial::new())).collect(),
            queued: (0..shards).map(|_| AtomicBool::new(false)).collect(),

            written: Notify::new(),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Returns once every write job queued has ended.
    pub(super) async fn settle(&self) {
        for writer in self.writers.iter() {
            writer.settle().await;
        }
    }

    /// Queues a write job for `shard` unless one is queued that has not
    /// started: a job writes everything staged when it starts.
    fn schedule(&self, inner: &Arc<Inner>, shard: usize) {
        if self.queued[shard].swap(true, Ordering::AcqRel) {
            return;
        }
        let owner = Arc::clone(inner);
        self.writers[shard].push(move || {
            let behind = &owner.behind;
            behind.queued[shard].store(false, Ordering::Release);
            if let Err(error) = owner.store.device(shard).base().flush_staged() {
                *behind.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                behind.failures.fetch_add(1, Ordering::AcqRel);
            }
            behind.written.notify_waiters();
        });
    }

    /// Returns once fewer than [`WRITE_BEHIND_PAGES`] pages are staged, or
    /// the error of a write job that failed while this waited.
    pub(super) async fn room(&self, inner: &Arc<Inner>) -> std::io::Result<()> {
        let failures = self.failures.load(Ordering::Acquire);
        loop {
            let mut written = pin!(self.written.notified());
            written.as_mut().enable();
            if staged(inner) < WRITE_BEHIND_PAGES {
                return Ok(());
            }
            if self.failures.load(Ordering::Acquire) != failures {
                let last = self.last_error.lock().unwrap_or_else(PoisonError::into_inner);
                return Err(last.as_ref().map_or_else(
                    || std::io::Error::other("a staged write failed"),
                    |e| match e.raw_os_error() {
                        Some(errno) => std::io::Error::from_raw_os_error(errno),
                        None => std::io::Error::new(e.kind(), e.to_string()),
                    },
                ));
            }
            for (shard, device) in inner.store.devices().enumerate() {
                if device.base().staging().len() > 0 {
                    self.schedule(inner, shard);
                }
            }
            written.await;
        }
    }
}

/// Pages staged across the shards.
fn staged(inner: &Inner) -> usize {
    inner.store.devices().map(|d| d.base().staging().len()).sum()
}

/// Backs up `pages` through the write-behind: waits for room, reserves,
/// stages the pages of the runs reserved, issues their handles and queues
/// their write. `writeback` queues the write as every backup does; it is
/// not run on the caller's thread.
pub(super) async fn backup(
    inner: &Arc<Inner>,
    pages: &[&Page],
    first_idx: u64,
    flags: BackupFlags,
    handles: &mut Vec<Handle>,
    op: Operation,
) -> std::result::Result<(), pagebackup_core::BatchError> {
    // Staging is a copy on this task: it yields as inline copies do.
    pagebackup_async::cooperate(pages.len()).await;
    let no_room = |error: std::io::Error| pagebackup_core::BatchError {
        completed: 0,
        error: inner.store.io_error(op, error),
    };
    inner.behind.room(inner).await.map_err(no_room)?;
    let reservation = inner.store.reserve(pages, first_idx, op)?;
    let shard = reservation.shard();
    stage(inner.store.device(shard).base(), &reservation, pages);
    let result = inner
        .store
        .complete(reservation, Ok(()), flags.with_writeback(false), handles, op);
    inner.behind.schedule(inner, shard);
    result
}

/// Copies the pages of `reservation`'s runs into `device`'s staging buffer.
fn stage(device: &FileDevice, reservation: &Reservation, pages: &[&Page]) {
    let mut at = 0;
    for run in reservation.runs() {
        let len = (run.end - run.start) as usize;
        device.staging().stage_run(run.start, &pages[at..at + len]);
        at += len;
    }
}

/// Writes what the shards have staged (pages whose write failed, retried)
/// on the blocking pool, after the write jobs queued; the first failure.
pub(super) async fn flush(inner: &Arc<Inner>) -> Result<()> {
    let mut failed: Option<BackupError> = None;
    for (shard, device) in inner.store.devices().enumerate() {
        if device.base().staging().len() == 0 {
            continue;
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        let owner = Arc::clone(inner);
        inner.behind.writers[shard].push(move || {
            let _ = done.send(owner.store.device(shard).base().flush_staged());
        });
        let written = outcome
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the write job ended unrun")));
        if let Err(error) = written
            && failed.is_none()
        {
            failed = Some(inner.store.io_error(Operation::Flush, error));
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Copies the pages of the `dsts.len()` slots from `slot` that `device`
/// has staged into `dsts`, and gives the parts of the run (page ranges)
/// that are not staged, to be read from the file: a page leaves the
/// staging buffer only once its write has completed, so those are there.
///
/// # Safety
/// Each pointer of `dsts` is a page the caller owns, which nothing else
/// reads or writes during the call (no read into it is in flight).
pub(super) unsafe fn copy_staged(device: &FileDevice, slot: u32, dsts: &[*mut Page]) -> Vec<Range<usize>> {
    let staging = device.staging();
    if staging.len() == 0 {
        return std::iter::once(0..dsts.len()).collect();
    }
    let mut parts: Vec<Range<usize>> = Vec::new();
    for (k, (slot, &dst)) in (slot..).zip(dsts).enumerate() {
        // SAFETY: the caller's page, as the caller promises.
        if staging.copy_out(slot, unsafe { &mut *dst }) {
            continue;
        }
        match parts.last_mut() {
            Some(part) if part.end == k => part.end = k + 1,
            _ => parts.push(k..k + 1),
        }
    }
    parts
}
