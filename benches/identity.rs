//! Micro-benchmarks of authentication, each beside its baseline in the same run: an API-key
//! lookup (SHA-256 of the presented key, a map lookup, a constant-time compare) against a
//! plain `HashMap<String>` lookup; a JWT served from the verified-token cache against the
//! signature check a cache miss pays (ES256, RS256 when `openssl` is installed, HS256).
//!
//! `cargo bench --bench identity`

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portico::config::{AuthConfig, Problems};
use portico::identity::api_key::ApiKey;
use portico::identity::jwks::{Key, Keys};
use portico::identity::jwt::{Jwt, KeyStore};
use portico::identity::spec::AuthSpec;
use portico::identity::verdicts::Verdict;
use portico::identity::{Consumers, Directory};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

fn api_keys(c: &mut Criterion) {
    let mut yaml = String::from("{");
    for i in 0..10_000 {
        yaml.push_str(&format!("c{i}: {{api_keys: [consumer-key-{i:010}]}},"));
    }
    yaml.push('}');
    let consumers = serde_yaml::from_str(&yaml).unwrap();
    let mut problems = Problems::default();
    let directory = Arc::new(Directory::compile(&consumers, &mut problems));
    assert!(problems.is_empty());
    let mechanism = ApiKey::new(
        Some(http::HeaderName::from_static("x-api-key")),
        None,
        Consumers::new(directory, Arc::default()),
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("x-api-key", "consumer-key-0000004242".parse().unwrap());
    let uri = http::Uri::from_static("/");
    let plain: HashMap<String, usize> = (0..10_000)
        .map(|i| (format!("consumer-key-{i:010}"), i))
        .collect();
    let mut g = c.benchmark_group("api_key_10k_consumers");
    g.bench_function("digest_lookup", |b| {
        b.iter(|| {
            let Verdict::Admit(id) = mechanism.authenticate(black_box(&headers), &uri) else {
                panic!("admitted")
            };
            black_box(id)
        })
    });
    // The baseline: a plain-text map, what a gateway keeping keys in the clear would pay.
    g.bench_function("plain_hashmap", |b| {
        b.iter(|| {
            let key = headers.get("x-api-key").unwrap().to_str().unwrap();
            black_box(plain.get(black_box(key)))
        })
    });
    g.finish();
}

fn es256() -> (EncodingKey, DecodingKey) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    (
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        DecodingKey::from_ec_der(pair.public_key().as_ref()),
    )
}

/// An RSA-2048 pair from the `openssl` command, when it is installed.
fn rs256() -> Option<(EncodingKey, DecodingKey)> {
    let dir = tempfile::tempdir().ok()?;
    let private = dir.path().join("k.pem");
    let public = dir.path().join("p.pem");
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    run(&["genrsa", "-out", private.to_str()?, "2048"])?;
    run(&[
        "rsa",
        "-in",
        private.to_str()?,
        "-pubout",
        "-out",
        public.to_str()?,
    ])?;
    Some((
        EncodingKey::from_rsa_pem(&std::fs::read(private).ok()?).ok()?,
        DecodingKey::from_rsa_pem(&std::fs::read(public).ok()?).ok()?,
    ))
}

fn jwts(c: &mut Criterion) {
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({"sub": "acme", "exp": exp, "aud": "orders", "tenant": "t1"});
    let secret = "0123456789abcdef0123456789abcdef";
    let mut pairs = vec![
        ("ES256", Algorithm::ES256, Some(es256())),
        ("RS256", Algorithm::RS256, rs256()),
        (
            "HS256",
            Algorithm::HS256,
            Some((
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            )),
        ),
    ];
    let mut g = c.benchmark_group("jwt");
    for (name, alg, pair) in pairs.drain(..) {
        let Some((sign, verify)) = pair else {
            eprintln!("{name}: skipped (no openssl)");
            continue;
        };
        let token = encode(&Header::new(alg), &claims, &sign).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_audience(&["orders"]);
        g.bench_function(format!("{name}_signature_check"), |b| {
            b.iter(|| {
                black_box(
                    jsonwebtoken::decode::<serde_json::Value>(
                        black_box(&token),
                        &verify,
                        &validation,
                    )
                    .unwrap(),
                )
            })
        });
        let policy = if alg == Algorithm::HS256 {
            format!("{{type: jwt, secret: {secret}, audiences: [orders], consumer_claim: sub}}")
        } else {
            format!("{{type: jwt, jwks_url: 'http://x/', algorithms: [{name}], audiences: [orders], consumer_claim: sub}}")
        };
        let config: AuthConfig = serde_yaml::from_str(&policy).unwrap();
        let mut problems = Problems::default();
        let AuthSpec::Jwt { spec, .. } = AuthSpec::compile("bench", &config, &mut problems) else {
            unreachable!()
        };
        let mut keys = Keys::default();
        keys.add(
            None,
            Key {
                decoding: verify,
                alg: None,
            },
        );
        let jwt = Jwt::new(
            "bench",
            spec,
            KeyStore::Fixed(Arc::new(keys)),
            Consumers::default(),
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(matches!(jwt.authenticate(&headers), Verdict::Admit(_)));
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| black_box(jwt.authenticate(black_box(&headers))))
        });
    }
    g.finish();
}

criterion_group!(benches, api_keys, jwts);
criterion_main!(benches);
