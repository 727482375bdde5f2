//! Routes the gateway answers itself (redirects, static responses) and per-route body limits,
//! through the real binary: what a client gets, what the metrics say, and that no upstream is
//! touched.

mod support;
use support::*;

fn gateway(a: &EchoServer) -> Gateway {
    Gateway::start_with_server(
        &format!(
            r#"routes:
  - name: old-api
    match: {{path_prefix: /v0}}
    redirect: {{to: "https://api.example.com/v1$path$query", status: 308}}
  - name: users
    match: {{path_prefix: /u/}}
    redirect: {{to: "https://$host/users/$id", regex: "^/u/(?P<id>[0-9]+)$", status: 301}}
  - name: maintenance
    match: {{path_prefix: /status}}
    respond: {{status: 200, body: '{{"ok":true}}', headers: {{content-type: application/json}}}}
    response_headers: {{set: {{x-served-by: portico}}}}
  - name: uploads
    match: {{path_prefix: /upload}}
    service: web
    max_request_body: 4KiB
  - name: small
    match: {{path_prefix: /small}}
    service: web
    max_request_body: 10
  - name: api
    match: {{path_prefix: /}}
    service: web
services:
  web: {{instances: ["{}"]}}
"#,
            a.addr
        ),
        "  limits: {max_request_body: 1KiB}\n",
    )
}

#[test]
fn redirects_fill_their_target_and_touch_no_upstream() {
    let [a] = echoes(["a"]);
    let gw = gateway(&a);
    let r = gw.get("/v0/orders?id=7");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com/v1/v0/orders?id=7")
    );
    assert!(r.header("x-request-id").is_some());
    let r = get(gw.addr, "/u/42", &[("host", "shop.example.com:8080")]);
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.com/users/42")
    );
    // A path cannot turn the target into another site: it is normalised before it is used.
    let r = gw.get("//v0//evil.example/x");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com/v1/v0/evil.example/x")
    );
    let r = gw.get("/u/abc");
    assert_eq!(r.status, 404, "a path the regex does not take: {r:?}");
    assert_eq!(r.json()["error"]["code"], "no_route");
    assert_eq!(a.requests(), 0, "no upstream was asked");
    assert_eq!(
        gw.metric(r#"portico_http_gateway_responses_total{reason="redirect",route="old-api"}"#),
        2.0
    );
    assert_eq!(
        gw.metric(
            r#"portico_http_requests_total{code="308",method="GET",protocol="h1",route="old-api",source="gateway"}"#
        ),
        2.0
    );
}

#[test]
fn static_responses_carry_their_body_headers_and_edits_on_a_kept_alive_connection() {
    let [a] = echoes(["a"]);
    let gw = gateway(&a);
    let r = gw.get("/status");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, r#"{"ok":true}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("11"));
    assert_eq!(r.header("x-served-by"), Some("portico"));
    // Two requests on one connection: the answer must not end the connection.
    let two = "GET /status HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let raw = send_raw_all(gw.addr, two.as_bytes());
    assert_eq!(raw.matches("HTTP/1.1 200").count(), 2, "{raw}");
    let head = request(gw.addr, "HEAD", "/status", &[], "");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "", "HEAD gets no body");
    assert_eq!(a.requests(), 0);
    assert_eq!(
        gw.metric(
            r#"portico_http_gateway_responses_total{reason="static_response",route="maintenance"}"#
        ),
        4.0
    );
}

#[test]
fn a_route_body_limit_overrides_the_server_limit_both_ways() {
    let [a] = echoes(["a"]);
    let gw = gateway(&a);
    let two_k = "x".repeat(2048);
    let r = request(gw.addr, "POST", "/upload/f", &[], &two_k);
    assert_eq!(
        r.status, 200,
        "a route may take more than the server: {r:?}"
    );
    let r = request(gw.addr, "POST", "/api/f", &[], &two_k);
    assert_eq!(r.status, 413, "other routes keep the server limit");
    let r = request(gw.addr, "POST", "/upload/f", &[], &"x".repeat(5000));
    assert_eq!(r.status, 413, "declared length over the route's limit");
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let r = request(gw.addr, "POST", "/small/f", &[], "more than ten bytes");
    assert_eq!(r.status, 413, "a route may take less than the server");
    let mut chunked = String::from(
        "POST /small/f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        chunked.push_str("8\r\n12345678\r\n");
    }
    chunked.push_str("0\r\n\r\n");
    let r = send_raw(gw.addr, chunked.as_bytes());
    assert_eq!(
        r.status, 413,
        "a streamed body is counted against the route's limit: {r:?}"
    );
    let r = request(gw.addr, "POST", "/small/f", &[], "tiny");
    assert_eq!(r.status, 200);
}

/// Everything the server wrote until it closed the connection, as text.
fn send_raw_all(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
