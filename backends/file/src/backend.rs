//! [`FileBackend`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, BatchError, Handle, HandleCodec, Interrupt, Operation,
    Origin, PAGE_SIZE, Page, Placement, Result, check_batch_lengths, contiguous_runs,
};
use rustix::io::Errno;

use crate::file::BackingFile;
use crate::io::{Io, ReadRun, WriteRun};
use crate::uring::Rings;
use crate::{FileConfig, IoMode};

const NAME: &str = "file";
const PAGE: u64 = PAGE_SIZE as u64;
/// Staged pages that start a write: 64 pages, 256 KiB written at once.
const STAGE_FLUSH: usize = 64;

/// A page backed up by `backup_page` whose write has not completed.
struct Staged {
    page: Arc<Page>,
    /// Being written by a flush right now.
    in_flight: bool,
    /// Dropped while in flight: the flush frees the slot when it completes.
    dropped: bool,
}

struct State {
    placement: Placement,
    /// Slots whose data is (also) in memory; every other live slot is on the file.
    staged: HashMap<u32, Staged>,
    /// Staged pages not yet handed to a write.
    waiting: usize,
    /// Slots retired by a drop while their write was in flight.
    dropped_in_flight: u64,
}

/// Pages written to a plain file, through io_uring where the kernel allows
/// it, otherwise through `pwritev`/`preadv`.
///
/// - **The file** is an unlinked `O_TMPFILE` (mode 0600) in a directory of the
///   caller's choice, so nothing is left behind and nobody else can open it;
///   where the file system has no `O_TMPFILE`, it is created and unlinked at
///   once. With [`FileConfig::path`], a named file is created exclusively
///   with mode 0600 and removed when the backend is dropped.
/// - **Placement**: consecutive `idx` of one object get consecutive slots
///   where free, so their pages are written, read and punched as one range.
/// - **`backup_page`** copies the page into a staging buffer and returns: the
///   caller's page is free at once. Every 64 staged pages are written, runs
///   of contiguous slots coalesced into one `WRITEV` each, by the thread that
///   staged the 64th; `writeback` writes what is staged at once. A staged
///   page stays in memory until its write has completed, and restores serve
///   it from there; a failed write leaves it staged, to be written by a later
///   flush — never lost. [`flush`](BackupBackend::flush) writes everything
///   staged and reports a failure.
/// - **`backup_pages`** writes straight from the caller's pages (no staging
///   copy) and waits for the writes before returning. Measured on 64 MiB in
///   batches of 64 pages against staging them: 1.4x faster with `pwritev`
///   (4.0 against 2.9 GB/s), 1.25x with io_uring.
/// - **Restores** read runs of contiguous slots with one `READV` each;
///   staged and in-flight pages come from memory.
/// - **Drops** punch holes (`fallocate(PUNCH_HOLE)`), one per contiguous run;
///   a dropped staged page is never written.
/// - **Space**: `ENOSPC` and `EFBIG` become `NoSpace` for the backup that hit
///   them, with no handle issued; so does `max_size`. `bytes_avail` is the
///   smaller of what `max_size` leaves and the file system's free space.
pub struct FileBackend {
    codec: HandleCodec,
    file: BackingFile,
    io: Io,
    /// Why io_uring is not used, when it is not.
    fallback: Option<String>,
    capacity_pages: u32,
    state: RwLock<State>,
    /// Staging pages kept for reuse.
    spare: std::sync::Mutex<Vec<Arc<Page>>>,
    pages_written: AtomicU64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
}

impl FileBackend {
    /// A backend with `config`.
    pub fn new(config: FileConfig) -> Result<Self> {
        let origin = Origin::new(NAME, Operation::Open);
        let file = BackingFile::create(&config).map_err(|source| BackupError::Io { origin, source })?;
        let (io, fallback) = match config.io {
            IoMode::Sync => (Io::Sync, Some("io=sync was asked for".to_string())),
            IoMode::Auto | IoMode::Uring => match Rings::new(file.fd()) {
                Ok(rings) => (Io::Uring(rings), None),
                Err(reason) if config.io == IoMode::Auto => (Io::Sync, Some(reason)),
                Err(reason) => return Err(BackupError::Unsupported { origin, detail: reason }),
            },
        };
        let capacity_pages = config
            .max_size
            .map_or(HandleCodec::MAX_SLOTS, |b| (b / PAGE).min(HandleCodec::MAX_SLOTS));
        Ok(FileBackend {
            codec: HandleCodec::new(),
            file,
            io,
            fallback,
            capacity_pages: capacity_pages as u32,
            state: RwLock::new(State {
                placement: Placement::new(capacity_pages as u32),
                staged: HashMap::new(),
                waiting: 0,
                dropped_in_flight: 0,
            }),
            spare: std::sync::Mutex::new(Vec::new()),
            pages_written: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
        })
    }

    /// The I/O path in use: `"io_uring"` or `"pwritev"`.
    pub fn io_path(&self) -> &'static str {
        self.io.name()
    }

    /// Why io_uring is not in use, if it is not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The named file's path, if the backend was given one.
    pub fn path(&self) -> Option<&Path> {
        self.file.path()
    }

    /// How the file was created: `"O_TMPFILE"`, `"unlinked"` (created, then
    /// unlinked, where `O_TMPFILE` is missing) or `"named"`.
    pub fn file_kind(&self) -> &'static str {
        self.file.kind
    }

    /// The file's descriptor, for inspection (`fstat`).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.fd()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // State updates are single map or table calls, so a panic cannot
        // leave them half-done and a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn live_slot(&self, state: &State, handle: Handle, op: Operation) -> Result<u32> {
        state
            .placement
            .live_slot(&self.codec, handle)
            .ok_or(BackupError::InvalidHandle {
                origin: Origin::new(NAME, op),
                handle,
            })
    }

    fn error(&self, op: Operation, source: io::Error) -> BackupError {
        let origin = Origin::new(NAME, op);
        match source.raw_os_error() {
            Some(code) if code == Errno::NOSPC.raw_os_error() || code == Errno::FBIG.raw_os_error() => {
                BackupError::NoSpace {
                    origin,
                    detail: format!("the file system refused the write: {source}"),
                }
            }
            _ => BackupError::Io { origin, source },
        }
    }

    fn backup_failed(&self, error: BackupError) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        error
    }

    fn full(&self, op: Operation) -> BackupError {
        self.backup_failed(BackupError::NoSpace {
            origin: Origin::new(NAME, op),
            detail: format!("max_size of {} pages reached", self.capacity_pages),
        })
    }

    /// A staging copy of `page`, reusing a spare buffer when one is free.
    fn stage_copy(&self, page: &Page) -> Arc<Page> {
        let spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match spare {
            Some(mut buf) => {
                Arc::get_mut(&mut buf)
                    .expect("spare buffers are unshared")
                    .clone_from(page);
                buf
            }
            None => Arc::new(page.clone()),
        }
    }

    fn recycle(&self, page: Arc<Page>) {
        if Arc::strong_count(&page) == 1 {
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            if spare.len() < 2 * STAGE_FLUSH {
                spare.push(page);
            }
        }
    }

    /// Writes every staged page not yet being written, and settles the
    /// outcome: written pages leave memory, failed ones stay staged.
    fn flush_staged(&self, op: Operation) -> Result<()> {
        let mut batch: Vec<(u32, Arc<Page>)> = {
            let mut state = self.write();
            let State { staged, waiting, .. } = &mut *state;
            let batch: Vec<(u32, Arc<Page>)> = staged
                .iter_mut()
                .filter(|(_, s)| !s.in_flight)
                .map(|(&slot, s)| {
                    s.in_flight = true;
                    (slot, s.page.clone())
                })
                .collect();
            *waiting = 0;
            batch
        };
        if batch.is_empty() {
            return Ok(());
        }
        batch.sort_unstable_by_key(|&(slot, _)| slot);
        let slots: Vec<u32> = batch.iter().map(|&(slot, _)| slot).collect();
        let pages: Vec<&Page> = batch.iter().map(|(_, p)| &**p).collect();
        let runs: Vec<WriteRun<'_>> = contiguous_runs(&slots)
            .map(|run| (u64::from(slots[run.start]) * PAGE, &pages[run]))
            .collect();
        let written = self.io.write(self.file.fd(), &runs);
        drop(runs);
        drop(pages);
        let mut state = self.write();
        for (slot, page) in batch {
            let entry = state
                .staged
                .get_mut(&slot)
                .expect("in-flight pages stay staged until settled");
            match (&written, entry.dropped) {
                (Ok(()), false) => {
                    state.staged.remove(&slot);
                }
                (Err(_), false) => {
                    entry.in_flight = false;
                    state.waiting += 1;
                }
                (_, true) => {
                    state.staged.remove(&slot);
                    // Whatever reached the file is released with the slot.
                    let _ = self.file.punch_hole(u64::from(slot) * PAGE, PAGE);
                    state.placement.table.release(slot);
                    state.dropped_in_flight -= 1;
                }
            }
            self.recycle(page);
        }
        drop(state);
        match written {
            Ok(()) => {
                self.pages_written.fetch_add(slots.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(source) => Err(self.error(op, source)),
        }
    }

    /// Frees slots whose direct write failed.
    fn abandon(&self, slots: &[u32]) {
        let mut state = self.write();
        for run in contiguous_runs(slots) {
            // A failed punch leaves blocks allocated, never data readable:
            // the slots are not live and their next use overwrites them.
            let _ = self
                .file
                .punch_hole(u64::from(slots[run.start]) * PAGE, run.len() as u64 * PAGE);
        }
        for &slot in slots.iter().rev() {
            state.placement.table.release(slot);
        }
    }

    /// Backs up `pages` by writing them straight from the caller's memory.
    fn store(&self, pages: &[&Page], first_idx: u64, handles: &mut Vec<Handle>) -> Result<(), BatchError> {
        let op = Operation::BackupPages;
        let placed = self.write().placement.place_run(first_idx, pages.len());
        let slots: Vec<u32> = placed.iter().map(|&(slot, _)| slot).collect();
        let runs: Vec<WriteRun<'_>> = contiguous_runs(&slots)
            .map(|run| (u64::from(slots[run.start]) * PAGE, &pages[run]))
            .collect();
        if let Err(source) = self.io.write(self.file.fd(), &runs) {
            // Which runs completed is not known: none of the batch is kept.
            self.abandon(&slots);
            return Err(BatchError {
                completed: 0,
                error: self.backup_failed(self.error(op, source)),
            });
        }
        self.pages_written.fetch_add(slots.len() as u64, Ordering::Relaxed);
        handles.extend(
            placed
                .iter()
                .map(|&(slot, generation)| self.codec.encode(slot, generation)),
        );
        if placed.len() < pages.len() {
            return Err(BatchError {
                completed: placed.len(),
                error: self.full(op),
            });
        }
        Ok(())
    }

    /// Restores `handles` into `dsts` in order, stopping at the first
    /// failure or at the interrupt.
    fn load(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
        op: Operation,
    ) -> Result<(), BatchError> {
        let state = self.read();
        let mut stopped = None;
        // Pages to read from the file: (batch index, slot).
        let mut from_file: Vec<(usize, u32)> = Vec::new();
        for (k, (&handle, dst)) in handles.iter().zip(dsts.iter_mut()).enumerate() {
            if intr.is_some_and(Interrupt::is_interrupted) {
                stopped = Some(BatchError {
                    completed: k,
                    error: BackupError::Interrupted {
                        origin: Origin::new(NAME, op),
                    },
                });
                break;
            }
            match self.live_slot(&state, handle, op) {
                Ok(slot) => match state.staged.get(&slot) {
                    Some(staged) => dst.clone_from(&staged.page),
                    None => from_file.push((k, slot)),
                },
                Err(error) => {
                    stopped = Some(BatchError { completed: k, error });
                    break;
                }
            }
        }
        if let Err(source) = self.read_runs(&from_file, dsts) {
            let completed = from_file.first().map_or(0, |&(k, _)| k);
            stopped = Some(BatchError {
                completed,
                error: self.error(op, source),
            });
        }
        drop(state);
        match stopped {
            Some(e) => {
                self.failed_restores.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Reads the pages `from_file` names into their places in `dsts`, one
    /// read per run of batch-consecutive, file-contiguous slots.
    fn read_runs(&self, from_file: &[(usize, u32)], dsts: &mut [&mut Page]) -> io::Result<()> {
        if from_file.is_empty() {
            return Ok(());
        }
        let mut dst_refs: Vec<Option<&mut Page>> = dsts.iter_mut().map(|d| Some(&mut **d)).collect();
        let mut runs: Vec<ReadRun<'_>> = Vec::new();
        let mut start = 0;
        while start < from_file.len() {
            let mut end = start + 1;
            while end < from_file.len()
                && from_file[end].0 == from_file[end - 1].0 + 1
                && from_file[end - 1].1.checked_add(1) == Some(from_file[end].1)
            {
                end += 1;
            }
            let pages: Vec<&mut Page> = from_file[start..end]
                .iter()
                .map(|&(k, _)| dst_refs[k].take().expect("each page once"))
                .collect();
            runs.push((u64::from(from_file[start].1) * PAGE, pages));
            start = end;
        }
        self.io.read(self.file.fd(), &mut runs)
    }
}

impl BackupBackend for FileBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        let op = Operation::BackupPage;
        if self.read().waiting >= STAGE_FLUSH {
            // A write that fails here fails this backup: no handle is issued,
            // and the staged pages stay in memory for a later flush.
            self.flush_staged(op).map_err(|e| self.backup_failed(e))?;
        }
        let staged = self.stage_copy(page);
        let handle = {
            let mut state = self.write();
            let Some((slot, generation)) = state.placement.place(idx) else {
                drop(state);
                self.recycle(staged);
                return Err(self.full(op));
            };
            state.staged.insert(
                slot,
                Staged {
                    page: staged,
                    in_flight: false,
                    dropped: false,
                },
            );
            state.waiting += 1;
            self.codec.encode(slot, generation)
        };
        if flags.writeback {
            // The page is safe in memory whatever happens; a failed write is
            // retried by the next flush, which reports it.
            let _ = self.flush_staged(op);
        }
        Ok(handle)
    }

    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        _flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        self.store(pages, first_idx, handles)
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.load(&[handle], &mut [dst], intr, Operation::CopyPage)
            .map_err(|e| e.error)
    }

    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        check_batch_lengths(NAME, handles.len(), dsts.len())?;
        self.load(handles, dsts, intr, Operation::CopyPages)
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.drop_handles(&[handle]).map_err(|e| e.error)
    }

    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        let op = if handles.len() == 1 {
            Operation::DropHandle
        } else {
            Operation::DropHandles
        };
        let mut state = self.write();
        let mut on_file: Vec<(usize, u32)> = Vec::new();
        let mut stopped = None;
        for (k, &handle) in handles.iter().enumerate() {
            let slot = match self.live_slot(&state, handle, op) {
                Ok(slot) => slot,
                Err(error) => {
                    stopped = Some(BatchError { completed: k, error });
                    break;
                }
            };
            // Retiring invalidates the handle at once (a repeat in this batch
            // is refused) while the slot stays taken until it is settled.
            state.placement.table.retire(slot);
            match state.staged.get_mut(&slot) {
                Some(staged) if staged.in_flight => {
                    staged.dropped = true;
                    state.dropped_in_flight += 1;
                }
                Some(_) => {
                    let staged = state.staged.remove(&slot).expect("just found");
                    state.waiting -= 1;
                    state.placement.table.release(slot);
                    self.recycle(staged.page);
                }
                None => on_file.push((k, slot)),
            }
        }
        let slots: Vec<u32> = on_file.iter().map(|&(_, slot)| slot).collect();
        for run in contiguous_runs(&slots) {
            let (first, len) = (u64::from(slots[run.start]) * PAGE, run.len() as u64 * PAGE);
            if let Err(source) = self.file.punch_hole(first, len) {
                // The handles are gone either way; the blocks stay allocated
                // until the slots are written again.
                let error = BackupError::Io {
                    origin: Origin::new(NAME, op),
                    source,
                };
                stopped.get_or_insert(BatchError {
                    completed: on_file[run.start].0,
                    error,
                });
            }
        }
        for &slot in slots.iter().rev() {
            state.placement.table.release(slot);
        }
        stopped.map_or(Ok(()), Err)
    }

    fn bytes_avail(&self) -> u64 {
        let state = self.read();
        let held = state.placement.table.live();
        let room = (u64::from(self.capacity_pages) - held) * PAGE;
        let staged = state.staged.len() as u64 * PAGE;
        drop(state);
        let free = self.file.free_space().unwrap_or(0).saturating_sub(staged);
        room.min(free)
    }

    fn stats(&self) -> BackupStats {
        let state = self.read();
        let mut stats = BackupStats::default();
        stats.stored_pages = state.placement.table.live() - state.dropped_in_flight;
        stats.original_bytes = stats.stored_pages * PAGE;
        stats.stored_bytes = self.file.allocated_bytes().unwrap_or(0);
        stats.memory_used = state.staged.len() as u64 * PAGE + state.placement.table.metadata_bytes();
        stats.writeback_pages = self.pages_written.load(Ordering::Relaxed);
        stats.failed_backups = self.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.failed_restores.load(Ordering::Relaxed);
        stats.io_path = Some(self.io.name());
        stats
    }

    fn flush(&self) -> Result<()> {
        self.flush_staged(Operation::Flush)
    }
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("FileBackend")
            .field("io", &self.io.name())
            .field("fallback_reason", &self.fallback)
            .field("file", &self.file.kind)
            .field("max_pages", &self.capacity_pages)
            .field(
                "stored_pages",
                &(state.placement.table.live() - state.dropped_in_flight),
            )
            .field("staged_pages", &state.staged.len())
            .finish_non_exhaustive()
    }
}
