//! Semantic checks run after parsing. Every problem is collected, none stops the others, so one
//! `portico validate` run shows everything that is wrong.

use super::error::Problem;
use super::types::*;
use std::collections::HashSet;
use std::net::SocketAddr;

/// Builds a located error from a field path and a message.
pub type Locate<'a> = &'a dyn Fn(&str, String) -> Problem;

/// Methods a route may name; anything else is almost always a typo.
pub(super) const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// Returns every error in `config`.
pub fn validate(config: &Config, at: Locate) -> Vec<Problem> {
    let mut errs = Vec::new();
    server(&config.server, at, &mut errs);
    super::validate_redis::redis(config, at, &mut errs);
    if config.routes.is_empty() {
        errs.push(at("routes", "at least one route is required".into()));
    }
    let mut names = HashSet::new();
    for (i, route_cfg) in config.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if !names.insert(route_cfg.name.as_str()) {
            errs.push(at(
                &format!("{p}.name"),
                format!("duplicate route name {:?}", route_cfg.name),
            ));
        }
        route(route_cfg, &p, config, at, &mut errs);
    }
    for (name, rule) in &config.rate_limits {
        super::validate_redis::rate_limit(name, rule, config, at, &mut errs);
    }
    super::validate_telemetry::validate(config, at, &mut errs);
    for (name, svc) in &config.services {
        super::validate_service::service(name, svc, &format!("services.{name}"), at, &mut errs);
        if svc.discovery == Discovery::Redis && config.redis.is_none() {
            errs.push(at(
                &format!("services.{name}.discovery"),
                "discovery: redis needs a top-level `redis` section".into(),
            ));
        }
    }
    errs
}

fn server(s: &ServerConfig, at: Locate, errs: &mut Vec<Problem>) {
    if s.listen.is_empty() {
        errs.push(at(
            "server.listen",
            "at least one listener is required".into(),
        ));
    }
    for (i, l) in s.listen.iter().enumerate() {
        if l.parse::<SocketAddr>().is_err() {
            errs.push(at(
                &format!("server.listen[{i}]"),
                format!("bad listen address {l:?}: expected IP:PORT"),
            ));
        }
    }
    for (i, t) in s.tls.iter().enumerate() {
        if t.listen.parse::<SocketAddr>().is_err() {
            errs.push(at(
                &format!("server.tls[{i}].listen"),
                format!("bad listen address {:?}: expected IP:PORT", t.listen),
            ));
        }
        // The listener would load these at start; a pair it cannot use is a config error.
        if let Err(e) = crate::tls_files::check_pair(&t.cert, &t.key, std::time::SystemTime::now())
        {
            let field = if e.is_about_key() { "key" } else { "cert" };
            errs.push(at(&format!("server.tls[{i}].{field}"), e.to_string()));
        }
    }
    if s.admin.listen.parse::<SocketAddr>().is_err() {
        errs.push(at(
            "server.admin.listen",
            format!("bad listen address {:?}: expected IP:PORT", s.admin.listen),
        ));
    }
    if s.limits.header_timeout.is_zero() {
        errs.push(at(
            "server.limits.header_timeout",
            "must be above 0: a client could otherwise hold a connection open forever".into(),
        ));
    }
    if s.threads == 0 || s.threads > 256 {
        errs.push(at("server.threads", "must be between 1 and 256".into()));
    }
    for (i, t) in s.trusted_proxies.iter().enumerate() {
        if crate::forwarding::parse_net(t).is_none() {
            errs.push(at(
                &format!("server.trusted_proxies[{i}]"),
                format!("bad network {t:?}: expected an IP or CIDR"),
            ));
        }
    }
}

fn route(r: &RouteConfig, p: &str, config: &Config, at: Locate, errs: &mut Vec<Problem>) {
    if !is_label_safe(&r.name) {
        errs.push(at(
            &format!("{p}.name"),
            "must be non-empty and use only [A-Za-z0-9_.-]".into(),
        ));
    }
    if !config.services.contains_key(&r.service) {
        let hint = closest(&r.service, config.services.keys().map(String::as_str))
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        errs.push(at(
            &format!("{p}.service"),
            format!("unknown service {:?}{hint}", r.service),
        ));
    }
    for (i, name) in r.rate_limits.iter().enumerate() {
        if !config.rate_limits.contains_key(name) {
            let hint = closest(name, config.rate_limits.keys().map(String::as_str))
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            errs.push(at(
                &format!("{p}.rate_limits[{i}]"),
                format!("unknown rate limit {name:?}{hint}"),
            ));
        }
    }
    let m = &r.matcher;
    if !m.path_prefix.starts_with('/') {
        errs.push(at(
            &format!("{p}.match.path_prefix"),
            "must start with '/'".into(),
        ));
    }
    for (i, h) in m.hosts.iter().enumerate() {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        if bare.is_empty() || bare.contains(['*', '/', ' ', ':']) {
            errs.push(at(
                &format!("{p}.match.hosts[{i}]"),
                format!("bad host {h:?}: expected a name or *.suffix"),
            ));
        }
    }
    for (i, method) in m.methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            errs.push(at(
                &format!("{p}.match.methods[{i}]"),
                format!(
                    "unknown method {method:?}; expected one of {}",
                    METHODS.join(", ")
                ),
            ));
        }
    }
    for (name, value) in &m.headers {
        header_pair(
            name,
            Some(value),
            &format!("{p}.match.headers.{name}"),
            at,
            errs,
        );
    }
    if r.strip_prefix && r.rewrite.is_some() {
        errs.push(at(
            &format!("{p}.rewrite"),
            "use either strip_prefix or rewrite, not both".into(),
        ));
    }
    if let Some(rw) = &r.rewrite {
        if let Err(e) = regex::Regex::new(&rw.regex) {
            errs.push(at(&format!("{p}.rewrite.regex"), format!("bad regex: {e}")));
        }
        if !rw.to.starts_with('/') && !rw.to.starts_with('$') {
            errs.push(at(
                &format!("{p}.rewrite.to"),
                "must start with '/' or a capture reference".into(),
            ));
        }
    }
    if r.retry.attempts > 5 {
        errs.push(at(
            &format!("{p}.retry.attempts"),
            "at most 5 retries".into(),
        ));
    }
    if r.timeout.is_some_and(|t| t.is_zero()) {
        errs.push(at(
            &format!("{p}.timeout"),
            "must be greater than zero".into(),
        ));
    }
    for (field, rules) in [
        ("request_headers", &r.request_headers),
        ("response_headers", &r.response_headers),
    ] {
        for (name, value) in &rules.set {
            header_pair(
                name,
                Some(value),
                &format!("{p}.{field}.set.{name}"),
                at,
                errs,
            );
        }
        for (i, name) in rules.remove.iter().enumerate() {
            header_pair(name, None, &format!("{p}.{field}.remove[{i}]"), at, errs);
        }
    }
}

fn header_pair(name: &str, value: Option<&String>, p: &str, at: Locate, errs: &mut Vec<Problem>) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        errs.push(at(p, format!("bad header name {name:?}")));
    }
    if let Some(v) = value {
        if http::HeaderValue::from_str(v).is_err() {
            errs.push(at(p, format!("bad header value {v:?}")));
        }
    }
}

/// Route and service names become metric label values and URL segments.
pub(super) fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub(super) use super::suggest::closest;

#[cfg(test)]
mod tests {
    use crate::config::load_str;

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
        assert_eq!(c.routes[0].service, "trading");
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
        let text = "routes:\n  - {name: api, service: social}\nservices:\n  social:\n    discovery: redis\n";
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
}
