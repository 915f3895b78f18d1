//! Many threads backing up, restoring and dropping while the automatic
//! policy moves pages, and a hot/cold buffer pool whose upper tier stays
//! within its budget at every sample.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, Page};
use pagebackup_testkit::{PageSpec, SplitMix64};
use pagebackup_tiered::{Policy, Tiered, TieredConfig, WritebackFilter};

mod support;

use support::{PAGE, eight_threads_while_the_policy_moves, memory_over_shmem};

fn auto_memory(budget_pages: u64, promote: bool) -> Tiered {
    memory_over_shmem(budget_pages, auto(promote))
}

fn auto(promote: bool) -> TieredConfig {
    TieredConfig::new()
        .with_auto(Some(Duration::from_millis(1)))
        .with_promote(promote)
}

#[test]
fn concurrent_checker_while_the_policy_moves_and_promotes() {
    for policy in [Policy::Lfu, Policy::S3Fifo] {
        for (promote, keep_lower) in [(false, false), (true, false), (true, true)] {
            let config = auto(promote).with_policy(policy).with_keep_lower(keep_lower);
            let t = memory_over_shmem(32, config);
            let label = format!("{policy:?}, promote={promote}, keep_lower={keep_lower}");
            eight_threads_while_the_policy_moves(&t, 11, &label);
        }
    }
}

/// Restores and drops race moves down (writeback of everything, over and
/// over) and up (promotion): every restore gives the exact bytes, every
/// dropped handle is invalid, nothing is left held.
#[test]
fn restores_and_drops_racing_moves_give_exact_bytes_or_invalid_handle() {
    let t = auto_memory(1 << 20, true);
    let pages: Vec<(Handle, PageSpec)> = (0..512)
        .map(|i| {
            let spec = PageSpec::mixed(12, i);
            (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
        })
        .collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                t.writeback(WritebackFilter::All);
            }
        });
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (t, pages, done) = (&t, &pages, &done);
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(w);
                    let mut dst = Page::new_boxed();
                    // Each worker owns the pages k with k % 4 == w and drops them in the end.
                    let mine: Vec<_> = pages.iter().skip(w as usize).step_by(4).collect();
                    for _ in 0..20_000 {
                        let &&(h, spec) = &mine[rng.next_u64() as usize % mine.len()];
                        t.copy_page(&mut dst, h, None).unwrap();
                        spec.verify(&dst).unwrap();
                    }
                    for &&(h, _) in &mine {
                        t.drop_handle(h).unwrap();
                        let err = t.copy_page(&mut dst, h, None).unwrap_err();
                        assert_eq!(err.kind(), ErrorKind::InvalidHandle);
                    }
                    let _ = done;
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let s = t.tier_stats();
    println!("moved down {}, up {}", s[0].moved_down, s[1].moved_up);
    assert!(s[0].moved_down > 0 && s[1].moved_up > 0, "{s:?}");
    assert!(s.iter().all(|s| s.pages == 0 && s.backend.stored_pages == 0), "{s:?}");
}

/// A buffer pool: 2048 pages, 128 of them hot (taking 80% of restores), an
/// upper tier with a budget of 256 pages. At every sample the upper tier
/// holds at most its budget and uses at most that plus its metadata and
/// slab slack; in the end the hot pages are up and the cold ones down.
#[test]
fn buffer_pool_hot_pages_stay_up_cold_go_down_within_budget() {
    const BUDGET: u64 = 256;
    const PAGES: u64 = 2048;
    const HOT: u64 = 128;
    // The memory backend allocates 64-page slabs: one being filled and one
    // spare per shard a thread backing up into it uses: the test's, and
    // the policy thread's, which copies promoted pages up.
    const SLAB_SLACK: u64 = 2 * 2 * 64 * PAGE;
    let t = auto_memory(BUDGET, true);
    let done = AtomicBool::new(false);
    let pages: Vec<(Handle, PageSpec)> = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                let upper = &t.tier_stats()[0];
                assert!(upper.held_bytes <= BUDGET * PAGE, "over budget: {upper:?}");
                let s = &upper.backend;
                assert!(s.stored_bytes <= BUDGET * PAGE, "over budget: {s:?}");
                assert!(
                    s.memory_used <= BUDGET * PAGE + s.metadata_bytes + SLAB_SLACK,
                    "memory over budget: {s:?}"
                );
                samples += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            samples
        });
        let pages: Vec<(Handle, PageSpec)> = (0..PAGES)
            .map(|i| {
                let spec = PageSpec::mixed(13, i);
                (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
            })
            .collect();
        let mut rng = SplitMix64::new(14);
        let mut dst = Page::new_boxed();
        for round in 0..40_000u64 {
            let k = if rng.next_u64() % 10 < 8 {
                rng.next_u64() % HOT
            } else {
                HOT + rng.next_u64() % (PAGES - HOT)
            };
            let (h, spec) = pages[k as usize];
            t.copy_page(&mut dst, h, None).unwrap();
            spec.verify(&dst).unwrap();
            if round % 2000 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Let the policy settle on the last accesses: the hot set once more.
        std::thread::sleep(Duration::from_millis(20));
        for &(h, spec) in &pages[..HOT as usize] {
            t.copy_page(&mut dst, h, None).unwrap();
            spec.verify(&dst).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        done.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap();
        println!("{samples} samples");
        assert!(samples > 10);
        pages
    });
    let hot_up = pages[..HOT as usize]
        .iter()
        .filter(|(h, _)| t.tier_of(*h) == Some(0))
        .count();
    let cold_down = pages[HOT as usize..]
        .iter()
        .filter(|(h, _)| t.tier_of(*h) == Some(1))
        .count() as u64;
    let s = t.tier_stats();
    println!("hot up {hot_up}/{HOT}, cold down {cold_down}/{}; {s:?}", PAGES - HOT);
    assert_eq!(hot_up, HOT as usize, "every hot page is up");
    assert!(cold_down >= PAGES - BUDGET, "cold pages down: {cold_down}");
    for &(h, _) in &pages {
        t.drop_handle(h).unwrap();
    }
    assert!(
        t.tier_stats()
            .iter()
            .all(|s| s.pages == 0 && s.backend.stored_pages == 0)
    );
}
