//! Request-mirroring metrics: copies sent and how they ended, copies not sent, and how the
//! mirror's answers compared with the primary's.

use super::metrics::{family, remove_matching};
use prometheus::{
    register_int_counter_vec, register_int_gauge_vec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};
use std::sync::LazyLock;

family!(MIRROR_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "portico_mirror_requests_total",
    "Mirrored copies of a route's requests by how the exchange with the mirror service ended: answered (any status) or failed (no instance, connect error, reset, timeout).",
    &["route", "outcome"]
));
family!(MIRROR_DROPPED: IntCounterVec = register_int_counter_vec!(
    "portico_mirror_dropped_total",
    "Sampled requests not mirrored: max_in_flight copies already out, or a request body over max_body.",
    &["route", "reason"]
));
family!(MIRROR_COMPARISONS: IntCounterVec = register_int_counter_vec!(
    "portico_mirror_comparisons_total",
    "Mirrored requests of a route with `compare` by how the mirror's answer compared with the primary's: match, status_mismatch, body_mismatch (same status, different body hash; with compare_body) or error (either side has no complete answer).",
    &["route", "result"]
));
family!(MIRROR_IN_FLIGHT: IntGaugeVec = register_int_gauge_vec!(
    "portico_mirror_in_flight",
    "Mirrored copies of a route's requests being sent or answered now.",
    &["route"]
));

/// Outcomes of an exchange with the mirror service.
pub const OUTCOMES: [&str; 2] = ["answered", "failed"];
/// Why a sampled request was not mirrored.
pub const DROP_REASONS: [&str; 2] = ["max_in_flight", "body_too_large"];
/// Results of a comparison.
pub const RESULTS: [&str; 4] = ["match", "status_mismatch", "body_mismatch", "error"];

/// One mirrored route's handles, made at zero when the snapshot is built.
pub struct MirrorMetrics {
    pub outcomes: [IntCounter; 2],
    pub dropped: [IntCounter; 2],
    /// Present when the route compares.
    pub results: Option<[IntCounter; 4]>,
    pub in_flight: IntGauge,
}

impl MirrorMetrics {
    /// The series of `route` (comparison results only when it compares).
    pub fn new(route: &str, compare: bool) -> Self {
        Self {
            outcomes: OUTCOMES.map(|o| MIRROR_REQUESTS.with_label_values(&[route, o])),
            dropped: DROP_REASONS.map(|r| MIRROR_DROPPED.with_label_values(&[route, r])),
            results: compare
                .then(|| RESULTS.map(|r| MIRROR_COMPARISONS.with_label_values(&[route, r]))),
            in_flight: MIRROR_IN_FLIGHT.with_label_values(&[route]),
        }
    }
}

/// Removes a route's series.
pub fn remove_route(route: &str) {
    remove_matching(&MIRROR_REQUESTS, "route", route);
    remove_matching(&MIRROR_DROPPED, "route", route);
    remove_matching(&MIRROR_COMPARISONS, "route", route);
    let _ = MIRROR_IN_FLIGHT.remove_label_values(&[route]);
}

/// Registers the families.
pub fn init() {
    LazyLock::force(&MIRROR_REQUESTS);
    LazyLock::force(&MIRROR_DROPPED);
    LazyLock::force(&MIRROR_COMPARISONS);
    LazyLock::force(&MIRROR_IN_FLIGHT);
}
