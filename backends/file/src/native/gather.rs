//! Single-page backups and restores of the native backend gathered while
//! it is busy: a call that finds nothing of its kind in flight is submitted
//! at once; those made while gathered operations are in flight wait in a
//! queue, and when the last of them completes the queue goes out together.
//! Backups go out as one reservation, so as one `WRITEV` per run of
//! contiguous slots; restores as one `READV` per run of contiguous slots
//! they read, each its own operation (answered as soon as its read is in,
//! not after the slowest of the submission, so that its caller's next call
//! joins the next submission), all in one system call. No timer: an idle
//! backend adds no latency, and a busy one turns many small operations
//! into a few large ones.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pagebackup_async::Outstanding;
use pagebackup_core::raw::ReadPlan;
use pagebackup_core::{BackupBackend, BackupFlags, BatchError, Handle, Interrupt, Operation, PAGE_SIZE, Page, Result};
use tokio::sync::oneshot;

use super::driver::{Completion, Orphan, libc_iovec::Iovec, readv, result_error};
use super::{Inner, PAGE, WriteBufs, Written, iovec};
use crate::runs::read_sync;

/// What a gathered backup gives back: its handle (dropped again unless
/// taken, so that a reply nobody receives leaves nothing stored) and its
/// page.
type BackupReply = (Result<Issued>, Box<Page>);

/// A handle issued to a caller, dropped from the store unless taken.
struct Issued {
    inner: Arc<Inner>,
    handle: Option<Handle>,
}

impl Issued {
    fn take(mut self) -> Handle {
        self.handle.take().expect("taken once")
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // Nobody holds this handle: a live one of ours, so only an I/O
            // failure of the hole punch can refuse it.
            let _ = self.inner.store.drop_handles(&[handle]);
        }
    }
}
/// What a gathered restore gives back: its outcome and its page.
pub(super) type RestoreReply = (Result<()>, Box<Page>);

/// A page waiting to be backed up, and its caller.
pub(super) struct Backup {
    page: Box<Page>,
    caller: Caller,
}

/// Who waits for a backup.
struct Caller {
    idx: u64,
    flags: BackupFlags,
    reply: oneshot::Sender<BackupReply>,
}

/// A page waiting to be restored into, and its caller.
pub(super) struct Restore {
    dst: Box<Page>,
    handle: Handle,
    intr: Interrupt,
    reply: oneshot::Sender<RestoreReply>,
}

struct LaneState<T> {
    waiting: Vec<T>,
    /// Drains are running or gathered operations are in flight: calls queue.
    busy: bool,
    /// Gathered operations in flight, and drains taking items to submit.
    in_flight: usize,
}

/// The queue of one kind of gathered call.
pub(super) struct Lane<T> {
    state: Mutex<LaneState<T>>,
    /// One while busy.
    busy: Outstanding,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            state: Mutex::new(LaneState {
                waiting: Vec::new(),
                busy: false,
                in_flight: 0,
            }),
            busy: Outstanding::new(),
        }
    }
}

impl<T> Lane<T> {
    fn lock(&self) -> MutexGuard<'_, LaneState<T>> {
        // Every update is a few assignments and moves: a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`; says whether the caller is to drain the queue.
    fn push(&self, item: T) -> bool {
        let start = {
            let mut state = self.lock();
            state.waiting.push(item);
            !std::mem::replace(&mut state.busy, true)
        };
        if start {
            self.busy.add();
        }
        start
    }

    /// What is queued, counted in flight until [`submitted`](Self::submitted);
    /// or `None` if nothing is (and no longer busy if nothing is in flight
    /// either).
    fn take(&self) -> Option<Vec<T>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            let idle = state.busy && state.in_flight == 0;
            state.busy &= !idle;
            drop(state);
            if idle {
                self.busy.remove();
            }
            return None;
        }
        state.in_flight += 1;
        Some(std::mem::take(&mut state.waiting))
    }

    /// What [`take`](Self::take) gave is submitted (each operation counted
    /// by [`sent`]); says whether operations are in flight.
    fn submitted(&self) -> bool {
        let mut state = self.lock();
        state.in_flight -= 1;
        state.in_flight > 0
    }

    /// Puts `items` back at the front of the queue.
    fn requeue(&self, items: Vec<T>) {
        if !items.is_empty() {
            self.lock().waiting.splice(0..0, items);
        }
    }

    /// Returns once nothing is queued or in flight.
    pub(super) async fn settle(&self) {
        self.busy.settle().await;
    }
}

/// The gathered calls of one backend.
#[derive(Default)]
pub(super) struct Gather {
    pub(super) backups: Lane<Backup>,
    pub(super) restores: Lane<Restore>,
}

/// Serves `lane`: submits what is queued with `submit` until an operation
/// is in flight (the completion of the last, calling [`completed`], drains
/// again) or the queue is empty.
fn drain<T>(inner: &Arc<Inner>, lane: fn(&Inner) -> &Lane<T>, submit: fn(&Arc<Inner>, Vec<T>)) {
    while let Some(items) = lane(inner).take() {
        submit(inner, items);
        if lane(inner).submitted() {
            return;
        }
    }
}

/// Counts an operation of `lane` submitted.
fn sent<T>(lane: &Lane<T>) {
    lane.lock().in_flight += 1;
}

/// Counts an operation of `lane` completed, and drains the queue if it was
/// the last in flight: what was gathered meanwhile goes out together.
fn completed<T>(inner: &Arc<Inner>, lane: fn(&Inner) -> &Lane<T>, submit: fn(&Arc<Inner>, Vec<T>)) {
    let idle = {
        let mut state = lane(inner).lock();
        state.in_flight -= 1;
        state.in_flight == 0
    };
    if idle {
        drain(inner, lane, submit);
    }
}

fn backups(inner: &Inner) -> &Lane<Backup> {
    &inner.gather.backups
}

fn restores(inner: &Inner) -> &Lane<Restore> {
    &inner.gather.restores
}

/// Backs up `page` in a gathered write. Once polled, the backup is carried
/// out whatever happens to the future: a handle nobody received is
/// dropped again when the write completes.
pub(super) async fn backup(
    inner: &Arc<Inner>,
    page: Box<Page>,
    idx: u64,
    flags: BackupFlags,
) -> (Result<Handle>, Box<Page>) {
    let (reply, answer) = oneshot::channel();
    if backups(inner).push(Backup {
        page,
        caller: Caller { idx, flags, reply },
    }) {
        drain(inner, backups, submit_backups);
    }
    let (issued, page) = answer.await.expect("every gathered backup is answered");
    (issued.map(Issued::take), page)
}

/// Restores `handle` into `dst` in a gathered read. A restore whose future
/// is dropped is interrupted if it was not submitted yet, and its page is
/// freed once read otherwise.
pub(super) async fn restore(inner: &Arc<Inner>, dst: Box<Page>, handle: Handle, intr: Interrupt) -> RestoreReply {
    let (reply, answer) = oneshot::channel();
    if restores(inner).push(Restore {
        dst,
        handle,
        intr,
        reply,
    }) {
        drain(inner, restores, submit_restores);
    }
    answer.await.expect("every gathered restore is answered")
}

/// Submits `queued` backups, one reservation and write per run of them with
/// the same flags.
fn submit_backups(inner: &Arc<Inner>, queued: Vec<Backup>) {
    // A caller gone before its backup was submitted: nothing to do.
    let mut queued = queued.into_iter().filter(|b| !b.caller.reply.is_closed()).peekable();
    while let Some(first) = queued.next() {
        let mut group = vec![first];
        while let Some(next) =
            queued.next_if(|b| b.caller.flags == group[0].caller.flags && group.len() < inner.op_pages)
        {
            group.push(next);
        }
        write_group(inner, group);
    }
}

/// Reserves slots for `group` and submits its writes, or answers the
/// callers if nothing is to be written.
fn write_group(inner: &Arc<Inner>, group: Vec<Backup>) {
    const OP: Operation = Operation::BackupPage;
    let (first_idx, flags) = (group[0].caller.idx, group[0].caller.flags);
    let (pages, callers): (Vec<Box<Page>>, Vec<Caller>) = group.into_iter().map(|b| (b.page, b.caller)).unzip();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let reservation = inner.store.reserve(&refs, first_idx, OP);
    drop(refs);
    let reservation = match reservation {
        Ok(r) if !r.runs().is_empty() => r,
        Ok(r) => {
            // No room: the store says so for the first page.
            let mut handles = Vec::new();
            let result = inner.store.complete(r, Ok(()), flags, &mut handles, OP);
            answer_backups(inner, pages, callers, &handles, result);
            return;
        }
        Err(e) => {
            answer_backups(inner, pages, callers, &[], Err(e));
            return;
        }
    };
    let bufs = inner.writes(pages, reservation, flags);
    sent(backups(inner));
    let owner = Arc::clone(inner);
    let done = Box::new(move |c: Completion| {
        let (bufs, callers) = *c
            .buffers
            .downcast::<(WriteBufs, Vec<Caller>)>()
            .expect("a gathered backup's buffers");
        let outcome = owner.write_outcome(&bufs, &c.results, true);
        let WriteBufs {
            pages,
            reservation,
            flags,
            ..
        } = bufs;
        let mut handles = Vec::new();
        let result = owner.store.complete(reservation, outcome, flags, &mut handles, OP);
        answer_backups(&owner, pages, callers, &handles, result);
        completed(&owner, backups, submit_backups);
    });
    inner.send_writes((bufs, callers), None, done);
}

impl Written for (WriteBufs, Vec<Caller>) {
    fn bufs(&self) -> &WriteBufs {
        &self.0
    }
}

/// Answers the callers of a group whose backup ended with `result`: those
/// of the first `completed` pages get their handles (dropped again if they
/// are gone), the next one the error, and the rest go back to the front of
/// the queue, to be tried again.
fn answer_backups(
    inner: &Arc<Inner>,
    pages: Vec<Box<Page>>,
    callers: Vec<Caller>,
    handles: &[Handle],
    result: Result<(), BatchError>,
) {
    let (done, mut error) = match result {
        Ok(()) => (pages.len(), None),
        Err(e) => (e.completed, Some(e.error.in_op(Operation::BackupPage))),
    };
    let mut again = Vec::new();
    for (k, (page, caller)) in pages.into_iter().zip(callers).enumerate() {
        if k < done {
            let issued = Issued {
                inner: Arc::clone(inner),
                handle: Some(handles[k]),
            };
            // A caller gone drops the handle here.
            let _ = caller.reply.send((Ok(issued), page));
        } else if let Some(error) = error.take() {
            let _ = caller.reply.send((Err(error), page));
        } else {
            again.push(Backup { page, caller });
        }
    }
    backups(inner).requeue(again);
}

/// A restore submitted: its page (a raw pointer, so that no reference to
/// it exists while the kernel writes into it), the plan whose pin keeps its
/// slot, and its caller.
struct Reading {
    slot: u32,
    dst: *mut Page,
    plan: Option<ReadPlan>,
    handle: Handle,
    reply: Option<oneshot::Sender<RestoreReply>>,
}

/// The restores of one gathered `READV` (a run of contiguous slots) and
/// their iovecs, held by the ring's driver until the read completes.
struct Reads {
    items: Vec<Reading>,
    #[allow(dead_code, reason = "the kernel writes through it, by the entry's pointer")]
    iovecs: Vec<Iovec>,
    inner: Arc<Inner>,
}

// SAFETY: the pointers are owned boxes (see `Drop`), used by one thread at a time.
unsafe impl Send for Reads {}

impl Drop for Reads {
    fn drop(&mut self) {
        for item in self.items.drain(..) {
            // SAFETY: each pointer came from Box::into_raw and is freed once, here or in `finish`.
            drop(unsafe { Box::from_raw(item.dst) });
            if let Some(plan) = item.plan {
                self.inner.store.abandon_read(plan);
            }
        }
    }
}

/// Plans `queued` restores, one pin each, and submits them to each shard's
/// ring as one `READV` per run of contiguous slots, each its own operation,
/// a shard's all in one system call.
fn submit_restores(inner: &Arc<Inner>, queued: Vec<Restore>) {
    const OP: Operation = Operation::CopyPage;
    let mut shards: Vec<Vec<Reading>> = (0..inner.drivers.len()).map(|_| Vec::new()).collect();
    for r in queued {
        if r.reply.is_closed() {
            // Its future is gone: nothing was read.
            continue;
        }
        if r.intr.is_interrupted() {
            let _ = r.reply.send((Err(inner.store.interrupted(0, OP).error), r.dst));
            continue;
        }
        let plan = match inner.store.plan_read(&[r.handle], OP) {
            Ok(plan) => plan,
            Err(e) => {
                let _ = r.reply.send((Err(e.error), r.dst));
                continue;
            }
        };
        let Some(segment) = plan.segments().into_iter().next() else {
            // Not live: finishing the empty plan says why.
            let result = inner.store.finish_read(plan, None, &[r.handle], |_| &*r.dst, OP);
            let _ = r.reply.send((result.map_err(|e| e.error), r.dst));
            continue;
        };
        let slot = segment.runs[0].slot;
        let mut dst = r.dst;
        if inner
            .store
            .device(segment.shard)
            .base()
            .staging()
            .copy_out(slot, &mut dst)
        {
            // Staged, not written yet: served from memory.
            let result = inner.store.finish_read(plan, None, &[r.handle], |_| &*dst, OP);
            let _ = r.reply.send((result.map_err(|e| e.error), dst));
            continue;
        }
        shards[segment.shard].push(Reading {
            slot,
            dst: Box::into_raw(dst),
            plan: Some(plan),
            handle: r.handle,
            reply: Some(r.reply),
        });
    }
    for (shard, mut items) in shards.into_iter().enumerate() {
        items.sort_by_key(|r| r.slot);
        let mut ops = Vec::new();
        while !items.is_empty() {
            let mut len = 1;
            while len < items.len()
                && len < inner.op_pages
                && items[len - 1].slot.checked_add(1) == Some(items[len].slot)
            {
                len += 1;
            }
            let rest = items.split_off(len);
            let run = std::mem::replace(&mut items, rest);
            let iovecs: Vec<Iovec> = run.iter().map(|r| iovec(r.dst)).collect();
            let sqe = readv(&iovecs, u64::from(run[0].slot) * PAGE);
            let reads = Box::new(Reads {
                items: run,
                iovecs,
                inner: Arc::clone(inner),
            });
            sent(restores(inner));
            let done: Orphan = Box::new(move |c: Completion| {
                let reads = c.buffers.downcast::<Reads>().expect("a gathered restore's buffers");
                finish_reads(*reads, shard, c.results[0]);
            });
            ops.push((vec![sqe], reads as Box<dyn std::any::Any + Send>, done));
        }
        if !ops.is_empty() {
            // SAFETY: every entry points into its operation's `Reads` (boxed pages and the iovec vector's heap buffer), which the driver keeps until completion.
            unsafe { inner.drivers[shard].submit_handled(ops) };
        }
    }
}

/// Checks and answers each restore of a completed gathered read (short
/// reads finished with `preadv`), then serves the queue.
fn finish_reads(mut reads: Reads, shard: usize, result: i32) {
    const OP: Operation = Operation::CopyPage;
    let inner = Arc::clone(&reads.inner);
    let fd = inner.store.device(shard).base().file.fd();
    let mut items = std::mem::take(&mut reads.items);
    for (at, item) in items.iter_mut().enumerate() {
        // SAFETY: this entry's read completed; the page is ours alone now, and `items` no longer frees it.
        let mut dst = unsafe { Box::from_raw(item.dst) };
        let read = match usize::try_from(result) {
            Ok(done) if done >= (at + 1) * PAGE_SIZE => Ok(()),
            Ok(done) => read_sync(
                fd,
                u64::from(item.slot) * PAGE,
                &mut [&mut *dst],
                done.saturating_sub(at * PAGE_SIZE),
            ),
            Err(_) => Err(result_error(result)),
        };
        let stop = read.err().map(|e| BatchError {
            completed: 0,
            error: inner.store.io_error(OP, e),
        });
        let plan = item.plan.take().expect("each restore finishes once");
        let restored = inner.store.finish_read(plan, stop, &[item.handle], |_| &*dst, OP);
        let reply = item.reply.take().expect("each restore is answered once");
        // A caller gone frees its page here, its slot already unpinned.
        let _ = reply.send((restored.map_err(|e| e.error), dst));
    }
    // Every item is answered: nothing is left for `Drop` to free.
    items.clear();
    drop(reads);
    completed(&inner, restores, submit_restores);
}
