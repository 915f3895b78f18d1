//! The process-wide cap on blocking jobs that compute: at most as many run
//! at once as the machine has cores, whichever adapter they come from.

use std::num::NonZero;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many blocking jobs of CPU-bound backends
/// ([`BackupBackend::cpu_bound`](pagebackup_core::BackupBackend::cpu_bound))
/// run at once in this process: the number of cores it may use
/// (`available_parallelism`, 1 if that is unknown). The others wait for a
/// slot without a thread.
pub fn cpu_slots() -> usize {
    slots().1
}

fn slots() -> &'static (Arc<Semaphore>, usize) {
    static SLOTS: OnceLock<(Arc<Semaphore>, usize)> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, NonZero::get);
        (Arc::new(Semaphore::new(cores)), cores)
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
