//! The process-wide cap on blocking jobs that compute: at most one fewer
//! than the machine has cores run at once (one on a single core), whichever
//! adapter they come from, so that a core stays free for the runtime's
//! workers.

use std::num::NonZero;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many blocking jobs of CPU-bound backends
/// ([`BackupBackend::cpu_bound`](pagebackup_core::BackupBackend::cpu_bound))
/// run at once in this process: one fewer than the cores it may use
/// (`available_parallelism`), and at least one. The others wait for a slot
/// without a thread. A core is left to the runtime's workers, whose timers
/// and I/O then stay on time under a deep queue of such calls; the codec
/// work itself runs no slower than on one thread.
pub fn cpu_slots() -> usize {
    slots().1
}

fn slots() -> &'static (Arc<Semaphore>, usize) {
    static SLOTS: OnceLock<(Arc<Semaphore>, usize)> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, NonZero::get);
        let slots = cores.saturating_sub(1).max(1);
        (Arc::new(Semaphore::new(slots)), slots)
    })
}

/// Waits for a slot; the job holds it until it ends. Works on any runtime
/// or none.
pub(crate) async fn cpu_slot() -> OwnedSemaphorePermit {
    Arc::clone(&slots().0)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}
