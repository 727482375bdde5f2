//! Where Redis is — one node, a Redis Cluster, or a primary managed by Redis Sentinel — and how
//! to reach it (TLS, password). Compiled once from the `redis` section with every mistake
//! located and no I/O beyond reading the TLS files; then each client's [`super::Redis`] link
//! dials through it.
//!
//! Decisions, for operators reading errors:
//! - `redis.tls` means TLS everywhere it applies, so URLs must say `rediss://` (a `redis://`
//!   URL beside TLS files is a contradiction, refused rather than guessed).
//! - Sentinels are reached over TLS when their URLs say `rediss://`; the primary they name is
//!   reached over TLS when the sentinels are, or when `redis.tls` is set.
//! - `redis.password` is the data nodes' password (it overrides one in a URL);
//!   `redis.sentinel.password` is the sentinels' own.

use super::conn::{open_node, Conn, Opened};
use crate::config::{Problems, RedisConfig, RedisTlsConfig, DEFAULT_REDIS_URL};
use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, RedisResult, TlsCertificates, TlsMode,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A compiled `redis` section.
pub struct Topology {
    config: RedisConfig,
    kind: Kind,
    certs: Option<TlsCertificates>,
    /// Bumped when the primary behind a sentinel changes: links dialled before are stale.
    generation: AtomicU64,
}

enum Kind {
    Single(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
    Sentinel(SentinelSpec),
}

struct SentinelSpec {
    master: String,
    nodes: Vec<ConnectionAddr>,
    db: i64,
    password: Option<String>,
    sentinel_password: Option<String>,
    /// The primary is reached over TLS.
    tls: bool,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: connection infos carry passwords and certificates.
        f.write_str(&self.describe())
    }
}

impl Topology {
    /// Compiles `config` (found at `redis`); `None` when `problems` received something.
    pub fn compile(config: &RedisConfig, problems: &mut Problems) -> Option<Topology> {
        let before = problems.len();
        let certs = config.tls.as_ref().map(|t| load_tls(t, problems));
        let tls = certs.is_some();
        let password = config.password.as_deref().filter(|p| !p.is_empty());
        let chosen: Vec<&str> = [
            ("url", config.url.is_some()),
            ("cluster", !config.cluster.is_empty()),
            ("sentinel", config.sentinel.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if let [first, .., last] = chosen.as_slice() {
            problems.push(
                format!("redis.{last}"),
                format!(
                    "set only one of url (one node), cluster (seed nodes) and sentinel; {first} is set too"
                ),
            );
            return None;
        }
        let kind = if !config.cluster.is_empty() {
            let seeds = config
                .cluster
                .iter()
                .enumerate()
                .filter_map(|(i, url)| {
                    let at = format!("redis.cluster[{i}]");
                    let info = node(url, &at, tls, password, problems)?;
                    if info.redis_settings().db() != 0 {
                        problems.push(at, "Redis Cluster has only database 0");
                    }
                    Some(info)
                })
                .collect();
            Kind::Cluster(seeds)
        } else if let Some(s) = &config.sentinel {
            if s.master.is_empty() {
                problems.push("redis.sentinel.master", "name the monitored primary");
            }
            if s.nodes.is_empty() {
                problems.push("redis.sentinel.nodes", "list at least one sentinel");
            }
            let nodes: Vec<ConnectionAddr> = s
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, url)| {
                    let at = format!("redis.sentinel.nodes[{i}]");
                    match url.as_str().into_connection_info() {
                        Ok(info) => Some(info.addr().clone()),
                        Err(e) => {
                            problems.push(at, format!("bad sentinel URL: {e}"));
                            None
                        }
                    }
                })
                .collect();
            let sentinels_tls = nodes
                .iter()
                .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
            if nodes.iter().any(|a| matches!(a, ConnectionAddr::Unix(_))) {
                problems.push("redis.sentinel.nodes", "sentinels are reached over TCP");
            }
            if sentinels_tls && nodes.iter().any(|a| matches!(a, ConnectionAddr::Tcp(..))) {
                problems.push(
                    "redis.sentinel.nodes",
                    "use rediss:// for every sentinel or for none",
                );
            }
            Kind::Sentinel(SentinelSpec {
                master: s.master.clone(),
                nodes,
                db: s.db,
                password: password.map(str::to_string),
                sentinel_password: s.password.clone().filter(|p| !p.is_empty()),
                tls: tls || sentinels_tls,
            })
        } else {
            let url = config.url.as_deref().unwrap_or(DEFAULT_REDIS_URL);
            match node(url, "redis.url", tls, password, problems) {
                Some(info) => Kind::Single(info),
                None => return None,
            }
        };
        let topology = Topology {
            config: config.clone(),
            kind,
            certs: certs.flatten(),
            generation: AtomicU64::new(0),
        };
        if problems.len() > before {
            return None;
        }
        // What the crate itself refuses (seeds that disagree on credentials, `#insecure`...).
        if let Err(e) = topology.trial_build() {
            problems.push("redis", format!("Redis client: {e}"));
            return None;
        }
        Some(topology)
    }

    /// Compiles a section that comes from no file (the command line, tests); the problems as
    /// `field: message` lines.
    pub fn from_config(config: &RedisConfig) -> Result<Topology, String> {
        let mut problems = Problems::default();
        Topology::compile(config, &mut problems).ok_or_else(|| {
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The section this topology was compiled from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// `single`, `cluster` or `sentinel`.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Single(_) => "single",
            Kind::Cluster(_) => "cluster",
            Kind::Sentinel(_) => "sentinel",
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        match &self.kind {
            Kind::Single(info) => matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
            Kind::Cluster(seeds) => seeds
                .iter()
                .any(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. })),
            Kind::Sentinel(s) => s.tls,
        }
    }

    /// Whether a connection lost means dialling again (one node, a sentinel's primary); a
    /// cluster connection reconnects its nodes and re-reads the slot map by itself.
    pub fn redials(&self) -> bool {
        !matches!(self.kind, Kind::Cluster(_))
    }

    /// For logs: where Redis is, without credentials.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Single(info) => format!("{} db {}", info.addr(), info.redis_settings().db()),
            Kind::Cluster(seeds) => format!(
                "cluster via {}",
                seeds
                    .iter()
                    .map(|s| s.addr().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Sentinel(s) => format!(
                "primary {:?} via sentinels {}",
                s.master,
                s.nodes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The current generation: links dialled in an older one must dial again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks every link dialled so far stale (the sentinels named a new primary).
    pub fn advance(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Dials one connection whose commands wait at most `response` each; `driven`: one node's
    /// connection is driven by its callers ([`super::driven`]) instead of a task of its own.
    pub async fn open(&self, response: Duration, driven: bool) -> RedisResult<Opened> {
        install_crypto_provider();
        let connect = self.config.connect_timeout;
        let single = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response));
        match &self.kind {
            Kind::Single(info) => {
                let client = self.client(info.clone())?;
                open_node(client, single, driven, connect).await
            }
            Kind::Cluster(_) => {
                let conn = self
                    .cluster_client(response)?
                    .get_async_connection()
                    .await?;
                Ok(Opened {
                    conn: Conn::Cluster(conn),
                    at: self.describe(),
                    driver: None,
                })
            }
            Kind::Sentinel(spec) => {
                let client = self.sentinel_client(spec)?.async_get_client().await?;
                open_node(client, single, driven, connect).await
            }
        }
    }

    /// A client for a pub/sub subscription: the node itself, the `attempt`-th cluster seed
    /// (a cluster broadcasts PUBLISH to every node), or the sentinels' current primary.
    pub async fn subscriber(&self, attempt: usize) -> RedisResult<(Client, String)> {
        install_crypto_provider();
        match &self.kind {
            Kind::Single(info) => Ok((self.client(info.clone())?, info.addr().to_string())),
            Kind::Cluster(seeds) => {
                let seed = &seeds[attempt % seeds.len()];
                Ok((self.client(seed.clone())?, seed.addr().to_string()))
            }
            Kind::Sentinel(spec) => {
                let client = self.sentinel_client(spec)?.async_get_client().await?;
                let at = client.get_connection_info().addr().to_string();
                Ok((client, at))
            }
        }
    }

    /// The sentinels of a `sentinel` topology, for watching failovers.
    pub fn sentinels(&self) -> Option<RedisResult<(SentinelClient, String)>> {
        match &self.kind {
            Kind::Sentinel(spec) => Some(
                self.sentinel_client(spec)
                    .map(|client| (client, spec.master.clone())),
            ),
            _ => None,
        }
    }

    fn client(&self, info: ConnectionInfo) -> RedisResult<Client> {
        match &self.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone()),
            None => Client::open(info),
        }
    }

    fn cluster_client(&self, response: Duration) -> RedisResult<ClusterClient> {
        let Kind::Cluster(seeds) = &self.kind else {
            unreachable!("only cluster topologies build cluster clients");
        };
        let mut builder = ClusterClient::builder(seeds.clone())
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(response)
            .overall_response_timeout(Some(response))
            // Redirects and TRYAGAIN are retried within the caller's bound, quickly: the
            // crate's default first wait (over a second) is longer than any Portico timeout.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(100);
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        builder.build()
    }

    fn sentinel_client(&self, spec: &SentinelSpec) -> RedisResult<SentinelClient> {
        let mut builder = SentinelClientBuilder::new(
            spec.nodes.clone(),
            &spec.master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(spec.db);
        if let Some(p) = &spec.password {
            builder = builder.set_client_to_redis_password(p);
        }
        if let Some(p) = &spec.sentinel_password {
            builder = builder.set_client_to_sentinel_password(p);
        }
        if spec.tls {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(certs) = &self.certs {
                builder = builder.set_client_to_redis_certificates(certs.clone());
                if spec
                    .nodes
                    .iter()
                    .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }))
                {
                    builder = builder.set_client_to_sentinel_certificates(certs.clone());
                }
            }
        }
        builder.build()
    }

    /// Builds the clients once without connecting, for what only the crate checks.
    fn trial_build(&self) -> RedisResult<()> {
        match &self.kind {
            Kind::Single(info) => self.client(info.clone()).map(drop),
            Kind::Cluster(_) => self.cluster_client(Duration::from_secs(1)).map(drop),
            Kind::Sentinel(spec) => self.sentinel_client(spec).map(drop),
        }
    }
}

/// Parses one data node's URL found at `at`, applying the section's password.
fn node(
    url: &str,
    at: &str,
    tls: bool,
    password: Option<&str>,
    problems: &mut Problems,
) -> Option<ConnectionInfo> {
    let info = match url.into_connection_info() {
        Ok(info) => info,
        Err(e) => {
            // The URL itself is not repeated: it may carry a password.
            problems.push(at, format!("bad Redis URL: {e}"));
            return None;
        }
    };
    if tls && !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        problems.push(at, "redis.tls is set, so this URL must use rediss://");
    }
    Some(match password {
        Some(p) => {
            let settings = info.redis_settings().clone().set_password(p);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

/// Reads and checks `redis.tls`; `None` (and problems) when a file is unusable.
fn load_tls(t: &RedisTlsConfig, problems: &mut Problems) -> Option<TlsCertificates> {
    let before = problems.len();
    let root_cert = t.ca.as_deref().and_then(|path| match std::fs::read(path) {
        Err(e) => {
            problems.push("redis.tls.ca", format!("cannot read {path:?}: {e}"));
            None
        }
        Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => Some(pem),
            Ok(_) => {
                problems.push("redis.tls.ca", format!("no PEM certificate in {path:?}"));
                None
            }
            Err(e) => {
                problems.push("redis.tls.ca", format!("{path:?} does not parse: {e}"));
                None
            }
        },
    });
    let client_tls = match (&t.cert, &t.key) {
        (None, None) => None,
        (Some(_), None) => {
            problems.push("redis.tls.key", "a client certificate needs its key");
            None
        }
        (None, Some(_)) => {
            problems.push("redis.tls.cert", "a client key needs its certificate");
            None
        }
        (Some(cert), Some(key)) => match crate::tls_files::check_pair(cert, key, SystemTime::now())
        {
            Err(e) => {
                let at = if e.is_about_key() {
                    "redis.tls.key"
                } else {
                    "redis.tls.cert"
                };
                problems.push(at, e.to_string());
                None
            }
            // Read again: check_pair proved both readable a moment ago.
            Ok(()) => match (std::fs::read(cert), std::fs::read(key)) {
                (Ok(client_cert), Ok(client_key)) => Some(ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    problems.push("redis.tls", e.to_string());
                    None
                }
            },
        },
    };
    (problems.len() == before).then_some(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// rustls needs one process-wide crypto provider; Portico uses ring (as Pingora does) and says
/// so explicitly, so a dependency enabling another provider cannot make TLS dials panic.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SentinelConfig;

    fn compile(config: RedisConfig) -> Result<Topology, Vec<String>> {
        Topology::from_config(&config).map_err(|e| e.lines().map(String::from).collect())
    }

    #[test]
    fn one_node_is_the_default_and_urls_are_checked() {
        let t = compile(RedisConfig::default()).unwrap();
        assert_eq!(
            (t.kind(), t.describe().as_str()),
            ("single", "127.0.0.1:6379 db 0")
        );
        assert!(!t.uses_tls());
        let err = compile(RedisConfig::single("http://x")).unwrap_err();
        assert!(err[0].starts_with("redis.url: bad Redis URL"), "{err:?}");
        let t = compile(RedisConfig::single("rediss://127.0.0.1:6380/2")).unwrap();
        assert!(t.uses_tls());
    }

    #[test]
    fn exactly_one_topology() {
        let err = compile(RedisConfig {
            cluster: vec!["redis://127.0.0.1:7000".into()],
            ..RedisConfig::single("redis://127.0.0.1:6379")
        })
        .unwrap_err();
        assert_eq!(
            err,
            ["redis.cluster: set only one of url (one node), cluster (seed nodes) and sentinel; url is set too"]
        );
    }

    #[test]
    fn cluster_seeds_are_located_one_by_one() {
        let err = compile(RedisConfig {
            cluster: vec![
                "redis://127.0.0.1:7000".into(),
                "nope".into(),
                "redis://127.0.0.1:7002/3".into(),
            ],
            ..RedisConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].starts_with("redis.cluster[1]: bad Redis URL"));
        assert_eq!(
            err[1],
            "redis.cluster[2]: Redis Cluster has only database 0"
        );
        let t = compile(RedisConfig {
            cluster: vec!["redis://127.0.0.1:7000".into()],
            password: Some("pw".into()),
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!((t.kind(), t.redials()), ("cluster", false));
    }

    #[test]
    fn sentinel_needs_a_primary_name_and_consistent_nodes() {
        let err = compile(RedisConfig {
            sentinel: Some(SentinelConfig {
                master: String::new(),
                nodes: vec![
                    "redis://127.0.0.1:26379".into(),
                    "rediss://127.0.0.1:26380".into(),
                ],
                ..SentinelConfig::default()
            }),
            ..RedisConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            [
                "redis.sentinel.master: name the monitored primary",
                "redis.sentinel.nodes: use rediss:// for every sentinel or for none"
            ]
        );
        let t = compile(RedisConfig {
            sentinel: Some(SentinelConfig {
                master: "mymaster".into(),
                nodes: vec!["redis://127.0.0.1:26379".into()],
                db: 1,
                password: Some(String::new()),
            }),
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!(t.kind(), "sentinel");
        assert_eq!(
            t.describe(),
            "primary \"mymaster\" via sentinels 127.0.0.1:26379"
        );
    }

    #[test]
    fn tls_files_are_checked_and_need_rediss() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_str().unwrap().to_string();
        let err = compile(RedisConfig {
            tls: Some(RedisTlsConfig {
                ca: Some(junk.clone()),
                cert: Some("/nonexistent/client.pem".into()),
                key: None,
            }),
            ..RedisConfig::single("redis://127.0.0.1:6379")
        })
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(
            err[0].starts_with("redis.tls.ca: no PEM certificate in"),
            "{err:?}"
        );
        assert_eq!(err[1], "redis.tls.key: a client certificate needs its key");
        assert_eq!(
            err[2],
            "redis.url: redis.tls is set, so this URL must use rediss://"
        );
    }

    #[test]
    fn errors_never_repeat_a_password() {
        let err = compile(RedisConfig::single("redis://:s3cret@127.0.0.1:notaport")).unwrap_err();
        assert!(!err.join(" ").contains("s3cret"), "{err:?}");
    }
}
