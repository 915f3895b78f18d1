//! [`Inner`]: the state a backend shares with its tasks, and the three
//! operations, each in a part run on the caller's thread (checking handles,
//! building the pipeline, copying pages) and a part run on the backend's
//! runtime (the round trip and what must follow it whatever the caller does).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use pagebackup_core::{BackupError, BackupStats, BatchError, Handle, Interrupt, Operation, Origin, PAGE_SIZE, Page};
use redis::Value;
use tokio::runtime::Handle as Runtime;

use crate::blocking::BlockingPool;
use crate::conn::{Batch, Conn};
use crate::direct::Direct;
use crate::error::{Failure, corrupt, invalid_handle, io_error};
use crate::keys::{Keys, group, random_u64};
use crate::raw::{HandleCodec, SlotTable};
use crate::resp::Reply;
use crate::server::ServerInfo;
use crate::space::Space;
use crate::stats::Traffic;
use crate::value::{Identity, ValueFormat};
use crate::{NAME, RedisConfig};

/// Keys deleted per pipeline when the backend cleans up.
const CLEANUP_CHUNK: usize = 1024;

/// Instance ids drawn at open before giving up on registering one.
const REGISTER_ATTEMPTS: usize = 8;

/// Deletes the key `KEYS[1]` if it holds `ARGV[1]`: a claim is released
/// only by the instance that holds it.
const RELEASE_CLAIM: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// What a backend and its tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: RedisConfig,
    pub(crate) runtime: Runtime,
    conn: Conn,
    /// Blocking connections for sync calls on a single server.
    blocking: Option<BlockingPool>,
    /// The restore path's own connections, on a single server.
    direct: Option<Direct>,
    pub(crate) keys: Keys,
    format: ValueFormat,
    codec: HandleCodec,
    slots: Mutex<SlotTable>,
    /// Handles given to callers and not dropped.
    stored: AtomicU64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
    pub(crate) traffic: Traffic,
    space: Space,
    /// Keys of no handle still to delete (their `DEL` failed): retried
    /// after a later call reached the server, and when the backend is dropped.
    pending: Mutex<Vec<String>>,
    /// A retry of `pending` is under way.
    retrying: AtomicBool,
    /// Written while stale connections are killed, read to wait for that
    /// (see [`fence`](Self::fence)).
    fencing: tokio::sync::RwLock<()>,
    /// Keys of backups that failed in transit, whose `SET` may still land
    /// after their cleanup: deleted again when the backend is dropped.
    doubtful: Mutex<Vec<String>>,
    /// Whether this instance claimed its named prefix (`PREFIX:owner`).
    claimed: bool,
}

/// A backup prepared on the caller's thread: slots taken, pipeline built.
pub(crate) struct PreparedBackup {
    slots: Vec<(u32, u32)>,
    batch: Batch,
    deadline: Instant,
    /// Pages past the quota were left out.
    over_quota: bool,
}

/// The handles of a backup, released again (slots freed, keys deleted)
/// unless the caller [`take`](Self::take)s them: a backup whose future was
/// dropped leaves nothing behind.
pub(crate) struct Issued {
    inner: Arc<Inner>,
    slots: Vec<(u32, u32)>,
}

impl Issued {
    /// The handles, now the caller's.
    pub(crate) fn take(mut self) -> Vec<Handle> {
        let slots = std::mem::take(&mut self.slots);
        self.inner.stored.fetch_add(slots.len() as u64, Ordering::Relaxed);
        slots.iter().map(|&(s, g)| self.inner.codec.encode(s, g)).collect()
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            let slots = std::mem::take(&mut self.slots);
            self.inner.discard(&slots, &slots, &[]);
        }
    }
}

/// What the runtime's part of a backup gives back.
pub(crate) struct BackupOutcome {
    pub(crate) issued: Issued,
    pub(crate) result: Result<(), BatchError>,
}

/// A restore prepared on the caller's thread: the handles checked, the
/// `GET`s built.
pub(crate) struct PreparedCopy {
    /// The handles to fetch, those before the first invalid one, with the
    /// identity their values must carry.
    handles: Vec<(Handle, Identity)>,
    /// Where the first invalid handle was, if any.
    invalid: Option<BackupError>,
    batch: Batch,
    deadline: Instant,
}

/// A drop prepared on the caller's thread: the handles checked and
/// retired, their `DEL`s built.
pub(crate) struct PreparedDrop {
    keys: Vec<String>,
    invalid: Option<BackupError>,
    batch: Batch,
    deadline: Instant,
}

/// The batch of a prepared call, taken out once to be sent.
macro_rules! take_batch {
    ($($prepared:ty),+) => {$(
        impl $prepared {
            fn take_batch(&mut self, conn: &Conn) -> Batch {
                std::mem::replace(&mut self.batch, Batch::new(conn, 0))
            }
        }
    )+};
}

take_batch!(PreparedBackup, PreparedCopy, PreparedDrop);

impl Inner {
    /// Connects to the server, checks it, and returns the shared state.
    /// Runs on the backend's runtime.
    pub(crate) async fn open(config: RedisConfig, runtime: Runtime) -> Result<Inner, BackupError> {
        let op = Operation::Open;
        let traffic = Traffic::default();
        let tls = crate::tls::load(&config, Origin::new(NAME, op))?;
        let conn = Conn::connect(&config, &tls)
            .await
            .map_err(|e| crate::error::client_error(&config, op, &e))?;
        // Connected (within its own timeout): the checks and the
        // registration get one timeout more.
        let deadline = Instant::now() + config.timeout;
        let infos = read_info(&conn, &traffic, deadline)
            .await
            .map_err(|e| crate::error::client_error(&config, op, &e))?;
        check_server(&config, &infos)?;
        // A sealed page's tag authenticates it: a CRC beside it checks nothing more.
        let format = ValueFormat::new(config.checksum, config.seal.as_ref(), Origin::new(NAME, op))?;
        let (keys, claimed) = register(&conn, &config, deadline).await?;
        let max_slots = config.limit.map_or(HandleCodec::MAX_SLOTS, |l| {
            (l / PAGE_SIZE as u64).min(HandleCodec::MAX_SLOTS)
        });
        let blocking = match config.cluster {
            true => None,
            false => Some(BlockingPool::new(&config, &tls).map_err(|e| crate::error::client_error(&config, op, &e))?),
        };
        let direct = Direct::new(&config, &tls).map_err(|e| crate::error::client_error(&config, op, &e))?;
        Ok(Inner {
            blocking,
            direct,
            keys,
            claimed,
            format,
            config,
            runtime,
            conn,
            codec: HandleCodec::new(),
            slots: Mutex::new(SlotTable::new(max_slots as u32)),
            stored: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
            traffic,
            space: Space::new(&infos, 0),
            pending: Mutex::new(Vec::new()),
            retrying: AtomicBool::new(false),
            fencing: tokio::sync::RwLock::new(()),
            doubtful: Mutex::new(Vec::new()),
        })
    }

    fn slots(&self) -> MutexGuard<'_, SlotTable> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deadline of a call starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    /// The identity of the page of `slot` at `generation`.
    fn identity(&self, slot: u32, generation: u32) -> Identity {
        Identity {
            instance: self.keys.instance(),
            slot,
            generation,
        }
    }

    /// The slot of `handle` if it is live.
    fn live_slot(&self, slots: &SlotTable, handle: Handle) -> Option<(u32, u32)> {
        let slot = self.codec.slot(handle);
        let generation = slots.live_generation(slot)?;
        self.codec.matches(handle, generation).then_some((slot, generation))
    }

    /// The key holding `handle`'s page, if the handle is live.
    pub(crate) fn key_of(&self, handle: Handle) -> Option<String> {
        let slots = self.slots();
        self.live_slot(&slots, handle).map(|(s, g)| self.keys.key(s, g))
    }

    /// Takes a slot for each page the quota allows and builds their `SET`s.
    pub(crate) fn prepare_backup<'p>(&self, pages: impl ExactSizeIterator<Item = &'p Page>) -> PreparedBackup {
        let wanted = pages.len();
        let slots: Vec<(u32, u32)> = {
            let mut s = self.slots();
            std::iter::from_fn(|| s.alloc()).take(wanted).collect()
        };
        let mut batch = Batch::new(&self.conn, slots.len());
        for (page, &(slot, generation)) in pages.zip(&slots) {
            let key = self.keys.key(slot, generation);
            let id = self.identity(slot, generation);
            self.format
                .encode(page, id, |value| batch.set(&key, group(slot), value));
        }
        PreparedBackup {
            over_quota: slots.len() < wanted,
            slots,
            batch,
            deadline: self.deadline(),
        }
    }

    /// Sends a prepared backup on the backend's runtime and settles it
    /// there ([`settle_backup`](Self::settle_backup)).
    pub(crate) async fn run_backup(self: Arc<Self>, op: Operation, mut prepared: PreparedBackup) -> BackupOutcome {
        let replies = self.send(prepared.take_batch(&self.conn), prepared.deadline).await;
        self.settle_backup(op, prepared, replies)
    }

    /// Whether sync calls go over blocking connections on the caller's
    /// thread (a single server) rather than through the runtime (a cluster).
    pub(crate) fn blocking(&self) -> bool {
        self.blocking.is_some()
    }

    fn pool(&self) -> &BlockingPool {
        self.blocking.as_ref().expect("called only when `blocking()`")
    }

    /// Sends a prepared backup on this thread and settles it (only when
    /// [`blocking`](Self::blocking)).
    pub(crate) fn backup_blocking(self: &Arc<Self>, op: Operation, mut prepared: PreparedBackup) -> BackupOutcome {
        let deadline = prepared.deadline;
        let replies = self
            .pool()
            .send(prepared.take_batch(&self.conn), &self.traffic, deadline);
        self.settle_backup(op, prepared, replies)
    }

    /// Keeps the pages before the first failed `SET`, and frees the slots
    /// (and deletes whatever keys may have been written) of the rest.
    fn settle_backup(
        self: &Arc<Self>,
        op: Operation,
        prepared: PreparedBackup,
        replies: Vec<Result<Value, Failure>>,
    ) -> BackupOutcome {
        let PreparedBackup { slots, over_quota, .. } = prepared;
        let kept = replies.iter().take_while(|r| matches!(r, Ok(Value::Okay))).count();
        let mut error = replies.get(kept).map(|reply| match reply {
            Ok(other) => unexpected(&self.config, op, other),
            Err(failure) => failure.to_error(&self.config, op),
        });
        if error.is_none() && over_quota {
            error = Some(self.quota_error(op));
        }
        let (ok, undone) = slots.split_at(kept);
        // A refused SET wrote nothing; an answered one wrote its key; one
        // lost in transit may have, or may still.
        let answered = |r: &Result<Value, Failure>| r.is_ok();
        let lost = |r: &Result<Value, Failure>| r.as_ref().err().is_some_and(Failure::uncertain);
        let pick = |keep: &dyn Fn(&Result<Value, Failure>) -> bool| -> Vec<(u32, u32)> {
            undone
                .iter()
                .zip(&replies[kept..])
                .filter(|(_, r)| keep(r))
                .map(|(&s, _)| s)
                .collect()
        };
        let (written, doubtful) = (pick(&answered), pick(&lost));
        self.discard(undone, &written, &doubtful);
        if error.is_some() {
            self.failed_backups.fetch_add(1, Ordering::Relaxed);
        }
        self.after_call(reached(&replies));
        BackupOutcome {
            issued: Issued {
                inner: Arc::clone(self),
                slots: ok.to_vec(),
            },
            result: error.map_or(Ok(()), |error| Err(BatchError { completed: kept, error })),
        }
    }

    /// Frees `slots` at once and deletes the keys of `written` and
    /// `doubtful` in the background; keys that could not be deleted are
    /// retried later, and the `doubtful` ones (whose `SET` may still land)
    /// are deleted again when the backend is dropped.
    fn discard(self: &Arc<Self>, slots: &[(u32, u32)], written: &[(u32, u32)], doubtful: &[(u32, u32)]) {
        {
            let mut s = self.slots();
            for &(slot, _) in slots {
                s.release(slot);
            }
        }
        let names = |slots: &[(u32, u32)]| -> Vec<String> { slots.iter().map(|&(s, g)| self.keys.key(s, g)).collect() };
        let mut keys = names(written);
        if !doubtful.is_empty() {
            let doubtful = names(doubtful);
            keys.extend_from_slice(&doubtful);
            lock(&self.doubtful).extend(doubtful);
        }
        if keys.is_empty() {
            return;
        }
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            if let Err(left) = inner.delete(keys).await {
                lock(&inner.pending).extend(left);
            }
        });
    }

    /// After a call: if the server answered it (`reached`), retries the deletes left
    /// pending (in the background, one retry at a time), and refreshes the
    /// server's figures if they are old.
    fn after_call(self: &Arc<Self>, reached: bool) {
        if reached && !lock(&self.pending).is_empty() && !self.retrying.swap(true, Ordering::AcqRel) {
            let inner = Arc::clone(self);
            self.runtime.spawn(async move {
                let keys = std::mem::take(&mut *lock(&inner.pending));
                if let Err(left) = inner.delete(keys).await {
                    lock(&inner.pending).extend(left);
                }
                inner.retrying.store(false, Ordering::Release);
            });
        }
        self.refresh_space_if_stale();
    }

    /// Deletes `keys` (in pipelines of [`CLEANUP_CHUNK`], each within the
    /// timeout), after [`fence`](Self::fence); gives back those whose
    /// deletion failed.
    async fn delete(&self, keys: Vec<String>) -> Result<(), Vec<String>> {
        if !self.fence().await {
            return Err(keys);
        }
        let mut left = Vec::new();
        for chunk in keys.chunks(CLEANUP_CHUNK) {
            let mut batch = Batch::new(&self.conn, chunk.len());
            for key in chunk {
                batch.del(key, self.keys.group_of(key));
            }
            let replies = self.send(batch, self.deadline()).await;
            left.extend(
                chunk
                    .iter()
                    .zip(replies)
                    .filter(|(_, r)| r.is_err())
                    .map(|(k, _)| k.clone()),
            );
        }
        if left.is_empty() { Ok(()) } else { Err(left) }
    }

    /// Kills on the server the blocking connections dropped after a failed
    /// round trip, so that nothing they had sent (a backup's `SET`s, held
    /// by a stopped server) lands after the cleanup that follows: whether
    /// every connection dropped so far is killed (one already gone counts).
    ///
    /// Ids are taken and killed under the write side of `fencing`; a
    /// cleanup that finds none to take waits on the read side for a kill in
    /// flight, so that it never deletes before the kill it depends on, and
    /// cleanups with nothing to kill run side by side.
    async fn fence(&self) -> bool {
        let Some(pool) = &self.blocking else {
            return true;
        };
        loop {
            {
                let _no_kill_in_flight = self.fencing.read().await;
                if !pool.has_stale() {
                    return true;
                }
            }
            let _killing = self.fencing.write().await;
            let ids = pool.take_stale();
            if ids.is_empty() {
                continue;
            }
            let mut batch = Batch::new(&self.conn, ids.len());
            ids.iter().for_each(|&id| batch.client_kill(id));
            let replies = self.send(batch, self.deadline()).await;
            let answered = replies
                .iter()
                .all(|r| !r.as_ref().err().is_some_and(Failure::uncertain));
            if !answered {
                pool.restore_stale(ids);
            }
            return answered;
        }
    }

    /// Checks `handles` (the first invalid one ends the batch) and builds
    /// their `GET`s. An interrupt already set gives `Interrupted` at once.
    pub(crate) fn prepare_copy(
        &self,
        op: Operation,
        handles: &[Handle],
        intr: Option<&Interrupt>,
    ) -> Result<PreparedCopy, BatchError> {
        if intr.is_some_and(Interrupt::is_interrupted) {
            self.failed_restores.fetch_add(1, Ordering::Relaxed);
            return Err(BatchError {
                completed: 0,
                error: BackupError::Interrupted {
                    origin: Origin::new(NAME, op),
                },
            });
        }
        let mut batch = Batch::new(&self.conn, handles.len());
        let mut valid = Vec::with_capacity(handles.len());
        let mut invalid = None;
        {
            let slots = self.slots();
            for &handle in handles {
                let Some((slot, generation)) = self.live_slot(&slots, handle) else {
                    invalid = Some(invalid_handle(op, handle));
                    break;
                };
                batch.get(&self.keys.key(slot, generation), group(slot));
                valid.push((handle, self.identity(slot, generation)));
            }
        }
        Ok(PreparedCopy {
            handles: valid,
            invalid,
            batch,
            deadline: self.deadline(),
        })
    }

    /// Sends a prepared restore's `GET`s on the backend's runtime.
    pub(crate) async fn fetch(
        self: Arc<Self>,
        mut prepared: PreparedCopy,
    ) -> (PreparedCopy, Vec<Result<Value, Failure>>) {
        let replies = self.send(prepared.take_batch(&self.conn), prepared.deadline).await;
        (prepared, replies)
    }

    /// Sends a prepared restore's `GET`s on this thread (only when
    /// [`blocking`](Self::blocking)).
    pub(crate) fn fetch_blocking(&self, prepared: &mut PreparedCopy) -> Vec<Result<Value, Failure>> {
        let deadline = prepared.deadline;
        self.pool()
            .send(prepared.take_batch(&self.conn), &self.traffic, deadline)
    }

    /// Copies the fetched pages into `dsts`, in order, stopping at the first
    /// that fails or when `intr` is set. A value is copied only once it has
    /// passed its checks (length, and checksum over the page's identity if
    /// on): a failed page's destination is untouched.
    pub(crate) fn finish_copy<'d>(
        self: &Arc<Self>,
        op: Operation,
        prepared: PreparedCopy,
        replies: Vec<Result<Value, Failure>>,
        dsts: impl Iterator<Item = &'d mut Page>,
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let mut restore = Restore::new(self, op, dsts, intr);
        for reply in replies {
            match reply {
                Ok(Value::BulkString(mut value)) => restore.reply(&prepared.handles, Ok(Reply::Value(&mut value))),
                Ok(other) => restore.reply(&prepared.handles, Ok(Reply::Other(other))),
                Err(failure) => restore.reply(&prepared.handles, Err(failure)),
            }
        }
        self.finish_restore(restore, prepared)
    }

    /// Whether restores read their replies over the restore path's own
    /// connections ([`Direct`]): on a single server.
    pub(crate) fn direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Restores a prepared batch over the restore path's own blocking
    /// connection, on this thread, each value read from the connection's
    /// buffer, checked, and copied into its page (only when
    /// [`direct`](Self::direct)).
    pub(crate) fn copy_direct_blocking<'d>(
        self: &Arc<Self>,
        op: Operation,
        mut prepared: PreparedCopy,
        dsts: impl Iterator<Item = &'d mut Page> + Send,
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let direct = self.direct.as_ref().expect("called only when `direct()`");
        let batch = prepared.take_batch(&self.conn);
        let mut restore = Restore::new(self, op, dsts, intr);
        for part in batch.into_parts() {
            let packed = part.pipe.get_packed_pipeline();
            let handles = &prepared.handles;
            let received = direct.round_trip_blocking(
                &packed,
                part.commands,
                self.format.len(),
                prepared.deadline,
                &mut |reply| restore.reply(handles, reply),
            );
            self.traffic
                .count_received(part.commands, part.pages, part.bytes, received);
        }
        self.finish_restore(restore, prepared)
    }

    /// [`copy_direct_blocking`](Self::copy_direct_blocking) on the
    /// backend's runtime, into the pages held by `pages` (taken out for the
    /// time of the restore, put back when it ends or is dropped). Dropped
    /// mid-reply, it closes its connection.
    pub(crate) async fn copy_direct(
        self: Arc<Self>,
        op: Operation,
        mut prepared: PreparedCopy,
        pages: Arc<Mutex<Vec<Box<Page>>>>,
        intr: Option<Interrupt>,
    ) -> Result<(), BatchError> {
        let direct = self.direct.as_ref().expect("called only when `direct()`");
        let batch = prepared.take_batch(&self.conn);
        let mut held = Held::take(pages);
        let mut restore = Restore::new(&self, op, held.pages.iter_mut().map(|p| &mut **p), intr.as_ref());
        for part in batch.into_parts() {
            let packed = part.pipe.get_packed_pipeline();
            let handles = &prepared.handles;
            let received = direct
                .round_trip(
                    &packed,
                    part.commands,
                    self.format.len(),
                    prepared.deadline,
                    &mut |reply| restore.reply(handles, reply),
                )
                .await;
            self.traffic
                .count_received(part.commands, part.pages, part.bytes, received);
        }
        self.finish_restore(restore, prepared)
    }

    /// The outcome of a restore whose replies were all handed to `restore`.
    fn finish_restore<D>(self: &Arc<Self>, restore: Restore<'_, D>, prepared: PreparedCopy) -> Result<(), BatchError> {
        self.after_call(restore.reached);
        let failed = restore
            .failed
            .or_else(|| prepared.invalid.map(|error| (prepared.handles.len(), error)));
        match failed {
            Some((completed, error)) => {
                self.failed_restores.fetch_add(1, Ordering::Relaxed);
                Err(BatchError { completed, error })
            }
            None => Ok(()),
        }
    }

    /// Checks one reply to the `GET` of `handle` (whose value must carry
    /// `id`) and copies its page into `dst` if it passes.
    fn restore_one(
        &self,
        op: Operation,
        (handle, id): (Handle, Identity),
        reply: Result<Reply<'_>, Failure>,
        dst: &mut Page,
    ) -> Result<(), BackupError> {
        let key = || self.keys.key(id.slot, id.generation);
        match reply {
            Ok(Reply::Value(value)) => self
                .format
                .decode(value, id, dst)
                .map_err(|detail| corrupt(op, handle, format!("key {}: {detail}", key()))),
            Ok(Reply::Length(n)) => Err(corrupt(
                op,
                handle,
                format!("key {}: {}", key(), self.format.wrong_length(n)),
            )),
            Ok(Reply::Other(Value::Nil)) => Err(match self.key_of(handle) {
                None => invalid_handle(op, handle),
                Some(key) => corrupt(
                    op,
                    handle,
                    format!(
                        "the key {key} is missing on the server: deleted by another client, flushed, \
                         evicted (allow_eviction) or lost in a restart without persistence"
                    ),
                ),
            }),
            Ok(Reply::Other(Value::ServerError(e))) => Err(Failure::Refused(e).to_error(&self.config, op)),
            Ok(Reply::Other(other)) => Err(unexpected(&self.config, op, &other)),
            Err(failure) => Err(failure.to_error(&self.config, op)),
        }
    }

    /// Checks `handles` (the first invalid one ends the batch), retires them
    /// at once (their handles are invalid from here on, their slots free
    /// for new pages under new keys) and builds their `DEL`s.
    pub(crate) fn prepare_drop(&self, op: Operation, handles: &[Handle]) -> PreparedDrop {
        let mut batch = Batch::new(&self.conn, handles.len());
        let mut keys = Vec::with_capacity(handles.len());
        let mut invalid = None;
        let mut slots = self.slots();
        for &handle in handles {
            let Some((slot, generation)) = self.live_slot(&slots, handle) else {
                invalid = Some(invalid_handle(op, handle));
                break;
            };
            slots.release(slot);
            self.stored.fetch_sub(1, Ordering::Relaxed);
            let key = self.keys.key(slot, generation);
            batch.del(&key, group(slot));
            keys.push(key);
        }
        PreparedDrop {
            keys,
            invalid,
            batch,
            deadline: self.deadline(),
        }
    }

    /// Sends a prepared drop's `DEL`s on the backend's runtime, and settles
    /// it there, to the end, whatever happens to the caller's future.
    pub(crate) async fn run_drop(self: Arc<Self>, mut prepared: PreparedDrop) -> Result<(), BatchError> {
        let replies = self.send(prepared.take_batch(&self.conn), prepared.deadline).await;
        self.settle_drop(prepared, replies)
    }

    /// Sends a prepared drop's `DEL`s on this thread and settles it (only
    /// when [`blocking`](Self::blocking)).
    pub(crate) fn drop_blocking(self: &Arc<Self>, mut prepared: PreparedDrop) -> Result<(), BatchError> {
        let deadline = prepared.deadline;
        let replies = self
            .pool()
            .send(prepared.take_batch(&self.conn), &self.traffic, deadline);
        self.settle_drop(prepared, replies)
    }

    /// Keeps the keys whose `DEL` failed for a later retry. The drop itself
    /// is done: its handles were retired before the round trip.
    fn settle_drop(
        self: &Arc<Self>,
        prepared: PreparedDrop,
        replies: Vec<Result<Value, Failure>>,
    ) -> Result<(), BatchError> {
        let PreparedDrop { keys, invalid, .. } = prepared;
        let completed = keys.len();
        let failed = keys
            .into_iter()
            .zip(&replies)
            .filter(|(_, r)| r.is_err())
            .map(|(k, _)| k);
        lock(&self.pending).extend(failed);
        self.after_call(reached(&replies));
        invalid.map_or(Ok(()), |error| Err(BatchError { completed, error }))
    }

    async fn send(&self, batch: Batch, deadline: Instant) -> Vec<Result<Value, Failure>> {
        if batch.commands() == 0 {
            return Vec::new();
        }
        self.conn.send(batch, &self.traffic, deadline).await
    }

    /// Deletes every key of the backend: the live pages', those pending or
    /// doubtful, the instance's registration and its claim on the prefix.
    /// Gives back how many could not be deleted.
    pub(crate) async fn delete_all(self: Arc<Self>) -> usize {
        let mut keys: Vec<String> = {
            let s = self.slots();
            (0..s.len() as u32)
                .filter_map(|slot| s.live_generation(slot).map(|g| self.keys.key(slot, g)))
                .collect()
        };
        keys.append(&mut lock(&self.pending));
        keys.append(&mut lock(&self.doubtful));
        let mut left = self.delete(keys).await.map_or_else(|left| left.len(), |()| 0);
        let deadline = self.deadline();
        if self.claimed {
            let mut release = redis::cmd("EVAL");
            release
                .arg(RELEASE_CLAIM)
                .arg(1)
                .arg(self.keys.owner())
                .arg(self.keys.instance_hex());
            left += usize::from(self.conn.command(&release, deadline).await.is_err());
        }
        let mut unregister = redis::cmd("DEL");
        unregister.arg(self.keys.registration());
        left += usize::from(self.conn.command(&unregister, deadline).await.is_err());
        left
    }

    /// Starts a refresh of the server's free memory if the figures are old.
    fn refresh_space_if_stale(self: &Arc<Self>) {
        if !self.space.begin_refresh() {
            return;
        }
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            let infos = read_info(&inner.conn, &inner.traffic, inner.deadline())
                .await
                .unwrap_or_default();
            if infos.iter().any(ServerInfo::may_evict) && !inner.config.allow_eviction {
                tracing::warn!(
                    server = %inner.config.redacted_url(),
                    "the server's maxmemory-policy was changed to one that may evict pages"
                );
            }
            let live = inner.slots().live();
            inner.space.update(&infos, live);
        });
    }

    /// A cheap estimate of the bytes of pages a backup may still take.
    pub(crate) fn bytes_avail(self: &Arc<Self>) -> u64 {
        self.refresh_space_if_stale();
        let live = self.slots().live();
        let pending = lock(&self.pending).len() as u64;
        let quota = self
            .config
            .limit
            .map_or(u64::MAX, |l| (l / PAGE_SIZE as u64).saturating_sub(live + pending));
        quota.min(self.space.free_pages(live)).saturating_mul(PAGE_SIZE as u64)
    }

    /// The backend's counters.
    pub(crate) fn stats(&self) -> BackupStats {
        let stored = self.stored.load(Ordering::Relaxed);
        let metadata = self.slots().metadata_bytes();
        let pending = lock(&self.pending).len() as u64;
        let mut stats = BackupStats::default();
        stats.stored_pages = stored;
        stats.original_bytes = stored * PAGE_SIZE as u64;
        stats.stored_bytes = stored * self.format.len() as u64;
        stats.memory_used = metadata;
        stats.metadata_bytes = metadata;
        stats.unreleased_bytes = pending * self.format.len() as u64;
        stats.failed_backups = self.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.failed_restores.load(Ordering::Relaxed);
        stats.io_path = Some(if self.conn.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        });
        stats
    }

    fn quota_error(&self, op: Operation) -> BackupError {
        BackupError::NoSpace {
            origin: Origin::new(NAME, op),
            detail: format!(
                "the quota of this backend (limit={} bytes) is used up; drop pages or open it with a larger limit",
                self.config.limit.unwrap_or(0)
            ),
        }
    }
}

/// A restore as its replies come in, in order: each value checked and
/// copied into its page until the first that fails, or an interrupt; the
/// replies after that are only read.
struct Restore<'a, D> {
    inner: &'a Inner,
    op: Operation,
    dsts: D,
    intr: Option<&'a Interrupt>,
    /// Replies handed in so far.
    next: usize,
    /// The first failure and how many pages were restored before it.
    failed: Option<(usize, BackupError)>,
    /// Whether any reply came from the server.
    reached: bool,
}

impl<'a, 'd, D: Iterator<Item = &'d mut Page>> Restore<'a, D> {
    fn new(inner: &'a Inner, op: Operation, dsts: D, intr: Option<&'a Interrupt>) -> Self {
        Restore {
            inner,
            op,
            dsts,
            intr,
            next: 0,
            failed: None,
            reached: false,
        }
    }

    /// Handles the reply to the `GET` of the next of `handles`.
    fn reply(&mut self, handles: &[(Handle, Identity)], reply: Result<Reply<'_>, Failure>) {
        let k = self.next;
        self.next += 1;
        self.reached |= !reply.as_ref().err().is_some_and(Failure::uncertain);
        if self.failed.is_some() {
            return;
        }
        let (Some(&handle), Some(dst)) = (handles.get(k), self.dsts.next()) else {
            return;
        };
        let result = if self.intr.is_some_and(Interrupt::is_interrupted) {
            Err(BackupError::Interrupted {
                origin: Origin::new(NAME, self.op),
            })
        } else {
            self.inner.restore_one(self.op, handle, reply, dst)
        };
        if let Err(error) = result {
            self.failed = Some((k, error));
        }
    }
}

/// Pages taken out of a shared list for the time of a restore on the
/// runtime, put back when it ends or its task is dropped.
struct Held {
    shared: Arc<Mutex<Vec<Box<Page>>>>,
    pages: Vec<Box<Page>>,
}

impl Held {
    fn take(shared: Arc<Mutex<Vec<Box<Page>>>>) -> Self {
        let pages = std::mem::take(&mut *lock(&shared));
        Held { shared, pages }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        *lock(&self.shared) = std::mem::take(&mut self.pages);
    }
}

/// Whether any of `replies` came from the server.
fn reached(replies: &[Result<Value, Failure>]) -> bool {
    replies
        .iter()
        .any(|r| !r.as_ref().err().is_some_and(Failure::uncertain))
}

/// Locks `m`, a list that stays consistent whatever panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `INFO` figures of the server, or of every master of a cluster.
async fn read_info(conn: &Conn, traffic: &Traffic, deadline: Instant) -> redis::RedisResult<Vec<ServerInfo>> {
    Ok(conn
        .info(traffic, deadline)
        .await?
        .iter()
        .map(|t| ServerInfo::parse(t))
        .collect())
}

/// Registers a new instance on the server (`PREFIX:IID`, `SET NX`, drawing
/// ids until one is free) and, for a named prefix without `attach`, claims
/// the prefix (`PREFIX:owner`, `SET NX`). The keys, and whether it claimed.
async fn register(conn: &Conn, config: &RedisConfig, deadline: Instant) -> Result<(Keys, bool), BackupError> {
    let op = Operation::Open;
    let failed = |e: redis::RedisError| crate::error::client_error(config, op, &e);
    let set_nx = |key: String, value: String| {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        cmd
    };
    let mut registered = None;
    for _ in 0..REGISTER_ATTEMPTS {
        let keys = Keys::new(config.prefix.as_deref(), random_u64());
        let what = format!("pagebackup instance of process {}", std::process::id());
        if conn
            .command(&set_nx(keys.registration(), what), deadline)
            .await
            .map_err(failed)?
            == Value::Okay
        {
            registered = Some(keys);
            break;
        }
    }
    let keys = registered.ok_or_else(|| {
        io_error(
            config,
            op,
            io::ErrorKind::AlreadyExists,
            &format!("no free instance id under the prefix after {REGISTER_ATTEMPTS} draws"),
        )
    })?;
    if config.prefix.is_none() || config.attach {
        return Ok((keys, false));
    }
    let claim = conn.command(&set_nx(keys.owner(), keys.instance_hex()), deadline).await;
    if claim.as_ref().is_ok_and(|v| *v == Value::Okay) {
        return Ok((keys, true));
    }
    let mut unregister = redis::cmd("DEL");
    unregister.arg(keys.registration());
    let _ = conn.command(&unregister, deadline).await;
    claim.map_err(failed)?;
    Err(BackupError::InvalidInput {
        origin: Origin::new(NAME, op),
        detail: format!(
            "the prefix {:?} on {} is in use by another instance (its key {} exists): open with another \
             prefix, or with attach=on to share it (each instance still reads only its own pages); a key \
             left by a process that died can also be deleted by hand",
            keys.prefix(),
            config.redacted_url(),
            keys.owner()
        ),
    })
}

/// Refuses a server the backend must not use as configured.
fn check_server(config: &RedisConfig, infos: &[ServerInfo]) -> Result<(), BackupError> {
    let unsupported = |detail: String| BackupError::Unsupported {
        origin: Origin::new(NAME, Operation::Open),
        detail,
    };
    let server = config.redacted_url();
    if let Some(info) = infos.iter().find(|i| i.cluster_enabled != config.cluster) {
        return Err(unsupported(if info.cluster_enabled {
            format!("{server} is a Redis Cluster node: open it with cluster=on")
        } else {
            format!("{server} is not in cluster mode: open it with cluster=off")
        }));
    }
    if let Some(info) = infos.iter().find(|i| i.may_evict()).filter(|_| !config.allow_eviction) {
        return Err(unsupported(format!(
            "{server} has maxmemory-policy {}, which may evict keys and so lose pages silently; \
             set it to noeviction (CONFIG SET maxmemory-policy noeviction), or open the backend \
             with allow_eviction=on to accept that an evicted page gives Corrupt",
            info.policy
        )));
    }
    Ok(())
}

/// The error for a reply the backend's commands never get.
fn unexpected(config: &RedisConfig, op: Operation, reply: &Value) -> BackupError {
    io_error(
        config,
        op,
        io::ErrorKind::InvalidData,
        &format!("unexpected reply {reply:?}"),
    )
}
