//! Write-behind of the native backend's buffered backups ([`Route::Pool`]):
//! a backup copies its pages into its shard's staging buffer (the file
//! device's, which the sync backend stages single pages in) and returns;
//! one `pwritev` job per shard on the blocking pool writes whatever is
//! staged, runs of contiguous slots coalesced, while the callers go on.
//!
//! Why: where the file system refuses buffered writes without blocking
//! (ext4), every write is handed to a thread, and a backup that waits for
//! its write pays two thread hand-offs; with one backup in flight, batches
//! of 64 ran at 0.51–0.73x the sync backend. A backup that returns once
//! its pages are staged pays a copy instead, and its write runs beside the
//! caller's next backup.
//!
//! The staging buffer's rules keep what a backup returned readable and
//! its slot safe to reuse: a page leaves it only once its write has
//! completed, so a restore that finds no staged copy finds the page on the
//! file (restores look in the buffer first); a release of a slot waits for
//! a write of it in flight; a failed write leaves its pages staged, in
//! memory, for the next flush to write again and report.
//!
//! Staged pages are bounded: a backup that finds [`HAND_OFF_PAGES`] or
//! more staged (the writers are behind: many callers, or writes failing)
//! hands its own pages to its shard's writer instead, without a copy, and
//! waits for its write, as a backup without write-behind does; so at most
//! that many and one batch per caller are staged, and such a backup fails
//! if its own write does (the runs written before the failed one keep
//! their handles, the batch rule).
//!
//! [`Route::Pool`]: super::Route::Pool

use std::any::Any;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pagebackup_async::Serial;
use pagebackup_core::raw::seal::MaybeSealed;
use pagebackup_core::raw::{Reservation, SlotStore};
use pagebackup_core::{BackupError, BackupFlags, Handle, Operation, Page, Result};
use tokio::sync::oneshot;

use super::driver::{Completion, Orphan, deliver};
use super::{Inner, WriteBufs, Written};
use crate::device::FileDevice;

/// The pages staged across the shards from which backups hand their pages
/// to the writers instead of staging them: 2 MiB.
const HAND_OFF_PAGES: usize = 512;

/// Whether the writers are behind: a backup then hands its pages over
/// ([`hand_off`]) instead of staging them.
pub(super) fn writers_behind(inner: &Inner) -> bool {
    staged(inner) >= HAND_OFF_PAGES
}

/// The writers of a backend's staged pages, one [`Serial`] queue per shard.
#[derive(Debug)]
pub(super) struct WriteBehind {
    /// Per shard, its queue of write jobs on the blocking pool.
    writers: Box<[Arc<Serial>]>,
    /// Per shard: a write job is queued that has not started yet.
    queued: Box<[AtomicBool]>,
}

impl WriteBehind {
    /// The writers of `store`'s shards, whose staging buffers each keep as
    /// many spare buffers as may be staged: one thread's backups all go to
    /// one shard, and with the spares split between the shards half of its
    /// staged pages were fresh memory (0.56–0.89x the sync backend per
    /// round, one caller, batches of 64, against 1.15–1.4x).
    pub(super) fn new(store: &SlotStore<MaybeSealed<FileDevice>>) -> Self {
        let shards = store.devices().count();
        for device in store.devices() {
            device.base().staging().keep_spares(HAND_OFF_PAGES);
        }
        WriteBehind {
            writers: (0..shards).map(|_| Arc::new(Serial::new())).collect(),
            queued: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Returns once every write job queued has ended.
    pub(super) async fn settle(&self) {
        for writer in self.writers.iter() {
            writer.settle().await;
        }
    }

    /// Queues a write job for `shard` unless one is queued that has not
    /// started: a job writes everything staged when it starts (a failed
    /// write leaves its pages staged, for the next job or flush).
    fn schedule(&self, inner: &Arc<Inner>, shard: usize) {
        if self.queued[shard].swap(true, Ordering::AcqRel) {
            return;
        }
        let owner = Arc::clone(inner);
        self.writers[shard].push(move || {
            owner.behind.queued[shard].store(false, Ordering::Release);
            let _ = owner.store.device(shard).base().flush_staged();
        });
    }
}

/// Queues the writes of `buffers` (a backup's own pages) on their shard's
/// writer with `pwritev`, after a write job of what is staged there (pages
/// whose write failed are tried again); the completion goes to `done` if
/// given and still awaited, to `orphan` otherwise.
pub(super) fn hand_off<T: Written>(
    inner: &Arc<Inner>,
    buffers: T,
    done: Option<oneshot::Sender<Completion>>,
    orphan: Orphan,
) {
    let shard = buffers.bufs().reservation.shard();
    if inner.store.device(shard).base().staging().len() > 0 {
        inner.behind.schedule(inner, shard);
    }
    let owner = Arc::clone(inner);
    inner.behind.writers[shard].push(move || {
        // No handle of these slots exists yet: the wait for an old page of
        // them in flight is the writer's, not the caller's.
        forget_staged(&owner, &buffers.bufs().reservation);
        let results = pwrite(&owner, buffers.bufs());
        let buffers: Box<dyn Any + Send> = Box::new(buffers);
        deliver(Completion { results, buffers }, done, orphan);
    });
}

/// Forgets the pages staged for the slots of `reservation`, about to be
/// written straight to the file: a slot kept for reuse may still have its
/// old page staged (written behind, or a single page of the sync view),
/// which restores would read instead of the file and a flush would write
/// over the new one. Waits for a write of one of them in flight.
pub(super) fn forget_staged(inner: &Inner, reservation: &Reservation) {
    let staging = inner.store.device(reservation.shard()).base().staging();
    for run in reservation.runs() {
        staging.discard(run.clone());
    }
}

/// Writes `bufs`' entries with `pwritev`, one call each, and gives their
/// results as io_uring would: bytes written or `-errno`.
fn pwrite(inner: &Inner, bufs: &WriteBufs) -> Vec<i32> {
    let fd = inner.store.device(bufs.reservation.shard()).base().file.fd();
    bufs.entries
        .iter()
        .map(|e| {
            let slices: Vec<IoSlice<'_>> = bufs.pages[e.first..e.first + e.count]
                .iter()
                .map(|p| IoSlice::new(p.as_bytes()))
                .collect();
            match rustix::io::pwritev(fd, &slices, e.offset) {
                // At most `op_pages` pages: far below 2 GiB.
                Ok(written) => i32::try_from(written).unwrap_or(i32::MAX),
                Err(errno) => -errno.raw_os_error(),
            }
        })
        .collect()
}

/// Pages staged across the shards.
fn staged(inner: &Inner) -> usize {
    inner.store.devices().map(|d| d.base().staging().len()).sum()
}

/// Backs up `pages` through the write-behind: reserves, stages the pages
/// of the runs reserved, issues their handles and queues their write.
/// `writeback` queues the write as every backup does; it is not run on
/// the caller's task.
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
        let (done, outcome) = oneshot::channel();
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
