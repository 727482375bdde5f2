//! Retry policy and route deadlines through the real binary.

mod support;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

fn gateway(instances: &[&EchoServer], route_extra: &str) -> Gateway {
    let list: Vec<String> = instances
        .iter()
        .map(|u| format!("\"{}\"", u.addr))
        .collect();
    Gateway::start(&format!(
        "routes:\n  - name: all\n    service: svc\n{route_extra}\nservices:\n  svc:\n    instances: [{}]\n    circuit_breaker: {{enabled: false}}\n",
        list.join(", ")
    ))
}

#[test]
fn status_retries_are_opt_in_and_only_for_idempotent_methods() {
    let [a, b] = echoes(["a", "b"]);
    a.state.fail_with.store(503, Ordering::Relaxed);
    let gw = gateway(
        &[&a, &b],
        "    retry: {attempts: 1, on: [connect_failure, status], backoff: 5ms}",
    );
    for _ in 0..6 {
        let r = gw.get("/");
        assert_eq!(r.status, 200, "GET is retried on the other instance");
        assert_eq!(r.instance().as_deref(), Some("b"));
    }
    let posts: Vec<u16> = (0..4)
        .map(|_| request(gw.addr, "POST", "/", &[], "x").status)
        .collect();
    assert!(
        posts.contains(&503),
        "a POST answered 503 is passed through, not retried: {posts:?}"
    );
    assert!(gw.metric("portico_upstream_retries_total{reason=\"status\",service=\"svc\"}") >= 3.0);
}

#[test]
fn without_opt_in_a_503_is_passed_through() {
    let [a, b] = echoes(["a", "b"]);
    a.state.fail_with.store(503, Ordering::Relaxed);
    let gw = gateway(&[&a, &b], "");
    let statuses: Vec<u16> = (0..4).map(|_| gw.get("/").status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        gw.metric("portico_upstream_retries_total{reason=\"status\",service=\"svc\"}"),
        0.0
    );
}

#[test]
fn the_route_timeout_bounds_the_request_and_is_sent_upstream() {
    let a = EchoServer::start("a").unwrap();
    let gw = gateway(&[&a], "    timeout: 300ms");
    let r = gw.get("/");
    let sent: u64 = r.json()["headers"]["portico-deadline-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sent <= 300 && sent > 200,
        "remaining budget sent upstream: {sent}"
    );
    let started = Instant::now();
    let r = gw.get("/delay/2000");
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.header("portico-error"), Some("deadline_exceeded"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}
