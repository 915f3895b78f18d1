//! [`Driver`]: one io_uring ring per shard, with operations submitted from
//! any task and completed by one reaper thread, which hands each
//! operation's results (and the buffers it kept alive) to the waiting future.
//! A submitter first reaps what completed during its own submission (a
//! buffered read served from the page cache), so such an operation is
//! delivered on the submitting thread without a hop through the reaper's;
//! only operations that wait on a device or on io_uring's workers are
//! delivered by the reaper.
//!
//! **Who owns an operation's buffers.** From [`Driver::submit`] until the
//! last of its entries' completions is reaped, the operation's buffers are
//! owned by the driver's table of operations in flight (inside the ring's
//! shared state), and by nothing else that could free them: not the future
//! that submitted it (which only waits on a channel), not the backend. The
//! thread that reaps (the reaper, or a submitter right after submitting, one
//! at a time under the table's lock) takes them out of the table only once
//! every entry has completed,
//! and hands them to the future, or, if the future is gone, to the
//! operation's orphan handler. The ring's shared state (ring and table) is
//! owned jointly by the [`Driver`] and by the reaper thread, so it lives
//! until the reaper has exited, and the reaper exits only once nothing is
//! in flight.
//!
//! **Dropping the driver** (with its backend) cancels every operation in
//! flight (`IORING_OP_ASYNC_CANCEL`, any request; the kernel finishes those
//! it cannot cancel), then waits for the reaper to reap them all and exit,
//! so that once the drop returns the kernel no longer reads from or writes
//! into any buffer. If the drop runs on the reaper itself (an orphan
//! handler held the last reference to the backend), it cannot wait for its
//! own thread: it asks for the cancel and returns, and the reaper, which
//! still owns the ring and the buffers, reaps what is left and then exits.

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use io_uring::{IoUring, opcode, squeue, types};
use pagebackup_async::Outstanding;
use tokio::sync::oneshot;

use crate::uring::Unavailable;

/// Submission entries of a ring; completions get twice as many.
const ENTRIES: u32 = 256;
/// The `user_data` of the entries that wake the reaper when the driver is
/// dropped (a no-op and the cancel), which deliver nothing.
const WAKE: u64 = u64::MAX;
/// `user_data` is `op << INDEX_BITS | index of the entry in its operation`.
const INDEX_BITS: u32 = 16;

/// What an operation gives back when all its entries have completed.
pub(crate) struct Completion {
    /// Each entry's result, in submission order.
    pub(crate) results: Vec<i32>,
    /// The buffers the operation kept alive while the kernel used them.
    pub(crate) buffers: Box<dyn Any + Send>,
}

/// What to do with a completion whose future is gone.
pub(crate) type Orphan = Box<dyn FnOnce(Completion) + Send>;

struct InFlight {
    remaining: usize,
    results: Vec<i32>,
    buffers: Option<Box<dyn Any + Send>>,
    done: Option<oneshot::Sender<Completion>>,
    orphan: Option<Orphan>,
}

#[derive(Default)]
struct Ops {
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
}

struct Shared {
    ring: IoUring,
    /// Operations submitted and not yet delivered (or handled as orphans).
    in_flight: Outstanding,
    /// Set when the driver is dropped: the reaper exits once nothing is in flight.
    stopping: AtomicBool,
    /// Held while pushing to the submission queue and submitting.
    submitting: Mutex<()>,
    ops: Mutex<Ops>,
}

/// A ring for one file (registered as fixed file 0) and its reaper thread.
///
/// Owns the buffers of every operation in flight until its completion is
/// reaped, and its drop cancels and reaps every operation in flight (see
/// the module's documentation).
pub(crate) struct Driver {
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
}

impl Driver {
    /// A ring for `fd`, or why io_uring cannot be used.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Result<Driver, Unavailable> {
        let ring = IoUring::builder()
            .setup_cqsize(2 * ENTRIES)
            .build(ENTRIES)
            .map_err(Unavailable::refused("setup"))?;
        ring.submitter()
            .register_files(&[fd.as_raw_fd()])
            .map_err(Unavailable::refused("file registration"))?;
        let shared = Arc::new(Shared {
            ring,
            in_flight: Outstanding::new(),
            stopping: AtomicBool::new(false),
            submitting: Mutex::new(()),
            ops: Mutex::new(Ops::default()),
        });
        let reaper = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pagebackup-uring".into())
                .spawn(move || reap(&shared))
                .map_err(Unavailable::refused("reaper thread start"))?
        };
        Ok(Driver {
            shared,
            reaper: Some(reaper),
        })
    }

    /// Returns once no operation is in flight: every completion delivered,
    /// and those whose futures were gone handled.
    pub(crate) async fn settle(&self) {
        self.shared.in_flight.settle().await;
    }

    /// Submits `entries` (built with [`writev`] and [`readv`]), whose
    /// buffers `buffers` owns: the driver keeps them, whatever happens to
    /// the receiver or to the driver itself, until every entry's completion
    /// is reaped. The receiver then gets the completion; if it is dropped
    /// first, `orphan` gets it instead, on the reaper thread.
    ///
    /// # Safety
    /// Every pointer in `entries` must point into `buffers` (heap memory
    /// that does not move when the box moves) or be otherwise valid until
    /// the completion is delivered.
    pub(crate) unsafe fn submit(
        &self,
        entries: Vec<squeue::Entry>,
        buffers: Box<dyn Any + Send>,
        orphan: Orphan,
    ) -> oneshot::Receiver<Completion> {
        let (done, receiver) = oneshot::channel();
        // SAFETY: the caller's guarantee.
        unsafe { self.submit_inner(std::iter::once((entries, buffers, Some(done), orphan))) };
        receiver
    }

    /// Submits operations as [`submit`](Self::submit) does, each with its
    /// entries, buffers and handler, all in one system call, with no future
    /// waiting: each handler gets its operation's completion, on the thread
    /// that reaps it.
    ///
    /// # Safety
    /// As for [`submit`](Self::submit), for each operation.
    pub(crate) unsafe fn submit_handled(&self, ops: Vec<(Vec<squeue::Entry>, Box<dyn Any + Send>, Orphan)>) {
        let ops = ops
            .into_iter()
            .map(|(entries, buffers, handler)| (entries, buffers, None, handler));
        // SAFETY: the caller's guarantee.
        unsafe { self.submit_inner(ops) };
    }

    /// Submits every operation of `ops` (entries, buffers, the sender of
    /// the future waiting if any, the orphan handler) in one system call,
    /// then delivers what completed during it.
    ///
    /// # Safety
    /// As for [`submit`](Self::submit).
    pub(crate) unsafe fn submit_inner(&self, ops: impl Iterator<Item = Submission>) {
        let mut tagged = Vec::new();
        {
            let mut table = self.shared.lock_ops();
            for (entries, buffers, done, orphan) in ops {
                assert!(
                    !entries.is_empty() && entries.len() < 1 << INDEX_BITS,
                    "1..65536 entries per operation"
                );
                self.shared.in_flight.add();
                let op = table.insert(InFlight {
                    remaining: entries.len(),
                    results: vec![0; entries.len()],
                    buffers: Some(buffers),
                    done,
                    orphan: Some(orphan),
                });
                tagged.extend(
                    entries
                        .into_iter()
                        .enumerate()
                        .map(|(k, entry)| entry.user_data(((op as u64) << INDEX_BITS) | k as u64)),
                );
            }
        }
        // SAFETY: the caller guarantees the buffers live until the completion, which is delivered only after the kernel is done.
        unsafe { self.shared.push_and_submit(tagged.into_iter()) };
        // What completed during the submission (reads served from the page
        // cache) is delivered here, without waking the reaper's thread first.
        if let Some(_reaping) = Reaping::enter() {
            self.shared.reap_ready(false);
        }
    }
}

/// An operation to submit: its entries, its buffers, the sender of the
/// future waiting for it (if any) and its orphan handler.
type Submission = (
    Vec<squeue::Entry>,
    Box<dyn Any + Send>,
    Option<oneshot::Sender<Completion>>,
    Orphan,
);

/// Hands `completion` to the future waiting on `done`, if any and still
/// there, and to `orphan` otherwise.
pub(crate) fn deliver(completion: Completion, done: Option<oneshot::Sender<Completion>>, orphan: Orphan) {
    let undelivered = match done {
        Some(done) => done.send(completion).err(),
        None => Some(completion),
    };
    if let Some(completion) = undelivered {
        orphan(completion);
    }
}

/// Submits what is queued. Failing to submit would leave futures waiting
/// forever and buffers pinned: transient errors are retried, anything else aborts.
fn submit(ring: &IoUring) {
    loop {
        match ring.submit() {
            Ok(_) => return,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc_errno::EINTR | libc_errno::EAGAIN | libc_errno::EBUSY)
                ) =>
            {
                std::thread::yield_now()
            }
            Err(e) => {
                eprintln!("pagebackup-file: io_uring submission failed with operations queued: {e}; aborting");
                std::process::abort();
            }
        }
    }
}

/// The errno values `submit` retries.
mod libc_errno {
    pub(super) const EINTR: i32 = 4;
    pub(super) const EAGAIN: i32 = 11;
    pub(super) const EBUSY: i32 = 16;
}

impl Ops {
    fn insert(&mut self, op: InFlight) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(op);
                i
            }
            None => {
                self.slots.push(Some(op));
                self.slots.len() - 1
            }
        }
    }
}

impl Shared {
    /// Queues `entries` and submits them, making room when the queue is full.
    ///
    /// # Safety
    /// Every buffer an entry points to must stay valid until its completion.
    unsafe fn push_and_submit(&self, entries: impl Iterator<Item = squeue::Entry>) {
        let _submitting = self.submitting.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: only this function makes a submission queue, under `submitting`.
        let mut sq = unsafe { self.ring.submission_shared() };
        for entry in entries {
            // SAFETY: the caller keeps the entry's buffers valid.
            while unsafe { sq.push(&entry) }.is_err() {
                // Full: publish what is queued, let the kernel take it, go on.
                sq.sync();
                submit(&self.ring);
                sq.sync();
            }
        }
        drop(sq);
        submit(&self.ring);
    }

    fn lock_ops(&self) -> MutexGuard<'_, Ops> {
        // Every update is a few assignments: a poisoned lock is consistent.
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// Set while this thread reaps (the reaper always; a submitter while it
    /// reaps after its submission): a handler that submits from there
    /// leaves the reaping to the loop already running, so handlers never
    /// nest.
    static REAPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as reaping until dropped.
struct Reaping;

impl Reaping {
    /// `None` if this thread is already reaping.
    fn enter() -> Option<Reaping> {
        (!REAPING.replace(true)).then_some(Reaping)
    }
}

impl Drop for Reaping {
    fn drop(&mut self) {
        REAPING.set(false);
    }
}

impl Shared {
    /// Records the completions in the queue and delivers each operation
    /// whose entries are all in; says how many completions it saw. Any
    /// thread may call it: the queue is read under the `ops` lock.
    /// With `wait` off, it gives up (0) if another thread is reading the
    /// queue: that one delivers what is there.
    fn reap_ready(&self, wait: bool) -> usize {
        let mut finished = Vec::new();
        let mut seen = 0;
        {
            let mut ops = match wait {
                true => self.lock_ops(),
                false => match self.ops.try_lock() {
                    Ok(ops) => ops,
                    Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return 0,
                },
            };
            // SAFETY: the completion queue is only read under the `ops` lock, held here.
            let cq = unsafe { self.ring.completion_shared() };
            for cqe in cq {
                seen += 1;
                if cqe.user_data() == WAKE {
                    continue;
                }
                let (op, k) = (
                    (cqe.user_data() >> INDEX_BITS) as usize,
                    (cqe.user_data() & 0xffff) as usize,
                );
                let Some(Some(entry)) = ops.slots.get_mut(op) else {
                    continue;
                };
                entry.results[k] = cqe.result();
                entry.remaining -= 1;
                if entry.remaining == 0 {
                    finished.push(ops.slots[op].take().expect("just seen"));
                    ops.free.push(op);
                }
            }
        }
        for mut op in finished {
            let completion = Completion {
                results: std::mem::take(&mut op.results),
                buffers: op.buffers.take().expect("buffers stay until delivered"),
            };
            deliver(completion, op.done.take(), op.orphan.take().expect("delivered once"));
            self.in_flight.remove();
        }
        seen
    }
}

/// The reaper: waits for completions, records them, and delivers each
/// operation once all its entries are in, until the driver is dropped and
/// nothing is in flight. Completions that a submitter finds at once (a
/// buffered read served from the page cache completes during its
/// submission) are delivered by that submitter, and the reaper finds
/// nothing to do for them.
fn reap(shared: &Shared) {
    let _reaping = Reaping::enter();
    loop {
        match shared.ring.submitter().submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc_errno::EINTR | libc_errno::EAGAIN | libc_errno::EBUSY)
                ) =>
            {
                // Go on to reap what is there: EBUSY can mean completions
                // wait for room in the completion queue, which only
                // reaping makes.
            }
            Err(e) => {
                eprintln!("pagebackup-file: waiting for io_uring completions failed: {e}; aborting");
                std::process::abort();
            }
        }
        shared.reap_ready(true);
        // Nothing is submitted once `stopping` is set, so zero here stays zero.
        if shared.stopping.load(Ordering::SeqCst) && shared.in_flight.count() == 0 {
            return;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Nothing can be submitted any more (that takes `&self`): have the
        // reaper exit once what is in flight is reaped, cancel it so that
        // this is soon, and wake the reaper in case nothing is in flight.
        self.shared.stopping.store(true, Ordering::SeqCst);
        let cancel = (self.shared.in_flight.count() > 0).then(|| {
            opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(WAKE)
        });
        let wake = opcode::Nop::new().build().user_data(WAKE);
        // SAFETY: a cancel and a NOP point to no buffer.
        unsafe { self.shared.push_and_submit(cancel.into_iter().chain([wake])) };
        let Some(reaper) = self.reaper.take() else {
            return;
        };
        if reaper.thread().id() == std::thread::current().id() {
            // Dropped by an orphan handler on the reaper: it goes on owning
            // the ring and the buffers until it has reaped everything.
            return;
        }
        // Once the reaper has exited, nothing is in flight: the kernel holds
        // no buffer any more.
        if reaper.join().is_err() {
            eprintln!("pagebackup-file: the io_uring reaper thread panicked");
        }
        let _ = self.shared.ring.submitter().unregister_files();
    }
}

/// A `WRITEV` of `iovecs` at `offset` of the registered file.
pub(crate) fn writev(iovecs: &[libc_iovec::Iovec], offset: u64) -> squeue::Entry {
    opcode::Writev::new(types::Fixed(0), iovecs.as_ptr().cast(), iovecs.len() as u32)
        .offset(offset)
        .build()
}

/// A `READV` into `iovecs` from `offset` of the registered file.
pub(crate) fn readv(iovecs: &[libc_iovec::Iovec], offset: u64) -> squeue::Entry {
    opcode::Readv::new(types::Fixed(0), iovecs.as_ptr().cast(), iovecs.len() as u32)
        .offset(offset)
        .build()
}

/// The `struct iovec` io_uring reads, without a libc dependency.
pub(crate) mod libc_iovec {
    /// `struct iovec`: a base pointer and a length.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Iovec {
        /// Start of the buffer.
        pub(crate) base: *mut u8,
        /// Its length in bytes.
        pub(crate) len: usize,
    }

    // SAFETY: an iovec is plain data; what it points to is the owner's to keep valid.
    unsafe impl Send for Iovec {}
}

/// An error from a completion's result (`-errno`).
pub(crate) fn result_error(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}
