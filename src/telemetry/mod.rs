//! Telemetry: Prometheus metric families and the per-snapshot handles the request path uses,
//! business KPIs and events, tracing and the access log.

pub mod access_log;
pub mod catalog;
pub mod connections;
pub mod events;
pub mod json_line;
pub mod kpi;
pub mod metrics;
pub mod ratelimit;
pub mod redis;
pub mod tracing;
