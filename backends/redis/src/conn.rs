//! [`Conn`]: the connection to a server or a cluster, and [`Batch`]: the
//! pipelines one call sends over it.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisResult, Value};
use std::time::Instant;

use crate::RedisConfig;
use crate::error::Failure;
use crate::error::{cut, timed_out};
use crate::stats::{Traffic, command_len};
use crate::tls::Tls;

/// Reconnection attempts within one call before it fails with `Io`.
const RECONNECT_ATTEMPTS: usize = 1;

/// A multiplexed connection that reconnects by itself after it was lost:
/// the calls in flight fail, the next ones reconnect.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through the client's connection manager.
    Single(ConnectionManager),
    /// A cluster, one multiplexed connection per node.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects as `config` says. Must run within a tokio runtime with I/O
    /// and time enabled: the connection's tasks stay on it.
    pub(crate) async fn connect(config: &RedisConfig, tls: &Tls) -> RedisResult<Conn> {
        let timeout = config.timeout;
        if config.cluster {
            let builder = ClusterClient::builder([config.url()]);
            #[cfg(feature = "tls")]
            let builder = match tls {
                Some(certificates) => builder.certs(certificates.clone()),
                None => builder,
            };
            let client = builder
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(RECONNECT_ATTEMPTS as u32)
                .build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_max_delay(timeout);
        let client = crate::tls::client(config.url(), tls)?;
        Ok(Conn::Single(client.get_connection_manager_with_config(manager).await?))
    }

    /// Whether batches are split by hash-tag group (cluster pipelines stay
    /// within one hash slot).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Sends `batch`, its pipelines at once, and gives each command's reply
    /// in order. A pipeline whose round trip failed, or was not answered by
    /// `deadline`, fails all its commands.
    ///
    /// A pipeline that fails because the connection was cut (the server
    /// restarted, a client killed it) is sent once more, before the
    /// deadline, on the connection made again: every command the backend
    /// sends may be repeated.
    pub(crate) async fn send(&self, batch: Batch, traffic: &Traffic, deadline: Instant) -> Vec<Result<Value, Failure>> {
        let mut replies = Vec::with_capacity(batch.commands());
        let mut sent = Vec::with_capacity(batch.parts.len());
        for part in batch.parts {
            let conn = self.clone();
            sent.push((
                part.commands,
                part.pages,
                part.bytes,
                tokio::spawn(async move {
                    match conn.request(&part.pipe, part.commands, deadline).await {
                        Err(e) if cut(&e) => conn.request(&part.pipe, part.commands, deadline).await,
                        other => other,
                    }
                }),
            ));
        }
        for (commands, pages, bytes, reply) in sent {
            match reply.await {
                Ok(Ok(values)) => {
                    traffic.count(commands, pages, bytes, &values);
                    replies.extend(values.into_iter().map(|v| match v {
                        Value::ServerError(e) => Err(Failure::Refused(e)),
                        v => Ok(v),
                    }));
                }
                Ok(Err(e)) => {
                    traffic.count(commands, pages, bytes, &[]);
                    replies.extend(std::iter::repeat_n(Err(Failure::Transport(e)), commands));
                }
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        }
        replies
    }

    /// One pipeline of `commands`, failing with a timeout if not answered by
    /// `deadline`.
    async fn request(&self, pipe: &Pipeline, commands: usize, deadline: Instant) -> RedisResult<Vec<Value>> {
        let mut conn = self.clone();
        match tokio::time::timeout_at(deadline.into(), conn.req_packed_commands(pipe, 0, commands)).await {
            Ok(reply) => reply,
            Err(_) => Err(timed_out()),
        }
    }

    /// Runs `cmd`, failing with a timeout if not answered by `deadline`.
    pub(crate) async fn command(&self, cmd: &Cmd, deadline: Instant) -> RedisResult<Value> {
        let mut conn = self.clone();
        match tokio::time::timeout_at(deadline.into(), conn.req_packed_command(cmd)).await {
            Ok(reply) => reply,
            Err(_) => Err(timed_out()),
        }
    }

    /// The `INFO memory cluster` text of the server, or of every master of
    /// the cluster.
    pub(crate) async fn info(&self, traffic: &Traffic, deadline: Instant) -> RedisResult<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("memory").arg("cluster");
        let reply = self.command(&cmd, deadline).await?;
        traffic.count(1, 0, command_len(&[4, 6, 7]), &[]);
        let mut texts = Vec::new();
        collect_texts(reply, &mut texts)?;
        Ok(texts)
    }
}

/// The strings of an `INFO` reply: one from a server, one per node (a map
/// of address to reply) from a cluster.
fn collect_texts(reply: Value, texts: &mut Vec<String>) -> RedisResult<()> {
    match reply {
        Value::Map(entries) => {
            for (_, v) in entries {
                collect_texts(v, texts)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_texts(v, texts)?;
            }
        }
        Value::ServerError(e) => return Err(e.into()),
        v => texts.push(redis::from_redis_value(v)?),
    }
    Ok(())
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_cluster() {
            "Conn::Cluster"
        } else {
            "Conn::Single"
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The commands of one call, as one pipeline, or on a cluster as one
/// pipeline per run of keys of the same hash-tag group.
pub(crate) struct Batch {
    split: bool,
    capacity: usize,
    parts: Vec<Part>,
    group: Option<u32>,
}

/// One pipeline of a [`Batch`], with what it carries.
pub(crate) struct Part {
    pub(crate) pipe: Pipeline,
    pub(crate) commands: usize,
    pub(crate) pages: usize,
    pub(crate) bytes: u64,
}

impl Batch {
    /// An empty batch for `conn`, with room for `commands`.
    pub(crate) fn new(conn: &Conn, commands: usize) -> Self {
        Batch {
            split: conn.is_cluster(),
            capacity: commands,
            parts: Vec::new(),
            group: None,
        }
    }

    /// Adds `SET key value`.
    pub(crate) fn set(&mut self, key: &str, group: u32, value: &[u8]) {
        let part = self.part(group);
        part.pipe.cmd("SET").arg(key).arg(value);
        part.pages += 1;
        part.bytes += command_len(&[3, key.len(), value.len()]);
    }

    /// Adds `GET key`.
    pub(crate) fn get(&mut self, key: &str, group: u32) {
        let part = self.part(group);
        part.pipe.cmd("GET").arg(key);
        part.pages += 1;
        part.bytes += command_len(&[3, key.len()]);
    }

    /// Adds `DEL key`.
    pub(crate) fn del(&mut self, key: &str, group: u32) {
        let part = self.part(group);
        part.pipe.cmd("DEL").arg(key);
        part.bytes += command_len(&[3, key.len()]);
    }

    /// Adds `CLIENT KILL ID id` (on a single server only: it names no key).
    pub(crate) fn client_kill(&mut self, id: i64) {
        let part = self.part(0);
        part.pipe.cmd("CLIENT").arg("KILL").arg("ID").arg(id);
        part.bytes += command_len(&[6, 4, 2, 20]);
    }

    /// The pipelines, in order.
    pub(crate) fn into_parts(self) -> Vec<Part> {
        self.parts
    }

    /// Commands in the batch.
    pub(crate) fn commands(&self) -> usize {
        self.parts.iter().map(|p| p.commands).sum()
    }

    fn part(&mut self, group: u32) -> &mut Part {
        let new = self.parts.is_empty() || (self.split && self.group != Some(group));
        if new {
            self.parts.push(Part {
                pipe: Pipeline::with_capacity(if self.split { 1 } else { self.capacity }),
                commands: 0,
                pages: 0,
                bytes: 0,
            });
            self.group = Some(group);
        }
        let part = self.parts.last_mut().expect("a part was just ensured");
        part.commands += 1;
        part
    }
}
