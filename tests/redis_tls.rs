//! Redis over TLS end to end: a real `redis-server` serving TLS only and requiring client
//! certificates from a CA the test makes, the real gateway binary, and every Redis feature
//! (registry, a Redis-stored limit, events, membership) over `rediss://`. A gateway trusting
//! the wrong CA says why and keeps serving.

mod support;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis::RedisOptions;
use support::tls::Pki;
use support::*;

/// Everything that talks to Redis, on the `redis` section `redis`: a discovered service, a
/// Redis-stored global limit of `limit` per minute, a KPI and the event stream.
fn body(redis: &str, limit: u32) -> String {
    format!(
        "redis: {redis}\nregistry: {{poll_interval: 200ms}}\nevents: {{stream: \"portico:events\", maxlen: 1000}}\n\
         kpis:\n  - {{name: calls, routes: [api], status: 2xx}}\n\
         rate_limits:\n  shared: {{key: global, limit: {limit}, per: 1m, store: redis}}\n\
         routes:\n  - {{name: free, match: {{path_prefix: /free}}, service: svc}}\n  - {{name: api, service: svc, rate_limits: [shared]}}\n\
         services:\n  svc:\n    discovery: redis\n    heartbeat_ttl: 30s\n"
    )
}

#[test]
fn registry_limits_events_and_membership_work_over_tls_with_client_certificates() {
    let pki = Arc::new(Pki::generate());
    let redis = RedisServer::start_with(RedisOptions {
        tls: Some(pki.clone()),
        ..RedisOptions::default()
    });
    let echo = EchoServer::start("a").unwrap();
    let section = format!(
        // The first rate-limit decision dials Redis with a TLS handshake; on a busy machine
        // that outlasts the default 50 ms command timeout and the decision falls back locally.
        "{{url: \"{}\", tls: {}, gateway_ttl: 1s, command_timeout: 2s}}",
        redis.url(),
        pki.redis_tls_yaml()
    );
    let gw = Gateway::start(&body(&section, 5));
    let registered = Instant::now();
    redis.register("svc", "a", &echo.addr.to_string());
    assert!(
        gw.eventually(Duration::from_millis(1500), || gw.get("/free").status
            == 200),
        "a registered instance is routable over TLS within 1.5 s"
    );
    eprintln!("routable after {:?}", registered.elapsed());
    let statuses: Vec<u16> = (0..8).map(|_| gw.get("/").status).collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(allowed, 5, "the Redis-stored limit admits 5: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        gw.metric(
            "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}"
        ),
        5.0
    );
    assert_eq!(
        gw.metric(
            "portico_ratelimit_fallback_decisions_total{policy=\"local_fallback\",rule=\"shared\"}"
        ),
        0.0
    );
    assert!(gw.eventually(Duration::from_secs(3), || {
        ::redis::from_redis_value::<u64>(redis.cmd(&["XLEN", "portico:events"])).unwrap_or(0) == 5
    }));
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric_if_exported("portico_gateways_live") == Some(1.0)
            && gw.admin("GET", "/admin/gateways", &[]).json()["live"] == 1
    }));
    assert_eq!(
        gw.metric("portico_redis_topology_info{tls=\"true\",topology=\"single\"}"),
        1.0
    );
    for client in ["registry", "ratelimit", "events", "membership"] {
        assert_eq!(
            gw.metric(&format!(
                "portico_redis_connects_total{{client=\"{client}\",result=\"failure\"}}"
            )),
            0.0,
            "{client} connected at the first attempt"
        );
    }
}

#[test]
fn a_wrong_ca_is_a_clear_counted_error_and_never_a_5xx() {
    let pki = Arc::new(Pki::generate());
    let other = Pki::generate();
    let redis = RedisServer::start_with(RedisOptions {
        tls: Some(pki.clone()),
        ..RedisOptions::default()
    });
    let echo = EchoServer::start("a").unwrap();
    // Trusts another CA, but presents a client certificate the server would accept.
    let section = format!(
        "{{url: \"{}\", tls: {{ca: \"{}\", cert: \"{}\", key: \"{}\"}}}}",
        redis.url(),
        other.ca,
        pki.client_cert,
        pki.client_key
    );
    let body = body(&section, 5).replace(
        "  svc:\n    discovery: redis\n",
        &format!(
            "  svc:\n    discovery: redis\n    instances: [\"{}\"]\n",
            echo.addr
        ),
    );
    let gw = Gateway::start(&body);
    let statuses: Vec<u16> = (0..8).map(|_| gw.get("/").status).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "Redis unreachable is never a 5xx: {statuses:?}"
    );
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric("portico_redis_connects_total{client=\"registry\",result=\"failure\"}") >= 1.0
            && gw.metric("portico_redis_connects_total{client=\"ratelimit\",result=\"failure\"}")
                >= 1.0
    }));
    assert_eq!(
        gw.metric("portico_redis_connects_total{client=\"registry\",result=\"success\"}"),
        0.0
    );
    let registry = gw.admin("GET", "/admin/registry", &[]).json();
    let error = registry.to_string();
    assert!(
        error.contains("UnknownIssuer") || error.contains("invalid peer certificate"),
        "the registry status says why: {registry}"
    );
    assert!(
        gw.metric(
            "portico_ratelimit_fallback_decisions_total{policy=\"local_fallback\",rule=\"shared\"}"
        ) >= 1.0
    );
    let gateways = gw.admin("GET", "/admin/gateways", &[]);
    assert_eq!(gateways.status, 503, "{}", gateways.body);
    assert_eq!(gateways.json()["error"]["code"], "redis_unavailable");
}

/// `portico validate` on `redis` followed by a minimal valid rest; its output.
fn validate(redis: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portico.yaml");
    let rest =
        "routes:\n  - {name: a, service: s}\nservices:\n  s: {instances: [\"127.0.0.1:1\"]}\n";
    std::fs::write(&file, format!("{redis}{rest}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "validate accepted:\n{redis}");
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn validate_locates_tls_and_topology_mistakes() {
    let text = validate(
        "redis:\n  url: \"redis://127.0.0.1:6379/0\"\n  cluster: [\"redis://127.0.0.1:7000\"]\n",
    );
    assert!(
        text.contains("portico.yaml:3:12: redis.cluster: set only one of url (one node), cluster (seed nodes) and sentinel; url is set too"),
        "{text}"
    );
    let text = validate(
        "redis:\n  url: \"redis://127.0.0.1:6379/0\"\n  tls:\n    ca: /nonexistent/ca.pem\n    cert: /nonexistent/client.pem\n",
    );
    for expected in [
        "portico.yaml:2:8: redis.url: redis.tls is set, so this URL must use rediss://",
        "portico.yaml:4:9: redis.tls.ca: cannot read \"/nonexistent/ca.pem\"",
        "redis.tls.key: a client certificate needs its key",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
