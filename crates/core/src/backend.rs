//! The [`BackupBackend`] trait.

use std::fmt::Debug;

use crate::error::{BackupError, BatchError, Operation, Origin, Result};
use crate::{BackupFlags, BackupStats, Handle, Interrupt, Page};

/// A store that takes copies of pages and gives them back by [`Handle`].
///
/// The userspace counterpart of the kernel's `ttm_backup`. Every method takes
/// `&self` and may be called from many threads at once; locking is the
/// backend's business. Implementations keep these semantics (the
/// `pagebackup-testkit` conformance suite checks each):
///
/// 1. A handle from [`backup_page`](Self::backup_page) gives back exactly the
///    bytes backed up, for as long as it has not been dropped.
/// 2. `idx` (the page's index in the caller's object) is a placement hint;
///    two live handles never alias, whatever `idx` was passed.
/// 3. The caller's page is not touched and may be reused once `backup_page`
///    returns.
/// 4. A dropped, forged or foreign handle gives
///    [`BackupError::InvalidHandle`], never another page's bytes.
/// 5. A failed backup issues no handle and holds no storage; a failed or
///    interrupted restore leaves the backup in place.
/// 6. [`drop_handle`](Self::drop_handle) releases the storage.
/// 7. [`bytes_avail`](Self::bytes_avail) is a cheap estimate; backing up past
///    the space gives [`BackupError::NoSpace`].
/// 8. All operations are thread-safe.
///
/// One failure rule holds for every batch: on error, exactly the first
/// `completed` items took effect and every later one did not. After a
/// failed [`backup_pages`](Self::backup_pages), exactly the first
/// `completed` pages have handles (and no storage is held for the rest);
/// after a failed [`drop_handles`](Self::drop_handles), exactly the first
/// `completed` handles are dropped and every later one is still live and
/// restorable; after a failed [`copy_pages`](Self::copy_pages), the first
/// `completed` destinations hold their pages and every backup is still in
/// place. Callers such as [`PageArray`](crate::PageArray) rely on it.
///
/// Implemented for `&T`, `Box<T>` and `Arc<T>`, so `Box<dyn BackupBackend>`
/// and `Arc<dyn BackupBackend>` are backends too.
pub trait BackupBackend: Send + Sync + Debug {
    /// The backend's short name (`"memory"`, `"shmem"`, ...), used in errors.
    fn name(&self) -> &'static str;

    /// Copies `page` into the backend and returns its handle.
    ///
    /// `idx` is the page's index within the caller's object, a hint for
    /// locality. On error no handle is issued and no storage stays in use.
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle>;

    /// Copies the page backed up under `handle` into `dst`. The backup stays
    /// until dropped. If `intr` is set, returns
    /// [`BackupError::Interrupted`] without restoring.
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()>;

    /// Frees the backup under `handle`; the handle is invalid from then on.
    fn drop_handle(&self, handle: Handle) -> Result<()>;

    /// A cheap estimate of how many more bytes (of original pages) a backup may take.
    fn bytes_avail(&self) -> u64;

    /// Current counters.
    fn stats(&self) -> BackupStats;

    /// Returns once every backup made so far has reached the backend's own
    /// storage (staged writes completed). The default does nothing.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Gives back space that comes back only when asked (the compaction of
    /// a packed arena), for a caller that has just dropped or moved many
    /// pages out; a tiered backend's policy calls it on a tier pages left.
    /// Every live handle stays valid. The default does nothing.
    fn maintain(&self) -> Result<()> {
        Ok(())
    }

    /// Does a small, bounded piece of upkeep (a few objects of a packed
    /// arena moved, microseconds), toward a tighter target than the
    /// backend keeps while busy, for a caller with time to spare between
    /// its own calls: a region's evictor while the region is under its
    /// watermark. Returns whether a piece was done (call again while there
    /// is time); `false` once there is nothing worth doing. Every live
    /// handle stays valid. The default does nothing and returns `false`.
    fn maintain_step(&self) -> Result<bool> {
        Ok(false)
    }

    /// Whether every call returns without waiting: no I/O, no sleeping, no
    /// lock held across either, only copies and short critical sections. An
    /// async adapter runs such a backend on the calling task instead of
    /// handing each batch to a blocking thread. The default is `false`.
    fn never_blocks(&self) -> bool {
        false
    }

    /// Whether a call spends its time computing rather than waiting (a
    /// codec at a slow level): an async adapter then runs at most one fewer
    /// of its blocking jobs at once than the machine has cores (at least
    /// one), process-wide, so that a deep queue of such calls does not crowd
    /// the runtime's own threads off the CPU. Backends whose calls wait on I/O keep every
    /// call in flight. The default is `false`.
    fn cpu_bound(&self) -> bool {
        false
    }

    /// The bytes of the backend's store that the page under `handle` takes
    /// (its compressed size, or the page size where stored as is), or
    /// `None` when the handle is not live or the backend cannot tell.
    ///
    /// A cheap lookup, for policies that place pages by what they cost
    /// (a tiered backend moves the pages its upper tier stores poorly
    /// first). The default says `None`.
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        let _ = handle;
        None
    }

    /// Backs up `pages`, page `k` at index `first_idx + k`, appending each
    /// handle to `handles` as it is made.
    ///
    /// On error, the handles of the pages backed up before the failure are in
    /// `handles` (`completed` of them); the failing page and those after it
    /// were not backed up. The default loops over
    /// [`backup_page`](Self::backup_page).
    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        handles.reserve(pages.len());
        for (k, page) in pages.iter().enumerate() {
            match self.backup_page(page, first_idx.wrapping_add(k as u64), flags) {
                Ok(h) => handles.push(h),
                Err(error) => {
                    return Err(BatchError {
                        completed: k,
                        error: error.in_op(Operation::BackupPages),
                    });
                }
            }
        }
        Ok(())
    }

    /// Restores `handles[k]` into `dsts[k]`, in order.
    ///
    /// Stops at a page boundary when `intr` is set or a page fails. No
    /// handle is dropped. Slices of different lengths give
    /// [`BackupError::InvalidInput`] before anything is done. The default
    /// loops over [`copy_page`](Self::copy_page).
    ///
    /// **The rule on error** (every restore, `copy_page` as a batch of one,
    /// and every layer and async path): pages `0..completed` are restored;
    /// the failing page `dsts[completed]` and every later one are
    /// untouched. A restore is linearised when it checks a handle: a handle
    /// live then gives its own page's bytes, even if another thread drops
    /// it and its storage is reused while the copy runs; a handle dropped
    /// before then gives [`BackupError::InvalidHandle`] with nothing
    /// written. The one exception is a failure of the storage itself
    /// ([`BackupError::Io`] or [`BackupError::Corrupt`]): the pages from
    /// `completed` on may then hold part of what was read for them (never
    /// another page's bytes), so do not use them.
    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        copy_in_order(self.name(), handles, dsts, |dst, handle| {
            self.copy_page(dst, handle, intr)
        })
    }

    /// Drops `handles` in order, stopping at the first that fails: handles
    /// `0..completed` were dropped, and every later one is still live and
    /// restorable (a handle given twice is dropped once, then invalid). The
    /// default loops over [`drop_handle`](Self::drop_handle).
    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        for (k, &handle) in handles.iter().enumerate() {
            self.drop_handle(handle).map_err(|error| BatchError {
                completed: k,
                error: error.in_op(Operation::DropHandles),
            })?;
        }
        Ok(())
    }
}

/// The outline of [`BackupBackend::copy_pages`]'s default, for a backend
/// whose batch differs from it only in what `copy` keeps from one page to
/// the next (a lock held across a run, say): checks the slices' lengths,
/// then restores page by page in order with `copy`, stopping at the first
/// that fails, which is reported as `copy_pages`'s error with the pages
/// completed before it.
pub fn copy_in_order(
    backend: &'static str,
    handles: &[Handle],
    dsts: &mut [&mut Page],
    mut copy: impl FnMut(&mut Page, Handle) -> Result<()>,
) -> Result<(), BatchError> {
    check_batch_lengths(backend, handles.len(), dsts.len())?;
    for (k, (dst, &handle)) in dsts.iter_mut().zip(handles).enumerate() {
        copy(dst, handle).map_err(|error| BatchError {
            completed: k,
            error: error.in_op(Operation::CopyPages),
        })?;
    }
    Ok(())
}

/// The error `copy_pages` gives when its two slices differ in length.
pub fn check_batch_lengths(backend: &'static str, handles: usize, dsts: usize) -> Result<(), BatchError> {
    if handles == dsts {
        return Ok(());
    }
    Err(BatchError {
        completed: 0,
        error: BackupError::InvalidInput {
            origin: Origin::new(backend, Operation::CopyPages),
            detail: format!("{handles} handles but {dsts} destination pages; pass one page per handle"),
        },
    })
}
