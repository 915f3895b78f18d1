//! A tokio service that keeps buffers under a memory budget: buffers are
//! async page arrays; when the resident pages exceed the budget, the least
//! recently used buffers are backed up through `open_async`, and a buffer
//! is restored when a task asks for it again. Eight tasks read and write
//! buffers at once, and each checks the bytes it reads.
//!
//! ```text
//! cargo run --release --all-features --example tokio_offload [-- SPEC]
//! ```
//!
//! SPEC is any backend spec (`memory`, `shmem:capacity=1GiB`, ...); the
//! default is `memory`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pagebackup::{AsyncPageArray, BackupFlags, open_async};
use tokio::sync::Mutex as AsyncMutex;

/// Buffers the service holds, and pages in each.
const BUFFERS: usize = 32;
const PAGES_EACH: usize = 128;
/// Resident pages the service may keep: a quarter of what it holds.
const BUDGET_PAGES: usize = BUFFERS * PAGES_EACH / 4;
const TASKS: u64 = 8;
const ACCESSES_PER_TASK: u64 = 200;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Buffer {
    pages: AsyncPageArray,
    /// Bumped on every write; the pages hold it, so a read can check them.
    version: u8,
}

struct Service {
    buffers: Vec<AsyncMutex<Buffer>>,
    /// Buffer numbers, least recently used first.
    lru: Mutex<VecDeque<usize>>,
}

impl Service {
    /// Makes buffer `n` resident, reads it (checking every page) or writes
    /// it, then backs up least recently used buffers while over the budget.
    async fn access(&self, n: usize, write: bool) -> Result<(), Error> {
        {
            let mut buffer = self.buffers[n].lock().await;
            buffer.pages.restore(None).await?;
            let expected = [n as u8 ^ buffer.version; 8];
            for i in 0..buffer.pages.len() {
                let page = buffer.pages.get(i).expect("restored");
                assert_eq!(page.0[..8], expected, "buffer {n} page {i} lost its bytes");
            }
            if write {
                buffer.version = buffer.version.wrapping_add(1);
                let fill = n as u8 ^ buffer.version;
                for i in 0..buffer.pages.len() {
                    buffer.pages.get_mut(i).expect("resident").0.fill(fill);
                }
            }
        }
        {
            let mut lru = self.lru.lock().expect("lru lock");
            lru.retain(|&b| b != n);
            lru.push_back(n);
        }
        self.enforce_budget(n).await
    }

    async fn resident_pages(&self) -> usize {
        let mut total = 0;
        for buffer in &self.buffers {
            if let Ok(buffer) = buffer.try_lock() {
                total += buffer.pages.counts().resident;
            }
        }
        total
    }

    /// Backs up the least recently used buffers other than `keep` (skipping
    /// those another task is using) until the resident pages fit the budget.
    async fn enforce_budget(&self, keep: usize) -> Result<(), Error> {
        let order: Vec<usize> = self.lru.lock().expect("lru lock").iter().copied().collect();
        for victim in order.into_iter().filter(|&b| b != keep) {
            if self.resident_pages().await <= BUDGET_PAGES {
                break;
            }
            if let Ok(mut buffer) = self.buffers[victim].try_lock() {
                buffer.pages.backup(BackupFlags::NONE).await?;
            }
        }
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let backend = open_async(&spec)?;
    let mut buffers = Vec::new();
    for n in 0..BUFFERS {
        let mut pages = AsyncPageArray::new_zeroed(PAGES_EACH, Arc::clone(&backend));
        for i in 0..PAGES_EACH {
            pages.get_mut(i).expect("resident").0.fill(n as u8);
        }
        buffers.push(AsyncMutex::new(Buffer { pages, version: 0 }));
    }
    let service = Arc::new(Service {
        buffers,
        lru: Mutex::new((0..BUFFERS).collect()),
    });
    service.enforce_budget(BUFFERS).await?;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                // A small xorshift so that each task has its own sequence.
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (task + 1);
                for _ in 0..ACCESSES_PER_TASK {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    service
                        .access((x % BUFFERS as u64) as usize, x.is_multiple_of(4))
                        .await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let stats = backend.stats();
    println!(
        "{spec}: {} accesses by {TASKS} tasks to {BUFFERS} buffers of {PAGES_EACH} pages, every read checked; \
         {} of {} pages resident (budget {BUDGET_PAGES}), {} backed up ({} MiB held by the backend)",
        TASKS * ACCESSES_PER_TASK,
        service.resident_pages().await,
        BUFFERS * PAGES_EACH,
        stats.stored_pages,
        stats.memory_used >> 20,
    );
    Ok(())
}
