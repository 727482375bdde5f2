//! `/metrics` as a scraper sees it through the real binary: gzip when asked (and only then),
//! `HEAD` answered with headers only, and process CPU time that moves by fractions of a second
//! (the `prometheus` crate's collector exported whole seconds, so `rate()` read 0).

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use support::*;

/// One raw exchange: (head, body bytes).
fn exchange(addr: std::net::SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase(),
        buf[split..].to_vec(),
    )
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_are_gzipped_on_request_and_head_gets_headers_only() {
    let [echo] = echoes(["a"]);
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    ));
    let plain = gw.metrics_text();
    assert!(plain.contains("portico_http_requests_in_flight"));

    let (head, body) = exchange(
        gw.admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert_eq!(content_length(&head), body.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("a gzip stream");
    assert!(text.contains("portico_http_requests_in_flight"));
    assert!(
        body.len() * 4 < text.len(),
        "{} -> {}",
        text.len(),
        body.len()
    );

    let (head, _) = exchange(
        gw.admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0, br\r\nConnection: close\r\n\r\n",
    );
    assert!(!head.contains("content-encoding"), "{head}");

    let (head, body) = exchange(
        gw.admin,
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.is_empty(), "HEAD has no body");
    assert!(
        content_length(&head) > 1000,
        "the length a GET would get: {head}"
    );
}

#[test]
fn process_cpu_time_moves_by_fractions_of_a_second() {
    let [echo] = echoes(["a"]);
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    ));
    let cpu = || gw.metric("process_cpu_seconds_total");
    let before = cpu();
    for _ in 0..300 {
        assert_eq!(gw.get("/").status, 200);
    }
    let moved = cpu() - before;
    assert!(
        moved > 0.0 && moved < 1.0,
        "300 requests moved the CPU counter by {moved} s"
    );
    assert!(gw.metric("process_resident_memory_bytes") > 1e6);
    assert!(gw.metric("process_open_fds") > 3.0);
    assert!(gw.metric("process_start_time_seconds") > 1.7e9);
}

#[test]
fn upstream_connections_are_counted_new_or_reused() {
    let [echo] = echoes(["a"]);
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    ));
    let series = |kind: &str| {
        gw.metric(&format!(
            "portico_upstream_connections_total{{kind=\"{kind}\",service=\"web\"}}"
        ))
    };
    assert_eq!(
        (series("new"), series("reused")),
        (0.0, 0.0),
        "made at zero"
    );
    // One client connection: its requests stay on one worker, whose pool keeps the upstream
    // connection between them.
    let mut client = support::keepalive::Connection::new(TcpStream::connect(gw.addr).unwrap());
    for _ in 0..5 {
        assert_eq!(client.get("/").map(|(status, _)| status), Some(200));
    }
    let (new, reused) = (series("new"), series("reused"));
    assert_eq!(new + reused, 5.0, "one count per request sent");
    assert!(new >= 1.0 && reused >= 3.0, "new {new}, reused {reused}");
}

#[test]
fn body_sizes_are_recorded_per_request() {
    let [echo] = echoes(["a"]);
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    ));
    let body = "x".repeat(3000);
    assert_eq!(request(gw.addr, "POST", "/upload", &[], &body).status, 200);
    assert_eq!(gw.get("/small").status, 200);
    let m = |s: &str| gw.metric(s);
    assert_eq!(
        m(r#"portico_http_request_body_size_bytes_count{route="api"}"#),
        2.0
    );
    assert_eq!(
        m(r#"portico_http_request_body_size_bytes_sum{route="api"}"#),
        3000.0
    );
    // 3000 bytes falls in the 4 KiB bucket, not in the 1 KiB one; the empty body in both.
    assert_eq!(
        m(r#"portico_http_request_body_size_bytes_bucket{route="api",le="1024"}"#),
        1.0
    );
    assert_eq!(
        m(r#"portico_http_request_body_size_bytes_bucket{route="api",le="4096"}"#),
        2.0
    );
    assert!(m(r#"portico_http_response_body_size_bytes_sum{route="api"}"#) > 100.0);
}
