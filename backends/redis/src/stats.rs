//! [`RedisStats`]: the traffic of a backend with its server.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value;

/// What a [`RedisBackend`](crate::RedisBackend) has exchanged with its
/// server, from [`RedisBackend::redis_stats`](crate::RedisBackend::redis_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Pipelines sent and answered (or failed): one per batch call, or one
    /// per hash-tag group of the batch on a cluster, plus the backend's own
    /// `INFO` and cleanup calls.
    pub round_trips: u64,
    /// Pages sent or fetched in a pipeline of more than one command.
    pub pipelined_pages: u64,
    /// Bytes of the RESP commands sent.
    pub bytes_sent: u64,
    /// Bytes of the RESP replies received.
    pub bytes_received: u64,
}

/// The counters behind [`RedisStats`], updated by every round trip.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    round_trips: AtomicU64,
    pipelined_pages: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Traffic {
    /// Counts a pipeline of `commands` carrying `pages` pages, `sent` bytes
    /// out, and its `replies`.
    pub(crate) fn count(&self, commands: usize, pages: usize, sent: u64, replies: &[Value]) {
        self.count_received(commands, pages, sent, replies.iter().map(reply_len).sum());
    }

    /// Counts a pipeline as [`count`](Self::count) does, with `received`
    /// bytes of replies.
    pub(crate) fn count_received(&self, commands: usize, pages: usize, sent: u64, received: u64) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        if commands > 1 {
            self.pipelined_pages.fetch_add(pages as u64, Ordering::Relaxed);
        }
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedisStats {
        RedisStats {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            pipelined_pages: self.pipelined_pages.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// Bytes of a RESP command with arguments of these lengths:
/// `*N\r\n` then `$LEN\r\nDATA\r\n` per argument.
pub(crate) fn command_len(args: &[usize]) -> u64 {
    let header = 3 + digits(args.len());
    let body: usize = args.iter().map(|&n| 5 + digits(n) + n).sum();
    (header + body) as u64
}

/// Bytes of a RESP2 reply as the backend's commands get them.
fn reply_len(value: &Value) -> u64 {
    (match value {
        Value::BulkString(v) => 5 + digits(v.len()) + v.len(),
        Value::Nil => 5,
        Value::Okay => 5,
        Value::Int(n) => 3 + digits(n.unsigned_abs() as usize),
        Value::SimpleString(s) => 3 + s.len(),
        Value::ServerError(e) => 3 + e.code().len() + e.details().map_or(0, |d| d.len() + 1),
        _ => 0,
    }) as u64
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_lengths_are_exact() {
        // *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4096\r\n<4096>\r\n
        assert_eq!(command_len(&[3, 1, 4096]), 4 + 9 + 7 + (7 + 4096 + 2));
        assert_eq!(reply_len(&Value::Okay), "+OK\r\n".len() as u64);
        assert_eq!(reply_len(&Value::Nil), "$-1\r\n".len() as u64);
        assert_eq!(reply_len(&Value::Int(1)), ":1\r\n".len() as u64);
        assert_eq!(
            reply_len(&Value::BulkString(vec![0; 10])),
            "$10\r\n0123456789\r\n".len() as u64
        );
        let traffic = Traffic::default();
        traffic.count(2, 2, 100, &[Value::Okay, Value::Okay]);
        traffic.count(1, 1, 50, &[Value::Okay]);
        let stats = traffic.snapshot();
        assert_eq!(
            (
                stats.round_trips,
                stats.pipelined_pages,
                stats.bytes_sent,
                stats.bytes_received
            ),
            (2, 2, 150, 15)
        );
    }
}
