//! Schema of the observability sections: business KPIs, business events, tracing, access log.

use super::types::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A business KPI: requests matching every given criterion count in
/// `portico_business_events_total{kpi, route}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// `[a-z0-9_]+`; the `kpi` label.
    pub name: String,
    /// Route names; empty = every route.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Empty = any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `2xx`-style class or a list of codes; absent = any status.
    #[serde(default)]
    pub status: Option<StatusMatch>,
    /// A request header that must be present (with one of `values`, if given).
    #[serde(default)]
    pub request_header: Option<HeaderMatch>,
    /// A response header whose value must be one of `values` (or present, if none given).
    #[serde(default)]
    pub response_header: Option<HeaderMatch>,
    /// Most `route` series this KPI may create; further routes count as `route="_other"`.
    #[serde(default = "default_kpi_series")]
    pub max_series: usize,
    /// Also count by authenticated consumer, in `portico_business_events_by_consumer_total`.
    #[serde(default)]
    pub by_consumer: bool,
    /// Most `consumer` series; further consumers count as `consumer="_other"`.
    #[serde(default = "default_kpi_consumers")]
    pub max_consumers: usize,
}

fn default_kpi_consumers() -> usize {
    100
}

fn default_kpi_series() -> usize {
    50
}

/// A status class (`2xx`) or an explicit list of codes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StatusMatch {
    Class(String),
    Codes(Vec<u16>),
}

/// A header name and an allow-list of values (empty = any value).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// KPI matches published to a Redis Stream with `XADD ... MAXLEN ~ maxlen`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub stream: String,
    pub maxlen: u64,
    /// KPI names to publish; empty = every KPI.
    pub kpis: Vec<String>,
    /// Events waiting for Redis; when full, new events are dropped and counted.
    pub queue: usize,
    /// Most events per `XADD` pipeline.
    pub batch: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            stream: "portico:events".into(),
            maxlen: 100_000,
            kpis: Vec::new(),
            queue: 10_000,
            batch: 256,
        }
    }
}

/// OpenTelemetry tracing with OTLP export (HTTP/protobuf or gRPC).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector. OTLP/HTTP: a URL, `/v1/traces` added when it has no path; gRPC: the
    /// collector's base URL (`http://collector:4317`). `OTEL_*` variables override these
    /// settings (`telemetry::otel_env`).
    pub otlp_endpoint: String,
    pub protocol: OtlpProtocol,
    pub compression: OtlpCompression,
    /// Share of new traces sampled; an incoming sampled flag (when trusted) is honoured.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Whose `traceparent`/`tracestate` are continued.
    pub trust_incoming: TrustIncoming,
    #[serde(with = "duration")]
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: DEFAULT_HTTP_ENDPOINT.into(),
            protocol: OtlpProtocol::HttpProtobuf,
            compression: OtlpCompression::None,
            sample_ratio: 0.1,
            service_name: "portico".into(),
            trust_incoming: TrustIncoming::TrustedProxies,
            export_timeout: Duration::from_secs(5),
        }
    }
}

/// Where spans go when nothing names a collector: a local agent on the OTLP/HTTP port.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";
/// The same for OTLP/gRPC.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";

/// The OTLP transport, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// Compression of export requests, as `OTEL_EXPORTER_OTLP_COMPRESSION` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OtlpCompression {
    #[default]
    None,
    Gzip,
}

/// Which clients may continue their own trace (and force sampling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrustIncoming {
    /// Only peers in `server.trusted_proxies`.
    #[default]
    TrustedProxies,
    All,
    None,
}

/// The operational log (standard error).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax (`info`, `warn,portico::proxy=debug`). Applied at start
    /// unless `RUST_LOG` is set, and by every reload that changes it.
    pub level: Option<String>,
}

/// The access log: one JSON line per request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Share of requests logged (errors and gateway-made responses are always logged).
    pub sample: f64,
    /// `-` = standard output, else a file appended to.
    pub path: String,
    /// Log the query string (off by default: queries carry tokens and personal data).
    pub log_query: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sample: 1.0,
            path: "-".into(),
            log_query: false,
        }
    }
}
