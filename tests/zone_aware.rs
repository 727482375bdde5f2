//! Zone-aware balancing through the real binary: requests stay in the gateway's zone while
//! enough of it is healthy, and spill over in proportion when it is not.

mod support;
use std::time::Duration;
use support::scripted::Scripted;
use support::*;

fn ok(_: &support::scripted::Seen) -> support::scripted::Answer {
    (200, vec![], "ok".to_string())
}

#[test]
fn requests_stay_local_and_spill_over_when_the_zone_loses_instances() {
    let (a1, mut a2) = (Scripted::start(ok), Scripted::start(ok));
    let (b1, b2) = (Scripted::start(ok), Scripted::start(ok));
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: s}}]\nservices:\n  s:\n    instances: [\"{} zone=eu-1\", \"{} zone=eu-1\", \"{} zone=eu-2\", \"{}\"]\n    zone_aware: {{local_zone: eu-1, min_healthy: 0.7}}\n    health_check: {{type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}}\n",
        a1.addr, a2.addr, b1.addr, b2.addr
    ));
    let counted = |locality: &str| {
        gw.metric(&format!(
            "portico_upstream_zone_requests_total{{locality=\"{locality}\",service=\"s\"}}"
        ))
    };
    for _ in 0..200 {
        assert_eq!(gw.get("/").status, 200);
    }
    assert_eq!(
        b1.count() + b2.count(),
        0,
        "all local while the zone is healthy"
    );
    assert!(
        a1.count() > 50 && a2.count() > 50,
        "both local instances take a share"
    );
    assert_eq!((counted("local"), counted("cross_zone")), (200.0, 0.0));

    // Half the zone down (0.5 < 0.7): local with probability 0.5 / 0.7, else anywhere.
    let healthy = format!(
        "portico_upstream_instance_healthy{{address=\"{}\",service=\"s\"}}",
        a2.addr
    );
    a2.stop();
    assert!(gw.eventually(Duration::from_secs(5), || gw.metric(&healthy) == 0.0));
    let (local0, cross0) = (counted("local"), counted("cross_zone"));
    for _ in 0..400 {
        assert_eq!(gw.get("/").status, 200, "spilling over costs no errors");
    }
    let cross = (counted("cross_zone") - cross0) / 400.0;
    let local = (counted("local") - local0) / 400.0;
    eprintln!("with half the zone down: local {local:.2}, cross-zone {cross:.2}");
    // Expected cross share: (1 - 0.5/0.7) of the requests go anywhere, and of those round robin
    // gives 2/3 to 3/4 to the other zone (the down instance's turn passes to its successor):
    // 0.19 to 0.21; measured 0.23 to 0.27 in five runs (the rotation is shared by both passes).
    assert!((0.08..=0.32).contains(&cross), "{cross}");
    assert!(
        b1.count() > 0 && b2.count() > 0,
        "spill-over reaches the other instances"
    );
}
