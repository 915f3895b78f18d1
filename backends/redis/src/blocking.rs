//! [`BlockingPool`]: blocking connections to a single server, for sync
//! calls made on the caller's thread with no hand-off to the runtime.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redis::{Connection, ConnectionLike, RedisResult, Value};

use crate::RedisConfig;
use crate::conn::Batch;
use crate::error::Failure;
use crate::stats::Traffic;

/// Idle blocking connections, one taken per sync call (so one per thread
/// calling at once). Each round trip's reads and writes time out at the
/// call's deadline.
pub(crate) struct BlockingPool {
    client: redis::Client,
    config: RedisConfig,
    idle: Mutex<Vec<Connection>>,
}

impl BlockingPool {
    /// A pool for the server of `config` (no connection made yet).
    pub(crate) fn new(config: &RedisConfig) -> RedisResult<Self> {
        Ok(BlockingPool {
            client: redis::Client::open(config.url())?,
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn connect(&self, deadline: Instant) -> RedisResult<Connection> {
        self.client.get_connection_with_timeout(remaining(deadline)?)
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

    /// One pipeline on `conn` (taken from the pool, or made, if `None`); on
    /// failure `conn` is left `None` and the pool emptied.
    fn round_trip(
        &self,
        conn: &mut Option<Connection>,
        packed: &[u8],
        count: usize,
        deadline: Instant,
    ) -> RedisResult<Vec<Value>> {
        let pooled = conn.is_none() && {
            *conn = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            conn.is_some()
        };
        let first = match conn {
            Some(c) => request(c, packed, count, deadline),
            None => self
                .connect(deadline)
                .and_then(|c| request(conn.insert(c), packed, count, deadline)),
        };
        let result = match first {
            Err(e) if pooled && cut(&e) => self
                .connect(deadline)
                .and_then(|c| request(conn.insert(c), packed, count, deadline)),
            other => other,
        };
        if result.is_err() {
            *conn = None;
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        result
    }
}

/// Sends `packed` on `conn` with reads and writes bounded by `deadline`.
fn request(conn: &mut Connection, packed: &[u8], count: usize, deadline: Instant) -> RedisResult<Vec<Value>> {
    let left = remaining(deadline)?;
    conn.set_read_timeout(Some(left))?;
    conn.set_write_timeout(Some(left))?;
    conn.req_packed_commands(packed, 0, count)
}

/// The time left until `deadline`, or a timeout error if none is.
fn remaining(deadline: Instant) -> RedisResult<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    Ok(left)
}

/// The error of a call whose deadline passed.
pub(crate) fn timed_out() -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within the timeout").into()
}

/// Whether `e` says the connection was cut (and the request may be resent
/// on a new one), rather than that the server did not answer in time.
pub(crate) fn cut(e: &redis::RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped())
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("server", &self.config.redacted_url())
            .finish_non_exhaustive()
    }
}
