//! The racing-restore checker: readers restore handles while other threads
//! drop the same handles and back up new pages at once, so that freed
//! storage is reused while reads of it are in flight.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagebackup_core::{BackupBackend, BackupFlags, BatchError, ErrorKind, Handle, Page};

use crate::{PageSpec, SplitMix64};

/// The word every destination page is filled with before a restore: a
/// failed restore must leave it in the failing page and every later one.
const SENTINEL: u64 = 0x5e47_14e1_dead_f00d;

/// Shape of a racing-restore run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceConfig {
    /// Seed of every thread's sequence (thread `t` uses `seed + t`).
    pub seed: u64,
    /// Threads restoring (single pages and batches) and verifying.
    pub readers: usize,
    /// Threads dropping handles and backing up new pages in their place.
    pub droppers: usize,
    /// Handles shared by all threads at once (few, so that they collide).
    pub entries: usize,
    /// Operations each thread runs at most.
    pub ops_per_thread: usize,
    /// Time the run takes at most (whichever of the two ends it first).
    pub max_time: Duration,
}

impl Default for RaceConfig {
    fn default() -> Self {
        RaceConfig {
            seed: 0x7ace,
            readers: 3,
            droppers: 2,
            entries: 16,
            ops_per_thread: 4_000,
            max_time: Duration::from_millis(300),
        }
    }
}

/// What a racing-restore run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaceReport {
    /// Pages restored and verified byte for byte.
    pub verified: u64,
    /// Restores that failed with `InvalidHandle`, every page from the
    /// failing one on still the sentinel.
    pub invalid: u64,
    /// Handles dropped while others restored them.
    pub dropped: u64,
}

impl fmt::Display for RaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pages verified, {} restores refused cleanly, {} handles dropped under them",
            self.verified, self.invalid, self.dropped
        )
    }
}

/// The handles in play: `entries[i]` holds a live handle's raw value (0
/// while a dropper replaces it); `specs` says what every handle ever issued
/// holds (handles are never reissued, so entries are never removed).
struct Table {
    entries: Vec<AtomicU64>,
    specs: Mutex<HashMap<u64, PageSpec>>,
    stop: AtomicBool,
    deadline: Instant,
}

impl Table {
    fn spec(&self, raw: u64) -> PageSpec {
        self.specs.lock().expect("spec lock")[&raw]
    }

    fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

#[derive(Default)]
struct Counters {
    verified: AtomicU64,
    invalid: AtomicU64,
    dropped: AtomicU64,
}

/// Runs `config.readers` threads restoring the handles of a small shared
/// table (one page or a batch at a time, into sentinel-filled pages) while
/// `config.droppers` threads drop those handles and back up new pages in
/// their place. Every `Ok` is verified byte for byte; every error must be
/// `InvalidHandle` for a handle that was indeed dropped, with the pages
/// before `completed` verified and the failing page and all after it still
/// the sentinel. At the end every handle left is verified and dropped.
/// Returns the first failure, naming the thread and seed.
pub fn check_racing_restores(b: &dyn BackupBackend, config: &RaceConfig) -> Result<RaceReport, String> {
    let table = Table {
        entries: (0..config.entries).map(|_| AtomicU64::new(0)).collect(),
        specs: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        deadline: Instant::now() + config.max_time,
    };
    let mut page = Page::new_boxed();
    for (i, entry) in table.entries.iter().enumerate() {
        let spec = PageSpec::mixed(config.seed, i as u64);
        let h = back_up(b, &mut page, spec, i as u64)?;
        table.specs.lock().expect("spec lock").insert(h.to_raw(), spec);
        entry.store(h.to_raw(), Ordering::Release);
    }
    let counters = Counters::default();
    let threads = config.readers + config.droppers;
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (table, counters) = (&table, &counters);
                let seed = config.seed.wrapping_add(t as u64);
                s.spawn(move || {
                    let result = if t < config.readers {
                        reader(b, seed, config.ops_per_thread, table, counters)
                    } else {
                        dropper(b, seed, config.ops_per_thread, table, counters)
                    };
                    if result.is_err() {
                        table.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let mut failure = None;
    for (t, r) in results.into_iter().enumerate() {
        if let Err(e) = r {
            let role = if t < config.readers { "reader" } else { "dropper" };
            failure.get_or_insert(format!(
                "{}: racing restores: {role} thread {t} (seed {:#x}): {e}",
                b.name(),
                config.seed.wrapping_add(t as u64)
            ));
        }
    }
    for entry in &table.entries {
        let raw = entry.swap(0, Ordering::AcqRel);
        if let Some(h) = Handle::from_raw(raw) {
            if failure.is_none() {
                let spec = table.spec(raw);
                let mut dst = sentinel_page();
                match b.copy_page(&mut dst, h, None) {
                    Ok(()) => {
                        if let Err(m) = spec.verify(&dst) {
                            failure = Some(format!(
                                "{}: handle {h:?} gave the wrong bytes at the end: {m}",
                                b.name()
                            ));
                        }
                    }
                    Err(e) => failure = Some(format!("{}: copy of {h:?} at the end: {e}", b.name())),
                }
            }
            if let Err(e) = b.drop_handle(h) {
                failure.get_or_insert(format!("{}: drop of {h:?} at the end: {e}", b.name()));
            }
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(RaceReport {
            verified: counters.verified.into_inner(),
            invalid: counters.invalid.into_inner(),
            dropped: counters.dropped.into_inner(),
        }),
    }
}

fn back_up(b: &dyn BackupBackend, page: &mut Page, spec: PageSpec, idx: u64) -> Result<Handle, String> {
    spec.fill(page);
    b.backup_page(page, idx, BackupFlags::NONE)
        .map_err(|e| format!("backup of {spec:?}: {e}"))
}

fn sentinel_page() -> Box<Page> {
    let mut page = Page::new_boxed();
    for chunk in page.0.chunks_exact_mut(8) {
        chunk.copy_from_slice(&SENTINEL.to_ne_bytes());
    }
    page
}

fn is_sentinel(page: &Page) -> bool {
    page.0.chunks_exact(8).all(|c| c == SENTINEL.to_ne_bytes())
}

/// Restores one to four consecutive entries' handles at a time (single
/// pages through `copy_page`), or the previous ones again, and checks the
/// outcome.
fn reader(b: &dyn BackupBackend, seed: u64, ops: usize, table: &Table, counters: &Counters) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let sentinel = sentinel_page();
    let mut dsts: Vec<Box<Page>> = (0..4).map(|_| sentinel_page()).collect();
    let mut prev: Vec<u64> = Vec::new();
    for _ in 0..ops {
        if table.over() {
            break;
        }
        // Now and then the previous handles again, likely dropped by now
        // (stale handles must be refused with nothing written).
        let raws: Vec<u64> = if !prev.is_empty() && rng.percent(25) {
            std::mem::take(&mut prev)
        } else {
            let n = 1 + rng.index(4);
            let first = rng.index(table.entries.len());
            (0..n)
                .map(|k| table.entries[(first + k) % table.entries.len()].load(Ordering::Acquire))
                .filter(|&raw| raw != 0)
                .collect()
        };
        if raws.is_empty() {
            continue;
        }
        prev.clone_from(&raws);
        let handles: Vec<Handle> = raws
            .iter()
            .map(|&raw| Handle::from_raw(raw).expect("a table entry is a handle"))
            .collect();
        let specs: Vec<PageSpec> = raws.iter().map(|&raw| table.spec(raw)).collect();
        let dsts = &mut dsts[..handles.len()];
        for dst in dsts.iter_mut() {
            dst.0.copy_from_slice(&sentinel.0);
        }
        let result = if handles.len() == 1 && rng.percent(50) {
            b.copy_page(&mut dsts[0], handles[0], None)
                .map_err(|error| BatchError { completed: 0, error })
        } else {
            let mut refs: Vec<&mut Page> = dsts.iter_mut().map(|d| &mut **d).collect();
            b.copy_pages(&handles, &mut refs, None)
        };
        let completed = match &result {
            Ok(()) => handles.len(),
            Err(e) => e.completed,
        };
        if completed > handles.len() {
            return Err(format!(
                "a restore of {} pages says it completed {completed}",
                handles.len()
            ));
        }
        for (k, (dst, spec)) in dsts[..completed].iter().zip(&specs).enumerate() {
            spec.verify(dst).map_err(|m| {
                format!(
                    "page {k} of {} ({:?}) restored with wrong bytes: {m}",
                    handles.len(),
                    handles[k]
                )
            })?;
        }
        counters.verified.fetch_add(completed as u64, Ordering::Relaxed);
        if let Err(e) = result {
            let h = handles[completed];
            if e.kind() != ErrorKind::InvalidHandle {
                return Err(format!(
                    "restore of {h:?} (page {completed}) failed other than InvalidHandle: {}",
                    e.error
                ));
            }
            if table
                .entries
                .iter()
                .any(|entry| entry.load(Ordering::Acquire) == h.to_raw())
            {
                return Err(format!(
                    "restore of {h:?} refused a handle that is still live: {}",
                    e.error
                ));
            }
            if let Some(k) = (completed..handles.len()).find(|&k| !is_sentinel(&dsts[k])) {
                let overwritten = if specs[k].verify(&dsts[k]).is_ok() {
                    "its own bytes"
                } else {
                    "bytes that are not its page's (another page's)"
                };
                return Err(format!(
                    "restore of {} pages failed at page {completed} ({h:?}, InvalidHandle) but page {k} was written \
                     with {overwritten}",
                    handles.len()
                ));
            }
            counters.invalid.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Takes an entry's handle, drops it, and backs up a new page in its place
/// (one at a time, or a few entries as one batch each way).
fn dropper(b: &dyn BackupBackend, seed: u64, ops: usize, table: &Table, counters: &Counters) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let mut pages = Page::new_boxed_slice(4);
    let mut next = seed.rotate_left(32);
    for _ in 0..ops {
        if table.over() {
            break;
        }
        let n = if rng.percent(25) { 1 + rng.index(4) } else { 1 };
        let first = rng.index(table.entries.len());
        let taken: Vec<(usize, Handle)> = (0..n)
            .map(|k| (first + k) % table.entries.len())
            .filter_map(|i| Handle::from_raw(table.entries[i].swap(0, Ordering::AcqRel)).map(|h| (i, h)))
            .collect();
        if taken.is_empty() {
            continue;
        }
        let handles: Vec<Handle> = taken.iter().map(|&(_, h)| h).collect();
        if handles.len() == 1 {
            b.drop_handle(handles[0])
        } else {
            b.drop_handles(&handles).map_err(|e| e.error)
        }
        .map_err(|e| format!("drop of {handles:?}: {e}"))?;
        counters.dropped.fetch_add(handles.len() as u64, Ordering::Relaxed);
        let specs: Vec<PageSpec> = (0..taken.len() as u64)
            .map(|k| PageSpec::mixed(seed, next + k))
            .collect();
        for (page, spec) in pages.iter_mut().zip(&specs) {
            spec.fill(page);
        }
        let refs: Vec<&Page> = pages[..specs.len()].iter().collect();
        let mut fresh = Vec::new();
        b.backup_pages(&refs, next, BackupFlags::NONE, &mut fresh)
            .map_err(|e| format!("backup of {} pages: {}", refs.len(), e.error))?;
        next += specs.len() as u64;
        let mut known = table.specs.lock().expect("spec lock");
        for (h, spec) in fresh.iter().zip(&specs) {
            known.insert(h.to_raw(), *spec);
        }
        drop(known);
        for ((i, _), h) in taken.iter().zip(&fresh) {
            table.entries[*i].store(h.to_raw(), Ordering::Release);
        }
    }
    Ok(())
}
