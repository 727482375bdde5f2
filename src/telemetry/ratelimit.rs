//! Rate-limit metric families and the per-(route, rule) handles resolved once per snapshot.

use super::metrics::family;
use prometheus::{
    register_int_counter_vec, register_int_gauge_vec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};
use std::sync::LazyLock;

family!(DECISIONS: IntCounterVec = register_int_counter_vec!(
    "portico_ratelimit_decisions_total",
    "Rate-limit decisions by route, rule, decision (allowed, limited, shadow_limited) and store (local, redis, fallback).",
    &["route", "rule", "decision", "store"]
));
family!(STORE_ERRORS: IntCounterVec = register_int_counter_vec!(
    "portico_ratelimit_store_errors_total",
    "Redis-store decisions that failed (timeout, connection, protocol) or were skipped while Redis was marked down (unavailable).",
    &["rule", "kind"]
));
family!(FALLBACKS: IntCounterVec = register_int_counter_vec!(
    "portico_ratelimit_fallback_decisions_total",
    "Decisions made by the on_store_error policy (local_fallback, allow, deny) because Redis could not decide.",
    &["rule", "policy"]
));
family!(LOCAL_KEYS: IntGaugeVec = register_int_gauge_vec!(
    "portico_ratelimit_local_keys",
    "Keys held by a rule's in-process store (bounded by max_keys).",
    &["rule", "store"]
));
family!(LOCAL_EVICTIONS: IntCounterVec = register_int_counter_vec!(
    "portico_ratelimit_local_evictions_total",
    "Active keys evicted from a full in-process store (each restarts with a full bucket).",
    &["rule", "store"]
));

/// Decision labels, in [`Outcome`] index order.
pub const DECISIONS_LABELS: [&str; 3] = ["allowed", "limited", "shadow_limited"];
/// Store labels, in index order.
pub const STORES: [&str; 3] = ["local", "redis", "fallback"];

/// Registers the families.
pub fn init() {
    LazyLock::force(&DECISIONS);
    LazyLock::force(&STORE_ERRORS);
    LazyLock::force(&FALLBACKS);
    LazyLock::force(&LOCAL_KEYS);
    LazyLock::force(&LOCAL_EVICTIONS);
}

/// Decision counters of one rule on one route: `[decision][store]`.
pub struct RuleMetrics {
    decisions: [[IntCounter; 3]; 3],
}

impl RuleMetrics {
    /// Pre-creates the series the rule can produce on `route` (`redis` and `fallback` only for
    /// Redis-stored rules).
    pub fn new(route: &str, rule: &str, redis: bool) -> Self {
        let handle = |d: &str, s: &str| DECISIONS.with_label_values(&[route, rule, d, s]);
        for d in DECISIONS_LABELS {
            if redis {
                handle(d, "redis");
                handle(d, "fallback");
            } else {
                handle(d, "local");
            }
        }
        Self {
            decisions: DECISIONS_LABELS.map(|d| STORES.map(|s| handle(d, s))),
        }
    }

    /// Counts one decision.
    pub fn count(&self, decision: usize, store: usize) {
        self.decisions[decision][store].inc();
    }
}

/// Removes every series of a route.
pub fn remove_route(route: &str) {
    super::metrics::remove_matching(&DECISIONS, "route", route);
}

/// Removes every series of a rule.
pub fn remove_rule(rule: &str) {
    super::metrics::remove_matching(&DECISIONS, "rule", rule);
    super::metrics::remove_matching(&STORE_ERRORS, "rule", rule);
    super::metrics::remove_matching(&FALLBACKS, "rule", rule);
    super::metrics::remove_matching(&LOCAL_KEYS, "rule", rule);
    super::metrics::remove_matching(&LOCAL_EVICTIONS, "rule", rule);
}

/// Gauge and counter a local store keeps current.
pub fn local_store(rule: &str, store: &str) -> (IntGauge, IntCounter) {
    (
        LOCAL_KEYS.with_label_values(&[rule, store]),
        LOCAL_EVICTIONS.with_label_values(&[rule, store]),
    )
}
