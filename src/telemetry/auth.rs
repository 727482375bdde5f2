//! Authentication's families: decisions by route, policy and result; JWKS reads and the keys in
//! force; verified-token cache lookups.

use super::metrics::{family, remove_matching};
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge_vec, IntCounter,
    IntCounterVec, IntGaugeVec,
};
use std::sync::LazyLock;

family!(AUTH_DECISIONS: IntCounterVec = register_int_counter_vec!(
    "portico_auth_decisions_total",
    "Authentication decisions by route, auth policy and result (allowed, missing, invalid, expired, forbidden: authenticated but not in allow_groups, error: the credentials could not be checked).",
    &["route", "policy", "result"]
));

family!(JWKS_READS: IntCounterVec = register_int_counter_vec!(
    "portico_jwks_refreshes_total",
    "Reads of a JWT policy's JWKS URL by result (ok, error); after an error the previous keys stay in force.",
    &["policy", "result"]
));

family!(JWKS_KEYS: IntGaugeVec = register_int_gauge_vec!(
    "portico_jwks_keys",
    "Signing keys in force for a JWT policy's JWKS URL (0 until the first successful read).",
    &["policy"]
));

family!(TOKEN_CACHE: IntCounterVec = register_int_counter_vec!(
    "portico_auth_token_cache_total",
    "Lookups of verified JWTs by result (hit: no signature check needed, miss).",
    &["policy", "result"]
));

family!(CONSUMERS: IntGaugeVec = register_int_gauge_vec!(
    "portico_consumers",
    "Consumers in force by source (config: the configuration file; redis: the last good read of the Redis consumers).",
    &["source"]
));

family!(CONSUMER_SYNC_FAILURES: IntCounter = register_int_counter!(
    "portico_consumer_sync_failures_total",
    "Reads of the Redis consumers that failed; the consumers in force stay."
));

/// Sets the consumers in force from `source`.
pub fn consumers(source: &str, count: usize) {
    CONSUMERS.with_label_values(&[source]).set(count as i64);
}

/// Every `result` of `portico_auth_decisions_total`, for series made at zero.
pub const RESULTS: [&str; 6] = [
    "allowed",
    "missing",
    "invalid",
    "expired",
    "forbidden",
    "error",
];

/// Registers the families.
pub fn init() {
    LazyLock::force(&AUTH_DECISIONS);
    LazyLock::force(&JWKS_READS);
    LazyLock::force(&JWKS_KEYS);
    LazyLock::force(&TOKEN_CACHE);
    LazyLock::force(&CONSUMER_SYNC_FAILURES);
    for source in ["config", "redis"] {
        CONSUMERS.with_label_values(&[source]);
    }
}

/// The decision counter of `policy` on `route` for `result` (made at zero by the caller for
/// every result, so the first failure shows in `rate()`).
pub fn decision_counter(route: &str, policy: &str, result: &str) -> IntCounter {
    AUTH_DECISIONS.with_label_values(&[route, policy, result])
}

/// Counts one JWKS read and sets the keys in force.
pub fn jwks_read(policy: &str, ok: bool, keys: usize) {
    let result = if ok { "ok" } else { "error" };
    JWKS_READS.with_label_values(&[policy, result]).inc();
    JWKS_KEYS.with_label_values(&[policy]).set(keys as i64);
}

/// Makes a JWT policy's JWKS series at zero.
pub fn jwks_series(policy: &str) {
    for result in ["ok", "error"] {
        JWKS_READS.with_label_values(&[policy, result]);
    }
    JWKS_KEYS.with_label_values(&[policy]);
}

/// Makes a JWT policy's cache series at zero.
pub fn token_cache_series(policy: &str) {
    for result in ["hit", "miss"] {
        TOKEN_CACHE.with_label_values(&[policy, result]);
    }
}

/// Counts one verified-token cache lookup.
pub fn token_cache(policy: &str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    TOKEN_CACHE.with_label_values(&[policy, result]).inc();
}

/// Removes every series of a route.
pub fn remove_route(route: &str) {
    remove_matching(&AUTH_DECISIONS, "route", route);
}
