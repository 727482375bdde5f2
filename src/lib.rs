//! Portico: an API gateway and edge reverse proxy on Pingora.
//!
//! Modules are listed in layer order: each may use only the modules above it in this list
//! (`tests/architecture.rs` checks it). ARCHITECTURE.md walks through one request and one
//! reload.

// Vocabulary: no dependency on anything below.
pub mod allocator; // mimalloc's freed pages given back when a worker goes quiet
pub mod hex; // lower-case hex into byte buffers (ids on the request path)
pub mod log_filter; // the operational log: format, and a RUST_LOG-syntax filter changeable live
pub mod log_throttle; // warnings a storm repeats per connection, written once per period
pub mod ip_text; // addresses as text without core::fmt (request path)
pub mod ip_set; // sets of IP networks as merged ranges (allow and deny lists)
pub mod request_values; // a request's cookie and query values by name
pub mod config; // YAML schema, env expansion, every mistake located
pub mod reply; // gateway-made JSON error responses and their codes
pub mod request_id; // X-Request-Id acceptance and generation
pub mod known_headers; // header names the proxy adds, parsed once
pub mod forwarding; // client IP and X-Forwarded-* with trusted proxies
pub mod hardening; // framing and size checks, path normalisation
pub mod tls_files; // TLS certificate/key checks before a listener starts
pub mod echo; // echo HTTP server used by the demo and the tests

// Decision logic without sockets.
pub mod router; // route matching and path rewrites
pub mod answer; // routes answered by the gateway: redirects, static responses
pub mod retry; // retry policy, attempt state machine, per-service retry budget

// Observation.
pub mod telemetry; // metric families and handles, tracing, access log, KPIs, event queue

// Shared infrastructure.
pub mod redis_client; // Redis topologies (one node, cluster, sentinel; TLS), links, bounded calls
pub mod http_call; // outbound HTTP through Pingora's connector (JWKS, forward auth)
pub mod identity; // consumers, API keys, basic auth, JWT/JWKS, forward auth

// Per-service and per-route state.
pub mod upstream; // balancers, instances, host-name resolution, health checks, breakers
pub mod split; // traffic splits: weighted, forced by match, sticky, failing over
pub mod mirror; // sampled request copies to another service, compared with the primary
pub mod ratelimit; // GCRA limits: local and Redis stores, keys, rules
pub mod policy; // the per-route policy chain: rate limits, header edits, KPIs
pub mod snapshot; // compile a configuration (every error), build and hold the one in force

// Background services.
pub mod registry; // Redis service registry: protocol, watcher, registrar agent
pub mod event_stream; // business events to a Redis Stream
pub mod ip_deny; // the Redis IP deny set, read into the IP rules' shared set
pub mod consumer_store; // consumers kept in Redis: schema, writes, the reader
pub mod membership; // gateways heartbeating into a Redis list; the live count

// Serving.
pub mod listener; // client listeners: bind-or-exit, connection limits, head deadline, drain
pub mod gateway; // shared state: the snapshot in force, reload, SIGHUP, host-name refresh
pub mod proxy; // the ProxyHttp implementation (thin hooks)
pub mod admin; // admin listener: health, readiness, metrics, admin API
pub mod server; // Pingora server assembly
pub mod demo; // `--demo`: embedded config and echo upstreams
