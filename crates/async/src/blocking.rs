//! Work that outlives the future that asked for it: [`BlockingJobs`] runs
//! sync jobs on tokio's blocking pool and keeps count of those whose futures
//! are gone, and [`Outstanding`] counts operations in flight and waits for
//! none to be left.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use pagebackup_core::{BackupBackend, BatchError, Handle};
use tokio::sync::{Notify, oneshot};

/// A count of operations in flight that can be waited on until it is zero,
/// from any runtime or several.
#[derive(Debug, Default)]
pub struct Outstanding {
    count: AtomicUsize,
    idle: Notify,
}

impl Outstanding {
    /// No operation in flight.
    pub fn new() -> Self {
        Outstanding::default()
    }

    /// One more operation in flight.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// One operation less in flight; wakes the waiters if it was the last.
    pub fn remove(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// How many operations are in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Returns once no operation is in flight.
    pub async fn settle(&self) {
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Sync jobs run on tokio's blocking pool on behalf of futures that may be
/// dropped, or whose runtime may shut down, before the job ends.
///
/// - [`run`](Self::run) runs a job on the blocking pool of the current
///   runtime and returns its output. Outside a runtime, or when the runtime
///   refuses or cancels the job (it is shutting down), the job runs on the
///   awaiting thread instead. A panic of the job is resumed in the awaiting
///   task.
/// - A job whose future is dropped after its first poll is *orphaned*: it
///   still runs to its end if the pool starts it, and its output is then
///   dropped on the thread that finished it, so an output that undoes
///   itself when dropped (handles to drop) is undone there. A job the pool
///   drops unstarted (runtime shut down) is dropped whole, so a job that
///   must happen puts its work in a value whose `Drop` does it.
/// - [`drop_handles`](Self::drop_handles) queues its drop for one blocking
///   job that carries out every drop queued meanwhile, one after another:
///   however many drops are in flight, they take one blocking thread, not
///   one each (a thread per drop left the runtime's workers a small share
///   of two cores while each punched its hole).
/// - [`settle`](Self::settle) returns once every orphaned job has ended and
///   its output is dropped, and every queued drop is carried out: this is
///   how a backend's `flush` knows that cancelled work is undone, even
///   after the runtime that ran it shut down.
#[derive(Debug, Default)]
pub struct BlockingJobs {
    orphans: Arc<Outstanding>,
    drops: Arc<Serial>,
}

/// A job of a [`Serial`] queue.
type SerialJob = Box<dyn FnOnce() + Send>;

/// Jobs run one after another by one blocking job: a job queued while
/// none runs starts one at once on the blocking pool of the current
/// runtime; those queued while it runs are run by it next, without another
/// thread hand-off. However many jobs are in flight, they take one
/// blocking thread, not one each.
///
/// A queued job is always run: by the blocking job, or, where the runtime
/// drops that job unstarted (it shut down) or there is no runtime, on the
/// thread that dropped it or queued the job. A job that panics does not
/// stop the others: its panic is caught and dropped, so a job whose caller
/// wants its outcome sends itself the outcome, panic included.
#[derive(Default)]
pub struct Serial {
    waiting: Mutex<(Vec<SerialJob>, bool)>,
    /// One while the blocking job runs or is due to.
    busy: Outstanding,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial")
            .field("busy", &self.busy.count())
            .finish_non_exhaustive()
    }
}

impl Serial {
    /// An empty queue.
    pub fn new() -> Self {
        Serial::default()
    }

    /// Queues `job`, starting the blocking job that runs the queue if none
    /// runs (see the type).
    pub fn push(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let start = {
            let mut waiting = lock(&self.waiting);
            waiting.0.push(Box::new(job));
            !std::mem::replace(&mut waiting.1, true)
        };
        if !start {
            return;
        }
        self.busy.add();
        let drainer = Drainer(Arc::clone(self));
        match tokio::runtime::Handle::try_current() {
            // A runtime shutting down drops the job here, which drains then.
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(drainer))),
            Err(_) => drop(drainer),
        }
    }

    /// Returns once no job is queued or running.
    pub async fn settle(&self) {
        self.busy.settle().await;
    }

    /// Runs every queued job, those queued meanwhile included, then marks
    /// the queue idle.
    fn drain(&self) {
        loop {
            let jobs = {
                let mut waiting = lock(&self.waiting);
                if waiting.0.is_empty() {
                    waiting.1 = false;
                    drop(waiting);
                    self.busy.remove();
                    return;
                }
                std::mem::take(&mut waiting.0)
            };
            for job in jobs {
                // Each job reports its own outcome; the next ones still run.
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        }
    }
}

/// The job draining a [`Serial`] queue: it drains the queue where it is
/// dropped, run by the blocking pool or dropped unstarted by a runtime
/// shutting down, so that a queued job is always run.
struct Drainer(Arc<Serial>);

impl Drop for Drainer {
    fn drop(&mut self) {
        self.0.drain();
    }
}

impl BlockingJobs {
    /// No job yet.
    pub fn new() -> Self {
        BlockingJobs::default()
    }

    /// Runs `job` on the blocking pool and returns its output (see the type).
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return job();
        };
        let state = Arc::new(JobState {
            flags: Mutex::new(Flags::default()),
            orphans: Arc::clone(&self.orphans),
        });
        let job = Arc::new(Mutex::new(Some(job)));
        // The job, then its ticket: dropped unstarted, the job goes first.
        let queued = Queued {
            job: Arc::clone(&job),
            ticket: Ticket(Arc::clone(&state)),
        };
        let waiting = Waiting(state);
        let ran = runtime
            .spawn_blocking(move || {
                let queued = queued;
                let out = take(&queued.job).map(|job| job());
                Tracked {
                    out,
                    ticket: queued.ticket,
                }
            })
            .await;
        let out = match ran {
            Ok(Tracked { out, ticket }) => {
                drop(ticket);
                out
            }
            Err(e) if e.is_panic() => resume_unwind(e.into_panic()),
            Err(_) => None,
        };
        // The job ended (its ticket is dropped): this future no longer orphans it.
        drop(waiting);
        // Refused or cancelled by a runtime shutting down: run it here.
        out.unwrap_or_else(|| take(&job).expect("a job runs once")())
    }

    /// Drops `handles` from `backend` on the blocking pool (a drop can wait
    /// on storage), in the one job that carries out, each with its own
    /// outcome, the drops queued while it runs. Once this future is polled
    /// the drop is carried out, whatever happens to the future or its
    /// runtime: on the pool, where the pool drops the unstarted job, or on
    /// the calling thread outside a runtime. A panic of the backend is
    /// resumed in the awaiting task.
    pub async fn drop_handles<B: BackupBackend + ?Sized + 'static>(
        &self,
        backend: &Arc<B>,
        handles: &[Handle],
    ) -> Result<(), BatchError> {
        let job = HandlesToDrop::new(backend, handles.to_vec());
        let (reply, answer) = oneshot::channel();
        // A caller gone has its drop carried out all the same.
        self.drops
            .push(move || drop(reply.send(catch_unwind(AssertUnwindSafe(|| job.drop_now())))));
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => unreachable!("every queued drop is answered before the queue lets it go"),
        }
    }

    /// How many jobs are orphaned and not yet ended.
    pub fn orphans(&self) -> usize {
        self.orphans.count()
    }

    /// Returns once no orphaned job is left and every queued drop is
    /// carried out (see the type).
    pub async fn settle(&self) {
        self.orphans.settle().await;
        self.drops.settle().await;
    }
}

/// Takes a queued job out, once.
fn take<F>(job: &Mutex<Option<F>>) -> Option<F> {
    lock(job).take()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is an assignment: a poisoned lock is consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Flags {
    /// The awaiting future is gone, and the job counted as orphaned.
    orphaned: bool,
    /// The job ended: its output taken, dropped, or the job dropped unstarted.
    ended: bool,
}

struct JobState {
    flags: Mutex<Flags>,
    orphans: Arc<Outstanding>,
}

/// What the blocking pool holds: the job and, dropped after it, its ticket.
struct Queued<F> {
    job: Arc<Mutex<Option<F>>>,
    ticket: Ticket,
}

/// The job's output and, dropped after it, its ticket.
struct Tracked<T> {
    out: Option<T>,
    ticket: Ticket,
}

/// Ends the job when dropped, after its output.
struct Ticket(Arc<JobState>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut flags = lock(&self.0.flags);
        flags.ended = true;
        if flags.orphaned {
            self.0.orphans.remove();
        }
    }
}

/// Orphans the job if the awaiting future is dropped before it ended.
struct Waiting(Arc<JobState>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut flags = lock(&self.0.flags);
        if !flags.ended && !flags.orphaned {
            flags.orphaned = true;
            self.0.orphans.add();
        }
    }
}

/// Handles to be dropped from `backend` unless [`take`](Self::take)n: the
/// handles of a backup until its future receives them, or those of a drop
/// until its job runs.
pub(crate) struct HandlesToDrop<B: BackupBackend + ?Sized> {
    backend: Arc<B>,
    handles: Vec<Handle>,
}

impl<B: BackupBackend + ?Sized> HandlesToDrop<B> {
    pub(crate) fn new(backend: &Arc<B>, handles: Vec<Handle>) -> Self {
        HandlesToDrop {
            backend: Arc::clone(backend),
            handles,
        }
    }

    /// The handles to be dropped, to add to.
    pub(crate) fn handles_mut(&mut self) -> &mut Vec<Handle> {
        &mut self.handles
    }

    /// The handles, no longer to be dropped.
    pub(crate) fn take(mut self) -> Vec<Handle> {
        std::mem::take(&mut self.handles)
    }

    /// Drops the handles now.
    pub(crate) fn drop_now(self) -> Result<(), BatchError> {
        let backend = Arc::clone(&self.backend);
        backend.drop_handles(&self.take())
    }
}

impl<B: BackupBackend + ?Sized> Drop for HandlesToDrop<B> {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            // Nothing can be reported from here: these handles are live and
            // ours, so only an I/O failure of the backend can refuse them.
            let _ = self.backend.drop_handles(&self.handles);
        }
    }
}

/// Runs `fut` without anyone awaiting it: polls it once here (a drop is
/// carried out once polled), then leaves the rest to the current runtime,
/// or, outside one, runs it to its end on a runtime of its own.
pub(crate) fn run_detached(fut: impl Future<Output = ()> + Send + 'static) {
    let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(fut);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            if fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
                drop(runtime.spawn(fut));
            }
        }
        Err(_) => match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime.block_on(fut),
            // No runtime to be had (out of threads or descriptors): go as
            // far as the future goes without one.
            Err(_) => drop(fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    #[test]
    fn runs_inline_outside_a_runtime_and_after_shutdown() {
        let jobs = BlockingJobs::new();
        let outside = std::pin::pin!(jobs.run(|| 7));
        let mut outside = outside;
        assert_eq!(
            outside.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(7)
        );
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let handle = runtime.handle().clone();
        drop(runtime);
        assert_eq!(handle.block_on(jobs.run(|| 8)), 8);
        assert_eq!(jobs.orphans(), 0);
    }

    /// Jobs queued while one runs are run by the same blocking thread, in
    /// order; a panicking job does not stop the next; outside a runtime,
    /// and on a runtime shut down, the queue runs where the job is queued
    /// or dropped.
    #[test]
    fn serial_jobs_run_in_order_on_one_thread_wherever_the_runtime_is() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let serial = Arc::new(Serial::new());
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (go, wait) = std::sync::mpsc::channel::<()>();
        runtime.block_on(async {
            let first = Arc::clone(&ran);
            serial.push(move || {
                wait.recv().unwrap();
                lock(&first).push((0, std::thread::current().id()));
            });
            serial.push(|| panic!("a job that panics"));
            for k in 1..4 {
                let ran = Arc::clone(&ran);
                serial.push(move || lock(&ran).push((k, std::thread::current().id())));
            }
            go.send(()).unwrap();
            serial.settle().await;
        });
        let ran = std::mem::take(&mut *lock(&ran));
        assert_eq!(ran.iter().map(|&(k, _)| k).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(ran.iter().all(|&(_, thread)| thread == ran[0].1), "{ran:?}");
        assert_ne!(ran[0].1, std::thread::current().id());

        let here = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&here);
        serial.push(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(here.load(Ordering::SeqCst), 1, "outside a runtime, run at once");
        let handle = runtime.handle().clone();
        runtime.shutdown_background();
        let counted = Arc::clone(&here);
        handle.block_on(async {
            serial.push(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })
        });
        assert_eq!(
            here.load(Ordering::SeqCst),
            2,
            "a runtime shut down drops the job, which runs then"
        );
    }

    #[test]
    fn an_orphaned_job_is_counted_until_its_output_is_dropped() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let jobs = Arc::new(BlockingJobs::new());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let out = Counted(Arc::clone(&dropped));
        runtime.block_on(async {
            let mut fut = Box::pin(jobs.run(move || {
                wait.recv().unwrap();
                out
            }));
            assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
            drop(fut);
        });
        assert_eq!(jobs.orphans(), 1);
        go.send(()).unwrap();
        runtime.block_on(jobs.settle());
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the output is dropped before settle returns"
        );
        assert_eq!(jobs.orphans(), 0);
    }
}
