//! The async benchmark's baselines: `baseline:spawn_blocking-pwrite`, what
//! an async program gets from `tokio::fs`-style I/O, one `spawn_blocking`
//! and one `pwrite` or `pread` per page, into an unlinked file at one page
//! per slot; and `baseline:memcpy`, the ticker's floor under tasks that
//! copy pages on the runtime's workers.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use pagebackup::{
    AsyncBackupBackend, BackedUp, BackupError, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Operation,
    Origin, PAGE_SIZE, Page,
};

use crate::adapters::Error;

const NAME: &str = "baseline:spawn_blocking-pwrite";

/// One page per slot of an unlinked file in the temporary directory; every
/// page of every call is its own `spawn_blocking` job. Handles are slot + 1,
/// unchecked: a baseline, not a backend.
#[derive(Debug)]
pub struct SpawnBlockingPwrite {
    fd: Arc<OwnedFd>,
    free: Mutex<Vec<u64>>,
    next: AtomicU64,
    stored: AtomicU64,
}

impl SpawnBlockingPwrite {
    /// A fresh unlinked file.
    pub fn new() -> Result<SpawnBlockingPwrite, Error> {
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::CLOEXEC;
        let fd = rustix::fs::open(std::env::temp_dir(), flags, rustix::fs::Mode::from_raw_mode(0o600))?;
        Ok(SpawnBlockingPwrite {
            fd: Arc::new(fd),
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        })
    }

    fn slot(&self) -> u64 {
        let reused = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        reused.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn release(&self, slot: u64) {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).push(slot);
    }

    /// Runs `io` as one blocking job on `buffer` (a page, or `()`) and
    /// gives the buffer back.
    async fn blocking<T: Send + 'static>(
        &self,
        op: Operation,
        mut buffer: T,
        io: impl FnOnce(&OwnedFd, &mut T) -> rustix::io::Result<()> + Send + 'static,
    ) -> (Result<(), BackupError>, T) {
        let fd = Arc::clone(&self.fd);
        let (result, buffer) = tokio::task::spawn_blocking(move || (io(&fd, &mut buffer), buffer))
            .await
            .expect("a baseline job runs to its end");
        let result = result.map_err(|e| BackupError::Io {
            origin: Origin::new(NAME, op),
            source: io::Error::from(e),
        });
        (result, buffer)
    }
}

fn offset(slot: u64) -> u64 {
    slot * PAGE_SIZE as u64
}

#[async_trait]
impl AsyncBackupBackend for SpawnBlockingPwrite {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn backup_pages(&self, pages: Vec<Box<Page>>, _first_idx: u64, _flags: BackupFlags) -> BackedUp {
        let mut back = Vec::with_capacity(pages.len());
        let mut handles = Vec::with_capacity(pages.len());
        let mut result = Ok(());
        for page in pages {
            if result.is_err() {
                back.push(page);
                continue;
            }
            let slot = self.slot();
            let (written, page) = self
                .blocking(Operation::BackupPage, page, move |fd, page| {
                    rustix::io::pwrite(fd, page.as_bytes(), offset(slot)).map(drop)
                })
                .await;
            back.push(page);
            match written {
                Ok(()) => {
                    handles.push(Handle::from_raw(slot + 1).expect("slot + 1 is not 0"));
                    self.stored.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.release(slot);
                    result = Err(BatchError {
                        completed: handles.len(),
                        error,
                    });
                }
            }
        }
        BackedUp {
            pages: back,
            handles,
            result,
        }
    }

    async fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: Vec<Box<Page>>,
        _intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        let mut back = Vec::with_capacity(dsts.len());
        let mut result = Ok(());
        for (k, (dst, &handle)) in dsts.into_iter().zip(handles).enumerate() {
            if result.is_err() {
                back.push(dst);
                continue;
            }
            let slot = handle.to_raw() - 1;
            let (read, dst) = self
                .blocking(Operation::CopyPage, dst, move |fd, dst| {
                    rustix::io::pread(fd, dst.as_bytes_mut(), offset(slot)).map(drop)
                })
                .await;
            back.push(dst);
            result = read.map_err(|error| BatchError { completed: k, error });
        }
        (result, back)
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        for (k, &handle) in handles.iter().enumerate() {
            let slot = handle.to_raw() - 1;
            let (punched, ()) = self
                .blocking(Operation::DropHandle, (), move |fd, ()| {
                    let mode = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
                    rustix::fs::fallocate(fd, mode, offset(slot), PAGE_SIZE as u64)
                })
                .await;
            punched.map_err(|error| BatchError { completed: k, error })?;
            self.release(slot);
            self.stored.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn bytes_avail(&self) -> u64 {
        u64::MAX
    }

    fn stats(&self) -> BackupStats {
        let mut stats = BackupStats::default();
        stats.stored_pages = self.stored.load(Ordering::Relaxed);
        stats
    }
}

const MEMCPY: &str = "baseline:memcpy";

/// The floor of the ticker rows: pages copied into and out of boxes held
/// under one lock, each call a plain copy on the calling task with no
/// yield, no slicing and no CPU slot: what any backend that copies on the
/// runtime's workers costs them at the least. Handles are the box's index
/// + 1, unchecked: a baseline, not a backend.
#[derive(Debug, Default)]
pub struct Memcpy {
    store: Mutex<Slab>,
}

/// The stored pages, and the boxes of dropped ones for reuse.
#[derive(Debug, Default)]
struct Slab {
    pages: Vec<Option<Box<Page>>>,
    free: Vec<usize>,
    spare: Vec<Box<Page>>,
}

impl Memcpy {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl AsyncBackupBackend for Memcpy {
    fn name(&self) -> &'static str {
        MEMCPY
    }

    async fn backup_pages(&self, pages: Vec<Box<Page>>, _first_idx: u64, _flags: BackupFlags) -> BackedUp {
        let mut slab = self.lock();
        let handles = pages
            .iter()
            .map(|page| {
                let mut copy = slab.spare.pop().unwrap_or_else(Page::new_boxed);
                (*copy).clone_from(page);
                let at = match slab.free.pop() {
                    Some(at) => {
                        slab.pages[at] = Some(copy);
                        at
                    }
                    None => {
                        slab.pages.push(Some(copy));
                        slab.pages.len() - 1
                    }
                };
                Handle::from_raw(at as u64 + 1).expect("index + 1 is not 0")
            })
            .collect();
        BackedUp {
            pages,
            handles,
            result: Ok(()),
        }
    }

    async fn copy_pages(
        &self,
        handles: &[Handle],
        mut dsts: Vec<Box<Page>>,
        _intr: Option<Interrupt>,
    ) -> (Result<(), BatchError>, Vec<Box<Page>>) {
        let slab = self.lock();
        for (k, (dst, handle)) in dsts.iter_mut().zip(handles).enumerate() {
            match slab.pages.get(handle.to_raw() as usize - 1) {
                Some(Some(page)) => (**dst).clone_from(page),
                _ => {
                    let error = BackupError::InvalidHandle {
                        origin: Origin::new(MEMCPY, Operation::CopyPages),
                        handle: *handle,
                    };
                    return (Err(BatchError { completed: k, error }), dsts);
                }
            }
        }
        (Ok(()), dsts)
    }

    async fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        let mut slab = self.lock();
        for &handle in handles {
            let at = handle.to_raw() as usize - 1;
            if let Some(page) = slab.pages.get_mut(at).and_then(Option::take) {
                slab.spare.push(page);
                slab.free.push(at);
            }
        }
        Ok(())
    }

    fn bytes_avail(&self) -> u64 {
        u64::MAX
    }

    fn stats(&self) -> BackupStats {
        let mut stats = BackupStats::default();
        stats.stored_pages = self.lock().pages.iter().flatten().count() as u64;
        stats
    }
}
