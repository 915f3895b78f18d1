//! What the tiered tests share: a memory tier over shmem, and the workload
//! of 8 threads backing up, restoring and dropping while the policy (a
//! thread or a task) moves pages, checked page by page.

#![allow(dead_code)] // each test binary uses a part

use pagebackup_core::{BackupBackend, MemoryBackend, PAGE_SIZE};
use pagebackup_shmem::ShmemBackend;
use pagebackup_testkit::{ConcurrentConfig, check_concurrent};
use pagebackup_tiered::{Tier, Tiered, TieredConfig};

/// A page's bytes.
pub const PAGE: u64 = PAGE_SIZE as u64;

/// A memory tier with a budget of `budget_pages` over a shmem tier.
pub fn memory_over_shmem(budget_pages: u64, config: TieredConfig) -> Tiered {
    Tiered::new(
        vec![
            Tier::new(MemoryBackend::new()).with_budget(budget_pages * PAGE),
            Tier::new(ShmemBackend::with_capacity(1 << 30).unwrap()),
        ],
        config,
    )
    .unwrap()
}

/// 8 threads of 4000 backups, restores (each verified) and drops on `t`
/// while its policy runs; then the policy must have moved pages down and
/// the stack, every handle dropped, must hold nothing in any tier.
pub fn eight_threads_while_the_policy_moves(t: &Tiered, seed: u64, label: &str) {
    let report = check_concurrent(
        t,
        &ConcurrentConfig {
            seed,
            threads: 8,
            ops_per_thread: 4_000,
        },
    )
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    // A move in flight may still be releasing the copy of a page dropped
    // meanwhile (dropped below, not yet uncounted): flush waits for it.
    t.flush().unwrap_or_else(|e| panic!("{label}: {e}"));
    let s = t.tier_stats();
    println!(
        "{label}: {report}; moved down {}, up {}",
        s[0].moved_down, s[1].moved_up
    );
    assert!(s[0].moved_down > 0, "{label}: the policy moved nothing");
    assert!(t.policy_state().runs > 0, "{label}: the policy never ran");
    assert_eq!(t.stats().stored_pages, 0, "{label}");
    assert!(
        s.iter().all(|s| s.pages == 0 && s.backend.stored_pages == 0),
        "{label}: {s:?}"
    );
}

/// Returns once the tiered backend's clock (the coarse monotonic clock,
/// which moves a kernel tick at a time, 1-10 ms) has moved on: a page used
/// after it is younger, to the millisecond a page's last use holds, than
/// every page used before it.
pub fn tick() {
    let coarse = || rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let start = coarse();
    while coarse() == start {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
