//! Business KPIs: requests matching a KPI's route, method, status and header criteria count in
//! one family, `portico_business_events_total{kpi, route}`. Matchers are compiled once per
//! snapshot, with each route's candidate KPIs and counter handles resolved up front, so the
//! request path only compares.

use super::metrics::{family, remove_matching};
use crate::config::{Config, HeaderMatch, KpiConfig, StatusMatch};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::{Arc, LazyLock};

family!(BUSINESS_EVENTS: IntCounterVec = register_int_counter_vec!(
    "portico_business_events_total",
    "Requests matching a business KPI, by KPI and route.",
    &["kpi", "route"]
));

/// Route label of a KPI's routes beyond its `max_series`.
pub const OTHER_ROUTE: &str = "_other";

/// Registers the family.
pub fn init() {
    LazyLock::force(&BUSINESS_EVENTS);
}

/// One compiled KPI.
#[derive(Debug)]
pub struct Kpi {
    pub name: String,
    methods: Vec<Method>,
    status: Option<StatusMatch>,
    request_header: Option<(HeaderName, Vec<HeaderValue>)>,
    response_header: Option<(HeaderName, Vec<HeaderValue>)>,
    /// Published as a business event too.
    pub publish: bool,
}

impl Kpi {
    fn compile(cfg: &KpiConfig, publish: bool) -> Self {
        let header = |h: &Option<HeaderMatch>| {
            h.as_ref().and_then(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
                let values = h.values.iter().filter_map(|v| v.parse().ok()).collect();
                Some((name, values))
            })
        };
        Self {
            name: cfg.name.clone(),
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| m.to_ascii_uppercase().parse().ok())
                .collect(),
            status: cfg.status.clone(),
            request_header: header(&cfg.request_header),
            response_header: header(&cfg.response_header),
            publish,
        }
    }

    fn matches(
        &self,
        method: &Method,
        status: u16,
        req: &HeaderMap,
        resp: Option<&HeaderMap>,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        let status_ok = match &self.status {
            None => true,
            Some(StatusMatch::Class(c)) => {
                c.as_bytes().first() == Some(&(b'0' + (status / 100) as u8))
            }
            Some(StatusMatch::Codes(codes)) => codes.contains(&status),
        };
        status_ok
            && header_ok(&self.request_header, Some(req))
            && header_ok(&self.response_header, resp)
    }
}

fn header_ok(rule: &Option<(HeaderName, Vec<HeaderValue>)>, headers: Option<&HeaderMap>) -> bool {
    let Some((name, allowed)) = rule else {
        return true;
    };
    let Some(value) = headers.and_then(|h| h.get(name)) else {
        return false;
    };
    allowed.is_empty() || allowed.contains(value)
}

/// Every KPI of a snapshot, with per-route candidates.
#[derive(Default)]
pub struct Kpis {
    /// Parallel to the router's routes: (KPI, its counter for that route).
    per_route: Vec<Vec<(Arc<Kpi>, IntCounter)>>,
}

impl Kpis {
    /// Compiles `config.kpis` for `routes` (route names in router order), pre-creating each
    /// KPI's series up to its cap.
    pub fn new(config: &Config, routes: &[&str]) -> Self {
        let published = |name: &str| {
            config
                .events
                .as_ref()
                .is_some_and(|e| e.kpis.is_empty() || e.kpis.iter().any(|k| k == name))
        };
        let mut per_route: Vec<Vec<(Arc<Kpi>, IntCounter)>> = vec![Vec::new(); routes.len()];
        for cfg in &config.kpis {
            let kpi = Arc::new(Kpi::compile(cfg, published(&cfg.name)));
            let mut series = 0;
            for (i, route) in routes.iter().enumerate() {
                if !cfg.routes.is_empty() && !cfg.routes.iter().any(|r| r == route) {
                    continue;
                }
                series += 1;
                let label = if series <= cfg.max_series {
                    route
                } else {
                    OTHER_ROUTE
                };
                let counter = BUSINESS_EVENTS.with_label_values(&[&cfg.name, label]);
                per_route[i].push((kpi.clone(), counter));
            }
        }
        Self { per_route }
    }

    /// Counts every KPI the finished request matches and returns those to publish.
    pub fn record<'a>(
        &'a self,
        route: usize,
        method: &Method,
        status: u16,
        req: &HeaderMap,
        resp: Option<&HeaderMap>,
    ) -> impl Iterator<Item = &'a Kpi> + 'a {
        let candidates = self.per_route.get(route).map_or(&[][..], |v| &v[..]);
        let mut matched: Vec<&Kpi> = Vec::new();
        for (kpi, counter) in candidates {
            if kpi.matches(method, status, req, resp) {
                counter.inc();
                if kpi.publish {
                    matched.push(kpi);
                }
            }
        }
        matched.into_iter()
    }

    /// Whether no route has a KPI.
    pub fn is_empty(&self) -> bool {
        self.per_route.iter().all(Vec::is_empty)
    }
}

/// Removes every series of `route`.
pub fn remove_route(route: &str) {
    remove_matching(&BUSINESS_EVENTS, "route", route);
}

/// Removes every series of KPIs absent from `config`.
pub fn retire(old: &Config, new: &Config) {
    for k in &old.kpis {
        if !new.kpis.iter().any(|n| n.name == k.name) {
            remove_matching(&BUSINESS_EVENTS, "kpi", &k.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str("k.yaml", text).unwrap()
    }

    const BASE: &str = "routes:\n  - {name: orders, service: s}\n  - {name: pay, service: s}\nservices:\n  s: {instances: [\"127.0.0.1:1\"]}\n";

    #[test]
    fn kpis_match_route_method_status_and_headers() {
        let c = config(&format!(
            "{BASE}kpis:\n  - {{name: orders_placed, routes: [orders], methods: [POST], status: 2xx}}\n  - {{name: pay_ok, routes: [pay], status: [200, 201], response_header: {{name: x-payment-status, values: [succeeded]}}}}\n  - {{name: active_users, request_header: {{name: x-user-id}}}}\n"
        ));
        let k = Kpis::new(&c, &["orders", "pay"]);
        let mut req = HeaderMap::new();
        let names = |route, method: Method, status, req: &HeaderMap, resp: Option<&HeaderMap>| {
            let _ = k.record(route, &method, status, req, resp).count();
        };
        let count = |kpi: &str, route: &str| BUSINESS_EVENTS.with_label_values(&[kpi, route]).get();
        names(0, Method::POST, 201, &req, None);
        names(0, Method::GET, 200, &req, None);
        names(0, Method::POST, 500, &req, None);
        assert_eq!(count("orders_placed", "orders"), 1);
        let mut resp = HeaderMap::new();
        resp.insert("x-payment-status", "failed".parse().unwrap());
        names(1, Method::POST, 200, &req, Some(&resp));
        resp.insert("x-payment-status", "succeeded".parse().unwrap());
        names(1, Method::POST, 200, &req, Some(&resp));
        assert_eq!(count("pay_ok", "pay"), 1);
        req.insert("x-user-id", "u1".parse().unwrap());
        names(1, Method::GET, 200, &req, None);
        assert_eq!(count("active_users", "pay"), 1);
    }

    #[test]
    fn series_beyond_the_cap_go_to_other() {
        let c = config(&format!(
            "{BASE}kpis:\n  - {{name: capped_kpi, max_series: 1}}\n"
        ));
        let k = Kpis::new(&c, &["orders", "pay"]);
        let _ = k
            .record(1, &Method::GET, 200, &HeaderMap::new(), None)
            .count();
        assert_eq!(
            BUSINESS_EVENTS
                .with_label_values(&["capped_kpi", OTHER_ROUTE])
                .get(),
            1
        );
    }
}
