//! Telemetry: Prometheus metric families and the per-snapshot handles the request path uses.

pub mod metrics;
pub mod ratelimit;
pub mod redis;
