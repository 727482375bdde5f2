//! Slow start through the real binary: an instance back from a failed health check takes a
//! share that grows over the window instead of its full share at once.

mod support;
use std::time::{Duration, Instant};
use support::scripted::Scripted;
use support::*;

fn ok(_: &support::scripted::Seen) -> support::scripted::Answer {
    (200, vec![], "ok".to_string())
}

/// The share of `b` among sequential requests sent for `window`.
fn share(gw: &Gateway, a: &Scripted, b: &Scripted, window: Duration) -> f64 {
    let (a0, b0) = (a.count(), b.count());
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert_eq!(gw.get("/").status, 200);
    }
    let (da, db) = (a.count() - a0, b.count() - b0);
    db as f64 / (da + db) as f64
}

#[test]
fn a_recovered_instance_ramps_up_over_the_window() {
    let a = Scripted::start(ok);
    let mut b = Scripted::start(ok);
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: s}}]\nservices:\n  s:\n    instances: [\"{}\", \"{}\"]\n    slow_start: 4s\n    health_check: {{type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}}\n",
        a.addr, b.addr
    ));
    let steady = share(&gw, &a, &b, Duration::from_millis(500));
    assert!(
        (0.4..=0.6).contains(&steady),
        "instances the service started with do not ramp: {steady}"
    );

    let healthy = format!(
        "portico_upstream_instance_healthy{{address=\"{}\",service=\"s\"}}",
        b.addr
    );
    b.stop();
    assert!(gw.eventually(Duration::from_secs(5), || gw.metric(&healthy) == 0.0));
    share(&gw, &a, &b, Duration::from_millis(200));
    b.restart(ok);
    assert!(gw.eventually(Duration::from_secs(5), || gw.metric(&healthy) == 1.0));
    let windows: Vec<f64> = (0..4)
        .map(|_| share(&gw, &a, &b, Duration::from_secs(1)))
        .collect();
    eprintln!("b's share in successive seconds after recovery: {windows:.2?}");
    assert!(windows[0] < 0.3, "{windows:?}");
    assert!(windows[3] > windows[0] + 0.15, "{windows:?}");
    let after = share(&gw, &a, &b, Duration::from_millis(500));
    assert!(
        (0.4..=0.6).contains(&after),
        "full share after the window: {after}"
    );
}
