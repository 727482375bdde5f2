//! JWTs through the real binary: tokens the test signs, checked against a JWKS endpoint the
//! test serves (and stops, and rotates) or against PEM files — and every forgery an attacker
//! would try (unsigned, wrong audience or issuer, another key, a public key as an HMAC secret).

mod support;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::time::Duration;
use support::scripted::{Scripted, Seen};
use support::*;

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
