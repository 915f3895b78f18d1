//! The conformance suites, sync and async, against a Redis Cluster of three
//! masters on loopback ports, created with `redis-cli --cluster create`.

mod support;

use std::sync::{Arc, OnceLock};

use pagebackup_core::ErrorKind;
use pagebackup_redis::{RedisBackend, RedisConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, Check, Subject, async_conformance, conformance};
use rstest::rstest;
use rstest_reuse::apply;
use support::Server;

/// The cluster's nodes, started once for the test process.
fn cluster() -> Option<&'static [Server]> {
    static NODES: OnceLock<Option<Vec<Server>>> = OnceLock::new();
    NODES
        .get_or_init(|| {
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--maxmemory",
                "64mb",
            ];
            let nodes: Vec<Server> = (0..3)
                .map(|_| Server::start("redis cluster", &args))
                .collect::<Option<_>>()?;
            support::form_cluster(&nodes);
            Some(nodes)
        })
        .as_deref()
}

fn open(config: RedisConfig) -> RedisBackend {
    RedisBackend::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn config(nodes: &[Server]) -> RedisConfig {
    RedisConfig::new(nodes[1].url()).with_cluster(true)
}

#[apply(conformance)]
fn redis_cluster(#[case] check: Check) {
    let Some(nodes) = cluster() else { return };
    let (config, limited) = (config(nodes), config(nodes));
    let subject = Subject::new("redis cluster", move || Box::new(open(config.clone())))
        .with_limit(move |bytes| Box::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[apply(async_conformance)]
fn redis_cluster_async(#[case] check: AsyncCheck) {
    let Some(nodes) = cluster() else { return };
    let (config, limited) = (config(nodes), config(nodes));
    let subject = AsyncSubject::new("redis cluster (async)", move || Arc::new(open(config.clone())))
        .with_limit(move |bytes| Arc::new(open(limited.clone().with_limit(bytes))), true);
    check.run(&subject);
}

#[test]
fn a_cluster_node_opened_without_cluster_is_refused() {
    let Some(nodes) = cluster() else { return };
    let err = RedisBackend::new(RedisConfig::new(nodes[0].url())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("cluster=on"), "{err}");
}

#[test]
fn pages_spread_over_every_master() {
    let Some(nodes) = cluster() else { return };
    let b = open(config(nodes));
    let pages: Vec<Box<pagebackup_core::Page>> = (0..1024).map(|_| pagebackup_core::Page::new_boxed()).collect();
    let refs: Vec<&pagebackup_core::Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    let before = b.redis_stats().round_trips;
    pagebackup_core::BackupBackend::backup_pages(&b, &refs, 0, Default::default(), &mut handles).unwrap();
    // One pipeline per group of 64 slots, and perhaps one INFO refresh.
    let pipelines = b.redis_stats().round_trips - before;
    assert!(matches!(pipelines, 16 | 17), "{pipelines} round trips for 1024 pages");
    assert_eq!(b.redis_stats().pipelined_pages, 1024);
    // Every key of the instance names its id (the default prefix is shared).
    let pattern = format!("{}:*{}*", b.prefix(), b.instance_id());
    for node in nodes {
        let keys = node.cli(&["--scan", "--pattern", &pattern]);
        assert!(
            keys.lines().count() >= 64,
            "node {}: {} keys",
            node.port,
            keys.lines().count()
        );
    }
    drop(b);
    for node in nodes {
        assert_eq!(node.cli(&["--scan", "--pattern", &pattern]).trim(), "");
    }
}
