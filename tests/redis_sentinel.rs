//! Redis Sentinel end to end: a real password-protected primary, its replica and three
//! sentinels on loopback, the real gateway binary. Discovery and a Redis-stored limit work
//! through the sentinels; after the primary is SIGKILLed and the replica promoted, an instance
//! registered on the new primary becomes routable, rate limits decide on Redis again, and no
//! client saw an error meanwhile.

mod support;
use std::time::{Duration, Instant};
use support::redis_sentinel::{RedisSentinel, MASTER, PASSWORD};
use support::*;

fn body(sentinel: &RedisSentinel) -> String {
    format!(
        "redis:\n  sentinel: {{master: {MASTER}, nodes: {}}}\n  password: \"{PASSWORD}\"\n  gateway_ttl: 1s\n\
         registry: {{poll_interval: 200ms}}\n\
         rate_limits:\n  shared: {{key: global, limit: 1000000, per: 1s, store: redis}}\n\
         routes:\n  - {{name: free, match: {{path_prefix: /free}}, service: svc}}\n\
         \x20 - {{name: api, service: svc, rate_limits: [shared]}}\n\
         services:\n  svc:\n    discovery: redis\n    heartbeat_ttl: 30s\n",
        sentinel.nodes_yaml()
    )
}

fn allowed_by_redis(gw: &Gateway) -> f64 {
    gw.metric(
        "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}",
    )
}

#[test]
fn discovery_and_limits_follow_a_sentinel_failover_without_client_errors() {
    let mut sentinel = RedisSentinel::start(3);
    let [a, b, c] = echoes(["a", "b", "c"]);
    let gw = Gateway::start(&body(&sentinel));
    sentinel.primary().register("svc", "a", &a.addr.to_string());
    assert!(
        gw.eventually(Duration::from_millis(1500), || gw.get("/free").instance()
            == Some("a".into())),
        "discovery through the sentinels"
    );
    assert_eq!(
        gw.metric("portico_redis_topology_info{tls=\"false\",topology=\"sentinel\"}"),
        1.0
    );

    let load = SteadyLoad::start(gw.addr, Duration::from_millis(5));
    assert!(gw.eventually(Duration::from_secs(2), || allowed_by_redis(&gw) > 0.0));
    let old = sentinel.kill_primary();
    let killed = Instant::now();
    let new = sentinel.wait_failover(old, Duration::from_secs(20));
    let promoted_after = killed.elapsed();
    let at_promotion = allowed_by_redis(&gw);
    assert!(
        gw.eventually(Duration::from_secs(5), || allowed_by_redis(&gw)
            > at_promotion),
        "rate limits decide on Redis again after the failover"
    );
    let resumed_after = killed.elapsed();
    sentinel.primary().register("svc", "b", &b.addr.to_string());
    let registered = Instant::now();
    assert!(
        gw.eventually(Duration::from_secs(3), || gw.get("/free").instance()
            == Some("b".into())),
        "an instance registered on the new primary is routable"
    );
    let routable_after = registered.elapsed();
    let (ok, failed) = load.finish();
    eprintln!(
        "sentinel failover: primary {old} killed; {new} promoted after {promoted_after:?}; Redis \
         decisions resumed after {resumed_after:?}; new registration routable {routable_after:?} \
         after it was written; {ok} ok, {failed} failed; {} primary switch(es) seen",
        gw.metric("portico_redis_primary_switches_total")
    );
    assert_eq!(failed, 0, "no client error during the failover");
    assert!(
        gw.eventually(Duration::from_secs(3), || gw
            .metric("portico_redis_primary_switches_total")
            >= 1.0),
        "the sentinel watch saw the switch"
    );

    // `portico register --config` follows the sentinels to the new primary too.
    let agent = start_registrar(&gw.config_path, "svc", "c", c.addr);
    assert!(
        gw.eventually(Duration::from_secs(3), || gw.get("/free").instance()
            == Some("c".into())),
        "the agent's instance is routable"
    );
    stop_registrar(agent);
}
