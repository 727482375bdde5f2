//! Telemetry: Prometheus metric families and the per-snapshot handles the request path uses,
//! business KPIs and events, tracing and the access log.

pub mod access_log;
pub mod auth;
pub mod body_sizes;
pub mod catalog;
pub mod connections;
pub mod events;
pub mod json_line;
pub mod kpi;
pub mod label_values;
pub mod metrics;
pub mod mirror;
pub mod otel_env;
pub mod policy;
pub mod process;
pub mod query_redaction;
pub mod ratelimit;
pub mod redis;
pub mod service_metrics;
pub mod span_export;
pub mod server_trace;
pub mod split;
pub mod tracing;
pub mod upstream_pool;

use std::sync::OnceLock;

/// Registers every metric family Portico exports (in the default Prometheus registry) and the
/// label sets alerts rely on, once per process. Families are declared beside what they measure;
/// registration is here, in one place.
pub fn init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        metrics::init();
        redis::init();
        ratelimit::init();
        policy::init();
        auth::init();
        kpi::init();
        events::init();
        access_log::init();
        connections::init();
        span_export::init();
        body_sizes::init();
        upstream_pool::init();
        split::init();
        mirror::init();
        service_metrics::ServiceMetrics::init();
        // The default registry refuses a second registration; `DONE` makes this the only one.
        let _ = prometheus::register(Box::new(process::ProcessCollector::default()));
    });
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    })
}

/// This gateway process's id, `HOST-PID-RANDOM`: its membership entry and its traces'
/// `service.instance.id` are the same string, so one finds the other.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "{}-{}-{:08x}",
            host_name(),
            std::process::id(),
            fastrand::u32(..)
        )
    })
}

/// Seconds since the Unix epoch (metric timestamps, admin views).
pub fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
