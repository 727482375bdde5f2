//! The policy chain's own family: refusals by route, policy kind and mode, whatever the
//! policy. Each policy may count more in its own families (rate limits do).

use super::metrics::{family, remove_matching};
use prometheus::{
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;

family!(POLICY_REFUSALS: IntCounterVec = register_int_counter_vec!(
    "portico_policy_refusals_total",
    "Requests a route policy refused, by policy kind and mode (enforce: answered by Portico; shadow: counted, let through).",
    &["route", "policy", "mode"]
));

family!(CONCURRENCY_IN_FLIGHT: IntGaugeVec = register_int_gauge_vec!(
    "portico_concurrency_in_flight",
    "Requests holding a slot of a route's concurrency limit (all keys of the route together).",
    &["route"]
));

family!(IP_DENY_ENTRIES: IntGauge = register_int_gauge!(
    "portico_ip_deny_entries",
    "Addresses and networks in force from the Redis deny set (the last good read)."
));

family!(IP_DENY_SYNC_FAILURES: IntCounter = prometheus::register_int_counter!(
    "portico_ip_deny_sync_failures_total",
    "Reads of the Redis deny set that failed; the last good set stays in force."
));

family!(COMPRESSED_RESPONSES: IntCounterVec = register_int_counter_vec!(
    "portico_compression_responses_total",
    "Responses Portico compressed, by route and algorithm.",
    &["route", "algorithm"]
));

family!(COMPRESSION_BYTES: IntCounterVec = register_int_counter_vec!(
    "portico_compression_bytes_total",
    "Body bytes of compressed responses before (in) and after (out) compression.",
    &["route", "side"]
));

/// Counts one compressed response of `route`.
pub fn count_compressed(route: &str, algorithm: &str, bytes_in: usize, bytes_out: usize) {
    COMPRESSED_RESPONSES
        .with_label_values(&[route, algorithm])
        .inc();
    COMPRESSION_BYTES
        .with_label_values(&[route, "in"])
        .inc_by(bytes_in as u64);
    COMPRESSION_BYTES
        .with_label_values(&[route, "out"])
        .inc_by(bytes_out as u64);
}

/// Pre-creates a compressing route's series, so they show 0 before its first compression.
pub fn compression_series(route: &str) {
    let algorithms =
        super::label_values::values("portico_compression_responses_total", "algorithm");
    for algorithm in algorithms.unwrap_or_default() {
        COMPRESSED_RESPONSES.with_label_values(&[route, algorithm]);
    }
    for side in ["in", "out"] {
        COMPRESSION_BYTES.with_label_values(&[route, side]);
    }
}

/// Registers the families.
pub fn init() {
    LazyLock::force(&POLICY_REFUSALS);
    LazyLock::force(&CONCURRENCY_IN_FLIGHT);
    LazyLock::force(&IP_DENY_ENTRIES);
    LazyLock::force(&IP_DENY_SYNC_FAILURES);
    LazyLock::force(&COMPRESSED_RESPONSES);
    LazyLock::force(&COMPRESSION_BYTES);
}

/// The in-flight gauge of a route's concurrency limit.
pub fn concurrency_gauge(route: &str) -> IntGauge {
    CONCURRENCY_IN_FLIGHT.with_label_values(&[route])
}

/// The refusal counter of one gate (created at zero, so it shows before the first refusal).
pub fn refusal_counter(route: &str, policy: &str, mode: &str) -> IntCounter {
    POLICY_REFUSALS.with_label_values(&[route, policy, mode])
}

/// Removes every series of a route.
pub fn remove_route(route: &str) {
    remove_matching(&POLICY_REFUSALS, "route", route);
    remove_matching(&CONCURRENCY_IN_FLIGHT, "route", route);
    remove_matching(&COMPRESSED_RESPONSES, "route", route);
    remove_matching(&COMPRESSION_BYTES, "route", route);
}
