//! Checks of the sections that compile to no runtime type of their own (they are read where
//! they are used): listeners and process settings, the Redis connection and registry timing,
//! events, tracing and the access log.

use crate::config::{Config, Problems, ServerConfig};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// `server`: listen addresses, TLS pairs (loaded now, as the listener would), limits, threads.
pub fn server(s: &ServerConfig, problems: &mut Problems) {
    if s.listen.is_empty() {
        problems.push("server.listen", "at least one listener is required");
    }
    for (i, l) in s.listen.iter().enumerate() {
        listen_address(l, &format!("server.listen[{i}]"), problems);
    }
    for (i, t) in s.tls.iter().enumerate() {
        listen_address(&t.listen, &format!("server.tls[{i}].listen"), problems);
        if let Err(e) = crate::tls_files::check_pair(&t.cert, &t.key, SystemTime::now()) {
            let field = if e.is_about_key() { "key" } else { "cert" };
            problems.push(format!("server.tls[{i}].{field}"), e.to_string());
        }
    }
    listen_address(&s.admin.listen, "server.admin.listen", problems);
    if s.limits.header_timeout.is_zero() {
        problems.push(
            "server.limits.header_timeout",
            "must be above 0: a client could otherwise hold a connection open forever",
        );
    }
    if s.threads == 0 || s.threads > 256 {
        problems.push("server.threads", "must be between 1 and 256");
    }
}

fn listen_address(text: &str, at: &str, problems: &mut Problems) {
    if text.parse::<SocketAddr>().is_err() {
        problems.push(at, format!("bad listen address {text:?}: expected IP:PORT"));
    }
}

/// `redis` (beyond where Redis is: `redis_client::Topology::compile`) and `registry`.
pub fn redis(config: &Config, problems: &mut Problems) {
    if let Some(r) = &config.redis {
        if r.replicas == Some(0) {
            problems.push("redis.replicas", "must be at least 1");
        }
        if r.gateway_ttl < Duration::from_millis(200) {
            problems.push("redis.gateway_ttl", "must be at least 200ms");
        }
        for (field, d) in [
            ("command_timeout", r.command_timeout),
            ("connect_timeout", r.connect_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("redis.{field}"), "must be positive");
            }
        }
    }
    let reg = &config.registry;
    if reg.poll_interval < Duration::from_millis(50) || reg.poll_interval > Duration::from_secs(60)
    {
        problems.push("registry.poll_interval", "must be between 50ms and 60s");
    }
    if reg.timeout.is_zero() {
        problems.push("registry.timeout", "must be positive");
    }
    let deny = config.ip_deny.poll_interval;
    if deny < Duration::from_millis(50) || deny > Duration::from_secs(60) {
        problems.push("ip_deny.poll_interval", "must be between 50ms and 60s");
    }
}

/// `events`, `tracing` and `access_log` (KPIs compile with `telemetry::kpi`).
pub fn telemetry(config: &Config, problems: &mut Problems) {
    if let Some(e) = &config.events {
        if config.redis.is_none() {
            problems.push("events", "events need a top-level `redis` section");
        }
        if e.stream.is_empty() {
            problems.push("events.stream", "must not be empty");
        }
        if e.maxlen == 0 {
            problems.push("events.maxlen", "must be positive");
        }
        if e.queue == 0 {
            problems.push("events.queue", "must be positive");
        }
        if !(1..=10_000).contains(&e.batch) {
            problems.push("events.batch", "must be between 1 and 10000");
        }
    }
    if let Some(t) = &config.tracing {
        match t.otlp_endpoint.parse::<http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
            Ok(u) if u.scheme_str() == Some("https") => problems.push(
                "tracing.otlp_endpoint",
                format!(
                    "{:?}: the exporter speaks plaintext only; send spans to a collector or \
                     agent beside the gateway (http://...)",
                    t.otlp_endpoint
                ),
            ),
            _ => problems.push(
                "tracing.otlp_endpoint",
                format!("{:?} is not an http URL", t.otlp_endpoint),
            ),
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            problems.push("tracing.sample_ratio", "must be between 0 and 1");
        }
    }
    if let Some(level) = &config.log.level {
        if let Err(e) = crate::log_filter::check(level) {
            problems.push("log.level", e);
        }
    }
    if !(0.0..=1.0).contains(&config.access_log.sample) {
        problems.push("access_log.sample", "must be between 0 and 1");
    }
}

/// The `identity` section: header names Portico sets upstream.
pub fn identity(config: &Config, problems: &mut Problems) {
    let id = &config.identity;
    for (field, name) in [
        ("consumer_header", &id.consumer_header),
        ("groups_header", &id.groups_header),
    ] {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(
                format!("identity.{field}"),
                format!("{name:?} is not a header name"),
            );
        }
    }
    if id.poll_interval < Duration::from_millis(100) {
        problems.push("identity.poll_interval", "must be at least 100ms");
    }
}
