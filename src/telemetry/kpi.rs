//! Business KPIs: requests matching a KPI's route, method, status and header criteria count in
//! one family, `portico_business_events_total{kpi, route}`. Matchers are compiled once per
//! configuration; each route's candidate KPIs and counter handles are resolved when the
//! snapshot is built (they are the route's log-phase policy), so the request path only
//! compares.

use super::metrics::{family, remove_matching};
use crate::config::{Config, HeaderMatch, KpiConfig, Problems, StatusMatch};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

family!(BUSINESS_EVENTS: IntCounterVec = register_int_counter_vec!(
    "portico_business_events_total",
    "Requests matching a business KPI, by KPI and route.",
    &["kpi", "route"]
));

family!(BUSINESS_EVENTS_BY_CONSUMER: IntCounterVec = register_int_counter_vec!(
    "portico_business_events_by_consumer_total",
    "Requests matching a business KPI with by_consumer, by KPI and authenticated consumer (_anonymous: none; _other: beyond max_consumers).",
    &["kpi", "consumer"]
));

/// Route label of a KPI's routes beyond its `max_series`.
pub const OTHER_ROUTE: &str = "_other";

/// Consumer label of requests naming no consumer.
const ANONYMOUS: &str = "_anonymous";

/// Methods a KPI may name.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// Registers the families.
pub fn init() {
    LazyLock::force(&BUSINESS_EVENTS);
    LazyLock::force(&BUSINESS_EVENTS_BY_CONSUMER);
}

/// A KPI's `consumer` series, at most `max` of them (then `_other`). Series are made on first
/// use (consumers are not known in advance); a known consumer costs a read lock and a lookup.
#[derive(Debug)]
struct ConsumerSeries {
    max: usize,
    seen: std::sync::RwLock<std::collections::HashMap<String, IntCounter>>,
}

impl ConsumerSeries {
    fn counter(&self, kpi: &str, consumer: Option<&str>) -> IntCounter {
        let name = consumer.unwrap_or(ANONYMOUS);
        if let Some(c) = self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return c.clone();
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        let label = if seen.len() < self.max {
            name
        } else {
            OTHER_ROUTE
        };
        let counter = BUSINESS_EVENTS_BY_CONSUMER.with_label_values(&[kpi, label]);
        if label == name {
            seen.insert(name.to_string(), counter.clone());
        }
        counter
    }
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
    consumers: Option<ConsumerSeries>,
}

/// A KPI and the routes it counts on.
#[derive(Debug, Clone)]
pub struct KpiSpec {
    pub kpi: Arc<Kpi>,
    /// Route names; empty = every route.
    routes: Vec<String>,
    max_series: usize,
}

impl Kpi {
    fn compile(cfg: &KpiConfig, at: &str, publish: bool, problems: &mut Problems) -> Self {
        let mut header = |field: &str, h: &Option<HeaderMatch>| {
            let h = h.as_ref()?;
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                problems.push(
                    format!("{at}.{field}.name"),
                    format!("bad header name {:?}", h.name),
                );
                return None;
            };
            let mut values = Vec::with_capacity(h.values.len());
            for (j, v) in h.values.iter().enumerate() {
                match v.parse() {
                    Ok(v) => values.push(v),
                    Err(_) => problems.push(
                        format!("{at}.{field}.values[{j}]"),
                        format!("bad header value {v:?}"),
                    ),
                }
            }
            Some((name, values))
        };
        let request_header = header("request_header", &cfg.request_header);
        let response_header = header("response_header", &cfg.response_header);
        let mut methods = Vec::with_capacity(cfg.methods.len());
        for (j, m) in cfg.methods.iter().enumerate() {
            let upper = m.to_ascii_uppercase();
            match upper.parse::<Method>() {
                Ok(parsed) if METHODS.contains(&upper.as_str()) => methods.push(parsed),
                _ => problems.push(
                    format!("{at}.methods[{j}]"),
                    format!("unknown method {m:?}"),
                ),
            }
        }
        match &cfg.status {
            Some(StatusMatch::Class(c))
                if !matches!(c.as_str(), "1xx" | "2xx" | "3xx" | "4xx" | "5xx") =>
            {
                problems.push(
                    format!("{at}.status"),
                    format!("{c:?} is not a class like 2xx"),
                )
            }
            Some(StatusMatch::Codes(codes)) if codes.iter().any(|c| !(100..=599).contains(c)) => {
                problems.push(format!("{at}.status"), "status codes must be in 100..=599")
            }
            _ => {}
        }
        Self {
            name: cfg.name.clone(),
            methods,
            status: cfg.status.clone(),
            request_header,
            response_header,
            publish,
            consumers: cfg.by_consumer.then(|| ConsumerSeries {
                max: cfg.max_consumers,
                seen: Default::default(),
            }),
        }
    }

    /// Counts a matched request by its consumer, when the KPI counts by consumer.
    pub fn count_consumer(&self, consumer: Option<&str>) {
        if let Some(series) = &self.consumers {
            series.counter(&self.name, consumer).inc();
        }
    }

    /// Whether a finished request counts for this KPI.
    pub fn matches(
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

/// Compiles the `kpis` section, recording every problem; `routes` are the route names.
pub fn compile(config: &Config, routes: &[&str], problems: &mut Problems) -> Vec<KpiSpec> {
    let published = |name: &str| {
        config
            .events
            .as_ref()
            .is_some_and(|e| e.kpis.is_empty() || e.kpis.iter().any(|k| k == name))
    };
    let mut names = HashSet::new();
    let mut specs = Vec::with_capacity(config.kpis.len());
    for (i, k) in config.kpis.iter().enumerate() {
        let at = format!("kpis[{i}]");
        let name_ok = !k.name.is_empty()
            && k.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            problems.push(format!("{at}.name"), "KPI names must use only [a-z0-9_]");
        }
        if !names.insert(k.name.as_str()) {
            problems.push(format!("{at}.name"), format!("duplicate KPI {:?}", k.name));
        }
        for (j, r) in k.routes.iter().enumerate() {
            if !routes.contains(&r.as_str()) {
                let hint = crate::config::suggest::hint(r, routes.iter().copied());
                problems.push(
                    format!("{at}.routes[{j}]"),
                    format!("unknown route {r:?}{hint}"),
                );
            }
        }
        if k.max_series == 0 {
            problems.push(format!("{at}.max_series"), "must be at least 1");
        }
        if k.by_consumer && k.max_consumers == 0 {
            problems.push(format!("{at}.max_consumers"), "must be at least 1");
        }
        specs.push(KpiSpec {
            kpi: Arc::new(Kpi::compile(k, &at, published(&k.name), problems)),
            routes: k.routes.clone(),
            max_series: k.max_series,
        });
    }
    if let Some(e) = &config.events {
        for (i, name) in e.kpis.iter().enumerate() {
            if !names.contains(name.as_str()) {
                problems.push(format!("events.kpis[{i}]"), format!("unknown KPI {name:?}"));
            }
        }
    }
    specs
}

/// Each route's KPIs with their counters (`routes` in router order), pre-creating each KPI's
/// series up to its cap; routes beyond it count as `route="_other"`.
pub fn counters(specs: &[KpiSpec], routes: &[&str]) -> Vec<Vec<(Arc<Kpi>, IntCounter)>> {
    let mut per_route: Vec<Vec<(Arc<Kpi>, IntCounter)>> = vec![Vec::new(); routes.len()];
    for spec in specs {
        let mut series = 0;
        for (i, route) in routes.iter().enumerate() {
            if !spec.routes.is_empty() && !spec.routes.iter().any(|r| r == route) {
                continue;
            }
            series += 1;
            let label = if series <= spec.max_series {
                route
            } else {
                OTHER_ROUTE
            };
            let counter = BUSINESS_EVENTS.with_label_values(&[&spec.kpi.name, label]);
            per_route[i].push((spec.kpi.clone(), counter));
        }
    }
    per_route
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
            remove_matching(&BUSINESS_EVENTS_BY_CONSUMER, "kpi", &k.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(text: &str, routes: &[&str]) -> Vec<Vec<(Arc<Kpi>, IntCounter)>> {
        let c = crate::config::load_str("k.yaml", text).unwrap();
        let mut problems = Problems::default();
        let specs = compile(&c, routes, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        counters(&specs, routes)
    }

    fn record(
        per_route: &[Vec<(Arc<Kpi>, IntCounter)>],
        route: usize,
        method: Method,
        status: u16,
        req: &HeaderMap,
        resp: Option<&HeaderMap>,
    ) {
        for (kpi, counter) in &per_route[route] {
            if kpi.matches(&method, status, req, resp) {
                counter.inc();
            }
        }
    }

    const BASE: &str = "routes:\n  - {name: orders, service: s}\n  - {name: pay, service: s}\nservices:\n  s: {instances: [\"127.0.0.1:1\"]}\n";

    #[test]
    fn kpis_match_route_method_status_and_headers() {
        let k = compiled(
            &format!(
                "{BASE}kpis:\n  - {{name: orders_placed, routes: [orders], methods: [POST], status: 2xx}}\n  - {{name: pay_ok, routes: [pay], status: [200, 201], response_header: {{name: x-payment-status, values: [succeeded]}}}}\n  - {{name: active_users, request_header: {{name: x-user-id}}}}\n"
            ),
            &["orders", "pay"],
        );
        let mut req = HeaderMap::new();
        let count = |kpi: &str, route: &str| BUSINESS_EVENTS.with_label_values(&[kpi, route]).get();
        record(&k, 0, Method::POST, 201, &req, None);
        record(&k, 0, Method::GET, 200, &req, None);
        record(&k, 0, Method::POST, 500, &req, None);
        assert_eq!(count("orders_placed", "orders"), 1);
        let mut resp = HeaderMap::new();
        resp.insert("x-payment-status", "failed".parse().unwrap());
        record(&k, 1, Method::POST, 200, &req, Some(&resp));
        resp.insert("x-payment-status", "succeeded".parse().unwrap());
        record(&k, 1, Method::POST, 200, &req, Some(&resp));
        assert_eq!(count("pay_ok", "pay"), 1);
        req.insert("x-user-id", "u1".parse().unwrap());
        record(&k, 1, Method::GET, 200, &req, None);
        assert_eq!(count("active_users", "pay"), 1);
    }

    #[test]
    fn series_beyond_the_cap_go_to_other() {
        let k = compiled(
            &format!("{BASE}kpis:\n  - {{name: capped_kpi, max_series: 1}}\n"),
            &["orders", "pay"],
        );
        record(&k, 1, Method::GET, 200, &HeaderMap::new(), None);
        assert_eq!(
            BUSINESS_EVENTS
                .with_label_values(&["capped_kpi", OTHER_ROUTE])
                .get(),
            1
        );
    }
}
