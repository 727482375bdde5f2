//! The closed label-value sets of the catalogue: for each label that can only take known
//! values, every value Portico can export. `tests/metrics_catalog.rs` checks the exposition
//! never shows another value, and `tests/promql_refs.rs` checks dashboards and rules only match
//! on these.

/// The `client` label of the Redis families: one per logical Redis client.
const REDIS_CLIENTS: &[&str] = &[
    "registry",
    "admin",
    "ratelimit",
    "events",
    "membership",
    "ip_deny",
    "consumers",
];

/// Labels whose values are a closed set: (family, label, every value Portico can export).
pub const VALUES: &[(&str, &str, &[&str])] = &[
    (
        "portico_mirror_requests_total",
        "outcome",
        &super::mirror::OUTCOMES,
    ),
    (
        "portico_mirror_dropped_total",
        "reason",
        &super::mirror::DROP_REASONS,
    ),
    (
        "portico_mirror_comparisons_total",
        "result",
        &super::mirror::RESULTS,
    ),
    (
        "portico_http_requests_total",
        "source",
        &["upstream", "gateway"],
    ),
    (
        "portico_http_requests_total",
        "protocol",
        &super::metrics::Protocol::LABELS,
    ),
    (
        "portico_http_requests_total",
        "method",
        &[
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
            "_OTHER",
        ],
    ),
    (
        "portico_http_request_duration_seconds",
        "status_class",
        &["1xx", "2xx", "3xx", "4xx", "5xx"],
    ),
    ("portico_consumers", "source", &["config", "redis"]),
    (
        "portico_upstream_connections_total",
        "kind",
        &super::upstream_pool::KINDS,
    ),
    (
        "portico_downstream_disconnects_total",
        "phase",
        &super::connections::DISCONNECT_PHASES,
    ),
    (
        "portico_auth_decisions_total",
        "result",
        &super::auth::RESULTS,
    ),
    (
        "portico_http_gateway_responses_total",
        "reason",
        &[
            "no_route",
            "rate_limited",
            "circuit_open",
            "no_healthy_upstream",
            "upstream_connect_error",
            "upstream_timeout",
            "deadline_exceeded",
            "bad_request",
            "payload_too_large",
            "unauthorized",
            "headers_too_large",
            "method_not_allowed",
            "request_timeout",
            "forbidden",
            "overloaded",
            "auth_unavailable",
            "redirect",
            "static_response",
            "cors_preflight",
            "auth_denied",
        ],
    ),
    (
        "portico_upstream_attempts_total",
        "status_class",
        &["1xx", "2xx", "3xx", "4xx", "5xx", "error"],
    ),
    (
        "portico_upstream_errors_total",
        "kind",
        &super::service_metrics::UPSTREAM_ERROR_KINDS,
    ),
    (
        "portico_upstream_zone_requests_total",
        "locality",
        &["local", "cross_zone"],
    ),
    (
        "portico_upstream_retries_total",
        "reason",
        &["connect_failure", "status", "error"],
    ),
    (
        "portico_circuit_breaker_state",
        "state",
        &["closed", "open", "half_open"],
    ),
    (
        "portico_circuit_breaker_transitions_total",
        "from",
        &["closed", "open", "half_open"],
    ),
    (
        "portico_circuit_breaker_transitions_total",
        "to",
        &["closed", "open", "half_open"],
    ),
    (
        "portico_circuit_breaker_short_circuited_total",
        "mode",
        &["enforced", "shadow"],
    ),
    (
        "portico_config_reloads_total",
        "result",
        &["success", "failure"],
    ),
    ("portico_redis_up", "client", REDIS_CLIENTS),
    (
        "portico_redis_command_duration_seconds",
        "client",
        REDIS_CLIENTS,
    ),
    ("portico_redis_errors_total", "client", REDIS_CLIENTS),
    ("portico_redis_connects_total", "client", REDIS_CLIENTS),
    (
        "portico_redis_connects_total",
        "result",
        &["success", "failure"],
    ),
    (
        "portico_redis_topology_info",
        "topology",
        &["single", "cluster", "sentinel"],
    ),
    ("portico_redis_topology_info", "tls", &["true", "false"]),
    (
        "portico_redis_errors_total",
        "kind",
        &["timeout", "connection", "protocol"],
    ),
    (
        "portico_registry_syncs_total",
        "result",
        &["success", "failure"],
    ),
    (
        "portico_registry_instances",
        "state",
        &["live", "draining", "expired", "invalid"],
    ),
    (
        "portico_ratelimit_decisions_total",
        "decision",
        &["allowed", "limited", "shadow_limited"],
    ),
    (
        "portico_ratelimit_decisions_total",
        "store",
        &["local", "redis", "fallback"],
    ),
    (
        "portico_ratelimit_store_errors_total",
        "kind",
        &["timeout", "connection", "protocol", "unavailable"],
    ),
    (
        "portico_ratelimit_fallback_decisions_total",
        "policy",
        &["local_fallback", "allow", "deny"],
    ),
    (
        "portico_ratelimit_local_keys",
        "store",
        &["local", "fallback"],
    ),
    (
        "portico_ratelimit_local_evictions_total",
        "store",
        &["local", "fallback"],
    ),
    ("portico_compression_bytes_total", "side", &["in", "out"]),
    (
        "portico_compression_responses_total",
        "algorithm",
        &["br", "zstd", "gzip"],
    ),
    (
        "portico_policy_refusals_total",
        "policy",
        &["rate_limit", "ip", "cors", "auth", "concurrency"],
    ),
    (
        "portico_policy_refusals_total",
        "mode",
        &["enforce", "shadow"],
    ),
    (
        "portico_events_dropped_total",
        "reason",
        &["queue_full", "redis_error"],
    ),
    (
        "portico_downstream_connections",
        "protocol",
        &super::metrics::Protocol::LABELS,
    ),
    (
        "portico_downstream_connections_accepted_total",
        "protocol",
        &super::metrics::Protocol::LABELS,
    ),
    (
        "portico_downstream_tls_handshake_failures_total",
        "reason",
        &super::connections::HANDSHAKE_FAILURES,
    ),
    (
        "portico_downstream_connections_refused_total",
        "reason",
        &["max_connections", "max_connections_per_ip"],
    ),
    (
        "portico_downstream_slow_client_timeouts_total",
        "phase",
        &["request_head", "h2_preface"],
    ),
];

/// The closed set of values of `label` on `family`, if it is one.
pub fn values(family: &str, label: &str) -> Option<&'static [&'static str]> {
    VALUES
        .iter()
        .find(|(f, l, _)| *f == family && *l == label)
        .map(|(_, _, v)| *v)
}
