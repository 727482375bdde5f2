//! IP rules, CORS and concurrency limits through the real binary and real upstreams, as an
//! operator and as a hostile client sees them: who gets 403 `forbidden` or 503 `overloaded`,
//! what headers a browser gets, and that a slot is given back however a request ends.

mod support;
use std::io::Write;
use std::time::{Duration, Instant};
use support::*;

fn ip_gateway(echo: &EchoServer, server_extra: &str) -> Gateway {
    Gateway::start_with_server(
        &format!(
            r#"ip_rules:
  office: {{allow: ["10.0.0.0/8", "2001:db8::/32"]}}
  blocklist: {{deny: ["203.0.113.0/24", "2001:db8:bad::/48"]}}
  watch: {{deny: ["198.51.100.0/24"], shadow: true}}
routes:
  - {{name: office, match: {{path_prefix: /office}}, service: web, ip: [office]}}
  - {{name: public, match: {{path_prefix: /public}}, service: web, ip: [blocklist]}}
  - {{name: both, match: {{path_prefix: /both}}, service: web, ip: [office, blocklist]}}
  - {{name: watched, match: {{path_prefix: /watched}}, service: web, ip: [watch]}}
services:
  web: {{instances: ["{}"]}}
"#,
            echo.addr
        ),
        server_extra,
    )
}

#[test]
fn allow_and_deny_lists_of_both_families_apply_to_the_client_behind_a_trusted_proxy() {
    let [echo] = echoes(["a"]);
    let gw = ip_gateway(&echo, "  trusted_proxies: [\"127.0.0.0/8\"]\n");
    let status = |path: &str, client: &str| {
        let r = get(gw.addr, path, &[("x-forwarded-for", client)]);
        if r.status == 403 {
            assert_eq!(r.json()["error"]["code"], "forbidden", "{r:?}");
        }
        r.status
    };
    assert_eq!(status("/office", "10.1.2.3"), 200);
    assert_eq!(status("/office", "2001:db8::7"), 200);
    assert_eq!(status("/office", "192.0.2.1"), 403);
    assert_eq!(status("/office", "2001:dead::1"), 403);
    assert_eq!(status("/public", "203.0.113.9"), 403);
    assert_eq!(status("/public", "2001:db8:bad::1"), 403);
    assert_eq!(status("/public", "198.51.100.1"), 200);
    assert_eq!(status("/public", "2001:db8:bae::1"), 200, "outside the /48");
    assert_eq!(status("/both", "10.9.9.9"), 200);
    assert_eq!(status("/both", "203.0.113.1"), 403, "every rule must admit");
    assert_eq!(
        status("/watched", "198.51.100.1"),
        200,
        "shadow: counted only"
    );
    let before = echo.requests();
    assert_eq!(status("/office", "192.0.2.1"), 403);
    assert_eq!(
        echo.requests(),
        before,
        "a refused request reaches no upstream"
    );
    assert_eq!(
        gw.metric(r#"portico_policy_refusals_total{mode="enforce",policy="ip",route="office"}"#),
        3.0
    );
    assert_eq!(
        gw.metric(r#"portico_policy_refusals_total{mode="shadow",policy="ip",route="watched"}"#),
        1.0
    );
    assert_eq!(
        gw.metric(r#"portico_http_gateway_responses_total{reason="forbidden",route="public"}"#),
        2.0
    );
}

#[test]
fn a_forwarded_for_header_from_an_untrusted_peer_changes_nothing() {
    let [echo] = echoes(["a"]);
    let gw = ip_gateway(&echo, "");
    // The socket peer is 127.0.0.1, outside the office: a forged header does not get in ...
    let r = get(gw.addr, "/office", &[("x-forwarded-for", "10.1.2.3")]);
    assert_eq!(r.status, 403);
    // ... and cannot frame someone else either.
    let r = get(gw.addr, "/public", &[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(r.status, 200);
}

#[test]
fn a_redis_deny_set_reaches_every_gateway_and_outlives_redis() {
    let [echo] = echoes(["a"]);
    let mut redis = RedisServer::start();
    let body = format!(
        "redis: {{url: \"{}\"}}\nip_deny: {{poll_interval: 200ms}}\nip_rules:\n  shared: {{deny_from_redis: true}}\nroutes:\n  - {{name: api, service: web, ip: [shared]}}\nservices:\n  web: {{instances: [\"{}\"]}}\n",
        redis.url(),
        echo.addr
    );
    let trusted = "  trusted_proxies: [\"127.0.0.0/8\"]\n";
    let gws = [
        Gateway::start_with_server(&body, trusted),
        Gateway::start_with_server(&body, trusted),
    ];
    let from = |gw: &Gateway, ip: &str| get(gw.addr, "/x", &[("x-forwarded-for", ip)]).status;
    for gw in &gws {
        assert_eq!(from(gw, "192.0.2.44"), 200);
    }
    redis.cmd(&[
        "ZADD",
        "portico:ip:deny",
        "+inf",
        "192.0.2.44",
        "+inf",
        "2001:db8::/64",
    ]);
    redis.cmd(&["ZADD", "portico:ip:deny", "+inf", "not-an-address"]);
    let added = Instant::now();
    for gw in &gws {
        wait_until(
            Duration::from_millis(1500),
            "the deny set to arrive",
            || from(gw, "192.0.2.44") == 403,
        );
        assert_eq!(from(gw, "2001:db8::99"), 403);
        assert_eq!(from(gw, "192.0.2.45"), 200);
    }
    let took = added.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(gws[0].metric("portico_ip_deny_entries"), 3.0);
    // A block that lapses by itself.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1000;
    redis.cmd(&["ZADD", "portico:ip:deny", &soon.to_string(), "192.0.2.50"]);
    wait_until(Duration::from_millis(1500), "the timed block", || {
        from(&gws[0], "192.0.2.50") == 403
    });
    wait_until(Duration::from_secs(3), "the block to lapse", || {
        from(&gws[0], "192.0.2.50") == 200
    });
    redis.kill();
    std::thread::sleep(Duration::from_millis(800));
    for gw in &gws {
        assert_eq!(from(gw, "192.0.2.44"), 403, "the last good set stays");
        assert_eq!(
            from(gw, "192.0.2.45"),
            200,
            "and the rest still gets through"
        );
    }
    assert!(gws[0].metric("portico_ip_deny_sync_failures_total") >= 1.0);
}

fn cors_gateway(echo: &EchoServer) -> Gateway {
    Gateway::start(&format!(
        r#"cors:
  web: {{origins: ["https://app.example.com", "https://*.example.com"], methods: [GET, POST, PUT], headers: [authorization, content-type], expose: [x-request-id], credentials: true, max_age: 10m}}
  strict: {{origins: ["https://app.example.com"], on_disallowed: reject}}
rate_limits:
  once: {{key: route, limit: 1, per: 1m}}
routes:
  - {{name: app, match: {{path_prefix: /app}}, service: web, cors: web, rate_limits: [once]}}
  - {{name: strict, match: {{path_prefix: /strict}}, service: web, cors: strict}}
services:
  web: {{instances: ["{}"]}}
"#,
        echo.addr
    ))
}

#[test]
fn preflights_are_answered_before_rate_limits_and_never_reach_the_upstream() {
    let [echo] = echoes(["a"]);
    let gw = cors_gateway(&echo);
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "PUT"),
        (
            "access-control-request-headers",
            "Authorization, Content-Type",
        ),
    ];
    for _ in 0..3 {
        let r = request(gw.addr, "OPTIONS", "/app/orders", &preflight, "");
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("GET, POST, PUT")
        );
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("authorization, content-type")
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(r.header("vary").unwrap().contains("Origin"));
    }
    assert_eq!(echo.requests(), 0, "no preflight went upstream");
    let origin = [("origin", "https://shop.example.com")];
    let r = get(gw.addr, "/app/orders", &origin);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.com"),
        "a credentialed grant echoes the origin, never *"
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(gw.addr, "/app/orders", &origin);
    assert_eq!(r.status, 429, "the rule still holds for real requests");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.com"),
        "a script can read the refusal"
    );
    let r = request(gw.addr, "OPTIONS", "/app/orders", &preflight, "");
    assert_eq!(r.status, 204, "a preflight is not rate limited");
    assert_eq!(
        gw.metric(r#"portico_http_gateway_responses_total{reason="cors_preflight",route="app"}"#),
        4.0
    );
}

#[test]
fn disallowed_origins_get_no_grant_or_a_403_under_reject() {
    let [echo] = echoes(["a"]);
    let gw = cors_gateway(&echo);
    let evil = [("origin", "https://evil.com")];
    let r = get(gw.addr, "/app/x", &evil);
    assert_eq!(r.status, 200, "pass: the request proceeds");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(gw.addr, "/strict/x", &evil);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    let bad_method = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "DELETE"),
    ];
    let r = request(gw.addr, "OPTIONS", "/app/x", &bad_method, "");
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    let r = request(gw.addr, "OPTIONS", "/strict/x", &bad_method, "");
    assert_eq!(r.status, 403);
    let r = get(gw.addr, "/strict/x", &[]);
    assert_eq!(r.status, 200, "no Origin: not a CORS request");
    assert!(r.header("access-control-allow-origin").is_none());
}

fn concurrency_gateway(echo: &EchoServer, per: &str) -> Gateway {
    Gateway::start(&format!(
        "routes:\n  - {{name: slow, service: web, concurrency: {{max: 3, per: \"{per}\"}}}}\nservices:\n  web: {{instances: [\"{}\"], read_timeout: 30s}}\n",
        echo.addr
    ))
}

/// Sends a request and returns without reading the answer; the socket stays open.
fn start_request(addr: std::net::SocketAddr, path: &str, headers: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    s
}

#[test]
fn a_concurrency_limit_refuses_the_next_request_and_gives_slots_back_however_requests_end() {
    let [echo] = echoes(["a"]);
    let gw = concurrency_gateway(&echo, "route");
    let gauge = r#"portico_concurrency_in_flight{route="slow"}"#;
    let held: Vec<_> = (0..3)
        .map(|_| start_request(gw.addr, "/delay/1500", ""))
        .collect();
    wait_until(Duration::from_secs(5), "three requests upstream", || {
        echo.requests_in_flight() == 3
    });
    assert_eq!(gw.metric(gauge), 3.0);
    let r = gw.get("/fast");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    for mut s in held {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    wait_until(Duration::from_secs(2), "the slots to be given back", || {
        gw.metric(gauge) == 0.0
    });
    assert_eq!(gw.get("/fast").status, 200, "admitted again");
    // Clients that give up: their slots come back too.
    let aborted: Vec<_> = (0..3)
        .map(|_| start_request(gw.addr, "/delay/1000", ""))
        .collect();
    wait_until(Duration::from_secs(5), "three more upstream", || {
        gw.metric(gauge) == 3.0
    });
    drop(aborted);
    wait_until(Duration::from_secs(5), "aborted requests to leave", || {
        gw.metric(gauge) == 0.0
    });
    assert_eq!(gw.get("/fast").status, 200);
    assert_eq!(
        gw.metric(
            r#"portico_policy_refusals_total{mode="enforce",policy="concurrency",route="slow"}"#
        ),
        1.0
    );
}

#[test]
fn a_limit_per_header_counts_each_caller_apart() {
    let [echo] = echoes(["a"]);
    let gw = concurrency_gateway(&echo, "header:x-tenant");
    let held: Vec<_> = (0..3)
        .map(|_| start_request(gw.addr, "/delay/1500", "x-tenant: acme\r\n"))
        .collect();
    wait_until(Duration::from_secs(5), "acme's requests upstream", || {
        echo.requests_in_flight() == 3
    });
    let acme = get(gw.addr, "/fast", &[("x-tenant", "acme")]);
    assert_eq!(acme.status, 503);
    let globex = get(gw.addr, "/fast", &[("x-tenant", "globex")]);
    assert_eq!(globex.status, 200, "another tenant has its own slots");
    drop(held);
}

#[test]
fn a_full_instance_is_skipped_and_all_full_is_503_overloaded() {
    let [a, b] = echoes(["a", "b"]);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: api, service: web}}\nservices:\n  web:\n    instances: [\"{}\", \"{}\"]\n    max_connections_per_instance: 1\n    read_timeout: 30s\n",
        a.addr, b.addr
    ));
    let first = start_request(gw.addr, "/delay/1500", "");
    wait_until(Duration::from_secs(5), "one slow request upstream", || {
        a.requests_in_flight() + b.requests_in_flight() == 1
    });
    let (busy, free) = if a.requests_in_flight() == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    for _ in 0..6 {
        let r = gw.get("/fast");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.instance().as_deref(), Some(free), "{busy} is full");
    }
    let second = start_request(gw.addr, "/delay/1500", "");
    wait_until(Duration::from_secs(5), "both instances busy", || {
        a.requests_in_flight() + b.requests_in_flight() == 2
    });
    let r = gw.get("/fast");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(first);
    drop(second);
    wait_until(Duration::from_secs(5), "the slow requests to end", || {
        a.requests_in_flight() + b.requests_in_flight() == 0
    });
    wait_until(Duration::from_secs(3), "room again", || {
        gw.get("/fast").status == 200
    });
}
