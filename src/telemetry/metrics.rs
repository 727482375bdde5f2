//! Metric families (prefix `portico_`, base units, `_total` counters) registered in the default
//! Prometheus registry, and per-route / per-service handle sets resolved once per config snapshot
//! so the request path never hashes label values for the common cases.

use crate::reply::ErrorCode;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

pub use super::service_metrics::ServiceMetrics;

/// Request latency buckets in seconds; SLO thresholds (100 ms, 250 ms, 500 ms, 1 s) are boundaries.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Connect latency buckets: 0.5 ms doubling to about 1 s.
const CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
];

/// Label value for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Status classes of downstream responses.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Status classes of upstream attempts: the five classes plus `error` (no response at all).
pub const ATTEMPT_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
/// Index of `error` in [`ATTEMPT_CLASSES`].
pub const ATTEMPT_ERROR: usize = 5;

macro_rules! family {
    ($name:ident: $ty:ty = $init:expr) => {
        #[doc = concat!("The `", stringify!($name), "` family.")]
        pub static $name: std::sync::LazyLock<$ty> =
            std::sync::LazyLock::new(|| $init.expect("metric registers once"));
    };
}
pub(crate) use family;

family!(HTTP_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "portico_http_requests_total",
    "Finished downstream requests by route, method, status code, who produced the response and the client's HTTP protocol.",
    &["route", "method", "code", "source", "protocol"]
));
family!(HTTP_DURATION: HistogramVec = register_histogram_vec!(
    "portico_http_request_duration_seconds",
    "Time from request header received to response finished.",
    &["route", "status_class"],
    LATENCY_BUCKETS.to_vec()
));
family!(HTTP_IN_FLIGHT: IntGauge = register_int_gauge!(
    "portico_http_requests_in_flight",
    "Downstream requests being processed."
));
family!(GATEWAY_RESPONSES: IntCounterVec = register_int_counter_vec!(
    "portico_http_gateway_responses_total",
    "Responses produced by Portico itself, by route and reason code.",
    &["route", "reason"]
));
family!(UPSTREAM_ATTEMPTS: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_attempts_total",
    "Upstream attempts (retries included) by service and status class; `error` = no response.",
    &["service", "status_class"]
));
family!(UPSTREAM_DURATION: HistogramVec = register_histogram_vec!(
    "portico_upstream_response_duration_seconds",
    "Time from instance selection to upstream response header, per attempt.",
    &["service"],
    LATENCY_BUCKETS.to_vec()
));
family!(HTTP_REQUEST_BYTES: IntCounterVec = register_int_counter_vec!(
    "portico_http_request_body_bytes_total",
    "Request body bytes read from clients.",
    &["route"]
));
family!(HTTP_RESPONSE_BYTES: IntCounterVec = register_int_counter_vec!(
    "portico_http_response_body_bytes_total",
    "Response body bytes sent to clients.",
    &["route"]
));
family!(UPSTREAM_CONNECT_DURATION: HistogramVec = register_histogram_vec!(
    "portico_upstream_connect_duration_seconds",
    "Time to establish a new upstream connection (pooled reuses are not observed).",
    &["service"],
    CONNECT_BUCKETS.to_vec()
));
family!(UPSTREAM_ERRORS: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_errors_total",
    "Upstream attempts that got no usable response, by kind.",
    &["service", "kind"]
));
family!(UPSTREAM_RETRIES: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_retries_total",
    "Attempts that were retries, by reason.",
    &["service", "reason"]
));
family!(RETRY_BUDGET_EXHAUSTED: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_retry_budget_exhausted_total",
    "Retries not made because the service's retry budget was spent.",
    &["service"]
));
family!(UPSTREAM_DNS_FAILURES: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_dns_failures_total",
    "Failed lookups of a static instance's host name (the last good addresses stay in use).",
    &["service"]
));
family!(INSTANCE_HEALTHY: IntGaugeVec = register_int_gauge_vec!(
    "portico_upstream_instance_healthy",
    "Active health-check verdict of an instance (1 healthy, 0 unhealthy).",
    &["service", "address"]
));
family!(SERVICE_INSTANCES: IntGaugeVec = register_int_gauge_vec!(
    "portico_upstream_instances",
    "Instances known per service.",
    &["service"]
));
family!(PANIC_SELECTIONS: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_panic_selections_total",
    "Selections made while every instance was unhealthy (fail open to the whole set).",
    &["service"]
));
family!(BREAKER_STATE: IntGaugeVec = register_int_gauge_vec!(
    "portico_circuit_breaker_state",
    "Circuit breaker state of an instance, one-hot over closed, open and half_open.",
    &["service", "address", "state"]
));
family!(BREAKER_TRANSITIONS: IntCounterVec = register_int_counter_vec!(
    "portico_circuit_breaker_transitions_total",
    "Circuit breaker state changes.",
    &["service", "from", "to"]
));
family!(BREAKER_SHORT_CIRCUITS: IntCounterVec = register_int_counter_vec!(
    "portico_circuit_breaker_short_circuited_total",
    "Requests refused because every candidate instance's breaker was open (or would have been, in shadow mode).",
    &["service", "mode"]
));
family!(CONFIG_RELOADS: IntCounterVec = register_int_counter_vec!(
    "portico_config_reloads_total",
    "Configuration reload attempts by result.",
    &["result"]
));
family!(CONFIG_LAST_RELOAD_OK: IntGauge = register_int_gauge!(
    "portico_config_last_reload_successful",
    "1 if the last reload attempt succeeded (or none was tried), else 0."
));
family!(CONFIG_LAST_RELOAD_TIME: Gauge = register_gauge!(
    "portico_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful configuration load."
));
family!(CONFIG_INFO: IntGaugeVec = register_int_gauge_vec!(
    "portico_config_info",
    "Hash of the configuration in force (value 1).",
    &["hash"]
));
family!(BUILD_INFO: IntGaugeVec = register_int_gauge_vec!(
    "portico_build_info",
    "Build information (value 1).",
    &["version"]
));

/// One request counted in `portico_http_requests_in_flight` for as long as it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts a request in.
    pub fn enter() -> Self {
        HTTP_IN_FLIGHT.inc();
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        HTTP_IN_FLIGHT.dec();
    }
}

/// Registers this file's families and sets build information (see `telemetry::init`).
pub(super) fn init() {
    {
        LazyLock::force(&HTTP_REQUESTS);
        LazyLock::force(&HTTP_DURATION);
        LazyLock::force(&HTTP_IN_FLIGHT);
        LazyLock::force(&GATEWAY_RESPONSES);
        LazyLock::force(&UPSTREAM_ATTEMPTS);
        LazyLock::force(&UPSTREAM_DURATION);
        LazyLock::force(&UPSTREAM_ERRORS);
        LazyLock::force(&HTTP_REQUEST_BYTES);
        LazyLock::force(&HTTP_RESPONSE_BYTES);
        LazyLock::force(&UPSTREAM_CONNECT_DURATION);
        LazyLock::force(&UPSTREAM_RETRIES);
        LazyLock::force(&RETRY_BUDGET_EXHAUSTED);
        LazyLock::force(&UPSTREAM_DNS_FAILURES);
        LazyLock::force(&INSTANCE_HEALTHY);
        LazyLock::force(&SERVICE_INSTANCES);
        LazyLock::force(&PANIC_SELECTIONS);
        LazyLock::force(&BREAKER_STATE);
        LazyLock::force(&BREAKER_TRANSITIONS);
        LazyLock::force(&BREAKER_SHORT_CIRCUITS);
        LazyLock::force(&CONFIG_RELOADS);
        CONFIG_LAST_RELOAD_OK.set(1);
        LazyLock::force(&CONFIG_LAST_RELOAD_TIME);
        BUILD_INFO
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "failure"] {
            CONFIG_RELOADS.with_label_values(&[result]);
        }
    }
}

/// Renders the default registry in the Prometheus text format.
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::with_capacity(16 * 1024);
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}

/// Index of a status code's class in [`STATUS_CLASSES`].
pub fn status_class(code: u16) -> usize {
    usize::from(code.clamp(100, 599) / 100 - 1)
}

/// Method label values: the standard methods, everything else `_OTHER` (OTel convention).
const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

fn method_index(method: &http::Method) -> usize {
    METHOD_LABELS[..9]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(9)
}

/// Codes whose `requests_total` handles are cached per route; others resolve labels per request.
const CACHED_CODES: [u16; 16] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504, 499,
];

/// Who produced a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream = 0,
    Gateway = 1,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Gateway => "gateway",
        }
    }
}

/// The client's HTTP protocol: the `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1 = 0,
    H2 = 1,
}

impl Protocol {
    /// Every label value, in discriminant order.
    pub const LABELS: [&'static str; 2] = ["h1", "h2"];

    /// The protocol a request came over.
    pub fn of(version: http::Version) -> Self {
        if version == http::Version::HTTP_2 {
            Protocol::H2
        } else {
            Protocol::H1
        }
    }
}

/// Handles for one route (or for unmatched requests).
pub struct RouteMetrics {
    route: String,
    duration: [Histogram; 5],
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    sizes: super::body_sizes::BodySizes,
    /// Lazily resolved `requests_total` handles: method × cached code × source × protocol.
    requests: Box<[OnceLock<IntCounter>]>,
    /// Gateway responses for each error code, in `ErrorCode::ALL` order: created at zero, so
    /// the first error of a route is not lost to `rate()`. Answers (redirects, static
    /// responses...) are created at first use.
    errors: Box<[IntCounter]>,
}

impl RouteMetrics {
    /// Resolves (and so pre-creates) the route's series.
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_string(),
            duration: STATUS_CLASSES.map(|c| HTTP_DURATION.with_label_values(&[route, c])),
            request_bytes: HTTP_REQUEST_BYTES.with_label_values(&[route]),
            response_bytes: HTTP_RESPONSE_BYTES.with_label_values(&[route]),
            sizes: super::body_sizes::BodySizes::new(route),
            requests: (0..METHOD_LABELS.len() * CACHED_CODES.len() * 4)
                .map(|_| OnceLock::new())
                .collect(),
            errors: ErrorCode::ALL
                .iter()
                .map(|c| GATEWAY_RESPONSES.with_label_values(&[route, c.as_str()]))
                .collect(),
        }
    }

    /// Records one finished request.
    pub fn record(
        &self,
        method: &http::Method,
        code: u16,
        source: Source,
        protocol: Protocol,
        seconds: f64,
    ) {
        self.duration[status_class(code)].observe(seconds);
        let m = method_index(method);
        match CACHED_CODES.iter().position(|c| *c == code) {
            Some(ci) => {
                let slot =
                    ((m * CACHED_CODES.len() + ci) * 2 + source as usize) * 2 + protocol as usize;
                self.requests[slot]
                    .get_or_init(|| self.counter(m, code, source, protocol))
                    .inc();
            }
            None => self.counter(m, code, source, protocol).inc(),
        }
    }

    fn counter(&self, method: usize, code: u16, source: Source, protocol: Protocol) -> IntCounter {
        let mut buf = itoa_buf(code);
        HTTP_REQUESTS.with_label_values(&[
            self.route.as_str(),
            METHOD_LABELS[method],
            code_str(&mut buf),
            source.label(),
            Protocol::LABELS[protocol as usize],
        ])
    }

    /// Counts a request's body bytes read and response body bytes sent.
    pub fn count_bytes(&self, read: u64, sent: u64) {
        self.request_bytes.inc_by(read);
        self.response_bytes.inc_by(sent);
        self.sizes.observe(read, sent);
    }

    /// Counts a response Portico produced itself.
    pub fn gateway_response(&self, reason: &str) {
        match ErrorCode::ALL.iter().position(|c| c.as_str() == reason) {
            Some(i) => self.errors[i].inc(),
            None => GATEWAY_RESPONSES
                .with_label_values(&[self.route.as_str(), reason])
                .inc(),
        }
    }

    /// Removes the route's series (the route left the configuration).
    pub fn remove(&self) {
        for class in STATUS_CLASSES {
            let _ = HTTP_DURATION.remove_label_values(&[&self.route, class]);
        }
        remove_matching(&HTTP_REQUESTS, "route", &self.route);
        remove_matching(&GATEWAY_RESPONSES, "route", &self.route);
        let _ = HTTP_REQUEST_BYTES.remove_label_values(&[&self.route]);
        super::body_sizes::BodySizes::remove(&self.route);
        let _ = HTTP_RESPONSE_BYTES.remove_label_values(&[&self.route]);
        super::kpi::remove_route(&self.route);
        super::split::remove_route(&self.route);
        super::mirror::remove_route(&self.route);
    }
}

fn itoa_buf(code: u16) -> [u8; 3] {
    let c = code.clamp(100, 999);
    [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ]
}

fn code_str(buf: &mut [u8; 3]) -> &str {
    std::str::from_utf8(buf).unwrap_or("000")
}

/// Removes every series of `family` whose `label` equals `value`.
pub(crate) fn remove_matching<T: MetricVecBuilder>(
    family: &MetricVec<T>,
    label: &str,
    value: &str,
) {
    for mf in family.collect() {
        for m in mf.get_metric() {
            if !m
                .get_label()
                .iter()
                .any(|l| l.name() == label && l.value() == value)
            {
                continue;
            }
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let _ = family.remove(&labels);
        }
    }
}

/// Exposes the configuration hash in force.
pub fn set_config_hash(old: Option<&str>, new: &str) {
    if let Some(old) = old {
        let _ = CONFIG_INFO.remove_label_values(&[old]);
    }
    CONFIG_INFO.with_label_values(&[new]).set(1);
}
