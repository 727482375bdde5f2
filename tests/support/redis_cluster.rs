//! A real Redis Cluster on loopback, owned by one test: `masters` primaries and as many
//! replicas each as asked, made with `redis-cli --cluster create`, ready when every node says
//! `cluster_state:ok` and every replica is linked. Nodes can be killed like a crashed host.

use super::{free_port, wait_until};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `redis-server --cluster-enabled yes` child.
pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

/// A running cluster.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters × (1 + replicas)` nodes and joins them into a cluster.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let (port, bus) = (free_port(), free_port());
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .arg("--cluster-config-file")
                .arg(&conf)
                // Failover in about two seconds after a master dies.
                .args(["--cluster-node-timeout", "1000"])
                .args(["--repl-diskless-sync-delay", "0", "--protected-mode", "no"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            nodes.push(ClusterNode {
                port,
                child: Some(child),
            });
        }
        let cluster = Self { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_until(Duration::from_secs(10), "a node to start", || {
                node_cmd(node.port, &["PING"]).is_ok()
            });
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed");
        assert!(out.success(), "redis-cli --cluster create failed");
        wait_until(Duration::from_secs(20), "the cluster to form", || {
            cluster.live().all(|n| cluster_ok(n.port))
                && cluster.live().all(|n| {
                    let repl = info(n.port, "replication");
                    repl.get("role").map(String::as_str) == Some("master")
                        || repl.get("master_link_status").map(String::as_str) == Some("up")
                })
        });
        cluster
    }

    /// Seed URLs for `redis.cluster` (every node).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The `cluster: [...]` YAML flow list.
    pub fn seeds_yaml(&self) -> String {
        let quoted: Vec<String> = self.seeds().iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn live(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Runs `redis-cli -c` (following redirections) on a live node; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let node = self.live().next().expect("a live node");
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &node.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Registers `id` at `addr` for `service` with the protocol's three commands, the way an
    /// operator would with `redis-cli -c`.
    pub fn register(&self, service: &str, id: &str, addr: &str) {
        let hash = format!("portico:registry:{{{service}}}:instance:{id}");
        let set = format!("portico:registry:{{{service}}}:instances");
        self.cli(&["HSET", &hash, "addr", addr, "weight", "1"]);
        let time = self.cli(&["TIME"]);
        let secs: u64 = time.lines().next().unwrap().trim().parse().unwrap();
        let ms = (secs * 1000 + 999).to_string();
        self.cli(&["ZADD", &set, &ms, id]);
        self.cli(&["PUBLISH", "portico:registry:events", service]);
    }

    /// The port of the master serving `key`'s hash slot.
    pub fn master_of(&self, key: &str) -> u16 {
        self.try_master_of(key)
            .unwrap_or_else(|| panic!("no healthy master serves {key}"))
    }

    /// The port of the healthy master serving `key`'s hash slot, if any.
    pub fn try_master_of(&self, key: &str) -> Option<u16> {
        let slot: u16 = self.cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap();
        let nodes = self.cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap();
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
                    if (lo..=hi).contains(&slot) {
                        return Some(port);
                    }
                }
            }
        }
        None
    }

    /// SIGKILLs the node on `port` (no goodbye to clients or to the cluster).
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until a live node other than `dead` serves `key` and the cluster is ok again.
    pub fn wait_failover(&self, key: &str, dead: u16, timeout: Duration) -> u16 {
        let mut master = dead;
        wait_until(timeout, "a replica to take over", || {
            master = self.try_master_of(key).unwrap_or(dead);
            master != dead && self.live().all(|n| cluster_ok(n.port))
        });
        master
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// One command on one node, without following redirections.
pub fn node_cmd(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

/// Whether one node says `cluster_state:ok`.
fn cluster_ok(port: u16) -> bool {
    let text: String = node_cmd(port, &["CLUSTER", "INFO"])
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default();
    text.lines().any(|l| l.trim() == "cluster_state:ok")
}

/// `INFO section` of one node as a map (empty when the node does not answer).
pub fn info(port: u16, section: &str) -> HashMap<String, String> {
    let text: String = node_cmd(port, &["INFO", section])
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}
