//! TLS to the server: what `rediss://` and the `tls_*` parameters ask for,
//! loaded once at open, and the clients made with it.

use pagebackup_core::{BackupError, Origin};
use redis::{Client, IntoConnectionInfo, RedisResult};

use crate::RedisConfig;

/// The certificates of a TLS connection (feature `tls`); nothing without it.
#[cfg(feature = "tls")]
pub(crate) type Tls = Option<redis::TlsCertificates>;
/// The certificates of a TLS connection (feature `tls`); always `None`
/// without it.
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = Option<std::convert::Infallible>;

/// Whether `url` asks for TLS.
fn is_tls_url(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// What `config` asks of TLS: no TLS for a `redis://` URL, the system's
/// roots or `tls_ca`'s (and a client certificate) for `rediss://`. A file
/// that cannot be read, `tls_*` beside a plaintext URL, or `rediss://` in
/// a build without the `tls` feature is `Config` at `origin`: never a
/// plaintext connection instead.
pub(crate) fn load(config: &RedisConfig, origin: Origin) -> Result<Tls, BackupError> {
    let bad = |detail: String| BackupError::Config { origin, detail };
    let files = [&config.tls_ca, &config.tls_cert, &config.tls_key];
    if !is_tls_url(config.url()) {
        if files.iter().any(|f| f.is_some()) {
            return Err(bad(format!(
                "tls_ca, tls_cert and tls_key need a rediss:// URL, not {}",
                config.redacted_url()
            )));
        }
        return Ok(None);
    }
    #[cfg(feature = "tls")]
    {
        let read = |what: &str, path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|e| bad(format!("{what}: cannot read {}: {e}", path.display())))
        };
        let client_tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("tls_cert", cert)?,
                client_key: read("tls_key", key)?,
            }),
            (None, None) => None,
            _ => return Err(bad("tls_cert and tls_key go together".to_string())),
        };
        let root_cert = config.tls_ca.as_ref().map(|ca| read("tls_ca", ca)).transpose()?;
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }
    #[cfg(not(feature = "tls"))]
    Err(bad(format!(
        "{} asks for TLS: enable the `tls` feature of the redis backend's crate (or of the pagebackup facade)",
        config.redacted_url()
    )))
}

/// A client for `info`, over TLS with `tls`'s certificates if there are any.
pub(crate) fn client(info: impl IntoConnectionInfo, tls: &Tls) -> RedisResult<Client> {
    #[cfg(feature = "tls")]
    if let Some(certificates) = tls {
        return Client::build_with_tls(info, certificates.clone());
    }
    let _ = tls;
    Client::open(info)
}

/// The rustls configuration and server name of the restore path's own
/// connections to `host`: the same roots (`tls_ca`'s, or the system's) and
/// client certificate as the redis crate's connections.
#[cfg(feature = "tls")]
pub(crate) fn rustls_target(
    host: &str,
    certificates: &redis::TlsCertificates,
) -> RedisResult<(
    std::sync::Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}: {e}"),
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &certificates.root_cert {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| invalid("tls_ca", &e))?;
                roots.add(cert).map_err(|e| invalid("tls_ca", &e))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    // The process's crypto provider, as the redis crate's connections use
    // (`ring`, the one this crate's features compile in).
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match &certificates.client_tls {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(&client.client_cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("tls_cert", &e))?;
            let key = PrivateKeyDer::from_pem_slice(&client.client_key).map_err(|e| invalid("tls_key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("tls_cert and tls_key", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| invalid("server name", &e))?;
    Ok((std::sync::Arc::new(config), name))
}

#[cfg(test)]
mod tests {
    use pagebackup_core::Operation;

    use super::*;

    const ORIGIN: Origin = Origin::new(crate::NAME, Operation::Open);

    #[test]
    fn tls_files_beside_a_plaintext_url_are_refused() {
        let mut config = RedisConfig::new("redis://:pw@127.0.0.1:1");
        assert!(load(&config, ORIGIN).unwrap().is_none());
        config.tls_ca = Some("ca.pem".into());
        let err = load(&config, ORIGIN).unwrap_err().to_string();
        assert!(
            err.contains("need a rediss:// URL, not redis://:***@127.0.0.1:1"),
            "{err}"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_is_a_config_error_never_plaintext() {
        let err = load(&RedisConfig::new("rediss://127.0.0.1:1"), ORIGIN).unwrap_err();
        assert_eq!(err.kind(), pagebackup_core::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("enable the `tls` feature"), "{err}");
    }
}
