//! A buffer pool that gives memory back under a budget: buffers are page
//! arrays; when the resident pages exceed the budget, the least recently used
//! buffers are backed up in place, and a buffer is restored when it is used
//! again.
//!
//! ```text
//! cargo run --release --all-features --example buffer_pool [-- SPEC]
//! ```
//!
//! SPEC is any backend spec (`memory`, `shmem:capacity=1GiB`, ...); the
//! default is `memory`.

use std::collections::VecDeque;
use std::sync::Arc;

use pagebackup::layers::Instrumented;
use pagebackup::{BackupBackend, BackupFlags, PageArray, open};

/// Buffers the pool holds, and pages in each.
const BUFFERS: usize = 16;
const PAGES_EACH: usize = 512;
/// Resident pages the pool may keep: a quarter of what it holds.
const BUDGET_PAGES: usize = BUFFERS * PAGES_EACH / 4;

struct Pool {
    buffers: Vec<PageArray>,
    /// Buffer numbers, least recently used first.
    lru: VecDeque<usize>,
}

impl Pool {
    fn resident_pages(&self) -> usize {
        self.buffers.iter().map(|b| b.counts().resident).sum()
    }

    /// Makes buffer `n` resident and returns it, first backing up the least
    /// recently used buffers while the pool is over its budget.
    fn get(&mut self, n: usize) -> Result<&mut PageArray, Box<dyn std::error::Error>> {
        self.lru.retain(|&b| b != n);
        self.lru.push_back(n);
        let needed = self.buffers[n].counts().backed;
        for &victim in self.lru.iter().take(self.lru.len() - 1) {
            if self.resident_pages() + needed <= BUDGET_PAGES {
                break;
            }
            // A partly backed-up buffer is fine: whatever fit went out.
            if let Err(stopped) = self.buffers[victim].backup(BackupFlags::WRITEBACK) {
                eprintln!("buffer {victim}: {stopped}");
            }
        }
        self.buffers[n].restore(None)?;
        Ok(&mut self.buffers[n])
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let backend = Arc::new(Instrumented::new(open(&spec)?));
    let shared: Arc<dyn BackupBackend> = backend.clone();
    let mut pool = Pool {
        buffers: Vec::new(),
        lru: VecDeque::new(),
    };
    for n in 0..BUFFERS {
        pool.buffers.push(PageArray::new_zeroed(PAGES_EACH, shared.clone()));
        let buffer = pool.get(n)?;
        for (i, page) in buffer.iter_mut() {
            page.0[..16].copy_from_slice(&[(n as u64).to_le_bytes(), (i as u64).to_le_bytes()].concat());
        }
    }
    // A skewed workload: low-numbered buffers are used most.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = ((state % 100) as usize).pow(2) * BUFFERS / 10_000;
        let buffer = pool.get(n)?;
        for (i, page) in buffer.iter() {
            assert_eq!(page.0[..8], (n as u64).to_le_bytes(), "buffer {n} page {i}");
            assert_eq!(page.0[8..16], (i as u64).to_le_bytes(), "buffer {n} page {i}");
        }
    }
    let ops = backend.op_stats();
    println!("backend: {spec}");
    println!("pool: {BUFFERS} buffers of {PAGES_EACH} pages, budget {BUDGET_PAGES} resident pages");
    println!(
        "resident now: {} pages; held by the backend: {} pages",
        pool.resident_pages(),
        backend.stats().stored_pages
    );
    for (name, op) in [("backup", ops.backup), ("restore", ops.restore), ("drop", ops.drop)] {
        let per_page = op.per_page().map_or("-".into(), |d| format!("{d:?}"));
        println!(
            "{name:>8}: {} calls, {} pages, {} errors, {per_page} per page",
            op.calls, op.pages, op.errors
        );
    }
    drop(pool);
    assert_eq!(backend.stats().stored_pages, 0, "the pool left pages behind");
    Ok(())
}
