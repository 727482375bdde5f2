//! `auth.NAME` compiled ([`AuthSpec`]: pure, every problem located) and made live
//! ([`Mechanism`]: with its key source, caches and caller), once per snapshot and shared by
//! every route naming the policy.

use super::api_key::ApiKey;
use super::basic::Basic;
use super::forward::{Asked, ForwardAuth, ForwardSpec};
use super::jwks::{Key, KeySources, Keys};
use super::jwt::{is_hmac, Jwt, JwtSpec, KeyStore};
use super::verdicts::Verdict;
use super::Consumers;
use crate::config::{AuthConfig, AuthKind, Problems};
use crate::http_call::{Caller, Endpoint};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::Arc;
use std::time::Duration;

/// Shortest HS secret accepted (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET: usize = 32;

/// A compiled authentication policy.
pub enum AuthSpec {
    ApiKey {
        header: Option<HeaderName>,
        query: Option<String>,
        hide: bool,
    },
    Jwt {
        spec: Arc<JwtSpec>,
        keys: JwtKeys,
        hide: bool,
    },
    Basic {
        realm: String,
        hide: bool,
    },
    Forward(Arc<ForwardSpec>),
}

/// Where a JWT policy's keys come from.
pub enum JwtKeys {
    Fixed(Arc<Keys>),
    Url {
        endpoint: Endpoint,
        refresh: Duration,
        min_refresh: Duration,
    },
}

/// A live mechanism.
pub enum Mechanism {
    ApiKey(ApiKey),
    Jwt(Jwt),
    Basic(Basic),
    Forward(ForwardAuth),
}

impl Mechanism {
    /// What the mechanism finds in a request.
    pub async fn authenticate(&self, asked: &Asked<'_>) -> Verdict {
        match self {
            Mechanism::ApiKey(m) => m.authenticate(asked.headers, asked.uri),
            Mechanism::Jwt(m) => m.authenticate(asked.headers),
            Mechanism::Basic(m) => m.authenticate(asked.headers).await,
            Mechanism::Forward(m) => m.authenticate(asked).await,
        }
    }

    /// Whether requests go on when this mechanism cannot decide.
    pub fn allows_on_error(&self) -> bool {
        matches!(self, Mechanism::Forward(f) if f.allows_on_error())
    }
}

/// What is shared by the live mechanisms of a snapshot.
pub struct Live<'a> {
    pub consumers: &'a Consumers,
    pub key_sources: &'a KeySources,
    pub caller: &'a Arc<Caller>,
}

impl AuthSpec {
    /// Compiles `auth.NAME`.
    pub fn compile(name: &str, c: &AuthConfig, problems: &mut Problems) -> Self {
        let at = format!("auth.{name}");
        if !crate::config::is_label_safe(name) {
            problems.push(&at, "auth policy names must use only [A-Za-z0-9_.-]");
        }
        check_fields(c, &at, problems);
        let hide = !c.hide_credentials.unwrap_or(false);
        match c.kind {
            AuthKind::ApiKey => {
                let header = match (&c.header, &c.query) {
                    (None, None) => Some(HeaderName::from_static("x-api-key")),
                    (h, _) => h
                        .as_ref()
                        .and_then(|h| header_name(h, &at, "header", problems)),
                };
                if c.query.as_deref() == Some("") {
                    problems.push(format!("{at}.query"), "must not be empty");
                }
                AuthSpec::ApiKey {
                    header,
                    query: c.query.clone(),
                    hide,
                }
            }
            AuthKind::Basic => AuthSpec::Basic {
                realm: c.realm.clone().unwrap_or_else(|| "portico".into()),
                hide,
            },
            AuthKind::Jwt => compile_jwt(c, &at, hide, problems),
            AuthKind::ForwardAuth => AuthSpec::Forward(Arc::new(compile_forward(c, &at, problems))),
        }
    }

    /// The `WWW-Authenticate` challenge a 401 carries for this policy.
    pub fn challenge(&self) -> Option<HeaderValue> {
        match self {
            AuthSpec::ApiKey { .. } => Some(HeaderValue::from_static("ApiKey")),
            AuthSpec::Jwt { .. } => Some(HeaderValue::from_static("Bearer")),
            AuthSpec::Basic { realm, .. } => {
                let realm = realm.replace(['"', '\\'], "");
                HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")).ok()
            }
            AuthSpec::Forward(_) => None,
        }
    }

    /// Where the policy's credential travels, when it is removed from the upstream request:
    /// headers, and a query parameter.
    pub fn credentials(&self) -> (Vec<HeaderName>, Option<&str>) {
        match self {
            AuthSpec::ApiKey {
                header,
                query,
                hide: true,
            } => (header.iter().cloned().collect(), query.as_deref()),
            AuthSpec::Jwt { hide: true, .. } | AuthSpec::Basic { hide: true, .. } => {
                (vec![http::header::AUTHORIZATION], None)
            }
            _ => (Vec::new(), None),
        }
    }

    /// Headers the policy sets upstream (so a client's copies are removed first).
    pub fn announced_headers(&self) -> Vec<HeaderName> {
        match self {
            AuthSpec::Jwt { spec, .. } => {
                spec.forward_claims.iter().map(|(_, h)| h.clone()).collect()
            }
            AuthSpec::Forward(f) => f.copy_response_headers.clone(),
            _ => Vec::new(),
        }
    }

    /// The live mechanism of the policy `name`.
    pub fn live(&self, name: &str, live: &Live<'_>) -> Mechanism {
        let directory = live.consumers.clone();
        match self {
            AuthSpec::ApiKey { header, query, .. } => {
                Mechanism::ApiKey(ApiKey::new(header.clone(), query.clone(), directory))
            }
            AuthSpec::Basic { .. } => Mechanism::Basic(Basic::new(directory)),
            AuthSpec::Jwt { spec, keys, .. } => {
                let store = match keys {
                    JwtKeys::Fixed(k) => KeyStore::Fixed(k.clone()),
                    JwtKeys::Url {
                        endpoint,
                        refresh,
                        min_refresh,
                    } => {
                        crate::telemetry::auth::jwks_series(name);
                        KeyStore::Jwks(live.key_sources.source(
                            name,
                            endpoint,
                            *refresh,
                            *min_refresh,
                        ))
                    }
                };
                Mechanism::Jwt(Jwt::new(name, spec.clone(), store, directory))
            }
            AuthSpec::Forward(spec) => {
                Mechanism::Forward(ForwardAuth::new(spec.clone(), live.caller.clone()))
            }
        }
    }
}

/// Fields of another `type` are mistakes, not silently ignored settings.
fn check_fields(c: &AuthConfig, at: &str, problems: &mut Problems) {
    let set = [
        ("header", c.header.is_some(), AuthKind::ApiKey),
        ("query", c.query.is_some(), AuthKind::ApiKey),
        ("jwks_url", c.jwks_url.is_some(), AuthKind::Jwt),
        ("keys", !c.keys.is_empty(), AuthKind::Jwt),
        ("secret", c.secret.is_some(), AuthKind::Jwt),
        ("issuer", c.issuer.is_some(), AuthKind::Jwt),
        ("audiences", !c.audiences.is_empty(), AuthKind::Jwt),
        ("algorithms", !c.algorithms.is_empty(), AuthKind::Jwt),
        ("leeway", c.leeway.is_some(), AuthKind::Jwt),
        ("consumer_claim", c.consumer_claim.is_some(), AuthKind::Jwt),
        (
            "forward_claims",
            !c.forward_claims.is_empty(),
            AuthKind::Jwt,
        ),
        ("jwks_refresh", c.jwks_refresh.is_some(), AuthKind::Jwt),
        (
            "jwks_min_refresh",
            c.jwks_min_refresh.is_some(),
            AuthKind::Jwt,
        ),
        ("realm", c.realm.is_some(), AuthKind::Basic),
        ("url", c.url.is_some(), AuthKind::ForwardAuth),
        ("timeout", c.timeout.is_some(), AuthKind::ForwardAuth),
        ("cache", c.cache.is_some(), AuthKind::ForwardAuth),
        (
            "forward_headers",
            !c.forward_headers.is_empty(),
            AuthKind::ForwardAuth,
        ),
        (
            "copy_response_headers",
            !c.copy_response_headers.is_empty(),
            AuthKind::ForwardAuth,
        ),
        ("on_error", c.on_error.is_some(), AuthKind::ForwardAuth),
    ];
    for (field, present, kind) in set {
        if present && kind != c.kind {
            problems.push(
                format!("{at}.{field}"),
                format!("does not apply to type: {}", kind_name(c.kind)),
            );
        }
    }
    // Forward auth has no credential of its own to hide: the auth service reads them.
    if c.hide_credentials.is_some() && c.kind == AuthKind::ForwardAuth {
        problems.push(
            format!("{at}.hide_credentials"),
            "does not apply to type: forward_auth",
        );
    }
}

fn kind_name(k: AuthKind) -> &'static str {
    match k {
        AuthKind::ApiKey => "api_key",
        AuthKind::Jwt => "jwt",
        AuthKind::Basic => "basic",
        AuthKind::ForwardAuth => "forward_auth",
    }
}

fn header_name(text: &str, at: &str, field: &str, problems: &mut Problems) -> Option<HeaderName> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| {
            problems.push(
                format!("{at}.{field}"),
                format!("{text:?} is not a header name"),
            )
        })
        .ok()
}

fn compile_jwt(c: &AuthConfig, at: &str, hide: bool, problems: &mut Problems) -> AuthSpec {
    let sources = [c.jwks_url.is_some(), !c.keys.is_empty(), c.secret.is_some()];
    if sources.iter().filter(|s| **s).count() != 1 {
        problems.push(
            at,
            "a jwt policy needs exactly one of `jwks_url`, `keys` and `secret`",
        );
    }
    let hmac = c.secret.is_some();
    let algorithms: Vec<Algorithm> = if c.algorithms.is_empty() {
        match hmac {
            true => vec![Algorithm::HS256],
            false => vec![Algorithm::RS256, Algorithm::ES256],
        }
    } else {
        c.algorithms
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let field = format!("{at}.algorithms[{i}]");
                let Ok(alg) = a.parse::<Algorithm>() else {
                    let why = match a.eq_ignore_ascii_case("none") {
                        true => "unsigned tokens (`none`) are never accepted".to_string(),
                        false => format!("unknown algorithm {a:?}"),
                    };
                    problems.push(field, why);
                    return None;
                };
                if is_hmac(alg) != hmac {
                    let why = match hmac {
                        true => "a `secret` verifies only HS256/HS384/HS512",
                        false => "HS algorithms need a `secret`: with public keys they would let a public key be used as an HMAC secret",
                    };
                    problems.push(field, why);
                }
                Some(alg)
            })
            .collect()
    };
    let mut validation = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
    validation.algorithms = algorithms;
    validation.leeway = c.leeway.map_or(30, |d| d.as_secs());
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &c.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    if c.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&c.audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    let forward_claims = c
        .forward_claims
        .iter()
        .filter_map(|(claim, header)| {
            let name = header_name(header, at, &format!("forward_claims.{claim}"), problems)?;
            Some((claim.clone(), name))
        })
        .collect();
    let spec = Arc::new(JwtSpec {
        validation,
        consumer_claim: c.consumer_claim.clone(),
        forward_claims,
    });
    let keys = if let Some(url) = &c.jwks_url {
        let endpoint = Endpoint::parse(url).unwrap_or_else(|e| {
            problems.push(format!("{at}.jwks_url"), e);
            Endpoint::parse("http://invalid/").expect("a valid URL")
        });
        JwtKeys::Url {
            endpoint,
            refresh: c.jwks_refresh.unwrap_or(Duration::from_secs(300)),
            min_refresh: c.jwks_min_refresh.unwrap_or(Duration::from_secs(10)),
        }
    } else {
        JwtKeys::Fixed(Arc::new(fixed_keys(c, at, problems)))
    };
    AuthSpec::Jwt { spec, keys, hide }
}

/// Keys from PEM files or the secret.
fn fixed_keys(c: &AuthConfig, at: &str, problems: &mut Problems) -> Keys {
    let mut keys = Keys::default();
    if let Some(secret) = &c.secret {
        if secret.len() < MIN_SECRET {
            problems.push(
                format!("{at}.secret"),
                format!("needs at least {MIN_SECRET} bytes"),
            );
        }
        let decoding = DecodingKey::from_secret(secret.as_bytes());
        keys.add(
            None,
            Key {
                decoding,
                alg: None,
            },
        );
    }
    for (i, k) in c.keys.iter().enumerate() {
        let field = format!("{at}.keys[{i}].pem");
        let pem = match std::fs::read(&k.pem) {
            Ok(p) => p,
            Err(e) => {
                problems.push(field, format!("cannot read {:?}: {e}", k.pem));
                continue;
            }
        };
        let decoding = DecodingKey::from_rsa_pem(&pem)
            .or_else(|_| DecodingKey::from_ec_pem(&pem))
            .or_else(|_| DecodingKey::from_ed_pem(&pem));
        match decoding {
            Ok(decoding) => keys.add(
                k.kid.clone(),
                Key {
                    decoding,
                    alg: None,
                },
            ),
            Err(_) => problems.push(field, "not an RSA, EC or Ed25519 public key in PEM"),
        }
    }
    keys
}

fn compile_forward(c: &AuthConfig, at: &str, problems: &mut Problems) -> ForwardSpec {
    let endpoint = match c.url.as_deref().map(Endpoint::parse) {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            problems.push(format!("{at}.url"), e);
            Endpoint::parse("http://invalid/").expect("a valid URL")
        }
        None => {
            problems.push(format!("{at}.url"), "a forward_auth policy needs a `url`");
            Endpoint::parse("http://invalid/").expect("a valid URL")
        }
    };
    let names = |list: &[String], field: &str, problems: &mut Problems| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| header_name(h, at, &format!("{field}[{i}]"), problems))
            .collect()
    };
    let forward_headers = match c.forward_headers.is_empty() {
        true => vec![http::header::AUTHORIZATION, http::header::COOKIE],
        false => names(&c.forward_headers, "forward_headers", problems),
    };
    let timeout = c.timeout.unwrap_or(Duration::from_millis(500));
    if timeout.is_zero() {
        problems.push(format!("{at}.timeout"), "must be greater than zero");
    }
    ForwardSpec {
        endpoint,
        timeout,
        cache: c.cache.filter(|d| !d.is_zero()),
        forward_headers,
        copy_response_headers: names(&c.copy_response_headers, "copy_response_headers", problems),
        on_error: c.on_error.unwrap_or_default(),
    }
}
