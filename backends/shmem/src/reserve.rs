//! [`Reserve`]: a thread that keeps free slots' memory allocated ahead of
//! the backups that will take them, so that those backups are copies.

use std::io::{self, BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use pagebackup_core::PAGE_SIZE;
use pagebackup_core::raw::{SlotStore, seal::MaybeSealed};

use crate::device::MemfdDevice;

/// The store the reserve fills.
pub(crate) type Store = SlotStore<MaybeSealed<MemfdDevice>>;

/// Slots allocated per call of [`SlotStore::fill_reserve`]'s device (1 MiB):
/// few system calls, and the shard's lock is free between batches.
const BATCH: u32 = 256;

/// The reserve a backend starts with, per shard (1 MiB): it grows from
/// there to the bursts of backups it sees.
const FIRST_TARGET: u64 = 256;

/// What the backup path and the thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Free slots per shard the thread fills up to now: from
    /// [`FIRST_TARGET`], doubled (up to the reserve's size) each time a
    /// backup finds no free memory at all, so that it follows the bursts of
    /// backups the backend takes.
    target: AtomicU64,
    /// Shards whose backups found the reserve low (bit `shard % 64`).
    asked: AtomicU64,
    /// Set from a request until the thread has served it: later backups
    /// do not lock `wake` meanwhile.
    pending: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Keeps free slots per shard backed by memory (counting those kept since
/// their drop), up to a target that starts at 1 MiB and doubles, up to
/// `pages`, whenever a backup finds none left (a burst larger than the
/// reserve), filled by a thread of its own when a backup finds fewer than
/// half of the target, so that no backup waits for the
/// allocation: the thread takes the lowest free slots, which placement
/// hands out next, and allocates them with `MADV_POPULATE_WRITE` a batch at
/// a time. It fills nothing while the machine's available memory
/// (`MemAvailable`) is below 1/16 of its RAM or four times the reserve, and
/// then releases the free memory the store keeps instead. The thread ends
/// with the backend.
#[derive(Debug)]
pub(crate) struct Reserve {
    pages: u64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Reserve {
    /// Starts the thread for a reserve of `pages` per shard of `store`; `None`
    /// if the thread cannot be made (the backend then allocates at backup).
    pub(crate) fn start(store: Weak<Store>, pages: u64) -> Option<Reserve> {
        let shared = Arc::new(Shared {
            target: AtomicU64::new(FIRST_TARGET.min(pages)),
            ..Shared::default()
        });
        let thread = std::thread::Builder::new()
            .name("pagebackup-shmem-reserve".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || serve(&store, &shared)
            })
            .ok()?;
        Some(Reserve {
            pages,
            shared,
            thread: Some(thread),
        })
    }

    /// Most free slots per shard it keeps backed.
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }

    /// Called after a backup: asks the thread to fill the calling thread's
    /// shard if the store's free memory is below half the target (and
    /// doubles the target if there is none). Two atomic loads when it is not.
    pub(crate) fn after_backup(&self, store: &Store) {
        let free = store.resident_free_pages();
        let target = self.shared.target.load(Ordering::Relaxed);
        if free >= target / 2 {
            return;
        }
        if free == 0 && target < self.pages {
            self.shared
                .target
                .store((target * 2).min(self.pages), Ordering::Relaxed);
        }
        self.shared
            .asked
            .fetch_or(1 << (store.placing_shard() % 64), Ordering::Relaxed);
        if !self.shared.pending.swap(true, Ordering::AcqRel) {
            let _stop = self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits for a request, fills the shards asked for, again.
fn serve(store: &Weak<Store>, shared: &Shared) {
    loop {
        {
            let mut stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
            while !*stop && !shared.pending.load(Ordering::Acquire) {
                stop = shared.wake.wait(stop).unwrap_or_else(PoisonError::into_inner);
            }
            if *stop {
                return;
            }
        }
        let Some(store) = store.upgrade() else { return };
        let asked = shared.asked.swap(0, Ordering::Relaxed);
        fill(&store, asked, shared.target.load(Ordering::Relaxed));
        shared.pending.store(false, Ordering::Release);
    }
}

/// Fills the reserve of each shard in `asked` (a bit per shard, `% 64`) to
/// `pages`, or
/// under memory pressure releases the free memory the store keeps.
fn fill(store: &Store, asked: u64, pages: u64) {
    if memory_low(pages) {
        store.release_deferred();
        return;
    }
    let shards = store.devices().count();
    for shard in (0..shards).filter(|s| asked & (1 << (s % 64)) != 0) {
        // An error (ENOMEM) stops this round; the next low reserve tries again.
        if store.fill_reserve(shard, pages, BATCH).is_err() {
            return;
        }
    }
}

/// Whether the machine's available memory is below 1/16 of its RAM or four
/// times a reserve of `pages`; `false` where `/proc/meminfo` cannot tell.
fn memory_low(pages: u64) -> bool {
    meminfo().is_ok_and(|(total, available)| available < (total / 16).max(4 * pages * PAGE_SIZE as u64))
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
fn meminfo() -> io::Result<(u64, u64)> {
    let (mut total, mut available) = (None, None);
    for line in BufReader::new(std::fs::File::open("/proc/meminfo")?).lines() {
        let line = line?;
        let field = |name: &str| {
            line.strip_prefix(name)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        };
        total = total.or_else(|| field("MemTotal:"));
        available = available.or_else(|| field("MemAvailable:"));
        if let (Some(total), Some(available)) = (total, available) {
            return Ok((total, available));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no MemTotal or MemAvailable in /proc/meminfo",
    ))
}
