//! [`AsyncPageArray`]: the async twin of [`PageArray`](pagebackup_core::PageArray).

use std::fmt;
use std::future::Future;
use std::mem;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use pagebackup_core::{BackupError, BackupFlags, BatchError, Counts, Handle, Interrupt, Page, Slot};

use crate::blocking::run_detached;
use crate::cancel::InterruptOnDrop;
use crate::{AsyncBackupBackend, BackedUp};

/// What one position holds.
#[derive(Debug)]
enum Position {
    Resident(Box<Page>),
    Backed(Handle),
    Empty,
    /// Its page or handle is in the batch in flight.
    InFlight,
}

/// A batch handed to the backend, kept in the array until it lands, so that
/// a dropped call loses nothing.
struct InFlight {
    start: usize,
    op: Pin<Box<dyn Future<Output = Landed> + Send>>,
}

/// A finished batch, to be written back into its positions.
enum Landed {
    Backup(BackedUp),
    Restore {
        handles: Vec<Handle>,
        pages: Vec<Box<Page>>,
        /// Pages restored whose handles were dropped: `0..kept` are back.
        kept: usize,
        result: Result<(), BatchError>,
    },
}

impl Landed {
    /// The handles the batch leaves live.
    fn into_live_handles(self) -> Vec<Handle> {
        match self {
            Landed::Backup(backed) => backed.handles,
            Landed::Restore { mut handles, kept, .. } => handles.split_off(kept),
        }
    }
}

/// A buffer of `n` pages, each resident, backed up or empty, backed up into
/// an [`AsyncBackupBackend`] — [`PageArray`](pagebackup_core::PageArray)
/// with async [`backup`](Self::backup) and [`restore`](Self::restore).
///
/// Both keep the sync array's rules: they work in batches of 64 contiguous
/// positions, may stop part-way and keep their progress (a partly backed-up
/// or partly restored array is valid), and the next call resumes. A page's
/// memory is freed once it is backed up; a handle is dropped once its page
/// is back. Page `i` is backed up with `idx = i`.
///
/// **Cancellation.** A call whose future is dropped leaves its batch in
/// flight inside the array, not lost: the next call (or
/// [`settle`](Self::settle)) first waits for that batch and writes its
/// outcome back. A dropped `restore` interrupts its batch, which then stops
/// at a page boundary. Until the batch lands, its positions read as
/// [`Slot::Empty`]. Dropping the array drops its handles, and those its
/// batch in flight, if any, leaves live once it lands: the drops start at once, on the dropping
/// thread, so that they are carried out even if the runtime is dropped
/// right after the array (a drop once polled is carried out); what is left
/// to wait for runs on a task of the current tokio runtime, or to its end on
/// a runtime of its own outside one. If the runtime shuts down before a
/// batch in flight lands, the batch is dropped and undone as any dropped
/// call: a backup by its backend, a restore by releasing its handles.
/// [`purge`](Self::purge) first to know when the backend holds nothing for it.
pub struct AsyncPageArray {
    positions: Vec<Position>,
    backend: Arc<dyn AsyncBackupBackend>,
    in_flight: Option<InFlight>,
}

impl AsyncPageArray {
    /// An array of `n` empty positions, backed up into `backend`.
    pub fn new(n: usize, backend: Arc<dyn AsyncBackupBackend>) -> Self {
        AsyncPageArray {
            positions: (0..n).map(|_| Position::Empty).collect(),
            backend,
            in_flight: None,
        }
    }

    /// An array of `n` resident zero pages.
    pub fn new_zeroed(n: usize, backend: Arc<dyn AsyncBackupBackend>) -> Self {
        AsyncPageArray {
            positions: (0..n).map(|_| Position::Resident(Page::new_boxed())).collect(),
            backend,
            in_flight: None,
        }
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether the array has no positions.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The backend the array backs up into.
    pub fn backend(&self) -> &Arc<dyn AsyncBackupBackend> {
        &self.backend
    }

    /// The state of position `i`, or `None` past the end.
    pub fn slot(&self, i: usize) -> Option<Slot> {
        self.positions.get(i).map(|p| match p {
            Position::Resident(_) => Slot::Resident,
            Position::Backed(_) => Slot::Backed,
            Position::Empty | Position::InFlight => Slot::Empty,
        })
    }

    /// How many positions are in each state.
    pub fn counts(&self) -> Counts {
        pagebackup_core::raw::tally_slots((0..self.len()).map(|i| self.slot(i)))
    }

    /// The page at `i` if it is resident.
    pub fn get(&self, i: usize) -> Option<&Page> {
        match self.positions.get(i)? {
            Position::Resident(page) => Some(page),
            _ => None,
        }
    }

    /// The page at `i`, mutable, if it is resident.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Page> {
        match self.positions.get_mut(i)? {
            Position::Resident(page) => Some(page),
            _ => None,
        }
    }

    /// Puts `page` at position `i`, replacing what was there: a resident
    /// page is freed, a backup is dropped. Fails (changing nothing) if `i` is
    /// past the end or the old backup cannot be dropped.
    pub async fn set(&mut self, i: usize, page: Box<Page>) -> Result<(), BackupError> {
        self.settle().await;
        let Some(position) = self.positions.get_mut(i) else {
            return Err(BackupError::InvalidInput {
                origin: pagebackup_core::Origin::new(self.backend.name(), pagebackup_core::Operation::Maintenance),
                detail: format!("position {i} is past the end of a {}-page array", self.len()),
            });
        };
        // The drop is carried out even if this future is dropped, so the
        // position lets go of the handle first.
        if let Position::Backed(handle) = mem::replace(position, Position::Empty)
            && let Err(error) = self.backend.drop_handle(handle).await
        {
            self.positions[i] = Position::Backed(handle);
            return Err(error);
        }
        self.positions[i] = Position::Resident(page);
        Ok(())
    }

    /// Frees every resident page and drops every backup without restoring,
    /// as [`PageArray::purge`](pagebackup_core::PageArray::purge) does.
    /// Returns how many positions it emptied; a backup whose drop fails
    /// stays (and the first such error is returned).
    pub async fn purge(&mut self) -> Result<usize, BatchError> {
        self.settle().await;
        let mut done = 0;
        let mut backed = Vec::new();
        for (i, position) in self.positions.iter_mut().enumerate() {
            match mem::replace(position, Position::Empty) {
                Position::Resident(_) => done += 1,
                Position::Backed(handle) => backed.push((i, handle)),
                other => *position = other,
            }
        }
        // As in `set`, the positions let go of their handles before the drops.
        let mut first_error = None;
        let mut rest = &backed[..];
        while !rest.is_empty() {
            let handles: Vec<Handle> = rest.iter().map(|&(_, h)| h).collect();
            match self.backend.drop_handles(&handles).await {
                Ok(()) => {
                    done += rest.len();
                    break;
                }
                Err(e) => {
                    let (i, handle) = rest[e.completed];
                    self.positions[i] = Position::Backed(handle);
                    done += e.completed;
                    first_error.get_or_insert(e.error);
                    rest = &rest[e.completed + 1..];
                }
            }
        }
        first_error.map_or(Ok(done), |error| Err(BatchError { completed: done, error }))
    }

    /// Backs up every resident page in place, as
    /// [`PageArray::backup`](pagebackup_core::PageArray::backup) does:
    /// returns how many pages it backed up, and may stop part-way with the
    /// pages backed up so far kept backed up and the rest resident.
    pub async fn backup(&mut self, flags: BackupFlags) -> Result<usize, BatchError> {
        self.settle().await;
        let mut done = 0;
        let mut start = 0;
        while let Some(run) = self.next_run(start, Slot::Resident) {
            start = run.end;
            let pages: Vec<Box<Page>> = run
                .clone()
                .map(|i| match mem::replace(&mut self.positions[i], Position::InFlight) {
                    Position::Resident(page) => page,
                    _ => unreachable!("a run of resident positions"),
                })
                .collect();
            let backend = Arc::clone(&self.backend);
            let first_idx = run.start as u64;
            let (backed_up, result) = self
                .launch(run.start, async move {
                    Landed::Backup(backend.backup_pages(pages, first_idx, flags).await)
                })
                .await;
            done += backed_up;
            if let Err(e) = result {
                return Err(BatchError {
                    completed: done,
                    error: e.error,
                });
            }
        }
        Ok(done)
    }

    /// Restores every backed-up page, dropping each handle once its page is
    /// back, as [`PageArray::restore`](pagebackup_core::PageArray::restore)
    /// does: interrupted (`intr` set, or this future dropped) or failed, it
    /// stops at a page boundary and keeps its progress, and the next call
    /// resumes. A flag passed in is set if this future is dropped.
    pub async fn restore(&mut self, intr: Option<&Interrupt>) -> Result<usize, BatchError> {
        self.settle().await;
        let intr = intr.cloned().unwrap_or_default();
        let on_drop = InterruptOnDrop::new(Some(intr.clone()));
        let mut done = 0;
        let mut start = 0;
        while let Some(run) = self.next_run(start, Slot::Backed) {
            start = run.end;
            let handles: Vec<Handle> = run
                .clone()
                .map(|i| match mem::replace(&mut self.positions[i], Position::InFlight) {
                    Position::Backed(handle) => handle,
                    _ => unreachable!("a run of backed-up positions"),
                })
                .collect();
            let backend = Arc::clone(&self.backend);
            let intr = intr.clone();
            let (restored, result) = self
                .launch(run.start, async move {
                    // Until the batch lands, its handles are released if it is dropped.
                    let mut held = Held {
                        backend: Arc::clone(&backend),
                        handles,
                        from: 0,
                    };
                    let pages = held.handles.iter().map(|_| Page::new_boxed()).collect();
                    let (copied, pages) = backend.copy_pages(&held.handles, pages, Some(intr)).await;
                    let back = copied.as_ref().map_or_else(|e| e.completed, |()| held.handles.len());
                    // A page whose handle cannot be dropped stays backed up,
                    // to be restored again. The drop is carried out once polled.
                    held.from = back;
                    let dropped = backend.drop_handles(&held.handles[..back]).await;
                    let kept = dropped.as_ref().map_or_else(|e| e.completed, |()| back);
                    Landed::Restore {
                        handles: held.take(),
                        pages,
                        kept,
                        result: copied.and(dropped),
                    }
                })
                .await;
            done += restored;
            if let Err(e) = result {
                on_drop.disarm();
                return Err(BatchError {
                    completed: done,
                    error: e.error,
                });
            }
        }
        on_drop.disarm();
        Ok(done)
    }

    /// Waits for the batch a dropped call left in flight, if any, and
    /// writes its outcome back into the array.
    pub async fn settle(&mut self) {
        self.land().await;
    }

    /// Puts `op`, the batch of the positions from `start`, in flight and
    /// waits for it to land: how many of its items took effect, and how it ended.
    async fn launch(
        &mut self,
        start: usize,
        op: impl Future<Output = Landed> + Send + 'static,
    ) -> (usize, Result<(), BatchError>) {
        self.in_flight = Some(InFlight {
            start,
            op: Box::pin(op),
        });
        self.land().await.expect("a batch was just put in flight")
    }

    /// Waits for the batch in flight and writes it back; `None` if there is none.
    async fn land(&mut self) -> Option<(usize, Result<(), BatchError>)> {
        let in_flight = self.in_flight.as_mut()?;
        let landed = in_flight.op.as_mut().await;
        let start = in_flight.start;
        // No await from here on: the outcome is written back whole.
        self.in_flight = None;
        Some(match landed {
            Landed::Backup(BackedUp { pages, handles, result }) => {
                for (k, page) in pages.into_iter().enumerate() {
                    self.positions[start + k] = match handles.get(k) {
                        Some(&handle) => Position::Backed(handle),
                        None => Position::Resident(page),
                    };
                }
                (handles.len(), result)
            }
            Landed::Restore {
                handles,
                pages,
                kept,
                result,
            } => {
                for (k, (page, handle)) in pages.into_iter().zip(handles).enumerate() {
                    self.positions[start + k] = if k < kept {
                        Position::Resident(page)
                    } else {
                        Position::Backed(handle)
                    };
                }
                (kept, result)
            }
        })
    }

    /// The next run of at most `ARRAY_BATCH` positions in state `want`, from `start`.
    fn next_run(&self, start: usize, want: Slot) -> Option<Range<usize>> {
        pagebackup_core::raw::next_slot_run(self.len(), start, want, |i| self.slot(i))
    }
}

/// Drops every one of `handles` that the backend still holds, going on past
/// failures (a refused handle is one it does not hold).
async fn drop_every(backend: &dyn AsyncBackupBackend, handles: &[Handle]) {
    let mut rest = handles;
    while let Err(e) = backend.drop_handles(rest).await {
        rest = &rest[e.completed + 1..];
    }
}

/// The handles of a restore batch in flight, from `from` on released if
/// the batch is dropped before it lands (the runtime running it shut down).
struct Held {
    backend: Arc<dyn AsyncBackupBackend>,
    handles: Vec<Handle>,
    from: usize,
}

impl Held {
    /// The handles, no longer to be released.
    fn take(mut self) -> Vec<Handle> {
        mem::take(&mut self.handles)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.from < self.handles.len() {
            release(&self.backend, self.handles.split_off(self.from));
        }
    }
}

/// Drops `handles` from `backend` with no caller to await it (see [`run_detached`]).
fn release(backend: &Arc<dyn AsyncBackupBackend>, handles: Vec<Handle>) {
    let backend = Arc::clone(backend);
    run_detached(async move { drop_every(&*backend, &handles).await });
}

impl Drop for AsyncPageArray {
    fn drop(&mut self) {
        let handles: Vec<Handle> = self
            .positions
            .iter()
            .filter_map(|p| match p {
                Position::Backed(handle) => Some(*handle),
                _ => None,
            })
            .collect();
        if !handles.is_empty() {
            release(&self.backend, handles);
        }
        if let Some(in_flight) = self.in_flight.take() {
            let backend = Arc::clone(&self.backend);
            run_detached(async move {
                let handles = in_flight.op.await.into_live_handles();
                drop_every(&*backend, &handles).await;
            });
        }
    }
}

impl fmt::Debug for AsyncPageArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPageArray")
            .field("len", &self.len())
            .field("counts", &self.counts())
            .field("in_flight", &self.in_flight.is_some())
            .field("backend", &self.backend.name())
            .finish()
    }
}
