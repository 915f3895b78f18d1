//! [`OffloadRegion`]: the page table, the fault service shared by both
//! modes, the evictor and the handler thread.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use linux_raw_sys::general as uapi;
use pagebackup_core::raw::Backoff;
use pagebackup_core::{BackupBackend, BackupError, BackupFlags, BatchError, Handle, PAGE_SIZE, Page};
use rustix::io::Errno;

use crate::config::{FaultMode, MAX_READ_AHEAD, RegionConfig};
use crate::error::RegionError;
use crate::fault::{Fault, SignalFaults};
use crate::room::Room;
use crate::stats::{Counters, RegionStats};
use crate::sys::{self, FaultMsg, Mapping, Registration, Releaser, Uffd};

// Page states. A page is in exactly one; whoever moves it to BUSY owns it
// (and its handle word) until it stores the next state.
/// Never written, or evicted while all zeros: reads as zeros, holds no storage.
const EMPTY: u8 = 0;
/// Resident and writable; its handle word, if set, names a stale copy to drop.
const DIRTY: u8 = 1;
/// Resident, write-protected, equal to the copy its handle names.
const CLEAN: u8 = 2;
/// Not resident; its handle names its contents.
const BACKED: u8 = 3;
/// Owned by a thread restoring, evicting or unprotecting it.
const BUSY: u8 = 4;
/// Its restore failed: poisoned where the kernel can, its handle kept for a retry.
const POISONED: u8 = 5;
/// Resident and dirty, write-protected by the clock hand as a sample of its
/// use: a write before the hand comes back makes it `DIRTY` with a credit
/// (another turn); otherwise the hand evicts it, protected already.
const PROBED: u8 = 6;

/// A handle value for the unused places of a fixed-size handle array.
const PLACEHOLDER: Handle = match Handle::from_raw(1) {
    Some(h) => h,
    None => panic!("1 is a handle value"),
};

static ZERO_PAGE: Page = Page::zeroed();

/// While reads restore pages writable, one restore in this many still
/// restores them clean, to see whether they are still written after. Each
/// such probe of a page that is written costs a write-protect fault; a
/// switch to read-only access is seen after 64 probes (the score's bound).
const PROBE_EVERY: u64 = 64;
/// The longest a faulting thread sleeps for room before it looks again
/// (the evictor wakes it as soon as it frees pages; this bounds a wake-up
/// lost to a page freed elsewhere, such as a failed restore's).
const ROOM_NAP: Duration = Duration::from_millis(1);
/// One restore in this many is a probe while the score is at its bound
/// (writes to clean pages, probes among them, have outweighed the probes
/// left clean): a written probe's write-protect fault costs a TLB flush on
/// every CPU running the program, and at one restore in 64 those faults
/// were a random workload's slowest 1.5 %. A switch to read-only access is
/// then seen a probe later, then as above.
const PROBE_EVERY_SETTLED: u64 = 1024;
/// Bounds of [`Shared::write_score`].
const SCORE_LIMIT: i32 = 64;
/// Turns of the clock hand a page that refaulted soon after its eviction is
/// passed over by the evictor ([`Shared::credit`]).
const REFAULT_CREDIT: u8 = 3;
/// Most pages between two dirty victims that one write-protect call spans.
const MAX_PROTECT_GAP: usize = 256;

/// Who is serving a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The faulting thread, in its `SIGBUS` handler.
    Signal,
    /// The handler thread, for a thread waiting in the kernel.
    Handler,
    /// A call of the region's API (prefault, pin) on the calling thread.
    Api,
}

/// The state shared by the region, its threads and the signal handler.
#[derive(Debug)]
pub(crate) struct Shared {
    // The descriptor closes (unregistering the range) before the mapping goes.
    uffd: Uffd,
    mapping: Mapping,
    pages: usize,
    backend: Box<dyn BackupBackend>,
    state: Box<[AtomicU8]>,
    handle: Box<[AtomicU64]>,
    pins: Box<[AtomicU32]>,
    /// The access information of the policy. Resident pages give none (the
    /// kernel takes their accesses), but a page faulted back soon after its
    /// eviction (fewer evictions ago than the budget holds pages: it would
    /// have stayed under an LRU) was in use: it earns [`REFAULT_CREDIT`]
    /// turns of the clock hand that the evictor passes it over, one spent a turn.
    credit: Box<[AtomicU8]>,
    /// The eviction clock when each page was last evicted (0: never).
    evicted_at: Box<[AtomicU32]>,
    /// Pages evicted so far, the clock of `evicted_at` (wrapping).
    evictions: AtomicU32,
    resident: AtomicUsize,
    budget: usize,
    high: usize,
    /// Where a burst of evictions stops when the evictor had work left
    /// since the last one (no idle time): a sixteenth of the budget (and
    /// at least a batch) below `high`, so that a busy evictor starts few
    /// bursts.
    low: usize,
    /// Where a burst stops when the evictor was idle before it: a
    /// sixty-fourth of the budget (and at least a batch) below `high`. Each eviction leaves the
    /// backend a copy to drop (garbage for a compressing one, taken back in
    /// the idle time after); shorter bursts leave less of it at any time.
    low_after_idle: usize,
    config: RegionConfig,
    staging: Box<[Mutex<Box<[Page]>>]>,
    stats: Counters,
    evictor: OnceLock<Thread>,
    stop: AtomicBool,
    /// The page after the last restored run, to detect sequential faults.
    last_end: AtomicUsize,
    /// The evictor could not make progress (backend full, failing): faults
    /// go over the budget instead of waiting.
    stalled: AtomicBool,
    /// Where faulting threads sleep while the budget is full.
    room: Room,
    error: Mutex<Option<BackupError>>,
    /// Whether pages restored clean tend to be written soon after: raised by
    /// a write to a clean page, lowered by each clean restore. Above zero,
    /// reads restore pages writable (but one in [`PROBE_EVERY`], to keep
    /// measuring), saving the second fault a write would take.
    write_score: AtomicI32,
    poison: bool,
    releaser: Releaser,
}

impl Shared {
    fn addr(&self, page: usize) -> usize {
        self.mapping.addr() + page * PAGE_SIZE
    }

    fn claim(&self, page: usize, from: u8) -> bool {
        self.state[page]
            .compare_exchange(from, BUSY, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    fn set(&self, page: usize, state: u8) {
        self.state[page].store(state, Ordering::Release);
    }

    fn wake_evictor(&self) {
        if let Some(t) = self.evictor.get() {
            t.unpark();
        }
    }

    /// Keeps `error` as the region's last error. From a signal handler the
    /// slot may be taken; then the error is counted only.
    fn record(&self, error: BackupError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        match self.error.try_lock() {
            Ok(mut slot) => *slot = Some(error),
            Err(TryLockError::Poisoned(p)) => *p.into_inner() = Some(error),
            // Dropping it could free memory under an allocator lock the
            // interrupted code holds; a counted error is not worth that risk.
            Err(TryLockError::WouldBlock) => std::mem::forget(error),
        }
    }

    fn os_error(&self, what: &str, errno: Errno) -> BackupError {
        BackupError::Io {
            origin: pagebackup_core::Origin::new("region", pagebackup_core::Operation::CopyPage),
            source: std::io::Error::new(std::io::Error::from(errno).kind(), format!("{what}: {errno}")),
        }
    }

    /// Counts `pages` as resident, waiting (spinning a little, then asleep
    /// until the evictor frees pages: see [`Room`]) while that would pass
    /// the budget and the evictor makes progress.
    fn reserve(&self, pages: usize) {
        let mut backoff = Backoff::new();
        let mut since: Option<Instant> = None;
        let over = |r: usize| r + pages > self.budget;
        // Over the budget while the evictor makes progress.
        let must_wait = |r: usize| over(r) && !self.stalled.load(Ordering::SeqCst);
        loop {
            let r = self.resident.load(Ordering::Relaxed);
            if !must_wait(r) {
                if self
                    .resident
                    .compare_exchange_weak(r, r + pages, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    if r + pages > self.high {
                        self.wake_evictor();
                    }
                    if over(r) {
                        self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                continue;
            }
            self.wake_evictor();
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() > Duration::from_millis(200) {
                self.resident.fetch_add(pages, Ordering::AcqRel);
                self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if backoff.count() < Backoff::SPINS {
                backoff.snooze();
            } else {
                self.room
                    .wait(|| must_wait(self.resident.load(Ordering::SeqCst)), ROOM_NAP);
            }
        }
        // (unreachable)
    }

    /// A staging buffer of [`MAX_READ_AHEAD`] pages, taken without blocking.
    fn staging(&self) -> MutexGuard<'_, Box<[Page]>> {
        let n = self.staging.len();
        // Threads start at different buffers: their stacks lie apart.
        let marker = 0u8;
        let start = (&marker as *const u8 as usize) >> 16;
        let mut backoff = Backoff::new();
        loop {
            for k in 0..n {
                match self.staging[(start + k) % n].try_lock() {
                    Ok(g) => return g,
                    Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            backoff.snooze();
        }
    }

    /// Makes `page` resident (and writable if `write` is not `Some(false)`).
    /// Returns whether an ioctl already woke the threads waiting on it.
    fn serve(&self, page: usize, write: Option<bool>, ctx: Ctx) -> Result<bool, BackupError> {
        let writing = write != Some(false);
        let mut backoff = Backoff::new();
        loop {
            match self.state[page].load(Ordering::Acquire) {
                EMPTY if self.claim(page, EMPTY) => return self.fill_zero(page, writing),
                BACKED if self.claim(page, BACKED) => return self.restore(page, write),
                POISONED if ctx != Ctx::Api => return Err(self.poisoned_error(page)),
                POISONED if self.claim(page, POISONED) => {
                    // A retry: release the poison marker first.
                    if let Err(e) = self.releaser.release(&self.mapping, &[(page, 1)]) {
                        self.set(page, POISONED);
                        return Err(BackupError::Io {
                            origin: pagebackup_core::Origin::new("region", pagebackup_core::Operation::CopyPage),
                            source: e,
                        });
                    }
                    return self.restore(page, write);
                }
                CLEAN | PROBED if !writing => return Ok(false),
                CLEAN if self.claim(page, CLEAN) => {
                    // A write to a clean page: its copy goes stale.
                    if ctx != Ctx::Api {
                        self.stats.wp_faults.fetch_add(1, Ordering::Relaxed);
                        self.nudge_score(2);
                    }
                    return self.unprotect(page);
                }
                PROBED if self.claim(page, PROBED) => {
                    // A write to a page the clock hand sampled: in use, it
                    // gets another turn.
                    self.credit[page].fetch_max(REFAULT_CREDIT, Ordering::Relaxed);
                    if ctx != Ctx::Api {
                        self.stats.probe_hits.fetch_add(1, Ordering::Relaxed);
                    }
                    return self.unprotect(page);
                }
                DIRTY => return Ok(false),
                BUSY => {
                    while self.state[page].load(Ordering::Acquire) == BUSY {
                        backoff.snooze();
                    }
                    if ctx != Ctx::Api {
                        // Let the access run again and fault again if it must.
                        return Ok(false);
                    }
                }
                _ => backoff.snooze(),
            }
        }
    }

    /// Makes a write-protected page the caller owns writable and dirty
    /// (which wakes the threads waiting on it).
    fn unprotect(&self, page: usize) -> Result<bool, BackupError> {
        let r = self.uffd.write_protect(self.addr(page), PAGE_SIZE, false);
        self.set(page, DIRTY);
        r.map(|()| true).map_err(|e| self.os_error("UFFDIO_WRITEPROTECT", e))
    }

    fn nudge_score(&self, by: i32) {
        let s = self.write_score.load(Ordering::Relaxed);
        self.write_score
            .store((s + by).clamp(-SCORE_LIMIT, SCORE_LIMIT), Ordering::Relaxed);
    }

    fn poisoned_error(&self, page: usize) -> BackupError {
        BackupError::Corrupt {
            origin: pagebackup_core::Origin::new(self.backend.name(), pagebackup_core::Operation::CopyPage),
            handle: Handle::from_raw(self.handle[page].load(Ordering::Relaxed)).unwrap_or(PLACEHOLDER),
            detail: format!(
                "page {page} of the region could not be restored earlier and is poisoned; \
                 prefault or pin it to retry"
            ),
        }
    }

    /// Maps zeros at an `EMPTY` page the caller owns.
    fn fill_zero(&self, page: usize, write: bool) -> Result<bool, BackupError> {
        self.reserve(1);
        let r = if write {
            self.uffd.copy(self.addr(page), std::slice::from_ref(&ZERO_PAGE), false)
        } else {
            self.uffd.zeropage(self.addr(page))
        };
        match r {
            Ok(()) | Err(Errno::EXIST) => {
                self.handle[page].store(0, Ordering::Relaxed);
                self.set(page, DIRTY);
                self.stats.zero_fills.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                self.resident.fetch_sub(1, Ordering::AcqRel);
                self.set(page, EMPTY);
                Err(self.os_error("UFFDIO_ZEROPAGE", e))
            }
        }
    }

    /// Restores a `BACKED` page the caller owns, with the pages after it
    /// when faults run sequentially (read-ahead).
    fn restore(&self, page: usize, write: Option<bool>) -> Result<bool, BackupError> {
        let window = if self.last_end.load(Ordering::Relaxed) == page {
            self.config.read_ahead
        } else {
            1
        };
        let mut n = 1;
        while n < window && page + n < self.pages && self.claim(page + n, BACKED) {
            n += 1;
        }
        self.last_end.store(page + n, Ordering::Relaxed);
        self.reserve(n);
        let mut staging = self.staging();
        let mut handles = [PLACEHOLDER; MAX_READ_AHEAD];
        for (k, h) in handles.iter_mut().enumerate().take(n) {
            *h = Handle::from_raw(self.handle[page + k].load(Ordering::Relaxed)).unwrap_or(PLACEHOLDER);
        }
        let mut dsts: [&mut Page; MAX_READ_AHEAD] = match <&mut [Page; MAX_READ_AHEAD]>::try_from(&mut staging[..]) {
            Ok(array) => array.each_mut(),
            Err(_) => unreachable!("staging buffers hold MAX_READ_AHEAD pages"),
        };
        let restored = match self.backend.copy_pages(&handles[..n], &mut dsts[..n], None) {
            Ok(()) => n,
            Err(BatchError { completed, error }) => {
                // Pages after the failing one go back as they were; the
                // failing one is poisoned if it is the faulting page.
                for k in completed..n {
                    if k > 0 {
                        self.set(page + k, BACKED);
                    }
                }
                self.resident.fetch_sub(n - completed, Ordering::AcqRel);
                self.stats.restore_errors.fetch_add(1, Ordering::Relaxed);
                if completed == 0 {
                    drop(staging);
                    if self.poison && self.uffd.poison(self.addr(page), PAGE_SIZE).is_ok() {
                        self.set(page, POISONED);
                    } else {
                        self.set(page, BACKED);
                    }
                    return Err(error);
                }
                self.record(error);
                completed
            }
        };
        // Pages are mapped write-protected (clean), so that a clean page is
        // dropped, not written again, unless restored pages are mostly
        // written soon after; then one restore in PROBE_EVERY (in
        // PROBE_EVERY_SETTLED while the score is at its bound)
        // still maps one page clean to see whether that holds: the
        // faulting page when it is read, else the pages read ahead. A page
        // about to be written is mapped writable at once.
        let score = self.write_score.load(Ordering::Relaxed);
        let clean_mode = score <= 0;
        let every = if score >= SCORE_LIMIT {
            PROBE_EVERY_SETTLED
        } else {
            PROBE_EVERY
        };
        let wp = self.config.clean_tracking
            && (clean_mode || self.stats.restores.load(Ordering::Relaxed).is_multiple_of(every));
        if wp {
            self.nudge_score(-1);
        }
        let reading = write == Some(false);
        // Whether the faulting page, and the pages read ahead, are protected.
        let (first_wp, rest_wp) = match (wp, clean_mode || !reading) {
            (false, _) => (false, false),
            (true, true) => (reading, true),
            (true, false) => (true, false),
        };
        let split = if first_wp == rest_wp { restored } else { 1 };
        let mut result = self.uffd.copy(self.addr(page), &staging[..split], first_wp);
        if result.is_ok() && restored > split {
            result = self
                .uffd
                .copy(self.addr(page + split), &staging[split..restored], rest_wp);
        }
        drop(staging);
        if let Err(e) = result.or_else(|e| if e == Errno::EXIST { Ok(()) } else { Err(e) }) {
            for k in 0..restored {
                self.set(page + k, BACKED);
            }
            self.resident.fetch_sub(restored, Ordering::AcqRel);
            return Err(self.os_error("UFFDIO_COPY", e));
        }
        let at = self.evicted_at[page].load(Ordering::Relaxed);
        if at != 0 && (self.evictions.load(Ordering::Relaxed).wrapping_sub(at) as usize) < self.budget {
            self.credit[page].store(REFAULT_CREDIT, Ordering::Relaxed);
        }
        for k in 0..restored {
            let protected = if k < split { first_wp } else { rest_wp };
            self.set(page + k, if protected { CLEAN } else { DIRTY });
        }
        self.stats.restores.fetch_add(1, Ordering::Relaxed);
        self.stats.restored_pages.fetch_add(restored as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Serves one fault read from the descriptor (handler-thread mode).
    fn on_message(&self, msg: FaultMsg) {
        let start = Instant::now();
        let base = self.mapping.addr();
        if !(base..base + self.mapping.len()).contains(&msg.addr) {
            return;
        }
        let page = (msg.addr - base) / PAGE_SIZE;
        let addr = self.addr(page);
        match self.serve(page, Some(msg.write || msg.wp), Ctx::Handler) {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.uffd.wake(addr, PAGE_SIZE);
            }
            Err(error) => {
                self.record(error);
                if self.state[page].load(Ordering::Acquire) != POISONED {
                    // No poison on this kernel: let the thread retry later
                    // rather than hand it a page that is not its own.
                    std::thread::sleep(Duration::from_millis(10));
                    let _ = self.uffd.wake(addr, PAGE_SIZE);
                }
            }
        }
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fault_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn handler_main(&self) {
        let cpu0 = sys::thread_cpu_ns();
        let mut msgs = [FaultMsg {
            addr: 0,
            write: false,
            wp: false,
        }; 16];
        let mut idle_since = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            match self.uffd.read_faults(&mut msgs) {
                Ok(0) => {
                    if idle_since.elapsed() < self.config.handler_spin {
                        std::hint::spin_loop();
                    } else {
                        self.uffd.wait(50);
                        idle_since = Instant::now();
                    }
                }
                Ok(n) => {
                    for msg in &msgs[..n] {
                        self.on_message(*msg);
                    }
                    idle_since = Instant::now();
                }
                Err(e) => {
                    self.record(self.os_error("reading userfaultfd", e));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.stats
                .handler_cpu_ns
                .store(sys::thread_cpu_ns() - cpu0, Ordering::Relaxed);
        }
    }

    fn evictor_main(&self) {
        let cpu0 = sys::thread_cpu_ns();
        let mut work = EvictScratch::default();
        // Whether the evictor ran out of work (upkeep included) since its
        // last burst: the next one is then a short one.
        let mut idled = true;
        while !self.stop.load(Ordering::Acquire) {
            if self.resident.load(Ordering::Relaxed) <= self.high {
                // Time to spare: the backend's upkeep, a bounded step at a
                // time, checking the watermark between steps; then sleep.
                // An upkeep error is not an access's: stepping stops until
                // the next idle time, and the backend's own calls report
                // what is wrong with it.
                if matches!(self.backend.maintain_step(), Ok(true)) {
                    self.stats.upkeep_steps.fetch_add(1, Ordering::Relaxed);
                } else {
                    idled = true;
                    std::thread::park_timeout(Duration::from_millis(50));
                }
                continue;
            }
            let low = if std::mem::take(&mut idled) {
                self.low_after_idle
            } else {
                self.low
            };
            while self.resident.load(Ordering::Relaxed) > low && !self.stop.load(Ordering::Acquire) {
                let evicted = self.evict_batch(&mut work);
                // Counted per batch: under faults that keep it busy, the
                // evictor may not leave this loop for a whole workload.
                self.stats
                    .evictor_cpu_ns
                    .store(sys::thread_cpu_ns() - cpu0, Ordering::Relaxed);
                match evicted {
                    Evicted::Some => self.stalled.store(false, Ordering::Relaxed),
                    Evicted::Nothing => {
                        // Every resident page is pinned or in use: wait for one.
                        std::thread::park_timeout(Duration::from_millis(1));
                        break;
                    }
                    Evicted::Failed => {
                        // The backend refuses pages: let faults pass the budget
                        // rather than wait, and try again shortly.
                        self.stalled.store(true, Ordering::Relaxed);
                        self.room.freed();
                        std::thread::park_timeout(Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }

    /// Picks up to `want` victims in address order and owns them: the clock
    /// hand sweeps the page indices from where it stopped, spends one credit
    /// of each resident page that has some (and collects the stale copy of
    /// such a page that is dirty in `w.stale`), and takes every other resident
    /// page it can own (unpinned, not in use); with access sampling, a dirty
    /// page it takes is a probe (to write-protect) rather than a victim the
    /// first time. It stops at the end of the region, so that a batch's
    /// pages lie in one window and ascend.
    fn pick_victims(&self, want: usize, w: &mut EvictScratch) {
        w.victims.clear();
        w.probes.clear();
        let mut looked = 0;
        while w.victims.len() < want && looked < self.pages {
            let page = w.hand;
            w.hand = if page + 1 == self.pages { 0 } else { page + 1 };
            looked += 1;
            let s = self.state[page].load(Ordering::Acquire);
            if matches!(s, CLEAN | DIRTY | PROBED) {
                let credit = self.credit[page].load(Ordering::Relaxed);
                if credit > 0 {
                    // In use lately: another turn, one credit spent. A dirty
                    // page's copy is stale (the page is written back whole
                    // at its eviction): it goes now, not at that eviction.
                    // Only this thread touches a dirty page's handle word.
                    self.credit[page].store(credit - 1, Ordering::Relaxed);
                    if s == DIRTY {
                        match self.handle[page].swap(0, Ordering::Relaxed) {
                            0 => {}
                            old => w.stale.push(old),
                        }
                    }
                } else if self.pins[page].load(Ordering::SeqCst) == 0 && self.claim(page, s) {
                    if self.pins[page].load(Ordering::SeqCst) != 0 {
                        self.set(page, s);
                    } else if s == DIRTY && self.config.access_sampling {
                        w.probes.push(page);
                    } else {
                        w.victims.push((page, s));
                    }
                }
            }
            if (w.hand == 0 && !(w.victims.is_empty() && w.probes.is_empty())) || w.probes.len() >= 4 * want {
                break;
            }
        }
    }

    /// Write-protects the dirty victims and the probes with few
    /// `UFFDIO_WRITEPROTECT` calls: one call covers a span from one to the
    /// next when every page between them is a victim too, or an unpinned
    /// page the evictor can own for the call: write-protection leaves one
    /// not resident or clean as it is, and a dirty one (kept for its
    /// credit) joins the victims, since a write to it would now cost a
    /// write-protect fault, dearer than the refault its eviction may cost.
    /// A page in use or pinned ends the span. Dirty victims of a failed
    /// call go to `w.failed`.
    fn protect_dirty(&self, w: &mut EvictScratch) {
        w.protect.clear();
        w.held.clear();
        w.failed.clear();
        w.targets.clear();
        w.targets.extend(w.victims.iter().filter(|v| v.1 == DIRTY).map(|v| v.0));
        w.targets.extend_from_slice(&w.probes);
        w.targets.sort_unstable();
        // Dirty pages held, which join the victims: at most as many as
        // the victims, so that a batch stays within twice `evict_batch`.
        let mut joining = 0;
        for &page in &w.targets {
            let joined = match w.protect.last() {
                Some(&(first, len)) if page - (first + len) <= MAX_PROTECT_GAP => {
                    let mark = w.held.len();
                    let joining_before = joining;
                    let owned = (first + len..page).all(|g| {
                        if w.victims.binary_search_by_key(&g, |v| v.0).is_ok() {
                            return true;
                        }
                        let gs = self.state[g].load(Ordering::Acquire);
                        if gs == DIRTY {
                            if joining == w.victims.len() {
                                return false;
                            }
                            joining += 1;
                        }
                        let own = matches!(gs, EMPTY | BACKED | CLEAN | PROBED | DIRTY)
                            && self.pins[g].load(Ordering::SeqCst) == 0
                            && self.claim(g, gs);
                        if own && self.pins[g].load(Ordering::SeqCst) != 0 {
                            self.set(g, gs);
                            return false;
                        }
                        if own {
                            w.held.push((g, gs));
                        }
                        own
                    });
                    if !owned {
                        for &(g, gs) in &w.held[mark..] {
                            self.set(g, gs);
                        }
                        w.held.truncate(mark);
                        joining = joining_before;
                    }
                    owned
                }
                _ => false,
            };
            match w.protect.last_mut() {
                Some((first, len)) if joined => *len = page + 1 - *first,
                _ => w.protect.push((page, 1)),
            }
        }
        w.unprotected.clear();
        for &(first, len) in &w.protect {
            if let Err(e) = self.uffd.write_protect(self.addr(first), len * PAGE_SIZE, true) {
                self.record(self.os_error("UFFDIO_WRITEPROTECT", e));
                w.unprotected.push((first, len));
                w.failed
                    .extend(w.targets.iter().copied().filter(|p| (first..first + len).contains(p)));
            }
        }
        let mut joined = false;
        for &(g, was) in &w.held {
            if was != DIRTY {
                self.set(g, was);
            } else if w.unprotected.iter().any(|&(f, l)| (f..f + l).contains(&g)) {
                let _ = self.uffd.write_protect(self.addr(g), PAGE_SIZE, false);
                self.set(g, DIRTY);
            } else {
                // Protected with the span: evicted with the batch, its
                // credit spent (a refault earns it anew).
                self.credit[g].store(0, Ordering::Relaxed);
                w.victims.push((g, DIRTY));
                joined = true;
            }
        }
        if joined {
            w.victims.sort_unstable();
        }
        // Probes are sampled now; one the kernel did not protect stays dirty.
        for &page in &w.probes {
            if w.failed.contains(&page) {
                let _ = self.uffd.write_protect(self.addr(page), PAGE_SIZE, false);
                self.set(page, DIRTY);
            } else {
                self.set(page, PROBED);
            }
        }
        w.failed.retain(|p| w.probes.binary_search(p).is_err());
        self.stats
            .protect_calls
            .fetch_add(w.protect.len() as u64, Ordering::Relaxed);
    }

    /// Evicts one batch.
    fn evict_batch(&self, w: &mut EvictScratch) -> Evicted {
        // Whole batches, whatever the excess over the low mark: faults go on
        // while a batch is evicted, and a batch of just the excess would
        // keep the evictor at the mark, a few pages (and two TLB flushes)
        // a batch.
        self.pick_victims(self.config.evict_batch, w);
        let stale = self.drop_raw_handles(&mut w.stale);
        self.stats.stale_drops.fetch_add(stale as u64, Ordering::Relaxed);
        if w.victims.is_empty() && w.probes.is_empty() {
            return Evicted::Nothing;
        }
        // Dirty pages are write-protected first, so that what is copied is
        // what stays: a writer now faults and waits for the eviction.
        self.protect_dirty(w);
        if w.victims.is_empty() {
            // Only probes this time: the hand evicts them on its next turn.
            return Evicted::Some;
        }
        // Classify: clean (dropped), zero (dropped, no storage), written.
        w.write.clear();
        w.zero.clear();
        for &(page, s) in &w.victims {
            if (s == DIRTY || s == PROBED) && !w.failed.contains(&page) {
                if self.mapping.page(page).0.iter().all(|&b| b == 0) {
                    w.zero.push(page);
                } else {
                    w.write.push(page);
                }
            }
        }
        // One batch call for every page written, whatever their addresses.
        w.handles.clear();
        let pages: Vec<&Page> = w.write.iter().map(|&p| self.mapping.page(p)).collect();
        let first = w.write.first().map_or(0, |&p| p as u64);
        let written = match self
            .backend
            .backup_pages(&pages, first, BackupFlags::NONE, &mut w.handles)
        {
            Ok(()) => pages.len(),
            Err(BatchError { completed, error }) => {
                self.stats.backup_errors.fetch_add(1, Ordering::Relaxed);
                self.record(error);
                completed
            }
        };
        drop(pages);
        // Pages not written go back to being dirty and writable.
        w.failed.extend_from_slice(&w.write[written..]);
        w.write.truncate(written);
        for &page in &w.failed {
            let _ = self.uffd.write_protect(self.addr(page), PAGE_SIZE, false);
            self.set(page, DIRTY);
        }
        // Release every page that is done with one call.
        w.done.clear();
        w.done
            .extend(w.victims.iter().map(|v| v.0).filter(|p| !w.failed.contains(p)));
        w.runs.clear();
        runs_of(w.done.iter().copied(), &mut w.runs);
        let released = match self.releaser.release(&self.mapping, &w.runs) {
            Ok(calls) => {
                self.stats.release_calls.fetch_add(calls, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.record(BackupError::Io {
                    origin: pagebackup_core::Origin::new("region", pagebackup_core::Operation::Maintenance),
                    source: e,
                });
                false
            }
        };
        let mut next_handle = w.handles.iter();
        for &(page, s) in &w.victims {
            if w.failed.contains(&page) {
                continue;
            }
            let old = self.handle[page].load(Ordering::Relaxed);
            let state = if s == CLEAN {
                BACKED
            } else if w.zero.binary_search(&page).is_ok() {
                if old != 0 {
                    w.stale.push(old);
                }
                self.handle[page].store(0, Ordering::Relaxed);
                EMPTY
            } else {
                let Some(new) = next_handle.next() else { continue };
                if old != 0 {
                    w.stale.push(old);
                }
                self.handle[page].store(new.to_raw(), Ordering::Relaxed);
                BACKED
            };
            if released {
                let now = self.evictions.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                self.evicted_at[page].store(now.max(1), Ordering::Relaxed);
                self.set(page, state);
            } else {
                // Still mapped and write-protected: a clean resident page,
                // or a dirty one when it holds no copy.
                self.set(page, if state == EMPTY { DIRTY } else { CLEAN });
                if state == EMPTY {
                    let _ = self.uffd.write_protect(self.addr(page), PAGE_SIZE, false);
                }
            }
        }
        if released {
            self.resident.fetch_sub(w.done.len(), Ordering::AcqRel);
            self.room.freed();
            self.stats
                .evicted_pages
                .fetch_add(w.done.len() as u64, Ordering::Relaxed);
            self.stats
                .clean_drops
                .fetch_add((w.done.len() - w.write.len() - w.zero.len()) as u64, Ordering::Relaxed);
            self.stats.zero_drops.fetch_add(w.zero.len() as u64, Ordering::Relaxed);
            self.stats.evict_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .written_back
            .fetch_add(w.write.len() as u64, Ordering::Relaxed);
        self.drop_raw_handles(&mut w.stale);
        if released && !w.done.is_empty() {
            Evicted::Some
        } else {
            Evicted::Failed
        }
    }

    /// Drops the handles whose raw values `raw` holds, emptying it (so that
    /// the evictor's list is empty again for its next use); returns how many.
    fn drop_raw_handles(&self, raw: &mut Vec<u64>) -> usize {
        let handles: Vec<Handle> = raw.drain(..).filter_map(Handle::from_raw).collect();
        if !handles.is_empty()
            && let Err(e) = self.backend.drop_handles(&handles)
        {
            self.record(e.error);
        }
        handles.len()
    }

    /// Brings the pages of `pages` in (writable if `write`), on this thread.
    fn prefault(&self, pages: Range<usize>, write: bool) -> Result<(), BackupError> {
        for page in pages {
            self.serve(page, Some(write), Ctx::Api)?;
        }
        Ok(())
    }
}

impl SignalFaults for Shared {
    /// Serves a fault on the faulting thread (`SIGBUS` handler).
    fn on_signal(&self, addr: usize, write: Option<bool>) -> Fault {
        let start = Instant::now();
        let page = (addr - self.mapping.addr()) / PAGE_SIZE;
        let result = self.serve(page, write, Ctx::Signal);
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fault_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(_) => Fault::Served,
            Err(error) => {
                self.record(error);
                Fault::Failed
            }
        }
    }
}

/// What one eviction batch achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evicted {
    /// Pages were released.
    Some,
    /// No page could be taken (pinned, in use, none resident).
    Nothing,
    /// The backend or the kernel refused: nothing was released.
    Failed,
}

/// Buffers the evictor reuses from batch to batch.
#[derive(Debug, Default)]
struct EvictScratch {
    /// The clock hand: the next page index to look at.
    hand: usize,
    victims: Vec<(usize, u8)>,
    protect: Vec<(usize, usize)>,
    /// Dirty pages the hand write-protects as samples of their use.
    probes: Vec<usize>,
    /// The dirty victims and the probes, ascending: the pages to write-protect.
    targets: Vec<usize>,
    /// Pages between them owned for a write-protect call, with their states.
    held: Vec<(usize, u8)>,
    /// Spans whose write-protect call failed.
    unprotected: Vec<(usize, usize)>,
    failed: Vec<usize>,
    write: Vec<usize>,
    zero: Vec<usize>,
    handles: Vec<Handle>,
    runs: Vec<(usize, usize)>,
    done: Vec<usize>,
    stale: Vec<u64>,
}

/// Appends the runs `(first, len)` of consecutive values of the ascending `pages`.
fn runs_of(pages: impl Iterator<Item = usize>, out: &mut Vec<(usize, usize)>) {
    for page in pages {
        match out.last_mut() {
            Some((first, len)) if *first + *len == page => *len += 1,
            _ => out.push((page, 1)),
        }
    }
}

/// A range of ordinary memory that pages itself to a backend under a budget.
///
/// The region is anonymous memory registered with `userfaultfd`. A page
/// never written reads as zeros; a page evicted is faulted back from its
/// copy in the backend; when more than `budget` bytes are resident, a
/// background thread backs up the oldest pages in batches (one batch call to
/// the backend, one `process_madvise(MADV_DONTNEED)` to release them) ahead
/// of the budget, so that a fault costs a lookup, a restore and one
/// `UFFDIO_COPY`. Pages restored by a read are write-protected: if they stay
/// clean, eviction drops them without writing them again.
///
/// # Fault modes
///
/// - [`FaultMode::Signal`] (the default): the faulting thread serves its own
///   fault in a `SIGBUS` handler (`UFFD_FEATURE_SIGBUS`). The handler takes
///   no lock the interrupted code may hold and allocates nothing of its own
///   (staging buffers are made up front); it calls the backend's
///   `copy_pages`. Consequences, documented rules:
///   - a **system call** given evicted memory (`read(fd, ptr, n)` into it,
///     `write(fd, ptr, n)` from it) fails with `EFAULT` instead of faulting:
///     [`pin`](Self::pin) (or [`prefault`](Self::prefault)) the range first;
///   - code that holds a lock the backend's restore takes (a call into the
///     same backend) must not touch non-resident region memory: pass region
///     pages to the backend through [`backend`](Self::backend), which pins
///     them, or pin them yourself;
///   - faults outside every region go to the `SIGBUS` handler installed
///     before the first region was made.
/// - [`FaultMode::HandlerThread`]: a thread reads the descriptor and serves
///   faults, spinning for [`RegionConfig::handler_spin`] after each before it
///   sleeps; system calls on evicted memory work (the kernel waits for the
///   handler). Each fault costs a hand-off between threads.
///
/// # Errors on access
///
/// A page the backend cannot restore is never mapped as zeros: it is
/// poisoned (`UFFDIO_POISON`), so the access raises `SIGBUS` as a memory
/// error would (in signal mode the region's handler passes it to the
/// handler installed before, by default ending the process), and the error
/// is kept ([`last_error`](Self::last_error)). [`prefault`](Self::prefault)
/// and [`pin`](Self::pin) return it instead, and retry poisoned pages.
///
/// # Fork
///
/// The mapping is `MADV_DONTFORK`: a child does not inherit it.
#[derive(Debug)]
pub struct OffloadRegion {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    registration: Option<Registration>,
}

impl OffloadRegion {
    /// A region of `len` bytes (rounded up to pages) keeping at most
    /// `budget` bytes resident, paging to `backend`, in the default mode.
    pub fn new(len: usize, budget: usize, backend: impl BackupBackend + 'static) -> Result<Self, RegionError> {
        Self::with_config(len, budget, Box::new(backend), RegionConfig::default())
    }

    /// A region as [`new`](Self::new) makes, with `config`.
    pub fn with_config(
        len: usize,
        budget: usize,
        backend: Box<dyn BackupBackend>,
        config: RegionConfig,
    ) -> Result<Self, RegionError> {
        let pages = len.div_ceil(PAGE_SIZE);
        let budget_pages = budget / PAGE_SIZE;
        config.check()?;
        let min_budget = 4 * MAX_READ_AHEAD;
        if pages == 0 || pages >= u32::MAX as usize {
            return Err(RegionError::InvalidInput(format!(
                "a region of {len} bytes: give between 1 and {} pages",
                u32::MAX - 1
            )));
        }
        if budget_pages < min_budget {
            return Err(RegionError::InvalidInput(format!(
                "a budget of {budget} bytes: give at least {} bytes ({min_budget} pages)",
                min_budget * PAGE_SIZE
            )));
        }
        let supported = Uffd::supported_features().map_err(|source| RegionError::Os {
            op: "opening a userfaultfd",
            source,
        })?;
        let mut features = u64::from(uapi::UFFD_FEATURE_PAGEFAULT_FLAG_WP);
        if config.mode == FaultMode::Signal {
            features |= u64::from(uapi::UFFD_FEATURE_SIGBUS);
        }
        if supported & features != features {
            return Err(RegionError::Unsupported {
                what: if supported & u64::from(uapi::UFFD_FEATURE_SIGBUS) == 0 {
                    "UFFD_FEATURE_SIGBUS (Linux 4.14), for the signal fault mode"
                } else {
                    "userfaultfd write-protect on anonymous memory (Linux 5.7)"
                },
                detail: format!("the kernel offers the features {supported:#x}"),
            });
        }
        let poison = supported & u64::from(uapi::UFFD_FEATURE_POISON) != 0;
        if poison {
            features |= u64::from(uapi::UFFD_FEATURE_POISON);
        }
        let uffd = Uffd::open(features).map_err(|source| RegionError::Os {
            op: "enabling userfaultfd features",
            source,
        })?;
        let mapping = Mapping::new(pages * PAGE_SIZE).map_err(|source| RegionError::Os {
            op: "mapping the region",
            source,
        })?;
        let ioctls = uffd.register(&mapping).map_err(|source| RegionError::Os {
            op: "registering the region with userfaultfd",
            source,
        })?;
        for (bit, name) in [
            (uapi::_UFFDIO_COPY, "UFFDIO_COPY"),
            (uapi::_UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE"),
            (uapi::_UFFDIO_WRITEPROTECT, "UFFDIO_WRITEPROTECT"),
        ] {
            if ioctls & (1 << bit) == 0 {
                return Err(RegionError::Unsupported {
                    what: name,
                    detail: format!("the registered range offers the ioctls {ioctls:#x}"),
                });
            }
        }
        let budget_pages = budget_pages.min(pages.max(min_budget));
        let headroom = (budget_pages / 16).max(config.read_ahead * 2);
        let high = budget_pages.saturating_sub(headroom);
        let low = high.saturating_sub(config.evict_batch.max(budget_pages / 16));
        let low_after_idle = high.saturating_sub(config.evict_batch.max(budget_pages / 64));
        let threads_hint = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shared = Arc::new(Shared {
            uffd,
            mapping,
            pages,
            backend,
            state: (0..pages).map(|_| AtomicU8::new(EMPTY)).collect(),
            handle: (0..pages).map(|_| AtomicU64::new(0)).collect(),
            pins: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            credit: (0..pages).map(|_| AtomicU8::new(0)).collect(),
            evicted_at: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            evictions: AtomicU32::new(0),
            resident: AtomicUsize::new(0),
            budget: budget_pages,
            high,
            low,
            low_after_idle,
            config: config.clone(),
            staging: (0..(4 * threads_hint).max(16))
                .map(|_| Mutex::new(Page::new_boxed_slice(MAX_READ_AHEAD)))
                .collect(),
            stats: Counters::default(),
            evictor: OnceLock::new(),
            stop: AtomicBool::new(false),
            last_end: AtomicUsize::new(usize::MAX),
            stalled: AtomicBool::new(false),
            room: Room::default(),
            error: Mutex::new(None),
            write_score: AtomicI32::new(0),
            poison,
            releaser: Releaser::new(),
        });
        let mut region = OffloadRegion {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            registration: None,
        };
        if config.mode == FaultMode::Signal {
            sys::install_sigbus_handler().map_err(|source| RegionError::Os {
                op: "installing the SIGBUS handler",
                source,
            })?;
            region.registration = Some(
                sys::register_region(
                    Arc::clone(&shared) as Arc<dyn SignalFaults>,
                    shared.mapping.addr(),
                    shared.mapping.len(),
                )
                .ok_or_else(|| {
                    RegionError::InvalidInput(format!(
                        "{} regions in signal mode are alive already; drop one or use the handler-thread mode",
                        sys::MAX_REGIONS
                    ))
                })?,
            );
        } else {
            let s = Arc::clone(&shared);
            region
                .threads
                .push(spawn("pagebackup-region-faults", move || s.handler_main())?);
        }
        let s = Arc::clone(&shared);
        let evictor = spawn("pagebackup-region-evict", move || s.evictor_main())?;
        let _ = shared.evictor.set(evictor.thread().clone());
        region.threads.push(evictor);
        Ok(region)
    }

    /// The length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.shared.mapping.len()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The budget in bytes: at most this much is resident, bar transient
    /// overshoot when the backend cannot take pages.
    pub fn budget(&self) -> usize {
        self.shared.budget * PAGE_SIZE
    }

    /// The mode faults are served in.
    pub fn mode(&self) -> FaultMode {
        self.shared.config.mode
    }

    /// The memory, to read.
    pub fn as_slice(&self) -> &[u8] {
        self.shared.mapping.as_slice()
    }

    /// The memory, to read and write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        sys::exclusive_slice(self, |r| &r.shared.mapping)
    }

    /// The memory as 64-bit words that many threads may read and write at
    /// once (atomically; plain loads and stores on x86-64).
    pub fn words(&self) -> &[AtomicU64] {
        sys::words(&self.shared.mapping)
    }

    /// The first byte, for code that needs a pointer (FFI). Accesses through
    /// it follow the rules of the fault mode (see the type's documentation).
    pub fn as_ptr(&self) -> *mut u8 {
        self.shared.mapping.as_ptr()
    }

    /// Makes the pages of the byte range `range` resident now, on this
    /// thread, returning the backend's error for a page it cannot restore
    /// (and retrying pages poisoned earlier). They may be evicted again later.
    pub fn prefault(&self, range: Range<usize>) -> Result<(), RegionError> {
        let pages = self.page_range(&range)?;
        self.shared.prefault(pages, false).map_err(RegionError::Backend)
    }

    /// Keeps the pages of the byte range `range` resident and writable until
    /// the guard is dropped: for memory handed to the kernel (system calls)
    /// or to code that must not fault. At most half the budget may be pinned.
    pub fn pin(&self, range: Range<usize>) -> Result<PinGuard<'_>, RegionError> {
        let pages = self.page_range(&range)?;
        Self::pin_pages(&self.shared, pages)
    }

    /// Pins the byte range `range` as [`pin`](Self::pin) does and gives it
    /// as a mutable slice, for a system call or foreign code to write into.
    pub fn pin_mut(&mut self, range: Range<usize>) -> Result<PinnedMut<'_>, RegionError> {
        let pages = self.page_range(&range)?;
        let guard = Self::pin_pages(&self.shared, pages)?;
        let bytes = &mut sys::exclusive_slice(self, |r| &r.shared.mapping)[range];
        Ok(PinnedMut { bytes, _guard: guard })
    }

    fn pin_pages<'r>(shared: &Arc<Shared>, pages: Range<usize>) -> Result<PinGuard<'r>, RegionError> {
        if pages.len() > shared.budget / 2 {
            return Err(RegionError::InvalidInput(format!(
                "pinning {} pages: at most half the budget ({} pages) may be pinned",
                pages.len(),
                shared.budget / 2
            )));
        }
        for p in pages.clone() {
            shared.pins[p].fetch_add(1, Ordering::SeqCst);
        }
        let guard = PinGuard {
            shared: Arc::clone(shared),
            pages: pages.clone(),
            _region: PhantomData,
        };
        shared.prefault(pages, true).map_err(RegionError::Backend)?;
        Ok(guard)
    }

    fn page_range(&self, range: &Range<usize>) -> Result<Range<usize>, RegionError> {
        if range.start > range.end || range.end > self.len() {
            return Err(RegionError::InvalidInput(format!(
                "the byte range {range:?} is not inside the region of {} bytes",
                self.len()
            )));
        }
        Ok(range.start / PAGE_SIZE..range.end.div_ceil(PAGE_SIZE))
    }

    /// The backend, wrapped so that pages of this region given to it (as the
    /// page to back up or the destination of a restore) are pinned for the
    /// call: a call into the backend never faults on the region.
    pub fn backend(&self) -> RegionBackend<'_> {
        RegionBackend { region: self }
    }

    /// The last error the region met serving a fault or evicting, if any (taken).
    pub fn last_error(&self) -> Option<BackupError> {
        match self.shared.error.lock() {
            Ok(mut e) => e.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// Current figures.
    pub fn stats(&self) -> RegionStats {
        let s = &self.shared;
        s.stats.snapshot(
            s.resident.load(Ordering::Relaxed),
            s.releaser.vectored(),
            &s.backend.stats(),
        )
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, RegionError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|source| RegionError::Os {
            op: "starting the region's thread",
            source,
        })
}

impl Drop for OffloadRegion {
    fn drop(&mut self) {
        let s = &self.shared;
        s.stop.store(true, Ordering::Release);
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Waits for signal handlers inside the region to return.
        self.registration = None;
        let mut live: Vec<u64> = (0..s.pages)
            .filter(|&p| s.state[p].load(Ordering::Acquire) != EMPTY)
            .map(|p| s.handle[p].load(Ordering::Relaxed))
            .filter(|&h| h != 0)
            .collect();
        s.drop_raw_handles(&mut live);
    }
}

/// Pages of a region kept resident and writable; see [`OffloadRegion::pin`].
#[derive(Debug)]
pub struct PinGuard<'r> {
    shared: Arc<Shared>,
    pages: Range<usize>,
    _region: PhantomData<&'r OffloadRegion>,
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        for p in self.pages.clone() {
            self.shared.pins[p].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A pinned byte range of a region, writable; see [`OffloadRegion::pin_mut`].
#[derive(Debug)]
pub struct PinnedMut<'r> {
    bytes: &'r mut [u8],
    _guard: PinGuard<'r>,
}

impl std::ops::Deref for PinnedMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl std::ops::DerefMut for PinnedMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
}

/// A region's backend, pinning the region's pages it is handed; see
/// [`OffloadRegion::backend`].
#[derive(Debug)]
pub struct RegionBackend<'r> {
    region: &'r OffloadRegion,
}

impl RegionBackend<'_> {
    /// Pins `page` if it lies in the region.
    fn pin_if_inside(&self, page: &Page) -> pagebackup_core::Result<Option<PinGuard<'_>>> {
        let addr = page as *const Page as usize;
        let base = self.region.shared.mapping.addr();
        if !(base..base + self.region.len()).contains(&addr) {
            return Ok(None);
        }
        let offset = addr - base;
        self.region
            .pin(offset..offset + PAGE_SIZE)
            .map(Some)
            .map_err(|e| match e {
                RegionError::Backend(b) => b,
                other => BackupError::Io {
                    origin: pagebackup_core::Origin::new("region", pagebackup_core::Operation::CopyPage),
                    source: std::io::Error::other(other.to_string()),
                },
            })
    }

    fn inner(&self) -> &dyn BackupBackend {
        &*self.region.shared.backend
    }
}

impl BackupBackend for RegionBackend<'_> {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        let _pin = self.pin_if_inside(page)?;
        self.inner().backup_page(page, idx, flags)
    }
    fn copy_page(
        &self,
        dst: &mut Page,
        handle: Handle,
        intr: Option<&pagebackup_core::Interrupt>,
    ) -> pagebackup_core::Result<()> {
        let _pin = self.pin_if_inside(dst)?;
        self.inner().copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.inner().drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.inner().bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.inner().stats()
    }
    fn flush(&self) -> pagebackup_core::Result<()> {
        self.inner().flush()
    }
    fn maintain(&self) -> pagebackup_core::Result<()> {
        self.inner().maintain()
    }
    fn maintain_step(&self) -> pagebackup_core::Result<bool> {
        self.inner().maintain_step()
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultMode::Signal => "signal",
            FaultMode::HandlerThread => "thread",
        })
    }
}
