//! A real Sentinel-managed Redis on loopback, owned by one test: a password-protected primary,
//! one replica, and `count` sentinels (`redis-server conf --sentinel`, each with its own
//! writable config file) that fail over one second after the primary stops answering.

use super::redis::{RedisOptions, RedisServer};
use super::{free_port, wait_until};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The monitored primary's name.
pub const MASTER: &str = "mymaster";
/// The data nodes' password.
pub const PASSWORD: &str = "s3cret";

/// Primary, replica and sentinels.
pub struct RedisSentinel {
    /// `[first primary, first replica]`; after a failover their roles are swapped.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts the primary, its replica and `count` sentinels, and waits until the sentinels
    /// know the replica and each other.
    pub fn start(count: usize) -> Self {
        let options = RedisOptions {
            password: Some(PASSWORD.into()),
            ..RedisOptions::default()
        };
        let primary = RedisServer::start_with(options.clone());
        let replica = RedisServer::start_with(RedisOptions {
            extra: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ],
            ..options
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        for _ in 0..count {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} {quorum}\n\
                     sentinel auth-pass {MASTER} {PASSWORD}\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.path().display(),
                    primary = primary.port,
                    quorum = count.div_ceil(2),
                ),
            )
            .expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            sentinels.push((port, child));
        }
        let set = Self {
            servers: vec![primary, replica],
            sentinels,
            _dir: dir,
        };
        wait_until(Duration::from_secs(20), "the sentinels to agree", || {
            set.sentinels.iter().all(|(port, _)| {
                let m = set.master_info(*port);
                m.get("num-slaves").map(String::as_str) == Some("1")
                    && m.get("num-other-sentinels") == Some(&(count - 1).to_string())
            })
        });
        set
    }

    /// The `sentinel:` section body's `nodes` YAML list.
    pub fn nodes_yaml(&self) -> String {
        let urls: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("\"redis://127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// The port the sentinels name as primary (asked of the first sentinel that answers).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _)| {
            let reply = super::redis_cluster::node_cmd(
                *port,
                &["SENTINEL", "get-master-addr-by-name", MASTER],
            )
            .ok()?;
            let (_, p): (String, String) = redis::from_redis_value(reply).ok()?;
            p.parse().ok()
        })
    }

    /// The server that is primary now.
    pub fn primary(&self) -> &RedisServer {
        let port = self.primary_port().expect("a primary");
        self.servers.iter().find(|s| s.port == port).unwrap()
    }

    /// SIGKILLs the primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a primary");
        let server = self.servers.iter_mut().find(|s| s.port == port).unwrap();
        server.kill();
        port
    }

    /// Waits until the sentinels name a primary other than `old` and it accepts writes.
    pub fn wait_failover(&self, old: u16, timeout: Duration) -> u16 {
        let mut now = old;
        wait_until(timeout, "the sentinels to promote the replica", || {
            now = self.primary_port().unwrap_or(old);
            now != old
                && self
                    .servers
                    .iter()
                    .find(|s| s.port == now)
                    .and_then(|s| s.try_cmd(&["SET", "portico:failover-probe", "1"]).ok())
                    .is_some()
        });
        now
    }

    fn master_info(&self, sentinel: u16) -> HashMap<String, String> {
        let reply = super::redis_cluster::node_cmd(sentinel, &["SENTINEL", "MASTER", MASTER]);
        let flat: Vec<String> = reply
            .ok()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        flat.chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
