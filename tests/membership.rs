//! Gateways that know each other: real gateway processes heartbeating into one real Redis.
//! Each sees how many are live; one that stops cleanly leaves at once, one that is killed drops
//! out after its TTL; and with Redis then gone, a Redis-stored limit falls back to
//! `limit / live gateways` on each.

mod support;
use std::time::{Duration, Instant};
use support::*;

fn gateway(redis: &RedisServer, echo: &EchoServer) -> Gateway {
    // A grace period, as in production: Pingora drops every task when it ends, and with the
    // harness's 0 s the leave raced that drop (the test failed about one run in four).
    Gateway::start_with_server(
        &format!(
            "redis: {{url: \"{}\", gateway_ttl: 2s, command_timeout: 50ms}}\n\
         rate_limits:\n  shared: {{key: global, limit: 30, per: 1m, store: redis}}\n\
         routes:\n  - {{name: api, service: svc, rate_limits: [shared]}}\n\
         services:\n  svc:\n    instances: [\"{}\"]\n",
            redis.url(),
            echo.addr
        ),
        "  grace_period: 1s\n",
    )
}

fn live(gw: &Gateway) -> f64 {
    gw.metric("portico_gateways_live")
}

#[test]
fn gateways_count_each_other_and_divide_the_fallback_share_by_the_live_count() {
    let mut redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let gws: Vec<Gateway> = (0..4).map(|_| gateway(&redis, &echo)).collect();
    for gw in &gws {
        assert!(
            gw.eventually(Duration::from_secs(3), || live(gw) == 4.0),
            "every gateway counts four"
        );
    }
    let list = gws[0].admin("GET", "/admin/gateways", &[]).json();
    assert_eq!(list["live"], 4, "{list}");
    let members = list["gateways"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    assert_eq!(members.iter().filter(|m| m["self"] == true).count(), 1);
    let me = members.iter().find(|m| m["self"] == true).unwrap();
    assert_eq!(me["pid"], gws[0].pid());
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["id"], list["self"]);

    // A clean stop leaves the list at once, well before the 2 s TTL could explain it.
    gws[3].signal("TERM");
    let stopped = Instant::now();
    assert!(gws[0].eventually(Duration::from_millis(1500), || live(&gws[0]) == 3.0));
    eprintln!(
        "a stopped gateway left the count after {:?}",
        stopped.elapsed()
    );

    // A killed one stops counting once its TTL has passed.
    gws[2].signal("KILL");
    let killed = Instant::now();
    for gw in &gws[..2] {
        assert!(
            gw.eventually(Duration::from_millis(3500), || live(gw) == 2.0),
            "a killed gateway drops out within its TTL and a heartbeat"
        );
    }
    eprintln!("a killed gateway dropped out after {:?}", killed.elapsed());

    // Redis gone: the last count stays, and each gateway admits 30 / 2 of the shared limit.
    redis.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        live(&gws[0]),
        2.0,
        "the last count stays while Redis is away"
    );
    let statuses: Vec<u16> = (0..20).map(|_| gws[0].get("/").status).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        15,
        "30 / 2 live gateways: {statuses:?}"
    );
    let gone = gws[1].admin("GET", "/admin/gateways", &[]);
    assert_eq!(gone.status, 503);
    assert_eq!(gone.json()["live_last_known"], 2);
}
