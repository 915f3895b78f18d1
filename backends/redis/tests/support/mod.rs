//! Local redis-server processes for the tests: on free loopback ports, in
//! temporary directories, stopped and removed when dropped or when the test
//! process exits (each runs under a shell that does so once its stdin closes).
#![allow(dead_code, reason = "each test file uses part of the support")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pagebackup_core::{BackupBackend, BackupFlags, BatchError, Handle, Page};
use pagebackup_redis::RedisBackend;
use pagebackup_testkit::{PageClass, PageSpec};

/// The environment variable that names a server the tests may share.
pub const URL_VAR: &str = "PAGEBACKUP_REDIS_URL";

/// Options every test server gets, as CI's.
pub const BASE: &[&str] = &["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"];

/// A redis-server the test started.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    guard: Option<Child>,
}

/// Whether redis-server can be run here; prints a `SKIP:` line if not.
pub fn available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("SKIP: {test}: redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// Whether redis-server was built with TLS; prints a `SKIP:` line if not.
/// A server given a certificate it cannot load says it failed to configure
/// TLS only when it has TLS to configure.
pub fn tls_available(test: &str) -> bool {
    if !available(test) {
        return false;
    }
    let out = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", "1", "--save", ""])
        .args(["--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent"])
        .output()
        .expect("redis-server runs");
    let found = String::from_utf8_lossy(&out.stdout).contains("configure TLS");
    if !found {
        println!("SKIP: {test}: this redis-server was built without TLS");
    }
    found
}

/// Makes a cluster of `nodes` (started with `--cluster-enabled yes`), one
/// master each, with `redis-cli --cluster create` on their plain ports, and
/// waits until every node says the cluster is ok.
pub fn form_cluster(nodes: &[Server]) {
    let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    nodes[0].cli(&create);
    let start = Instant::now();
    while !nodes
        .iter()
        .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// Starts redis-server with `args` after [`BASE`], or `None` (having
    /// printed why) if it is not installed.
    pub fn start(test: &str, args: &[&str]) -> Option<Server> {
        if !available(test) {
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pagebackup-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let args = BASE.iter().chain(args).map(|s| s.to_string()).collect();
        let mut server = Server {
            port,
            dir,
            args,
            guard: None,
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            // Once stdin closes (the test process ended), kill the server and
            // remove its directory, unless told to keep it for a restart.
            .arg("dir=$1; shift; redis-server \"$@\" & pid=$!; read line; kill -9 $pid; wait $pid; [ \"$line\" = keep ] || rm -rf \"$dir\"")
            .arg("sh")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        self.guard = Some(command.spawn().expect("sh runs"));
        wait_for_ping(self.port);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against the server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// The server's process id.
    pub fn pid(&self) -> String {
        self.cli(&["INFO", "server"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:").map(str::to_string))
            .expect("INFO server gives the process id")
    }

    /// Stops the server with SIGSTOP (it keeps its connections and answers
    /// nothing) until the returned guard is dropped, which sends SIGCONT.
    pub fn stop(&self) -> Stopped {
        let pid = self.pid();
        Command::new("kill").args(["-STOP", &pid]).status().expect("kill runs");
        Stopped { pid }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let pid = self.pid();
        Command::new("kill").args(["-9", &pid]).status().expect("kill runs");
        if let Some(mut guard) = self.guard.take() {
            if let Some(mut stdin) = guard.stdin.take() {
                stdin.write_all(b"keep\n").expect("the guard shell reads its stdin");
            }
            let _ = guard.wait();
        }
    }

    /// Starts the server again on the same port, directory and options.
    pub fn restart(&mut self) {
        self.launch();
    }
}

/// A server stopped by [`Server::stop`]; dropping this resumes it.
pub struct Stopped {
    pid: String,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid]).status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `redis-cli -p port args` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until the server on `port` answers PING (with PONG, or with
/// NOAUTH when it wants a password).
pub fn wait_for_ping(port: u16) {
    let start = Instant::now();
    loop {
        let reply = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"PING\r\n")?;
            let mut buf = [0; 5];
            s.read_exact(&mut buf)?;
            Ok(buf)
        });
        if reply.is_ok_and(|b| &b == b"+PONG" || &b == b"-NOAU") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The URL of a server the tests may share: `PAGEBACKUP_REDIS_URL`, or a
/// server started once for this test process. `None` (with a `SKIP:` line)
/// if there is neither.
pub fn shared_url(test: &str) -> Option<String> {
    static SHARED: std::sync::OnceLock<Option<(String, std::sync::Mutex<Server>)>> = std::sync::OnceLock::new();
    if let Ok(url) = std::env::var(URL_VAR) {
        return Some(url);
    }
    let shared = SHARED
        .get_or_init(|| Server::start(test, &["--maxmemory", "256mb"]).map(|s| (s.url(), std::sync::Mutex::new(s))));
    shared.as_ref().map(|(url, _)| url.clone())
}

/// The seed of the pages the tests back up.
const SEED: u64 = 0xfa11;

/// `n` random pages from index `from`, with their specs.
pub fn pages(from: u64, n: u64) -> Vec<(PageSpec, Box<Page>)> {
    (from..from + n)
        .map(|i| {
            let spec = PageSpec::new(SEED, i, PageClass::Random);
            (spec, spec.page())
        })
        .collect()
}

/// Backs up `n` pages from index `from` in one batch: the handles and specs
/// of those that were backed up, and the batch's error.
pub fn backup_batch(b: &RedisBackend, from: u64, n: u64) -> (Vec<(Handle, PageSpec)>, Option<BatchError>) {
    let batch = pages(from, n);
    let refs: Vec<&Page> = batch.iter().map(|(_, p)| &**p).collect();
    let mut handles = Vec::new();
    let result = BackupBackend::backup_pages(b, &refs, from, BackupFlags::NONE, &mut handles);
    if let Err(e) = &result {
        assert_eq!(handles.len(), e.completed, "one handle per completed page: {e}");
    }
    let done = handles.into_iter().zip(batch.iter().map(|&(s, _)| s)).collect();
    (done, result.err())
}

/// Restores every page of `live` in one batch and checks its bytes.
pub fn verify(b: &RedisBackend, live: &[(Handle, PageSpec)]) {
    let handles: Vec<Handle> = live.iter().map(|&(h, _)| h).collect();
    let mut dsts = Page::new_boxed_slice(live.len());
    let mut refs: Vec<&mut Page> = dsts.iter_mut().collect();
    BackupBackend::copy_pages(b, &handles, &mut refs, None).unwrap_or_else(|e| panic!("restore: {e}"));
    for (dst, (_, spec)) in dsts.iter().zip(live) {
        spec.verify(dst).unwrap_or_else(|m| panic!("wrong bytes: {m}"));
    }
}

/// The number of keys on the server.
pub fn dbsize(server: &Server) -> u64 {
    server.cli(&["DBSIZE"]).trim().parse().expect("DBSIZE is a number")
}

/// Polls `cond` for up to 5 s (cleanups of failed backups run in the background).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
