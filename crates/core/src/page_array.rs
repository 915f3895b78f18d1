//! [`PageArray`]: a buffer's pages, one tagged word each, backed up in place
//! and restored again — the userspace form of the kernel's `ttm_tt` with
//! `ttm_pool_backup()` and `ttm_pool_restore_and_alloc()`.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{BackupBackend, BackupError, BackupFlags, BatchError, Handle, Interrupt, Page, PageState, PageWord};

/// What one position of a [`PageArray`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The page is in memory.
    Resident,
    /// The page is backed up; its memory was freed.
    Backed,
    /// No page: never populated, or purged.
    Empty,
}

/// How many positions of a [`PageArray`] are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pages in memory.
    pub resident: usize,
    /// Pages backed up.
    pub backed: usize,
    /// Positions with no page.
    pub empty: usize,
}

/// A buffer of `n` pages, each one word: a resident page, a backup handle,
/// or empty ([`PageWord`]).
///
/// [`backup`](Self::backup) moves resident pages into the backend and frees
/// their memory as soon as they are copied; it may stop part-way (the backend
/// is full, a failure), which leaves a valid, partly backed-up array.
/// [`restore`](Self::restore) brings backed-up pages back and drops each
/// handle once its page is back; interrupted or failed, it keeps its progress
/// and the next call resumes. Dropping the array drops its handles, so the
/// backend holds nothing for it afterwards.
///
/// Page `i` is backed up with `idx = i`, so a backend can keep one array's
/// pages together.
pub struct PageArray {
    words: Box<[PageWord]>,
    backend: Arc<dyn BackupBackend>,
}

// The array owns the pages its resident words point to (allocated as
// `Box<Page>` and freed only by the array), so moving or sharing it between
// threads moves or shares plain owned data.
//
// SAFETY: `Page` is plain bytes, Send and Sync; the backend is Send + Sync.
unsafe impl Send for PageArray {}
// SAFETY: shared access only reads pages (`get`); mutation needs `&mut self`.
unsafe impl Sync for PageArray {}

impl PageArray {
    /// An array of `n` empty positions, backed up into `backend`.
    pub fn new(n: usize, backend: Arc<dyn BackupBackend>) -> Self {
        PageArray {
            words: vec![PageWord::EMPTY; n].into_boxed_slice(),
            backend,
        }
    }

    /// An array of `n` resident zero pages.
    pub fn new_zeroed(n: usize, backend: Arc<dyn BackupBackend>) -> Self {
        let mut array = Self::new(n, backend);
        for word in array.words.iter_mut() {
            *word = resident_word(Page::new_boxed());
        }
        array
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the array has no positions.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The backend the array backs up into.
    pub fn backend(&self) -> &Arc<dyn BackupBackend> {
        &self.backend
    }

    /// The state of position `i`, or `None` past the end.
    pub fn slot(&self, i: usize) -> Option<Slot> {
        self.words.get(i).map(|w| match w.view() {
            PageState::Resident(_) => Slot::Resident,
            PageState::Backed(_) => Slot::Backed,
            PageState::Empty => Slot::Empty,
        })
    }

    /// The raw tagged words, for FFI or inspection.
    pub fn words(&self) -> &[PageWord] {
        &self.words
    }

    /// How many positions are in each state.
    pub fn counts(&self) -> Counts {
        crate::raw::tally_slots((0..self.len()).map(|i| self.slot(i)))
    }

    /// The page at `i` if it is resident.
    pub fn get(&self, i: usize) -> Option<&Page> {
        match self.words.get(i)?.view() {
            // The array frees its pages only through `&mut self`.
            // SAFETY: resident words point to live pages this array owns (from `resident_word`).
            PageState::Resident(page) => Some(unsafe { page.as_ref() }),
            _ => None,
        }
    }

    /// The page at `i`, mutable, if it is resident.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Page> {
        match self.words.get(i)?.view() {
            // SAFETY: as in `get`; `&mut self` makes the borrow exclusive.
            PageState::Resident(mut page) => Some(unsafe { page.as_mut() }),
            _ => None,
        }
    }

    /// The resident pages with their positions.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Page)> {
        (0..self.len()).filter_map(|i| self.get(i).map(|p| (i, p)))
    }

    /// The resident pages with their positions, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Page)> {
        self.words.iter().enumerate().filter_map(|(i, w)| match w.view() {
            // `&mut self` is held for the iterator's lifetime.
            // SAFETY: as in `get_mut`; each resident word points to a distinct owned page.
            PageState::Resident(mut page) => Some((i, unsafe { page.as_mut() })),
            _ => None,
        })
    }

    /// Puts `page` at position `i`, replacing what was there: a resident page
    /// is freed, a backup is dropped. Fails (changing nothing) if `i` is past
    /// the end or the old backup cannot be dropped.
    pub fn set(&mut self, i: usize, page: Box<Page>) -> Result<(), BackupError> {
        let Some(&word) = self.words.get(i) else {
            return Err(BackupError::InvalidInput {
                origin: crate::Origin::new(self.backend.name(), crate::Operation::ArraySet),
                detail: format!("position {i} is past the end of a {}-page array", self.len()),
            });
        };
        if let PageState::Backed(handle) = word.view() {
            self.backend.drop_handle(handle)?;
        }
        free_word(word);
        self.words[i] = resident_word(page);
        Ok(())
    }

    /// Frees every resident page and drops every backup without restoring:
    /// the kernel's purge, for contents the owner can recreate. Returns how
    /// many positions it emptied. A backup whose drop fails stays: the error
    /// is the first such failure, with `completed` the positions emptied.
    pub fn purge(&mut self) -> Result<usize, BatchError> {
        let mut done = 0;
        let mut first_error = None;
        for word in self.words.iter_mut() {
            match word.view() {
                PageState::Empty => continue,
                PageState::Resident(_) => free_word(*word),
                PageState::Backed(handle) => {
                    if let Err(error) = self.backend.drop_handle(handle) {
                        first_error.get_or_insert(error);
                        continue;
                    }
                }
            }
            *word = PageWord::EMPTY;
            done += 1;
        }
        first_error.map_or(Ok(done), |error| Err(BatchError { completed: done, error }))
    }

    /// Backs up every resident page in place: its word becomes its handle
    /// and its memory is freed as soon as it is copied.
    ///
    /// Returns how many pages it backed up. It may stop part-way (the backend
    /// is full, an error): the pages backed up so far stay backed up, the
    /// rest stay resident, and a later call continues.
    pub fn backup(&mut self, flags: BackupFlags) -> Result<usize, BatchError> {
        let mut done = 0;
        let mut handles = Vec::with_capacity(crate::raw::ARRAY_BATCH);
        let mut start = 0;
        while let Some(run) = self.next_run(start, Slot::Resident) {
            start = run.end;
            let pages: Vec<&Page> = run.clone().map(|i| self.get(i).expect("resident")).collect();
            handles.clear();
            let result = self.backend.backup_pages(&pages, run.start as u64, flags, &mut handles);
            for (k, &handle) in handles.iter().enumerate() {
                let word = &mut self.words[run.start + k];
                free_word(*word);
                *word = PageWord::backed(handle);
            }
            done += handles.len();
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
    /// back in memory.
    ///
    /// Returns how many pages it restored. Interrupted (`intr` set) or
    /// failed, it stops at a page boundary and keeps its progress: restored
    /// pages are resident and their handles dropped, the rest are still
    /// backed up, and the next call resumes with them. No page is restored
    /// twice, and no handle is dropped before its page is back.
    pub fn restore(&mut self, intr: Option<&Interrupt>) -> Result<usize, BatchError> {
        let mut done = 0;
        let mut start = 0;
        while let Some(run) = self.next_run(start, Slot::Backed) {
            start = run.end;
            let handles: Vec<Handle> = run.clone().map(|i| self.handle(i).expect("backed")).collect();
            let mut pages: Vec<Box<Page>> = handles.iter().map(|_| Page::new_boxed()).collect();
            let mut dsts: Vec<&mut Page> = pages.iter_mut().map(|p| &mut **p).collect();
            let copied = self.backend.copy_pages(&handles, &mut dsts, intr);
            let back = copied.as_ref().map_or_else(|e| e.completed, |()| handles.len());
            // Drop the handles of the pages that are back; a page whose
            // handle cannot be dropped stays backed up, to be restored again.
            let dropped = self.backend.drop_handles(&handles[..back]);
            let kept = dropped.as_ref().map_or_else(|e| e.completed, |()| back);
            for (k, page) in pages.into_iter().take(kept).enumerate() {
                self.words[run.start + k] = resident_word(page);
            }
            done += kept;
            if let Err(e) = copied.and(dropped) {
                return Err(BatchError {
                    completed: done,
                    error: e.error,
                });
            }
        }
        Ok(done)
    }

    fn handle(&self, i: usize) -> Option<Handle> {
        match self.words.get(i)?.view() {
            PageState::Backed(handle) => Some(handle),
            _ => None,
        }
    }

    /// The next run of at most `ARRAY_BATCH` positions in state `want`, from `start`.
    fn next_run(&self, start: usize, want: Slot) -> Option<std::ops::Range<usize>> {
        crate::raw::next_slot_run(self.len(), start, want, |i| self.slot(i))
    }
}

fn resident_word(page: Box<Page>) -> PageWord {
    PageWord::resident(NonNull::from(Box::leak(page)))
}

/// Frees the page a resident word points to; other words need nothing.
fn free_word(word: PageWord) {
    if let PageState::Resident(page) = word.view() {
        // Each caller replaces the word right after, so the page is freed once.
        // SAFETY: resident words hold pointers from `Box::leak` in `resident_word`.
        drop(unsafe { Box::from_raw(page.as_ptr()) });
    }
}

impl Drop for PageArray {
    fn drop(&mut self) {
        for word in self.words.iter() {
            match word.view() {
                PageState::Backed(handle) => {
                    // Nothing can be reported from drop; a handle the backend
                    // refuses is one it does not hold.
                    let _ = self.backend.drop_handle(handle);
                }
                _ => free_word(*word),
            }
        }
    }
}

impl fmt::Debug for PageArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageArray")
            .field("len", &self.len())
            .field("counts", &self.counts())
            .field("backend", &self.backend.name())
            .finish()
    }
}
