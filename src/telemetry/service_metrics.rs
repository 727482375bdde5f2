//! The per-service handle set: every series of one service (upstream attempts, latency,
//! connections, retries, breakers, instances), resolved once per configuration so the request
//! path never hashes label values. The families themselves are declared in `metrics.rs`.

use super::metrics::*;
use prometheus::{register_int_counter_vec, Histogram, IntCounter, IntCounterVec, IntGauge};
use std::sync::LazyLock;

/// Handles for one service.
pub struct ServiceMetrics {
    service: String,
    attempts: [IntCounter; 6],
    duration: Histogram,
    connect_duration: Histogram,
    panic_selections: IntCounter,
    /// Retries by cause, in `Cause::ALL` order.
    retries: [IntCounter; 3],
    retry_budget_exhausted: IntCounter,
    dns_failures: IntCounter,
    instances: IntGauge,
    short_circuited: IntCounter,
    shadow_short_circuited: IntCounter,
    pool: super::upstream_pool::PoolCounters,
    /// Attempt errors, in [`UPSTREAM_ERROR_KINDS`] order.
    errors: [IntCounter; 11],
}

family!(ZONE_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "portico_upstream_zone_requests_total",
    "Attempts of zone-aware services by whether the instance was in the gateway's zone (local) or not (cross_zone).",
    &["service", "locality"]
));

/// The `kind` label of `portico_upstream_errors_total`: every kind an attempt can fail with.
pub const UPSTREAM_ERROR_KINDS: [&str; 11] = [
    "connect_timeout",
    "connect_refused",
    "connect_error",
    "tls_handshake",
    "read_timeout",
    "write_timeout",
    "connection_closed",
    "read_error",
    "write_error",
    "invalid_response",
    "other",
];

impl ServiceMetrics {
    /// Resolves (and so pre-creates) the service's series.
    pub fn new(service: &str) -> Self {
        // Every transition a breaker can make shows as 0 before it first happens, so
        // `increase()` over it starts from a value rather than from nothing.
        for (from, to) in [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
            ("half_open", "open"),
        ] {
            BREAKER_TRANSITIONS.with_label_values(&[service, from, to]);
        }
        Self {
            service: service.to_string(),
            attempts: ATTEMPT_CLASSES.map(|c| UPSTREAM_ATTEMPTS.with_label_values(&[service, c])),
            duration: UPSTREAM_DURATION.with_label_values(&[service]),
            connect_duration: UPSTREAM_CONNECT_DURATION.with_label_values(&[service]),
            panic_selections: PANIC_SELECTIONS.with_label_values(&[service]),
            retries: crate::retry::Cause::ALL
                .map(|c| UPSTREAM_RETRIES.with_label_values(&[service, c.as_str()])),
            retry_budget_exhausted: RETRY_BUDGET_EXHAUSTED.with_label_values(&[service]),
            dns_failures: UPSTREAM_DNS_FAILURES.with_label_values(&[service]),
            instances: SERVICE_INSTANCES.with_label_values(&[service]),
            short_circuited: BREAKER_SHORT_CIRCUITS.with_label_values(&[service, "enforced"]),
            shadow_short_circuited: BREAKER_SHORT_CIRCUITS.with_label_values(&[service, "shadow"]),
            pool: super::upstream_pool::PoolCounters::new(service),
            errors: UPSTREAM_ERROR_KINDS.map(|k| UPSTREAM_ERRORS.with_label_values(&[service, k])),
        }
    }

    /// Observes the time from choosing an instance to its response header.
    pub fn observe_response(&self, took: std::time::Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// Observes the time to establish a new upstream connection.
    pub fn observe_connect(&self, took: std::time::Duration) {
        self.connect_duration.observe(took.as_secs_f64());
    }

    /// Counts the connection a request was sent on, new or `reused` from the pool.
    pub fn count_connection(&self, reused: bool) {
        self.pool.count(reused);
    }

    /// Counts a selection made in panic mode (every instance unhealthy).
    pub fn count_panic_selection(&self) {
        self.panic_selections.inc();
    }

    /// Counts a retry not made because the retry budget was spent.
    pub fn count_retry_budget_spent(&self) {
        self.retry_budget_exhausted.inc();
    }

    /// Counts a failed host-name lookup.
    pub fn count_dns_failure(&self) {
        self.dns_failures.inc();
    }

    /// Sets the number of known instances.
    pub fn set_instances(&self, n: usize) {
        self.instances.set(n as i64);
    }

    /// Counts a request refused because every candidate's breaker was open; in shadow mode,
    /// one that would have been.
    pub fn count_short_circuit(&self, shadow: bool) {
        if shadow {
            self.shadow_short_circuited.inc();
        } else {
            self.short_circuited.inc();
        }
    }

    /// Registers the families made only for some services.
    pub fn init() {
        LazyLock::force(&ZONE_REQUESTS);
    }

    /// The zone-aware attempt counters (local, cross_zone), made at zero.
    pub fn zone_counters(&self) -> [IntCounter; 2] {
        ["local", "cross_zone"].map(|l| ZONE_REQUESTS.with_label_values(&[&self.service, l]))
    }

    /// Counts an attempt that is a retry.
    pub fn retried(&self, cause: crate::retry::Cause) {
        let i = crate::retry::Cause::ALL
            .iter()
            .position(|c| *c == cause)
            .unwrap_or(0);
        self.retries[i].inc();
    }

    /// Counts an attempt that got a response with `code`.
    pub fn attempt_status(&self, code: u16) {
        self.attempts[status_class(code)].inc();
    }

    /// Counts an attempt that got no response, by error kind.
    pub fn attempt_error(&self, kind: &str) {
        self.attempts[ATTEMPT_ERROR].inc();
        match UPSTREAM_ERROR_KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.errors[i].inc(),
            None => UPSTREAM_ERRORS
                .with_label_values(&[&self.service, kind])
                .inc(),
        }
    }

    /// Sets an instance's health gauge.
    pub fn instance_health(&self, instance: &str, healthy: bool) {
        INSTANCE_HEALTHY
            .with_label_values(&[&self.service, instance])
            .set(i64::from(healthy));
    }

    /// Sets an instance's one-hot breaker state.
    pub fn breaker_state(&self, instance: &str, state: &str) {
        for s in ["closed", "open", "half_open"] {
            BREAKER_STATE
                .with_label_values(&[&self.service, instance, s])
                .set(i64::from(s == state));
        }
    }

    /// Counts a breaker transition.
    pub fn breaker_transition(&self, from: &str, to: &str) {
        BREAKER_TRANSITIONS
            .with_label_values(&[&self.service, from, to])
            .inc();
    }

    /// Removes an instance's series (it left the service).
    pub fn remove_instance(&self, instance: &str) {
        let _ = INSTANCE_HEALTHY.remove_label_values(&[&self.service, instance]);
        for s in ["closed", "open", "half_open"] {
            let _ = BREAKER_STATE.remove_label_values(&[&self.service, instance, s]);
        }
    }

    /// Removes all of the service's series (it left the configuration).
    pub fn remove(&self) {
        for family in [
            &*UPSTREAM_ATTEMPTS,
            &*UPSTREAM_ERRORS,
            &*UPSTREAM_RETRIES,
            &*RETRY_BUDGET_EXHAUSTED,
            &*UPSTREAM_DNS_FAILURES,
            &*PANIC_SELECTIONS,
            &*BREAKER_TRANSITIONS,
            &*BREAKER_SHORT_CIRCUITS,
            &*ZONE_REQUESTS,
        ] {
            remove_matching(family, "service", &self.service);
        }
        remove_matching(&*UPSTREAM_DURATION, "service", &self.service);
        remove_matching(&*UPSTREAM_CONNECT_DURATION, "service", &self.service);
        super::upstream_pool::PoolCounters::remove(&self.service);
        remove_matching(&*SERVICE_INSTANCES, "service", &self.service);
        remove_matching(&*INSTANCE_HEALTHY, "service", &self.service);
        remove_matching(&*BREAKER_STATE, "service", &self.service);
    }
}
