//! [`BlockingPool`]: blocking connections to a single server, for sync
//! calls made on the caller's thread with no hand-off to the runtime.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redis::{Connection, IntoConnectionInfo, RedisResult, Value};

use crate::RedisConfig;
use crate::conn::Batch;
use crate::error::{Failure, cut, timed_out};
use crate::stats::Traffic;

/// Idle blocking connections, one taken per sync call (so one per thread
/// calling at once). Each round trip's reads and writes time out at the
/// call's deadline.
pub(crate) struct BlockingPool {
    client: redis::Client,
    /// Commands a new connection sends before it is ready (`AUTH`, `SELECT`).
    setup_commands: u32,
    config: RedisConfig,
    idle: Mutex<Vec<Pooled>>,
    /// Server-side ids of connections dropped after a failed round trip:
    /// the server may still carry out what it had received on them.
    stale: Mutex<Vec<i64>>,
}

/// A connection and its server-side id (`CLIENT ID`).
struct Pooled {
    conn: Connection,
    id: i64,
}

impl BlockingPool {
    /// A pool for the server of `config` (no connection made yet).
    pub(crate) fn new(config: &RedisConfig, tls: &crate::tls::Tls) -> RedisResult<Self> {
        let info = config.url().into_connection_info()?;
        // No `CLIENT SETINFO` on connecting: fewer replies to wait for.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let setup_commands = u32::from(settings.password().is_some()) + u32::from(settings.db() != 0);
        Ok(BlockingPool {
            client: crate::tls::client(info.set_redis_settings(settings), tls)?,
            setup_commands,
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
            stale: Mutex::new(Vec::new()),
        })
    }

    /// A new connection, ready by `deadline`: the client waits up to its
    /// timeout for each reply of the setup, so each gets a share of the time.
    fn connect(&self, deadline: Instant) -> RedisResult<Pooled> {
        let share = remaining(deadline)? / self.setup_commands.max(1);
        let mut conn = self.client.get_connection_with_timeout(share)?;
        let id = match request(
            &mut conn,
            &redis::cmd("CLIENT").arg("ID").get_packed_command(),
            1,
            deadline,
        )?
        .pop()
        {
            Some(Value::Int(id)) => id,
            other => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "CLIENT ID did not give a number",
                    format!("{other:?}"),
                )));
            }
        };
        Ok(Pooled { conn, id })
    }

    /// Takes the ids of the connections dropped after a failure, to be
    /// killed on the server before deleting what they may still write.
    pub(crate) fn take_stale(&self) -> Vec<i64> {
        std::mem::take(&mut *self.stale.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether connections dropped after a failure wait to be killed.
    pub(crate) fn has_stale(&self) -> bool {
        !self.stale.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Gives back ids taken with [`take_stale`](Self::take_stale) that could
    /// not be killed.
    pub(crate) fn restore_stale(&self, ids: Vec<i64>) {
        self.stale.lock().unwrap_or_else(PoisonError::into_inner).extend(ids);
    }

    /// Sends `batch` on this thread and gives each command's reply in order,
    /// failing with a timeout what is not answered by `deadline`.
    ///
    /// A pipeline whose connection, taken from the pool, turns out to be cut
    /// (reset, broken pipe: not a timeout) is sent once more on a new
    /// connection before the deadline: the idle one may have been cut while
    /// it waited, and every command the backend sends (`SET` of a key only
    /// it writes, `GET`, `DEL`) may be repeated. After a failure the pool is
    /// emptied, so that the next calls reconnect.
    pub(crate) fn send(&self, batch: Batch, traffic: &Traffic, deadline: Instant) -> Vec<Result<Value, Failure>> {
        let mut replies = Vec::with_capacity(batch.commands());
        let mut conn = None;
        for part in batch.into_parts() {
            let packed = part.pipe.get_packed_pipeline();
            let reply = self.round_trip(&mut conn, &packed, part.commands, deadline);
            match reply {
                Ok(values) => {
                    traffic.count(part.commands, part.pages, part.bytes, &values);
                    replies.extend(values.into_iter().map(|v| match v {
                        Value::ServerError(e) => Err(Failure::Refused(e)),
                        v => Ok(v),
                    }));
                }
                Err(e) => {
                    traffic.count(part.commands, part.pages, part.bytes, &[]);
                    replies.extend(std::iter::repeat_n(Err(Failure::Transport(e)), part.commands));
                }
            }
        }
        if let Some(conn) = conn {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        replies
    }

    /// Drops the connection in `conn`, noting its id as stale.
    fn retire(&self, conn: &mut Option<Pooled>) {
        if let Some(old) = conn.take() {
            self.stale.lock().unwrap_or_else(PoisonError::into_inner).push(old.id);
        }
    }

    /// One pipeline on `conn` (taken from the pool, or made, if `None`); on
    /// failure `conn` is left `None` (its id noted as stale) and the pool
    /// emptied.
    fn round_trip(
        &self,
        conn: &mut Option<Pooled>,
        packed: &[u8],
        count: usize,
        deadline: Instant,
    ) -> RedisResult<Vec<Value>> {
        let pooled = conn.is_none() && {
            *conn = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            conn.is_some()
        };
        let first = match conn {
            Some(c) => request(&mut c.conn, packed, count, deadline),
            None => self
                .connect(deadline)
                .and_then(|c| request(&mut conn.insert(c).conn, packed, count, deadline)),
        };
        let result = match first {
            Err(e) if pooled && cut(&e) => {
                self.retire(conn);
                self.connect(deadline)
                    .and_then(|c| request(&mut conn.insert(c).conn, packed, count, deadline))
            }
            other => other,
        };
        if result.is_err() {
            self.retire(conn);
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        result
    }
}

/// Sends `packed` on `conn` and reads its `count` replies, each read bounded
/// by what is left until `deadline`; the first failure ends it (the client's
/// own pipeline call would wait a whole timeout for every reply).
fn request(conn: &mut Connection, packed: &[u8], count: usize, deadline: Instant) -> RedisResult<Vec<Value>> {
    conn.set_write_timeout(Some(remaining(deadline)?))?;
    conn.send_packed_command(packed)?;
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        conn.set_read_timeout(Some(remaining(deadline)?))?;
        match conn.recv_response()? {
            Value::Push { .. } => {}
            reply => replies.push(reply),
        }
    }
    Ok(replies)
}

/// The time left until `deadline`, or a timeout error if none is.
pub(crate) fn remaining(deadline: Instant) -> RedisResult<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    Ok(left)
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("server", &self.config.redacted_url())
            .finish_non_exhaustive()
    }
}
