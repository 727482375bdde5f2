//! Request mirroring through the real binary: the share of requests copied, a slow mirror that
//! the client never waits for, copies dropped (and counted) beyond `max_in_flight` or
//! `max_body`, the copy's head and body, and the comparison counters for matching,
//! mismatching and unreachable mirrors.

mod support;
use std::time::{Duration, Instant};
use support::scripted::Scripted;
use support::*;

/// Series `name{route="ROUTE",label="VALUE"}` (labels in the exposition's order).
fn mirror_metric(gw: &Gateway, family: &str, label: &str, value: &str, route: &str) -> f64 {
    gw.metric(&format!(
        "portico_mirror_{family}{{{label}=\"{value}\",route=\"{route}\"}}"
    ))
}

/// The `q`-quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn a_share_is_copied_and_the_client_never_waits_for_a_slow_mirror() {
    let [primary] = echoes(["primary"]);
    // The mirror takes a second over every answer.
    let shadow = Scripted::start(|_| {
        std::thread::sleep(Duration::from_secs(1));
        (200, vec![], "shadow".into())
    });
    let gw = Gateway::start(&format!(
        r#"routes:
  - name: mirrored
    match: {{path_prefix: /m}}
    service: primary
    mirror: {{service: shadow, percent: 50, max_in_flight: 1000, host: shadow.internal}}
  - name: plain
    match: {{path_prefix: /p}}
    service: primary
services:
  primary: {{instances: ["{}"]}}
  shadow: {{instances: ["{}"]}}
"#,
        primary.addr, shadow.addr
    ));
    // Interleaved, so both routes see the same machine. A mirror on the client's path would
    // add a second to every mirrored request, every time; a noisy machine may push one round's
    // tail past the bound, so a failing round is measured once more.
    let round = |from: usize| {
        let (mut mirrored, mut plain) = (Vec::new(), Vec::new());
        for i in from..from + 300 {
            for (path, samples) in [("/m/x", &mut mirrored), ("/p/x", &mut plain)] {
                let start = Instant::now();
                let r = get(gw.addr, &format!("{path}?i={i}"), &[("x-user", "u1")]);
                samples.push(start.elapsed());
                assert_eq!(r.status, 200, "{r:?}");
                assert_eq!(r.instance().as_deref(), Some("primary"));
            }
        }
        (quantile(&mut mirrored, 0.99), quantile(&mut plain, 0.99))
    };
    let within = |(m99, p99): (Duration, Duration)| m99 <= p99 + Duration::from_millis(10);
    let mut sent = 300;
    let mut p99s = round(0);
    if !within(p99s) {
        eprintln!(
            "client p99 (first round): mirrored {:?}, plain {:?}",
            p99s.0, p99s.1
        );
        p99s = round(300);
        sent += 300;
    }
    let (m99, p99) = p99s;
    eprintln!("client p99: mirrored {m99:?}, plain {p99:?}");
    assert!(
        within(p99s),
        "a 1 s mirror must not reach the client: p99 {m99:?} mirrored vs {p99:?} plain"
    );

    // Every copy is answered within the 2 s timeout and counted once.
    let answered = || mirror_metric(&gw, "requests_total", "outcome", "answered", "mirrored");
    assert!(
        gw.eventually(Duration::from_secs(10), || answered() as usize
            == shadow.count()
            && gw.metric("portico_mirror_in_flight{route=\"mirrored\"}") == 0.0),
        "copies answered {} vs seen {}",
        answered(),
        shadow.count()
    );
    let copies = shadow.count();
    eprintln!("copied {copies} of {sent} at 50%");
    // Within 4.5 standard deviations of the binomial's mean (8.7 for 300 requests).
    let spread = 4.5 * (sent as f64 * 0.25).sqrt();
    assert!(
        (copies as f64 - sent as f64 / 2.0).abs() <= spread,
        "{copies} of {sent} copied at 50%"
    );
    assert_eq!(
        mirror_metric(&gw, "requests_total", "outcome", "failed", "mirrored"),
        0.0
    );
    // The copy is the request as the primary got it, with the configured Host.
    let seen = shadow.seen();
    assert!(
        seen.iter().all(|s| s.target.starts_with("/m/x?i=")),
        "{:?}",
        seen[0]
    );
    assert!(seen
        .iter()
        .all(|s| s.headers.get("host").map(String::as_str) == Some("shadow.internal")));
    assert!(seen
        .iter()
        .all(|s| s.headers.get("x-user").map(String::as_str) == Some("u1")));
    assert!(seen.iter().all(|s| s.headers.contains_key("x-request-id")));
    // Nothing of the plain route was copied.
    assert!(!seen.iter().any(|s| s.target.starts_with("/p")));
}

#[test]
fn copies_beyond_max_in_flight_or_max_body_are_dropped_and_counted() {
    let [primary] = echoes(["primary"]);
    let shadow = Scripted::start(|seen| {
        if seen.target.starts_with("/slow") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        (200, vec![], String::new())
    });
    let gw = Gateway::start(&format!(
        r#"routes:
  - name: mirrored
    service: primary
    mirror: {{service: shadow, max_in_flight: 4, max_body: 1KiB}}
services:
  primary: {{instances: ["{}"]}}
  shadow: {{instances: ["{}"]}}
"#,
        primary.addr, shadow.addr
    ));
    // A body is copied whole, with the same framing.
    let r = request(gw.addr, "POST", "/orders", &[], "{\"qty\": 3}");
    assert_eq!(r.status, 200);
    // A body over max_body: the request goes through, the copy does not.
    let big = "x".repeat(2048);
    let r = request(gw.addr, "POST", "/big", &[], &big);
    assert_eq!(r.status, 200);
    wait_until(Duration::from_secs(5), "the small copy", || {
        shadow.count() == 1
    });
    let seen = &shadow.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(seen.body, "{\"qty\": 3}");
    assert_eq!(
        seen.headers.get("content-length").map(String::as_str),
        Some("10")
    );
    assert_eq!(
        mirror_metric(&gw, "dropped_total", "reason", "body_too_large", "mirrored"),
        1.0
    );

    // 20 requests while each copy takes 1.5 s: 4 copies out, the rest dropped.
    let start = Instant::now();
    for i in 0..20 {
        assert_eq!(get(gw.addr, &format!("/slow/{i}"), &[]).status, 200);
    }
    let sent_in = start.elapsed();
    let dropped = mirror_metric(&gw, "dropped_total", "reason", "max_in_flight", "mirrored");
    let in_flight = gw.metric("portico_mirror_in_flight{route=\"mirrored\"}");
    // On a machine slow enough to free a slot meanwhile, only the totals below are certain.
    if sent_in < Duration::from_millis(1400) {
        assert_eq!(
            (dropped, in_flight),
            (16.0, 4.0),
            "20 requests in {sent_in:?}"
        );
    }
    let answered = || mirror_metric(&gw, "requests_total", "outcome", "answered", "mirrored");
    wait_until(Duration::from_secs(10), "the slow copies answered", || {
        answered() + dropped == 21.0
    });
    assert_eq!(shadow.count(), answered() as usize);
    assert_eq!(
        gw.metric("portico_mirror_in_flight{route=\"mirrored\"}"),
        0.0
    );
}

#[test]
fn comparisons_count_matches_mismatches_and_errors() {
    let answer = |target: &str, differ: bool| -> (u16, Vec<(String, String)>, String) {
        match target {
            t if t.contains("/missing") && !differ => (404, vec![], "no such order".into()),
            t if t.contains("/body") && differ => (200, vec![], "v2 says otherwise".into()),
            _ => (200, vec![], "an order".into()),
        }
    };
    let primary = Scripted::start(move |s| answer(&s.target, false));
    let shadow = Scripted::start(move |s| answer(&s.target, true));
    let gone = {
        let mut s = Scripted::start(|_| (200, vec![], String::new()));
        s.stop();
        s.addr
    };
    let gw = Gateway::start(&format!(
        r#"routes:
  - name: bodies
    match: {{path_prefix: /bodies}}
    service: primary
    mirror: {{service: shadow, compare_body: true}}
  - name: statuses
    match: {{path_prefix: /statuses}}
    service: primary
    mirror: {{service: shadow, compare: true}}
  - name: dead
    match: {{path_prefix: /dead}}
    service: primary
    mirror: {{service: gone, compare: true, timeout: 500ms}}
services:
  primary: {{instances: ["{}"]}}
  shadow: {{instances: ["{}"], circuit_breaker: {{enabled: false}}}}
  gone: {{instances: ["{gone}"], circuit_breaker: {{enabled: false}}}}
"#,
        primary.addr, shadow.addr
    ));
    let mut sent = 0;
    for (path, n, status) in [
        ("/bodies/same", 5, 200),
        ("/bodies/missing", 3, 404),
        ("/bodies/body", 4, 200),
        ("/statuses/body", 2, 200),
        ("/statuses/missing", 2, 404),
        ("/dead/x", 3, 200),
    ] {
        for _ in 0..n {
            assert_eq!(get(gw.addr, path, &[]).status, status, "{path}");
            sent += 1;
        }
    }
    let result = |route: &str, result: &str| {
        mirror_metric(&gw, "comparisons_total", "result", result, route)
    };
    let total = || {
        ["bodies", "statuses", "dead"]
            .iter()
            .flat_map(|r| {
                ["match", "status_mismatch", "body_mismatch", "error"].map(|x| result(r, x))
            })
            .sum::<f64>()
    };
    wait_until(Duration::from_secs(10), "every comparison", || {
        total() as usize == sent
    });
    // Same status, same body; a 404 against a 200; same status, another body.
    assert_eq!(result("bodies", "match"), 5.0);
    assert_eq!(result("bodies", "status_mismatch"), 3.0);
    assert_eq!(result("bodies", "body_mismatch"), 4.0);
    // Without compare_body a different body still matches.
    assert_eq!(result("statuses", "match"), 2.0);
    assert_eq!(result("statuses", "status_mismatch"), 2.0);
    assert_eq!(result("statuses", "body_mismatch"), 0.0);
    // A mirror that refuses connections: an error per copy, and the clients got their 200s.
    assert_eq!(result("dead", "error"), 3.0);
    assert_eq!(
        mirror_metric(&gw, "requests_total", "outcome", "failed", "dead"),
        3.0
    );
}
