//! [`thread_index`]: a small, stable number per thread, for spreading
//! threads over a backend's shards.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's index: 0 for the first thread that asks, 1 for the next,
/// and so on. Backends take it modulo their shard count, so that threads
/// back up into different shards and rarely contend.
pub fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    INDEX.with(|cell| {
        if cell.get() == usize::MAX {
            cell.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        cell.get()
    })
}
