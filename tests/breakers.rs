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
