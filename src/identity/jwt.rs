//! Bearer JWTs, verified with the `jsonwebtoken` crate (9.x: the ring-backed line, so the
//! gateway carries one crypto library with rustls; it refuses a key of another family than the
//! token's `alg`, which closes the RS256-key-as-HS256-secret confusion, and has no `none`
//! algorithm at all). Portico adds what the crate leaves to its caller: which algorithms a
//! policy accepts (HS only with a secret, never HS with public keys), `iss` and `aud` made
//! required when configured, key selection by `kid`, and a bounded cache of verified tokens
//! so a hot token costs a SHA-256 and a lookup instead of a signature check.

use super::basic::scheme_param;
use super::jwks::{KeySource, Keys};
use super::verdicts::{Verdict, VerifiedCache};
use super::{Consumer, Consumers, Identity};
use crate::telemetry::auth as metrics;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Tokens kept verified at once, per policy.
const CACHE_SIZE: usize = 10_000;
/// Longest a verified token is reused before its signature is checked again (a key removed
/// from the set stops admitting its tokens within this time).
const MAX_CACHED: Duration = Duration::from_secs(300);

/// What a policy's tokens are checked against.
pub enum KeyStore {
    Fixed(Arc<Keys>),
    Jwks(Arc<KeySource>),
}

/// A compiled `type: jwt` policy, without its live key source.
pub struct JwtSpec {
    pub validation: Validation,
    pub consumer_claim: Option<String>,
    pub forward_claims: Vec<(String, HeaderName)>,
}

/// The JWT mechanism of one `auth` policy.
pub struct Jwt {
    policy: String,
    spec: Arc<JwtSpec>,
    keys: KeyStore,
    consumers: Consumers,
    verified: VerifiedCache<(Identity, u64)>,
}

impl Jwt {
    /// `spec` checked against `keys`; consumers named by the claim come from `consumers`.
    pub fn new(policy: &str, spec: Arc<JwtSpec>, keys: KeyStore, consumers: Consumers) -> Self {
        metrics::token_cache_series(policy);
        Self {
            policy: policy.to_string(),
            spec,
            keys,
            consumers,
            verified: VerifiedCache::new(CACHE_SIZE),
        }
    }

    /// The identity a `Bearer` token proves.
    pub fn authenticate(&self, headers: &HeaderMap) -> Verdict {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| scheme_param(v.as_bytes(), b"bearer"))
        else {
            return Verdict::Missing;
        };
        let key = VerifiedCache::<(Identity, u64)>::key_of(token);
        let now = unix_now();
        if let Some((identity, exp)) = self.verified.get(&key) {
            if exp + self.spec.validation.leeway > now {
                metrics::token_cache(&self.policy, true);
                return Verdict::Admit(identity);
            }
        }
        metrics::token_cache(&self.policy, false);
        let Ok(token) = std::str::from_utf8(token) else {
            return Verdict::Invalid;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verdict::Invalid;
        };
        if !self.spec.validation.algorithms.contains(&header.alg) {
            return Verdict::Invalid;
        }
        let keys = match &self.keys {
            KeyStore::Fixed(k) => k.clone(),
            KeyStore::Jwks(source) => match source.keys() {
                Some(k) => k,
                None => {
                    source.want_refresh();
                    return Verdict::Unavailable;
                }
            },
        };
        // A `kid` the set lacks may be a rotation the provider has published since the last
        // read: ask for one (rate-limited by the source), and try the keys without a `kid`.
        if let (Some(kid), KeyStore::Jwks(source)) = (header.kid.as_deref(), &self.keys) {
            if !keys.has_kid(kid) {
                source.want_refresh();
            }
        }
        let candidates = keys.candidates(header.kid.as_deref());
        let mut verdict = Verdict::Invalid;
        for k in candidates
            .iter()
            .filter(|k| k.alg.is_none_or(|a| a == header.alg))
        {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &k.decoding,
                &self.spec.validation,
            ) {
                Ok(data) => return self.admit(data.claims, key, now),
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    verdict = Verdict::Expired;
                }
                Err(_) => {}
            }
        }
        verdict
    }

    fn admit(&self, claims: Map<String, Value>, key: super::Digest, now: u64) -> Verdict {
        let consumer = self
            .spec
            .consumer_claim
            .as_deref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str)
            .and_then(|name| match self.consumers.find(name) {
                Some(known) => Some(known),
                None => Consumer::new(name, Vec::new()).map(Arc::new),
            });
        let headers: Vec<(HeaderName, HeaderValue)> = self
            .spec
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    Value::Null | Value::Object(_) => return None,
                    other => other.to_string(),
                };
                Some((header.clone(), HeaderValue::from_str(&text).ok()?))
            })
            .collect();
        let identity = Identity {
            consumer,
            headers: headers.into(),
        };
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            let left = Duration::from_secs((exp + self.spec.validation.leeway).saturating_sub(now));
            self.verified
                .put(key, (identity.clone(), exp), left.min(MAX_CACHED));
        }
        Verdict::Admit(identity)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `alg` is an HMAC algorithm (verified with a shared secret).
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
