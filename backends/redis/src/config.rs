//! [`RedisConfig`]: where the backend's server is and how it uses it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pagebackup_core::raw::params::{ParamDoc, ParamError, Params};
use pagebackup_core::raw::seal::{SEAL_KEY_PARAM, SEAL_PARAM, SealKeySource};

/// Settings of a [`RedisBackend`](crate::RedisBackend).
///
/// Each setting is a parameter of the `redis:` spec (`url`, `prefix`,
/// `attach`, `timeout`, `cluster`, `limit`, `checksum`, `allow_eviction`),
/// which [`from_params`](Self::from_params) parses. Opening needs a server:
///
/// ```no_run
/// use std::time::Duration;
///
/// use pagebackup_core::{BackupBackend, BackupFlags, Page};
/// use pagebackup_redis::{RedisBackend, RedisConfig};
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .with_prefix("myapp")
///     .with_timeout(Duration::from_secs(2))
///     .with_limit(1 << 30);
/// let backend = RedisBackend::new(config)?;
/// let handle = BackupBackend::backup_page(&backend, &Page::new_boxed(), 0, BackupFlags::NONE)?;
/// BackupBackend::drop_handle(&backend, handle)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The URL may carry a password (`redis://user:password@host:port/db`); it
/// is used to connect and never printed: `Debug`, errors and logs show the
/// URL with the password replaced by `***`.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    url: String,
    /// The key prefix; `None` for `pagebackup`, shared by every instance
    /// opened without one. Keys are `PREFIX:{IID:GROUP}:SLOT:GENERATION`,
    /// where `IID` is a random id of the instance, registered on the server
    /// (`PREFIX:IID`, `SET NX`), so instances never read each other's pages.
    /// A named prefix is claimed too (`PREFIX:owner`, `SET NX`): opening with
    /// a prefix another instance claimed is an error unless
    /// [`attach`](Self::attach) is set.
    pub prefix: Option<String>,
    /// Share a named [`prefix`](Self::prefix) that another instance (live,
    /// or dead without cleaning up) has claimed, instead of failing. The
    /// instances' keys still differ by instance id: attaching never makes
    /// another instance's pages readable. Default off.
    pub attach: bool,
    /// How long a call may wait for the server before it fails with `Io`
    /// (`TimedOut`): one deadline for the call's connection attempts and
    /// round trips together. Default 5 s.
    pub timeout: Duration,
    /// Whether the server is a Redis Cluster (or Valkey cluster) node, to be
    /// reached through the cluster protocol. Default off.
    pub cluster: bool,
    /// Most bytes of pages this instance holds on the server (a quota on a
    /// shared server); `None` for no quota but the server's own memory.
    pub limit: Option<u64>,
    /// Store a CRC-32 with every page (4 more bytes per key) and check it on
    /// restore, so that a value changed on the server gives `Corrupt`.
    /// Default off: the length of every value is checked either way.
    pub checksum: bool,
    /// Accept a server whose `maxmemory-policy` evicts keys of any kind
    /// (`allkeys-*`). Off by default, because the server may then silently
    /// delete pages: with it on, restoring an evicted page gives `Corrupt`
    /// ("the key is missing on the server"), never another page.
    pub allow_eviction: bool,
    /// Seal every page (`seal=on`, feature `seal`): encrypted and
    /// authenticated with its identity (instance, slot, generation) as
    /// associated data, so that the server holds no page in clear and a
    /// value changed, moved to another key, replayed or taken from another
    /// instance restores as `Corrupt`. The key comes from the source given
    /// (by default drawn at open and held only in memory). `None` stores
    /// pages as they are.
    pub seal: Option<SealKeySource>,
    /// With a `rediss://` URL (feature `tls`): a PEM file of the CA
    /// certificates the server's must chain to, instead of the system's.
    /// A server whose certificate does not verify is an error at open.
    pub tls_ca: Option<PathBuf>,
    /// With a `rediss://` URL: a PEM file of the client's certificate
    /// chain, for servers that ask for one (`tls-auth-clients`); needs
    /// [`tls_key`](Self::tls_key).
    pub tls_cert: Option<PathBuf>,
    /// The PEM file of [`tls_cert`](Self::tls_cert)'s private key. Only the
    /// path is ever shown.
    pub tls_key: Option<PathBuf>,
}

impl RedisConfig {
    /// Default timeout of a connection attempt or a round trip.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The parameters of a `redis:` spec.
    pub const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            key: "url",
            syntax: "URL",
            default: "required",
            meaning: "`redis://[user:password@]host:port[/db]`, `rediss://` for TLS (the password never appears in messages)",
        },
        ParamDoc {
            key: "prefix",
            syntax: "NAME",
            default: "pagebackup (shared)",
            meaning: "the key prefix; a named one is claimed by the instance (`PREFIX:owner`)",
        },
        ParamDoc {
            key: "attach",
            syntax: "on|off",
            default: "off",
            meaning: "share a prefix another instance claimed instead of failing (pages stay per instance)",
        },
        ParamDoc {
            key: "timeout",
            syntax: "DURATION",
            default: "5s",
            meaning: "most time a call may wait for the server (`500ms`, `5s`, `1m`)",
        },
        ParamDoc {
            key: "cluster",
            syntax: "on|off",
            default: "off",
            meaning: "reach a Redis Cluster through the cluster protocol",
        },
        ParamDoc {
            key: "limit",
            syntax: "SIZE",
            default: "no quota",
            meaning: "most bytes of pages this instance holds on the server",
        },
        ParamDoc {
            key: "checksum",
            syntax: "on|off",
            default: "off",
            meaning: "a CRC-32 with every page, checked on restore",
        },
        ParamDoc {
            key: "allow_eviction",
            syntax: "on|off",
            default: "off",
            meaning: "accept a server whose policy evicts keys (a missing page is then `Corrupt`)",
        },
        SEAL_PARAM,
        SEAL_KEY_PARAM,
        ParamDoc {
            key: "tls_ca",
            syntax: "PATH",
            default: "the system's roots",
            meaning: "PEM file of the CAs a rediss:// server's certificate must chain to (feature `tls`)",
        },
        ParamDoc {
            key: "tls_cert",
            syntax: "PATH",
            default: "none",
            meaning: "PEM file of the client certificate for a rediss:// server (with tls_key)",
        },
        ParamDoc {
            key: "tls_key",
            syntax: "PATH",
            default: "none",
            meaning: "PEM file of the client certificate's private key",
        },
    ];

    /// The config a spec's parameters (see [`PARAMS`](Self::PARAMS)) give.
    pub fn from_params(params: &[(&str, &str)]) -> Result<Self, ParamError> {
        let params = Params::new("redis", Self::PARAMS, params)?;
        let url = params
            .get("url")
            .ok_or_else(|| params.bad("url", "a URL redis://[user:password@]host:port[/db] (url is required)"))?;
        let mut config = RedisConfig::new(url)
            .with_cluster(params.flag("cluster")?.unwrap_or(false))
            .with_checksum(params.flag("checksum")?.unwrap_or(false))
            .with_allow_eviction(params.flag("allow_eviction")?.unwrap_or(false))
            .with_attach(params.flag("attach")?.unwrap_or(false));
        if let Some(prefix) = params.get("prefix") {
            config = config.with_prefix(prefix);
        }
        if let Some(timeout) = params.duration("timeout")? {
            config = config.with_timeout(timeout);
        }
        if let Some(limit) = params.size("limit")? {
            config = config.with_limit(limit);
        }
        let path = |key| params.get(key).map(PathBuf::from);
        config.tls_ca = path("tls_ca");
        config.tls_cert = path("tls_cert");
        config.tls_key = path("tls_key");
        Ok(config.with_seal(SealKeySource::from_params(&params)?))
    }

    /// A configuration for the server at `url`
    /// (`redis://[user:password@]host:port[/db]`), with the shared default
    /// prefix, the default timeout, no cluster, no quota, no checksum, no
    /// eviction, no attaching, no sealing and, for `rediss://`, the
    /// system's CA roots and no client certificate.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: None,
            attach: false,
            timeout: Self::DEFAULT_TIMEOUT,
            cluster: false,
            limit: None,
            checksum: false,
            allow_eviction: false,
            seal: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// With the key prefix `prefix` instead of a random one.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Attaching to a claimed prefix or not (see [`attach`](Self::attach)).
    pub fn with_attach(mut self, on: bool) -> Self {
        self.attach = on;
        self
    }

    /// With another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With the cluster protocol on or off.
    pub fn with_cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// With a quota of `bytes` of pages.
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// With per-page checksums on or off.
    pub fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Accepting an evicting server or not (see [`allow_eviction`](Self::allow_eviction)).
    pub fn with_allow_eviction(mut self, on: bool) -> Self {
        self.allow_eviction = on;
        self
    }

    /// With pages sealed under a key from `source`, or not (`None`).
    pub fn with_seal(mut self, source: Option<SealKeySource>) -> Self {
        self.seal = source;
        self
    }

    /// The URL, password included: for connecting only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        match self.password_range() {
            Some(range) => format!("{}***{}", &self.url[..range.start], &self.url[range.end..]),
            None => self.url.clone(),
        }
    }

    /// `text` with every occurrence of the password replaced by `***`, for
    /// messages that may quote it (errors of the client library).
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self.password_range() {
            Some(range) => text.replace(&self.url[range], "***"),
            None => text.to_string(),
        }
    }

    /// Where the password is in the URL: after `user:` in the part between
    /// `://` and the last `@` before the path.
    fn password_range(&self) -> Option<std::ops::Range<usize>> {
        let start = self.url.find("://")? + 3;
        let authority_end = self.url[start..].find('/').map_or(self.url.len(), |i| start + i);
        let at = start + self.url[start..authority_end].rfind('@')?;
        let colon = start + self.url[start..at].find(':')?;
        (colon + 1 < at).then_some(colon + 1..at)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("attach", &self.attach)
            .field("timeout", &self.timeout)
            .field("cluster", &self.cluster)
            .field("limit", &self.limit)
            .field("checksum", &self.checksum)
            .field("allow_eviction", &self.allow_eviction)
            .field("seal", &self.seal)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_everywhere() {
        let config = RedisConfig::new("redis://alice:s3cr:et@db.example:6380/2");
        assert_eq!(config.redacted_url(), "redis://alice:***@db.example:6380/2");
        assert!(!format!("{config:?}").contains("s3cr:et"), "{config:?}");
        assert_eq!(config.scrub("auth s3cr:et failed"), "auth *** failed");
        let no_user = RedisConfig::new("redis://:pw@h:1");
        assert_eq!(no_user.redacted_url(), "redis://:***@h:1");
        for plain in ["redis://h:1/0", "redis://bob@h:1", "redis://h:1/a@b:c"] {
            assert_eq!(RedisConfig::new(plain).redacted_url(), plain);
        }
    }
}
