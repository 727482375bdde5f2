//! The compile step: a parsed configuration becomes a [`Plan`] — route matchers, rewrites,
//! retry policies, header edits, service specs, rate-limit rules, KPI matchers, trusted
//! networks — or the complete list of what is wrong with it. `portico validate`, start-up and
//! every reload run exactly this step. It has no effects: no DNS, no sockets, no metric series
//! (it only reads the TLS files a listener would load), so a
//! rejected file leaves nothing behind; [`super::Snapshot::build`] then turns a plan into live
//! state without parsing anything again.

use super::sections;
use crate::answer::Answer;
use crate::config::{self, Config, ConfigError, ConfigErrors, Parsed, Problems, RouteConfig};
use crate::forwarding::TrustedProxies;
use crate::policy::compress::Compress;
use crate::policy::concurrency::ConcurrencySpec;
use crate::policy::cors::Cors;
use crate::policy::headers::HeaderEdits;
use crate::policy::ip_rules::IpRuleSpec;
use crate::ratelimit::RuleSpec;
use crate::redis_client::Topology;
use crate::retry::RetryPolicy;
use crate::router::{Matcher, PathRewrite, Router};
use crate::telemetry::kpi::{self, KpiSpec};
use crate::upstream::ServiceSpec;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A compiled, valid configuration: only [`compile_file`] and [`compile_str`] make one, and only
/// from a file without a single problem (so [`super::Snapshot::build`] can rely on it).
pub struct Plan {
    pub config: Arc<Config>,
    /// Content hash of the configuration (see [`crate::config::content_hash`]).
    pub hash: String,
    pub router: Router<RoutePlan>,
    pub services: BTreeMap<String, ServiceSpec>,
    pub rules: BTreeMap<String, RuleSpec>,
    pub ip_rules: BTreeMap<String, Arc<IpRuleSpec>>,
    pub cors: BTreeMap<String, Arc<Cors>>,
    pub kpis: Vec<KpiSpec>,
    pub trusted: TrustedProxies,
    /// Where Redis is, when there is a `redis` section.
    pub redis: Option<Arc<Topology>>,
    /// Proof that the plan came from the compile step (construction stays in this file).
    #[allow(dead_code)]
    checked: Checked,
}

/// Only this file can make one.
struct Checked;

/// One compiled route, before it is attached to live upstreams and rules.
pub struct RoutePlan {
    pub name: String,
    /// The service, or what the gateway answers itself (exactly one is set).
    pub service: Option<String>,
    pub answer: Option<Answer>,
    /// Overrides the server's request body limit.
    pub max_request_body: Option<u64>,
    pub rewrite: PathRewrite,
    pub retry: RetryPolicy,
    /// Bound on the whole request, retries included.
    pub timeout: Option<Duration>,
    /// Names of the route's rate-limit rules, in order.
    pub rate_limits: Vec<String>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// Names from `ip_rules`, in order.
    pub ip: Vec<String>,
    /// Name from `cors`.
    pub cors: Option<String>,
    pub concurrency: Option<ConcurrencySpec>,
    pub compress: Option<Compress>,
}

/// Reads, parses and compiles a file; every error of the file, in file order.
pub fn compile_file(path: &Path) -> Result<Plan, ConfigErrors> {
    finish(config::parse_file(path)?)
}

/// Parses and compiles YAML text; `file` names it in errors.
pub fn compile_str(file: &str, text: &str) -> Result<Plan, ConfigErrors> {
    finish(config::parse_str(file, text)?)
}

/// Reads a gateway configuration file for where Redis is (`portico register --config`): the
/// whole file's schema, then its `redis` section compiled; `None` without a `redis` section.
pub fn compile_redis_file(path: &Path) -> Result<Option<Arc<Topology>>, ConfigErrors> {
    let parsed = config::parse_file(path)?;
    let mut problems = Problems::default();
    let topology = parsed
        .config
        .redis
        .as_ref()
        .and_then(|r| Topology::compile(r, &mut problems));
    located(parsed, problems).map(|()| topology.map(Arc::new))
}

/// Compiles a parsed file, adding the compile step's problems to the parse errors (except
/// where a parse error already speaks for the field).
fn finish(mut parsed: Parsed) -> Result<Plan, ConfigErrors> {
    let mut problems = Problems::default();
    let config = std::mem::take(&mut parsed.config);
    let plan = Plan::compile(config, &mut problems);
    located(parsed, problems).map(|()| plan)
}

/// The parse errors and the compile step's problems, located and in file order; `Ok` when
/// there are none.
fn located(parsed: Parsed, problems: Problems) -> Result<(), ConfigErrors> {
    let mut errors: Vec<ConfigError> = parsed.errors;
    errors.extend(
        problems
            .iter()
            .filter(|p| !parsed.document.covers(&p.path))
            .map(|p| parsed.document.locate(p)),
    );
    if errors.is_empty() {
        return Ok(());
    }
    config::sort_errors(&mut errors);
    Err(ConfigErrors(errors))
}

impl Plan {
    /// Compiles `config`; the plan is only valid when `problems` stays empty.
    fn compile(config: Config, problems: &mut Problems) -> Plan {
        sections::server(&config.server, problems);
        sections::redis(&config, problems);
        let redis = config
            .redis
            .as_ref()
            .and_then(|r| Topology::compile(r, problems))
            .map(Arc::new);
        sections::telemetry(&config, problems);
        let has_redis = config.redis.is_some();
        let replicas = config.redis.as_ref().and_then(|r| r.replicas);
        let services: BTreeMap<String, ServiceSpec> = config
            .services
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    ServiceSpec::compile(name, s, has_redis, problems),
                )
            })
            .collect();
        let rules: BTreeMap<String, RuleSpec> = config
            .rate_limits
            .iter()
            .map(|(name, r)| {
                let spec = RuleSpec::compile(name, r, has_redis, replicas, problems);
                (name.clone(), spec)
            })
            .collect();
        let ip_rules = config
            .ip_rules
            .iter()
            .map(|(name, r)| {
                let spec = IpRuleSpec::compile(name, r, has_redis, problems);
                (name.clone(), Arc::new(spec))
            })
            .collect();
        let cors = config
            .cors
            .iter()
            .map(|(name, c)| (name.clone(), Arc::new(Cors::compile(name, c, problems))))
            .collect();
        if config.routes.is_empty() {
            problems.push("routes", "at least one route is required");
        }
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !names.insert(r.name.as_str()) {
                problems.push(
                    format!("{at}.name"),
                    format!("duplicate route name {:?}", r.name),
                );
            }
            entries.push(compile_route(r, &at, &config, problems));
        }
        let route_names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        let kpis = kpi::compile(&config, &route_names, problems);
        let trusted = TrustedProxies::compile(&config.server.trusted_proxies, problems);
        let hash = config::content_hash(&serde_json::to_vec(&config).unwrap_or_default());
        Plan {
            hash,
            router: Router::new(entries),
            services,
            rules,
            ip_rules,
            cors,
            kpis,
            trusted,
            redis,
            config: Arc::new(config),
            checked: Checked,
        }
    }
}

fn compile_route(
    r: &RouteConfig,
    at: &str,
    config: &Config,
    problems: &mut Problems,
) -> (Matcher, RoutePlan) {
    if !config::is_label_safe(&r.name) {
        problems.push(
            format!("{at}.name"),
            "must be non-empty and use only [A-Za-z0-9_.-]",
        );
    }
    check_target(r, at, config, problems);
    for (i, name) in r.rate_limits.iter().enumerate() {
        known(
            name,
            &config.rate_limits,
            "rate limit",
            &format!("{at}.rate_limits[{i}]"),
            problems,
        );
    }
    for (i, name) in r.ip.iter().enumerate() {
        known(
            name,
            &config.ip_rules,
            "IP rule",
            &format!("{at}.ip[{i}]"),
            problems,
        );
    }
    if let Some(name) = &r.cors {
        known(
            name,
            &config.cors,
            "CORS policy",
            &format!("{at}.cors"),
            problems,
        );
    }
    if r.timeout.is_some_and(|t| t.is_zero()) {
        problems.push(format!("{at}.timeout"), "must be greater than zero");
    }
    let matcher = Matcher::compile(&r.matcher, &format!("{at}.match"), problems);
    let plan = RoutePlan {
        name: r.name.clone(),
        service: r.service.clone(),
        answer: Answer::compile(r.redirect.as_ref(), r.respond.as_ref(), at, problems),
        max_request_body: r.max_request_body,
        rewrite: PathRewrite::compile(r, at, problems),
        retry: RetryPolicy::compile(&r.retry, &format!("{at}.retry"), problems),
        timeout: r.timeout,
        rate_limits: r.rate_limits.clone(),
        request_headers: HeaderEdits::compile(
            &r.request_headers,
            &format!("{at}.request_headers"),
            problems,
        ),
        response_headers: HeaderEdits::compile(
            &r.response_headers,
            &format!("{at}.response_headers"),
            problems,
        ),
        ip: r.ip.clone(),
        cors: r.cors.clone(),
        concurrency: r
            .concurrency
            .as_ref()
            .map(|c| ConcurrencySpec::compile(c, &format!("{at}.concurrency"), problems)),
        compress: r
            .compress
            .as_ref()
            .map(|c| Compress::compile(c, &format!("{at}.compress"), problems)),
    };
    (matcher, plan)
}

/// Reports `name` when `defined` has no entry of that name (with the nearest one).
fn known<T>(
    name: &str,
    defined: &BTreeMap<String, T>,
    what: &str,
    at: &str,
    problems: &mut Problems,
) {
    if !defined.contains_key(name) {
        let hint = config::suggest::hint(name, defined.keys().map(String::as_str));
        problems.push(at, format!("unknown {what} {name:?}{hint}"));
    }
}

/// Exactly one of `service`, `redirect` and `respond`; a known service; nothing that only a
/// service would use on a route the gateway answers itself.
fn check_target(r: &RouteConfig, at: &str, config: &Config, problems: &mut Problems) {
    let targets = [
        r.service.is_some(),
        r.redirect.is_some(),
        r.respond.is_some(),
    ];
    match targets.iter().filter(|t| **t).count() {
        0 => problems.push(
            format!("{at}.service"),
            "a route needs one of `service`, `redirect` and `respond`",
        ),
        1 => {}
        _ => problems.push(
            at.to_string(),
            "a route has exactly one of `service`, `redirect` and `respond`",
        ),
    }
    if let Some(service) = &r.service {
        if !config.services.contains_key(service) {
            let hint = config::suggest::hint(service, config.services.keys().map(String::as_str));
            problems.push(
                format!("{at}.service"),
                format!("unknown service {service:?}{hint}"),
            );
        }
        return;
    }
    let unused = [
        ("strip_prefix", r.strip_prefix),
        ("rewrite", r.rewrite.is_some()),
        ("timeout", r.timeout.is_some()),
        ("retry", r.retry != config::RetryConfig::default()),
        (
            "request_headers",
            r.request_headers != config::HeaderRules::default(),
        ),
        ("compress", r.compress.is_some()),
    ];
    for (field, set) in unused {
        if set {
            problems.push(
                format!("{at}.{field}"),
                "only applies to a route with a `service`",
            );
        }
    }
}

#[cfg(test)]
mod tests {
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
            "f:3:5: routes[0].service: a route needs one of `service`, `redirect` and `respond`",
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
            "routes[0].concurrency.per: `consumer` needs identity",
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

    #[test]
    fn one_mistake_is_one_error() {
        let base = "routes:\n  - {name: a, service: s}\nservices:\n  s:\n    instances: [\"127.0.0.1:1\"]\n";
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
        let misspelt = "routes:\n  - {name: a, service: s}\nservices:\n  s:\n    instancs: [\"127.0.0.1:1\"]\n";
        let errs = load_str("f", misspelt).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].message.contains("did you mean `instances`?"));
    }
}
