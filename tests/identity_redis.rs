//! Consumers kept in Redis through the real binary: written by the admin API and by
//! `portico consumer`, picked up by a running gateway without a reload, stored with key
//! digests only, and still authenticating from the last good read while Redis is down.

mod support;
use std::process::Command;
use std::time::Duration;
use support::*;

fn gateway(redis: &RedisServer, echo: &EchoServer) -> Gateway {
    Gateway::start(&format!(
        r#"redis: {{url: "{url}"}}
identity: {{poll_interval: 100ms}}
consumers:
  local: {{groups: [gold], api_keys: ["local-config-key-0123456789"]}}
auth:
  keys: {{type: api_key}}
routes:
  - {{name: gold, match: {{path_prefix: /gold}}, service: web, auth: [keys], allow_groups: [gold]}}
  - {{name: api, service: web, auth: [keys]}}
services:
  web: {{instances: ["{addr}"]}}
"#,
        url = redis.url(),
        addr = echo.addr
    ))
}

fn consumer_of(gw: &Gateway, key: &str) -> Option<String> {
    let r = get(gw.addr, "/", &[("x-api-key", key)]);
    (r.status == 200).then(|| {
        r.json()["headers"]["x-consumer-id"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

fn cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["consumer", "--redis", &redis.url()])
        .args(args)
        .output()
        .expect("run portico consumer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn consumers_written_to_redis_authenticate_on_every_gateway_and_survive_redis_going_away() {
    let mut redis = RedisServer::start();
    let [echo] = echoes(["a"]);
    let gw = gateway(&redis, &echo);
    let key = "acme-redis-key-0123456789";
    assert_eq!(consumer_of(&gw, key), None);

    let r = gw.admin(
        "POST",
        "/admin/consumers/acme",
        &[("content-type", "application/json")],
    );
    assert_eq!(r.status, 400, "no body is not a consumer: {r:?}");
    let body = format!(r#"{{"groups": ["gold"], "api_keys": ["{key}"]}}"#);
    let r = request(gw.admin, "POST", "/admin/consumers/acme", &[], &body);
    assert_eq!(r.status, 200, "{r:?}");
    let stored = format!("{:?}", redis.cmd(&["HGET", "portico:consumers", "acme"]));
    assert!(
        !stored.contains(key) && stored.contains("sha256:"),
        "{stored}"
    );
    assert!(
        gw.eventually(Duration::from_secs(3), || consumer_of(&gw, key).as_deref()
            == Some("acme")),
        "picked up without a reload"
    );
    assert_eq!(
        get(gw.addr, "/gold", &[("x-api-key", key)]).status,
        200,
        "its groups apply"
    );
    let bad = request(
        gw.admin,
        "POST",
        "/admin/consumers/x",
        &[],
        r#"{"api_keys": ["short"]}"#,
    );
    assert_eq!(bad.status, 400, "{bad:?}");

    // The CLI: a consumer with a group, then a generated key.
    cli(
        &redis,
        &[
            "add",
            "beta",
            "--group",
            "silver",
            "--key",
            "beta-redis-key-0123456789",
        ],
    );
    let generated = cli(&redis, &["key", "beta"]).trim().to_string();
    assert_eq!(generated.len(), 43, "{generated}");
    assert!(gw.eventually(Duration::from_secs(3), || {
        consumer_of(&gw, &generated).as_deref() == Some("beta")
    }));
    assert_eq!(
        consumer_of(&gw, "beta-redis-key-0123456789").as_deref(),
        Some("beta")
    );
    assert_eq!(
        get(gw.addr, "/gold", &[("x-api-key", &generated)]).status,
        403
    );
    assert_eq!(gw.metric(r#"portico_consumers{source="redis"}"#), 2.0);

    // A name in the configuration wins over the same name in Redis.
    cli(
        &redis,
        &["add", "local", "--key", "shadowing-key-0123456789"],
    );
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric(r#"portico_consumers{source="redis"}"#) == 3.0
    }));
    assert_eq!(consumer_of(&gw, "shadowing-key-0123456789"), None);
    let listed = gw.admin("GET", "/admin/consumers", &[]).json();
    assert!(
        listed.to_string().contains("\"source\":\"config\""),
        "{listed}"
    );

    // Removal reaches the gateway too.
    cli(&redis, &["remove", "local"]);
    let r = request(gw.admin, "DELETE", "/admin/consumers/beta", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        gw.eventually(Duration::from_secs(3), || consumer_of(&gw, &generated)
            .is_none())
    );

    // Redis goes away: the last good read keeps authenticating.
    redis.kill();
    assert!(
        gw.eventually(Duration::from_secs(5), || {
            gw.metric("portico_consumer_sync_failures_total") >= 2.0
        }),
        "failed reads are counted"
    );
    assert_eq!(consumer_of(&gw, key).as_deref(), Some("acme"));
    assert_eq!(
        consumer_of(&gw, "local-config-key-0123456789").as_deref(),
        Some("local")
    );
    let r = request(gw.admin, "DELETE", "/admin/consumers/acme", &[], "");
    assert_eq!(r.status, 503, "a write without Redis says so: {r:?}");
}
