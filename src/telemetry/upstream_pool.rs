//! Upstream connections by how they were obtained: opened for the request, or reused from the
//! pool. A low reuse share costs a TCP (and TLS) handshake per request; with the no-steal
//! runtime Pingora's pool is per worker, which this makes visible.

use super::metrics::{family, remove_matching};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::LazyLock;

family!(UPSTREAM_CONNECTIONS: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_connections_total",
    "Upstream connections requests were sent on, by service and whether the connection was new or reused from the pool.",
    &["service", "kind"]
));

/// The `kind` values.
pub const KINDS: [&str; 2] = ["new", "reused"];

/// Registers the family.
pub fn init() {
    LazyLock::force(&UPSTREAM_CONNECTIONS);
}

/// One service's counters, made at zero.
pub struct PoolCounters([IntCounter; 2]);

impl PoolCounters {
    /// `service`'s counters.
    pub fn new(service: &str) -> Self {
        Self(KINDS.map(|k| UPSTREAM_CONNECTIONS.with_label_values(&[service, k])))
    }

    /// Counts a connection a request was sent on.
    pub fn count(&self, reused: bool) {
        self.0[usize::from(reused)].inc();
    }

    /// Removes `service`'s series.
    pub fn remove(service: &str) {
        remove_matching(&UPSTREAM_CONNECTIONS, "service", service);
    }
}
