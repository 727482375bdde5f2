//! The `redis` section: where Redis is (exactly one of `url`, `cluster`, `sentinel`), how to
//! reach it (TLS, password) and how long Portico waits for it. What the values mean — URLs
//! that parse, TLS files that load, one topology — is `redis_client::Topology::compile`'s
//! business.

use super::units::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The address used when the section names no topology.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// Where Redis is and how long Portico waits for it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// One node: `redis://[user:pass@]host:port[/db]`, `rediss://` for TLS, or `unix:///path`.
    /// Absent together with `cluster` and `sentinel` = `redis://127.0.0.1:6379/0`.
    pub url: Option<String>,
    /// Redis Cluster seed nodes (`redis://host:port` or `rediss://`); the rest of the cluster
    /// is discovered from them.
    pub cluster: Vec<String>,
    /// A primary managed by Redis Sentinel.
    pub sentinel: Option<SentinelConfig>,
    /// Certificates for `rediss://` (any topology); absent = the system's roots, no client
    /// certificate.
    pub tls: Option<RedisTlsConfig>,
    /// Password of the data nodes (`AUTH`); empty = none. Overrides a password in the URLs.
    pub password: Option<String>,
    /// Prepended to every key and channel Portico uses.
    pub prefix: String,
    /// Bound on one request-path command (rate limits); the registry uses `registry.timeout`.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Gateways sharing this Redis, fixed by the operator: while Redis is unreachable, each
    /// enforces `limit / replicas` of a Redis-stored rule locally. Absent = the live gateways
    /// of the membership list (the last count seen while Redis is away).
    pub replicas: Option<u32>,
    /// How long a gateway stays in the membership list without a heartbeat (it heartbeats
    /// every quarter of this).
    #[serde(with = "duration")]
    pub gateway_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster: Vec::new(),
            sentinel: None,
            tls: None,
            password: None,
            prefix: "portico:".into(),
            command_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            replicas: None,
            gateway_ttl: Duration::from_secs(10),
        }
    }
}

impl RedisConfig {
    /// A single-node section for `url` (tests, benches, `portico register --redis`).
    pub fn single(url: &str) -> Self {
        Self {
            url: Some(url.to_string()),
            ..Self::default()
        }
    }
}

/// `redis.sentinel`: the sentinels watching a primary.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// The monitored primary's name (`sentinel monitor NAME ...`).
    pub master: String,
    /// Sentinel addresses: `redis://host:port`, or `rediss://` when the sentinels speak TLS.
    pub nodes: Vec<String>,
    /// Database on the primary.
    pub db: i64,
    /// Password of the sentinels themselves (`requirepass` in sentinel.conf); empty = none.
    pub password: Option<String>,
}

/// `redis.tls`: PEM files for TLS to Redis.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// CA bundle that signed the servers' certificates; absent = the system's roots.
    pub ca: Option<String>,
    /// Client certificate chain, for servers that require one (`tls-auth-clients yes`).
    pub cert: Option<String>,
    /// The client certificate's private key.
    pub key: Option<String>,
}
