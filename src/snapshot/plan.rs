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
use crate::identity::spec::AuthSpec;
use crate::identity::Directory;
use crate::mirror::MirrorSpec;
use crate::policy::compress::Compress;
use crate::policy::concurrency::ConcurrencySpec;
use crate::policy::cors::Cors;
use crate::policy::headers::HeaderEdits;
use crate::policy::ip_rules::IpRuleSpec;
use crate::ratelimit::RuleSpec;
use crate::redis_client::Topology;
use crate::retry::RetryPolicy;
use crate::router::{Matcher, PathRewrite, Router};
use crate::split::SplitSpec;
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
    /// Static consumers.
    pub directory: Arc<Directory>,
    pub auth: BTreeMap<String, Arc<AuthSpec>>,
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
    pub destination: Destination,
    /// A sampled copy of the requests to another service.
    pub mirror: Option<MirrorSpec>,
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
    /// Names from `auth`, tried in order.
    pub auth: Vec<String>,
    pub allow_groups: Vec<String>,
}

/// Where a route's requests end: services (one, or a split), or the gateway's own answer.
pub enum Destination {
    Services(SplitSpec),
    Answer(Answer),
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
        let directory = Arc::new(Directory::compile(&config.consumers, problems));
        let auth = config
            .auth
            .iter()
            .map(|(name, a)| (name.clone(), Arc::new(AuthSpec::compile(name, a, problems))))
            .collect();
        sections::identity(&config, problems);
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
            directory,
            auth,
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
    check_identity(r, at, config, problems);
    if r.timeout.is_some_and(|t| t.is_zero()) {
        problems.push(format!("{at}.timeout"), "must be greater than zero");
    }
    let matcher = Matcher::compile(&r.matcher, &format!("{at}.match"), problems);
    let plan = RoutePlan {
        name: r.name.clone(),
        destination: match (
            &r.service,
            Answer::compile(r.redirect.as_ref(), r.respond.as_ref(), at, problems),
        ) {
            (Some(service), _) => Destination::Services(SplitSpec::single(service)),
            _ if !r.split.is_empty() => Destination::Services(SplitSpec::compile(
                &r.split,
                r.sticky.as_ref(),
                at,
                problems,
            )),
            (None, Some(answer)) => Destination::Answer(answer),
            // `check_target` reported it; the plan is discarded.
            (None, None) => Destination::Services(SplitSpec::single("")),
        },
        mirror: r
            .mirror
            .as_ref()
            .map(|m| MirrorSpec::compile(m, &format!("{at}.mirror"), problems)),
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
        auth: r.auth.clone(),
        allow_groups: r.allow_groups.clone(),
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

/// Known auth policies; what needs a consumer (`allow_groups`, `per: consumer`, a
/// `key: consumer` rate limit) only on a route that authenticates.
fn check_identity(r: &RouteConfig, at: &str, config: &Config, problems: &mut Problems) {
    for (i, name) in r.auth.iter().enumerate() {
        known(
            name,
            &config.auth,
            "auth policy",
            &format!("{at}.auth[{i}]"),
            problems,
        );
    }
    if !r.auth.is_empty() {
        return;
    }
    if !r.allow_groups.is_empty() {
        problems.push(
            format!("{at}.allow_groups"),
            "needs `auth` on the route (groups belong to authenticated consumers)",
        );
    }
    if r.sticky.as_ref().is_some_and(|s| s.consumer) {
        problems.push(
            format!("{at}.sticky.consumer"),
            "needs `auth` on the route (only an authenticated caller has a consumer)",
        );
    }
    if r.concurrency.as_ref().is_some_and(|c| c.per == "consumer") {
        problems.push(
            format!("{at}.concurrency.per"),
            "`consumer` needs `auth` on the route",
        );
    }
    for (i, name) in r.rate_limits.iter().enumerate() {
        if config
            .rate_limits
            .get(name)
            .is_some_and(|l| l.key == "consumer")
        {
            problems.push(
                format!("{at}.rate_limits[{i}]"),
                format!("rule {name:?} counts by consumer: the route needs `auth`"),
            );
        }
    }
}

/// Exactly one of `service`, `split`, `redirect` and `respond`; known services; nothing that
/// only a service would use on a route the gateway answers itself.
fn check_target(r: &RouteConfig, at: &str, config: &Config, problems: &mut Problems) {
    let targets = [
        r.service.is_some(),
        !r.split.is_empty(),
        r.redirect.is_some(),
        r.respond.is_some(),
    ];
    match targets.iter().filter(|t| **t).count() {
        0 => problems.push(
            format!("{at}.service"),
            "a route needs one of `service`, `split`, `redirect` and `respond`",
        ),
        1 => {}
        _ => problems.push(
            at.to_string(),
            "a route has exactly one of `service`, `split`, `redirect` and `respond`",
        ),
    }
    if r.sticky.is_some() && r.split.is_empty() {
        problems.push(
            format!("{at}.sticky"),
            "only applies to a route with a `split`",
        );
    }
    let known_service = |service: &str, at: String, problems: &mut Problems| {
        if !config.services.contains_key(service) {
            let hint = config::suggest::hint(service, config.services.keys().map(String::as_str));
            problems.push(at, format!("unknown service {service:?}{hint}"));
        }
    };
    for (i, entry) in r.split.iter().enumerate() {
        known_service(&entry.service, format!("{at}.split[{i}].service"), problems);
    }
    if let Some(mirror) = &r.mirror {
        known_service(&mirror.service, format!("{at}.mirror.service"), problems);
    }
    if let Some(service) = &r.service {
        known_service(service, format!("{at}.service"), problems);
        return;
    }
    if !r.split.is_empty() {
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
        ("mirror", r.mirror.is_some()),
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
mod tests;
