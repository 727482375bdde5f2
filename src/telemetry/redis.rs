//! Redis and service-registry metric families: connection state, dials, command latency and
//! errors per logical client (`registry`, `admin`, `ratelimit`, `events`, `membership`), the
//! sentinels' primary switches, and registry sync results.

use super::metrics::family;
use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Gauge, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Redis command latency buckets in seconds (0.25 ms to 1 s).
const REDIS_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

family!(REDIS_UP: IntGaugeVec = register_int_gauge_vec!(
    "portico_redis_up",
    "1 if the last Redis call of this client succeeded, else 0.",
    &["client"]
));
family!(REDIS_COMMAND_DURATION: HistogramVec = register_histogram_vec!(
    "portico_redis_command_duration_seconds",
    "Redis round-trip time per logical command, failures included.",
    &["client", "command"],
    REDIS_BUCKETS.to_vec()
));
family!(REDIS_ERRORS: IntCounterVec = register_int_counter_vec!(
    "portico_redis_errors_total",
    "Failed Redis calls by kind (timeout, connection, protocol).",
    &["client", "kind"]
));
family!(REDIS_CONNECTS: IntCounterVec = register_int_counter_vec!(
    "portico_redis_connects_total",
    "Connections dialled per client by result; every success after the first is a reconnect.",
    &["client", "result"]
));
family!(PRIMARY_SWITCHES: IntCounter = register_int_counter!(
    "portico_redis_primary_switches_total",
    "Times the Redis sentinels named a new primary and every client reconnected to it."
));
family!(REDIS_TOPOLOGY: IntGaugeVec = register_int_gauge_vec!(
    "portico_redis_topology_info",
    "1 for the Redis topology in use (single, cluster or sentinel) and whether it uses TLS.",
    &["topology", "tls"]
));
family!(GATEWAYS_LIVE: IntGauge = register_int_gauge!(
    "portico_gateways_live",
    "Gateways heartbeating into the membership list within its TTL (the last count while Redis is away; 1 without Redis)."
));
family!(REGISTRY_SYNCS: IntCounterVec = register_int_counter_vec!(
    "portico_registry_syncs_total",
    "Registry passes by result; on failure the last known good instances stay in use.",
    &["result"]
));
family!(REGISTRY_LAST_SYNC: Gauge = register_gauge!(
    "portico_registry_last_sync_success_timestamp_seconds",
    "Unix time of the last successful registry pass (0 = none yet)."
));
family!(REGISTRY_INSTANCES: IntGaugeVec = register_int_gauge_vec!(
    "portico_registry_instances",
    "Registry instances per service by state (live, draining, expired, invalid).",
    &["service", "state"]
));
family!(REGISTRY_EXPIRED_REMOVED: IntCounterVec = register_int_counter_vec!(
    "portico_registry_expired_removed_total",
    "Expired registrations the janitor removed.",
    &["service"]
));
family!(REGISTRY_DATA_LOSS: IntCounterVec = register_int_counter_vec!(
    "portico_registry_data_loss_detected_total",
    "Times Redis was found to have lost the registry (epoch token gone); known instances were kept until their heartbeats expired.",
    &[]
));

/// Registry instance states, in label order.
pub const INSTANCE_STATES: [&str; 4] = ["live", "draining", "expired", "invalid"];

/// Registers the families and pre-creates the label sets alerts rely on.
pub fn init() {
    LazyLock::force(&REDIS_UP);
    LazyLock::force(&REDIS_COMMAND_DURATION);
    LazyLock::force(&REDIS_ERRORS);
    LazyLock::force(&REDIS_CONNECTS);
    LazyLock::force(&PRIMARY_SWITCHES);
    LazyLock::force(&REDIS_TOPOLOGY);
    GATEWAYS_LIVE.set(1);
    for result in ["success", "failure"] {
        REGISTRY_SYNCS.with_label_values(&[result]);
    }
    LazyLock::force(&REGISTRY_LAST_SYNC);
    LazyLock::force(&REGISTRY_INSTANCES);
    LazyLock::force(&REGISTRY_EXPIRED_REMOVED);
    REGISTRY_DATA_LOSS.with_label_values::<&str>(&[]);
}

/// Error kinds of `portico_redis_errors_total`.
pub const ERROR_KINDS: [&str; 3] = ["timeout", "connection", "protocol"];

/// Clients that talk to Redis only when an operator acts: they have no `portico_redis_up`, since
/// one failed call would hold it at 0 — and the alert firing — until the next call, maybe days.
const ON_DEMAND: &[&str] = &["admin"];

/// Pre-creates the error series of a client that is about to talk to Redis, so each shows 0
/// before its first error, and its `up` gauge at 1: no call has failed yet (at 0, an idle
/// client such as the event publisher with no events to write would raise
/// `PorticoRedisUnreachable` without ever having tried).
pub fn client_in_use(client: &str) {
    if !ON_DEMAND.contains(&client) {
        REDIS_UP.with_label_values(&[client]).set(1);
    }
    for kind in ERROR_KINDS {
        REDIS_ERRORS.with_label_values(&[client, kind]);
    }
    for result in ["success", "failure"] {
        REDIS_CONNECTS.with_label_values(&[client, result]);
    }
}

/// Counts one dial of `client`.
pub fn connected(client: &str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    REDIS_CONNECTS.with_label_values(&[client, result]).inc();
}

/// Says which topology is in use.
pub fn topology(kind: &str, tls: bool) {
    REDIS_TOPOLOGY
        .with_label_values(&[kind, if tls { "true" } else { "false" }])
        .set(1);
}

/// Records one Redis call of `client`: its latency, whether it succeeded (`up`), and its error
/// kind if it failed.
pub fn observe(client: &str, command: &str, elapsed: Duration, error: Option<&str>) {
    REDIS_COMMAND_DURATION
        .with_label_values(&[client, command])
        .observe(elapsed.as_secs_f64());
    if !ON_DEMAND.contains(&client) {
        REDIS_UP
            .with_label_values(&[client])
            .set(i64::from(error.is_none()));
    }
    if let Some(kind) = error {
        REDIS_ERRORS.with_label_values(&[client, kind]).inc();
    }
}

/// Makes a registry-discovered service's series (at zero until the watcher's first pass; a
/// reload keeps the values they have).
pub fn registry_service(service: &str) {
    REGISTRY_EXPIRED_REMOVED.with_label_values(&[service]);
    for state in INSTANCE_STATES {
        REGISTRY_INSTANCES.with_label_values(&[service, state]);
    }
}

/// Sets the registry's per-service instance counts.
pub fn registry_instances(service: &str, counts: [usize; 4]) {
    REGISTRY_EXPIRED_REMOVED.with_label_values(&[service]);
    for (state, n) in INSTANCE_STATES.iter().zip(counts) {
        REGISTRY_INSTANCES
            .with_label_values(&[service, state])
            .set(n as i64);
    }
}

/// Removes a service's registry series (it left the registry or the configuration).
pub fn remove_service(service: &str) {
    for state in INSTANCE_STATES {
        let _ = REGISTRY_INSTANCES.remove_label_values(&[service, state]);
    }
    let _ = REGISTRY_EXPIRED_REMOVED.remove_label_values(&[service]);
}
