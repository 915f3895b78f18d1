//! The [`AsyncBackupBackend`] trait and what its batch calls give back.

use std::fmt::Debug;

use async_trait::async_trait;
use pagebackup_core::{BackupFlags, BackupStats, BatchError, Handle, Interrupt, Operation, Page, Result};

/// What [`AsyncBackupBackend::backup_pages`] gives back.
#[derive(Debug)]
pub struct BackedUp {
    /// The caller's pages, every one of them, in the order given.
    pub pages: Vec<Box<Page>>,
    /// The handles of the pages backed up, in order: one per page on
    /// success, the first `completed` on failure.
    pub handles: Vec<Handle>,
    /// The sync trait's batch rule: on error, exactly pages
    /// `0..completed` were backed up and the rest were not.
    pub result: Result<(), BatchError>,
}

/// The async form of [`BackupBackend`](pagebackup_core::BackupBackend), for
/// backends embedded in async programs.
///
/// Object-safe (`Arc<dyn AsyncBackupBackend>` works) and `Send + Sync`; the
/// futures are `Send`. The semantics are the sync trait's, listed there, and
/// the batch calls keep its failure rule: on error, exactly the first
/// `completed` items took effect and no later one did.
///
/// **Owned buffers.** Pages move into a call and come back out of it, on
/// success and on failure alike, so no call copies a caller's page just to
/// own it, and a backend may hand the buffer to the kernel (io_uring,
/// O_DIRECT) for as long as the operation runs, whatever the future does.
///
/// **Cancellation.** A future may be dropped at any await point. (One
/// dropped before its first poll has done nothing, as any Rust future.)
/// Dropping it never loses a page that was backed up, never leaks storage, never
/// leaves the kernel reading from or writing into freed memory, and never
/// leaves a handle issued that nobody holds:
///
/// - a backup whose future is gone before it returned its handles is
///   undone by the backend: the handles it makes are dropped, and the pages
///   given to it are freed once nothing touches them any more (a native
///   backend may do this when the kernel completes the write, after the
///   future is gone: once [`flush`](Self::flush) returns, it is done);
/// - a dropped restore counts as an interrupt: the `intr` flag passed in
///   (or one of the call's own) is set, the restore stops at its next page
///   boundary, and every backup stays in place. A flag passed in stays set,
///   as after any interrupt: clear it before resuming, and give each
///   restore that may be dropped on its own a flag of its own;
/// - a drop, once polled, is carried out whether or not its future is
///   awaited to the end;
/// - a dropped `flush` leaves the backups as they are: a later `flush`
///   still waits for all of them;
/// - a runtime shut down with calls in flight (`shutdown_background`
///   included) drops their futures, with the rules above: the work they
///   started ends on the backend's own threads, and a `flush` made
///   afterwards, from another runtime or none, returns once it has, so
///   that the backend then holds exactly the pages whose handles were
///   given out and not dropped;
/// - dropping the backend itself while operations of dropped futures are
///   in flight waits for them (or cancels them) first: after the drop, no
///   memory of the program is read or written on the backend's behalf.
#[async_trait]
pub trait AsyncBackupBackend: Send + Sync + Debug {
    /// The backend's short name (`"memory"`, `"shmem"`, ...), used in errors.
    fn name(&self) -> &'static str;

    /// Backs up `pages`, page `k` at index `first_idx + k`, and gives the
    /// pages back with the handles (see [`BackedUp`]).
    async fn backup_pages(&self, pages: Vec<Box<Page>>, first_idx: u64, flags: BackupFlags) -> BackedUp;

    /// Restores `handles[k]` into `dsts[k]`, in order, and gives the pages
    /// back. Stops at a page boundary when `intr` is set or a page fails;
    /// pages `0..completed` were restored. No handle is dropped. Slices of
    /// different lengths give `InvalidInput` before anything is done.
    async fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: Vec<Box<Page>>,
        intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>);

    /// Drops `handles` in order, stopping at the first that fails; handles
    /// `0..completed` were dropped.
    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError>;

    /// A cheap estimate of how many more bytes (of original pages) a backup may take.
    fn bytes_avail(&self) -> u64;

    /// Current counters.
    fn stats(&self) -> BackupStats;

    /// Returns once every backup made so far has reached the backend's own
    /// storage. The default does nothing.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Backs up one page at index `idx` and gives it back with its handle.
    /// The default is a batch of one (its error relabelled `backup_page`).
    async fn backup_page(&self, page: Box<Page>, idx: u64, flags: BackupFlags) -> (Result<Handle>, Box<Page>) {
        let mut done = self.backup_pages(vec![page], idx, flags).await;
        let page = done.pages.pop().expect("backup_pages gives every page back");
        let result = done.result.map(|()| done.handles[0]);
        (result.map_err(|e| e.error.in_op(Operation::BackupPage)), page)
    }

    /// Restores the page backed up under `handle` into `dst` and gives it
    /// back. The default is a batch of one (its error relabelled `copy_page`).
    async fn copy_page(&self, dst: Box<Page>, handle: Handle, intr: Option<Interrupt>) -> (Result<()>, Box<Page>) {
        let (result, mut dsts) = self.copy_pages(&[handle], vec![dst], intr).await;
        (
            result.map_err(|e| e.error.in_op(Operation::CopyPage)),
            dsts.pop().expect("copy_pages gives every page back"),
        )
    }

    /// Frees the backup under `handle`. The default is a batch of one (its
    /// error relabelled `drop_handle`).
    async fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.drop_handles(&[handle])
            .await
            .map_err(|e| e.error.in_op(Operation::DropHandle))
    }
}
