//! A real `redis-server` on a free loopback port, owned by one test: started empty without
//! persistence, killable and restartable on the same port; optionally TLS-only (client
//! certificates required), password-protected, or with extra arguments (a replica).

use super::free_port;
use super::tls::Pki;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a [`RedisServer`] runs.
#[derive(Default, Clone)]
pub struct RedisOptions {
    /// Serve TLS only (on the port), requiring client certificates from this CA.
    pub tls: Option<Arc<Pki>>,
    /// `requirepass` (and `masterauth`, for replicas).
    pub password: Option<String>,
    /// More `redis-server` arguments.
    pub extra: Vec<String>,
}

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    options: RedisOptions,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh server on a free port.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a fresh server on a free port, run as `options` say.
    pub fn start_with(options: RedisOptions) -> Self {
        let mut server = Self {
            port: free_port(),
            options,
            child: None,
        };
        server.restart();
        server
    }

    /// A handle on a server another handle owns (it is not stopped when this one drops).
    pub fn attach(port: u16) -> Self {
        Self {
            port,
            options: RedisOptions::default(),
            child: None,
        }
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` with TLS; with the password when there is one).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port, with no data.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.options.tls {
            None => command.args(["--port", &port]),
            Some(pki) => command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &pki.server_cert])
                .args(["--tls-key-file", &pki.server_key])
                .args(["--tls-ca-cert-file", &pki.ca])
                .args(["--tls-auth-clients", "yes"]),
        };
        if let Some(p) = &self.options.password {
            command.args(["--requirepass", p, "--masterauth", p]);
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(&self.options.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_cmd(&["PING"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Sends `sig` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .expect("kill");
        }
    }

    /// Stops the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        self.signal("CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn try_cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = match &self.options.tls {
            Some(pki) => redis::Client::build_with_tls(self.url(), pki.redis_certificates())?,
            None => redis::Client::open(self.url())?,
        };
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// Runs one command, as `redis-cli` would.
    pub fn cmd(&self, args: &[&str]) -> redis::Value {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Registers `id` at `addr` for `service` with the three protocol commands.
    pub fn register(&self, service: &str, id: &str, addr: &str) {
        let hash = format!("portico:registry:{{{service}}}:instance:{id}");
        self.cmd(&["HSET", &hash, "addr", addr, "weight", "1"]);
        self.heartbeat(service, id);
        self.cmd(&["PUBLISH", "portico:registry:events", service]);
    }

    /// Refreshes `id`'s heartbeat (ZADD with now).
    pub fn heartbeat(&self, service: &str, id: &str) {
        self.try_heartbeat(service, id)
            .unwrap_or_else(|e| panic!("heartbeat: {e}"));
    }

    /// Refreshes `id`'s heartbeat, reporting failure instead of panicking.
    pub fn try_heartbeat(&self, service: &str, id: &str) -> redis::RedisResult<()> {
        let set = format!("portico:registry:{{{service}}}:instances");
        let now: Vec<u64> = redis::from_redis_value(self.try_cmd(&["TIME"])?)?;
        let ms = now[0] * 1000 + now[1] / 1000;
        self.try_cmd(&["ZADD", &set, &ms.to_string(), id])
            .map(|_| ())
    }

    /// Deregisters `id`: ZREM + DEL, and PUBLISH when `announce`.
    pub fn deregister(&self, service: &str, id: &str, announce: bool) {
        let set = format!("portico:registry:{{{service}}}:instances");
        let hash = format!("portico:registry:{{{service}}}:instance:{id}");
        self.cmd(&["ZREM", &set, id]);
        self.cmd(&["DEL", &hash]);
        if announce {
            self.cmd(&["PUBLISH", "portico:registry:events", service]);
        }
    }

    /// Members of a service's sorted set.
    pub fn members(&self, service: &str) -> Vec<String> {
        let set = format!("portico:registry:{{{service}}}:instances");
        redis::from_redis_value(self.cmd(&["ZRANGE", &set, "0", "-1"])).unwrap()
    }
}

impl Drop for RedisServer {
    // An attached handle has no child and stops nothing.
    fn drop(&mut self) {
        self.kill();
    }
}
