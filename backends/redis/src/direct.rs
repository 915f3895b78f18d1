//! [`Direct`]: the restore path's own connections to a single server, whose
//! `GET` replies are read by [`ReplyReader`] straight out of the
//! connection's buffer, for sync calls (blocking sockets, on the caller's
//! thread) and async ones (on the backend's runtime). Everything else goes
//! through the redis crate's connections.
//!
//! A connection is reused only after a round trip read all its replies and
//! nothing more; one that failed, timed out or was abandoned mid-reply is
//! closed, so no reply is ever read for another request.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::RedisConfig;
use crate::blocking::remaining;
use crate::error::{Failure, cut, timed_out};
use crate::resp::{Reply, ReplyReader, run_blocking};

/// TLS to the server: the client configuration and the name to verify.
#[cfg(feature = "tls")]
type TlsTarget = (
    std::sync::Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);

/// Where the connections go and what they send first.
struct Target {
    addr: Addr,
    #[cfg(feature = "tls")]
    tls: Option<TlsTarget>,
    /// `AUTH` and `SELECT` as the URL asks, packed, and how many.
    setup: Vec<u8>,
    setup_commands: usize,
}

enum Addr {
    Tcp(String, u16),
    Unix(std::path::PathBuf),
}

/// The restore path's connections to one server, idle ones pooled.
pub(crate) struct Direct {
    target: Target,
    idle_sync: Mutex<Vec<(SyncStream, ReplyReader)>>,
    idle_async: Mutex<Vec<(AsyncStream, ReplyReader)>>,
}

impl Direct {
    /// The restore path for the server of `config`, or `None` where it
    /// does not apply (a cluster, a `#insecure` TLS URL: the redis crate's
    /// connections serve those). No connection is made yet.
    pub(crate) fn new(config: &RedisConfig, tls: &crate::tls::Tls) -> redis::RedisResult<Option<Direct>> {
        if config.cluster {
            return Ok(None);
        }
        let info = config.url().into_connection_info()?;
        let settings = info.redis_settings();
        let mut setup = redis::pipe();
        if let Some(password) = settings.password() {
            let auth = setup.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            setup.cmd("SELECT").arg(settings.db());
        }
        let setup_commands = setup.len();
        let setup = if setup_commands == 0 {
            Vec::new()
        } else {
            setup.get_packed_pipeline()
        };
        let (addr, secure) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (Addr::Tcp(host.clone(), *port), None),
            ConnectionAddr::TcpTls {
                host, insecure: false, ..
            } => (Addr::Tcp(host.clone(), tls_port(info.addr())), Some(host.clone())),
            ConnectionAddr::Unix(path) => (Addr::Unix(path.clone()), None),
            _ => return Ok(None),
        };
        #[cfg(feature = "tls")]
        let tls = match (secure, tls) {
            (Some(host), Some(certificates)) => Some(crate::tls::rustls_target(&host, certificates)?),
            (Some(_), None) => return Ok(None),
            (None, _) => None,
        };
        #[cfg(not(feature = "tls"))]
        if secure.is_some() || tls.is_some() {
            return Ok(None);
        }
        Ok(Some(Direct {
            target: Target {
                addr,
                #[cfg(feature = "tls")]
                tls,
                setup,
                setup_commands,
            },
            idle_sync: Mutex::new(Vec::new()),
            idle_async: Mutex::new(Vec::new()),
        }))
    }

    /// Sends `packed` (`count` `GET`s of values of `expected` bytes) on this
    /// thread, and hands each reply in order to `each`, those a failed
    /// round trip did not read as failures. Gives the bytes of replies read.
    ///
    /// A pooled connection found cut before any reply (the server closed an
    /// idle connection, or restarted) is replaced once: `GET`s may be resent.
    pub(crate) fn round_trip_blocking(
        &self,
        packed: &[u8],
        count: usize,
        expected: usize,
        deadline: Instant,
        each: &mut Each<'_>,
    ) -> u64 {
        let mut trip = Trip::start(&self.idle_sync);
        loop {
            let attempt = match trip.conn.take().map_or_else(|| self.connect_blocking(deadline), Ok) {
                Ok((mut stream, mut reader)) => {
                    let mut timed = Blocking {
                        stream: &mut stream,
                        deadline,
                    };
                    let exchanged = run_blocking(exchange(
                        &mut timed,
                        &mut reader,
                        packed,
                        count,
                        expected,
                        &mut trip.delivered,
                        each,
                    ));
                    trip.received += reader.take_received();
                    exchanged.map(|()| (stream, reader)).map_err(redis::RedisError::from)
                }
                Err(e) => Err(e),
            };
            if let Some(received) = trip.settle(attempt, &self.idle_sync, count, each) {
                return received;
            }
        }
    }

    /// [`round_trip_blocking`](Self::round_trip_blocking) on the backend's
    /// runtime. Dropped mid-reply, it drops its connection with it.
    pub(crate) async fn round_trip(
        &self,
        packed: &[u8],
        count: usize,
        expected: usize,
        deadline: Instant,
        each: &mut Each<'_>,
    ) -> u64 {
        let mut trip = Trip::start(&self.idle_async);
        loop {
            let taken = trip.conn.take();
            let (delivered, received) = (&mut trip.delivered, &mut trip.received);
            let attempt = async {
                let (mut stream, mut reader) = match taken {
                    Some(conn) => conn,
                    None => self.connect(deadline).await?,
                };
                let exchanged = exchange(&mut stream, &mut reader, packed, count, expected, delivered, each).await;
                *received += reader.take_received();
                exchanged?;
                Ok::<_, redis::RedisError>((stream, reader))
            };
            let attempt = tokio::time::timeout_at(deadline.into(), attempt)
                .await
                .unwrap_or_else(|_| Err(timed_out()));
            if let Some(received) = trip.settle(attempt, &self.idle_async, count, each) {
                return received;
            }
        }
    }

    /// A new blocking connection, ready (authenticated, its database
    /// selected) by `deadline`.
    fn connect_blocking(&self, deadline: Instant) -> redis::RedisResult<(SyncStream, ReplyReader)> {
        let left = remaining(deadline)?;
        let stream = match &self.target.addr {
            Addr::Tcp(host, port) => {
                let tcp = connect_tcp((host.as_str(), *port), left)?;
                #[cfg(feature = "tls")]
                if let Some((config, name)) = &self.target.tls {
                    let session = rustls::ClientConnection::new(config.clone(), name.clone())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let sock = TlsSocket(io::BufReader::with_capacity(TLS_READ_BUFFER, tcp));
                    let stream = SyncStream::Tls(Box::new(rustls::StreamOwned::new(session, sock)));
                    return self.setup_blocking(stream, deadline);
                }
                SyncStream::Tcp(tcp)
            }
            Addr::Unix(path) => SyncStream::Unix(std::os::unix::net::UnixStream::connect(path)?),
        };
        self.setup_blocking(stream, deadline)
    }

    fn setup_blocking(
        &self,
        mut stream: SyncStream,
        deadline: Instant,
    ) -> redis::RedisResult<(SyncStream, ReplyReader)> {
        let mut reader = ReplyReader::new();
        let mut timed = Blocking {
            stream: &mut stream,
            deadline,
        };
        run_blocking(async { Ok(self.setup(&mut timed, &mut reader).await) })??;
        Ok((stream, reader))
    }

    /// A new connection on the backend's runtime, ready by `deadline` (the
    /// caller bounds it).
    async fn connect(&self, _deadline: Instant) -> redis::RedisResult<(AsyncStream, ReplyReader)> {
        let mut stream = match &self.target.addr {
            Addr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                #[cfg(feature = "tls")]
                if let Some((config, name)) = &self.target.tls {
                    let tcp = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp);
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name.clone(), tcp)
                        .await?;
                    AsyncStream::Tls(Box::new(tls))
                } else {
                    AsyncStream::Tcp(tcp)
                }
                #[cfg(not(feature = "tls"))]
                AsyncStream::Tcp(tcp)
            }
            Addr::Unix(path) => AsyncStream::Unix(tokio::net::UnixStream::connect(path).await?),
        };
        let mut reader = ReplyReader::new();
        self.setup(&mut stream, &mut reader).await?;
        Ok((stream, reader))
    }

    /// Sends the setup commands and checks that each was accepted.
    async fn setup<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        reader: &mut ReplyReader,
    ) -> redis::RedisResult<()> {
        if self.target.setup_commands == 0 {
            return Ok(());
        }
        let mut refused = None;
        let mut delivered = 0;
        exchange(
            stream,
            reader,
            &self.target.setup,
            self.target.setup_commands,
            0,
            &mut delivered,
            &mut |reply| match reply {
                Ok(Reply::Other(Value::Okay)) => {}
                Ok(Reply::Other(Value::ServerError(e))) => refused = Some(redis::RedisError::from(e)),
                _ => {
                    refused = Some(redis::RedisError::from(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "protocol error: an unexpected reply to AUTH or SELECT",
                    )))
                }
            },
        )
        .await?;
        reader.take_received();
        refused.map_or(Ok(()), Err)
    }
}

/// What a round trip hands each reply to, in order.
pub(crate) type Each<'a> = dyn FnMut(Result<Reply<'_>, Failure>) + Send + 'a;

/// What a round trip, sync or async, has done so far: each attempt
/// exchanges on `conn` (a pooled connection, or a new one when `None`),
/// counting the replies it delivers and the bytes it receives, then
/// [`settle`](Trip::settle)s.
struct Trip<C> {
    conn: Option<C>,
    /// Whether `conn` came from the pool (and may have been closed by the
    /// server while idle).
    pooled: bool,
    delivered: usize,
    received: u64,
}

impl<C> Trip<C> {
    fn start(idle: &Mutex<Vec<C>>) -> Self {
        let conn = pop(idle);
        Trip {
            pooled: conn.is_some(),
            conn,
            delivered: 0,
            received: 0,
        }
    }

    /// After an attempt: `None` to try once more on a new connection (the
    /// pooled one was found cut before any reply, as when the server closed
    /// it or restarted: `GET`s may be resent); else the bytes received, the
    /// connection pooled once every reply was read, or the replies not
    /// delivered failed.
    fn settle(
        &mut self,
        attempt: redis::RedisResult<C>,
        idle: &Mutex<Vec<C>>,
        count: usize,
        each: &mut Each<'_>,
    ) -> Option<u64> {
        match attempt {
            Ok(conn) => push(idle, conn),
            Err(error) if self.pooled && self.delivered == 0 && cut(&error) => {
                self.pooled = false;
                return None;
            }
            Err(error) => fail_rest(each, self.delivered, count, error),
        }
        Some(self.received)
    }
}

/// Hands `each` the failure of the replies from `delivered` to `count`.
fn fail_rest(each: &mut Each<'_>, delivered: usize, count: usize, error: redis::RedisError) {
    for _ in delivered..count {
        each(Err(Failure::Transport(error.clone())));
    }
}

/// A TCP connection to `addr` (any of its addresses), made within `left`,
/// with Nagle's algorithm off.
fn connect_tcp(addr: (&str, u16), left: Duration) -> io::Result<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&a, left) {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the server's name resolves to no address")))
}

/// Sends `packed` and reads `count` replies into `each`, counting them in
/// `delivered`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut ReplyReader,
    packed: &[u8],
    count: usize,
    expected: usize,
    delivered: &mut usize,
    each: &mut Each<'_>,
) -> io::Result<()> {
    stream.write_all(packed).await?;
    stream.flush().await?;
    while *delivered < count {
        let reply = reader.next(stream, expected).await?;
        *delivered += 1;
        each(Ok(reply));
    }
    if !reader.is_clean() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "protocol error: the server sent more replies than it was asked for",
        ));
    }
    Ok(())
}

/// The port of a TLS address.
fn tls_port(addr: &ConnectionAddr) -> u16 {
    match addr {
        ConnectionAddr::TcpTls { port, .. } => *port,
        _ => 0,
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").finish_non_exhaustive()
    }
}

fn pop<T>(idle: &Mutex<Vec<T>>) -> Option<T> {
    idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
}

fn push<T>(idle: &Mutex<Vec<T>>, conn: T) {
    idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
}

/// A blocking connection.
enum SyncStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TlsSocket>>),
}

/// Bytes read from a TLS connection's socket at once. rustls asks its
/// socket for at most 4 KiB per read, a system call per record's worth of
/// a batch's replies without this buffer.
#[cfg(feature = "tls")]
const TLS_READ_BUFFER: usize = 256 * 1024;

/// The socket under a blocking TLS connection: reads buffered (see
/// [`TLS_READ_BUFFER`]), writes straight through.
#[cfg(feature = "tls")]
struct TlsSocket(io::BufReader<std::net::TcpStream>);

#[cfg(feature = "tls")]
impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

#[cfg(feature = "tls")]
impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

impl SyncStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        match self {
            SyncStream::Tcp(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))
            }
            SyncStream::Unix(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))
            }
            #[cfg(feature = "tls")]
            SyncStream::Tls(s) => {
                s.sock.0.get_ref().set_read_timeout(Some(left))?;
                s.sock.0.get_ref().set_write_timeout(Some(left))
            }
        }
    }
}

impl Read for SyncStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SyncStream::Tcp(s) => s.read(buf),
            SyncStream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            SyncStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for SyncStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SyncStream::Tcp(s) => s.write(buf),
            SyncStream::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            SyncStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SyncStream::Tcp(s) => s.flush(),
            SyncStream::Unix(s) => s.flush(),
            #[cfg(feature = "tls")]
            SyncStream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking connection seen as always ready, each read and write bounded
/// by what is left until the deadline.
struct Blocking<'a> {
    stream: &'a mut SyncStream,
    deadline: Instant,
}

impl Blocking<'_> {
    fn bounded<T>(&mut self, op: impl FnOnce(&mut SyncStream) -> io::Result<T>) -> Poll<io::Result<T>> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within the timeout",
            )));
        }
        Poll::Ready(self.stream.set_timeouts(left).and_then(|()| op(self.stream)))
    }
}

impl AsyncRead for Blocking<'_> {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.bounded(|s| s.read(buf.initialize_unfilled()))
            .map_ok(|n| buf.advance(n))
    }
}

impl AsyncWrite for Blocking<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().bounded(|s| s.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().bounded(|s| s.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection on the backend's runtime.
enum AsyncStream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<tokio::io::BufReader<tokio::net::TcpStream>>>),
}

/// Forwards a poll to the stream of whichever kind.
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            AsyncStream::Tcp($s) => $call,
            AsyncStream::Unix($s) => $call,
            #[cfg(feature = "tls")]
            AsyncStream::Tls($s) => $call,
        }
    };
}

impl AsyncRead for AsyncStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
