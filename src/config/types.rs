//! The YAML schema as serde types. Defaults live here, in one place; what the values mean (and
//! whether they make sense) is the compile step's business (`snapshot::compile_file`).

pub use super::balancing::*;
pub use super::edge::*;
pub use super::identity::*;
pub use super::limits::*;
pub use super::mirror::*;
pub use super::observability::*;
pub use super::rate_limit::*;
pub use super::redis::*;
pub use super::split::*;
pub use super::units::{byte_size, duration, opt_byte_size, opt_duration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Optional Redis (one node, a Cluster or a Sentinel-managed primary) shared by the
    /// service registry, Redis-stored rate limits, events and gateway membership. Read at start
    /// only: changing it needs a restart.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Named rate-limit rules, attached to routes by name.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
    /// Named CORS policies, attached to routes by name.
    #[serde(default)]
    pub cors: BTreeMap<String, CorsConfig>,
    /// Named IP allow/deny policies, attached to routes by name.
    #[serde(default)]
    pub ip_rules: BTreeMap<String, IpRuleConfig>,
    /// The Redis deny set shared by gateways (used by `ip_rules` with `deny_from_redis`).
    #[serde(default)]
    pub ip_deny: IpDenyConfig,
    /// Static consumers: who credentials belong to.
    #[serde(default)]
    pub consumers: BTreeMap<String, ConsumerConfig>,
    /// Named authentication policies, attached to routes by name.
    #[serde(default)]
    pub auth: BTreeMap<String, AuthConfig>,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Business KPIs counted from traffic.
    #[serde(default)]
    pub kpis: Vec<KpiConfig>,
    /// Business events (KPI matches) published to a Redis Stream.
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// OpenTelemetry tracing; absent = off. Read at start only.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    #[serde(default)]
    pub access_log: AccessLogConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// Listeners and process settings; changing them needs a restart or binary upgrade.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: Vec<String>,
    /// TLS listeners; HTTP/1.1 and HTTP/2 are offered through ALPN.
    pub tls: Vec<TlsListenerConfig>,
    /// Accept HTTP/2 without TLS (prior knowledge) on the plain listeners.
    pub h2c: bool,
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones (tokio's multi-thread scheduler).
    /// Off by default: each thread then runs its own single-threaded runtime (Pingora's no-steal
    /// mode), 3-5% less CPU per request in `benches/load.py`, and a connection stays on the
    /// thread it was placed on (at random), as in nginx or Envoy.
    pub work_stealing: bool,
    pub admin: AdminConfig,
    pub trusted_proxies: Vec<String>,
    #[serde(with = "duration")]
    pub grace_period: Duration,
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    pub limits: LimitsConfig,
    /// Unix socket the old and the new process meet on during a binary upgrade.
    pub upgrade_sock: String,
}

/// One TLS listener with its certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:8080".into()],
            tls: Vec::new(),
            h2c: false,
            threads: 2,
            work_stealing: false,
            admin: AdminConfig::default(),
            trusted_proxies: Vec::new(),
            grace_period: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            limits: LimitsConfig::default(),
            upgrade_sock: "/tmp/portico_upgrade.sock".into(),
        }
    }
}

/// The admin listener: metrics, health and the admin API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: String,
    /// Bearer token; empty means no authentication.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".into(),
            token: String::new(),
        }
    }
}

/// How Portico reads the Redis service registry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Full resync period; pub/sub events only make changes arrive sooner.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Bound on one registry round trip.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Remove expired registrations (one replica at a time wins a short lock).
    pub janitor: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            janitor: true,
        }
    }
}

/// One route: a match, a target service and what to change on the way.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// Where requests go; every route has exactly one of `service`, `split`, `redirect` and
    /// `respond`.
    #[serde(default)]
    pub service: Option<String>,
    /// Several services: by weight, by match, stickily (`split.rs`).
    #[serde(default)]
    pub split: Vec<SplitEntryConfig>,
    /// Keeps a caller on one side of the `split`.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// A sampled copy of the requests to another service, off the client's path.
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// The gateway answers with a redirect.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    /// The gateway answers with a fixed response.
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub rewrite: Option<RewriteConfig>,
    /// Bound on the whole request, retries included; the remaining budget is sent upstream in
    /// `Portico-Deadline-Ms`. None: only the service timeouts apply.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Names from `rate_limits`; every rule must allow the request.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    #[serde(default)]
    pub request_headers: HeaderRules,
    #[serde(default)]
    pub response_headers: HeaderRules,
    /// Name from `cors`.
    #[serde(default)]
    pub cors: Option<String>,
    /// Names from `ip_rules`; every policy must admit the client.
    #[serde(default)]
    pub ip: Vec<String>,
    /// Overrides `server.limits.max_request_body` for this route.
    #[serde(default, with = "opt_byte_size")]
    pub max_request_body: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<ConcurrencyConfig>,
    #[serde(default)]
    pub compress: Option<CompressConfig>,
    /// Names from `auth`; any one admitting the request is enough (tried in order). Empty =
    /// public.
    #[serde(default)]
    pub auth: Vec<String>,
    /// Only consumers in one of these groups may use the route (403 otherwise).
    #[serde(default)]
    pub allow_groups: Vec<String>,
}

/// What a request must carry for a route to match; every present criterion must hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// Exact host names or `*.suffix`; empty = any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    /// Empty = any method.
    pub methods: Vec<String>,
    /// Header name -> exact value.
    pub headers: BTreeMap<String, String>,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            path_prefix: "/".into(),
            methods: Vec::new(),
            headers: BTreeMap::new(),
        }
    }
}

/// Regex path rewrite: `to` may reference capture groups as `$1` or `${name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    pub regex: String,
    pub to: String,
}

/// Retry policy. Retries always go to an instance this request has not tried yet, wait a
/// jittered backoff, stay within the route `timeout`, and are limited by the service's retry
/// budget.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra attempts after the first one.
    pub attempts: u32,
    /// What is retried: `connect_failure` (nothing was sent; any method), `status` (a 502, 503
    /// or 504 answer) and `error` (timeout or reset after sending). The last two only for
    /// idempotent methods unless `non_idempotent` is true.
    pub on: Vec<RetryOn>,
    pub non_idempotent: bool,
    /// Base backoff; retry n waits a random time in [0, backoff × 2^(n-1)].
    #[serde(with = "duration")]
    pub backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 1,
            on: vec![RetryOn::ConnectFailure],
            non_idempotent: false,
            backoff: Duration::from_millis(25),
        }
    }
}

/// A retryable failure kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    ConnectFailure,
    Status,
    Error,
}

/// Header edits: `set` replaces or adds, `remove` deletes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRules {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// A named group of instances behind one load balancer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `HOST:PORT` with an optional ` weight=N`. Always included, whatever the discovery.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Where instances come from besides the static list.
    #[serde(default)]
    pub discovery: Discovery,
    /// A registry instance whose last heartbeat is older than this is ignored.
    #[serde(default = "default_heartbeat_ttl", with = "duration")]
    pub heartbeat_ttl: Duration,
    #[serde(default)]
    pub balance: Balance,
    /// For `consistent_hash`: `client_ip`, `header:NAME`, `cookie:NAME` or `path`.
    #[serde(default)]
    pub hash_key: Option<String>,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
    #[serde(default = "default_read_timeout", with = "duration")]
    pub write_timeout: Duration,
    /// How long an idle pooled upstream connection is kept; keep it below the upstream's own
    /// keepalive timeout so requests never race a server-side close.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// Connect to instances over TLS.
    #[serde(default)]
    pub tls: bool,
    /// SNI and certificate name for TLS; empty = the instance's IP.
    #[serde(default)]
    pub sni: String,
    /// Verify the instance certificate (on by default; turning it off is logged at load).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Speak HTTP/2 to instances (gRPC); over TLS via ALPN, in clear as prior-knowledge h2c.
    #[serde(default)]
    pub http2: bool,
    /// Requests in flight per instance; a full instance is skipped, and when every instance
    /// is full the request gets 503 `overloaded`. Absent = no cap.
    #[serde(default)]
    pub max_connections_per_instance: Option<u32>,
    /// A new or recovered instance's share ramps from 10% to its full weight over this time.
    #[serde(default, with = "opt_duration")]
    pub slow_start: Option<Duration>,
    /// Prefer instances in the gateway's own zone.
    #[serde(default)]
    pub zone_aware: Option<ZoneAwareConfig>,
}

/// Per-instance circuit breaker settings of a service (on by default).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or when failures / requests over `window` reach this, with at least `min_requests`.
    pub failure_ratio: f64,
    pub min_requests: u32,
    #[serde(with = "duration")]
    pub window: Duration,
    /// First open period; doubles on each re-open up to `max_open_for`.
    #[serde(with = "duration")]
    pub open_for: Duration,
    #[serde(with = "duration")]
    pub max_open_for: Duration,
    /// Concurrent probes admitted while half-open, and successes needed to close.
    pub half_open_probes: u32,
    /// Largest share of a service's instances breakers may eject at once (at least one).
    pub max_ejected_ratio: f64,
    /// Compute and export state, never refuse a request.
    pub shadow: bool,
    /// Count every 5xx as a failure, not only 502/503/504.
    pub trip_on_5xx: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(120),
            half_open_probes: 3,
            max_ejected_ratio: 0.5,
            shadow: false,
            trip_on_5xx: false,
        }
    }
}

/// Source of a service's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// Only the `instances` list.
    #[default]
    Static,
    /// The `instances` list plus the instances registered in the Redis registry.
    Redis,
}

/// Serde default for flags that are on unless turned off.
pub(super) fn yes() -> bool {
    true
}
fn default_heartbeat_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(4)
}

/// Active health check of every instance of a service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    pub path: String,
    /// Host header of HTTP probes; the instance address when empty.
    pub host: String,
    pub expect: Vec<u16>,
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Http,
            path: "/health".into(),
            host: String::new(),
            expect: vec![200],
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// Probe protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
}
