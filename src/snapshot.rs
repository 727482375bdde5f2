//! An immutable, fully compiled view of one configuration: route table, per-route targets and
//! metric handles, upstreams, trusted proxies. Requests load it once and keep it to the end.

use crate::config::{Config, Discovery};
use crate::forwarding::TrustedProxies;
use crate::ratelimit::limiter::Rule;
use crate::ratelimit::Limits;
use crate::router::Router;
use crate::telemetry::kpi::Kpis;
use crate::telemetry::metrics::{RouteMetrics, UNMATCHED_ROUTE};
use crate::upstream::Upstream;
use pingora_load_balancing::HealthRegistry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// What a matched route sends traffic to, and where it counts it.
pub struct RouteTarget {
    pub upstream: Arc<Upstream>,
    pub metrics: RouteMetrics,
    /// The route's rate limits (possibly none).
    pub limits: Limits,
}

/// The configuration in force.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Content hash of the configuration (see [`crate::config::content_hash`]).
    pub hash: String,
    pub router: Router,
    /// Parallel to `router.routes()`.
    pub targets: Vec<RouteTarget>,
    /// Metrics of requests that matched no route.
    pub unmatched: RouteMetrics,
    pub services: BTreeMap<String, Arc<Upstream>>,
    /// Business KPIs, per route.
    pub kpis: Kpis,
    /// Compiled rate-limit rules by name.
    pub rules: BTreeMap<String, Arc<Rule>>,
    pub trusted: TrustedProxies,
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// Compiles `config`, reusing upstreams of `previous` whose service section is unchanged.
    /// The returned upstreams that are new still need [`Upstream::refresh`]; see [`Snapshot::fresh_upstreams`].
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        registry: &Arc<HealthRegistry>,
    ) -> Self {
        let services: BTreeMap<String, Arc<Upstream>> = config
            .services
            .iter()
            .map(|(name, svc)| {
                let reused = previous
                    .and_then(|p| p.services.get(name))
                    .filter(|u| u.config == *svc)
                    .cloned();
                let upstream = reused.unwrap_or_else(|| {
                    // A changed service keeps the registry entries it had until the next pass.
                    let carried = match svc.discovery {
                        Discovery::Redis => previous
                            .and_then(|p| p.services.get(name))
                            .map(|u| u.registrations())
                            .unwrap_or_default(),
                        Discovery::Static => Vec::new(),
                    };
                    Arc::new(Upstream::new(name, svc, registry, carried))
                });
                (name.clone(), upstream)
            })
            .collect();
        let replicas = config.redis.as_ref().map_or(1, |r| r.replicas);
        let rules: BTreeMap<String, Arc<Rule>> = config
            .rate_limits
            .iter()
            .map(|(name, cfg)| {
                let reused = previous
                    .and_then(|p| p.rules.get(name))
                    .filter(|r| r.unchanged(cfg, replicas))
                    .cloned();
                let rule = reused.unwrap_or_else(|| Arc::new(Rule::new(name, cfg, replicas)));
                (name.clone(), rule)
            })
            .collect();
        let router = Router::new(&config.routes);
        let targets = router
            .routes()
            .iter()
            .filter_map(|r| {
                let names = config
                    .routes
                    .iter()
                    .find(|c| c.name == r.name)
                    .map_or(&[][..], |c| &c.rate_limits[..]);
                let attached = names.iter().filter_map(|n| rules.get(n).cloned()).collect();
                Some(RouteTarget {
                    upstream: services.get(&r.service)?.clone(),
                    metrics: RouteMetrics::new(&r.name),
                    limits: Limits::new(&r.name, attached),
                })
            })
            .collect();
        let route_names: Vec<&str> = router.routes().iter().map(|r| r.name.as_str()).collect();
        let kpis = Kpis::new(&config, &route_names);
        let hash = crate::config::content_hash(&serde_json::to_vec(&config).unwrap_or_default());
        Self {
            hash,
            router,
            targets,
            unmatched: RouteMetrics::new(UNMATCHED_ROUTE),
            services,
            kpis,
            rules,
            trusted: TrustedProxies::new(&config.server.trusted_proxies),
            config: Arc::new(config),
            loaded_at: SystemTime::now(),
        }
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

    /// Removes metric series of routes and services that `next` no longer has.
    pub fn retire_metrics(&self, next: &Snapshot) {
        for (route, target) in self.router.routes().iter().zip(&self.targets) {
            if !next.router.routes().iter().any(|r| r.name == route.name) {
                target.metrics.remove();
                crate::telemetry::ratelimit::remove_route(&route.name);
            }
        }
        for name in self.rules.keys() {
            if !next.rules.contains_key(name) {
                crate::telemetry::ratelimit::remove_rule(name);
            }
        }
        for (name, upstream) in &self.services {
            let Some(successor) = next.services.get(name) else {
                upstream.metrics.remove();
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
                    upstream.metrics.remove_instance(&gone.addr.to_string());
                }
            }
        }
    }
}
