//! [`ReplyReader`]: the replies to a pipeline of `GET`s read from the
//! connection's bytes, a value of the expected length handed over where it
//! lies in the read buffer (one copy from there into the page, none into a
//! reply object first).

use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use redis::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from the connection at most per read: room for a batch of
/// 64 values, so a pipeline's replies mostly arrive in a few reads.
const BUFFER: usize = 272 * 1024;

/// The longest reply header or simple reply line accepted.
const MAX_LINE: usize = 4096;

/// One reply, as a restore handles it.
pub(crate) enum Reply<'a> {
    /// A value of the expected length, in the read buffer (mutable, so a
    /// sealed value can be opened in place).
    Value(&'a mut [u8]),
    /// A value of another length, skipped: how long it was.
    Length(usize),
    /// Any other reply (nil, an error, a simple string, a number).
    Other(Value),
}

/// The read side of a connection of the restore path: a buffer and the
/// parsing of `GET` replies out of it. Between round trips it holds
/// nothing (a server that sends more than it was asked is a protocol error).
pub(crate) struct ReplyReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes consumed since [`take_received`](Self::take_received).
    received: u64,
}

impl ReplyReader {
    pub(crate) fn new() -> Self {
        ReplyReader {
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            received: 0,
        }
    }

    /// Whether every byte read was consumed.
    pub(crate) fn is_clean(&self) -> bool {
        self.start == self.end
    }

    /// The bytes of replies consumed since the last call.
    pub(crate) fn take_received(&mut self) -> u64 {
        std::mem::take(&mut self.received)
    }

    /// Reads more bytes, making room for `need` bytes from `start` first.
    async fn fill<R: AsyncRead + Unpin>(&mut self, stream: &mut R, need: usize) -> io::Result<()> {
        if self.buf.len() - self.start < need || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before its replies were complete",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// Consumes one line (CRLF included) and gives its length without CRLF.
    async fn line<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.start + searched..self.end];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let len = searched + i;
                if len == 0 || self.buf[self.start + len - 1] != b'\r' {
                    return Err(protocol("a reply line not ended by CRLF"));
                }
                return Ok(len - 1);
            }
            searched += pending.len();
            if searched > MAX_LINE {
                return Err(protocol("a reply line longer than 4096 bytes"));
            }
            self.fill(stream, MAX_LINE + 2).await?;
        }
    }

    /// Reads the next reply, expecting a bulk string of `expected` bytes.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        expected: usize,
    ) -> io::Result<Reply<'_>> {
        let len = self.line(stream).await?;
        let line = &self.buf[self.start..self.start + len];
        let header = len + 2;
        if line.first() != Some(&b'$') {
            // A simple reply: the client's own parser reads the line.
            if !matches!(line.first(), Some(b'+' | b'-' | b':' | b'_')) {
                return Err(protocol("a reply of a type GET never gives"));
            }
            let value = redis::parse_redis_value(&self.buf[self.start..self.start + header])
                .map_err(|e| protocol(&format!("an unreadable reply line: {e}")))?;
            self.consume(header);
            return Ok(Reply::Other(value));
        }
        let n = std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| protocol("a bulk string header without a length"))?;
        self.consume(header);
        let Ok(n) = usize::try_from(n) else {
            return Ok(Reply::Other(Value::Nil));
        };
        let total = n
            .checked_add(2)
            .ok_or_else(|| protocol("a bulk string length out of range"))?;
        if n != expected {
            self.skip(stream, total).await?;
            return Ok(Reply::Length(n));
        }
        while self.end - self.start < total {
            self.fill(stream, total).await?;
        }
        let at = self.start;
        self.consume(total);
        if &self.buf[at + n..at + total] != b"\r\n" {
            return Err(protocol("a bulk string not ended by CRLF"));
        }
        Ok(Reply::Value(&mut self.buf[at..at + n]))
    }

    /// Consumes `n` bytes, reading them as they come without keeping them.
    async fn skip<R: AsyncRead + Unpin>(&mut self, stream: &mut R, mut n: usize) -> io::Result<()> {
        loop {
            let here = n.min(self.end - self.start);
            self.consume(here);
            n -= here;
            if n == 0 {
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            self.fill(stream, 0).await?;
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.received += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// The error of a reply the restore path cannot read: the connection is
/// then closed, never reused out of step.
fn protocol(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("protocol error: {what}"))
}

/// Runs `fut`, whose reads and writes never give way (they block), to its
/// end on this thread: the sync path runs the same reader as the async one.
pub(crate) fn run_blocking<T>(fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(io::Error::other(
            "a blocking read gave way: the restore path's reader is misused",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], expected: usize, count: usize) -> io::Result<Vec<String>> {
        let mut src: &[u8] = bytes;
        let mut reader = ReplyReader::new();
        let out = run_blocking(async {
            let mut out = Vec::new();
            for _ in 0..count {
                out.push(match reader.next(&mut src, expected).await? {
                    Reply::Value(v) => format!("value {}", String::from_utf8_lossy(v)),
                    Reply::Length(n) => format!("length {n}"),
                    Reply::Other(v) => format!("{v:?}"),
                });
            }
            Ok(out)
        })?;
        assert!(reader.is_clean());
        assert_eq!(reader.take_received(), bytes.len() as u64);
        Ok(out)
    }

    #[test]
    fn replies_of_every_kind_are_read_in_order() {
        let bytes = b"$3\r\nabc\r\n$-1\r\n$5\r\nhello\r\n-ERR no\r\n+OK\r\n$3\r\nxyz\r\n";
        assert_eq!(
            read_all(bytes, 3, 6).unwrap(),
            [
                "value abc",
                "nil",
                "length 5",
                "Server error: `ERR: no`",
                "ok",
                "value xyz"
            ]
        );
    }

    #[test]
    fn values_split_across_reads_and_larger_than_the_buffer_are_read() {
        let big = vec![b'x'; BUFFER * 2];
        let mut bytes = format!("${}\r\n", big.len()).into_bytes();
        bytes.extend_from_slice(&big);
        bytes.extend_from_slice(b"\r\n$4\r\nabcd\r\n");
        assert_eq!(
            read_all(&bytes, 4, 2).unwrap(),
            [format!("length {}", big.len()), "value abcd".into()]
        );
        let mut bytes = b"$-1\r\n".to_vec();
        bytes.extend_from_slice(&format!("${}\r\n", big.len()).into_bytes());
        bytes.extend_from_slice(&big);
        bytes.extend_from_slice(b"\r\n");
        let out = read_all(&bytes, big.len(), 2).unwrap();
        assert_eq!(out[1].len(), "value ".len() + big.len());
    }

    #[test]
    fn malformed_or_cut_replies_are_errors() {
        for (bytes, what) in [
            (&b"*1\r\n$1\r\na\r\n"[..], "a reply of a type GET never gives"),
            (b"$3\r\nabcXY", "not ended by CRLF"),
            (b"$x\r\n", "without a length"),
            (b"$3\nabc\r\n", "not ended by CRLF"),
        ] {
            let err = read_all(bytes, 3, 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        let err = read_all(b"$3\r\nab", 3, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let err = read_all(&[b'+'; MAX_LINE + 10], 3, 1).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }
}
