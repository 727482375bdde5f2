//! The standard OpenTelemetry environment variables, applied over the `tracing` section the way
//! every OTel SDK does it: the file gives the defaults, a variable that is set wins. They are
//! read at start (tracing is start-only). Supported: `OTEL_SDK_DISABLED`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL: `/v1/traces` is appended) and
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is), `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`
//! (milliseconds), `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL` (`http/protobuf`, `grpc`; another
//! value is reported and ignored) and `OTEL_EXPORTER_OTLP[_TRACES]_COMPRESSION` (`gzip`,
//! `none`). `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*` are read
//! by the SDK itself.
//!
//! For OTLP/HTTP, an endpoint without a path (`http://collector:4318`) gets `/v1/traces` either
//! way: posting spans to `/` would be lost silently. For gRPC the endpoint is the collector's
//! base URL (the method path is fixed), and the default moves to port 4317.

use crate::config::{
    OtlpCompression, OtlpProtocol, TracingConfig, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT,
};
use std::time::Duration;

/// The tracing settings in force, and what the environment asked for that cannot be done.
pub fn settings(
    file: Option<&TracingConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> (Option<TracingConfig>, Vec<String>) {
    let mut warnings = Vec::new();
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return (None, warnings);
    }
    let traces_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base_endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let mut config = match (file, &traces_endpoint, &base_endpoint) {
        (Some(f), _, _) => f.clone(),
        (None, None, None) => return (None, warnings),
        // An endpoint in the environment alone turns tracing on, as in any SDK.
        (None, _, _) => TracingConfig::default(),
    };
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match protocol.as_deref().map(str::trim) {
        None => {}
        Some("http/protobuf") => config.protocol = OtlpProtocol::HttpProtobuf,
        Some("grpc") => config.protocol = OtlpProtocol::Grpc,
        Some(p) => warnings.push(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={p}: not supported (http/protobuf, grpc); ignored"
        )),
    }
    let grpc = config.protocol == OtlpProtocol::Grpc;
    if let Some(url) = traces_endpoint {
        config.otlp_endpoint = url;
    } else if let Some(base) = base_endpoint {
        config.otlp_endpoint = if grpc {
            base
        } else {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        };
    } else if grpc && config.otlp_endpoint == DEFAULT_HTTP_ENDPOINT {
        config.otlp_endpoint = DEFAULT_GRPC_ENDPOINT.into();
    }
    if !grpc {
        config.otlp_endpoint = with_traces_path(&config.otlp_endpoint);
    }
    if config.otlp_endpoint.starts_with("https:") {
        warnings.push(format!(
            "{}: the exporter speaks plaintext only; exports will fail",
            config.otlp_endpoint
        ));
    }
    let compression = set("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
        .or_else(|| set("OTEL_EXPORTER_OTLP_COMPRESSION"));
    match compression.as_deref().map(str::trim) {
        None => {}
        Some("gzip") => config.compression = OtlpCompression::Gzip,
        Some("none") => config.compression = OtlpCompression::None,
        Some(c) => warnings.push(format!(
            "OTEL_EXPORTER_OTLP_COMPRESSION={c}: not supported (gzip, none); ignored"
        )),
    }
    if let Some(name) = set("OTEL_SERVICE_NAME") {
        config.service_name = name;
    }
    if let Some(sampler) = set("OTEL_TRACES_SAMPLER") {
        let arg = set("OTEL_TRACES_SAMPLER_ARG");
        match sampler_ratio(&sampler, arg.as_deref()) {
            Ok(ratio) => config.sample_ratio = ratio,
            Err(e) => warnings.push(e),
        }
    }
    let timeout =
        set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| set("OTEL_EXPORTER_OTLP_TIMEOUT"));
    if let Some(ms) = timeout {
        match ms.trim().parse::<u64>() {
            Ok(ms) => config.export_timeout = Duration::from_millis(ms),
            Err(_) => warnings.push(format!("OTEL_EXPORTER_OTLP_TIMEOUT={ms}: not milliseconds")),
        }
    }
    (Some(config), warnings)
}

/// `url` with `/v1/traces` when it has no path.
fn with_traces_path(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.path(), "" | "/") && uri.query().is_none() => {
            format!("{}/v1/traces", url.trim_end_matches('/'))
        }
        _ => url.to_string(),
    }
}

/// The sample ratio an `OTEL_TRACES_SAMPLER` stands for. Portico always honours a trusted
/// parent's decision, so the `parentbased_` and plain variants mean the same here.
fn sampler_ratio(sampler: &str, arg: Option<&str>) -> Result<f64, String> {
    let name = sampler.trim().to_ascii_lowercase();
    match name.trim_start_matches("parentbased_") {
        "always_on" => Ok(1.0),
        "always_off" => Ok(0.0),
        "traceidratio" => match arg.map(|a| a.trim().parse::<f64>()) {
            None => Ok(1.0),
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => Ok(r),
            Some(_) => Err(format!(
                "OTEL_TRACES_SAMPLER_ARG={}: not a ratio in [0, 1]; ignored",
                arg.unwrap_or_default()
            )),
        },
        _ => Err(format!(
            "OTEL_TRACES_SAMPLER={sampler}: not supported; ignored"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(
        vars: &[(&str, &str)],
        file: Option<&TracingConfig>,
    ) -> (Option<TracingConfig>, Vec<String>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings(file, |k| map.get(k).cloned())
    }

    #[test]
    fn the_file_is_the_default_and_a_set_variable_wins() {
        let file = TracingConfig {
            otlp_endpoint: "http://file:4318/v1/traces".into(),
            sample_ratio: 0.2,
            service_name: "from-file".into(),
            ..TracingConfig::default()
        };
        let (c, w) = with(&[], Some(&file));
        assert_eq!(c.unwrap(), file);
        assert!(w.is_empty());
        let (c, _) = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/"),
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
            Some(&file),
        );
        let c = c.unwrap();
        assert_eq!(c.otlp_endpoint, "http://env:4318/v1/traces");
        assert_eq!((c.service_name.as_str(), c.sample_ratio), ("from-env", 0.5));
        assert_eq!(c.export_timeout, Duration::from_millis(2500));
        let (c, _) = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:9999/custom",
                ),
            ],
            None,
        );
        assert_eq!(
            c.unwrap().otlp_endpoint,
            "http://traces:9999/custom",
            "used as it is"
        );
    }

    #[test]
    fn nothing_set_means_no_tracing_and_disabled_wins_over_everything() {
        assert!(with(&[], None).0.is_none());
        let file = TracingConfig::default();
        assert!(with(&[("OTEL_SDK_DISABLED", "true")], Some(&file))
            .0
            .is_none());
        assert!(with(&[("OTEL_SDK_DISABLED", "false")], Some(&file))
            .0
            .is_some());
    }

    #[test]
    fn a_path_less_endpoint_gets_the_traces_path_and_unknown_values_are_reported() {
        let file = TracingConfig {
            otlp_endpoint: "http://collector:4318".into(),
            ..TracingConfig::default()
        };
        let (c, _) = with(&[], Some(&file));
        assert_eq!(c.unwrap().otlp_endpoint, "http://collector:4318/v1/traces");
        let (c, w) = with(
            &[
                ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            Some(&file),
        );
        assert_eq!(c.unwrap().sample_ratio, file.sample_ratio);
        assert_eq!(w.len(), 2, "{w:?}");
        let (c, _) = with(&[("OTEL_TRACES_SAMPLER", "always_on")], Some(&file));
        assert_eq!(c.unwrap().sample_ratio, 1.0);
    }

    #[test]
    fn grpc_takes_the_base_url_as_it_is_and_moves_the_default_port() {
        let (c, w) = with(
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ],
            Some(&TracingConfig::default()),
        );
        let c = c.unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
        assert_eq!(c.compression, OtlpCompression::Gzip);
        assert_eq!(c.otlp_endpoint, DEFAULT_GRPC_ENDPOINT);
        let (c, _) = with(
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ],
            None,
        );
        let c = c.unwrap();
        assert_eq!(
            c.protocol,
            OtlpProtocol::Grpc,
            "the per-signal variable wins"
        );
        assert_eq!(c.otlp_endpoint, "http://collector:4317", "no /v1/traces");
        let file = TracingConfig {
            protocol: OtlpProtocol::Grpc,
            otlp_endpoint: "http://agent:4317".into(),
            ..TracingConfig::default()
        };
        let (c, w) = with(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")], Some(&file));
        assert_eq!(c.unwrap().otlp_endpoint, "http://agent:4317");
        assert_eq!(w.len(), 1, "{w:?}");
    }
}
