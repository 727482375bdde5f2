//! The standard OpenTelemetry environment variables through the real binary: with no
//! `tracing` section at all, `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL) turns tracing on and
//! spans reach `/v1/traces`; `OTEL_SERVICE_NAME` and `OTEL_TRACES_SAMPLER` win over the file;
//! `OTEL_SDK_DISABLED` turns it off; OTLP/gRPC and gzip, chosen by variable or by the file,
//! reach collectors that check the wire format.

mod support;
use std::time::Duration;
use support::otlp::{attr, collector, grpc_collector, http_collector, Received};
use support::*;

fn config(echo: &EchoServer, tracing: &str) -> String {
    format!(
        "{tracing}routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    )
}

#[test]
fn the_environment_alone_turns_tracing_on_and_wins_over_the_file() {
    let (port, spans) = collector();
    let [echo] = echoes(["a"]);
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        ("OTEL_SERVICE_NAME", "orders-edge"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let gw = Gateway::start_with_env(&config(&echo, ""), &env);
    assert!(
        gw.eventually(Duration::from_secs(10), || {
            assert_eq!(gw.get("/x").status, 200);
            !spans.lock().unwrap().is_empty()
        }),
        "spans reach the collector at {base}/v1/traces"
    );
    let first = spans.lock().unwrap()[0].clone();
    assert_eq!(
        attr(&first, "resource.service.name").as_deref(),
        Some("orders-edge")
    );

    // A file that samples nothing and names itself otherwise: the variables win.
    let (port2, spans2) = collector();
    let file = format!(
        "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port2}\", sample_ratio: 0.0, service_name: from-file}}\n"
    );
    let gw2 = Gateway::start_with_env(
        &config(&echo, &file),
        &[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert!(
        gw2.eventually(Duration::from_secs(10), || {
            assert_eq!(gw2.get("/x").status, 200);
            !spans2.lock().unwrap().is_empty()
        }),
        "sampled although the file says 0.0, and posted to /v1/traces of a path-less endpoint"
    );
    let first = spans2.lock().unwrap()[0].clone();
    assert_eq!(
        attr(&first, "resource.service.name").as_deref(),
        Some("from-file")
    );
}

#[test]
fn otel_sdk_disabled_turns_tracing_off() {
    let (port, spans) = collector();
    let [echo] = echoes(["a"]);
    let file = format!(
        "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\", sample_ratio: 1.0}}\n"
    );
    let gw = Gateway::start_with_env(
        &config(&echo, &file),
        &[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    for _ in 0..20 {
        let r = gw.get("/x");
        assert_eq!(r.status, 200);
        assert!(
            r.json()["headers"].get("traceparent").is_none(),
            "no trace context upstream"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(spans.lock().unwrap().is_empty());
}

#[test]
fn an_unreachable_collector_is_counted_not_silent() {
    let [echo] = echoes(["a"]);
    let file = format!(
        "tracing: {{otlp_endpoint: \"http://127.0.0.1:{}/v1/traces\", sample_ratio: 1.0, export_timeout: 1s}}\n",
        free_port()
    );
    let gw = Gateway::start_with_env(&config(&echo, &file), &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    assert_eq!(
        gw.metric("portico_tracing_export_failures_total"),
        0.0,
        "made at zero"
    );
    let counted = gw.eventually(Duration::from_secs(10), || {
        assert_eq!(gw.get("/x").status, 200);
        gw.metric("portico_tracing_export_failures_total") >= 1.0
    });
    assert!(counted, "a refused export is counted");
    assert!(gw.metric("portico_tracing_spans_dropped_total") >= 1.0);
}

/// Sends requests until `received` holds spans; the encodings the exports came with.
fn exported(gw: &Gateway, received: &Received, what: &str) -> Vec<String> {
    assert!(
        gw.eventually(Duration::from_secs(10), || {
            assert_eq!(gw.get("/x").status, 200);
            !received.spans.lock().unwrap().is_empty()
        }),
        "{what}: spans reach the collector"
    );
    let span = received.spans.lock().unwrap()[0].clone();
    assert_eq!(
        attr(&span, "resource.service.name").as_deref(),
        Some("portico"),
        "{what}"
    );
    received.encodings.lock().unwrap().clone()
}

#[test]
fn grpc_and_gzip_by_variable_or_by_file() {
    let [echo] = echoes(["a"]);
    let quick = ("OTEL_BSP_SCHEDULE_DELAY", "100");

    // The variables: gRPC to a base URL used as it is, gzip-compressed messages.
    let (port, received) = grpc_collector();
    let base = format!("http://127.0.0.1:{port}");
    let gw = Gateway::start_with_env(
        &config(&echo, ""),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            quick,
        ],
    );
    let encodings = exported(&gw, &received, "grpc + gzip from the environment");
    assert!(encodings.iter().all(|e| e == "gzip"), "{encodings:?}");
    drop(gw);

    // The file: gRPC, uncompressed.
    let (port, received) = grpc_collector();
    let file = format!(
        "tracing: {{protocol: grpc, otlp_endpoint: \"http://127.0.0.1:{port}\", sample_ratio: 1.0}}\n"
    );
    let gw = Gateway::start_with_env(&config(&echo, &file), &[quick]);
    let encodings = exported(&gw, &received, "grpc from the file");
    assert!(encodings.iter().all(|e| e == "identity"), "{encodings:?}");
    drop(gw);

    // The file: OTLP/HTTP with gzip bodies.
    let (port, received) = http_collector();
    let file = format!(
        "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}\", sample_ratio: 1.0, compression: gzip}}\n"
    );
    let gw = Gateway::start_with_env(&config(&echo, &file), &[quick]);
    let encodings = exported(&gw, &received, "http + gzip from the file");
    assert!(encodings.iter().all(|e| e == "gzip"), "{encodings:?}");
}

#[test]
fn an_unreachable_grpc_collector_is_counted_and_serving_goes_on() {
    let [echo] = echoes(["a"]);
    let file = format!(
        "tracing: {{protocol: grpc, otlp_endpoint: \"http://127.0.0.1:{}\", sample_ratio: 1.0, export_timeout: 1s}}\n",
        free_port()
    );
    let gw = Gateway::start_with_env(&config(&echo, &file), &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let counted = gw.eventually(Duration::from_secs(15), || {
        assert_eq!(gw.get("/x").status, 200);
        gw.metric("portico_tracing_export_failures_total") >= 1.0
    });
    assert!(counted, "a refused gRPC export is counted");
    assert!(gw.metric("portico_tracing_spans_dropped_total") >= 1.0);
}
