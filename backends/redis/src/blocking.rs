//! [`BlockingPool`]: blocking connections to a single server, for sync
//! calls made on the caller's thread with no hand-off to the runtime.

use std::sync::{Mutex, PoisonError};

use redis::{Connection, ConnectionLike, RedisResult, Value};

use crate::RedisConfig;
use crate::conn::Batch;
use crate::error::Failure;
use crate::stats::Traffic;

/// Idle blocking connections, one taken per sync call (so one per thread
/// calling at once), each with the backend's timeout on reads and writes.
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

    fn connect(&self) -> RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(self.config.timeout)?;
        conn.set_read_timeout(Some(self.config.timeout))?;
        conn.set_write_timeout(Some(self.config.timeout))?;
        Ok(conn)
    }

    /// Sends `batch` on this thread and gives each command's reply in order.
    ///
    /// A pipeline that fails in transit on a connection taken from the pool
    /// is sent once more on a new connection: the idle one may have been
    /// cut while it waited, and every command the backend sends (`SET` of a
    /// key only it writes, `GET`, `DEL`) may be repeated. After a failure
    /// the pool is emptied, so that the next calls reconnect.
    pub(crate) fn send(&self, batch: Batch, traffic: &Traffic) -> Vec<Result<Value, Failure>> {
        let mut replies = Vec::with_capacity(batch.commands());
        let mut conn = None;
        for part in batch.into_parts() {
            let packed = part.pipe.get_packed_pipeline();
            let reply = self.round_trip(&mut conn, &packed, part.commands);
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
    fn round_trip(&self, conn: &mut Option<Connection>, packed: &[u8], count: usize) -> RedisResult<Vec<Value>> {
        let pooled = conn.is_none() && {
            *conn = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            conn.is_some()
        };
        let first = match conn {
            Some(c) => c.req_packed_commands(packed, 0, count),
            None => self.connect().and_then(|c| {
                let c = conn.insert(c);
                c.req_packed_commands(packed, 0, count)
            }),
        };
        let result = match first {
            Err(e) if pooled && (e.is_io_error() || e.is_connection_dropped()) => self
                .connect()
                .and_then(|c| conn.insert(c).req_packed_commands(packed, 0, count)),
            other => other,
        };
        if result.is_err() {
            *conn = None;
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        result
    }
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("server", &self.config.redacted_url())
            .finish_non_exhaustive()
    }
}
