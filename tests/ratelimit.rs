//! Rate limiting end to end: the real binary, echo upstreams and, for shared limits, a real
//! `redis-server` per test; plus the property that both stores decide alike.

mod support;
use std::time::{Duration, Instant};
use support::*;

/// The Redis rate-limit store of one gateway on `redis` (2 s command timeout).
fn shared_store(redis: &RedisServer) -> portico::ratelimit::shared::SharedStore {
    use portico::config::RedisConfig;
    use portico::redis_client::Topology;
    let topology = Topology::from_config(&RedisConfig {
        command_timeout: Duration::from_secs(2),
        ..RedisConfig::single(&redis.url())
    })
    .unwrap();
    portico::ratelimit::shared::SharedStore::new(std::sync::Arc::new(topology), Default::default())
}

fn limited_gateway(echo: &EchoServer, rules: &str, route_rules: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "{extra}rate_limits:\n{rules}routes:\n  - {{name: free, match: {{path_prefix: /free}}, service: svc}}\n  - {{name: api, service: svc, rate_limits: [{route_rules}]}}\nservices:\n  svc:\n    instances: [\"{}\"]\n",
        echo.addr
    ))
}

/// Sends `n` requests with `headers` on `addr`; returns the statuses.
fn burst(addr: std::net::SocketAddr, n: usize, headers: &[(&str, &str)]) -> Vec<Response> {
    (0..n).map(|_| get(addr, "/", headers)).collect()
}

#[test]
fn a_local_rule_admits_its_limit_and_sets_the_headers() {
    let echo = EchoServer::start("a").unwrap();
    let gw = limited_gateway(&echo, "  ten:\n    limit: 10\n    per: 1s\n", "ten", "");
    let started = Instant::now();
    let responses = burst(gw.addr, 30, &[]);
    let elapsed = started.elapsed();
    let allowed = responses.iter().filter(|r| r.status == 200).count();
    // GCRA refills one request per 100 ms: a slow machine may earn some back meanwhile.
    let refilled = (elapsed.as_millis() / 100) as usize;
    assert!(
        (10..=10 + refilled).contains(&allowed),
        "{allowed} admitted in {elapsed:?}"
    );
    let first = &responses[0];
    assert_eq!(first.header("ratelimit-limit"), Some("10"));
    assert_eq!(first.header("ratelimit-remaining"), Some("9"));
    assert_eq!(first.header("ratelimit-reset"), Some("1"));
    let refused = responses.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(refused.json()["error"]["code"], "rate_limited");
    assert_eq!(refused.header("portico-error"), Some("rate_limited"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 429));
    assert_eq!(
        echo.requests(),
        allowed as u64,
        "refused requests never reach the upstream"
    );
    assert_eq!(
        gw.get("/free/x").header("ratelimit-limit"),
        None,
        "ungoverned route"
    );
    let m = |d: &str| {
        gw.metric(&format!(
            "portico_ratelimit_decisions_total{{decision=\"{d}\",route=\"api\",rule=\"ten\",store=\"local\"}}"
        ))
    };
    assert_eq!(m("allowed") as usize, allowed);
    assert_eq!(m("limited") as usize, 30 - allowed);
}

#[test]
fn keys_missing_keys_shadow_rules_and_the_most_restrictive_headers() {
    let echo = EchoServer::start("a").unwrap();
    let rules = "  per-key:\n    key: header:x-api-key\n    on_missing_key: reject\n    limit: 3\n    per: 1m\n  wide:\n    key: global\n    limit: 100\n    per: 1m\n  trial:\n    limit: 1\n    per: 1m\n    shadow: true\n    headers: false\n";
    let gw = limited_gateway(&echo, rules, "per-key, wide, trial", "");
    let missing = gw.get("/");
    assert_eq!(missing.status, 400, "{}", missing.body);
    for key in ["k1", "k2"] {
        let statuses: Vec<u16> = burst(gw.addr, 5, &[("x-api-key", key)])
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429], "key {key}");
    }
    let r = get(gw.addr, "/", &[("x-api-key", "k3")]);
    assert_eq!(
        r.header("ratelimit-limit"),
        Some("3"),
        "per-key is tighter than wide"
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("2"));
    // The shadow rule (1 per minute) sees the 7 requests per-key let through: the first is
    // allowed, the other 6 are over its limit, counted, and never refused.
    let shadow = gw.metric(
        "portico_ratelimit_decisions_total{decision=\"shadow_limited\",route=\"api\",rule=\"trial\",store=\"local\"}",
    );
    assert_eq!(shadow, 6.0);
    assert_eq!(
        gw.metric(
            "portico_policy_refusals_total{mode=\"shadow\",policy=\"rate_limit\",route=\"api\"}"
        ),
        6.0
    );
}

#[test]
fn a_reload_keeps_the_buckets_of_unchanged_rules() {
    let echo = EchoServer::start("a").unwrap();
    let gw = limited_gateway(&echo, "  few:\n    limit: 2\n    per: 1m\n", "few", "");
    assert_eq!(burst(gw.addr, 3, &[]).last().unwrap().status, 429);
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, text.replace("name: free", "name: free2")).unwrap();
    assert_eq!(gw.admin("POST", "/admin/reload", &[]).status, 200);
    assert_eq!(gw.get("/").status, 429, "the bucket survived the reload");
}

fn shared_rule(redis: &RedisServer) -> String {
    format!(
        "redis: {{url: \"{}\", replicas: 2, command_timeout: 50ms}}\n",
        redis.url()
    )
}

#[test]
fn a_redis_rule_is_shared_by_two_gateways_and_survives_redis_going_away() {
    let mut redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let rules = "  shared:\n    key: header:x-user\n    limit: 20\n    per: 1m\n    store: redis\n";
    let one = limited_gateway(&echo, rules, "shared", &shared_rule(&redis));
    let two = limited_gateway(&echo, rules, "shared", &shared_rule(&redis));

    let mut allowed = 0;
    let started = Instant::now();
    for i in 0..40 {
        let gw = if i % 2 == 0 { &one } else { &two };
        let r = get(gw.addr, "/", &[("x-user", "u1")]);
        assert!(r.status == 200 || r.status == 429, "{}", r.body);
        allowed += usize::from(r.status == 200);
    }
    // 20 per minute earns one request back every 3 s.
    let refilled = (started.elapsed().as_secs() / 3) as usize;
    assert!(
        (20..=20 + refilled).contains(&allowed),
        "20 in total across both: {allowed}"
    );
    // Requests alternate, so the first twenty (all admitted) split evenly.
    let redis_decisions = one.metric(
        "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}",
    ) as usize;
    assert!(
        (10..=10 + refilled).contains(&redis_decisions),
        "{redis_decisions}"
    );

    // Redis gone: each gateway enforces 20 / 2 replicas locally, and nothing turns into a 5xx.
    redis.kill();
    let statuses: Vec<u16> = burst(one.addr, 30, &[("x-user", "u2")])
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let during = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        during, 10,
        "local fallback enforces limit / replicas: {statuses:?}"
    );
    let fallbacks = one.metric(
        "portico_ratelimit_fallback_decisions_total{policy=\"local_fallback\",rule=\"shared\"}",
    );
    assert_eq!(fallbacks, 30.0);
    assert_eq!(one.metric("portico_redis_up{client=\"ratelimit\"}"), 0.0);

    // Redis back (empty): shared decisions resume once the 500 ms down-window has passed
    // (measured ~0.47 s; README: about half a second).
    redis.restart();
    let back = Instant::now();
    let redis_allowed = || {
        one.metric(
            "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}",
        )
    };
    let before = redis_allowed();
    assert!(
        one.eventually(Duration::from_secs(1), || {
            get(one.addr, "/", &[("x-user", "u3")]);
            redis_allowed() > before
        }),
        "shared limiting should resume within 1 s"
    );
    eprintln!("shared limiting resumed after {:?}", back.elapsed());
    assert_eq!(one.metric("portico_redis_up{client=\"ratelimit\"}"), 1.0);
}

#[test]
fn a_frozen_redis_costs_at_most_the_command_timeout_and_never_a_5xx() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let rules = "  shared:\n    limit: 1000\n    per: 1s\n    store: redis\n";
    let gw = limited_gateway(&echo, rules, "shared", &shared_rule(&redis));
    assert_eq!(gw.get("/").status, 200);
    redis.signal("STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = gw.get("/");
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    redis.signal("CONT");
    eprintln!("slowest request while Redis was frozen: {slowest:?}");
    // Every Redis call of the limiter ended within its 50 ms timeout (the 0.1 s bucket holds
    // them all), and no request waited much beyond one timeout.
    let calls =
        "portico_redis_command_duration_seconds_count{client=\"ratelimit\",command=\"gcra\"}";
    let within =
        "portico_redis_command_duration_seconds_bucket{client=\"ratelimit\",command=\"gcra\",le=\"0.1\"}";
    assert_eq!(gw.metric(within), gw.metric(calls));
    assert!(slowest < Duration::from_millis(150), "{slowest:?}");
    let timeouts =
        gw.metric("portico_ratelimit_store_errors_total{kind=\"timeout\",rule=\"shared\"}");
    let skipped =
        gw.metric("portico_ratelimit_store_errors_total{kind=\"unavailable\",rule=\"shared\"}");
    assert!(timeouts >= 1.0, "{timeouts}");
    assert_eq!(timeouts + skipped, 20.0, "every request fell back");
}

/// The limiter's connection is driven by the requests waiting on it, not by a task of its own
/// (`redis_client::driven`): a connection Redis closes while nobody uses it is found closed by
/// the next decision, which falls back like any failure, and is dialled again — no 5xx, and
/// shared decisions resume.
#[test]
fn a_limiter_connection_closed_by_redis_is_dialled_again() {
    let redis = RedisServer::start();
    let echo = EchoServer::start("a").unwrap();
    let rules = "  shared:\n    limit: 1000\n    per: 1s\n    store: redis\n";
    let gw = limited_gateway(&echo, rules, "shared", &shared_rule(&redis));
    assert_eq!(gw.get("/").status, 200);
    let dialled = "portico_redis_connects_total{client=\"ratelimit\",result=\"success\"}";
    let by_redis = "portico_ratelimit_decisions_total{decision=\"allowed\",route=\"api\",rule=\"shared\",store=\"redis\"}";
    assert_eq!((gw.metric(dialled), gw.metric(by_redis)), (1.0, 1.0));

    // Every client connection but the one asking.
    redis.cmd(&["CLIENT", "KILL", "TYPE", "normal"]);
    let before = gw.metric(by_redis);
    let resumed = gw.eventually(Duration::from_secs(3), || {
        let r = gw.get("/");
        assert_eq!(r.status, 200, "{}", r.body);
        gw.metric(by_redis) > before
    });
    assert!(resumed, "shared decisions resume on a new connection");
    assert_eq!(gw.metric(dialled), 2.0, "dialled once more");
}

/// The Redis script and the in-process store run the same algorithm: on one injected timeline
/// (the script takes `now` as its first argument; Portico itself always passes 0, the server
/// clock) they decide every request identically — alone or in a batch of up to 8 decisions in
/// one call (what concurrent requests share), a bucket named twice in a batch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_and_the_local_store_decide_identically_on_one_timeline() {
    use portico::ratelimit::gcra::{read_reply, Gcra, REDIS_SCRIPT};
    use portico::ratelimit::local::LocalStore;

    let redis = RedisServer::start();
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let script = ::redis::Script::new(REDIS_SCRIPT);
    let local = LocalStore::new(10_000);
    let mut rng = fastrand::Rng::with_seed(7);
    let rules = [
        Gcra::new(5, 1_000_000, 0),
        Gcra::new(3, 60_000_000, 2),
        Gcra::new(100, 1_000, 7),
    ];
    let mut now: u64 = 1_700_000_000_000_000;
    let mut decided = 0;
    for step in 0..1_500 {
        now += rng.u64(0..150_000);
        let batch: Vec<(usize, String)> = (0..rng.usize(1..=8))
            .map(|_| {
                let r = rng.usize(0..rules.len());
                (r, format!("p{r}:{}", rng.u8(0..4)))
            })
            .collect();
        let mut invocation = script.prepare_invoke();
        invocation.arg(now);
        for (r, name) in &batch {
            invocation
                .key(format!("test:rl:{{{name}}}"))
                .arg(rules[*r].interval_us)
                .arg(rules[*r].capacity);
        }
        let reply: Vec<u8> = invocation.invoke_async(&mut conn).await.unwrap();
        let decisions = read_reply(&reply).expect("a well-formed reply");
        assert_eq!(decisions.len(), batch.len());
        for ((r, name), b) in batch.iter().zip(decisions) {
            let a = local.decide(&rules[*r], local.hash_key(name), now);
            assert_eq!(a, b, "step {step}: rule {r} key {name} at {now}");
            decided += 1;
        }
    }
    assert!(decided > 5_000, "{decided}");
}

/// The production path: the Redis store on the server's clock and the local store on the
/// process's clock make the same decisions. The rules refill so slowly (minutes per request)
/// that the two clocks cannot disagree within the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_on_the_server_clock_decides_as_the_local_store() {
    use portico::ratelimit::gcra::Gcra;
    use portico::ratelimit::local::LocalStore;
    use portico::ratelimit::shared::local_now_us;

    let redis = RedisServer::start();
    let shared = shared_store(&redis);
    let local = LocalStore::new(10_000);
    let rules = [
        Gcra::new(5, 3_600_000_000, 0),
        Gcra::new(3, 3_600_000_000, 4),
    ];
    let mut rng = fastrand::Rng::with_seed(11);
    let mut refused = 0;
    for step in 0..200 {
        let (r, key) = (rng.usize(0..rules.len()), rng.u8(0..3));
        let gcra = &rules[r];
        let name = format!("prod{r}:{key}");
        let a = local.decide(gcra, local.hash_key(&name), local_now_us());
        let b = shared
            .decide(gcra, &format!("test:rl:{{{name}}}"))
            .await
            .expect("redis decision");
        assert_eq!(
            (a.allowed, a.remaining),
            (b.allowed, b.remaining),
            "step {step}: rule {r} key {key}"
        );
        // Reset and retry-after are durations on each store's clock: equal within 1 s.
        assert!(a.reset_us.abs_diff(b.reset_us) < 1_000_000, "step {step}");
        assert!(
            a.retry_after_us.abs_diff(b.retry_after_us) < 1_000_000,
            "step {step}"
        );
        refused += usize::from(!a.allowed);
    }
    assert!(
        refused > 100,
        "most requests are over these limits: {refused}"
    );
}

#[test]
fn one_rule_on_two_routes_is_one_bucket_and_a_route_key_gives_each_route_its_own() {
    let echo = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&format!(
        "rate_limits:\n  per-client: {{limit: 4, per: 1m}}\n  per-route: {{key: route, limit: 2, per: 1m}}\nroutes:\n  - {{name: a, match: {{path_prefix: /a}}, service: svc, rate_limits: [per-client]}}\n  - {{name: b, match: {{path_prefix: /b}}, service: svc, rate_limits: [per-client]}}\n  - {{name: c, match: {{path_prefix: /c}}, service: svc, rate_limits: [per-route]}}\n  - {{name: d, match: {{path_prefix: /d}}, service: svc, rate_limits: [per-route]}}\nservices:\n  svc:\n    instances: [\"{}\"]\n",
        echo.addr
    ));
    let statuses =
        |paths: &[&str]| -> Vec<u16> { paths.iter().map(|p| gw.get(p).status).collect() };
    assert_eq!(
        statuses(&["/a", "/b", "/a", "/b", "/a", "/b"]),
        [200, 200, 200, 200, 429, 429],
        "four per client across both routes"
    );
    assert_eq!(
        statuses(&["/c", "/c", "/c", "/d", "/d", "/d"]),
        [200, 200, 429, 200, 200, 429],
        "two per route"
    );
}

#[test]
fn with_redis_away_allow_lets_requests_through_and_deny_refuses_them() {
    let echo = EchoServer::start("a").unwrap();
    let nowhere = free_port();
    let gw = Gateway::start(&format!(
        "redis: {{url: \"redis://127.0.0.1:{nowhere}/0\", command_timeout: 50ms, connect_timeout: 100ms}}\nrate_limits:\n  open: {{limit: 1, per: 1m, store: redis, on_store_error: allow}}\n  closed: {{limit: 100, per: 1m, store: redis, on_store_error: deny}}\nroutes:\n  - {{name: open, match: {{path_prefix: /open}}, service: svc, rate_limits: [open]}}\n  - {{name: closed, match: {{path_prefix: /closed}}, service: svc, rate_limits: [closed]}}\nservices:\n  svc:\n    instances: [\"{}\"]\n",
        echo.addr
    ));
    for _ in 0..5 {
        let r = gw.get("/open");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("ratelimit-limit"), None, "no decision, no headers");
    }
    for _ in 0..3 {
        let r = gw.get("/closed");
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert_eq!(
        gw.metric("portico_ratelimit_fallback_decisions_total{policy=\"allow\",rule=\"open\"}"),
        5.0
    );
    assert_eq!(
        gw.metric("portico_ratelimit_fallback_decisions_total{policy=\"deny\",rule=\"closed\"}"),
        3.0
    );
    assert_eq!(
        echo.requests(),
        5,
        "denied requests never reach the upstream"
    );
}

/// Concurrent decisions through the Redis store share script calls, and still admit exactly
/// what one-by-one decisions would: each bucket's capacity, no more, no fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redis_decisions_share_calls_and_admit_exactly_the_capacity() {
    use portico::ratelimit::gcra::Gcra;
    use std::sync::Arc;

    let redis = RedisServer::start();
    let shared = Arc::new(shared_store(&redis));
    // An hour per request: only the initial capacity is ever admitted.
    let gcra = Gcra::new(7, 3_600_000_000, 3);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let key = format!("test:rl:{{conc:{}}}", i % 4);
                (i % 4, shared.decide(&gcra, key).await.expect("decision"))
            })
        })
        .collect();
    let mut allowed = [0; 4];
    for t in tasks {
        let (k, d) = t.await.unwrap();
        allowed[k] += usize::from(d.allowed);
    }
    assert_eq!(allowed, [10; 4], "limit 7 + burst 3 per bucket");
    let stats = match redis.cmd(&["INFO", "commandstats"]) {
        ::redis::Value::VerbatimString { text, .. } => text,
        ::redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    let calls: usize = stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    eprintln!("400 concurrent decisions in {calls} script calls");
    assert!(
        (1..400).contains(&calls),
        "{calls} script calls for 400 concurrent decisions"
    );
}
