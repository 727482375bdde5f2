//! The compile step against whole files: every mistake located, once.

use super::compile_str;
use crate::config::{Config, ConfigErrors};
use std::sync::Arc;

/// The whole load: parse, then compile; the configuration when it is valid.
fn load_str(file: &str, text: &str) -> Result<Arc<Config>, ConfigErrors> {
    compile_str(file, text).map(|plan| plan.config)
}

const GOOD: &str = r#"
routes:
  - name: api
    match: {path_prefix: /api}
    service: trading
services:
  trading:
    instances: ["127.0.0.1:8101", "127.0.0.1:8102 weight=2"]
"#;

#[test]
fn a_valid_file_loads() {
    let c = load_str("good.yaml", GOOD).unwrap();
    assert_eq!(c.routes[0].service.as_deref(), Some("trading"));
    assert_eq!(c.server.listen, vec!["0.0.0.0:8080"]);
}

#[test]
fn every_mistake_is_reported_with_its_line() {
    let text = "routes:\n  - name: api\n    service: tradin\n    rewrite: {regex: \"(\", to: /x}\nservices:\n  trading:\n    instances: [\"nonsense\"]\n";
    let errs = load_str("bad.yaml", text).unwrap_err().0;
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{shown:#?}");
    assert!(shown[0].starts_with("bad.yaml:3:14: routes[0].service: unknown service \"tradin\"; did you mean \"trading\"?"), "{}", shown[0]);
    assert!(
        shown[1].starts_with("bad.yaml:4:22: routes[0].rewrite.regex: bad regex"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].starts_with("bad.yaml:7:17: services.trading.instances[0]: bad address"),
        "{}",
        shown[2]
    );
}

#[test]
fn unknown_fields_are_errors_with_a_position() {
    let text = GOOD.replace("path_prefix", "path_prefx");
    let err = load_str("f.yaml", &text).unwrap_err().to_string();
    assert!(err.starts_with("f.yaml:4:"), "{err}");
    assert!(err.contains("unknown field `path_prefx`"), "{err}");
}

#[test]
fn empty_routes_and_duplicate_names_are_errors() {
    let text = r#"
routes:
  - {name: api, service: trading}
  - {name: api, service: trading}
services:
  trading:
    instances: ["127.0.0.1:1", "127.0.0.1:1"]
"#;
    let errs = load_str("f", text).unwrap_err().to_string();
    assert!(
        errs.contains("f:4:12: routes[1].name: duplicate route name \"api\""),
        "{errs}"
    );
    assert!(errs.contains("duplicate instance 127.0.0.1:1"), "{errs}");
    let empty = load_str("f", "routes: []\nservices: {}\n")
        .unwrap_err()
        .to_string();
    assert!(
        empty.contains("routes: at least one route is required"),
        "{empty}"
    );
}

#[test]
fn a_route_has_exactly_one_target_and_answers_take_no_service_settings() {
    let text = r#"
routes:
  - {name: none}
  - name: both
    service: trading
    redirect: {to: /x}
  - name: moved
    redirect: {to: "/v1$pth", status: 200}
    retry: {attempts: 2}
  - name: canned
    respond: {status: 99, headers: {content-length: "3"}}
    strip_prefix: true
services:
  trading:
    instances: ["127.0.0.1:8101"]
"#;
    reports_all(
        text,
        &[
            "f:3:5: routes[0].service: a route needs one of `service`, `split`, `redirect` and `respond`",
            "f:4:5: routes[1]: a route has exactly one of",
            "routes[2].redirect.status: must be 301, 302, 303, 307 or 308",
            "routes[2].redirect.to: `$pth` is not $path, $query, $host",
            "routes[2].retry: only applies to a route with a `service`",
            "routes[3].respond.status: must be between 200 and 599",
            "routes[3].respond.headers.content-length: is set from the body",
            "routes[3].strip_prefix: only applies to a route with a `service`",
        ],
    );
}

/// Compiling `text` fails with every one of `wants` among its errors.
fn reports_all(text: &str, wants: &[&str]) {
    let errs = load_str("f", text).unwrap_err().to_string();
    for want in wants {
        assert!(errs.contains(want), "{want}\n{errs}");
    }
}

#[test]
fn edge_policy_mistakes_are_located() {
    let text = r#"
ip_rules:
  office: {allow: ["10.0.0.0/8", "10.1.0.0/8"], deny_from_redis: true}
cors:
  web: {origins: ["https://*.example.com", "example.com"], credentials: true}
routes:
  - name: api
    service: trading
    ip: [ofice]
    cors: wbe
    concurrency: {max: 0, per: consumer}
services:
  trading:
    instances: ["127.0.0.1:8101"]
"#;
    reports_all(
            text,
            &[
            "f:3:34: ip_rules.office.allow[1]: \"10.1.0.0/8\" has host bits set; the network is 10.0.0.0/8",
            "ip_rules.office.deny_from_redis: needs a top-level `redis` section",
            "f:5:44: cors.web.origins[1]: \"example.com\" is not an origin",
            "f:9:10: routes[0].ip[0]: unknown IP rule \"ofice\"; did you mean \"office\"?",
            "f:10:11: routes[0].cors: unknown CORS policy \"wbe\"; did you mean \"web\"?",
            "routes[0].concurrency.max: must be at least 1",
            "routes[0].concurrency.per: `consumer` needs `auth` on the route",
        ],
        );
}

#[test]
fn durations_are_strings() {
    let text = GOOD.to_string() + "    connect_timeout: 250ms\n";
    assert_eq!(
        load_str("f", &text).unwrap().services["trading"]
            .connect_timeout
            .as_millis(),
        250
    );
    let bad = load_str("f", &(GOOD.to_string() + "    connect_timeout: soon\n"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("invalid duration \"soon\""), "{bad}");
}

#[test]
fn registry_discovery_needs_a_redis_section_and_may_have_no_static_instances() {
    let text =
        "routes:\n  - {name: api, service: social}\nservices:\n  social:\n    discovery: redis\n";
    let err = load_str("r.yaml", text).unwrap_err().to_string();
    assert!(
            err.contains("r.yaml:5:16: services.social.discovery: discovery: redis needs a top-level `redis` section"),
            "{err}"
        );
    assert!(
        !err.contains("instances"),
        "no static instance is needed: {err}"
    );
    let ok = format!("redis: {{url: \"redis://127.0.0.1:6379/0\"}}\n{text}");
    let c = load_str("r.yaml", &ok).unwrap();
    assert_eq!(c.services["social"].heartbeat_ttl.as_secs(), 10);
    assert_eq!(c.registry.poll_interval.as_secs(), 1);
}

#[test]
fn redis_and_registry_settings_are_checked() {
    let text =
        format!("redis: {{url: \"http://nope\"}}\nregistry: {{poll_interval: 10ms}}\n{GOOD}");
    let err = load_str("r.yaml", &text).unwrap_err().to_string();
    assert!(
        err.contains("r.yaml:1:14: redis.url: bad Redis URL"),
        "{err}"
    );
    assert!(
        err.contains("registry.poll_interval: must be between 50ms and 60s"),
        "{err}"
    );
}

#[test]
fn one_mistake_is_one_error() {
    let base =
        "routes:\n  - {name: a, service: s}\nservices:\n  s:\n    instances: [\"127.0.0.1:1\"]\n";
    for (extra, want) in [
            (
                "    circuit_breaker: {half_open_probes: -1}\n",
                "services.s.circuit_breaker.half_open_probes: invalid value: integer `-1`, expected u32",
            ),
            (
                "    health_check: {expect: [70000]}\n",
                "services.s.health_check.expect[0]: invalid value: integer `70000`, expected u16",
            ),
        ] {
            let errs = load_str("f", &format!("{base}{extra}")).unwrap_err().0;
            let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            assert_eq!(shown.len(), 1, "{shown:#?}");
            assert!(shown[0].contains(want), "{shown:#?}");
        }
    let misspelt =
        "routes:\n  - {name: a, service: s}\nservices:\n  s:\n    instancs: [\"127.0.0.1:1\"]\n";
    let errs = load_str("f", misspelt).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("did you mean `instances`?"));
}

#[test]
fn identity_mistakes_are_located() {
    let text = r#"
consumers:
  acme:
    api_keys: [short]
    basic: {user: acme, password_hash: "plain"}
auth:
  keys: {type: api_key, header: x-api-key, realm: nope}
  idp: {type: jwt, jwks_url: "ftp://idp/keys", algorithms: [none]}
identity:
  consumer_header: "bad header"
rate_limits:
  per-consumer: {key: consumer, limit: 10, by_group: {gold: {limit: 0}}}
  per-ip: {key: client_ip, limit: 10, by_group: {gold: {limit: 100}}}
routes:
  - name: open
    service: trading
    allow_groups: [gold]
    rate_limits: [per-consumer]
  - name: api
    service: trading
    auth: [kyes]
services:
  trading:
    instances: ["127.0.0.1:8101"]
"#;
    reports_all(
        text,
        &[
            "consumers.acme.api_keys[0]: a plain API key needs at least 16 characters",
            "consumers.acme.basic.password_hash: must be an Argon2id",
            "auth.keys.realm: does not apply to type: api_key",
            "auth.idp.algorithms[0]: unsigned tokens (`none`) are never accepted",
            "auth.idp.jwks_url: must start with http:// or https://",
            "identity.consumer_header: \"bad header\" is not a header name",
            "rate_limits.per-consumer.by_group.gold.limit: must be at least 1",
            "rate_limits.per-ip.by_group: only applies to `key: consumer`",
            "routes[0].allow_groups: needs `auth` on the route",
            "routes[0].rate_limits[0]: rule \"per-consumer\" counts by consumer: the route needs `auth`",
            "routes[1].auth[0]: unknown auth policy \"kyes\"; did you mean \"keys\"?",
        ],
    );
}

#[test]
fn tracing_settings_are_checked() {
    reports_all(
        &format!("tracing: {{otlp_endpoint: \"https://collector:4318\", protocol: grpc}}\n{GOOD}"),
        &["tracing.otlp_endpoint", "plaintext only"],
    );
    reports_all(
        &format!("tracing: {{protocol: http/json, compression: zstd}}\n{GOOD}"),
        &["tracing.protocol", "tracing.compression"],
    );
}

#[test]
fn split_mistakes_are_located() {
    let text = r#"
routes:
  - name: both
    service: trading
    split: [{service: trading, weight: 1}]
  - name: bad
    split:
      - {service: tradnig, weight: 1}
      - {service: trading, weight: 0}
      - {service: trading, weight: 2, when: {header: {x-canary: "1"}}}
      - {service: trading}
      - {service: trading, when: {}}
    sticky: {cookie: "bad name", header: x-user}
  - name: forced-only
    split: [{service: trading, when: {query: {canary: "1"}}}]
  - name: unsplit
    service: trading
    sticky: {header: x-user}
  - name: anonymous
    split: [{service: trading, weight: 1}]
    sticky: {consumer: true}
services:
  trading:
    instances: ["127.0.0.1:8101"]
"#;
    reports_all(
        text,
        &[
            "routes[0]: a route has exactly one of `service`, `split`",
            "routes[1].split[0].service: unknown service \"tradnig\"",
            "routes[1].split[1].weight: must be positive",
            "routes[1].split[2].weight: an entry with `when`",
            "routes[1].split[3]: needs a `weight` or a `when`",
            "routes[1].split[4].when: needs a `header`, `cookie` or `query`",
            "routes[1].sticky: needs exactly one of",
            "routes[2].split: needs at least one entry with a `weight`",
            "routes[3].sticky: only applies to a route with a `split`",
            "routes[4].sticky.consumer: needs `auth` on the route",
        ],
    );
}

#[test]
fn mirror_mistakes_are_located() {
    let text = r#"
routes:
  - name: bad
    service: trading
    mirror: {service: shaddow, percent: 0, timeout: 0s, max_in_flight: 0, max_body: 64MiB}
  - name: too-much
    service: trading
    mirror: {service: trading, percent: 100.5, host: ""}
  - name: answered
    respond: {status: 200}
    mirror: {service: trading}
services:
  trading:
    instances: ["127.0.0.1:8101"]
"#;
    reports_all(
        text,
        &[
            "routes[0].mirror.percent: must be above 0 and at most 100",
            "routes[0].mirror.timeout: must be between 1ms and 60s",
            "routes[0].mirror.max_in_flight: must be positive",
            "routes[0].mirror.max_body: at most 16MiB",
            "routes[0].mirror.service: unknown service \"shaddow\"",
            "routes[1].mirror.percent: must be above 0 and at most 100",
            "routes[1].mirror.host: \"\" is not a host",
            "routes[2].mirror: only applies to a route with a `service`",
        ],
    );
}

#[test]
fn balancing_settings_are_checked() {
    let text = r#"
routes: [{name: api, service: s}]
services:
  s:
    instances: ["127.0.0.1:1 zone=eu-1", "127.0.0.1:2 rack=7"]
    balance: least_request
    slow_start: 500ms
    zone_aware: {local_zone: eu-1, min_healthy: 1.5}
"#;
    reports_all(
        text,
        &[
            "services.s.instances[1]: unknown instance option \"rack=7\"; expected weight=N or zone=NAME",
            "services.s.slow_start: must be between 1s and 1h",
            "services.s.zone_aware.min_healthy: must be in (0, 1]",
        ],
    );
}
