//! Balancing, health checks and failover against real echo upstreams.

mod support;
use std::collections::HashMap;
use std::time::Duration;
use support::*;

fn spread(gw: &Gateway, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(gw.addr, "/", headers);
        assert_eq!(r.status, 200, "{}", r.body);
        *seen.entry(r.instance().unwrap()).or_default() += 1;
    }
    seen
}

fn service_gateway(service: &str) -> Gateway {
    Gateway::start(&format!(
        "routes:\n  - {{name: all, service: svc}}\nservices:\n  svc:\n{service}"
    ))
}

#[test]
fn round_robin_alternates_between_instances() {
    let [a, b] = echoes(["a", "b"]);
    let gw = service_gateway(&format!(
        "    instances: [\"{}\", \"{} weight=5\"]\n",
        a.addr, b.addr
    ));
    let seen = spread(&gw, 20, &[]);
    assert_eq!(seen["a"], 10, "round_robin ignores weights: {seen:?}");
    assert_eq!(seen["b"], 10, "{seen:?}");
}

#[test]
fn weighted_balancing_follows_weights() {
    let [a, b] = echoes(["a", "b"]);
    let gw = service_gateway(&format!(
        "    balance: weighted\n    instances: [\"{} weight=1\", \"{} weight=3\"]\n",
        a.addr, b.addr
    ));
    let seen = spread(&gw, 400, &[]);
    let share_b = seen["b"] as f64 / 400.0;
    assert!(
        (0.70..=0.80).contains(&share_b),
        "b should get ~75%: {seen:?}"
    );
}

#[test]
fn random_balancing_uses_every_instance() {
    let [a, b] = echoes(["a", "b"]);
    let gw = service_gateway(&format!(
        "    balance: random\n    instances: [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    ));
    let seen = spread(&gw, 100, &[]);
    assert!(
        seen.get("a").copied().unwrap_or(0) > 20 && seen.get("b").copied().unwrap_or(0) > 20,
        "{seen:?}"
    );
}

#[test]
fn consistent_hash_keeps_a_key_on_one_instance() {
    let ups: Vec<EchoServer> = (0..3)
        .map(|i| EchoServer::start(&format!("u{i}")).unwrap())
        .collect();
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let gw = service_gateway(&format!(
        "    balance: consistent_hash\n    hash_key: header:x-user-id\n    instances: [{}]\n",
        list.join(", ")
    ));
    let mut owners = HashMap::new();
    for user in 0..30 {
        let id = format!("user-{user}");
        let first = spread(&gw, 5, &[("x-user-id", &id)]);
        assert_eq!(
            first.len(),
            1,
            "user {id} moved between instances: {first:?}"
        );
        owners.insert(id, first.into_keys().next().unwrap());
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(
        distinct.len() >= 2,
        "30 keys should spread over instances: {owners:?}"
    );
}

#[test]
fn a_failing_instance_is_marked_unhealthy_after_fall_probes_and_skipped() {
    let [a, b] = echoes(["a", "b"]);
    let gw = service_gateway(&format!(
        "    instances: [\"{}\", \"{}\"]\n    health_check: {{path: /health, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}}\n",
        a.addr, b.addr
    ));
    let gauge = format!(
        "portico_upstream_instance_healthy{{address=\"{}\",service=\"svc\"}}",
        b.addr
    );
    assert!(gw.eventually(Duration::from_secs(3), || gw.metric(&gauge) == 1.0));
    b.state
        .healthy
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(
        gw.eventually(Duration::from_secs(3), || gw.metric(&gauge) == 0.0),
        "b never marked unhealthy"
    );
    let before = b.requests();
    let seen = spread(&gw, 20, &[]);
    assert_eq!(
        seen.get("a"),
        Some(&20),
        "unhealthy b still got traffic: {seen:?}"
    );
    assert_eq!(b.requests(), before);
    let services = gw.admin("GET", "/admin/services/svc", &[]).json();
    let b_view = services["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["addr"] == b.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(b_view["healthy"], false);
    assert_eq!(b_view["last_check_error"], "status 503");

    b.state
        .healthy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        gw.eventually(Duration::from_secs(3), || gw.metric(&gauge) == 1.0),
        "b never came back after rise probes"
    );
}

#[test]
fn when_every_instance_is_unhealthy_traffic_fails_open_and_is_counted() {
    let [a, b] = echoes(["a", "b"]);
    let gw = service_gateway(&format!(
        "    instances: [\"{}\", \"{}\"]\n    health_check: {{path: /health, interval: 200ms, timeout: 100ms, rise: 1, fall: 1}}\n",
        a.addr, b.addr
    ));
    let ups = [a, b];
    all_unhealthy(&gw, &ups);
    let seen = spread(&gw, 10, &[]);
    assert_eq!(seen.values().sum::<usize>(), 10);
    assert_eq!(
        gw.metric("portico_upstream_panic_selections_total{service=\"svc\"}"),
        10.0
    );
}

/// Marks every echo unhealthy and waits until the gateway's health checks agree.
fn all_unhealthy(gw: &Gateway, ups: &[EchoServer]) {
    for up in ups {
        up.state
            .healthy
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    let down = |u: &EchoServer| {
        format!(
            "portico_upstream_instance_healthy{{address=\"{}\",service=\"svc\"}}",
            u.addr
        )
    };
    assert!(gw.eventually(Duration::from_secs(5), || ups
        .iter()
        .all(|u| gw.metric(&down(u)) == 0.0)));
}

#[test]
fn panic_mode_spreads_round_robin_over_the_whole_set() {
    // 2, 3 and 4 instances: before the fix 2 and 3 sent everything to one instance, 4 to two.
    for n in [2usize, 3, 4] {
        let ups: Vec<EchoServer> = (0..n)
            .map(|i| EchoServer::start(&format!("i{i}")).unwrap())
            .collect();
        let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
        let gw = service_gateway(&format!(
            "    instances: [{}]\n    health_check: {{path: /health, interval: 200ms, timeout: 100ms, rise: 1, fall: 1}}\n",
            list.join(", ")
        ));
        all_unhealthy(&gw, &ups);
        let seen = spread(&gw, 10 * n, &[]);
        assert_eq!(seen.len(), n, "{n} instances: {seen:?}");
        assert!(seen.values().all(|&c| c == 10), "{n} instances: {seen:?}");
    }
}

#[test]
fn panic_mode_keeps_weights() {
    let ups = echoes(["light", "heavy"]);
    let gw = service_gateway(&format!(
        "    balance: weighted\n    instances: [\"{}\", \"{} weight=3\"]\n    health_check: {{path: /health, interval: 200ms, timeout: 100ms, rise: 1, fall: 1}}\n",
        ups[0].addr, ups[1].addr
    ));
    all_unhealthy(&gw, &ups);
    let seen = spread(&gw, 40, &[]);
    assert_eq!(seen.get("light"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("heavy"), Some(&30), "{seen:?}");
}

#[test]
fn connect_failures_are_retried_on_another_instance_without_client_errors() {
    let a = EchoServer::start("a").unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = service_gateway(&format!(
        "    instances: [\"{}\", \"{dead}\"]\n    connect_timeout: 500ms\n",
        a.addr
    ));
    for i in 0..20 {
        let r = request(
            gw.addr,
            if i % 2 == 0 { "GET" } else { "POST" },
            "/",
            &[],
            "x",
        );
        assert_eq!(r.status, 200, "request {i} failed: {}", r.body);
    }
    // The dead instance's breaker opens at its fifth refused connection (consecutive_failures:
    // 5) and keeps it out from then on, so exactly five requests needed a retry. (With breakers
    // off, all twenty do: each retry moves the round-robin cursor back onto the dead one.)
    assert_eq!(
        gw.metric("portico_upstream_retries_total{reason=\"connect_failure\",service=\"svc\"}"),
        5.0
    );
    assert_eq!(
        gw.metric("portico_upstream_errors_total{kind=\"connect_refused\",service=\"svc\"}"),
        5.0
    );
    assert_eq!(
        gw.metric(&format!(
            "portico_circuit_breaker_state{{address=\"{dead}\",service=\"svc\",state=\"open\"}}"
        )),
        1.0
    );
    assert_eq!(
        gw.metric("portico_upstream_attempts_total{service=\"svc\",status_class=\"2xx\"}"),
        20.0
    );
}

#[test]
fn a_service_with_no_reachable_instance_answers_502_json() {
    let dead1 = format!("127.0.0.1:{}", free_port());
    let dead2 = format!("127.0.0.1:{}", free_port());
    let gw = service_gateway(&format!("    instances: [\"{dead1}\", \"{dead2}\"]\n"));
    let r = get(gw.addr, "/", &[("X-Request-Id", "r1")]);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("portico-error"), Some("upstream_connect_error"));
    assert_eq!(r.json()["error"]["request_id"], "r1");
    assert_eq!(
        gw.metric("portico_upstream_attempts_total{service=\"svc\",status_class=\"error\"}"),
        2.0
    );
}

#[test]
fn a_slow_upstream_gets_a_504_after_the_read_timeout() {
    let a = EchoServer::start("a").unwrap();
    let gw = service_gateway(&format!(
        "    instances: [\"{}\"]\n    read_timeout: 200ms\n",
        a.addr
    ));
    let r = gw.get("/delay/1500");
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.header("portico-error"), Some("upstream_timeout"));
    assert_eq!(
        gw.metric("portico_upstream_errors_total{kind=\"read_timeout\",service=\"svc\"}"),
        1.0
    );
}

/// Whole-second timeouts run on the worker's tokio timer instead of Pingora's own
/// (`src/server.rs`): one still ends the wait on time, and Pingora's timer thread, which
/// would wake 100 times a second, is not started for it.
#[test]
fn a_whole_second_read_timeout_runs_on_the_worker_timer_and_still_answers_504() {
    let a = EchoServer::start("a").unwrap();
    let gw = service_gateway(&format!(
        "    instances: [\"{}\"]\n    read_timeout: 1s\n",
        a.addr
    ));
    let started = std::time::Instant::now();
    let r = gw.get("/delay/3000");
    let waited = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.header("portico-error"), Some("upstream_timeout"));
    assert!(
        waited >= std::time::Duration::from_millis(1000)
            && waited < std::time::Duration::from_millis(2500),
        "answered after {waited:?}"
    );
    assert_eq!(gw.threads_named("Timer thread"), 0);
}

#[test]
fn upstream_errors_pass_through_and_are_counted_by_class() {
    let a = EchoServer::start("a").unwrap();
    let gw = service_gateway(&format!("    instances: [\"{}\"]\n", a.addr));
    assert_eq!(gw.get("/status/503").status, 503);
    assert_eq!(
        gw.metric("portico_upstream_attempts_total{service=\"svc\",status_class=\"5xx\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("portico_http_requests_total{code=\"503\",method=\"GET\",protocol=\"h1\",route=\"all\",source=\"upstream\"}"),
        1.0
    );
}
