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
/// **Blocking class**: natively async; the sync calls block on the network.
///
/// **Keys.** Every page is one key, `PREFIX:{IID:GROUP}:SLOT:GENERATION`:
/// `PREFIX` is [`RedisConfig::prefix`] (`pagebackup` by default), `IID` the
/// instance's random 64-bit id in hex, registered at open with `SET NX` on
/// `PREFIX:IID` (so no two live instances on a server share an id, and no
/// instance can read, overwrite or delete another's pages, whatever
/// prefixes they were given). A named prefix is also claimed, `SET NX` on
/// `PREFIX:owner` holding the id: opening a second instance with a prefix
/// already claimed fails with `InvalidInput` unless it asks to share it
/// ([`RedisConfig::attach`], `attach=on`). Handles carry the slot, its
/// generation and the instance's tag
/// ([`HandleCodec`](pagebackup_core::raw::HandleCodec)), so a dropped,
/// forged or foreign handle gives `InvalidHandle` with no round trip.
/// `GROUP` is a hash tag shared by 64 consecutive slots, so that on a
/// cluster a batch of neighbouring slots is still one pipeline (one per
/// group otherwise, all sent at once).
///
/// **A value is bound to its page.** Its key names the instance, the slot
/// and the generation, so a reply (late or not) to a `GET` is the value of
/// that page or nothing: a page's value never comes back for another
/// handle, and a restore racing a drop gives the page's own bytes or
/// `InvalidHandle`. With [`RedisConfig::checksum`] the value's CRC-32
/// covers the same identity as well as the bytes, so a value copied from
/// another page's key (by another client) gives `Corrupt`.
///
/// **Sealing** ([`RedisConfig::seal`], `seal=on`, feature `seal`): every
/// value is the page encrypted and authenticated
/// ([`raw::seal`](pagebackup_core::raw::seal)) with the same identity as
/// associated data, then its 16-byte tag (4112 bytes a key): the server,
/// its other clients, its persistence files and the network see no page in
/// clear, and a value changed, copied from another key, replayed (an older
/// value of the same key) or written by another instance, even one with
/// the same supplied key, restores as `Corrupt`. The key is drawn at open
/// and held only in memory unless `seal_key` names one; a value sealed by
/// one instance can never be read by another (each seals under its own
/// random salt), so sealed pages die with the instance.
///
/// **Batches.** A batch is one pipeline (`SET`s, `GET`s or `DEL`s), so one
/// round trip. A backup that fails part-way keeps the pages before the
/// first failure and deletes whatever the rest may have written. A
/// restore copies no page before it has checked it (length, and checksum
/// if on): a wrong value gives `Corrupt`, a missing key `Corrupt` too,
/// never another page's bytes.
///
/// **Restores read their replies themselves.** On a single server (TCP,
/// Unix socket or TLS) restores go over connections of their own, whose
/// `GET` replies the backend reads from its read buffer: a value of the
/// page's length is checked (a sealed one opened) where it lies in that
/// buffer and copied once into its page, with no reply object in between;
/// a value of another length is skipped as it arrives, never buffered
/// whole. Such a connection is reused only after a round trip read every
/// reply and nothing more: one that failed, timed out, or whose async
/// restore was dropped mid-reply is closed, so a reply is never read for
/// another request. A cluster's restores go through the redis crate's
/// cluster connection.
///
/// **Failures.** An out-of-memory reply (`maxmemory` reached under
/// `noeviction`) is `NoSpace`; a lost connection is `Io` for the calls in
/// flight, and the next call reconnects (a call whose connection turns out
/// to have been cut, by a server restart or a killed client, resends its
/// pipeline once on a new one: every command the backend sends may be
/// repeated); nothing already backed up is lost by either (the server's
/// own restarts keep pages only if it persists them). A server whose
/// `maxmemory-policy` may evict keys is refused unless
/// [`RedisConfig::allow_eviction`] is set.
///
/// **Timeouts.** Every call, sync or async, has one deadline,
/// [`RedisConfig::timeout`] from its start, for its connection attempts and
/// round trips together: a server that stops answering (stopped, hung,
/// partitioned) makes each call return `Io` (`TimedOut`) by then, plus
/// scheduling. Such a call leaves nothing half-done: a backup that timed
/// out issues no handle, and the keys it may have written (or may still
/// write, once the server resumes) are deleted in the background and again
/// when the backend is dropped; a restore leaves its pages in place.
///
/// **Drops are final at once.** A drop retires its handles in the backend
/// before any round trip (later restores give `InvalidHandle`, the slots
/// take new pages under new keys), then deletes their keys, waiting for
/// the `DEL`s up to the timeout. So a drop does not fail for the server's
/// sake: if the `DEL`s fail or time out, the drop still returns `Ok`, and
/// the keys are deleted by later calls once the server answers again
/// (they count in `unreleased_bytes` and against `limit` until then). A
/// `DEL` that lands late deletes only the dropped page's key: every other
/// handle stays readable, and the batch rule holds (an error in a drop
/// batch comes only from an invalid handle, and the handles after it are
/// live).
///
/// **Lifetime.** Dropping the backend deletes every key it still holds, its
/// registration and its claim (waiting at most twice the timeout): pages do
/// not outlive the backend, and no other process can reattach to them.
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
    runtime: Option<Runtime>,
}

impl RedisBackend {
    /// Connects to the server of `config`, checks its eviction policy and
    /// cluster mode, reads its free memory and registers the instance.
    ///
    /// Errors: `Io` if the server cannot be reached, refuses the login or
    /// does not answer within twice the timeout, `Unsupported` if it may
    /// evict keys (see [`RedisConfig::allow_eviction`]) or its cluster mode
    /// differs from [`RedisConfig::cluster`], `InvalidInput` if the named
    /// prefix is claimed by another instance (see [`RedisConfig::attach`]).
    /// It may be called from within a tokio runtime (it blocks that thread
    /// until it is done).
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
        let limit = 2 * config.timeout;
        let opening = Inner::open(config.clone(), handle.clone());
        let opening = async move { tokio::time::timeout(limit, opening).await };
        let opened = match wait_on(&handle, opening, None) {
            Some(Ok(opened)) => opened,
            Some(Err(_)) => Err(crate::error::io_error(
                &config,
                Operation::Open,
                std::io::ErrorKind::TimedOut,
                &format!("the server did not complete the connection and checks within {limit:?}"),
            )),
            None => Err(stopped(&config, Operation::Open)),
        };
        match opened {
            Ok(inner) => Ok(RedisBackend {
                inner: Arc::new(inner),
                runtime: Some(runtime),
            }),
            Err(e) => {
                // Dropping a runtime blocks, which panics within another
                // runtime (as `open_async` is called): let it go instead.
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    /// The configuration the backend was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The prefix of the backend's keys.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The instance's id, as it appears in its keys (16 hex digits).
    pub fn instance_id(&self) -> String {
        self.inner.keys.instance_hex()
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
        "the backend's runtime stopped, or did not finish the call within the timeout",
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
            .field("instance", &self.instance_id())
            .field("cluster", &self.inner.config.cluster)
            .field("stored_pages", &self.inner.stats().stored_pages)
            .finish_non_exhaustive()
    }
}
