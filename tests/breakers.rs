//! Circuit breakers through the real binary: trip, fail over, short-circuit, half-open recovery.

mod support;
use std::time::Duration;
use support::*;

fn gateway(instances: &[&EchoServer], breaker: &str) -> Gateway {
    let list: Vec<String> = instances
        .iter()
        .map(|u| format!("\"{}\"", u.addr))
        .collect();
    Gateway::start(&format!(
        "routes:\n  - {{name: all, service: svc}}\nservices:\n  svc:\n    instances: [{}]\n    circuit_breaker: {breaker}\n",
        list.join(", ")
    ))
}

#[test]
fn an_instance_returning_503s_is_ejected_and_traffic_fails_over() {
    let [a, b] = echoes(["a", "b"]);
    let gw = gateway(&[&a, &b], "{consecutive_failures: 3, open_for: 30s}");
    // /status/503 fails on both instances; only the first to reach three failures is ejected
    // (the ejection cap keeps the other one in).
    for _ in 0..6 {
        assert_eq!(gw.get("/status/503").status, 503);
    }
    let opened = gw.metric(
        "portico_circuit_breaker_transitions_total{from=\"closed\",service=\"svc\",to=\"open\"}",
    );
    assert_eq!(
        opened, 1.0,
        "exactly one breaker may open with two instances"
    );
    let view = gw.admin("GET", "/admin/services/svc", &[]).json();
    let open: Vec<_> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["breaker"]["state"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{view}");
    assert!(
        open[0]["breaker"]["next_probe_in_seconds"]
            .as_f64()
            .unwrap()
            > 20.0
    );
    let ejected = open[0]["addr"].as_str().unwrap().to_string();
    let survivor = if ejected == a.addr.to_string() {
        "b"
    } else {
        "a"
    };
    for _ in 0..6 {
        assert_eq!(gw.get("/").instance().as_deref(), Some(survivor));
    }
    let state = format!(
        "portico_circuit_breaker_state{{address=\"{ejected}\",service=\"svc\",state=\"open\"}}"
    );
    assert_eq!(gw.metric(&state), 1.0);
}

#[test]
fn all_breakers_open_answers_503_circuit_open_then_a_probe_closes_it() {
    let a = EchoServer::start("a").unwrap();
    let gw = gateway(
        &[&a],
        "{consecutive_failures: 2, open_for: 1s, half_open_probes: 1}",
    );
    assert_eq!(gw.get("/status/502").status, 502);
    assert_eq!(gw.get("/status/502").status, 502);
    let before = a.requests();
    let r = gw.get("/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("portico-error"), Some("circuit_open"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        a.requests(),
        before,
        "a short-circuited request never reaches the instance"
    );
    assert_eq!(
        gw.metric(
            "portico_circuit_breaker_short_circuited_total{mode=\"enforced\",service=\"svc\"}"
        ),
        1.0
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        gw.get("/").status,
        200,
        "after open_for one probe goes through"
    );
    assert_eq!(gw.metric("portico_circuit_breaker_transitions_total{from=\"half_open\",service=\"svc\",to=\"closed\"}"), 1.0);
    assert_eq!(gw.get("/").status, 200);
}

#[test]
fn client_errors_never_trip_a_breaker() {
    let a = EchoServer::start("a").unwrap();
    let gw = gateway(&[&a], "{consecutive_failures: 2}");
    for _ in 0..5 {
        assert_eq!(gw.get("/status/404").status, 404);
        assert_eq!(
            gw.get("/status/500").status,
            500,
            "500 only counts with trip_on_5xx"
        );
    }
    assert_eq!(gw.get("/").status, 200);
    assert_eq!(gw.metric("portico_circuit_breaker_transitions_total{from=\"closed\",service=\"svc\",to=\"open\"}"), 0.0);
}

#[test]
fn a_shadow_breaker_opens_but_never_refuses() {
    let a = EchoServer::start("a").unwrap();
    let gw = gateway(&[&a], "{consecutive_failures: 2, shadow: true}");
    gw.get("/status/503");
    gw.get("/status/503");
    assert_eq!(gw.get("/").status, 200);
    assert_eq!(gw.metric("portico_circuit_breaker_transitions_total{from=\"closed\",service=\"svc\",to=\"open\"}"), 1.0);
    assert_eq!(
        gw.metric("portico_circuit_breaker_short_circuited_total{mode=\"shadow\",service=\"svc\"}"),
        1.0
    );
}

#[test]
fn a_failure_ratio_over_the_window_opens_the_breaker_without_consecutive_failures() {
    let a = EchoServer::start("a").unwrap();
    let gw = gateway(
        &[&a],
        "{consecutive_failures: 100, failure_ratio: 0.5, min_requests: 10, window: 30s, open_for: 30s}",
    );
    // Alternating 503 and 200: never two failures in a row, half of all outcomes failures.
    for i in 0..9 {
        let path = if i % 2 == 0 { "/status/503" } else { "/" };
        assert!(gw.get(path).status != 0);
    }
    let state = format!(
        "portico_circuit_breaker_state{{address=\"{}\",service=\"svc\",state=\"open\"}}",
        a.addr
    );
    assert_eq!(gw.metric(&state), 0.0, "nine requests: below min_requests");
    // The tenth outcome is the fifth failure: 5/10 reaches the ratio.
    assert_eq!(gw.get("/status/503").status, 503);
    assert_eq!(gw.metric(&state), 1.0);
    let r = gw.get("/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("portico-error"), Some("circuit_open"));
}

#[test]
fn a_500_counts_as_a_failure_only_with_trip_on_5xx() {
    let a = EchoServer::start("a").unwrap();
    let open = |gw: &Gateway| {
        gw.metric(&format!(
            "portico_circuit_breaker_state{{address=\"{}\",service=\"svc\",state=\"open\"}}",
            a.addr
        ))
    };
    let plain = gateway(&[&a], "{consecutive_failures: 3}");
    for _ in 0..6 {
        assert_eq!(plain.get("/status/500").status, 500);
    }
    assert_eq!(
        open(&plain),
        0.0,
        "a 500 is the application's answer, not a failure"
    );
    let strict = gateway(&[&a], "{consecutive_failures: 3, trip_on_5xx: true}");
    for _ in 0..3 {
        assert_eq!(strict.get("/status/500").status, 500);
    }
    assert_eq!(open(&strict), 1.0);
    assert_eq!(
        strict.get("/").header("portico-error"),
        Some("circuit_open")
    );
}
