//! One configuration in force: its compiled [`Plan`] turned into live state — routes that each
//! hold their own upstream, metric handles and policy chain; upstreams; rate-limit rules;
//! trusted networks. Requests load a snapshot once and keep it to their end ([`Current`]).
//!
//! Building is infallible: everything that can be wrong with a file was found by
//! [`Plan::compile`]. It reuses what the previous snapshot had where the configuration did not
//! change (an upstream's balancer, health and breakers; a rule's buckets).

mod identity;
mod plan;
mod sections;

pub use plan::{compile_file, compile_redis_file, compile_str, Destination, Plan, RoutePlan};

use crate::answer::Answer;
use crate::config::{Config, Discovery};
use crate::forwarding::TrustedProxies;
use crate::mirror::Mirror;
use crate::policy::concurrency::Concurrency;
use crate::policy::cors::Cors;
use crate::policy::ip_rules::IpRuleSpec;
use crate::policy::ip_rules::{IpRule, SharedDeny};
use crate::policy::kpis::KpiCounters;
use crate::policy::ratelimit::RateLimit;
use crate::policy::{Access, Admission, Chain, ChainBuilder, Log, Mode, RequestEdit, ResponseEdit};
use crate::ratelimit::shared::SharedStore;
use crate::ratelimit::Rule;
use crate::retry::RetryPolicy;
use crate::router::{PathRewrite, Router};
use crate::split::Split;
use crate::telemetry::kpi::Kpi;
use crate::telemetry::metrics::{RouteMetrics, UNMATCHED_ROUTE};
use crate::telemetry::query_redaction::QueryRedaction;
use crate::upstream::{Resolved, Upstream};
use arc_swap::ArcSwap;
use pingora_load_balancing::HealthRegistry;
use prometheus::IntCounter;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The snapshot in force. Requests load it once and keep it to their end; the gateway
/// replaces it on reload; background services (registry watcher, event publisher, listeners)
/// read it through this handle rather than through the whole gateway.
pub struct Current(ArcSwap<Snapshot>);

impl Current {
    /// A handle holding `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self(ArcSwap::from_pointee(snapshot))
    }

    /// The snapshot in force (one atomic load).
    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Puts `next` in force; requests already running keep the one they loaded.
    pub fn replace(&self, next: Snapshot) {
        self.0.store(Arc::new(next));
    }
}

/// A route in force: what it does to a request and where it sends it.
pub struct Route {
    name: String,
    target: Target,
    mirror: Option<Mirror>,
    rewrite: PathRewrite,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    body_limit: Option<u64>,
    metrics: RouteMetrics,
    policies: Chain,
}

/// Where a route's requests end: services' instances (one, or a split), or an answer the
/// gateway makes.
enum Target {
    Services(Split),
    Answer(Answer),
}

impl Route {
    /// The route's name (the `route` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the service at `side` of the route's split (0 for a route with one
    /// service; the access log's `service`); `None` when the gateway answers.
    pub fn service(&self, side: usize) -> Option<&str> {
        self.split().map(|s| s.side(side).service())
    }

    /// The route's services; `None` when the gateway answers.
    pub fn split(&self) -> Option<&Split> {
        match &self.target {
            Target::Services(split) => Some(split),
            Target::Answer(_) => None,
        }
    }

    /// Where sampled copies of the requests go.
    pub fn mirror(&self) -> Option<&Mirror> {
        self.mirror.as_ref()
    }

    /// How the upstream path is derived.
    pub fn rewrite(&self) -> &PathRewrite {
        &self.rewrite
    }

    /// Which failed attempts are retried.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Bound on the whole request, retries included.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The instances of the service at `side` of the route's split; `None` when the gateway
    /// answers.
    pub fn upstream(&self, side: usize) -> Option<&Arc<Upstream>> {
        self.split().map(|s| s.side(side).upstream())
    }

    /// What the gateway answers instead of a service.
    pub fn answer(&self) -> Option<&Answer> {
        match &self.target {
            Target::Answer(answer) => Some(answer),
            Target::Services(_) => None,
        }
    }

    /// The route's own request body limit, when it overrides the server's.
    pub fn body_limit(&self) -> Option<u64> {
        self.body_limit
    }

    /// The route's metric handles.
    pub fn metrics(&self) -> &RouteMetrics {
        &self.metrics
    }

    /// The route's policy chain.
    pub fn policies(&self) -> &Chain {
        &self.policies
    }
}

/// The configuration in force. Only [`Snapshot::build`] makes one, so its routes always lead
/// to its own services and rules.
pub struct Snapshot {
    config: Arc<Config>,
    hash: String,
    router: Router<Route>,
    unmatched: RouteMetrics,
    services: BTreeMap<String, Arc<Upstream>>,
    rules: BTreeMap<String, Arc<Rule>>,
    trusted: TrustedProxies,
    /// The largest request body any route accepts (checked before routing).
    body_ceiling: u64,
    /// Some IP rule reads the Redis deny set.
    uses_redis_deny: bool,
    /// Query parameters blanked in spans and the access log.
    query_redaction: QueryRedaction,
    loaded_at: SystemTime,
}

/// What a build takes from the gateway besides the plan and the previous snapshot.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    /// The health registry every balancer reports into.
    pub health: &'a Arc<HealthRegistry>,
    /// The Redis store of `store: redis` rate limits.
    pub limiter: Option<&'a Arc<SharedStore>>,
    /// The deny set read from Redis, for IP rules with `deny_from_redis`.
    pub ip_deny: &'a Arc<SharedDeny>,
    /// JWKS sources of JWT policies (kept across snapshots).
    pub key_sources: &'a Arc<crate::identity::jwks::KeySources>,
    /// Outbound HTTP calls of auth policies.
    pub caller: &'a Arc<crate::http_call::Caller>,
    /// Consumers read from Redis.
    pub stored_consumers: &'a Arc<crate::identity::StoredConsumers>,
}

impl Snapshot {
    /// Builds live state for `plan`, reusing what `previous` had where nothing changed. New
    /// upstreams still need [`Upstream::resolve_hosts`] and [`Upstream::refresh`]; see
    /// [`Snapshot::fresh_upstreams`].
    pub fn build(plan: Plan, previous: Option<&Snapshot>, shared: Shared<'_>) -> Self {
        let services = build_services(&plan, previous, shared);
        let identity = identity::Mechanisms::new(&plan, shared);
        let rules: BTreeMap<String, Arc<Rule>> = plan
            .rules
            .into_iter()
            .map(|(name, spec)| {
                let reused = previous
                    .and_then(|p| p.rules.get(&name))
                    .filter(|r| r.serves(&spec))
                    .cloned();
                let rule =
                    reused.unwrap_or_else(|| Arc::new(Rule::new(spec, shared.limiter.cloned())));
                (name, rule)
            })
            .collect();
        let names: Vec<&str> = plan
            .router
            .routes()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let mut kpis = crate::telemetry::kpi::counters(&plan.kpis, &names).into_iter();
        let policies = Policies {
            rules: &rules,
            ip_rules: &plan.ip_rules,
            cors: &plan.cors,
            ip_deny: shared.ip_deny,
            identity,
        };
        let uses_redis_deny = plan.ip_rules.values().any(|r| r.deny_from_redis);
        let query_redaction =
            QueryRedaction::new(plan.config.auth.values().filter_map(|a| a.query.clone()));
        let router = plan.router.map(|route| {
            let kpis = kpis.next().unwrap_or_default();
            build_route(route, &services, &policies, kpis)
        });
        let server_limit = plan.config.server.limits.max_request_body;
        let body_ceiling = router
            .routes()
            .iter()
            .filter_map(Route::body_limit)
            .fold(server_limit, u64::max);
        Self {
            body_ceiling,
            uses_redis_deny,
            query_redaction,
            hash: plan.hash,
            router,
            unmatched: RouteMetrics::new(UNMATCHED_ROUTE),
            services,
            rules,
            trusted: plan.trusted,
            config: plan.config,
            loaded_at: SystemTime::now(),
        }
    }

    /// The configuration as written (after `${VAR}` expansion).
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Content hash of the configuration (see [`crate::config::content_hash`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The route table.
    pub fn router(&self) -> &Router<Route> {
        &self.router
    }

    /// Metrics of requests that matched no route.
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }

    /// Upstreams by service name.
    pub fn services(&self) -> &BTreeMap<String, Arc<Upstream>> {
        &self.services
    }

    /// Live rate-limit rules by name.
    pub fn rules(&self) -> &BTreeMap<String, Arc<Rule>> {
        &self.rules
    }

    /// Networks whose forwarding headers are believed.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// Whether some IP rule reads the Redis deny set (else it is not polled).
    pub fn uses_redis_deny(&self) -> bool {
        self.uses_redis_deny
    }

    /// Query parameters that carry secrets, for spans and the access log.
    pub fn query_redaction(&self) -> &QueryRedaction {
        &self.query_redaction
    }

    /// The largest request body any route accepts.
    pub fn body_ceiling(&self) -> u64 {
        self.body_ceiling
    }

    /// When this snapshot was built.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Upstreams of `self` that were not carried over from `previous`.
    pub fn fresh_upstreams<'a>(
        &'a self,
        previous: Option<&'a Snapshot>,
    ) -> impl Iterator<Item = &'a Arc<Upstream>> {
        self.services.iter().filter_map(move |(name, u)| {
            let carried = previous
                .and_then(|p| p.services.get(name))
                .is_some_and(|old| Arc::ptr_eq(old, u));
            (!carried).then_some(u)
        })
    }

    /// Removes metric series of routes, rules and services that `next` no longer has.
    pub fn retire_metrics(&self, next: &Snapshot) {
        for route in self.router.routes() {
            if !next
                .router()
                .routes()
                .iter()
                .any(|r| r.name() == route.name())
            {
                route.metrics().remove();
                crate::telemetry::ratelimit::remove_route(route.name());
                crate::telemetry::policy::remove_route(route.name());
                crate::telemetry::auth::remove_route(route.name());
            }
        }
        for name in self.rules.keys() {
            if !next.rules().contains_key(name) {
                crate::telemetry::ratelimit::remove_rule(name);
            }
        }
        for (name, upstream) in &self.services {
            let Some(successor) = next.services().get(name) else {
                upstream.metrics().remove();
                continue;
            };
            let kept = successor.instance_set().get();
            for gone in upstream
                .instance_set()
                .get()
                .backends
                .difference(&kept.backends)
            {
                if !kept.backends.iter().any(|b| b.addr == gone.addr) {
                    upstream.metrics().remove_instance(&gone.addr.to_string());
                }
            }
        }
    }
}

/// Upstreams for the plan's services: an unchanged service keeps its upstream; a changed one
/// starts with the registry entries and resolved host names its predecessor had.
fn build_services(
    plan: &Plan,
    previous: Option<&Snapshot>,
    shared: Shared<'_>,
) -> BTreeMap<String, Arc<Upstream>> {
    plan.services
        .iter()
        .map(|(name, spec)| {
            let before = previous.and_then(|p| p.services.get(name));
            if let Some(same) = before.filter(|u| *u.config() == spec.config) {
                return (name.clone(), same.clone());
            }
            let carried = match spec.config.discovery {
                Discovery::Redis => before.map(|u| u.registrations()).unwrap_or_default(),
                Discovery::Static => Vec::new(),
            };
            let resolved: Resolved = before.map(|u| u.resolved_hosts()).unwrap_or_default();
            let upstream = Upstream::new(spec, shared.health, carried, resolved);
            (name.clone(), Arc::new(upstream))
        })
        .collect()
}

/// What routes' policies are built from.
struct Policies<'a> {
    rules: &'a BTreeMap<String, Arc<Rule>>,
    ip_rules: &'a BTreeMap<String, Arc<IpRuleSpec>>,
    cors: &'a BTreeMap<String, Arc<Cors>>,
    ip_deny: &'a Arc<SharedDeny>,
    identity: identity::Mechanisms,
}

fn build_route(
    mut plan: RoutePlan,
    services: &BTreeMap<String, Arc<Upstream>>,
    p: &Policies<'_>,
    kpis: Vec<(Arc<Kpi>, IntCounter)>,
) -> Route {
    let mut chain = ChainBuilder::new(&plan.name);
    // IP rules first: a blocked client gets nothing, not even a CORS preflight answer.
    for spec in plan.ip.iter().filter_map(|n| p.ip_rules.get(n)) {
        let mode = Mode::shadow_if(spec.shadow);
        chain = chain.access(Access::Ip(IpRule::new(spec.clone(), p.ip_deny)), mode);
    }
    let cors = plan.cors.as_ref().and_then(|n| p.cors.get(n));
    if let Some(cors) = cors {
        chain = chain.access(Access::Cors(cors.clone()), Mode::shadow_if(cors.shadow()));
    }
    // After CORS: a preflight carries no credentials and is answered before authentication.
    if let Some(auth) = p.identity.access(&plan) {
        chain = chain.access(Access::Auth(auth), Mode::Enforce);
    }
    for rule in plan.rate_limits.iter().filter_map(|n| p.rules.get(n)) {
        let policy = RateLimit::new(&plan.name, rule.clone());
        let mode = policy.mode();
        chain = chain.admission(Admission::RateLimit(policy), mode);
    }
    if let Some(spec) = plan.concurrency.take() {
        let policy = Concurrency::new(&plan.name, spec);
        let mode = Mode::shadow_if(policy.shadow());
        chain = chain.admission(Admission::Concurrency(policy), mode);
    }
    if let Some(edit) = p.identity.upstream_edit(&plan) {
        chain = chain.upstream_request(RequestEdit::Identity(edit));
    }
    chain = chain
        .upstream_request(RequestEdit::Headers(plan.request_headers))
        .response(ResponseEdit::Headers(plan.response_headers));
    if let Some(cors) = cors {
        chain = chain.response(ResponseEdit::Cors(cors.clone()));
    }
    if let Some(compress) = plan.compress.take() {
        crate::telemetry::policy::compression_series(&plan.name);
        chain = chain.compress(compress);
    }
    let policies = chain.log(Log::Kpis(KpiCounters::new(kpis))).build();
    let target = match plan.destination {
        Destination::Services(spec) => Target::Services(Split::new(&plan.name, spec, services)),
        Destination::Answer(answer) => Target::Answer(answer),
    };
    let mirror = plan
        .mirror
        .map(|spec| Mirror::new(&plan.name, spec, services));
    Route {
        target,
        mirror,
        body_limit: plan.max_request_body,
        metrics: RouteMetrics::new(&plan.name),
        name: plan.name,
        rewrite: plan.rewrite,
        retry: plan.retry,
        timeout: plan.timeout,
        policies,
    }
}
