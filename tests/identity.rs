//! Identity through the real binary: consumers with API keys and basic-auth passwords, JWTs
//! checked against a JWKS endpoint the test serves (and stops, and rotates), a forward-auth
//! service the test writes, ACLs and per-consumer limits — as a client, an operator and an
//! attacker (spoofed identity headers, forged and unsigned tokens, key confusion) see them.

mod support;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::time::Duration;
use support::scripted::{Scripted, Seen};
use support::*;

const ACME_KEY: &str = "acme-secret-key-0123456789";
const BETA_KEY: &str = "beta-secret-key-0123456789";

fn sha256_hex(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers the echo upstream saw.
fn upstream_headers(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["headers"].clone()
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

/// A P-256 signing key and its public JWK with `kid`.
fn es256_key(kid: &str) -> (EncodingKey, serde_json::Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn jwks(keys: &[serde_json::Value]) -> impl Fn(&Seen) -> support::scripted::Answer {
    let body = json!({ "keys": keys }).to_string();
    move |_| {
        let ct = vec![("content-type".to_string(), "application/json".to_string())];
        (200, ct, body.clone())
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, &claims, key).unwrap()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"sub": sub, "iss": "https://idp.test/", "aud": "orders", "exp": now() + 600, "tenant": "t-42", "n": fastrand::u64(..)})
}

fn jwt_gateway(echo: &EchoServer, jwks_addr: std::net::SocketAddr) -> Gateway {
    Gateway::start(&format!(
        r#"consumers:
  acme: {{groups: [gold]}}
auth:
  idp:
    type: jwt
    jwks_url: "http://{jwks_addr}/.well-known/jwks.json"
    issuer: "https://idp.test/"
    audiences: [orders]
    algorithms: [ES256]
    consumer_claim: sub
    forward_claims: {{tenant: x-tenant}}
    jwks_refresh: 1s
    jwks_min_refresh: 200ms
  nowhere:
    type: jwt
    jwks_url: "http://127.0.0.1:{closed}/keys"
routes:
  - {{name: orders, match: {{path_prefix: /orders}}, service: web, auth: [idp], allow_groups: [gold]}}
  - {{name: any, match: {{path_prefix: /any}}, service: web, auth: [idp]}}
  - {{name: nowhere, match: {{path_prefix: /nowhere}}, service: web, auth: [nowhere]}}
services:
  web: {{instances: ["{addr}"]}}
"#,
        closed = free_port(),
        addr = echo.addr
    ))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn jwts_are_verified_against_the_published_keys_and_every_forgery_is_refused() {
    let [echo] = echoes(["a"]);
    let (k1, jwk1) = es256_key("k1");
    let server = Scripted::start(jwks(std::slice::from_ref(&jwk1)));
    let gw = jwt_gateway(&echo, server.addr);
    let call = |path: &str, t: &str| {
        get(
            gw.addr,
            path,
            &[("authorization", &bearer(t)), ("x-tenant", "spoofed")],
        )
    };

    let good = token(&k1, "k1", claims("acme"));
    let mut ok = call("/orders", &good);
    gw.eventually(Duration::from_secs(5), || {
        ok = call("/orders", &good);
        ok.status == 200
    });
    let seen = upstream_headers(&ok);
    assert_eq!(seen["x-consumer-id"], "acme");
    assert_eq!(seen["x-consumer-groups"], "gold");
    assert_eq!(
        seen["x-tenant"], "t-42",
        "the claim, not the client's header"
    );
    assert!(seen.get("authorization").is_none());

    // An unknown subject is authenticated (no groups): the ACL refuses it, a route without
    // one admits it.
    let stranger = token(&k1, "k1", claims("stranger"));
    assert_eq!(call("/orders", &stranger).status, 403);
    assert_eq!(
        upstream_headers(&call("/any", &stranger))["x-consumer-id"],
        "stranger"
    );

    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims("acme");
        f(&mut c);
        token(&k1, "k1", c)
    };
    let refused = [
        ("expired", with(&|c| c["exp"] = json!(now() - 3600))),
        ("wrong audience", with(&|c| c["aud"] = json!("billing"))),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test/")),
        ),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 3600))),
        (
            "another key, same kid",
            token(&es256_key("k1").0, "k1", claims("acme")),
        ),
        (
            "unknown kid",
            token(&es256_key("k9").0, "k9", claims("acme")),
        ),
        ("alg none", unsigned(&claims("acme"))),
        (
            "HS256 with the public key as secret",
            key_confusion(&jwk1, &claims("acme")),
        ),
        ("garbage", "a.b.c".to_string()),
    ];
    for (what, t) in &refused {
        let r = call("/orders", t);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    }
    assert_eq!(
        gw.metric(r#"portico_auth_decisions_total{policy="idp",result="expired",route="orders"}"#),
        1.0
    );
    // The same good token again is a cache hit, not a signature check.
    let hits = gw.metric(r#"portico_auth_token_cache_total{policy="idp",result="hit"}"#);
    assert_eq!(call("/orders", &good).status, 200);
    assert_eq!(
        gw.metric(r#"portico_auth_token_cache_total{policy="idp",result="hit"}"#),
        hits + 1.0
    );
    // A key endpoint never reached: 503, not a 401 blaming the client.
    let r = call("/nowhere", &good);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "auth_unavailable");
}

/// `{"alg":"none"}` with the claims and an empty signature.
fn unsigned(claims: &serde_json::Value) -> String {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1"})),
        b64(claims)
    )
}

/// A token signed HS256 with the public key's JWK text as the HMAC secret.
fn key_confusion(jwk: &serde_json::Value, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let secret = jwk.to_string();
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn the_key_endpoint_going_away_keeps_the_last_keys_and_a_rotation_is_picked_up() {
    let [echo] = echoes(["a"]);
    let (k1, jwk1) = es256_key("k1");
    let mut server = Scripted::start(jwks(std::slice::from_ref(&jwk1)));
    let gw = jwt_gateway(&echo, server.addr);
    let call = |t: &str| get(gw.addr, "/any", &[("authorization", &bearer(t))]).status;
    assert!(gw.eventually(Duration::from_secs(5), || call(&token(
        &k1,
        "k1",
        claims("a")
    )) == 200));

    server.stop();
    let failures = r#"portico_jwks_refreshes_total{policy="idp",result="error"}"#;
    assert!(
        gw.eventually(Duration::from_secs(10), || gw.metric(failures) >= 2.0),
        "refreshes fail and are counted"
    );
    // A token never seen before (not cached) still verifies with the kept keys.
    assert_eq!(call(&token(&k1, "k1", claims("b"))), 200);
    assert_eq!(gw.metric(r#"portico_jwks_keys{policy="idp"}"#), 1.0);

    // The provider comes back with a new key: a token naming it is admitted without restart.
    let (k2, jwk2) = es256_key("k2");
    server.restart(jwks(&[jwk1, jwk2]));
    let rotated = token(&k2, "k2", claims("c"));
    assert!(
        gw.eventually(Duration::from_secs(10), || call(&rotated) == 200),
        "the new kid is fetched"
    );
    assert_eq!(gw.metric(r#"portico_jwks_keys{policy="idp"}"#), 2.0);
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

/// An RSA-2048 key pair made by `openssl`: (private PEM, public PEM).
fn rsa_pems(dir: &std::path::Path) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join("rsa.pem");
    let public = dir.join("rsa.pub.pem");
    let ok = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
    ok(&[
        "rsa",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (std::fs::read(private).unwrap(), public)
}

/// An Ed25519 key pair: the signing key and the public key as a PEM file.
fn ed25519_pem(dir: &std::path::Path) -> (EncodingKey, std::path::PathBuf) {
    use ring::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    // SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix, then the 32-byte key.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
    let path = dir.join("ed.pub.pem");
    std::fs::write(
        &path,
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
    )
    .unwrap();
    (EncodingKey::from_ed_der(pkcs8.as_ref()), path)
}

#[test]
fn pem_keys_verify_rs256_and_eddsa_and_a_public_key_is_never_an_hmac_secret() {
    let [echo] = echoes(["a"]);
    let dir = tempfile::tempdir().unwrap();
    let (rsa_private, rsa_public) = rsa_pems(dir.path());
    let (ed_key, ed_public) = ed25519_pem(dir.path());
    let gw = Gateway::start(&format!(
        r#"auth:
  rsa: {{type: jwt, keys: [{{pem: "{rsa}"}}], algorithms: [RS256, PS256]}}
  ed: {{type: jwt, keys: [{{pem: "{ed}"}}], algorithms: [EdDSA]}}
routes:
  - {{name: rsa, match: {{path_prefix: /rsa}}, service: web, auth: [rsa]}}
  - {{name: ed, match: {{path_prefix: /ed}}, service: web, auth: [ed]}}
services:
  web: {{instances: ["{addr}"]}}
"#,
        rsa = rsa_public.display(),
        ed = ed_public.display(),
        addr = echo.addr
    ));
    let claims = json!({"sub": "x", "exp": now() + 600});
    let sign = |alg: Algorithm, key: &EncodingKey| encode(&Header::new(alg), &claims, key).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let call = |path: &str, t: &str| get(gw.addr, path, &[("authorization", &bearer(t))]).status;
    assert_eq!(call("/rsa", &sign(Algorithm::RS256, &rsa)), 200);
    assert_eq!(call("/rsa", &sign(Algorithm::PS256, &rsa)), 200);
    assert_eq!(call("/ed", &sign(Algorithm::EdDSA, &ed_key)), 200);
    // The classic confusion: HS256 with the public key's PEM text as the HMAC secret.
    let pem = std::fs::read(&rsa_public).unwrap();
    assert_eq!(
        call(
            "/rsa",
            &sign(Algorithm::HS256, &EncodingKey::from_secret(&pem))
        ),
        401
    );
    assert_eq!(
        call("/ed", &sign(Algorithm::RS256, &rsa)),
        401,
        "another policy's key"
    );
    assert_eq!(
        call("/rsa", &sign(Algorithm::EdDSA, &ed_key)),
        401,
        "not an accepted algorithm"
    );
}
