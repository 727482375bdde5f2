//! Traffic splits through the real binary, with echo upstreams that name themselves: weighted
//! shares, sides forced by a header or a query value, sticky assignment by cookie and by
//! header, and a side with no healthy instance failing over without a client error.

mod support;
use std::collections::HashMap;
use std::time::Duration;
use support::*;

/// Services `v1` and `v2` (one echo each) and a route `orders` with `split`.
fn config(v1: &EchoServer, v2: &str, split: &str, v2_extra: &str) -> String {
    format!(
        r#"routes:
  - name: orders
    split:
{split}
services:
  v1: {{instances: ["{v1}"]}}
  v2: {{instances: ["{v2}"]{v2_extra}}}
"#,
        v1 = v1.addr
    )
}

/// Which instance answered each of `n` requests.
fn spread(gw: &Gateway, n: usize, headers: &[(&str, &str)], path: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(gw.addr, path, headers);
        assert_eq!(r.status, 200, "{r:?}");
        *seen.entry(r.instance().unwrap()).or_default() += 1;
    }
    seen
}

#[test]
fn weights_share_the_requests_and_a_match_forces_its_side() {
    let [v1, v2] = echoes(["v1", "v2"]);
    let split = r#"      - {service: v2, when: {header: {x-canary: "1"}}}
      - {service: v2, when: {query: {canary: "yes"}}}
      - {service: v2, weight: 10}
      - {service: v1, weight: 90}"#;
    let gw = Gateway::start(&config(&v1, &v2.addr.to_string(), split, ""));
    let seen = spread(&gw, 2000, &[], "/o");
    let share = seen.get("v2").copied().unwrap_or(0) as f64 / 2000.0;
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 took {share} of 2000, not 10% ± 3%"
    );
    // Where each request went is counted per side.
    let counted = |service: &str| {
        gw.metric(&format!(
            "portico_split_requests_total{{route=\"orders\",service=\"{service}\"}}"
        ))
    };
    assert_eq!(counted("v2") as usize, seen["v2"]);
    assert_eq!(counted("v1") as usize, seen["v1"]);

    let forced = spread(&gw, 50, &[("x-canary", "1")], "/o");
    assert_eq!(
        forced.get("v2"),
        Some(&50),
        "the header forces v2: {forced:?}"
    );
    let forced = spread(&gw, 50, &[], "/o?canary=yes");
    assert_eq!(
        forced.get("v2"),
        Some(&50),
        "the query forces v2: {forced:?}"
    );
    let other = spread(&gw, 200, &[("x-canary", "0")], "/o?canary=no");
    assert!(other["v1"] > 150, "other values are not forced: {other:?}");
}

#[test]
fn a_sticky_cookie_keeps_a_caller_on_its_side() {
    let [v1, v2] = echoes(["v1", "v2"]);
    let split = "      - {service: v2, weight: 50}\n      - {service: v1, weight: 50}\n    sticky: {cookie: portico_split, ttl: 30m}";
    let gw = Gateway::start(&config(&v1, &v2.addr.to_string(), split, ""));
    let mut sides = HashMap::new();
    for _ in 0..20 {
        let first = get(gw.addr, "/o", &[]);
        let cookie = first
            .header("set-cookie")
            .expect("a new caller gets a cookie");
        assert!(
            cookie.starts_with("portico_split=")
                && cookie.contains("Max-Age=1800")
                && cookie.contains("HttpOnly")
                && !cookie.contains("v1")
                && !cookie.contains("v2"),
            "the cookie names no service: {cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_string();
        let side = first.instance().unwrap();
        for _ in 0..10 {
            let again = get(gw.addr, "/o", &[("cookie", &format!("a=b; {pair}"))]);
            assert_eq!(again.instance().as_deref(), Some(side.as_str()), "{pair}");
            assert_eq!(
                again.header("set-cookie"),
                None,
                "a held cookie is not set again"
            );
        }
        *sides.entry(side).or_insert(0) += 1;
    }
    assert_eq!(
        sides.len(),
        2,
        "new callers still spread over both sides: {sides:?}"
    );
    // A cookie no side owns is replaced.
    let stale = get(gw.addr, "/o", &[("cookie", "portico_split=000000000000")]);
    assert!(stale.header("set-cookie").is_some());
}

#[test]
fn a_sticky_header_maps_each_caller_to_one_side() {
    let [v1, v2] = echoes(["v1", "v2"]);
    let split =
        "      - {service: v2, weight: 50}\n      - {service: v1, weight: 50}\n    sticky: {header: x-user}";
    let gw = Gateway::start(&config(&v1, &v2.addr.to_string(), split, ""));
    let mut per_side = HashMap::new();
    for user in 0..60 {
        let user = format!("user-{user}");
        let seen = spread(&gw, 5, &[("x-user", &user)], "/o");
        assert_eq!(seen.len(), 1, "{user} flipped between sides: {seen:?}");
        *per_side
            .entry(seen.into_keys().next().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_side.len(),
        2,
        "users spread over both sides: {per_side:?}"
    );
}

#[test]
fn a_side_without_healthy_instances_fails_over_with_no_client_error() {
    let [v1] = echoes(["v1"]);
    let dead = format!("127.0.0.1:{}", free_port());
    let split = r#"      - {service: v2, when: {header: {x-canary: "1"}}}
      - {service: v2, weight: 50}
      - {service: v1, weight: 50}"#;
    let checks = ", health_check: {type: tcp, interval: 200ms, timeout: 100ms}";
    let gw = Gateway::start(&config(&v1, &dead, split, checks));
    let series = format!("portico_upstream_instance_healthy{{address=\"{dead}\",service=\"v2\"}}");
    assert!(
        gw.eventually(Duration::from_secs(5), || gw.metric_if_exported(&series)
            == Some(0.0)),
        "the health check marks v2's instance down"
    );
    let seen = spread(&gw, 200, &[], "/o");
    assert_eq!(seen.get("v1"), Some(&200), "{seen:?}");
    let forced = spread(&gw, 20, &[("x-canary", "1")], "/o");
    assert_eq!(
        forced.get("v1"),
        Some(&20),
        "a forced side that is down fails over too"
    );
    assert_eq!(
        gw.metric("portico_split_requests_total{route=\"orders\",service=\"v2\"}"),
        0.0
    );
}
