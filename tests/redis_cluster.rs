//! Redis Cluster end to end: real clusters made with `redis-cli --cluster create` on loopback,
//! the real gateway binary. Registrations span hash slots, a Redis-stored limit is shared by
//! two gateways through the cluster, events land in the stream, `portico register` and the
//! admin API write through it, and a master killed under load costs no client an error.

mod support;
use std::time::{Duration, Instant};
use support::redis_cluster::RedisCluster;
use support::*;

/// Two discovered services (in different hash slots), a route per service, and a
/// Redis-stored global limit of `limit` per `per` on the default route. The command timeout is
/// generous: these tests count decisions Redis made, and under a loaded test run a 50 ms
/// timeout turned some into fallback decisions.
fn body(cluster: &RedisCluster, limit: u32, per: &str) -> String {
    format!(
        "redis: {{cluster: {}, gateway_ttl: 1s, command_timeout: 1s}}\nregistry: {{poll_interval: 200ms}}\n\
         events: {{stream: \"portico:events\", maxlen: 10000}}\n\
         kpis:\n  - {{name: calls, routes: [api], status: 2xx}}\n\
         rate_limits:\n  shared: {{key: global, limit: {limit}, per: {per}, store: redis}}\n\
         routes:\n  - {{name: free, match: {{path_prefix: /free}}, service: svc}}\n\
         \x20 - {{name: users, match: {{path_prefix: /users}}, service: users}}\n\
         \x20 - {{name: api, service: svc, rate_limits: [shared]}}\n\
         services:\n  svc:\n    discovery: redis\n    heartbeat_ttl: 30s\n\
         \x20 users:\n    discovery: redis\n    heartbeat_ttl: 30s\n",
        cluster.seeds_yaml()
    )
}

fn allowed_by_redis(gw: &Gateway) -> f64 {
    gw.metric(
        "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}",
    )
}

fn fallbacks(gw: &Gateway) -> f64 {
    gw.metric(
        "portico_ratelimit_fallback_decisions_total{policy=\"local_fallback\",rule=\"shared\"}",
    )
}

#[test]
fn two_gateways_share_registry_limits_and_events_through_a_three_master_cluster() {
    let cluster = RedisCluster::start(3, 0);
    assert_ne!(
        cluster.cli(&["CLUSTER", "KEYSLOT", "portico:registry:{svc}:instances"]),
        cluster.cli(&["CLUSTER", "KEYSLOT", "portico:registry:{users}:instances"]),
        "the two services must live in different slots for this test to mean anything"
    );
    let [a, b, c] = echoes(["a", "b", "c"]);
    let one = Gateway::start(&body(&cluster, 20, "1m"));
    let two = Gateway::start(&body(&cluster, 20, "1m"));

    // An operator registers with redis-cli -c; both gateways route to it within 1.5 s.
    let registered = Instant::now();
    cluster.register("svc", "a", &a.addr.to_string());
    for gw in [&one, &two] {
        assert!(
            gw.eventually(Duration::from_millis(1500), || gw.get("/free").instance()
                == Some("a".into())),
            "registered on a cluster, routable within 1.5 s"
        );
    }
    eprintln!("routable on both gateways after {:?}", registered.elapsed());

    // The admin API of one gateway registers in another slot; the other gateway routes to it.
    let created = request(
        one.admin,
        "POST",
        "/admin/services/users/instances",
        &[],
        &format!("{{\"addr\": \"{}\", \"id\": \"b\"}}", b.addr),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        two.eventually(Duration::from_millis(1500), || two.get("/users").instance()
            == Some("b".into()))
    );

    // The shared limit: 20 per minute across both gateways, every decision made by Redis.
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..30 {
        let gw = if i % 2 == 0 { &one } else { &two };
        let status = gw.get("/").status;
        assert!(status == 200 || status == 429, "{status}");
        allowed += usize::from(status == 200);
    }
    let refilled = (started.elapsed().as_secs() / 3) as usize;
    assert!(
        (20..=20 + refilled).contains(&allowed),
        "the global limit holds across gateways: {allowed}"
    );
    assert_eq!(
        allowed_by_redis(&one) + allowed_by_redis(&two),
        allowed as f64
    );
    assert_eq!(
        fallbacks(&one) + fallbacks(&two),
        0.0,
        "no fallback decisions"
    );

    // Events from both gateways land in the one stream.
    assert!(one.eventually(Duration::from_secs(3), || {
        cluster.cli(&["XLEN", "portico:events"]) == allowed.to_string()
    }));

    // Both see each other in the membership list.
    for gw in [&one, &two] {
        assert!(gw.eventually(Duration::from_secs(3), || gw
            .metric("portico_gateways_live")
            == 2.0));
        assert_eq!(
            gw.metric("portico_redis_topology_info{tls=\"false\",topology=\"cluster\"}"),
            1.0
        );
    }

    // `portico register --config` with the gateway's own file registers through the cluster.
    let agent = start_registrar(&one.config_path, "svc", "c", c.addr);
    assert!(
        two.eventually(Duration::from_secs(3), || two.get("/free").instance()
            == Some("c".into())),
        "the agent's instance is routable"
    );
    stop_registrar(agent);
    assert_eq!(
        cluster.cli(&["ZSCORE", "portico:registry:{svc}:instances", "c"]),
        "",
        "deregistered on SIGTERM"
    );
}

#[test]
fn a_master_killed_under_load_costs_no_client_an_error() {
    let mut cluster = RedisCluster::start(3, 1);
    let [a, b] = echoes(["a", "b"]);
    let gw = Gateway::start(&body(&cluster, 1_000_000, "1s"));
    cluster.register("svc", "a", &a.addr.to_string());
    assert!(gw.eventually(Duration::from_millis(1500), || gw.get("/").status == 200));

    let bucket = "portico:rl:{shared:global}";
    let load = SteadyLoad::start(gw.addr, Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(500));
    let before_kill = allowed_by_redis(&gw);
    assert!(before_kill > 0.0);
    let victim = cluster.master_of(bucket);
    let killed = Instant::now();
    cluster.kill(victim);
    let promoted = cluster.wait_failover(bucket, victim, Duration::from_secs(20));
    let promoted_after = killed.elapsed();
    let at_promotion = allowed_by_redis(&gw);
    assert!(
        gw.eventually(Duration::from_secs(5), || allowed_by_redis(&gw)
            > at_promotion),
        "Redis decisions resume after the replica takes over"
    );
    let resumed_after = killed.elapsed();
    let fell_back = fallbacks(&gw);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    eprintln!(
        "cluster failover: master {victim} killed; replica {promoted} promoted after {promoted_after:?}; \
         Redis decisions resumed after {resumed_after:?}; {fell_back} fallback decisions; {ok} ok, {failed} failed"
    );
    assert_eq!(failed, 0, "no client error during the failover ({ok} ok)");
    assert!(
        fell_back > 0.0,
        "the gap was covered by local fallback decisions"
    );

    // The registry follows the new topology: an instance registered now becomes routable.
    cluster.register("svc", "b", &b.addr.to_string());
    assert!(
        gw.eventually(Duration::from_secs(3), || gw.get("/free").instance()
            == Some("b".into())),
        "an instance registered after the failover is routable"
    );
}

#[test]
fn a_cluster_seed_that_is_not_a_cluster_is_a_counted_run_time_error() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&format!(
        "redis: {{cluster: [\"redis://127.0.0.1:{}\"]}}\n\
         rate_limits:\n  shared: {{key: global, limit: 5, per: 1m, store: redis}}\n\
         routes:\n  - {{name: api, service: svc, rate_limits: [shared]}}\n\
         services:\n  svc:\n    discovery: redis\n    instances: [\"{}\"]\n",
        redis.port, echo.addr
    ));
    let statuses: Vec<u16> = (0..8).map(|_| gw.get("/").status).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "never a 5xx: {statuses:?}"
    );
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric("portico_redis_connects_total{client=\"registry\",result=\"failure\"}") >= 1.0
    }));
    let registry = gw.admin("GET", "/admin/registry", &[]).json().to_string();
    assert!(
        registry.contains("cluster support disabled"),
        "the reason is shown: {registry}"
    );
}
