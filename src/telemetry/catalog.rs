//! The catalogue of every metric family Portico exports: name, type and label names. A test
//! compares it with a live exposition, and the dashboards' and alerts' PromQL is checked
//! against it, so a renamed metric or label cannot silently break them.

/// Prometheus metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

pub use super::label_values::{values, VALUES};
use Kind::*;

/// Every `portico_*` family: (name, type, label names in alphabetical order).
pub const CATALOG: &[(&str, Kind, &[&str])] = &[
    ("portico_access_log_dropped_total", Counter, &[]),
    (
        "portico_auth_decisions_total",
        Counter,
        &["policy", "result", "route"],
    ),
    (
        "portico_auth_token_cache_total",
        Counter,
        &["policy", "result"],
    ),
    ("portico_build_info", Gauge, &["version"]),
    (
        "portico_business_events_by_consumer_total",
        Counter,
        &["consumer", "kpi"],
    ),
    ("portico_business_events_total", Counter, &["kpi", "route"]),
    (
        "portico_circuit_breaker_short_circuited_total",
        Counter,
        &["mode", "service"],
    ),
    (
        "portico_circuit_breaker_state",
        Gauge,
        &["address", "service", "state"],
    ),
    (
        "portico_circuit_breaker_transitions_total",
        Counter,
        &["from", "service", "to"],
    ),
    (
        "portico_compression_bytes_total",
        Counter,
        &["route", "side"],
    ),
    (
        "portico_compression_responses_total",
        Counter,
        &["algorithm", "route"],
    ),
    ("portico_concurrency_in_flight", Gauge, &["route"]),
    ("portico_config_info", Gauge, &["hash"]),
    (
        "portico_config_last_reload_success_timestamp_seconds",
        Gauge,
        &[],
    ),
    ("portico_config_last_reload_successful", Gauge, &[]),
    ("portico_config_reloads_total", Counter, &["result"]),
    ("portico_consumer_sync_failures_total", Counter, &[]),
    ("portico_consumers", Gauge, &["source"]),
    (
        "portico_downstream_connections",
        Gauge,
        &["listener", "protocol"],
    ),
    ("portico_downstream_disconnects_total", Counter, &["phase"]),
    ("portico_downstream_connections_idle", Gauge, &["listener"]),
    ("portico_downstream_connections_dormant", Gauge, &[]),
    (
        "portico_downstream_connections_accepted_total",
        Counter,
        &["listener", "protocol"],
    ),
    (
        "portico_downstream_connections_refused_total",
        Counter,
        &["listener", "reason"],
    ),
    (
        "portico_downstream_slow_client_timeouts_total",
        Counter,
        &["phase"],
    ),
    (
        "portico_downstream_tls_handshake_failures_total",
        Counter,
        &["listener", "reason"],
    ),
    ("portico_events_dropped_total", Counter, &["reason"]),
    ("portico_events_published_total", Counter, &[]),
    ("portico_gateways_live", Gauge, &[]),
    (
        "portico_http_gateway_responses_total",
        Counter,
        &["reason", "route"],
    ),
    ("portico_http_request_body_bytes_total", Counter, &["route"]),
    (
        "portico_http_request_body_size_bytes",
        Histogram,
        &["route"],
    ),
    (
        "portico_http_request_duration_seconds",
        Histogram,
        &["route", "status_class"],
    ),
    ("portico_http_requests_in_flight", Gauge, &[]),
    (
        "portico_http_requests_total",
        Counter,
        &["code", "method", "protocol", "route", "source"],
    ),
    (
        "portico_http_response_body_bytes_total",
        Counter,
        &["route"],
    ),
    (
        "portico_http_response_body_size_bytes",
        Histogram,
        &["route"],
    ),
    ("portico_ip_deny_entries", Gauge, &[]),
    ("portico_ip_deny_sync_failures_total", Counter, &[]),
    ("portico_jwks_keys", Gauge, &["policy"]),
    (
        "portico_jwks_refreshes_total",
        Counter,
        &["policy", "result"],
    ),
    (
        "portico_mirror_comparisons_total",
        Counter,
        &["result", "route"],
    ),
    (
        "portico_mirror_dropped_total",
        Counter,
        &["reason", "route"],
    ),
    ("portico_mirror_in_flight", Gauge, &["route"]),
    (
        "portico_mirror_requests_total",
        Counter,
        &["outcome", "route"],
    ),
    (
        "portico_policy_refusals_total",
        Counter,
        &["mode", "policy", "route"],
    ),
    (
        "portico_ratelimit_decisions_total",
        Counter,
        &["decision", "route", "rule", "store"],
    ),
    (
        "portico_ratelimit_fallback_decisions_total",
        Counter,
        &["policy", "rule"],
    ),
    (
        "portico_ratelimit_local_evictions_total",
        Counter,
        &["rule", "store"],
    ),
    ("portico_ratelimit_local_keys", Gauge, &["rule", "store"]),
    ("portico_ratelimit_redis_batch_decisions", Histogram, &[]),
    (
        "portico_ratelimit_store_errors_total",
        Counter,
        &["kind", "rule"],
    ),
    (
        "portico_redis_command_duration_seconds",
        Histogram,
        &["client", "command"],
    ),
    (
        "portico_redis_connects_total",
        Counter,
        &["client", "result"],
    ),
    ("portico_redis_errors_total", Counter, &["client", "kind"]),
    ("portico_redis_primary_switches_total", Counter, &[]),
    ("portico_redis_topology_info", Gauge, &["tls", "topology"]),
    ("portico_redis_up", Gauge, &["client"]),
    ("portico_registry_data_loss_detected_total", Counter, &[]),
    (
        "portico_registry_expired_removed_total",
        Counter,
        &["service"],
    ),
    ("portico_registry_instances", Gauge, &["service", "state"]),
    (
        "portico_registry_last_sync_success_timestamp_seconds",
        Gauge,
        &[],
    ),
    ("portico_registry_syncs_total", Counter, &["result"]),
    (
        "portico_split_requests_total",
        Counter,
        &["route", "service"],
    ),
    (
        "portico_tls_certificate_expiry_timestamp_seconds",
        Gauge,
        &["listener"],
    ),
    ("portico_tracing_export_failures_total", Counter, &[]),
    ("portico_tracing_spans_dropped_total", Counter, &[]),
    (
        "portico_upstream_attempts_total",
        Counter,
        &["service", "status_class"],
    ),
    (
        "portico_upstream_connect_duration_seconds",
        Histogram,
        &["service"],
    ),
    (
        "portico_upstream_connections_total",
        Counter,
        &["kind", "service"],
    ),
    ("portico_upstream_dns_failures_total", Counter, &["service"]),
    (
        "portico_upstream_errors_total",
        Counter,
        &["kind", "service"],
    ),
    (
        "portico_upstream_instance_healthy",
        Gauge,
        &["address", "service"],
    ),
    ("portico_upstream_instances", Gauge, &["service"]),
    (
        "portico_upstream_panic_selections_total",
        Counter,
        &["service"],
    ),
    (
        "portico_upstream_response_duration_seconds",
        Histogram,
        &["service"],
    ),
    (
        "portico_upstream_retries_total",
        Counter,
        &["reason", "service"],
    ),
    (
        "portico_upstream_retry_budget_exhausted_total",
        Counter,
        &["service"],
    ),
    (
        "portico_upstream_zone_requests_total",
        Counter,
        &["locality", "service"],
    ),
];

/// `process_*` families from the process collector (`telemetry/process.rs`).
pub const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
    "process_virtual_memory_bytes",
];

/// The catalogue entry of `name`.
pub fn find(name: &str) -> Option<(Kind, &'static [&'static str])> {
    CATALOG
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, l)| (*k, *l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_reason_is_catalogued_and_every_closed_label_exists() {
        let reasons: Vec<&str> = crate::reply::ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(crate::reply::ANSWER_REASONS)
            .collect();
        assert_eq!(
            values("portico_http_gateway_responses_total", "reason"),
            Some(&reasons[..])
        );
        for (family, label, _) in VALUES {
            let labels = find(family).map(|(_, l)| l).unwrap_or_default();
            assert!(labels.contains(label), "{family} has no label {label}");
        }
    }
}
