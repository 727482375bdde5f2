//! Identity through the real binary: consumers with API keys and basic-auth passwords, a
//! forward-auth service the test writes, ACLs and per-consumer limits — as a client, an
//! operator and an attacker (spoofed identity headers, wrong credentials) see them. JWTs are in
//! `identity_jwt.rs`, consumers kept in Redis in `identity_redis.rs`.

mod support;
use base64::Engine;
use std::time::Duration;
use support::scripted::{Scripted, Seen};
use support::*;

const ACME_KEY: &str = "acme-secret-key-0123456789";
const BETA_KEY: &str = "beta-secret-key-0123456789";

fn sha256_hex(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn keys_gateway(echo: &EchoServer, extra: &str) -> Gateway {
    let bcrypt = bcrypt::hash("open sesame", 4).unwrap();
    Gateway::start_with_env(
        &format!(
            r#"consumers:
  acme:
    groups: [gold]
    api_keys: ["${{ACME_KEY}}"]
    basic: {{user: acme, password_hash: "{bcrypt}"}}
  beta:
    groups: [silver]
    api_keys: ["sha256:{beta}"]
auth:
  keys: {{type: api_key, header: x-api-key, query: api_key}}
  users: {{type: basic, realm: shop}}
  open-keys: {{type: api_key, header: x-open-key, hide_credentials: true}}
{extra}
routes:
  - {{name: keys, match: {{path_prefix: /keys}}, service: web, auth: [keys]}}
  - {{name: gold, match: {{path_prefix: /gold}}, service: web, auth: [keys], allow_groups: [gold]}}
  - {{name: basic, match: {{path_prefix: /basic}}, service: web, auth: [users]}}
  - {{name: either, match: {{path_prefix: /either}}, service: web, auth: [keys, users]}}
  - {{name: public, match: {{path_prefix: /public}}, service: web}}
services:
  web: {{instances: ["{addr}"]}}
"#,
            beta = sha256_hex(BETA_KEY),
            addr = echo.addr
        ),
        &[("ACME_KEY", ACME_KEY)],
    )
}

#[test]
fn api_keys_admit_their_consumer_and_never_reach_the_upstream() {
    let [echo] = echoes(["a"]);
    let gw = keys_gateway(&echo, "");
    let missing = gw.get("/keys/x");
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(missing.json()["error"]["code"], "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("ApiKey"));
    let wrong = get(
        gw.addr,
        "/keys/x",
        &[("x-api-key", "acme-secret-key-012345678")],
    );
    assert_eq!(wrong.status, 401, "one character short");

    let before = echo.requests();
    let r = get(
        gw.addr,
        "/keys/x",
        &[
            ("x-api-key", ACME_KEY),
            ("x-consumer-id", "admin"),
            ("x-consumer-groups", "root"),
        ],
    );
    let seen = upstream_headers(&r);
    assert_eq!(
        seen["x-consumer-id"], "acme",
        "the proven consumer, not the spoofed one"
    );
    assert_eq!(seen["x-consumer-groups"], "gold");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key is not forwarded: {seen}"
    );
    assert_eq!(echo.requests(), before + 1, "refusals reached no upstream");

    // A key in the query string: admitted, and removed from the upstream URL.
    let r = gw.get(&format!("/keys/q?a=1&api_key={ACME_KEY}&b=2"));
    assert_eq!(r.json()["path"], "/keys/q?a=1&b=2", "{r:?}");
    let r = gw.get(&format!("/keys/q?api_key={ACME_KEY}"));
    assert_eq!(r.json()["path"], "/keys/q");

    // A digest-only key works the same.
    let seen = upstream_headers(&get(gw.addr, "/keys/x", &[("x-api-key", BETA_KEY)]));
    assert_eq!(seen["x-consumer-id"], "beta");

    // The admin API never shows a key or a password hash.
    let cfg = gw.admin("GET", "/admin/config", &[]).body;
    assert!(!cfg.contains(ACME_KEY) && !cfg.contains("$2b$"), "{cfg}");
    assert!(cfg.contains("<redacted>"));

    // A public route still loses identity headers a client made up.
    let seen = upstream_headers(&get(gw.addr, "/public", &[("x-consumer-id", "admin")]));
    assert!(seen.get("x-consumer-id").is_none(), "{seen}");

    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="keys",result="missing",route="keys"}"#),
        1.0
    );
    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="keys",result="invalid",route="keys"}"#),
        1.0
    );
    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="keys",result="allowed",route="keys"}"#),
        4.0
    );
    assert_eq!(
        gw.metric(r#"portico_http_gateway_responses_total{reason="unauthorized",route="keys"}"#),
        2.0
    );
}

#[test]
fn groups_decide_who_may_use_a_route() {
    let [echo] = echoes(["a"]);
    let gw = keys_gateway(&echo, "");
    assert_eq!(
        get(gw.addr, "/gold", &[("x-api-key", ACME_KEY)]).status,
        200
    );
    let r = get(gw.addr, "/gold", &[("x-api-key", BETA_KEY)]);
    assert_eq!(r.status, 403, "authenticated, not in the group");
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert_eq!(get(gw.addr, "/gold", &[]).status, 401);
    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="keys",result="forbidden",route="gold"}"#),
        1.0
    );
}

#[test]
fn basic_auth_checks_the_password_hash_and_says_which_schemes_it_takes() {
    let [echo] = echoes(["a"]);
    let gw = keys_gateway(&echo, "");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let basic = |cred: &str| format!("Basic {}", b64(cred));
    let ok = get(
        gw.addr,
        "/basic",
        &[("authorization", &basic("acme:open sesame"))],
    );
    let seen = upstream_headers(&ok);
    assert_eq!(seen["x-consumer-id"], "acme");
    assert!(
        seen.get("authorization").is_none(),
        "credentials stay at the edge"
    );
    for cred in ["acme:open sesam", "nobody:open sesame", "acme", ":"] {
        let r = get(gw.addr, "/basic", &[("authorization", &basic(cred))]);
        assert_eq!(r.status, 401, "{cred}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="shop", charset="UTF-8""#)
        );
    }
    let r = get(
        gw.addr,
        "/basic",
        &[("authorization", "Basic !!!not-base64")],
    );
    assert_eq!(r.status, 401);
    // A route taking either mechanism offers both challenges.
    let r = gw.get("/either");
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        challenges,
        ["ApiKey", r#"Basic realm="shop", charset="UTF-8""#]
    );
    let r = get(
        gw.addr,
        "/either",
        &[("authorization", &basic("acme:open sesame"))],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn limits_count_per_consumer_with_more_for_a_group() {
    let [echo] = echoes(["a"]);
    let gw = Gateway::start(&format!(
        r#"consumers:
  acme: {{groups: [gold], api_keys: ["{ACME_KEY}"]}}
  beta: {{groups: [silver], api_keys: ["{BETA_KEY}"]}}
auth:
  keys: {{type: api_key}}
rate_limits:
  per-consumer: {{key: consumer, limit: 2, per: 1m, by_group: {{gold: {{limit: 5}}}}}}
kpis:
  - {{name: api_calls, status: 2xx, by_consumer: true, max_consumers: 1}}
routes:
  - {{name: api, service: web, auth: [keys], rate_limits: [per-consumer], concurrency: {{max: 10, per: consumer}}}}
services:
  web: {{instances: ["{}"]}}
"#,
        echo.addr
    ));
    let admitted = |key: &str| {
        (0..8)
            .map(|_| get(gw.addr, "/", &[("x-api-key", key)]).status)
            .take_while(|s| *s == 200)
            .count()
    };
    assert_eq!(admitted(ACME_KEY), 5, "gold's own limit");
    assert_eq!(
        admitted(BETA_KEY),
        2,
        "the rule's limit, in a bucket of its own"
    );
    let r = get(gw.addr, "/", &[("x-api-key", BETA_KEY)]);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // The KPI counts by consumer, bounded: the second consumer is beyond max_consumers.
    let kpi = |c: &str| {
        gw.metric(&format!(
            r#"portico_business_events_by_consumer_total{{consumer="{c}",kpi="api_calls"}}"#
        ))
    };
    assert_eq!((kpi("acme"), kpi("_other")), (5.0, 2.0));
}

fn auth_service() -> Scripted {
    Scripted::start(|seen: &Seen| {
        let auth = seen.headers.get("authorization").map(String::as_str);
        let h = |k: &str, v: &str| (k.to_string(), v.to_string());
        match auth {
            Some("Bearer good") => (
                200,
                vec![h("x-user-id", "u-1"), h("x-other", "no")],
                String::new(),
            ),
            Some("Bearer slow") => {
                std::thread::sleep(Duration::from_millis(800));
                (200, vec![], String::new())
            }
            Some("Bearer broken") => (500, vec![], "oops".into()),
            _ => (
                401,
                vec![
                    h("www-authenticate", "Bearer realm=\"ext\""),
                    h("content-type", "application/json"),
                ],
                r#"{"reason":"who are you"}"#.into(),
            ),
        }
    })
}

#[test]
fn forward_auth_admits_passes_refusals_through_and_survives_a_dead_service() {
    let [echo] = echoes(["a"]);
    let service = auth_service();
    let url = format!("http://{}/check", service.addr);
    let gw = Gateway::start(&format!(
        r#"auth:
  ext: {{type: forward_auth, url: "{url}", timeout: 200ms, cache: 10s, copy_response_headers: [x-user-id]}}
  lenient: {{type: forward_auth, url: "{url}", timeout: 200ms, on_error: allow}}
routes:
  - {{name: ext, match: {{path_prefix: /ext}}, service: web, auth: [ext]}}
  - {{name: lenient, match: {{path_prefix: /lenient}}, service: web, auth: [lenient]}}
services:
  web: {{instances: ["{}"]}}
"#,
        echo.addr
    ));
    let call = |path: &str, auth: &str| {
        get(
            gw.addr,
            path,
            &[("authorization", auth), ("x-user-id", "spoofed")],
        )
    };
    let calls = service.count();
    for _ in 0..3 {
        let seen = upstream_headers(&call("/ext/orders?x=1", "Bearer good"));
        assert_eq!(seen["x-user-id"], "u-1");
        assert!(
            seen.get("x-other").is_none(),
            "only the listed headers are copied"
        );
    }
    assert_eq!(
        service.count(),
        calls + 1,
        "later requests use the cached verdict"
    );
    let asked = service.seen().last().unwrap().clone();
    assert_eq!(asked.target, "/check");
    assert_eq!(asked.headers["x-forwarded-uri"], "/ext/orders?x=1");
    assert_eq!(asked.headers["x-forwarded-method"], "GET");

    let r = call("/ext", "Bearer bad");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body, r#"{"reason":"who are you"}"#,
        "the service's own answer"
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"ext\""));

    for auth in ["Bearer slow", "Bearer broken"] {
        let r = call("/ext", auth);
        assert_eq!(r.status, 503, "{auth}: {r:?}");
        assert_eq!(r.json()["error"]["code"], "auth_unavailable");
        assert_eq!(
            call("/lenient", auth).status,
            200,
            "{auth}: on_error: allow"
        );
    }
    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="ext",result="error",route="ext"}"#),
        2.0
    );
    assert_eq!(
        gw.metric(r#"portico_http_gateway_responses_total{reason="auth_denied",route="ext"}"#),
        1.0
    );
}
