//! Redis replies and client errors as [`BackupError`]s.

use std::io;

use pagebackup_core::{BackupError, ErrorKind, Handle, Operation, Origin};
use redis::{RedisError, ServerError};

use crate::{NAME, RedisConfig};

/// Why one command of a pipeline failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The server refused the command (an error reply): it was not carried out.
    Refused(ServerError),
    /// The command's round trip failed (connection lost, timeout): it may or
    /// may not have been carried out.
    Transport(RedisError),
}

impl Failure {
    /// Whether the server may have carried out the command.
    pub(crate) fn uncertain(&self) -> bool {
        matches!(self, Failure::Transport(_))
    }

    /// The error for `op`: an out-of-memory reply is `NoSpace`, anything
    /// else `Io`, with the server's URL (password hidden).
    pub(crate) fn to_error(&self, config: &RedisConfig, op: Operation) -> BackupError {
        let origin = Origin::new(NAME, op);
        match self {
            Failure::Refused(e) if e.code() == "OOM" => BackupError::NoSpace {
                origin,
                detail: format!(
                    "the server {} is out of memory (maxmemory): {}; drop pages or raise its maxmemory",
                    config.redacted_url(),
                    config.scrub(e.details().unwrap_or(""))
                ),
            },
            Failure::Refused(e) => io_error(
                config,
                op,
                io::ErrorKind::Other,
                &format!("the server replied {} {}", e.code(), e.details().unwrap_or("")),
            ),
            Failure::Transport(e) => client_error(config, op, e),
        }
    }
}

/// A client-side error (connection, timeout, protocol) as an `Io` error
/// whose source is an [`io::Error`] of the matching kind wrapping the
/// [`RedisError`] itself (reachable by `get_ref` and `downcast_ref`), unless
/// its message quotes the password (then only the scrubbed message is kept)
/// or it is a timeout (then the message says which timeout ran out).
pub(crate) fn client_error(config: &RedisConfig, op: Operation, e: &RedisError) -> BackupError {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_connection_dropped() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    if e.is_timeout() {
        let what = format!("no answer within the timeout of {:?} ({e})", config.timeout);
        return io_error(config, op, kind, &what);
    }
    let message = e.to_string();
    let scrubbed = config.scrub(&message);
    let source = if scrubbed == message {
        io::Error::new(kind, e.clone())
    } else {
        io::Error::new(kind, scrubbed)
    };
    server_error(config, op, source)
}

/// An `Io` error of `kind` saying `what` happened with the server.
pub(crate) fn io_error(config: &RedisConfig, op: Operation, kind: io::ErrorKind, what: &str) -> BackupError {
    server_error(config, op, io::Error::new(kind, config.scrub(what)))
}

/// An `Io` error with the server's URL (password hidden) and what to do,
/// caused by `source`.
fn server_error(config: &RedisConfig, op: Operation, source: io::Error) -> BackupError {
    BackupError::Caused {
        origin: Origin::new(NAME, op),
        kind: ErrorKind::Io,
        detail: format!(
            "the server {} failed the call; pages already backed up are kept, retry once the server is reachable",
            config.redacted_url()
        ),
        source: Box::new(source),
    }
}

/// The error for a handle this instance does not know (any more).
pub(crate) fn invalid_handle(op: Operation, handle: Handle) -> BackupError {
    BackupError::InvalidHandle {
        origin: Origin::new(NAME, op),
        handle,
    }
}

/// The error for a stored value that is not a page, or is gone.
pub(crate) fn corrupt(op: Operation, handle: Handle, detail: String) -> BackupError {
    BackupError::Corrupt {
        origin: Origin::new(NAME, op),
        handle,
        detail,
    }
}

/// The error of a call whose deadline passed.
pub(crate) fn timed_out() -> RedisError {
    io::Error::new(io::ErrorKind::TimedOut, "no answer within the timeout").into()
}

/// Whether `e` says the connection was cut (and the request may be resent
/// on a new one), rather than that the server did not answer in time.
pub(crate) fn cut(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped())
}
