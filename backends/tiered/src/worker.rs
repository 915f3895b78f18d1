//! The automatic mode: a thread (or, with the `async` feature, a task on
//! the caller's tokio runtime) that runs the policy every interval, and at
//! once when a backup takes a tier past its high watermark.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::shared::{Shared, Wake};

/// The policy thread.
#[derive(Debug)]
pub(crate) struct Worker {
    thread: JoinHandle<()>,
}

impl Worker {
    pub(crate) fn start(shared: Arc<Shared>, interval: Duration) -> Self {
        let thread = std::thread::Builder::new()
            .name("pagebackup-tiered".into())
            .spawn(move || {
                let _deferring = Deferring::new(&shared);
                loop {
                    let wake = &shared.wake;
                    let state = wake.state.lock().unwrap_or_else(PoisonError::into_inner);
                    let (mut state, _) = wake
                        .changed
                        .wait_timeout_while(state, interval, |&mut (kicked, stop)| !kicked && !stop)
                        .unwrap_or_else(PoisonError::into_inner);
                    if state.1 {
                        return;
                    }
                    state.0 = false;
                    drop(state);
                    wake.taken();
                    shared.run_policy_step();
                }
            })
            .expect("spawning the tiered backend's policy thread");
        Worker { thread }
    }

    /// Stops the thread after its current run and waits for it.
    pub(crate) fn stop(self, wake: &Wake) {
        wake.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        wake.changed.notify_one();
        // A panic in the policy thread has already been reported; the
        // backend's pages are unaffected.
        let _ = self.thread.join();
    }
}

/// The policy as a task on a tokio runtime: it holds the backend weakly and
/// ends once the backend is dropped.
#[cfg(feature = "async")]
pub(crate) fn spawn_task(
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let deferring = Deferring::new(shared);
    let weak = Arc::downgrade(shared);
    let notify = Arc::clone(&shared.wake.notify);
    runtime.spawn(async move {
        let _deferring = deferring;
        loop {
            // Woken by a kick, or the interval passed.
            let _ = tokio::time::timeout(interval, notify.notified()).await;
            let Some(shared) = weak.upgrade() else { return };
            shared.wake.taken();
            // Moves do the tiers' I/O: off the runtime's worker threads.
            let run = tokio::task::spawn_blocking(move || {
                shared.run_policy_step();
            });
            if run.await.is_err() {
                return;
            }
        }
    })
}

/// Promotions are left to the policy while this lives (a restore from
/// below only notes its page for the next run). Its thread or task holds
/// it, so that once that ends however it ends (returned, panicked, its
/// task aborted or its runtime shut down), restores promote their pages
/// themselves again instead of noting them for a policy that is gone.
struct Deferring(Weak<Shared>);

impl Deferring {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.deferred.store(true, Ordering::Relaxed);
        Deferring(Arc::downgrade(shared))
    }
}

impl Drop for Deferring {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.deferred.store(false, Ordering::Relaxed);
        }
    }
}
