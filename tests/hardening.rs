//! Hardening against hostile input, with raw bytes over TCP: smuggling shapes, size limits,
//! path tricks that try to escape a prefix route, malformed requests.

mod support;
use support::*;

fn gateway(a: &EchoServer, b: &EchoServer) -> Gateway {
    Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: public, match: {{path_prefix: /api}}, service: pub}}\n  - {{name: admin, match: {{path_prefix: /internal}}, service: priv}}\nservices:\n  pub: {{instances: [\"{}\"]}}\n  priv: {{instances: [\"{}\"]}}\n",
            a.addr, b.addr
        ),
        "  limits: {max_request_body: 1KiB, max_header_bytes: 4KiB}\n",
    )
}

#[test]
fn conflicting_framing_is_refused_before_reaching_an_upstream() {
    let [a, b] = echoes(["a", "b"]);
    let gw = gateway(&a, &b);
    let cl_te = "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /internal HTTP/1.1\r\nHost: t\r\n\r\n";
    let r = send_raw(gw.addr, cl_te.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "bad_request");
    let dup =
        "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello";
    assert_eq!(send_raw(gw.addr, dup.as_bytes()).status, 400);
    let bad_te = "POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n";
    assert_eq!(send_raw(gw.addr, bad_te.as_bytes()).status, 400);
    let garbage = "GARBAGE\r\n\r\n";
    assert_eq!(send_raw(gw.addr, garbage.as_bytes()).status, 400);
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "nothing reached an upstream"
    );
    assert_eq!(
        gw.get("/api/ok").status,
        200,
        "the gateway is still serving"
    );
}

#[test]
fn oversized_headers_and_bodies_get_431_and_413() {
    let [a, b] = echoes(["a", "b"]);
    let gw = gateway(&a, &b);
    let big = "x".repeat(5000);
    let r = get(gw.addr, "/api/x", &[("x-big", &big)]);
    assert_eq!(r.status, 431, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "headers_too_large");
    let body = "y".repeat(2000);
    let r = request(gw.addr, "POST", "/api/x", &[], &body);
    assert_eq!(r.status, 413, "declared length: {}", r.body);
    let mut chunked = String::from("POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for _ in 0..4 {
        chunked.push_str(&format!("{:x}\r\n{}\r\n", 600, "z".repeat(600)));
    }
    chunked.push_str("0\r\n\r\n");
    let r = send_raw(gw.addr, chunked.as_bytes());
    assert_eq!(r.status, 413, "streamed body: {}", r.body);
    let small = request(gw.addr, "POST", "/api/x", &[], "fits");
    assert_eq!(small.status, 200);
}

#[test]
fn a_prefix_route_cannot_be_escaped_with_dot_segments_or_encodings() {
    let [a, b] = echoes(["a", "b"]);
    let gw = gateway(&a, &b);
    for (path, who, seen) in [
        ("/api/../internal/secret", "b", "/internal/secret"),
        ("/api/%2e%2e/internal/secret", "b", "/internal/secret"),
        ("/api/%2E%2E/internal", "b", "/internal"),
        ("//api//x", "a", "/api/x"),
        ("/api/./x?q=1", "a", "/api/x?q=1"),
        ("/internal/../api/y", "a", "/api/y"),
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            r.instance().as_deref(),
            Some(who),
            "{path} is routed on its normalised form"
        );
        assert_eq!(
            r.json()["path"],
            seen,
            "{path}: the upstream sees the normalised path"
        );
    }
    assert_eq!(
        gw.get("/../../etc/passwd").status,
        404,
        "clamped at the root, no route"
    );
}
