//! What a client sees on the wire: a gateway-made error keeps a reusable connection (or says
//! `Connection: close`), pipelined requests are all answered in order, a client too slow to
//! send its request head is cut off without slowing anyone else, and connection limits refuse
//! what is beyond them and count it.

mod support;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::keepalive::Connection;
use support::*;

fn connect(addr: SocketAddr) -> Connection {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Connection::new(s)
}

fn one_route(upstream: &str) -> String {
    format!("routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{upstream}\"], connect_timeout: 200ms}}\n")
}

#[test]
fn a_gateway_made_502_keeps_the_connection_for_the_next_request() {
    // Nothing listens on the instance's port: every request is a 502 upstream_connect_error.
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&one_route(&dead));
    let mut conn = connect(gw.addr);
    for i in 0..3 {
        conn.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = conn
            .read_response()
            .unwrap_or_else(|| panic!("request {i}: the connection was closed"));
        assert_eq!(r.status, 502);
        assert_eq!(r.header("portico-error"), Some("upstream_connect_error"));
        assert!(r.keeps_alive(), "request {i}: {:?}", r.headers);
    }
}

#[test]
fn an_error_before_the_body_was_read_says_connection_close_and_closes() {
    let gw = Gateway::start(&one_route("127.0.0.1:1"));
    let mut conn = connect(gw.addr);
    // Declared too large: refused before the body is read, so the body cannot be skipped.
    conn.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\nabc")
        .unwrap();
    let r = conn.read_response().expect("a response");
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert!(
        conn.read_response().is_none(),
        "and the connection is closed"
    );
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&one_route(&up.addr.to_string()));
    let mut conn = connect(gw.addr);
    conn.send(
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\nGET /third HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    for path in ["/first", "/second", "/third"] {
        let r = conn
            .read_response()
            .unwrap_or_else(|| panic!("no response for {path}"));
        assert_eq!(r.status, 200);
        let echoed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(echoed["path"], path);
    }
}

/// Opens `n` connections that each send a partial request head, then one header line every
/// `every`, until the gateway closes them or `limit` passes. Returns how many were closed.
fn trickle(addr: SocketAddr, n: usize, every: Duration, limit: Duration) -> usize {
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
            s
        })
        .collect();
    let mut closed = vec![false; n];
    let start = Instant::now();
    while start.elapsed() < limit && closed.iter().any(|c| !c) {
        std::thread::sleep(every);
        for (i, s) in conns.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            // A write to a closed connection fails (or a read sees the close).
            let wrote = s.write_all(b"X-Slow: 1\r\n").is_ok();
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            let ended = matches!(s.read(&mut buf), Ok(0)) || !wrote;
            let reset =
                matches!(s.read(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            closed[i] = ended || reset;
        }
    }
    closed.iter().filter(|c| **c).count()
}

#[test]
fn trickling_request_heads_are_cut_at_the_header_deadline_while_others_are_served() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(&up.addr.to_string()),
        "  limits: {header_timeout: 1s}\n",
    );
    let addr = gw.addr;
    let served = std::thread::spawn(move || {
        let start = Instant::now();
        let mut ok = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            ok += usize::from(get(addr, "/", &[]).status == 200);
        }
        ok
    });
    let start = Instant::now();
    let closed = trickle(
        gw.addr,
        200,
        Duration::from_millis(250),
        Duration::from_secs(6),
    );
    let took = start.elapsed();
    assert_eq!(closed, 200, "every trickling connection was closed");
    assert!(
        took < Duration::from_secs(3),
        "closed near the 1 s deadline, not later: {took:?}"
    );
    assert!(
        served.join().unwrap() > 10,
        "ordinary requests were served meanwhile"
    );
    assert_eq!(
        gw.metric("portico_downstream_slow_client_timeouts_total{phase=\"request_head\"}"),
        200.0
    );
    assert_eq!(gw.metric_sum("portico_downstream_connections", &[]), 0.0);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(&up.addr.to_string()),
        "  limits: {header_timeout: 500ms}\n",
    );
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn an_idle_keepalive_connection_is_not_cut_by_the_header_deadline() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(&up.addr.to_string()),
        "  limits: {header_timeout: 500ms, keepalive_timeout: 10s}\n",
    );
    let mut conn = connect(gw.addr);
    assert_eq!(conn.get("/"), Some((200, true)));
    // Idle for longer than the head deadline: the keep-alive timeout governs this wait.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(conn.get("/"), Some((200, true)));
}

/// Whether the gateway closed `s` right after accepting it.
fn refused(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(0))
        || matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn connections_beyond_the_process_limit_are_refused_and_counted() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(&up.addr.to_string()),
        "  limits: {max_connections: 2, header_timeout: 30s}\n",
    );
    let held: Vec<Connection> = (0..2).map(|_| connect(gw.addr)).collect();
    assert!(gw.eventually(Duration::from_secs(2), || gw
        .metric_sum("portico_downstream_connections", &[])
        == 2.0));
    let mut extra = TcpStream::connect(gw.addr).unwrap();
    assert!(
        refused(&mut extra),
        "a third connection is closed on arrival"
    );
    assert_eq!(
        gw.metric_sum(
            "portico_downstream_connections_refused_total",
            &["reason=\"max_connections\""]
        ),
        1.0
    );
    drop(held);
    assert!(gw.eventually(Duration::from_secs(2), || gw
        .metric_sum("portico_downstream_connections", &[])
        == 0.0));
    assert_eq!(connect(gw.addr).get("/"), Some((200, true)), "room again");
}

#[test]
fn connections_beyond_the_per_address_limit_are_refused_and_counted() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(&up.addr.to_string()),
        "  limits: {max_connections_per_ip: 1, header_timeout: 30s}\n",
    );
    let mut first = connect(gw.addr);
    assert_eq!(first.get("/"), Some((200, true)));
    let mut second = TcpStream::connect(gw.addr).unwrap();
    assert!(refused(&mut second));
    assert_eq!(
        gw.metric_sum(
            "portico_downstream_connections_refused_total",
            &["reason=\"max_connections_per_ip\""]
        ),
        1.0
    );
    assert_eq!(first.get("/"), Some((200, true)), "existing traffic flows");
}

/// Reads until the server closes; the time it took and what it sent.
fn until_closed(mut s: TcpStream) -> (Duration, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    (start.elapsed(), String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() {
    let up = EchoServer::start("e").unwrap();
    let gw = Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
            up.addr
        ),
        "  limits: {keepalive_timeout: 1s}\n",
    );
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The response comes, then the connection idles until the server closes it.
    let (took, seen) = until_closed(s);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[test]
fn a_body_that_stops_arriving_is_cut_after_the_body_read_timeout() {
    let up = EchoServer::start("e").unwrap();
    let gw = Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
            up.addr
        ),
        "  limits: {body_read_timeout: 1s}\n",
    );
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .unwrap();
    let (took, seen) = until_closed(s);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}: {seen}"
    );
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    assert!(seen.contains("\"code\":\"request_timeout\""), "{seen}");
    assert!(seen.contains("Connection: close"), "{seen}");
}
