//! [`RedisBackend`]: the backend, its constructor and its inspection calls.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use pagebackup_core::{BackupError, Handle, Operation, Origin};
use tokio::runtime::{Builder, Runtime};

use crate::inner::Inner;
use crate::{NAME, RedisConfig, RedisStats};

/// Pages on a Redis or Valkey server, or a Redis Cluster: one key per
/// page, one pipeline per batch.
///
/// **Natively async, and sync too.** The backend owns a small tokio
/// runtime, one worker thread named `pagebackup-redis`, on which its
/// multiplexed connection lives. It implements
/// [`AsyncBackupBackend`](pagebackup_async::AsyncBackupBackend): a call
/// checks its handles and builds its pipeline on the caller's task, awaits
/// the round trip on the backend's runtime, and copies the pages on the
/// caller's task; any tokio runtime can await it (no I/O or timer driver is
/// needed there), and no blocking thread is used. It implements
/// [`BackupBackend`](pagebackup_core::BackupBackend) too: on a single
/// server a sync call makes its round trip on the calling thread, over a
/// blocking connection of its own (from a pool: one per thread calling at
/// once), with no hand-off to another thread; on a cluster the calling
/// thread waits for the round trip on the backend's runtime. Sync calls may
/// come from any thread, but from async code use the async trait, as a sync
/// call blocks the thread it is made on.
///
/// **Keys.** Every page is one key, `PREFIX:{GROUP}:SLOT:GENERATION`, under
/// a prefix that is random per instance unless [`RedisConfig::prefix`]
/// names one. Handles carry the slot, its generation and the instance's
/// tag ([`HandleCodec`](pagebackup_core::raw::HandleCodec)), so a dropped, forged
/// or foreign handle gives `InvalidHandle` with no round trip. `GROUP` is a
/// hash tag shared by 64 consecutive slots, so that on a cluster a batch of
/// neighbouring slots is still one pipeline (one per group otherwise, all
/// sent at once).
///
/// **Batches.** A batch is one pipeline (`SET`s, `GET`s or `DEL`s), so one
/// round trip. A backup that fails part-way keeps the pages before the
/// first failure and deletes whatever the rest may have written. A
/// restore copies no page before it has checked it (length, and checksum
/// if on): a wrong value gives `Corrupt`, a missing key `Corrupt` too,
/// never another page's bytes.
///
/// **Failures.** An out-of-memory reply (`maxmemory` reached under
/// `noeviction`) is `NoSpace`; a lost connection or a timeout is `Io` for
/// the calls in flight, and the next call reconnects (a sync call whose
/// idle pooled connection was cut resends its pipeline once on a new one:
/// every command the backend sends may be repeated); nothing already
/// backed up is lost by either (the server's own restarts keep pages only if
/// it persists them). A server whose `maxmemory-policy` may evict keys is
/// refused unless [`RedisConfig::allow_eviction`] is set.
///
/// **Lifetime.** [`drop_handle`](pagebackup_core::BackupBackend::drop_handle)
/// deletes the key. Dropping the backend deletes every key it still holds
/// (waiting at most twice the timeout): pages do not outlive the backend,
/// and no other process can reattach to them.
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
    runtime: Option<Runtime>,
}

impl RedisBackend {
    /// Connects to the server of `config`, checks its eviction policy and
    /// cluster mode, and reads its free memory.
    ///
    /// Errors: `Io` if the server cannot be reached or refuses the login,
    /// `Unsupported` if it may evict keys (see [`RedisConfig::allow_eviction`])
    /// or its cluster mode differs from [`RedisConfig::cluster`].
    pub fn new(config: RedisConfig) -> Result<Self, BackupError> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pagebackup-redis")
            .enable_all()
            .build()
            .map_err(|source| BackupError::Io {
                origin: Origin::new(NAME, Operation::Open),
                source,
            })?;
        let handle = runtime.handle().clone();
        let opened = wait_on(&handle, Inner::open(config.clone(), handle.clone()), None);
        let inner = opened.unwrap_or_else(|| Err(stopped(&config, Operation::Open)))?;
        Ok(RedisBackend {
            inner: Arc::new(inner),
            runtime: Some(runtime),
        })
    }

    /// The configuration the backend was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The prefix of the backend's keys.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The server key holding the page of `handle`, if the handle is live:
    /// for inspecting the server by hand.
    pub fn key(&self, handle: Handle) -> Option<String> {
        self.inner.key_of(handle)
    }

    /// Round trips, pipelined pages and bytes exchanged with the server.
    pub fn redis_stats(&self) -> RedisStats {
        self.inner.traffic.snapshot()
    }
}

/// Runs `fut` on `runtime` and waits for its output on this thread (at
/// most `timeout`). `None` if the runtime dropped it or time ran out.
pub(crate) fn wait_on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
    timeout: Option<Duration>,
) -> Option<T> {
    let (tx, rx) = sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    match timeout {
        Some(t) => rx.recv_timeout(t).ok(),
        None => rx.recv().ok(),
    }
}

/// The error for a call whose task the backend's runtime did not finish.
pub(crate) fn stopped(config: &RedisConfig, op: Operation) -> BackupError {
    crate::error::io_error(
        config,
        op,
        std::io::ErrorKind::Other,
        "the backend's runtime stopped before the call finished",
    )
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        let inner = Arc::clone(&self.inner);
        let timeout = 2 * inner.config.timeout + Duration::from_secs(1);
        match wait_on(&self.inner.runtime, inner.delete_all(), Some(timeout)) {
            Some(0) => {}
            left => tracing::warn!(
                server = %self.inner.config.redacted_url(),
                prefix = self.prefix(),
                keys_left = left,
                "could not delete every key of the dropped backend"
            ),
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.inner.config.redacted_url())
            .field("prefix", &self.prefix())
            .field("cluster", &self.inner.config.cluster)
            .field("stored_pages", &self.inner.stats().stored_pages)
            .finish_non_exhaustive()
    }
}
