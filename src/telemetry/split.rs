//! Traffic-split metrics: where each route's requests went.

use super::metrics::{family, remove_matching};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::LazyLock;

family!(SPLIT_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "portico_split_requests_total",
    "Requests of a split route by the service chosen for them (after fail-over of a side with no available instance).",
    &["route", "service"]
));

/// The counter of `service` on `route` (made at zero).
pub fn requests(route: &str, service: &str) -> IntCounter {
    SPLIT_REQUESTS.with_label_values(&[route, service])
}

/// Removes a route's series.
pub fn remove_route(route: &str) {
    remove_matching(&SPLIT_REQUESTS, "route", route);
}

/// Registers the family.
pub fn init() {
    LazyLock::force(&SPLIT_REQUESTS);
}
