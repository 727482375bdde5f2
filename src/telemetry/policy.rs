//! The policy chain's own family: refusals by route, policy kind and mode, whatever the
//! policy. Each policy may count more in its own families (rate limits do).

use super::metrics::{family, remove_matching};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::LazyLock;

family!(POLICY_REFUSALS: IntCounterVec = register_int_counter_vec!(
    "portico_policy_refusals_total",
    "Requests a route policy refused, by policy kind and mode (enforce: answered by Portico; shadow: counted, let through).",
    &["route", "policy", "mode"]
));

/// Registers the family.
pub fn init() {
    LazyLock::force(&POLICY_REFUSALS);
}

/// The refusal counter of one gate (created at zero, so it shows before the first refusal).
pub fn refusal_counter(route: &str, policy: &str, mode: &str) -> IntCounter {
    POLICY_REFUSALS.with_label_values(&[route, policy, mode])
}

/// Removes every series of a route.
pub fn remove_route(route: &str) {
    remove_matching(&POLICY_REFUSALS, "route", route);
}
