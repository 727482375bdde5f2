//! Observability end to end: exact metric deltas per code path, business KPIs and their Redis
//! Stream, and the access log. Tracing has its own file (tests/tracing.rs).

mod support;
use std::time::Duration;
use support::*;

fn config(echo: &EchoServer, extra: &str) -> String {
    let dead = free_port();
    format!(
        "{extra}routes:\n  - {{name: ok, match: {{path_prefix: /ok}}, service: echo, strip_prefix: true}}\n  - {{name: down, match: {{path_prefix: /down}}, service: dead}}\nservices:\n  echo:\n    instances: [\"{}\"]\n  dead:\n    instances: [\"127.0.0.1:{dead}\"]\nkpis:\n  - {{name: orders_placed, routes: [ok], methods: [POST], status: 2xx}}\n",
        echo.addr
    )
}

/// Reads every listed series, runs `action`, and returns each series' increase. A series the
/// action creates counts from zero (a request counter exists once a response with its status
/// code was counted); after the action every series must exist.
fn deltas(gw: &Gateway, series: &[&str], action: impl FnOnce()) -> Vec<f64> {
    let before: Vec<f64> = series
        .iter()
        .map(|s| gw.metric_if_exported(s).unwrap_or(0.0))
        .collect();
    action();
    series
        .iter()
        .zip(before)
        .map(|(s, b)| gw.metric(s) - b)
        .collect()
}

#[test]
fn each_code_path_moves_exactly_its_counters() {
    let echo = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&config(&echo, ""));
    let ok =
        "portico_http_requests_total{code=\"200\",method=\"GET\",protocol=\"h1\",route=\"ok\",source=\"upstream\"}";
    let ok_class = "portico_upstream_attempts_total{service=\"echo\",status_class=\"2xx\"}";
    let ok_hist = "portico_http_request_duration_seconds_count{route=\"ok\",status_class=\"2xx\"}";
    let d = deltas(&gw, &[ok, ok_class, ok_hist], || {
        assert_eq!(gw.get("/ok/x").status, 200);
    });
    assert_eq!(d, [1.0, 1.0, 1.0]);
    assert!(gw.metric("portico_http_response_body_bytes_total{route=\"ok\"}") > 0.0);

    let nr = "portico_http_requests_total{code=\"404\",method=\"GET\",protocol=\"h1\",route=\"unmatched\",source=\"gateway\"}";
    let nr_reason = "portico_http_gateway_responses_total{reason=\"no_route\",route=\"unmatched\"}";
    let d = deltas(&gw, &[nr, nr_reason, ok], || {
        assert_eq!(gw.get("/nowhere").status, 404);
    });
    assert_eq!(d, [1.0, 1.0, 0.0]);

    let e5 =
        "portico_http_requests_total{code=\"500\",method=\"GET\",protocol=\"h1\",route=\"ok\",source=\"upstream\"}";
    let e5_class = "portico_upstream_attempts_total{service=\"echo\",status_class=\"5xx\"}";
    let d = deltas(&gw, &[e5, e5_class, ok_class], || {
        assert_eq!(gw.get("/ok/status/500").status, 500);
    });
    assert_eq!(d, [1.0, 1.0, 0.0]);

    let refused = "portico_http_requests_total{code=\"502\",method=\"GET\",protocol=\"h1\",route=\"down\",source=\"gateway\"}";
    let refused_kind = "portico_upstream_errors_total{kind=\"connect_refused\",service=\"dead\"}";
    let refused_class = "portico_upstream_attempts_total{service=\"dead\",status_class=\"error\"}";
    let refused_reason =
        "portico_http_gateway_responses_total{reason=\"upstream_connect_error\",route=\"down\"}";
    let d = deltas(
        &gw,
        &[refused, refused_kind, refused_class, refused_reason],
        || {
            assert_eq!(gw.get("/down").status, 502);
        },
    );
    assert_eq!(d, [1.0, 1.0, 1.0, 1.0]);

    let kpi = "portico_business_events_total{kpi=\"orders_placed\",route=\"ok\"}";
    let d = deltas(&gw, &[kpi], || {
        assert_eq!(
            request(gw.addr, "POST", "/ok/orders", &[], "{}").status,
            200
        );
        assert_eq!(gw.get("/ok/orders").status, 200, "GET is not an order");
        assert_eq!(
            request(gw.addr, "POST", "/ok/status/500", &[], "{}").status,
            500
        );
    });
    assert_eq!(d, [1.0]);
    assert!(gw.metric("portico_http_request_body_bytes_total{route=\"ok\"}") >= 4.0);
}

#[test]
fn kpi_matches_reach_the_redis_stream_and_a_dead_redis_only_drops_events() {
    let mut redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let extra = format!(
        "redis: {{url: \"{}\"}}\nevents: {{stream: \"portico:events\", maxlen: 1000}}\n",
        redis.url()
    );
    let gw = Gateway::start(&config(&echo, &extra));
    for _ in 0..3 {
        assert_eq!(
            request(
                gw.addr,
                "POST",
                "/ok/orders",
                &[("x-request-id", "order-1")],
                "{}"
            )
            .status,
            200
        );
    }
    assert!(gw.eventually(Duration::from_secs(3), || {
        ::redis::from_redis_value::<u64>(redis.cmd(&["XLEN", "portico:events"])).unwrap_or(0) == 3
    }));
    let entries: Vec<(String, Vec<(String, String)>)> =
        ::redis::from_redis_value(redis.cmd(&["XRANGE", "portico:events", "-", "+"])).unwrap();
    let fields: std::collections::HashMap<_, _> = entries[0].1.iter().cloned().collect();
    assert_eq!(fields["kpi"], "orders_placed");
    assert_eq!(fields["route"], "ok");
    assert_eq!(fields["status"], "200");
    assert_eq!(fields["request_id"], "order-1");
    assert_eq!(gw.metric("portico_events_published_total"), 3.0);

    redis.kill();
    for _ in 0..20 {
        assert_eq!(
            request(gw.addr, "POST", "/ok/orders", &[], "{}").status,
            200
        );
    }
    assert!(gw.eventually(Duration::from_secs(5), || {
        gw.metric("portico_events_dropped_total{reason=\"redis_error\"}")
            + gw.metric("portico_events_dropped_total{reason=\"queue_full\"}")
            == 20.0
    }));
    assert_eq!(gw.metric("portico_events_published_total"), 3.0);
}

#[test]
fn the_access_log_writes_one_json_line_per_request() {
    let echo = EchoServer::start("a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = Gateway::start(&config(
        &echo,
        &format!(
            "access_log: {{enabled: true, path: \"{}\"}}\n",
            path.display()
        ),
    ));
    assert_eq!(
        get(gw.addr, "/ok/a?x=1", &[("x-request-id", "log-1")]).status,
        200
    );
    assert_eq!(gw.get("/nowhere").status, 404);
    let mut lines = Vec::new();
    gw.eventually(Duration::from_secs(3), || {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .collect();
        lines.len() == 2
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    assert_eq!(ok["request_id"], "log-1");
    assert_eq!(ok["route"], "ok");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/ok/a");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["source"], "upstream");
    assert_eq!(ok["service"], "echo");
    assert_eq!(ok["instance"], echo.addr.to_string());
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["upstream_ms"].as_f64().is_some());
    assert!(ok["bytes_out"].as_u64().unwrap() > 0);
    assert!(ok["ts"].as_str().unwrap().ends_with('Z'));
    let missed = &lines[1];
    assert_eq!(missed["route"], "unmatched");
    assert_eq!(missed["status"], 404);
    assert_eq!(missed["source"], "gateway");
    assert_eq!(missed["reason"], "no_route");
}

#[test]
fn only_listed_kpis_are_published_in_batches_and_the_stream_is_trimmed() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let extra = format!(
        "redis: {{url: \"{}\"}}\nevents: {{stream: \"portico:events\", maxlen: 10, kpis: [orders_placed]}}\n",
        redis.url()
    );
    let body = config(&echo, &extra).replace(
        "kpis:\n",
        "kpis:\n  - {name: all_ok, routes: [ok], status: 2xx}\n",
    );
    let gw = Gateway::start(&body);
    for _ in 0..300 {
        assert_eq!(
            request(gw.addr, "POST", "/ok/orders", &[], "{}").status,
            200
        );
    }
    assert!(gw.eventually(Duration::from_secs(5), || {
        gw.metric("portico_events_published_total") == 300.0
    }));
    // Both KPIs count; only the listed one is published.
    assert_eq!(
        gw.metric("portico_business_events_total{kpi=\"all_ok\",route=\"ok\"}"),
        300.0
    );
    let entries: Vec<(String, Vec<(String, String)>)> =
        ::redis::from_redis_value(redis.cmd(&["XRANGE", "portico:events", "-", "+"])).unwrap();
    assert!(entries
        .iter()
        .all(|(_, f)| f.iter().any(|(k, v)| k == "kpi" && v == "orders_placed")));
    // MAXLEN ~ 10 trims in whole stream nodes (100 entries each by default): far below 300.
    let len: u64 = ::redis::from_redis_value(redis.cmd(&["XLEN", "portico:events"])).unwrap();
    assert!((10..=110).contains(&len), "XLEN {len}");
    // Events leave in pipelined batches, not one round trip each.
    let batches = gw
        .metric("portico_redis_command_duration_seconds_count{client=\"events\",command=\"xadd\"}");
    assert!(
        (1.0..300.0).contains(&batches),
        "{batches} batches for 300 events"
    );
}
