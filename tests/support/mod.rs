//! Shared test helpers: free ports, echo upstreams, the real `portico` binary on a temp config,
//! and (in `client`) a minimal HTTP/1.1 client over a plain TCP socket.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use portico::echo::EchoServer;

pub mod client;
pub mod keepalive;
pub mod otlp;
pub mod load;
pub mod redis;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod scripted;
pub mod tls;
pub use self::client::*;
#[allow(unused_imports)]
pub use self::load::{KeepAliveLoad, SteadyLoad};
#[allow(unused_imports)]
pub use self::redis::RedisServer;

/// Echo upstreams named `names`, one each: `let [a, b] = echoes(["a", "b"]);`.
pub fn echoes<const N: usize>(names: [&str; N]) -> [EchoServer; N] {
    names.map(|n| EchoServer::start(n).expect("echo upstream"))
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// `portico register --config FILE` for `service` as `id` at `addr` (TTL 3 s), running until
/// [`stop_registrar`].
pub fn start_registrar(
    config: &std::path::Path,
    service: &str,
    id: &str,
    addr: SocketAddr,
) -> Process {
    Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["register", "--config"])
            .arg(config)
            .args(["--service", service, "--id", id, "--ttl", "3s"])
            .args(["--addr", &addr.to_string()])
            .env("RUST_LOG", "warn"),
    )
}

/// SIGTERMs a registrar and checks that it deregistered and exited 0.
pub fn stop_registrar(mut agent: Process) {
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill");
    assert_eq!(
        agent.exit_code(Duration::from_secs(5)),
        Some(0),
        "the registrar exits cleanly"
    );
}

/// A port nothing listens on right now, for a process the test starts next.
///
/// Taken from 10000-31999, below Linux's ephemeral range (32768+): a port from `bind(0)` is
/// handed back to the kernel, which may give it to the next `bind(0)` — an echo upstream of a
/// test running in parallel — before the gateway binds it, and the test then talks to the
/// wrong server. Ephemeral binds never land here, and a per-process counter keeps this
/// process's tests apart.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + start.wrapping_add(n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// An upstream that accepts connections and never answers (nor reads) for at most 30 s:
/// every attempt on it ends in a read timeout. Returns its address and its accept count.
pub fn black_hole() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((stream, _)) = listener.accept() {
                count.fetch_add(1, Ordering::Relaxed);
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (addr, accepted)
}

/// A child process that is killed and reaped when dropped — also when an assertion fails, so a
/// failing test never leaves a `portico` behind.
pub struct Process(pub Child);

impl Process {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("spawn"))
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `portico` process on a temporary configuration file.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
    /// Where stderr goes, when the test reads the log.
    log: Option<PathBuf>,
}

impl Gateway {
    /// Starts the binary with `body` (routes, services...) under a generated `server` section.
    /// `server_extra` lines are added inside `server:` (indented by the caller with two spaces).
    pub fn start(body: &str) -> Self {
        Self::start_with_server(body, "")
    }

    /// Like [`Gateway::start`], with extra `server:` keys.
    pub fn start_with_server(body: &str, server_extra: &str) -> Self {
        Self::start_full(body, server_extra, &[])
    }

    /// Like [`Gateway::start`], with environment variables for the process.
    pub fn start_with_env(body: &str, env: &[(&str, &str)]) -> Self {
        Self::start_full(body, "", env)
    }

    /// With extra `server:` keys and environment variables.
    pub fn start_full(body: &str, server_extra: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(body, server_extra, env, false)
    }

    /// Like [`Gateway::start_with_server`], with the log (stderr) kept for [`Gateway::log`].
    pub fn start_logged(body: &str, server_extra: &str) -> Self {
        Self::spawn(body, server_extra, &[], true)
    }

    fn spawn(body: &str, server_extra: &str, env: &[(&str, &str)], keep_log: bool) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("portico.yaml");
        let text = Self::config_text(addr, admin, server_extra, body);
        std::fs::write(&config_path, text).expect("write config");
        let log = keep_log.then(|| dir.path().join("stderr.log"));
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn portico");
        let gw = Self {
            addr,
            admin,
            config_path,
            _dir: dir,
            child,
            log,
        };
        gw.wait_ready();
        gw
    }

    /// What the gateway logged so far (started with [`Gateway::start_logged`]).
    pub fn log(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The full file for listeners `addr`/`admin` and `body`.
    pub fn config_text(
        addr: SocketAddr,
        admin: SocketAddr,
        server_extra: &str,
        body: &str,
    ) -> String {
        let grace = if server_extra.contains("grace_period") {
            ""
        } else {
            "  grace_period: 0s\n"
        };
        let threads = if server_extra.contains("threads:") {
            ""
        } else {
            "  threads: 1\n"
        };
        format!(
            "server:\n  listen: [\"{addr}\"]\n{threads}  admin: {{listen: \"{admin}\"}}\n{grace}{server_extra}\n{body}"
        )
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(self.admin).is_ok() && TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "portico did not start listening on {} / {}",
            self.addr, self.admin
        );
    }

    /// GET through the proxy.
    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path, &[])
    }

    /// Request to the admin listener.
    pub fn admin(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.admin, method, path, headers, "")
    }

    /// The whole `/metrics` exposition.
    pub fn metrics_text(&self) -> String {
        self.admin("GET", "/metrics", &[]).body
    }

    /// The value of one metric sample, e.g. `portico_http_requests_total{code="200",...}`;
    /// labels must be given in the exposition's (alphabetical) order. A series that is not
    /// exported fails the test (naming the family's series that are), so a misspelt or missing
    /// series never reads as zero; [`Gateway::metric_if_exported`] is for series that may
    /// legitimately be absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text();
        sample(&text, series).unwrap_or_else(|| {
            let family = series.split('{').next().unwrap_or(series);
            let known: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(family) && !l.starts_with('#'))
                .collect();
            panic!("{series} is not exported; the family has: {known:#?}")
        })
    }

    /// The sum of a family's samples whose labels include every `matchers` pair (`k="v"`),
    /// as `sum(family{matchers})` would give; panics when no sample matches.
    pub fn metric_sum(&self, family: &str, matchers: &[&str]) -> f64 {
        let text = self.metrics_text();
        let values: Vec<f64> = text
            .lines()
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                (name == family && matchers.iter().all(|m| labels.contains(m)))
                    .then(|| value.parse().ok())?
            })
            .collect();
        assert!(
            !values.is_empty(),
            "no sample of {family} with {matchers:?}"
        );
        values.iter().sum()
    }

    /// The value of one metric sample, or `None` when the series is not exported.
    pub fn metric_if_exported(&self, series: &str) -> Option<f64> {
        sample(&self.metrics_text(), series)
    }

    /// Waits up to `timeout` for `cond`, polling.
    pub fn eventually(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Threads of the process named `name` (Linux `/proc/PID/task/*/comm`).
    pub fn threads_named(&self, name: &str) -> usize {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
            .count()
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}", self.child.id())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
    }
}

/// The value of `series` in an exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
