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

#[test]
fn requests_the_parser_refuses_get_the_documented_json_reply_and_are_counted() {
    let [a, b] = echoes(["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&format!(
        "access_log: {{enabled: true, path: \"{}\"}}\nroutes:\n  - {{name: public, service: pub}}\nservices:\n  pub: {{instances: [\"{}\"]}}\n",
        log.display(),
        a.addr
    ));
    let shapes: [&[u8]; 6] = [
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\x01\x02garbage\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for shape in shapes {
        let r = send_raw(gw.addr, shape);
        let what = String::from_utf8_lossy(shape);
        assert_eq!(r.status, 400, "{what:?}: {}", r.body);
        assert_eq!(r.header("portico-error"), Some("bad_request"), "{what:?}");
        assert_eq!(r.json()["error"]["code"], "bad_request", "{what:?}");
        let id = r.header("x-request-id").expect("a request id").to_string();
        assert_eq!(r.json()["error"]["request_id"], id.as_str());
        assert_ne!(r.header("server"), Some("Pingora"), "{what:?}");
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "nothing reached an upstream"
    );
    assert_eq!(
        gw.metric(
            "portico_http_gateway_responses_total{reason=\"bad_request\",route=\"unmatched\"}"
        ),
        6.0
    );
    assert_eq!(
        gw.metric("portico_http_requests_total{code=\"400\",method=\"_OTHER\",protocol=\"h1\",route=\"unmatched\",source=\"gateway\"}"),
        6.0
    );
    assert!(gw.eventually(std::time::Duration::from_secs(3), || {
        std::fs::read_to_string(&log).is_ok_and(|t| {
            t.lines()
                .filter(|l| {
                    l.contains("\"reason\":\"bad_request\"") && l.contains("\"status\":400")
                })
                .count()
                == 6
        })
    }));
}

#[test]
fn ambiguous_hosts_and_request_lines_are_refused_and_never_forwarded() {
    let [a, b] = echoes(["a", "b"]);
    let gw = gateway(&a, &b);
    let shapes: [&[u8]; 9] = [
        b"GET /api/x HTTP/1.1\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: a.com,b.com\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: a.com/internal\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: user@a.com\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
        b"GET /api/a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET  /api/x HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /api/x\x00y HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /api/x\x7fy HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for shape in shapes {
        let what = String::from_utf8_lossy(shape);
        let r = send_raw(gw.addr, shape);
        assert_eq!(r.status, 400, "{what:?}: {}", r.body);
        assert_eq!(r.header("portico-error"), Some("bad_request"), "{what:?}");
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "nothing reached an upstream"
    );
    let http10 = send_raw(gw.addr, b"GET /api/x HTTP/1.0\r\n\r\n");
    assert_eq!(http10.status, 200, "HTTP/1.0 may omit Host");
}

#[test]
fn underscore_header_names_are_dropped_by_default_or_refused() {
    let [a, _b] = echoes(["a", "b"]);
    let routes = format!(
        "routes:\n  - {{name: r, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
        a.addr
    );
    let headers = [("x_user_id", "evil"), ("x-user-id", "fine")];
    let default = Gateway::start(&routes);
    let r = get(default.addr, "/", &headers);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    assert!(seen.get("x_user_id").is_none(), "dropped: {seen}");
    assert_eq!(seen["x-user-id"], "fine");

    let strict =
        Gateway::start_with_server(&routes, "  limits: {headers_with_underscores: reject}\n");
    let r = get(strict.addr, "/", &headers);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "bad_request");

    let open = Gateway::start_with_server(&routes, "  limits: {headers_with_underscores: allow}\n");
    let r = get(open.addr, "/", &headers);
    assert_eq!(
        r.json()["headers"]["x_user_id"],
        "evil",
        "passed on when allowed"
    );
}

#[test]
fn trace_is_refused_with_405_unless_a_route_names_it() {
    let [a, _b] = echoes(["a", "b"]);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: debug, match: {{path_prefix: /debug, methods: [TRACE]}}, service: s}}\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
        a.addr
    ));
    let r = request(gw.addr, "TRACE", "/x", &[("cookie", "secret")], "");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    assert_eq!(a.requests(), 0);
    assert_eq!(request(gw.addr, "TRACE", "/debug", &[], "").status, 200);
    assert_eq!(gw.get("/x").status, 200);
}
