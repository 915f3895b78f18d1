//! [`Gather`]: the single-page calls of a [`SyncAdapter`](crate::SyncAdapter)
//! that runs on the blocking pool, gathered into one blocking job while
//! one is running.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pagebackup_core::{BackupBackend, BackupFlags, Handle, Interrupt, Operation, Page, Result};
use tokio::sync::oneshot;

use crate::blocking::{HandlesToDrop, Outstanding};
use crate::cpu::cpu_slot;

/// What a gathered backup gives back: its handle (dropped again unless
/// taken) and its page.
pub(crate) type BackupReply<B> = (Result<HandlesToDrop<B>>, Box<Page>);

/// What a gathered restore gives back: its outcome and its page.
pub(crate) type RestoreReply = (Result<()>, Box<Page>);

/// One single-page call waiting for a blocking job.
enum Item<B: BackupBackend + ?Sized> {
    Backup {
        page: Box<Page>,
        idx: u64,
        flags: BackupFlags,
        reply: oneshot::Sender<BackupReply<B>>,
    },
    Restore {
        dst: Box<Page>,
        handle: Handle,
        intr: Interrupt,
        reply: oneshot::Sender<RestoreReply>,
    },
}

/// The calls waiting, and whether a job is serving them.
struct State<B: BackupBackend + ?Sized> {
    items: Vec<Item<B>>,
    draining: bool,
}

/// Single-page calls gathered into blocking jobs, with no timer: a call
/// that finds no job running starts one at once (an idle adapter adds no
/// latency); calls made while a job runs wait in a queue, and the job takes
/// the whole queue when it is done with what it had, so that under load one
/// thread hand-off serves many calls. Backups with consecutive `idx` and the
/// same flags go to the backend as one `backup_pages`; restores are served
/// one by one, each with its own interrupt.
///
/// A call whose future is dropped is still served: a backup's handle is
/// then dropped again (its reply carries a [`HandlesToDrop`]), a restore's
/// page freed. A job the runtime drops unstarted (it shut down) serves the
/// queue where it is dropped, and outside a runtime the caller serves it, so
/// no call is left waiting. [`settle`](Self::settle) waits for every job.
pub(crate) struct Gather<B: BackupBackend + ?Sized> {
    backend: Arc<B>,
    state: Arc<Mutex<State<B>>>,
    jobs: Arc<Outstanding>,
    /// Whether a job waits for a CPU slot before it starts.
    cpu_bound: bool,
}

impl<B: BackupBackend + ?Sized> fmt::Debug for Gather<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("queued", &lock(&self.state).items.len())
            .field("jobs", &self.jobs.count())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock leaves a queue that is still a queue.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: BackupBackend + ?Sized + 'static> Gather<B> {
    pub(crate) fn new(backend: &Arc<B>, cpu_bound: bool) -> Self {
        Gather {
            cpu_bound,
            backend: Arc::clone(backend),
            state: Arc::new(Mutex::new(State {
                items: Vec::new(),
                draining: false,
            })),
            jobs: Arc::new(Outstanding::new()),
        }
    }

    /// Backs up `page` in a gathered job.
    pub(crate) async fn backup(&self, page: Box<Page>, idx: u64, flags: BackupFlags) -> BackupReply<B> {
        let (reply, answer) = oneshot::channel();
        self.submit(Item::Backup {
            page,
            idx,
            flags,
            reply,
        });
        answer
            .await
            .unwrap_or_else(|_| panic!("{}: the backend panicked during a backup", self.backend.name()))
    }

    /// Restores `handle` into `dst` in a gathered job.
    pub(crate) async fn restore(&self, dst: Box<Page>, handle: Handle, intr: Interrupt) -> RestoreReply {
        let (reply, answer) = oneshot::channel();
        self.submit(Item::Restore {
            dst,
            handle,
            intr,
            reply,
        });
        answer
            .await
            .unwrap_or_else(|_| panic!("{}: the backend panicked during a restore", self.backend.name()))
    }

    /// Returns once no gathered job is queued or running.
    pub(crate) async fn settle(&self) {
        self.jobs.settle().await;
    }

    fn submit(&self, item: Item<B>) {
        let start = {
            let mut state = lock(&self.state);
            state.items.push(item);
            !std::mem::replace(&mut state.draining, true)
        };
        if !start {
            return;
        }
        self.jobs.add();
        let drain = Drain {
            backend: Arc::clone(&self.backend),
            state: Arc::clone(&self.state),
            jobs: Arc::clone(&self.jobs),
        };
        match tokio::runtime::Handle::try_current() {
            // The job's work is the drain's drop: on a blocking thread, or
            // wherever the runtime drops it unstarted.
            Ok(runtime) if !self.cpu_bound => drop(runtime.spawn_blocking(move || drop(drain))),
            // The same once a CPU slot is free; a task the runtime drops
            // while it waits drops the drain, which serves the queue there.
            Ok(runtime) => drop(runtime.clone().spawn(async move {
                let slot = cpu_slot().await;
                drop(runtime.spawn_blocking(move || {
                    drop(drain);
                    drop(slot);
                }));
            })),
            Err(_) => drop(drain),
        }
    }
}

/// Serves the queue until it is empty, when dropped.
struct Drain<B: BackupBackend + ?Sized> {
    backend: Arc<B>,
    state: Arc<Mutex<State<B>>>,
    jobs: Arc<Outstanding>,
}

impl<B: BackupBackend + ?Sized> Drop for Drain<B> {
    fn drop(&mut self) {
        loop {
            let items = {
                let mut state = lock(&self.state);
                if state.items.is_empty() {
                    state.draining = false;
                    break;
                }
                std::mem::take(&mut state.items)
            };
            // A panic of the backend drops the round's replies unsent, and
            // their callers panic; the queue goes on being served.
            let _ = catch_unwind(AssertUnwindSafe(|| serve(&self.backend, items)));
        }
        self.jobs.remove();
    }
}

/// A backup waiting in a round.
struct Backup<B: BackupBackend + ?Sized> {
    page: Box<Page>,
    idx: u64,
    flags: BackupFlags,
    reply: oneshot::Sender<BackupReply<B>>,
}

fn serve<B: BackupBackend + ?Sized>(backend: &Arc<B>, items: Vec<Item<B>>) {
    let mut backups: Vec<Backup<B>> = Vec::new();
    for item in items {
        match item {
            Item::Backup {
                page,
                idx,
                flags,
                reply,
            } => backups.push(Backup {
                page,
                idx,
                flags,
                reply,
            }),
            Item::Restore {
                mut dst,
                handle,
                intr,
                reply,
            } => {
                let result = backend.copy_page(&mut dst, handle, Some(&intr));
                // A caller gone frees its page here.
                let _ = reply.send((result, dst));
            }
        }
    }
    let mut backups = backups.into_iter().peekable();
    while let Some(first) = backups.next() {
        let mut run = vec![first];
        while let Some(next) = backups.next_if(|b| {
            let last = run.last().expect("a run has a first backup");
            b.flags == last.flags && Some(b.idx) == last.idx.checked_add(1)
        }) {
            run.push(next);
        }
        back_up_run(backend, run);
    }
}

/// Backs up a run of consecutive pages in one `backup_pages`; after a
/// failure, the rest of the run is tried again on its own.
fn back_up_run<B: BackupBackend + ?Sized>(backend: &Arc<B>, mut run: Vec<Backup<B>>) {
    while !run.is_empty() {
        // Dropped again if the backend panics part-way.
        let mut made = HandlesToDrop::new(backend, Vec::with_capacity(run.len()));
        let result = {
            let pages: Vec<&Page> = run.iter().map(|b| &*b.page).collect();
            backend.backup_pages(&pages, run[0].idx, run[0].flags, made.handles_mut())
        };
        let handles = made.take();
        let (done, mut failed) = match result {
            Ok(()) => (run.len(), None),
            Err(e) => (e.completed, Some(e.error.in_op(Operation::BackupPage))),
        };
        let rest = run.split_off((done + usize::from(failed.is_some())).min(run.len()));
        for (k, backup) in run.into_iter().enumerate() {
            let outcome = match handles.get(k) {
                Some(&handle) => Ok(HandlesToDrop::new(backend, vec![handle])),
                None => Err(failed.take().expect("one page of the run failed")),
            };
            // A caller gone drops its handle here.
            let _ = backup.reply.send((outcome, backup.page));
        }
        run = rest;
    }
}
