//! TLS against a real redis-server started with `--tls-port` and
//! certificates made here: the conformance suites over `rediss://` with a
//! client certificate, on a server and on a cluster whose bus speaks TLS
//! too, and servers that must be refused at open.
#![cfg(feature = "tls")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use pagebackup_core::ErrorKind;
use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, Check, Subject, async_conformance, conformance};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rstest::rstest;
use rstest_reuse::apply;
use support::{Server, free_port, tls_available};

/// PEM files of one CA and a server and a client certificate it signed.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// Makes a CA and its certificates, for 127.0.0.1, in `dir` as `NAME-*.pem`.
fn pki(dir: &Path, name: &str) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}.pem"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let signed = |who: &str, names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        // Its own name: one equal to the issuer's reads as self-signed.
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} {who}"));
        let cert = params.signed_by(&key, &ca).unwrap();
        (
            write(&format!("{who}-cert"), cert.pem()),
            write(&format!("{who}-key"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = signed("server", vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = signed("client", vec!["client".into()]);
    Pki {
        ca: write("ca", ca.pem()),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A redis-server with a TLS port (client certificates required) serving
/// `server`'s certificate and trusting `clients`' CA; its `rediss://` URL.
fn tls_server(test: &str, server: &Pki, clients: &Pki) -> Option<(Server, String)> {
    tls_node(test, server, clients, &["--maxmemory", "256mb"])
}

/// [`tls_server`] with `extra` options.
fn tls_node(test: &str, server: &Pki, clients: &Pki, extra: &[&str]) -> Option<(Server, String)> {
    if !tls_available(test) {
        return None;
    }
    let port = free_port().to_string();
    let mut args = vec![
        "--tls-port",
        &port,
        "--tls-cert-file",
        server.server_cert.to_str().unwrap(),
        "--tls-key-file",
        server.server_key.to_str().unwrap(),
        "--tls-ca-cert-file",
        clients.ca.to_str().unwrap(),
        "--tls-auth-clients",
        "yes",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(test, &args)?;
    Some((server, format!("rediss://127.0.0.1:{port}")))
}

/// A Redis Cluster of three masters, started once for the test process,
/// whose clients and cluster bus speak TLS only to certificates of one CA
/// (`--tls-cluster yes`; the plain ports serve `redis-cli` alone), and the
/// config of a `rediss://` cluster spec reaching it through its second node.
fn tls_cluster(test: &str) -> Option<RedisConfig> {
    static CLUSTER: OnceLock<Option<(RedisConfig, Vec<Server>)>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let pki = pki(&dir("cluster"), "c");
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--tls-cluster",
                "yes",
                "--maxmemory",
                "64mb",
            ];
            let nodes: Vec<(Server, String)> = (0..3)
                .map(|_| tls_node(test, &pki, &pki, &args))
                .collect::<Option<_>>()?;
            let (nodes, urls): (Vec<Server>, Vec<String>) = nodes.into_iter().unzip();
            support::form_cluster(&nodes);
            Some((config(&urls[1], &pki).with_cluster(true), nodes))
        })
        .as_ref()
        .map(|(config, _)| config.clone())
}

#[apply(conformance)]
fn redis_tls_cluster(#[case] check: Check) {
    let Some(config) = tls_cluster("redis tls cluster conformance") else {
        return;
    };
    let limited = config.clone();
    let subject = Subject::new("redis cluster (tls)", move || Box::new(open(config.clone())))
        .with_limit(move |bytes| Box::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[apply(async_conformance)]
fn redis_tls_cluster_async(#[case] check: AsyncCheck) {
    let Some(config) = tls_cluster("redis tls cluster async conformance") else {
        return;
    };
    let limited = config.clone();
    let subject = AsyncSubject::new("redis cluster (tls, async)", move || Arc::new(open(config.clone())))
        .with_limit(move |bytes| Arc::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[test]
fn a_tls_cluster_is_reached_over_tls_only() {
    let Some(config) = tls_cluster("redis tls cluster, plaintext refused") else {
        return;
    };
    // Every node's TLS port serves the cluster's pages; a cluster spec
    // without TLS on the same port is refused, not served in clear.
    let b = open(config.clone());
    let (live, _) = support::backup_batch(&b, 0, 200);
    support::verify(&b, &live);
    let plain = config.redacted_url().replace("rediss://", "redis://");
    let err = RedisBackend::new(
        RedisConfig::new(plain)
            .with_cluster(true)
            .with_timeout(std::time::Duration::from_secs(2)),
    )
    .expect_err("a TLS port does not answer in clear");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
}

/// The config of a `rediss://` spec trusting `pki`'s CA, with its client
/// certificate.
fn config(url: &str, pki: &Pki) -> RedisConfig {
    RedisConfig::from_params(&[
        ("url", url),
        ("tls_ca", pki.ca.to_str().unwrap()),
        ("tls_cert", pki.client_cert.to_str().unwrap()),
        ("tls_key", pki.client_key.to_str().unwrap()),
    ])
    .unwrap()
}

fn dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pagebackup-redis-tls-{test}-{}", std::process::id()))
}

/// One TLS server for the conformance checks, with the config to reach it.
fn shared(test: &str) -> Option<RedisConfig> {
    static SHARED: OnceLock<Option<(RedisConfig, Mutex<Server>)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let pki = pki(&dir("shared"), "a");
            let (server, url) = tls_server(test, &pki, &pki)?;
            Some((config(&url, &pki), Mutex::new(server)))
        })
        .as_ref()
        .map(|(config, _)| config.clone())
}

fn open(config: RedisConfig) -> RedisBackend {
    RedisBackend::new(config).unwrap_or_else(|e| panic!("{e}"))
}

#[apply(conformance)]
fn redis_tls(#[case] check: Check) {
    let Some(config) = shared("redis tls conformance") else {
        return;
    };
    let limited = config.clone();
    let subject = Subject::new("redis (tls)", move || Box::new(open(config.clone())))
        .with_limit(move |bytes| Box::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[apply(async_conformance)]
fn redis_tls_async(#[case] check: AsyncCheck) {
    let Some(config) = shared("redis tls async conformance") else {
        return;
    };
    let limited = config.clone();
    let subject = AsyncSubject::new("redis (tls, async)", move || Arc::new(open(config.clone())))
        .with_limit(move |bytes| Arc::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[test]
fn servers_that_do_not_verify_are_refused_at_open() {
    let dir = dir("refused");
    let (ours, theirs) = (pki(&dir, "ours"), pki(&dir, "theirs"));
    // The server's certificate is from a CA the client does not trust.
    let Some((_server, url)) = tls_server("tls refused", &theirs, &ours) else {
        return;
    };
    let secret = url.replace("rediss://", "rediss://:s3cret-pw@");
    let err = RedisBackend::new(config(&secret, &ours)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains("s3cret-pw"), "the password appears: {text}");
    // Trusting its CA, but with no client certificate: the server refuses.
    let bare = RedisConfig::from_params(&[("url", &url), ("tls_ca", theirs.ca.to_str().unwrap())]).unwrap();
    RedisBackend::new(bare).expect_err("the server asks for a client certificate");
    // Its own CA and a client certificate it trusts: accepted.
    let mut trusted = config(&url, &ours);
    trusted.tls_ca = Some(theirs.ca.clone());
    open(trusted);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_files_need_a_tls_url_and_must_be_readable() {
    let dir = dir("files");
    let pki = pki(&dir, "p");
    let Some(server) = Server::start("tls files", &[]) else {
        return;
    };
    let err = RedisBackend::new(config(&server.url(), &pki)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("need a rediss:// URL"), "{err}");
    let mut missing = config("rediss://127.0.0.1:1", &pki);
    missing.tls_key = Some(dir.join("nowhere.pem"));
    let err = RedisBackend::new(missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("tls_key: cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
