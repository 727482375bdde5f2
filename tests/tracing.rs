//! Tracing end to end against an in-test OTLP receiver: SERVER and CLIENT spans, sampling
//! (decided on the trace id that goes upstream), propagation, an unreachable collector.

mod support;
use std::time::Duration;
use support::otlp::{attr, collector, hex};
use support::*;

fn config(echo: &EchoServer, extra: &str) -> String {
    let dead = free_port();
    format!(
        "{extra}routes:\n  - {{name: ok, match: {{path_prefix: /ok}}, service: echo, strip_prefix: true}}\n  - {{name: down, match: {{path_prefix: /down}}, service: dead}}\nservices:\n  echo:\n    instances: [\"{}\"]\n  dead:\n    instances: [\"127.0.0.1:{dead}\"]\nkpis:\n  - {{name: orders_placed, routes: [ok], methods: [POST], status: 2xx}}\n",
        echo.addr
    )
}

/// A gateway exporting to the collector on `port` with `options` in its `tracing` section and a
/// 100 ms batch delay.
fn traced_gateway(echo: &EchoServer, port: u16, options: &str) -> Gateway {
    let extra =
        format!("tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\", {options}}}\n");
    Gateway::start_with_env(&config(echo, &extra), &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
}

#[test]
fn traces_export_a_server_and_a_client_span_and_propagate_upstream() {
    let (port, spans) = collector();
    let collected = spans.clone();
    let echo = EchoServer::start("a").unwrap();
    let gw = traced_gateway(&echo, port, "sample_ratio: 0.0, trust_incoming: all");
    // The provider starts in a background service: wait for the first sampled span to export.
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{incoming_trace}-{incoming_span}-01");
    let mut seen = serde_json::Value::Null;
    let exported = gw.eventually(Duration::from_secs(10), || {
        seen = get(
            gw.addr,
            "/ok/t?x=1&access_token=sekrit",
            &[("traceparent", &traceparent), ("user-agent", "probe/2")],
        )
        .json();
        spans.lock().unwrap().len() >= 2
    });
    assert!(exported, "spans should reach the collector");
    let spans = spans.lock().unwrap().clone();
    let server = spans.iter().find(|s| s.kind == 2).expect("a SERVER span");
    let client = spans
        .iter()
        .find(|s| s.kind == 3 && s.trace_id == server.trace_id)
        .expect("a CLIENT span");
    assert_eq!(
        hex(&server.trace_id),
        incoming_trace,
        "the incoming trace continues"
    );
    assert_eq!(hex(&server.parent_span_id), incoming_span);
    assert_eq!(client.parent_span_id, server.span_id);
    // Current HTTP semantic conventions: the route's template, its name apart; what the
    // client asked for and over what; the URL actually sent upstream (prefix stripped).
    assert_eq!(server.name, "GET /ok");
    assert_eq!(attr(server, "http.route").as_deref(), Some("/ok"));
    assert_eq!(attr(server, "portico.route").as_deref(), Some("ok"));
    // Resource and scope: which gateway process, on which host, in which version.
    let instance = attr(server, "resource.service.instance.id").expect("service.instance.id");
    assert!(instance.contains(&format!("-{}-", gw.pid())), "{instance}");
    assert!(attr(server, "resource.host.name").is_some());
    assert_eq!(
        attr(server, "scope.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        attr(server, "server.address").as_deref(),
        Some("test.local")
    );
    assert_eq!(attr(server, "server.port").as_deref(), Some("80"));
    assert_eq!(
        attr(server, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        attr(server, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );
    assert!(attr(server, "network.peer.port").is_some());
    assert_eq!(
        attr(server, "user_agent.original").as_deref(),
        Some("probe/2")
    );
    assert_eq!(
        attr(client, "url.full"),
        Some(format!("http://{}/t?x=1&access_token=REDACTED", echo.addr)),
        "after strip_prefix, with the query, its secret blanked"
    );
    assert_eq!(
        attr(server, "url.query").as_deref(),
        Some("x=1&access_token=REDACTED")
    );
    assert_eq!(attr(server, "url.path").as_deref(), Some("/ok/t"));
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        attr(client, "server.port"),
        Some(echo.addr.port().to_string())
    );
    // The upstream saw a CLIENT span as its parent, in the same trace.
    let upstream_saw = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    let parts: Vec<String> = upstream_saw.split('-').map(str::to_string).collect();
    assert_eq!(parts[1], incoming_trace);
    assert_eq!(parts[3], "01");
    let all = collected.clone();
    let exported_client = gw.eventually(Duration::from_secs(3), || {
        all.lock()
            .unwrap()
            .iter()
            .any(|s| s.kind == 3 && hex(&s.span_id) == parts[2])
    });
    assert!(
        exported_client,
        "the upstream's parent is an exported CLIENT span: {upstream_saw}"
    );
    // An upstream's own 5xx: error.type is its status code.
    assert_eq!(
        get(gw.addr, "/ok/status/503", &[("traceparent", &traceparent)]).status,
        503
    );
    let failed = gw.eventually(Duration::from_secs(3), || {
        all.lock()
            .unwrap()
            .iter()
            .any(|s| s.kind == 2 && attr(s, "http.response.status_code").as_deref() == Some("503"))
    });
    assert!(failed, "the failed request's SERVER span is exported");
    let spans = all.lock().unwrap().clone();
    let server = spans
        .iter()
        .find(|s| s.kind == 2 && attr(s, "http.response.status_code").as_deref() == Some("503"))
        .unwrap();
    assert_eq!(attr(server, "error.type").as_deref(), Some("503"));
}

#[test]
fn ratio_zero_exports_no_new_roots_and_untrusted_parents_are_ignored() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let gw = traced_gateway(&echo, port, "sample_ratio: 0.0");
    std::thread::sleep(Duration::from_millis(500));
    // No incoming context, and (untrusted peer) a sampled one that must not be honoured.
    let fresh = get(gw.addr, "/ok/a", &[]).json();
    let forced = get(
        gw.addr,
        "/ok/b",
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    )
    .json();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        spans.lock().unwrap().is_empty(),
        "nothing sampled, nothing exported"
    );
    for seen in [fresh, forced] {
        let tp = seen["headers"]["traceparent"]
            .as_str()
            .expect("a traceparent upstream");
        assert!(tp.ends_with("-00"), "not sampled: {tp}");
        assert!(
            !tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "a new root: {tp}"
        );
    }
}

/// Portico samples before making any SDK span: a sampled root must be exported under the trace
/// id it sent upstream, and an unsampled trusted parent must be followed (ParentBased), continued
/// upstream with its trace id and tracestate, and never exported, even at ratio 1.0.
#[test]
fn sampling_is_decided_on_the_trace_id_that_goes_upstream() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let gw = traced_gateway(&echo, port, "sample_ratio: 1.0, trust_incoming: all");
    let mut root = serde_json::Value::Null;
    let exported = gw.eventually(Duration::from_secs(10), || {
        root = get(gw.addr, "/ok/root", &[]).json();
        spans.lock().unwrap().iter().any(|s| s.kind == 2)
    });
    assert!(exported, "a sampled root should reach the collector");
    let sent = root["headers"]["traceparent"].as_str().unwrap().to_string();
    assert!(sent.ends_with("-01"), "sampled: {sent}");
    std::thread::sleep(Duration::from_millis(500));
    let root_trace = &sent[3..35];
    let servers: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.kind == 2)
        .map(|s| hex(&s.trace_id))
        .collect();
    assert!(
        servers.iter().any(|t| t == root_trace),
        "the exported SERVER span has the trace id sent upstream: {sent} vs {servers:?}"
    );

    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let seen = get(
        gw.addr,
        "/ok/unsampled",
        &[
            (
                "traceparent",
                &format!("00-{parent_trace}-{parent_span}-00"),
            ),
            ("tracestate", "vendor=abc"),
        ],
    )
    .json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{parent_trace}-")), "{tp}");
    assert!(
        tp.ends_with("-00"),
        "the parent's decision is followed: {tp}"
    );
    assert!(!tp.contains(parent_span), "a span id of its own: {tp}");
    assert_eq!(seen["headers"]["tracestate"].as_str(), Some("vendor=abc"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| hex(&s.trace_id) == parent_trace),
        "an unsampled trace is not exported"
    );
}

/// At ratio 0.5 a new root is sampled exactly when its trace id says so (TraceIdRatioBased:
/// the low 64 bits shifted right once below half of 2^63, i.e. hex digit 17 below 8), so
/// services sampling by the same ratio agree; and exactly the sampled ones are exported.
#[test]
fn ratio_sampling_is_consistent_by_trace_id() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let gw = traced_gateway(&echo, port, "sample_ratio: 0.5");
    // Wait for the provider: the first request with a traceparent upstream.
    assert!(gw.eventually(Duration::from_secs(10), || {
        get(gw.addr, "/ok/w", &[]).json()["headers"]["traceparent"].is_string()
    }));
    let mut sampled = Vec::new();
    for i in 0..100 {
        let seen = get(gw.addr, &format!("/ok/{i}"), &[]).json();
        let tp = seen["headers"]["traceparent"].as_str().unwrap().to_string();
        let trace = tp[3..35].to_string();
        let by_id = u8::from_str_radix(&trace[16..17], 16).unwrap() < 8;
        assert_eq!(tp.ends_with("-01"), by_id, "{tp}");
        if by_id {
            sampled.push(trace);
        }
    }
    // Binomial(100, 0.5): below 35 has a chance of ~0.1%.
    assert!(sampled.len() >= 35, "{} of 100 sampled", sampled.len());
    assert!(gw.eventually(Duration::from_secs(5), || {
        let spans = spans.lock().unwrap();
        sampled
            .iter()
            .all(|t| spans.iter().any(|s| s.kind == 2 && &hex(&s.trace_id) == t))
    }));
}

#[test]
fn an_unreachable_collector_never_affects_requests() {
    let (hole, accepted) = black_hole();
    let port = hole.port();
    let echo = EchoServer::start("a").unwrap();
    let extra = format!(
        "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\", sample_ratio: 1.0, export_timeout: 1s}}\n"
    );
    let gw = Gateway::start_with_env(&config(&echo, &extra), &[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = std::time::Instant::now();
        assert_eq!(gw.get("/ok/x").status, 200);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The exporter really tried (it connected and is waiting out its 1 s timeout) ...
    assert!(
        gw.eventually(Duration::from_secs(3), || accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0),
        "the exporter never connected"
    );
    // ... and no request waited for it.
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}"
    );
}

#[test]
fn ratio_one_exports_every_new_root() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let gw = traced_gateway(&echo, port, "sample_ratio: 1.0");
    let exported = gw.eventually(Duration::from_secs(10), || {
        let seen = get(gw.addr, "/ok/root", &[]).json();
        let tp = seen["headers"]["traceparent"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let spans = spans.lock().unwrap();
        tp.ends_with("-01")
            && spans
                .iter()
                .any(|s| s.kind == 2 && s.parent_span_id.is_empty())
    });
    assert!(
        exported,
        "a sampled root SERVER span (no parent) reaches the collector"
    );
}

#[test]
fn spans_name_the_scheme_actually_used_on_each_side() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::tls::self_signed(dir.path(), "cert");
    // A TLS front standing in for a TLS upstream.
    let front_port = free_port();
    let _front = Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
            echo.addr
        ),
        &format!(
            "  tls: [{{listen: \"127.0.0.1:{front_port}\", cert: \"{cert}\", key: \"{key}\"}}]\n"
        ),
    );
    let tls_port = free_port();
    let gw = Gateway::start_full(
        &format!(
            "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\", sample_ratio: 1.0}}\nroutes:\n  - {{name: secure, service: t}}\nservices:\n  t:\n    instances: [\"127.0.0.1:{front_port}\"]\n    tls: true\n    tls_verify: false\n"
        ),
        &format!("  tls: [{{listen: \"127.0.0.1:{tls_port}\", cert: \"{cert}\", key: \"{key}\"}}]\n"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let status = || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args([
                "--cacert",
                &cert,
                "--resolve",
                &format!("localhost:{tls_port}:127.0.0.1"),
            ])
            .arg(format!("https://localhost:{tls_port}/s?q=1"))
            .output()
            .expect("curl must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let exported = gw.eventually(Duration::from_secs(10), || {
        assert_eq!(status(), "200");
        let s = spans.lock().unwrap();
        s.iter().any(|s| s.kind == 2) && s.iter().any(|s| s.kind == 3)
    });
    assert!(exported, "spans should reach the collector");
    let spans = spans.lock().unwrap().clone();
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    let client = spans.iter().find(|s| s.kind == 3).unwrap();
    assert_eq!(attr(server, "url.scheme").as_deref(), Some("https"));
    let full = attr(client, "url.full").unwrap();
    assert!(
        full.starts_with(&format!("https://127.0.0.1:{front_port}/")),
        "{full}"
    );
    drop(gw);
}

#[test]
fn a_retried_request_exports_a_client_span_per_attempt_and_errors_carry_their_type() {
    let (port, spans) = collector();
    let echo = EchoServer::start("a").unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let service = format!(
        "services:\n  svc:\n    instances: [\"{dead}\", \"{}\"]\n    balance: consistent_hash\n    hash_key: header:x-k\n  gone:\n    instances: [\"{dead}\"]\n",
        echo.addr
    );
    // A key the ring gives to the dead instance, found by a gateway that does not retry.
    let probe = Gateway::start(&format!(
        "routes:\n  - {{name: all, service: svc, retry: {{attempts: 0}}}}\n{service}"
    ));
    let key = (0..64)
        .map(|i| format!("k{i}"))
        .find(|k| get(probe.addr, "/", &[("x-k", k)]).status == 502)
        .expect("a key on the dead instance");
    let gw = Gateway::start_full(
        &format!(
            "tracing: {{otlp_endpoint: \"http://127.0.0.1:{port}/v1/traces\", sample_ratio: 1.0, trust_incoming: all}}\nroutes:\n  - {{name: down, match: {{path_prefix: /down}}, service: gone}}\n  - {{name: all, service: svc}}\n{service}"
        ),
        "",
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let headers = [
        ("x-k", key.as_str()),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=abc"),
    ];
    let mut seen = serde_json::Value::Null;
    let exported = gw.eventually(Duration::from_secs(10), || {
        seen = get(gw.addr, "/x", &headers).json();
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == 3 && hex(&s.trace_id) == trace)
            .count()
            >= 2
    });
    assert!(exported, "two CLIENT spans reach the collector");
    assert_eq!(
        seen["headers"]["tracestate"], "vendor=abc",
        "tracestate continues upstream"
    );
    let spans_now = spans.lock().unwrap().clone();
    let server = spans_now
        .iter()
        .find(|s| s.kind == 2 && hex(&s.trace_id) == trace)
        .unwrap();
    let clients: Vec<_> = spans_now
        .iter()
        .filter(|s| s.kind == 3 && s.parent_span_id == server.span_id)
        .collect();
    assert_eq!(clients.len(), 2, "one CLIENT span per attempt");
    let failed = clients
        .iter()
        .find(|s| attr(s, "error.type").is_some())
        .unwrap();
    assert_eq!(
        attr(failed, "error.type").as_deref(),
        Some("connect_refused")
    );
    let retried = clients
        .iter()
        .find(|s| attr(s, "error.type").is_none())
        .unwrap();
    assert_eq!(
        attr(retried, "http.request.resend_count").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(retried, "http.response.status_code").as_deref(),
        Some("200")
    );
    // A 502 Portico answers: the SERVER span names why.
    assert_eq!(get(gw.addr, "/down", &[]).status, 502);
    let typed = gw.eventually(Duration::from_secs(5), || {
        spans.lock().unwrap().iter().any(|s| {
            s.kind == 2
                && attr(s, "http.response.status_code").as_deref() == Some("502")
                && attr(s, "error.type").as_deref() == Some("upstream_connect_error")
        })
    });
    assert!(typed, "the 502's SERVER span carries error.type");
}
