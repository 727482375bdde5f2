//! The Redis service registry end to end: a real `redis-server` per test, the real gateway
//! binary, echo upstreams, and registrations written with plain protocol commands.

mod support;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// A gateway whose service `svc` is discovered in `redis` (no static instances).
fn registry_gateway(redis: &RedisServer, poll: &str, ttl: &str) -> Gateway {
    Gateway::start(&format!(
        "redis: {{url: \"{}\"}}\nregistry: {{poll_interval: {poll}}}\nroutes:\n  - {{name: all, service: svc}}\nservices:\n  svc:\n    discovery: redis\n    heartbeat_ttl: {ttl}\n",
        redis.url()
    ))
}

fn spread(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = gw.get("/");
        let who = r
            .instance()
            .unwrap_or_else(|| format!("status {}", r.status));
        *seen.entry(who).or_default() += 1;
    }
    seen
}

/// Waits until every one of `n` requests is answered by exactly the instances in `want`.
fn traffic_goes_to(gw: &Gateway, within: Duration, want: &[&str]) -> bool {
    gw.eventually(within, || {
        let seen = spread(gw, 6);
        seen.keys().all(|k| want.contains(&k.as_str()))
            && want.iter().all(|w| seen.contains_key(*w))
    })
}

/// Keeps heartbeating `ids` of `svc` every 200 ms until dropped.
struct Heartbeats {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeats {
    fn start(port: u16, ids: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let redis = RedisServer::attach(port);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for id in &ids {
                    let _ = redis.try_heartbeat("svc", id);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_registered_instance_receives_traffic_within_a_second() {
    let redis = RedisServer::start();
    let a = EchoServer::start("a").unwrap();
    let gw = registry_gateway(&redis, "1s", "10s");
    let before = gw.get("/");
    assert_eq!(before.status, 503, "no instance yet: {}", before.body);
    assert_eq!(before.json()["error"]["code"], "no_healthy_upstream");

    let registered_at = Instant::now();
    redis.register("svc", "a1", &a.addr.to_string());
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(1), &["a"]),
        "a should be routable within 1 s"
    );
    eprintln!("routable after {:?}", registered_at.elapsed());
    assert_eq!(
        gw.metric("portico_registry_instances{service=\"svc\",state=\"live\"}"),
        1.0
    );
    assert_eq!(gw.metric("portico_redis_up{client=\"registry\"}"), 1.0);
    assert!(gw.metric("portico_registry_last_sync_success_timestamp_seconds") > 1.7e9);

    let view = gw.admin("GET", "/admin/services/svc", &[]).json();
    let inst = &view["instances"][0];
    assert_eq!(inst["source"], "redis");
    assert_eq!(inst["id"], "a1");
    assert!(
        inst["heartbeat_age_seconds"].as_f64().unwrap() < 5.0,
        "{view}"
    );
}

#[test]
fn an_instance_that_stops_heartbeating_leaves_within_ttl_and_is_cleaned_up() {
    let redis = RedisServer::start();
    let [a, b] = echoes(["a", "b"]);
    let gw = registry_gateway(&redis, "500ms", "2s");
    redis.register("svc", "a1", &a.addr.to_string());
    redis.register("svc", "b1", &b.addr.to_string());
    let _beats = Heartbeats::start(redis.port, &["b1"]);
    assert!(traffic_goes_to(&gw, Duration::from_secs(2), &["a", "b"]));

    // a's last heartbeat was its registration, a moment ago: TTL + 1 s from now is generous.
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(3), &["b"]),
        "a should stop receiving traffic within TTL + 1 s"
    );
    assert!(
        gw.eventually(Duration::from_secs(8), || redis.members("svc") == ["b1"]),
        "the janitor removes the expired member: {:?}",
        redis.members("svc")
    );
    assert_eq!(
        gw.metric("portico_registry_expired_removed_total{service=\"svc\"}"),
        1.0
    );
}

#[test]
fn deregistration_is_seen_at_once_via_pubsub_and_within_a_poll_without_it() {
    let redis = RedisServer::start();
    let [a, b, c] = echoes(["a", "b", "c"]);
    // A 3 s poll: anything faster than that came through pub/sub.
    let gw = registry_gateway(&redis, "3s", "60s");
    for (id, e) in [("a1", &a), ("b1", &b), ("c1", &c)] {
        redis.register("svc", id, &e.addr.to_string());
    }
    assert!(traffic_goes_to(
        &gw,
        Duration::from_secs(2),
        &["a", "b", "c"]
    ));

    let t = Instant::now();
    redis.deregister("svc", "a1", true);
    assert!(
        traffic_goes_to(&gw, Duration::from_millis(1000), &["b", "c"]),
        "pub/sub should remove a well before the 3 s poll"
    );
    eprintln!("deregistration via pub/sub seen after {:?}", t.elapsed());

    // Let wake-ups queued by the events above run, so only the poll can see what follows.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    redis.deregister("svc", "b1", false);
    assert!(
        traffic_goes_to(&gw, Duration::from_millis(3500), &["c"]),
        "without an event, the next poll removes b"
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "seen by the poll, not an event: {waited:?}"
    );
}

#[test]
fn redis_outage_keeps_the_last_known_set_and_a_restart_is_followed() {
    let mut redis = RedisServer::start();
    let [a, b, c] = echoes(["a", "b", "c"]);
    let gw = registry_gateway(&redis, "300ms", "5s");
    redis.register("svc", "a1", &a.addr.to_string());
    redis.register("svc", "b1", &b.addr.to_string());
    assert!(traffic_goes_to(&gw, Duration::from_secs(2), &["a", "b"]));

    // Steady load from another thread, counting anything but a 200.
    let load = SteadyLoad::start(gw.addr, Duration::from_millis(5));

    redis.kill();
    assert!(
        gw.eventually(Duration::from_secs(3), || gw
            .metric("portico_redis_up{client=\"registry\"}")
            == 0.0),
        "redis_up should drop to 0"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(gw.metric("portico_registry_syncs_total{result=\"failure\"}") >= 1.0);
    let ready = gw.admin("GET", "/readyz", &[]);
    assert_eq!(ready.status, 200, "readiness does not depend on Redis");
    assert_eq!(ready.json()["registry"]["redis_up"], false);
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(1), &["a", "b"]),
        "last known set in use"
    );

    // Back, empty (restarted without persistence). The gateway sees its epoch token gone and
    // grants one TTL (5 s) of grace: instances it knew stay in use while registrars return,
    // and the janitor leaves expired entries alone meanwhile. a and c re-register, b does not,
    // and d1 shows up with a heartbeat from 1970.
    redis.restart();
    redis.register("svc", "a1", &a.addr.to_string());
    redis.register("svc", "c1", &c.addr.to_string());
    let _beats = Heartbeats::start(redis.port, &["a1", "c1"]);
    let stale = "portico:registry:{svc}:instance:d1";
    redis.cmd(&["HSET", stale, "addr", "127.0.0.1:9", "weight", "1"]);
    redis.cmd(&["ZADD", "portico:registry:{svc}:instances", "1000", "d1"]);
    let t = Instant::now();
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(2), &["a", "b", "c"]),
        "b stays during the grace while c joins"
    );
    eprintln!("followed the restarted registry after {:?}", t.elapsed());
    assert_eq!(gw.metric("portico_redis_up{client=\"registry\"}"), 1.0);
    assert_eq!(gw.metric("portico_registry_data_loss_detected_total"), 1.0);
    let ready = gw.admin("GET", "/readyz", &[]).json();
    assert_eq!(ready["registry"]["data_loss_recovery"], true);
    let exists = |key: &str| redis.cmd(&["EXISTS", key]) == ::redis::Value::Int(1);
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(t.elapsed()));
    assert!(exists(stale), "the janitor pauses during the grace");
    // After the grace b leaves (it never came back) and the janitor removes d1.
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(7), &["a", "c"]),
        "the grace lasts one TTL"
    );
    assert!(
        gw.eventually(Duration::from_secs(6), || !exists(stale)),
        "the janitor resumes after the grace"
    );
    let ready = gw.admin("GET", "/readyz", &[]).json();
    assert_eq!(ready["registry"]["data_loss_recovery"], false);

    let (ok, failed) = load.finish();
    eprintln!("under load: {ok} ok, {failed} failed");
    assert!(ok > 100, "the load thread ran: {ok}");
    assert_eq!(failed, 0, "no client error caused by the Redis outage");
}

#[test]
fn a_draining_instance_finishes_in_flight_requests_and_gets_no_new_ones() {
    let redis = RedisServer::start();
    let [a, b] = echoes(["a", "b"]);
    let gw = registry_gateway(&redis, "1s", "60s");
    redis.register("svc", "a1", &a.addr.to_string());
    assert!(traffic_goes_to(&gw, Duration::from_secs(2), &["a"]));

    let addr = gw.addr;
    let slow = std::thread::spawn(move || get(addr, "/delay/1500", &[]));
    std::thread::sleep(Duration::from_millis(300));
    redis.register("svc", "b1", &b.addr.to_string());
    redis.cmd(&[
        "HSET",
        "portico:registry:{svc}:instance:a1",
        "draining",
        "1",
    ]);
    redis.cmd(&["PUBLISH", "portico:registry:events", "svc"]);
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(1), &["b"]),
        "no new requests to a"
    );
    let finished = slow.join().unwrap();
    assert_eq!(
        finished.status, 200,
        "the in-flight request completes: {}",
        finished.body
    );
    assert_eq!(finished.instance().as_deref(), Some("a"));
    assert_eq!(
        gw.metric("portico_registry_instances{service=\"svc\",state=\"draining\"}"),
        1.0
    );
    let view = gw.admin("GET", "/admin/services/svc", &[]).json();
    let drained: Vec<_> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["draining"] == true)
        .collect();
    assert_eq!(drained.len(), 1, "{view}");
}

#[test]
fn portico_register_makes_an_instance_routable_and_sigterm_removes_it() {
    let redis = RedisServer::start();
    let [a, b] = echoes(["a", "b"]);
    let gw = registry_gateway(&redis, "1s", "3s");
    redis.register("svc", "b1", &b.addr.to_string());
    let _beats = Heartbeats::start(redis.port, &["b1"]);
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["register", "--redis", &redis.url(), "--service", "svc"])
        .args([
            "--addr",
            &a.addr.to_string(),
            "--ttl",
            "3s",
            "--meta",
            "git=abc",
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn portico register");
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(3), &["a", "b"]),
        "the agent's instance should be routable"
    );
    // Heartbeats keep it alive past its 3 s TTL.
    std::thread::sleep(Duration::from_secs(4));
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["a", "b"]));
    let view = gw.admin("GET", "/admin/services/svc", &[]).json();
    assert!(view.to_string().contains("\"git\":\"abc\""), "{view}");

    std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exits cleanly: {status}");
    assert_eq!(redis.members("svc"), ["b1"], "SIGTERM deregistered it");
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["b"]));
}

#[test]
fn the_admin_api_registers_drains_and_removes_instances() {
    let redis = RedisServer::start();
    let [a, b] = echoes(["a", "b"]);
    let gw = registry_gateway(&redis, "1s", "2s");
    let post = |path: &str, body: &str| request(gw.admin, "POST", path, &[], body);

    let r = post(
        "/admin/services/svc/instances",
        &format!("{{\"addr\": \"{}\", \"id\": \"a1\"}}", a.addr),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["pinned"], true);
    let r = post(
        "/admin/services/svc/instances",
        &format!("{{\"addr\": \"{}\", \"id\": \"b1\"}}", b.addr),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["a", "b"]));
    // Pinned: still there well past the 2 s TTL.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["a", "b"]));

    let r = post("/admin/services/svc/instances/a1/drain", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["b"]));

    let r = request(
        gw.admin,
        "DELETE",
        "/admin/services/svc/instances/a1",
        &[],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(redis.members("svc"), ["b1"]);
    let r = request(
        gw.admin,
        "DELETE",
        "/admin/services/svc/instances/a1",
        &[],
        "",
    );
    assert_eq!(r.status, 404);

    let bad = post("/admin/services/svc/instances", "{\"addr\": \"nonsense\"}");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown = post(
        "/admin/services/nope/instances",
        &format!("{{\"addr\": \"{}\"}}", a.addr),
    );
    assert_eq!(unknown.status, 404);
}

#[test]
fn a_gateway_started_while_redis_is_down_serves_static_instances_then_follows_redis() {
    let [s, r] = echoes(["s", "r"]);
    let mut redis = RedisServer::start();
    redis.kill();
    let gw = Gateway::start(&format!(
        "redis: {{url: \"{}\"}}\nregistry: {{poll_interval: 300ms}}\nroutes:\n  - {{name: all, service: svc}}\nservices:\n  svc:\n    discovery: redis\n    instances: [\"{}\"]\n",
        redis.url(),
        s.addr
    ));
    assert!(traffic_goes_to(&gw, Duration::from_secs(1), &["s"]));
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric("portico_registry_syncs_total{result=\"failure\"}") >= 1.0
    }));
    let ready = gw.admin("GET", "/readyz", &[]).json();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["registry"]["redis_up"], false);

    redis.restart();
    redis.register("svc", "r1", &r.addr.to_string());
    assert!(
        traffic_goes_to(&gw, Duration::from_secs(3), &["s", "r"]),
        "static instances stay, registry ones join"
    );
}
