//! The exposition of a gateway that has exercised every feature matches the metric catalogue
//! in `src/telemetry/catalog.rs`: names, types and label names. The exposition is written to
//! `$CARGO_TARGET_TMPDIR/portico-metrics.prom` and, when `promtool` is installed (CI installs
//! it), linted with `promtool check metrics`.

mod support;
use portico::telemetry::catalog::{self, Kind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::*;

/// Families per exposition: type and the label names seen on its samples.
fn parse(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    parse_values(text)
        .into_iter()
        .map(|(name, (kind, labels))| (name, (kind, labels.into_keys().collect())))
        .collect()
}

/// Families per exposition: type and, per label name, the values seen.
#[allow(clippy::type_complexity)]
fn parse_values(text: &str) -> BTreeMap<String, (String, BTreeMap<String, BTreeSet<String>>)> {
    let mut families: BTreeMap<String, (String, BTreeMap<String, BTreeSet<String>>)> =
        BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.into()).or_default().0 = kind.into();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| families.get(*f).is_some_and(|(k, _)| k == "histogram"))
            })
            .unwrap_or(name);
        let entry = families.entry(family.into()).or_default();
        for pair in labels
            .trim_end_matches('}')
            .split("\",")
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap();
            let key = key.trim_start_matches(',');
            if key != "le" {
                let value = value.trim_matches('"').to_string();
                entry.1.entry(key.to_string()).or_default().insert(value);
            }
        }
    }
    families
}

/// A configuration using every feature that has metrics: Redis (rate limits, registry,
/// events, deny set), a dead service with a breaker, auth with a JWKS that cannot be read,
/// compression, concurrency, a KPI by consumer, a split, a compared mirror.
fn full_config(redis: &RedisServer, echo: &EchoServer, dead: u16) -> String {
    format!(
        r#"redis: {{url: "{url}"}}
registry: {{poll_interval: 200ms}}
events: {{stream: "portico:events"}}
rate_limits:
  local-rule: {{limit: 1000, per: 1s}}
  shared-rule: {{limit: 1000, per: 1s, store: redis}}
routes:
  - {{name: ok, match: {{path_prefix: /ok}}, service: echo, rate_limits: [local-rule, shared-rule]}}
  - {{name: down, match: {{path_prefix: /down}}, service: dead}}
  - {{name: reg, match: {{path_prefix: /reg}}, service: registered}}
  - {{name: capped, match: {{path_prefix: /capped}}, service: echo, concurrency: {{max: 10}}, ip: [shared-deny], compress: {{min_size: 10B}}}}
  - {{name: private, match: {{path_prefix: /private}}, service: echo, auth: [keys, idp]}}
  - {{name: canary, match: {{path_prefix: /canary}}, split: [{{service: echo, weight: 9}}, {{service: registered, weight: 1}}]}}
  - {{name: shadowed, match: {{path_prefix: /shadowed}}, service: echo, mirror: {{service: registered, compare: true}}}}
ip_rules:
  shared-deny: {{deny_from_redis: true}}
consumers:
  acme: {{api_keys: ["acme-key-0123456789"]}}
auth:
  keys: {{type: api_key}}
  idp: {{type: jwt, jwks_url: "http://127.0.0.1:{dead}/keys"}}
services:
  echo:
    instances: ["{echo} zone=a"]
    zone_aware: {{local_zone: a}}
    health_check: {{type: tcp, interval: 200ms, timeout: 100ms}}
  dead:
    instances: ["127.0.0.1:{dead}"]
    circuit_breaker: {{consecutive_failures: 1}}
  registered:
    discovery: redis
kpis:
  - {{name: orders_placed, routes: [ok], methods: [POST], status: 2xx, by_consumer: true}}
"#,
        url = redis.url(),
        echo = echo.addr,
    )
}

#[test]
fn the_exposition_matches_the_catalogue() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let reg = EchoServer::start("r").unwrap();
    let dead = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::tls::self_signed(dir.path(), "cert");
    let tls_port = free_port();
    let tls = format!(
        "  tls: [{{listen: \"127.0.0.1:{tls_port}\", cert: \"{cert}\", key: \"{key}\"}}]\n"
    );
    let gw = Gateway::start_with_server(&full_config(&redis, &echo, dead), &tls);
    redis.register("registered", "r1", &reg.addr.to_string());
    assert!(gw.eventually(Duration::from_secs(3), || gw.get("/reg").status == 200));
    assert_eq!(request(gw.addr, "POST", "/ok", &[], "{}").status, 200);
    assert_eq!(gw.get("/down").status, 502);
    assert_eq!(gw.get("/nowhere").status, 404);
    assert_eq!(
        get(gw.addr, "/private", &[("x-api-key", "acme-key-0123456789")]).status,
        200
    );
    let gzipped = get(gw.addr, "/capped", &[("accept-encoding", "gzip")]);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gw.admin("POST", "/admin/reload", &[]).status, 200);
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric("portico_events_published_total") >= 1.0
    }));

    // The listener's certificate expiry: in the future, as the test certificate says.
    let expiry = gw.metric(&format!(
        "portico_tls_certificate_expiry_timestamp_seconds{{listener=\"127.0.0.1:{tls_port}\"}}"
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now && expiry < now + 20.0 * 365.0 * 86_400.0,
        "{expiry}"
    );

    let text = gw.metrics_text();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("portico-metrics.prom");
    std::fs::write(&path, &text).unwrap();
    let exposed = parse(&text);

    for (name, (kind, labels)) in &exposed {
        if !name.starts_with("portico_") {
            continue;
        }
        let (want_kind, want_labels) = catalog::find(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in the catalogue"));
        assert_eq!(kind, want_kind.as_str(), "type of {name}");
        let want: BTreeSet<String> = want_labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(labels, &want, "labels of {name}");
    }
    // Every family is created before the events it counts, so none can hide from a query.
    for (name, kind, _) in catalog::CATALOG {
        assert!(
            exposed.contains_key(*name),
            "{name} ({}) is not exported",
            kind.as_str()
        );
    }
    // Closed label sets: nothing outside the catalogue's list is ever exported.
    for (name, (_, labels)) in parse_values(&text) {
        for (label, values) in labels {
            let Some(allowed) = catalog::values(&name, &label) else {
                continue;
            };
            for v in values {
                assert!(
                    allowed.contains(&v.as_str()),
                    "{name}{{{label}=\"{v}\"}} is not catalogued"
                );
            }
        }
    }
    for name in catalog::PROCESS {
        assert!(exposed.contains_key(*name), "{name} missing");
    }
    assert!(catalog::CATALOG
        .iter()
        .all(|(n, k, _)| *k != Kind::Histogram || !n.ends_with("_total")));

    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
    {
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Label values that cannot all exist before traffic, and why; every other closed label shows
/// each of its values at zero from the first scrape.
const SHOWN_WHEN_USED: &[(&str, &str, &str)] = &[
    (
        "portico_http_requests_total",
        "source",
        "its `code` label is open: series start with a response",
    ),
    (
        "portico_http_requests_total",
        "method",
        "its `code` label is open: series start with a response",
    ),
    (
        "portico_http_requests_total",
        "protocol",
        "its `code` label is open: series start with a response",
    ),
    (
        "portico_redis_topology_info",
        "topology",
        "an info gauge: only the topology in force",
    ),
    (
        "portico_redis_topology_info",
        "tls",
        "an info gauge: only the topology in force",
    ),
    (
        "portico_redis_command_duration_seconds",
        "client",
        "per command, from a client's first call",
    ),
    (
        "portico_ratelimit_fallback_decisions_total",
        "policy",
        "only the policy each rule configures",
    ),
    (
        "portico_policy_refusals_total",
        "policy",
        "one series per configured gate",
    ),
    (
        "portico_policy_refusals_total",
        "mode",
        "the mode each gate is configured in",
    ),
];

#[test]
fn every_family_and_known_label_value_is_present_at_zero_before_any_traffic() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::tls::self_signed(dir.path(), "cert");
    let tls = format!(
        "  tls: [{{listen: \"127.0.0.1:{}\", cert: \"{cert}\", key: \"{key}\"}}]\n",
        free_port()
    );
    let gw = Gateway::start_with_server(&full_config(&redis, &echo, free_port()), &tls);
    let text = gw.metrics_text();
    let exposed = parse_values(&text);
    let open = [
        "portico_http_requests_total",
        // Consumers are labels from their first event on, bounded by `max_consumers`.
        "portico_business_events_by_consumer_total",
    ];
    for (name, _, _) in catalog::CATALOG {
        if !open.contains(name) {
            assert!(
                exposed.contains_key(*name),
                "{name} is not exported before traffic"
            );
        }
    }
    for (family, label, values) in catalog::VALUES {
        if SHOWN_WHEN_USED
            .iter()
            .any(|(f, l, _)| f == family && l == label)
        {
            continue;
        }
        let seen = exposed
            .get(*family)
            .and_then(|(_, labels)| labels.get(*label))
            .unwrap_or_else(|| panic!("{family} has no {label} before traffic"));
        for value in *values {
            // Answers (redirects, static responses, ...) are no errors: created at first use.
            let answer = *family == "portico_http_gateway_responses_total"
                && portico::reply::ANSWER_REASONS.contains(value);
            // The admin client talks to Redis only when an operator acts: it has no `up`.
            let on_demand = *family == "portico_redis_up" && *value == "admin";
            if !answer && !on_demand {
                assert!(
                    seen.contains(*value),
                    "{family}{{{label}=\"{value}\"}} is missing before traffic; seen {seen:?}"
                );
            }
        }
    }
    // A client that has not failed is up: an idle event publisher raises no Redis alert.
    assert_eq!(gw.metric("portico_redis_up{client=\"events\"}"), 1.0);
    // Per route and per service, every error a request can meet is there at zero.
    assert_eq!(
        gw.metric("portico_http_gateway_responses_total{reason=\"circuit_open\",route=\"down\"}"),
        0.0
    );
    assert_eq!(
        gw.metric("portico_upstream_errors_total{kind=\"connect_refused\",service=\"dead\"}"),
        0.0
    );
}
