//! Compaction under churn, and shards under several threads: memory stays
//! close to what the live pages need.

use std::time::{Duration, Instant};

use pagebackup_compressed::{Algorithm, CHUNK_BYTES, CompressedBackend, CompressedConfig, METADATA_BYTES_PER_PAGE};
use pagebackup_core::{BackupBackend, BackupFlags, Handle, Page};
use pagebackup_testkit::{PageClass, PageSpec};

/// Bytes the live pages need: their objects and their metadata.
fn needed(b: &CompressedBackend) -> u64 {
    let s = b.stats();
    s.stored_bytes + s.stored_pages * METADATA_BYTES_PER_PAGE
}

fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort_unstable();
    times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

/// This thread's CPU time: unlike wall time, it leaves out the time the
/// thread was not running, which on a busy machine dominates the tail.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall and CPU time of one backup each.
#[derive(Default)]
struct Times {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Times {
    fn summary(&mut self) -> String {
        let mut line = String::new();
        for (name, times) in [("wall", &mut self.wall), ("cpu", &mut self.cpu)] {
            line += &format!(
                " {name} {:.1}/{:.1}/{:.1}",
                percentile(times, 0.5),
                percentile(times, 0.99),
                percentile(times, 0.999)
            );
        }
        line
    }
}

/// Heap, text and numeric pages: objects of many sizes.
fn spec(i: u64) -> PageSpec {
    let class = [PageClass::Heap, PageClass::Text, PageClass::Numeric][(i % 3) as usize];
    PageSpec::new(0xc4u64, i, class)
}

fn churn(algorithm: Algorithm) {
    const LIVE: u64 = 4096;
    let b = CompressedBackend::new(CompressedConfig::new(algorithm)).unwrap();
    let mut live: Vec<(Handle, PageSpec)> = Vec::new();
    let mut quiet = Times::default();
    let mut page = Page::new_boxed();
    let mut next = 0;
    let mut backup = |b: &CompressedBackend, times: &mut Times, page: &mut Page| {
        let s = spec(next);
        next += 1;
        s.fill(page);
        let (t, c) = (Instant::now(), cpu_time());
        let h = b.backup_page(page, 0, BackupFlags::NONE).unwrap();
        times.cpu.push(cpu_time() - c);
        times.wall.push(t.elapsed());
        (h, s)
    };
    for _ in 0..LIVE {
        live.push(backup(&b, &mut quiet, &mut page));
    }
    // Drop a random live page and back up a new one, 10 times the live set.
    let mut churned = Times::default();
    let mut drops = Times::default();
    let mut worst: f64 = 0.0;
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..10 * LIVE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (h, _) = live.swap_remove((x % live.len() as u64) as usize);
        let (t, c) = (Instant::now(), cpu_time());
        b.drop_handle(h).unwrap();
        drops.cpu.push(cpu_time() - c);
        drops.wall.push(t.elapsed());
        live.push(backup(&b, &mut churned, &mut page));
        let ratio = b.stats().memory_used as f64 / needed(&b) as f64;
        worst = worst.max(ratio);
        assert!(ratio <= 1.06, "memory used {ratio:.3}x the live bytes: {:?}", b.stats());
    }
    println!(
        "{algorithm}: churn of {} pages over {LIVE} live: memory used at most {worst:.3}x live bytes + metadata \
         ({} objects moved); p50/p99/p99.9 µs of a backup quiet{}, under churn{}; of a drop under churn{}",
        10 * LIVE,
        b.stats().compacted_pages,
        quiet.summary(),
        churned.summary(),
        drops.summary(),
    );
    assert!(b.stats().compacted_pages > 0);
    for &(h, s) in &live {
        b.copy_page(&mut page, h, None).unwrap();
        s.verify(&page).unwrap();
    }
}

#[test]
fn memory_stays_within_six_percent_of_the_live_bytes_under_churn() {
    churn(Algorithm::Lz4);
    #[cfg(feature = "zstd")]
    churn(Algorithm::Zstd { level: 1 });
}

#[test]
fn two_threads_and_exited_threads_do_not_multiply_waste() {
    let specs: Vec<PageSpec> = (0..8192).map(spec).collect();
    let one = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap();
    for (i, s) in specs.iter().enumerate() {
        one.backup_page(&s.page(), i as u64, BackupFlags::NONE).unwrap();
    }
    let single = one.stats().memory_used;
    // Two threads at once, each on half the pages; then eight short-lived
    // threads one after the other, each dropping its predecessor's pages.
    let two = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap();
    std::thread::scope(|s| {
        for half in specs.chunks(specs.len() / 2) {
            let two = &two;
            s.spawn(move || {
                for (i, spec) in half.iter().enumerate() {
                    two.backup_page(&spec.page(), i as u64, BackupFlags::NONE).unwrap();
                }
            });
        }
    });
    let both = two.stats().memory_used;
    let seq = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap();
    let mut previous: Vec<Handle> = Vec::new();
    for part in specs.chunks(specs.len() / 8) {
        previous = std::thread::scope(|s| {
            s.spawn(|| {
                seq.drop_handles(&previous).unwrap();
                part.iter()
                    .map(|spec| seq.backup_page(&spec.page(), 0, BackupFlags::NONE).unwrap())
                    .collect()
            })
            .join()
            .unwrap()
        });
    }
    let last = seq.stats();
    println!(
        "memory used: {single} by one thread, {both} by two ({:.4}x); {} for the last eighth after eight threads \
         ({:.4}x what it needs)",
        both as f64 / single as f64,
        last.memory_used,
        last.memory_used as f64 / needed(&seq) as f64
    );
    assert!(both as f64 <= single as f64 * 1.02, "{both} vs {single}");
    assert!(last.memory_used as f64 <= needed(&seq) as f64 * 1.10, "{last:?}");
}

/// Four threads back up, restore and drop at once, each its own pages, on
/// a backend with and without a small limit: compaction runs in shards
/// other threads are restoring from, and every restore is exact.
#[test]
fn four_threads_churn_under_a_limit_and_every_page_comes_back() {
    for limit in [Some(CompressedBackend::min_limit() + (1 << 20)), None] {
        let mut config = CompressedConfig::new(Algorithm::Lz4).with_checksum(true);
        if let Some(limit) = limit {
            config = config.with_limit(limit);
        }
        let b = CompressedBackend::new(config).unwrap();
        let no_space = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (b, no_space) = (&b, &no_space);
                s.spawn(move || {
                    let mut live: Vec<(Handle, PageSpec)> = Vec::new();
                    let mut page = Page::new_boxed();
                    let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ t;
                    for i in 0..6000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match x % 8 {
                            0..=3 => {
                                let s = spec(t << 32 | i);
                                s.fill(&mut page);
                                match b.backup_page(&page, i, BackupFlags::NONE) {
                                    Ok(h) => live.push((h, s)),
                                    Err(e) => {
                                        assert_eq!(e.kind(), pagebackup_core::ErrorKind::NoSpace, "{e}");
                                        assert!(limit.is_some(), "{e}");
                                        no_space.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                }
                            }
                            4 | 5 if !live.is_empty() => {
                                let (h, _) = live.swap_remove((x >> 8) as usize % live.len());
                                b.drop_handle(h).unwrap();
                            }
                            _ if !live.is_empty() => {
                                let (h, s) = live[(x >> 8) as usize % live.len()];
                                b.copy_page(&mut page, h, None).unwrap();
                                s.verify(&page).unwrap();
                            }
                            _ => {}
                        }
                        if let Some(limit) = limit {
                            assert!(b.stats().memory_used <= limit);
                        }
                    }
                    for &(h, s) in &live {
                        b.copy_page(&mut page, h, None).unwrap();
                        s.verify(&page).unwrap();
                        b.drop_handle(h).unwrap();
                    }
                });
            }
        });
        let s = b.stats();
        println!(
            "limit {limit:?}: {} backups refused, {} objects moved",
            no_space.into_inner(),
            s.compacted_pages
        );
        assert_eq!((s.stored_pages, s.stored_bytes), (0, 0), "{s:?}");
        assert!(s.compacted_pages > 0, "{s:?}");
    }
}

/// Idle steps (`maintain_step`) take the garbage that operations leave
/// (up to 1/64 of the live bytes) down to 1/256, a bounded step per call,
/// then report nothing left; memory goes down and every page comes back.
#[test]
fn idle_steps_give_back_the_garbage_operations_leave() {
    const PAGES: u64 = 40_000;
    let b = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap();
    let handles: Vec<Handle> = (0..PAGES)
        .map(|i| b.backup_page(&spec(i).page(), i, BackupFlags::NONE).unwrap())
        .collect();
    let mut kept = Vec::new();
    for (i, &h) in handles.iter().enumerate() {
        if i % 8 == 3 {
            b.drop_handle(h).unwrap();
        } else {
            kept.push((h, spec(i as u64)));
        }
    }
    let (before, used) = (b.arena_stats(), b.stats().memory_used);
    let idle_share = before.live_bytes / 256;
    assert!(
        before.garbage_bytes > idle_share + 2 * CHUNK_BYTES,
        "the drops leave {} bytes of garbage for {} live",
        before.garbage_bytes,
        before.live_bytes
    );
    let mut steps = 0;
    while b.maintain_step().unwrap() {
        steps += 1;
        assert!(steps < 1_000_000, "idle steps do not end");
    }
    let after = b.arena_stats();
    println!(
        "{steps} idle steps: garbage {} -> {} bytes, memory used {used} -> {}",
        before.garbage_bytes,
        after.garbage_bytes,
        b.stats().memory_used
    );
    assert!(after.garbage_bytes <= idle_share + CHUNK_BYTES, "{after:?}");
    assert!(b.stats().memory_used < used);
    assert!(!b.maintain_step().unwrap());
    let mut page = Page::new_boxed();
    for &(h, s) in &kept {
        b.copy_page(&mut page, h, None).unwrap();
        s.verify(&page).unwrap();
    }
}
