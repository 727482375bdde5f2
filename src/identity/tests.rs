use super::jwks::{Key, Keys};
use super::jwt::{Jwt, KeyStore};
use super::spec::{AuthSpec, JwtKeys};
use super::verdicts::Verdict;
use super::*;
use crate::config::AuthConfig;
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

fn consumers(yaml: &str) -> (Directory, Problems) {
    let map = serde_yaml::from_str(yaml).unwrap();
    let mut problems = Problems::default();
    (Directory::compile(&map, &mut problems), problems)
}

#[test]
fn keys_find_their_consumer_and_duplicates_are_refused() {
    let (dir, problems) = consumers(
        "{acme: {groups: [gold], api_keys: [acme-key-0123456789]}, \
          beta: {api_keys: [beta-key-0123456789]}}",
    );
    assert!(problems.is_empty(), "{problems:?}");
    let found = dir.find_key(&digest(b"acme-key-0123456789")).unwrap();
    assert_eq!(
        (found.name.as_str(), &found.groups[..]),
        ("acme", &["gold".to_string()][..])
    );
    assert!(dir.find_key(&digest(b"acme-key-012345678")).is_none());
    let (_, problems) = consumers(
        "{a: {api_keys: [shared-key-0123456789]}, b: {api_keys: [shared-key-0123456789]}}",
    );
    let text = format!("{problems:?}");
    assert!(text.contains("consumers.b.api_keys[0]"), "{text}");
    let (_, problems) = consumers("{\"bad name\": {groups: [\"x y\"]}}");
    assert_eq!(problems.iter().count(), 2);
}

/// A P-256 key pair: the signing key and the public key for verification.
fn es256() -> (EncodingKey, DecodingKey) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    (
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        DecodingKey::from_ec_der(&public),
    )
}

fn jwt_policy(yaml: &str, keys: Keys) -> Jwt {
    let config: AuthConfig = serde_yaml::from_str(yaml).unwrap();
    let mut problems = Problems::default();
    let AuthSpec::Jwt { spec, .. } = AuthSpec::compile("idp", &config, &mut problems) else {
        panic!("a jwt policy")
    };
    assert!(problems.is_empty(), "{problems:?}");
    let (dir, _) = consumers("{acme: {groups: [gold]}}");
    let all = Consumers::new(Arc::new(dir), Arc::default());
    Jwt::new("idp", spec, KeyStore::Fixed(Arc::new(keys)), all)
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[test]
fn tokens_are_checked_for_signature_time_issuer_and_audience() {
    let (sign, verify) = es256();
    let mut keys = Keys::default();
    keys.add(
        Some("k1".into()),
        Key {
            decoding: verify,
            alg: None,
        },
    );
    let jwt = jwt_policy(
        "{type: jwt, jwks_url: 'http://127.0.0.1:1/', issuer: https://idp/, audiences: [orders], \
          algorithms: [ES256], consumer_claim: sub, forward_claims: {tenant: x-tenant}}",
        keys,
    );
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = |claims: serde_json::Value| encode(&header, &claims, &sign).unwrap();
    let good = json!({"sub": "acme", "iss": "https://idp/", "aud": "orders", "exp": now() + 600, "tenant": "t1"});
    match jwt.authenticate(&bearer(&token(good.clone()))) {
        Verdict::Admit(id) => {
            assert_eq!(id.consumer_name(), Some("acme"));
            assert_eq!(id.consumer.unwrap().groups, ["gold"]);
            assert_eq!(id.headers[0].1, "t1");
        }
        other => panic!("admitted, not {}", other.result()),
    }
    let mut claims = good.clone();
    claims["exp"] = json!(now() - 3600);
    assert_eq!(
        jwt.authenticate(&bearer(&token(claims))).result(),
        "expired"
    );
    for (field, value) in [
        ("iss", json!("https://evil/")),
        ("aud", json!("other")),
        ("nbf", json!(now() + 3600)),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        assert_eq!(
            jwt.authenticate(&bearer(&token(claims))).result(),
            "invalid",
            "{field}"
        );
    }
    let mut claims = good.clone();
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        jwt.authenticate(&bearer(&token(claims))).result(),
        "invalid",
        "aud is required"
    );
    // Another key, the same kid: the signature does not verify.
    let (other, _) = es256();
    let forged = encode(&header, &good, &other).unwrap();
    assert_eq!(jwt.authenticate(&bearer(&forged)).result(), "invalid");
    // `alg: none`: a header and claims with an empty signature.
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"})),
        b64(good.clone())
    );
    assert_eq!(jwt.authenticate(&bearer(&none)).result(), "invalid");
    assert_eq!(
        jwt.authenticate(&http::HeaderMap::new()).result(),
        "missing"
    );
    assert_eq!(jwt.authenticate(&bearer("not-a-jwt")).result(), "invalid");
}

#[test]
fn a_verified_token_is_served_from_the_cache() {
    let secret = "0123456789abcdef0123456789abcdef";
    let mut keys = Keys::default();
    keys.add(
        None,
        Key {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            alg: None,
        },
    );
    let jwt = jwt_policy(&format!("{{type: jwt, secret: {secret}}}"), keys);
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 600}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let hits = || {
        crate::telemetry::auth::TOKEN_CACHE
            .with_label_values(&["idp", "hit"])
            .get()
    };
    let before = hits();
    for _ in 0..3 {
        let Verdict::Admit(id) = jwt.authenticate(&bearer(&token)) else {
            panic!("admitted")
        };
        assert!(id.consumer.is_none(), "no consumer claim: anonymous");
    }
    assert!(hits() >= before + 2, "the second and third lookups hit");
}

#[test]
fn jwt_policies_refuse_unsafe_algorithm_settings() {
    let problems_of = |yaml: &str| {
        let config: AuthConfig = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Problems::default();
        let spec = AuthSpec::compile("idp", &config, &mut problems);
        (format!("{problems:?}"), spec)
    };
    let (p, _) = problems_of("{type: jwt, jwks_url: 'http://x/', algorithms: [none]}");
    assert!(p.contains("never accepted"), "{p}");
    let (p, _) = problems_of("{type: jwt, jwks_url: 'http://x/', algorithms: [HS256]}");
    assert!(p.contains("need a `secret`"), "{p}");
    let (p, _) =
        problems_of("{type: jwt, secret: '0123456789abcdef0123456789abcdef', algorithms: [RS256]}");
    assert!(p.contains("verifies only HS"), "{p}");
    let (p, _) = problems_of("{type: jwt, secret: short}");
    assert!(p.contains("at least 32 bytes"), "{p}");
    let (p, _) = problems_of("{type: jwt}");
    assert!(p.contains("exactly one of"), "{p}");
    let (p, _) = problems_of("{type: api_key, realm: x, url: 'http://a/'}");
    assert!(
        p.contains("auth.idp.realm") && p.contains("auth.idp.url"),
        "{p}"
    );
    let (p, spec) = problems_of("{type: jwt, jwks_url: 'http://127.0.0.1:9/keys'}");
    assert_eq!(p, "Problems([])");
    assert!(matches!(
        spec,
        AuthSpec::Jwt {
            keys: JwtKeys::Url { .. },
            ..
        }
    ));
}
