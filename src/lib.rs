//! Portico: an API gateway and edge reverse proxy on Pingora.

pub mod admin; // admin listener: health, readiness, metrics, admin API
pub mod config; // YAML schema, env expansion, located validation
pub mod demo; // `--demo`: embedded config and echo upstreams
pub mod echo; // echo HTTP server used by the demo and the tests
pub mod forwarding; // client IP and X-Forwarded-* with trusted proxies
pub mod gateway; // shared state: snapshot swap, reload, SIGHUP
pub mod hardening; // framing and size checks, path normalisation
pub mod hex; // lower-case hex into byte buffers (ids on the request path)
pub mod ip_text; // addresses as text without core::fmt (request path)
pub mod listener; // client listeners: bind-or-exit, connection limits, head deadline, drain
pub mod proxy; // the ProxyHttp implementation (thin hooks)
pub mod ratelimit; // GCRA limits: local and Redis stores, keys, headers
pub mod registry; // Redis service registry: protocol, watcher, registrar agent
pub mod reply; // gateway-made JSON error responses and their codes
pub mod request_id; // X-Request-Id acceptance and generation
pub mod retry; // retry policy, backoff and per-service retry budget
pub mod router; // compiled route table and rewrites
pub mod server; // Pingora server assembly
pub mod snapshot; // one compiled configuration
pub mod telemetry; // metrics families and per-snapshot handles
pub mod tls_files; // TLS certificate/key checks before a listener starts
pub mod upstream; // balancers, discovery sets, health checks
