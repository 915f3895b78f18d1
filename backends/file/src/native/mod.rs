//! [`AsyncFileBackend`]: the file backend driven natively through io_uring
//! for async programs (feature `async`).

mod behind;
mod driver;
mod gather;

use std::any::Any;
use std::fmt;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use pagebackup_async::{AsyncBackupBackend, BackedUp, BlockingJobs, InterruptOnDrop};
use pagebackup_core::raw::{ReadPlan, Reservation, RunError, SlotStore, check_batch_lengths};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Operation, Origin, PAGE_SIZE,
    Page, Result,
};

use io_uring::squeue::Entry;
use tokio::sync::oneshot;

use self::driver::{Completion, Driver, Orphan, libc_iovec::Iovec, readv, result_error, writev};
use crate::backend::open_store;
use crate::device::FileDevice;
use crate::file::BackingFile;
use crate::runs::{IOV_MAX, read_cached, read_sync, write_sync};
use crate::{AsyncWrites, FileConfig};
use pagebackup_core::raw::seal::MaybeSealed;

const PAGE: u64 = PAGE_SIZE as u64;

/// The file backend for async programs: the same store and files as
/// [`FileBackend`](crate::FileBackend), with reads and writes submitted to
/// io_uring by the calling task and completed without a thread waiting on
/// any of them.
///
/// - **Many operations in flight**: a call reserves its slots, submits one
///   `WRITEV`/`READV` per run of contiguous slots to its shard's ring, and
///   awaits the completion; many calls keep many operations in flight. What
///   completes during the submission itself (a buffered read served from
///   the page cache) is reaped there by the submitting task, which then
///   needs no wake-up; for the rest, one reaper thread per shard waits on
///   the ring and wakes the calls whose operations completed: no thread is
///   parked per operation, and the calls may come from any runtime
///   (current-thread ones included) or several.
/// - **Owned buffers**: the pages move into the in-flight operation, which
///   holds them until the kernel is done with them, whatever happens to the
///   call's future, and then gives them back.
/// - **Cancellation**: a backup whose future is dropped completes on the
///   thread that reaps it (or that wrote it, on the blocking pool), which
///   drops the handles it made (nothing is left held); a
///   dropped restore sets its interrupt, and its pages are freed once read
///   (and only then are the slots it read unpinned, so that a slot dropped
///   meanwhile is reused or released only after the kernel is done).
///   Drops run on tokio's blocking pool (a hole punch can wait on the file
///   system) and are carried out whether or not their future is awaited,
///   and on the awaiting thread outside a runtime or when the runtime has
///   shut down.
/// - **Ownership and drop**: an operation's buffers belong to its shard's
///   ring driver (or writer, on the blocking pool) from submission until
///   every completion of the operation is reaped, never to the future. Dropping the backend cancels every
///   operation still in flight (`IORING_OP_ASYNC_CANCEL`), waits until the
///   reaper threads have reaped them all and exited, and only then lets the
///   rings and buffers go: after the drop, the kernel touches no memory of
///   the program. The drop blocks its thread that long (what the kernel
///   cannot cancel, a read already at the device, completes at the
///   device's pace). A backup in flight keeps the backend alive until it
///   completes; a drop that then happens on a reaper thread leaves that
///   reaper to finish the reaping on its own, holding the ring and buffers.
/// - **Where backups are written** ([`AsyncWrites`], `async_writes=`):
///   with `direct=on`, through the ring: `O_DIRECT` writes are issued by
///   the kernel inline at submission, without io_uring's worker threads,
///   and leave no page cache behind. Buffered, through the ring only where
///   the file system takes a write without blocking (`RWF_NOWAIT`, probed
///   at open); where it refuses (ext4 answers `EOPNOTSUPP`), io_uring
///   would hand every write to one of its worker threads and the reaper
///   would wake the caller, two hand-offs per write. There backups are
///   **written behind**: a backup copies its pages into its shard's staging
///   buffer (the one the sync backend stages single pages in) and returns
///   its handles; one `pwritev` job per shard on tokio's blocking pool
///   ([`Serial`](pagebackup_async::Serial)) writes whatever is staged,
///   contiguous slots in one call, while the caller goes on. A page leaves
///   the buffer only once its write has completed, so restores (which look
///   there first) and the sync view read every page whatever its write's
///   state; a release of a slot (a drop, or later the trim of a slot kept
///   for reuse) waits for a write of its slot in flight, at most one write
///   job's. A backup that finds 512 pages (2 MiB) or more staged across the
///   shards (the writers are behind: many callers, or writes failing)
///   hands its own pages to its shard's writer instead, with no copy, and
///   waits for its write, so at most that many and one batch per caller
///   are staged, and such a backup fails if its own write does.
///   Written buffers are kept for the next backups, up to as many per
///   file (2 MiB each), and counted in `memory_used`. `writeback` queues
///   the write at once, as every backup does, and is not counted in
///   `writeback_pages`. A write that fails
///   leaves its pages staged, in memory, restorable;
///   [`flush`](AsyncBackupBackend::flush) writes them again and reports the
///   failure (`NoSpace` for `ENOSPC`/`EFBIG`). On
///   ext4 (Linux 6.18, a 2-core machine, `bench --async --pages 4096`, 5
///   runs each, alternating), batches of 64 with one call in flight ran at
///   0.51–0.73x the sync backend's `pwritev` (median 0.63x) when each
///   backup waited for its write on the pool, and at 0.58–1.21x (median
///   1.01x) written behind; with 64 calls in flight 0.94–1.21x (1.00x)
///   and 0.79–1.29x (1.09x).
///   [`writes_through`](Self::writes_through) says which path a backend
///   uses.
/// - **Where restores are read**: first from the staging buffer, then,
///   buffered, what the page cache holds is copied on the calling task
///   (`preadv2` with `RWF_NOWAIT`, which never waits for the device), and
///   only the rest is read through the ring. A single page served so needs
///   no submission at all. In the same runs, batches of 64 restored at
///   0.73–0.93x the sync backend with one call in flight (0.52–1.00x
///   through the ring) and 1.26–1.74x with 64 (0.80–0.91x), and single
///   pages with 64 in flight at 1.43–1.66x (0.80–0.96x).
/// - Checksums, placement, bounded space, failure rules and `fork()` are the
///   slot store's, as for the sync backend; [`blocking`](Self::blocking)
///   gives the same store through the sync trait, so handles from one are
///   handles of the other.
///
/// Single pages that go through the ring are gathered while busy: a
/// `backup_page` or `copy_page` that finds none of its kind in flight is
/// submitted at once; those made while others are in flight are submitted
/// together when the last of those completes, backups as one reservation
/// (one `WRITEV` per run of contiguous slots), restores as one `READV` per
/// run of contiguous slots read, each answered when its own read is in. No
/// timer adds latency to an idle backend.
///
/// **Blocking class**: natively async. Backups and restores submit on the
/// calling task (or stage and copy there, which never waits on the device)
/// and await completions delivered there, by the reapers or by the writers;
/// buffered writes and hole punches (drops) run on the blocking pool. A release
/// that a restore or a backup makes on the calling task (the trim of slots
/// kept for reuse, a restore that was the last pin of a dropped slot)
/// punches its hole there, and it, like a ring backup into a reused slot
/// whose old page is still staged, waits there for a write of that slot in
/// flight (a handed-over backup waits for it on its writer).
pub struct AsyncFileBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<SlotStore<MaybeSealed<FileDevice>>>,
    drivers: Box<[Driver]>,
    /// Where backups are written.
    route: Route,
    /// The writers of staged backups, when backups go to the blocking pool.
    behind: behind::WriteBehind,
    op_pages: usize,
    /// Not `direct`: a restore first reads what the page cache holds on
    /// the calling task (`RWF_NOWAIT`), and only the rest through the ring.
    buffered: bool,
    /// Drops on the blocking pool, so that `flush` waits for orphaned ones.
    drops: BlockingJobs,
    /// Single-page calls gathered while gathered ones are in flight.
    gather: gather::Gather,
}

impl AsyncFileBackend {
    /// A backend with `config` (its `io` is ignored: reads and writes go
    /// through the backend's own rings), or why it cannot be had (the
    /// config's errors, io_uring refused: `ENOSYS`, `EPERM`, or `seal`
    /// asked for: [`BackupError::Unsupported`]).
    pub fn new(config: FileConfig) -> Result<Self> {
        if config.seal.is_some() {
            return Err(BackupError::Unsupported {
                origin: Origin::new(crate::NAME, Operation::Open),
                detail: "seal=on: the native async file backend writes pages through io_uring without sealing them; \
                         use the sync FileBackend through the async adapter (open_async does so for seal=on)"
                    .to_string(),
            });
        }
        let store = open_store(&config.clone().with_io(crate::IoMode::Sync))?;
        let drivers = store
            .devices()
            .map(|d| Driver::new(d.base().file.fd()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(crate::uring::Unavailable::into_error)?;
        let route = match config.async_writes {
            AsyncWrites::Ring => Route::Ring,
            AsyncWrites::Pool => Route::Pool,
            AsyncWrites::Auto if config.direct => Route::Ring,
            AsyncWrites::Auto => match store.devices().all(|d| writes_without_blocking(&d.base().file)) {
                true => Route::Ring,
                false => Route::Pool,
            },
        };
        Ok(AsyncFileBackend {
            inner: Arc::new(Inner {
                behind: behind::WriteBehind::new(&store),
                store: Arc::new(store),
                drivers: drivers.into_boxed_slice(),
                route,
                op_pages: IOV_MAX,
                buffered: !config.direct,
                drops: BlockingJobs::new(),
                gather: gather::Gather::default(),
            }),
        })
    }

    /// Where backups are written: `"io_uring"`, or `"pwritev"` on the
    /// blocking pool (see [`AsyncWrites`]).
    pub fn writes_through(&self) -> &'static str {
        self.inner.route.name()
    }

    /// The files' descriptors, one per shard, for inspection (`fstat`,
    /// `fadvise`).
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.inner.store.devices().map(|d| d.base().file.fd())
    }

    /// The same backend through the sync trait: the same store, so handles
    /// from either are valid in both. Its calls block the calling thread.
    pub fn blocking(&self) -> &(impl BackupBackend + use<>) {
        &*self.inner.store
    }
}

/// Where the native backend's backups are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The shard's io_uring ring.
    Ring,
    /// Staged and written behind by `pwritev` jobs on the blocking pool
    /// (the `behind` module).
    Pool,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Ring => "io_uring",
            Route::Pool => "pwritev",
        }
    }
}

/// Whether the file system takes a buffered write to `file` without
/// blocking (`pwritev2` with `RWF_NOWAIT`): io_uring then completes such
/// writes at submission. Where it refuses (ext4 answers `EOPNOTSUPP`),
/// io_uring hands every write to one of its worker threads. The probe
/// writes a page of zeros at the start of the empty file and cuts the file
/// back to empty.
fn writes_without_blocking(file: &BackingFile) -> bool {
    let zeros = Page::new_boxed();
    let fd = file.fd();
    let written = rustix::io::pwritev2(
        fd,
        &[IoSlice::new(zeros.as_bytes())],
        0,
        rustix::io::ReadWriteFlags::NOWAIT,
    );
    // Nothing is stored yet: the file was empty.
    let _ = rustix::fs::ftruncate(fd, 0);
    written == Ok(PAGE_SIZE)
}

/// A backup's pages and their iovecs, held by the operation in flight.
struct WriteBufs {
    pages: Vec<Box<Page>>,
    /// The pages' iovecs, which the ring's entries point into.
    iovecs: Vec<Iovec>,
    entries: Vec<WriteEntry>,
    reservation: Reservation,
    flags: BackupFlags,
}

/// One write of a backup: pages `first..first + count` at `offset`, part
/// of the reservation's run `run`.
#[derive(Debug, Clone, Copy)]
struct WriteEntry {
    run: usize,
    first: usize,
    count: usize,
    offset: u64,
}

impl WriteBufs {
    /// The ring's `WRITEV`s of the entries.
    fn sqes(&self) -> Vec<Entry> {
        self.entries
            .iter()
            .map(|e| writev(&self.iovecs[e.first..e.first + e.count], e.offset))
            .collect()
    }
}

/// What holds a backup's buffers on their way to the file.
trait Written: Send + 'static {
    /// The backup's buffers.
    fn bufs(&self) -> &WriteBufs;
}

impl Written for WriteBufs {
    fn bufs(&self) -> &WriteBufs {
        self
    }
}

/// A restore's pages (as raw pointers, so that no reference to them exists
/// while the kernel writes into them), their iovecs, and the plan whose
/// pins keep the slots read from being reused or released. Its last owner
/// (the restore, or the reaper once a dropped restore's reads are in)
/// finishes the plan or, in `Drop`, gives its pins up.
struct ReadBufs {
    pages: Vec<*mut Page>,
    iovecs: Vec<Iovec>,
    plan: Option<ReadPlan>,
    inner: Arc<Inner>,
}

// SAFETY: the pointers are owned boxes (see `Drop`), used by one thread at a time.
unsafe impl Send for ReadBufs {}

impl Drop for ReadBufs {
    fn drop(&mut self) {
        for &page in &self.pages {
            // SAFETY: each pointer came from Box::into_raw and is freed once, here or in `take_parts`.
            drop(unsafe { Box::from_raw(page) });
        }
        if let Some(plan) = self.plan.take() {
            // The restore was dropped: no read of the plan's slots is left.
            self.inner.store.abandon_read(plan);
        }
    }
}

impl ReadBufs {
    /// The pages back as boxes, and the plan (once the kernel is done with
    /// them).
    fn take_parts(mut self) -> (Vec<Box<Page>>, ReadPlan) {
        let pages = std::mem::take(&mut self.pages);
        let plan = self.plan.take().expect("the plan is here until the restore ends");
        // SAFETY: as in Drop; the vector is emptied first, so Drop frees nothing twice.
        let pages = pages.into_iter().map(|p| unsafe { Box::from_raw(p) }).collect();
        (pages, plan)
    }
}

/// Serves what it can of a restore of the `dsts.len()` slots from `slot`
/// on `device` at once, on the calling task: the pages staged (copied from
/// memory), then, if `cached`, each remaining part's first pages that the
/// page cache holds (`RWF_NOWAIT`). Gives the parts (page ranges) left to
/// read from the file, where they are: a page leaves the staging buffer
/// only once its write has completed.
///
/// # Safety
/// Each pointer of `dsts` is a page the caller owns, which nothing else
/// reads or writes during the call (no read into it is in flight).
unsafe fn serve_at_once(device: &FileDevice, slot: u32, dsts: &[*mut Page], cached: bool) -> Vec<Range<usize>> {
    let staging = device.staging();
    let mut parts: Vec<Range<usize>> = Vec::new();
    for (k, (slot, &dst)) in (slot..).zip(dsts).enumerate() {
        // SAFETY: the caller's page, as the caller promises.
        if staging.len() > 0 && staging.copy_out(slot, unsafe { &mut *dst }) {
            continue;
        }
        match parts.last_mut() {
            Some(part) if part.end == k => part.end = k + 1,
            _ => parts.push(k..k + 1),
        }
    }
    if cached {
        for part in &mut parts {
            let mut pages: Vec<&mut Page> = dsts[part.clone()]
                .iter()
                // SAFETY: as above; each page once.
                .map(|&p| unsafe { &mut *p })
                .collect();
            let offset = (u64::from(slot) + part.start as u64) * PAGE;
            part.start += read_cached(device.file.fd(), offset, &mut pages);
        }
        parts.retain(|part| !part.is_empty());
    }
    parts
}

fn iovec(page: *const Page) -> Iovec {
    Iovec {
        base: page.cast_mut().cast(),
        len: PAGE_SIZE,
    }
}

impl Inner {
    /// The outcome of a backup's entries as the store's run rule: the first
    /// run with a failed entry (short writes finished with `pwritev` when
    /// `finish` is set, counted as failed otherwise).
    fn write_outcome(&self, bufs: &WriteBufs, results: &[i32], finish: bool) -> std::result::Result<(), RunError> {
        let fd = self.store.device(bufs.reservation.shard()).base().file.fd();
        let mut failed: Option<RunError> = None;
        for (entry, &result) in bufs.entries.iter().zip(results) {
            let &WriteEntry {
                run,
                first,
                count,
                offset,
            } = entry;
            let done = usize::try_from(result).ok();
            let outcome = match done {
                Some(done) if done == count * PAGE_SIZE => Ok(()),
                Some(done) if finish => {
                    let pages: Vec<&Page> = bufs.pages[first..first + count].iter().map(|p| &**p).collect();
                    write_sync(fd, offset, &pages, done)
                }
                Some(_) => Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                None => Err(result_error(result)),
            };
            if let Err(error) = outcome
                && failed.as_ref().is_none_or(|f| run < f.done)
            {
                failed = Some(RunError { done: run, error });
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Inner {
    /// Whether a backup is staged and written behind now: on the pool
    /// route, unless the writers are behind (then it is handed over).
    fn stages_backups(&self) -> bool {
        self.route == Route::Pool && !behind::writers_behind(self)
    }

    /// A restore of one page of a buffered backend served on the calling
    /// task, where that needs no wait: from the staging buffer, or from the
    /// page cache (`RWF_NOWAIT`); `Err(dst)` where neither holds the page.
    fn restore_at_once(
        &self,
        mut dst: Box<Page>,
        handle: Handle,
    ) -> std::result::Result<gather::RestoreReply, Box<Page>> {
        const OP: Operation = Operation::CopyPage;
        let plan = match self.store.plan_read(&[handle], OP) {
            Ok(plan) => plan,
            Err(e) => return Ok((Err(e.error), dst)),
        };
        if let Some(segment) = plan.segments().into_iter().next() {
            let device = self.store.device(segment.shard).base();
            let slot = segment.runs[0].slot;
            // SAFETY: the restore's own page, no read into it submitted.
            let left = unsafe { serve_at_once(device, slot, &[&raw mut *dst], true) };
            if !left.is_empty() {
                self.store.abandon_read(plan);
                return Err(dst);
            }
        }
        // Read, or not live: finishing the plan checks it or says why.
        let result = self.store.finish_read(plan, None, &[handle], |_| &*dst, OP);
        Ok((result.map_err(|e| e.error), dst))
    }

    /// The buffers of a backup of `pages` into `reservation`'s runs: one
    /// write per run, split at `op_pages`, to keep until the writes
    /// complete.
    ///
    /// On the pool route the writer's job writes them, and `writeback`
    /// is left to it: completing the backup never writes on the caller's
    /// task what is staged.
    fn writes(&self, pages: Vec<Box<Page>>, reservation: Reservation, flags: BackupFlags) -> WriteBufs {
        let flags = match self.route {
            Route::Ring => {
                behind::forget_staged(self, &reservation);
                flags
            }
            Route::Pool => flags.with_writeback(false),
        };
        let iovecs: Vec<Iovec> = pages.iter().map(|p| iovec(&**p)).collect();
        let mut entries = Vec::new();
        let mut at = 0;
        for (run, range) in reservation.runs().iter().enumerate() {
            let len = (range.end - range.start) as usize;
            for start in (0..len).step_by(self.op_pages) {
                let count = self.op_pages.min(len - start);
                let offset = (u64::from(range.start) + start as u64) * PAGE;
                entries.push(WriteEntry {
                    run,
                    first: at + start,
                    count,
                    offset,
                });
            }
            at += len;
        }
        WriteBufs {
            pages,
            iovecs,
            entries,
            reservation,
            flags,
        }
    }

    /// Sends the writes of `buffers` down the backend's write path
    /// ([`Route`]): its shard's ring, or (the writers being behind) its
    /// shard's writer on the blocking pool. The completion goes to `done`
    /// if given and still awaited, to `orphan` otherwise, on the thread
    /// that completes the writes.
    fn send_writes<T: Written>(
        self: &Arc<Self>,
        buffers: T,
        done: Option<oneshot::Sender<Completion>>,
        orphan: Orphan,
    ) {
        match self.route {
            Route::Ring => {
                let shard = buffers.bufs().reservation.shard();
                let sqes = buffers.bufs().sqes();
                let op = std::iter::once((sqes, Box::new(buffers) as Box<dyn Any + Send>, done, orphan));
                // SAFETY: every entry points into `buffers` (boxed pages and the iovec vector's heap buffer), which the driver keeps until completion.
                unsafe { self.drivers[shard].submit_inner(op) };
            }
            Route::Pool => behind::hand_off(self, buffers, done, orphan),
        }
    }
}

#[async_trait]
impl AsyncBackupBackend for AsyncFileBackend {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn backup_pages(&self, pages: Vec<Box<Page>>, first_idx: u64, flags: BackupFlags) -> BackedUp {
        let op = Operation::BackupPages;
        let inner = &self.inner;
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        if inner.stages_backups() {
            let mut handles = Vec::new();
            let result = behind::backup(inner, &refs, first_idx, flags, &mut handles, op).await;
            drop(refs);
            return BackedUp { pages, handles, result };
        }
        let reservation = match inner.store.reserve(&refs, first_idx, op) {
            Ok(r) => r,
            Err(e) => {
                return BackedUp {
                    pages,
                    handles: Vec::new(),
                    result: Err(e),
                };
            }
        };
        drop(refs);
        if reservation.runs().is_empty() {
            let mut handles = Vec::new();
            let result = inner.store.complete(reservation, Ok(()), flags, &mut handles, op);
            return BackedUp { pages, handles, result };
        }
        let bufs = inner.writes(pages, reservation, flags);
        let orphan_inner = Arc::clone(inner);
        let orphan = Box::new(move |c: Completion| {
            // The future is gone: complete the backup and drop what it made.
            let bufs = *c.buffers.downcast::<WriteBufs>().expect("a backup's buffers");
            let outcome = orphan_inner.write_outcome(&bufs, &c.results, false);
            let mut handles = Vec::new();
            let _ = orphan_inner
                .store
                .complete(bufs.reservation, outcome, bufs.flags, &mut handles, op);
            let _ = orphan_inner.store.drop_handles(&handles);
        });
        let (done, receiver) = oneshot::channel();
        inner.send_writes(bufs, Some(done), orphan);
        let completion = receiver.await.expect("every write is completed and delivered");
        let bufs = *completion.buffers.downcast::<WriteBufs>().expect("a backup's buffers");
        let outcome = inner.write_outcome(&bufs, &completion.results, true);
        let mut handles = Vec::new();
        let result = inner
            .store
            .complete(bufs.reservation, outcome, bufs.flags, &mut handles, op);
        BackedUp {
            pages: bufs.pages,
            handles,
            result,
        }
    }

    async fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: Vec<Box<Page>>,
        intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        let op = Operation::CopyPages;
        let inner = &self.inner;
        if let Err(e) = check_batch_lengths("file", handles.len(), dsts.len()) {
            return (Err(e), dsts);
        }
        if inner.buffered {
            // Cached pages are copied on this task: it yields as inline copies do.
            pagebackup_async::cooperate(handles.len()).await;
        }
        let plan = match inner.store.plan_read(handles, op) {
            Ok(plan) => plan,
            Err(e) => return (Err(e), dsts),
        };
        if intr.as_ref().is_some_and(Interrupt::is_interrupted) || plan.is_empty() {
            let stop = (!plan.is_empty()).then(|| inner.store.interrupted(0, op));
            let result = inner.store.finish_read(plan, stop, handles, |k| &*dsts[k], op);
            return (result, dsts);
        }
        let on_drop = InterruptOnDrop::new(intr);
        let segments = plan.segments();
        // One operation per segment (its shard's ring), all in flight at once.
        let shared = {
            let pages: Vec<*mut Page> = dsts.into_iter().map(Box::into_raw).collect();
            let iovecs: Vec<Iovec> = pages.iter().map(|&p| iovec(p)).collect();
            Arc::new(std::sync::Mutex::new(Some(ReadBufs {
                pages,
                iovecs,
                plan: Some(plan),
                inner: Arc::clone(inner),
            })))
        };
        let mut waits = Vec::new();
        for segment in segments {
            let mut sqes = Vec::new();
            let mut entries = Vec::new();
            {
                let guard = shared.lock().expect("not poisoned");
                let bufs = guard.as_ref().expect("the buffers are here until every read is in");
                let device = inner.store.device(segment.shard).base();
                for run in &segment.runs {
                    let dsts = &bufs.pages[run.start..run.start + run.len];
                    // SAFETY: the restore's own pages, no read into them submitted yet.
                    for part in unsafe { serve_at_once(device, run.slot, dsts, inner.buffered) } {
                        for start in part.clone().step_by(inner.op_pages) {
                            let count = inner.op_pages.min(part.end - start);
                            let offset = (u64::from(run.slot) + start as u64) * PAGE;
                            let first = run.start + start;
                            sqes.push(readv(&bufs.iovecs[first..first + count], offset));
                            entries.push((first, count, offset, segment.shard));
                        }
                    }
                }
            }
            if sqes.is_empty() {
                // Every page of the segment was served at once.
                continue;
            }
            let keep = Arc::clone(&shared);
            // SAFETY: every entry points into the shared buffers, which each operation keeps (a clone of the Arc) until its completion.
            let receiver = unsafe { inner.drivers[segment.shard].submit(sqes, Box::new(keep), Box::new(drop)) };
            waits.push((receiver, entries));
        }
        let mut stop: Option<BatchError> = None;
        for (receiver, entries) in waits {
            let completion = receiver.await.expect("the reaper delivers every completion");
            drop(completion.buffers);
            for ((first, count, offset, shard), result) in entries.into_iter().zip(completion.results) {
                let outcome = match usize::try_from(result) {
                    Ok(done) if done == count * PAGE_SIZE => Ok(()),
                    Ok(done) => {
                        let mut guard = shared.lock().expect("not poisoned");
                        let bufs = guard.as_mut().expect("here");
                        let mut pages: Vec<&mut Page> = bufs.pages[first..first + count]
                            .iter()
                            // SAFETY: this entry's read completed; the pages are ours alone now.
                            .map(|&p| unsafe { &mut *p })
                            .collect();
                        let fd = inner.store.device(shard).base().file.fd();
                        read_sync(fd, offset, &mut pages, done)
                    }
                    Err(_) => Err(result_error(result)),
                };
                if let Err(error) = outcome
                    && stop.as_ref().is_none_or(|s| first < s.completed)
                {
                    stop = Some(BatchError {
                        completed: first,
                        error: inner.store.io_error(op, error),
                    });
                }
            }
        }
        on_drop.disarm();
        let bufs = shared.lock().expect("not poisoned").take().expect("every read is in");
        let (dsts, plan) = bufs.take_parts();
        let result = inner.store.finish_read(plan, stop, handles, |k| &*dsts[k], op);
        (result, dsts)
    }

    async fn backup_page(&self, page: Box<Page>, idx: u64, flags: BackupFlags) -> (Result<Handle>, Box<Page>) {
        let inner = &self.inner;
        if inner.stages_backups() {
            let mut handles = Vec::with_capacity(1);
            let result = behind::backup(inner, &[&*page], idx, flags, &mut handles, Operation::BackupPage).await;
            return (result.map(|()| handles[0]).map_err(|e| e.error), page);
        }
        gather::backup(inner, page, idx, flags).await
    }

    async fn copy_page(&self, dst: Box<Page>, handle: Handle, intr: Option<Interrupt>) -> (Result<()>, Box<Page>) {
        let intr = intr.unwrap_or_default();
        let dst = match self.inner.buffered && !intr.is_interrupted() {
            true => {
                pagebackup_async::cooperate(1).await;
                match self.inner.restore_at_once(dst, handle) {
                    Ok(restored) => return restored,
                    Err(dst) => dst,
                }
            }
            false => dst,
        };
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let out = gather::restore(&self.inner, dst, handle, intr).await;
        on_drop.disarm();
        out
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.inner.drops.drop_handles(&self.inner.store, handles).await
    }

    fn bytes_avail(&self) -> u64 {
        self.inner.store.bytes_avail()
    }

    fn stats(&self) -> BackupStats {
        let mut stats = self.inner.store.stats();
        stats.io_path = Some(match self.inner.route {
            Route::Ring => "io_uring",
            Route::Pool => "io_uring reads, pwritev writes",
        });
        stats
    }

    /// Writes what is written behind (again, where a write failed: its
    /// error is returned) and waits for the operations still in flight
    /// whose futures were dropped, and for the drops whose futures were
    /// dropped, so that after it every backup made so far is on the file
    /// and the backend holds exactly what its callers hold (also after the
    /// runtime that ran them shut down: they end on the reaper and the
    /// blocking pool).
    async fn flush(&self) -> Result<()> {
        // Gathered backups first: their completions may submit to any ring.
        self.inner.gather.backups.settle().await;
        for driver in self.inner.drivers.iter() {
            driver.settle().await;
        }
        self.inner.behind.settle().await;
        self.inner.drops.settle().await;
        // What is still staged is what a write failed to write: again.
        behind::flush(&self.inner).await
    }
}

impl fmt::Debug for AsyncFileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFileBackend")
            .field("store", &self.inner.store)
            .field("op_pages", &self.inner.op_pages)
            .finish_non_exhaustive()
    }
}
