//! The bench's redis baselines: `baseline:redis-per-page`, one `SET` or
//! `GET` round trip per page with no pipeline, and `redis-benchmark` with a
//! pipeline as deep as the bench's batches, on the same server.

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup::{PAGE_SIZE, Page};
use redis::{Connection, ConnectionAddr, IntoConnectionInfo};

use crate::adapters::{Adapter, Error, Op, REDIS_PER_PAGE, Stored, spec_param};
use crate::report::{Mode, Role, Row, round_to, shown};

/// One round trip per page, on connections of its own (one per thread).
pub struct RedisPerPage {
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    prefix: String,
    next: AtomicU64,
}

impl RedisPerPage {
    /// The baseline on the server of the spec `redis:url=URL,...`.
    pub fn for_spec(spec: &str) -> Result<RedisPerPage, Error> {
        let url = spec_param(spec, "url").ok_or("a redis spec needs url=")?;
        // A TLS spec's CA and client certificate, as the backend reads them.
        let read = |param: &str| {
            spec_param(spec, param)
                .map(|path| std::fs::read(path).map_err(|e| format!("{param}: cannot read {path}: {e}")))
                .transpose()
        };
        let (ca, cert, key) = (read("tls_ca")?, read("tls_cert")?, read("tls_key")?);
        let client = if ca.is_some() || cert.is_some() {
            let client_tls = cert.zip(key).map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            });
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls,
                    root_cert: ca,
                },
            )?
        } else {
            redis::Client::open(url)?
        };
        let first = client.get_connection()?;
        Ok(RedisPerPage {
            client,
            idle: Mutex::new(vec![first]),
            prefix: format!("pagebackup-bench:{}", std::process::id()),
            next: AtomicU64::new(0),
        })
    }

    /// Runs `f` on an idle connection (or a new one), then keeps it for the next call.
    fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, Error> {
        let idle = self.idle.lock().map_err(|_| "a bench thread panicked")?.pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.client.get_connection()?,
        };
        let out = f(&mut conn)?;
        self.idle.lock().map_err(|_| "a bench thread panicked")?.push(conn);
        Ok(out)
    }

    fn key(&self, n: u64) -> String {
        format!("{}:{n}", self.prefix)
    }

    fn slots(stored: &Stored) -> Result<(u64, usize), Error> {
        match *stored {
            Stored::Slots { first, count } => Ok((first, count)),
            _ => Err("not a redis-per-page batch".into()),
        }
    }
}

impl Adapter for RedisPerPage {
    fn name(&self) -> &str {
        REDIS_PER_PAGE
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], _: u64) -> Result<Stored, Error> {
        let first = self.next.fetch_add(pages.len() as u64, Ordering::Relaxed);
        self.with_connection(|conn| {
            for (k, page) in (first..).zip(pages) {
                redis::cmd("SET").arg(self.key(k)).arg(&page.0[..]).exec(conn)?;
            }
            Ok(())
        })?;
        Ok(Stored::Slots {
            first,
            count: pages.len(),
        })
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let (first, _) = Self::slots(stored)?;
        self.with_connection(|conn| {
            for (k, dst) in (first..).zip(dsts.iter_mut()) {
                let value: Vec<u8> = redis::cmd("GET").arg(self.key(k)).query(conn)?;
                if value.len() != PAGE_SIZE {
                    return Err((redis::ErrorKind::UnexpectedReturnType, "not a page").into());
                }
                dst.0.copy_from_slice(&value);
            }
            Ok(())
        })
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        let (first, count) = Self::slots(&stored)?;
        self.with_connection(|conn| {
            for k in first..first + count as u64 {
                redis::cmd("DEL").arg(self.key(k)).exec(conn)?;
            }
            Ok(())
        })
    }
    fn footprint(&self) -> Option<u64> {
        None
    }
}

/// `redis-benchmark -c 1 -P depth -d 4096` SET and GET on the server of
/// the spec `redis:url=URL,...` (with `--tls` and the spec's `tls_ca`,
/// `tls_cert` and `tls_key` for a `rediss://` URL): GB/s of values for each. With `keys`
/// (`-r`), the commands spread over that many keys as the bench's do;
/// without, every SET overwrites one key and every GET reads it.
pub fn redis_benchmark(spec: &str, depth: usize, requests: usize, keys: Option<usize>) -> Result<(f64, f64), Error> {
    let info = spec_param(spec, "url")
        .ok_or("a redis spec needs url=")?
        .into_connection_info()?;
    let (host, port, tls) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host, port, false),
        ConnectionAddr::TcpTls { host, port, .. } => (host, port, true),
        _ => return Err("redis-benchmark runs on TCP servers only".into()),
    };
    let mut command = Command::new("redis-benchmark");
    if tls {
        // The server's TLS as the backend speaks it: the spec's CA and
        // client certificate.
        command.arg("--tls");
        for (param, flag) in [("tls_ca", "--cacert"), ("tls_cert", "--cert"), ("tls_key", "--key")] {
            if let Some(path) = spec_param(spec, param) {
                command.args([flag, path]);
            }
        }
    }
    command.args([
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-c",
        "1",
        "-d",
        "4096",
        "-t",
        "set,get",
    ]);
    command.args(["-P", &depth.to_string(), "-n", &requests.to_string(), "--csv"]);
    if let Some(keys) = keys {
        command.args(["-r", &keys.to_string()]);
    }
    if let Some(password) = info.redis_settings().password() {
        command.args(["-a", password]);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = |test: &str| -> Result<f64, Error> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("\"{test}\",\"")))
            .and_then(|rest| rest.split('"').next()?.parse::<f64>().ok())
            .ok_or_else(|| format!("no {test} figure in redis-benchmark's output: {text}").into())
    };
    Ok((
        rps("SET")? * PAGE_SIZE as f64 / 1e9,
        rps("GET")? * PAGE_SIZE as f64 / 1e9,
    ))
}

/// For each redis spec of `specs`, its one-thread batch figures (from the
/// plain rows `plain`) against `redis-benchmark` with pipelines of `batch`
/// on the same server, over as many keys as the corpus has `pages`, and on
/// one key: a baseline row per reference and op, and a backend row per
/// reference and op with its speed against it.
pub fn comparison(specs: &[String], plain: &[Row], batch: usize, pages: usize) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    // A TLS server (`rediss://`) is measured against `redis-benchmark
    // --tls` on it: the server's own TLS throughput, the floor its rows
    // are judged against.
    for spec in specs.iter().filter(|s| s.starts_with("redis:")) {
        let tls = if spec.contains("url=rediss://") { "--tls " } else { "" };
        let name = shown(spec);
        let ours = |op: Op| {
            plain
                .iter()
                .find(|r| r.backend == name && r.op == Some(op) && r.batch == Some(batch) && r.threads == Some(1))
                .and_then(|r| r.gbps)
                .unwrap_or(0.0)
        };
        for (keys, what) in [(Some(pages), format!("-r {pages}")), (None, "one key".to_string())] {
            let (set, get) = redis_benchmark(spec, batch, 200_000, keys)?;
            let reference = format!("redis-benchmark {tls}-c 1 -P {batch} -d 4096 ({what})");
            for (op, theirs) in [(Op::Backup, set), (Op::Restore, get)] {
                let mut base = Row::new(&reference, Role::Baseline, Mode::Redis);
                base.op = Some(op);
                base.batch = Some(batch);
                base.threads = Some(1);
                base.gbps = Some(round_to(theirs, 3));
                let mut row = Row::new(spec, Role::Backend, Mode::Redis);
                row.op = Some(op);
                row.batch = Some(batch);
                row.threads = Some(1);
                row.gbps = Some(round_to(ours(op), 3));
                row.vs = Some(base.backend.clone());
                row.speed_ratio = (theirs > 0.0).then(|| round_to(ours(op) / theirs, 3));
                rows.extend([base, row]);
            }
        }
    }
    Ok(rows)
}
