//! The multi-threaded checker: several threads back up, restore, hand over
//! and drop pages on one backend at once, and every page is verified.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup_core::{BackupBackend, BackupFlags, Handle, Page};

use crate::{PageSpec, SplitMix64};

/// Shape of a multi-threaded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrentConfig {
    /// Seed of every thread's sequence (thread `t` uses `seed + t`).
    pub seed: u64,
    /// Threads running at once.
    pub threads: usize,
    /// Operations each thread runs.
    pub ops_per_thread: usize,
}

/// What a multi-threaded run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConcurrentReport {
    /// Threads that ran.
    pub threads: usize,
    /// Pages backed up.
    pub backups: u64,
    /// Pages restored and verified.
    pub verified: u64,
    /// Pages restored and dropped by a thread other than the one that backed them up.
    pub handed_over: u64,
}

impl fmt::Display for ConcurrentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} threads: {} backups, {} restores verified, {} pages handed between threads",
            self.threads, self.backups, self.verified, self.handed_over
        )
    }
}

#[derive(Default)]
struct Counters {
    backups: AtomicU64,
    verified: AtomicU64,
    handed_over: AtomicU64,
}

/// Runs `config.threads` threads against `b` at once. Each backs up pages
/// (single and batch), restores and verifies its own, publishes some to a
/// shared pool from which other threads take, verify and drop them, and drops
/// its own. At the end every page left is verified and dropped. Returns the
/// first failure, naming the thread and seed.
pub fn check_concurrent(b: &dyn BackupBackend, config: &ConcurrentConfig) -> Result<ConcurrentReport, String> {
    let pool: Mutex<Vec<(Handle, PageSpec)>> = Mutex::new(Vec::new());
    let counters = Counters::default();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..config.threads)
            .map(|t| {
                let (pool, counters) = (&pool, &counters);
                s.spawn(move || {
                    worker(
                        b,
                        config.seed.wrapping_add(t as u64),
                        config.ops_per_thread,
                        pool,
                        counters,
                    )
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    for (t, r) in results.into_iter().enumerate() {
        r.map_err(|e| {
            format!(
                "{}: thread {t} (seed {:#x}): {e}",
                b.name(),
                config.seed.wrapping_add(t as u64)
            )
        })?;
    }
    let mut page = Page::new_boxed();
    for (h, spec) in pool.into_inner().expect("pool lock").drain(..) {
        restore_verify(b, &mut page, h, spec)?;
        b.drop_handle(h).map_err(|e| e.to_string())?;
        counters.verified.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ConcurrentReport {
        threads: config.threads,
        backups: counters.backups.into_inner(),
        verified: counters.verified.into_inner(),
        handed_over: counters.handed_over.into_inner(),
    })
}

fn restore_verify(b: &dyn BackupBackend, page: &mut Page, h: Handle, spec: PageSpec) -> Result<(), String> {
    b.copy_page(page, h, None).map_err(|e| format!("copy of {h:?}: {e}"))?;
    spec.verify(page).map_err(|m| format!("handle {h:?}: {m}"))
}

fn worker(
    b: &dyn BackupBackend,
    seed: u64,
    ops: usize,
    pool: &Mutex<Vec<(Handle, PageSpec)>>,
    counters: &Counters,
) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let mut own: Vec<(Handle, PageSpec)> = Vec::new();
    let mut pages = Page::new_boxed_slice(8);
    let mut next = 0u64;
    for _ in 0..ops {
        match rng.below(10) {
            0..=2 => {
                next += 1;
                let spec = PageSpec::mixed(seed, next);
                spec.fill(&mut pages[0]);
                let h = b
                    .backup_page(&pages[0], next, BackupFlags::NONE)
                    .map_err(|e| e.to_string())?;
                own.push((h, spec));
                counters.backups.fetch_add(1, Ordering::Relaxed);
            }
            3 => {
                let specs: Vec<PageSpec> = (0..pages.len() as u64)
                    .map(|k| PageSpec::mixed(seed, next + 1 + k))
                    .collect();
                next += specs.len() as u64;
                for (page, spec) in pages.iter_mut().zip(&specs) {
                    spec.fill(page);
                }
                let refs: Vec<&Page> = pages.iter().collect();
                let mut handles = Vec::new();
                b.backup_pages(&refs, next, BackupFlags::NONE, &mut handles)
                    .map_err(|e| e.to_string())?;
                own.extend(handles.into_iter().zip(specs));
                counters.backups.fetch_add(pages.len() as u64, Ordering::Relaxed);
            }
            4..=5 if !own.is_empty() => {
                let (h, spec) = own[rng.index(own.len())];
                restore_verify(b, &mut pages[0], h, spec)?;
                counters.verified.fetch_add(1, Ordering::Relaxed);
            }
            6 if !own.is_empty() => {
                let (h, _) = own.swap_remove(rng.index(own.len()));
                b.drop_handle(h).map_err(|e| e.to_string())?;
            }
            7 if !own.is_empty() => {
                let item = own.swap_remove(rng.index(own.len()));
                pool.lock().expect("pool lock").push(item);
            }
            _ => {
                let taken = {
                    let mut pool = pool.lock().expect("pool lock");
                    let len = pool.len();
                    (len > 0).then(|| pool.swap_remove(rng.index(len)))
                };
                if let Some((h, spec)) = taken {
                    restore_verify(b, &mut pages[0], h, spec)?;
                    b.drop_handle(h).map_err(|e| e.to_string())?;
                    counters.verified.fetch_add(1, Ordering::Relaxed);
                    counters.handed_over.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    for (h, spec) in own {
        restore_verify(b, &mut pages[0], h, spec)?;
        b.drop_handle(h).map_err(|e| e.to_string())?;
        counters.verified.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
