//! Rate-limit metric families and the per-(route, rule) handles resolved once per snapshot.

use super::metrics::family;
use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge_vec, Histogram, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec,
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
family!(REDIS_BATCH: Histogram = register_histogram!(
    "portico_ratelimit_redis_batch_decisions",
    "Decisions per Redis script call of the rate limiter: concurrent decisions share a call while one is out (1 = no sharing).",
    vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
));
family!(LOCAL_EVICTIONS: IntCounterVec = register_int_counter_vec!(
    "portico_ratelimit_local_evictions_total",
    "Active keys evicted from a full in-process store (each restarts with a full bucket).",
    &["rule", "store"]
));

/// Which store decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The rule's in-process store (`store: local`).
    Local,
    /// Redis (`store: redis`).
    Redis,
    /// The `on_store_error` policy, because Redis could not decide.
    Fallback,
}

impl Store {
    /// Every store, in label order.
    pub const ALL: [Store; 3] = [Store::Local, Store::Redis, Store::Fallback];

    /// The `store` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Local => "local",
            Store::Redis => "redis",
            Store::Fallback => "fallback",
        }
    }
}

/// What a rule decided, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Limited,
    /// Over the limit in shadow mode: counted, not refused.
    ShadowLimited,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 3] = [Outcome::Allowed, Outcome::Limited, Outcome::ShadowLimited];

    /// The `decision` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Limited => "limited",
            Outcome::ShadowLimited => "shadow_limited",
        }
    }
}

/// Registers the families.
pub fn init() {
    LazyLock::force(&DECISIONS);
    LazyLock::force(&STORE_ERRORS);
    LazyLock::force(&FALLBACKS);
    LazyLock::force(&LOCAL_KEYS);
    LazyLock::force(&LOCAL_EVICTIONS);
    LazyLock::force(&REDIS_BATCH);
}

/// Decision counters of one rule on one route, by outcome and store.
pub struct RuleMetrics {
    /// `None` for the stores the rule never uses (their series are not exported).
    decisions: [[Option<IntCounter>; 3]; 3],
}

impl RuleMetrics {
    /// Pre-creates the series the rule can produce on `route` (`redis` and `fallback` only for
    /// Redis-stored rules, `local` only for the others).
    pub fn new(route: &str, rule: &str, redis: bool) -> Self {
        let used: &[Store] = if redis {
            &[Store::Redis, Store::Fallback]
        } else {
            &[Store::Local]
        };
        Self {
            decisions: Outcome::ALL.map(|d| {
                Store::ALL.map(|s| {
                    used.contains(&s).then(|| {
                        DECISIONS.with_label_values(&[route, rule, d.as_str(), s.as_str()])
                    })
                })
            }),
        }
    }

    /// Counts one decision.
    pub fn count(&self, outcome: Outcome, store: Store) {
        if let Some(counter) = &self.decisions[outcome as usize][store as usize] {
            counter.inc();
        }
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
pub fn local_store(rule: &str, store: Store) -> (IntGauge, IntCounter) {
    (
        LOCAL_KEYS.with_label_values(&[rule, store.as_str()]),
        LOCAL_EVICTIONS.with_label_values(&[rule, store.as_str()]),
    )
}
