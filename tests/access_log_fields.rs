//! The access log's request fields through the real binary: host, protocol, user agent, the
//! query only when asked for (queries carry tokens), and the span id with the sampling
//! decision, so a reader knows which trace ids lead to a stored trace.

mod support;
use std::time::Duration;
use support::*;

fn lines_of(gw: &Gateway, path: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    gw.eventually(Duration::from_secs(3), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        lines.len() >= want
    });
    lines
}

fn gateway(echo: &EchoServer, log: &std::path::Path, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "access_log: {{enabled: true, path: \"{}\"{extra}}}\n\
         tracing: {{otlp_endpoint: \"http://127.0.0.1:{}/v1/traces\", sample_ratio: 0.5}}\n\
         routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        log.display(),
        free_port(),
        echo.addr
    ))
}

#[test]
fn lines_name_host_protocol_agent_and_span_but_not_the_query_unless_asked() {
    let [echo] = echoes(["a"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = gateway(&echo, &path, "");
    for _ in 0..40 {
        let r = get(
            gw.addr,
            "/orders?token=s3cret",
            &[("host", "api.example.com"), ("user-agent", "probe/1.0")],
        );
        assert_eq!(r.status, 200);
    }
    let lines = lines_of(&gw, &path, 40);
    let first = &lines[0];
    assert_eq!(first["host"], "api.example.com");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["user_agent"], "probe/1.0");
    assert_eq!(first["path"], "/orders");
    assert!(
        first.get("query").is_none(),
        "queries are not logged by default: {first}"
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains("s3cret"));
    // The tracer is installed by a background service just after start: the very first
    // requests may have no span. Later ones all do, and each says whether it is sampled; at a
    // 50% ratio, twenty or more traced ones are (all but surely) of both kinds.
    let traced: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("span_id").is_some())
        .collect();
    assert!(traced.len() >= 20, "{lines:?}");
    assert!(traced
        .iter()
        .all(|l| l["span_id"].as_str().unwrap().len() == 16));
    let sampled: Vec<bool> = traced
        .iter()
        .map(|l| l["sampled"].as_bool().unwrap())
        .collect();
    assert!(
        sampled.contains(&true) && sampled.contains(&false),
        "{sampled:?}"
    );

    let path = dir.path().join("with-query.log");
    let gw = gateway(&echo, &path, ", log_query: true");
    assert_eq!(gw.get("/orders?page=2&password=hunter2").status, 200);
    assert_eq!(
        lines_of(&gw, &path, 1)[0]["query"],
        "page=2&password=REDACTED",
        "secrets blanked even when queries are logged"
    );
}
