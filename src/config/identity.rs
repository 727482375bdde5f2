//! Identity as written: consumers, named authentication policies, and the headers that carry
//! an identity upstream. What they mean is compiled by the `identity` and `policy::auth`
//! modules.

use super::units::{duration, opt_duration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One static consumer (`consumers.NAME`): who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Group names, used by `allow_groups` and rate-limit `by_group`.
    pub groups: Vec<String>,
    /// Plain keys (best from `${ENV}`) or `sha256:HEX` digests of them.
    pub api_keys: Vec<String>,
    pub basic: Option<BasicCredential>,
}

/// A user name and an Argon2id or bcrypt password hash (PHC / modular crypt string).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub user: String,
    pub password_hash: String,
}

/// The mechanism of an `auth` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    ApiKey,
    Jwt,
    Basic,
    ForwardAuth,
}

/// A named authentication policy (`auth.NAME`). One flat shape for every `type`: the compile
/// step says which fields a type takes (a field of another type is a located error).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    #[serde(rename = "type")]
    pub kind: AuthKind,
    /// Keep the credential in the upstream request (default: removed).
    pub hide_credentials: Option<bool>,

    // api_key
    /// Header carrying the key (api_key; default `x-api-key` when `query` is not set either).
    pub header: Option<String>,
    /// Query parameter carrying the key (api_key).
    pub query: Option<String>,

    // jwt
    /// Where the signing keys are published (refreshed in the background).
    pub jwks_url: Option<String>,
    /// Public keys in PEM files (RSA, EC or Ed25519), instead of `jwks_url`.
    pub keys: Vec<KeyFile>,
    /// Shared secret for HS256/384/512, instead of public keys.
    pub secret: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    /// Accepted `alg` values; empty = RS256 and ES256 for public keys, HS256 for a secret.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "opt_duration")]
    pub leeway: Option<Duration>,
    /// Claim naming the consumer; absent = an anonymous, authenticated caller.
    pub consumer_claim: Option<String>,
    /// Claim -> upstream header.
    pub forward_claims: BTreeMap<String, String>,
    /// How often `jwks_url` is read again (an unknown `kid` also triggers a read, at most
    /// every `jwks_min_refresh`).
    #[serde(with = "opt_duration")]
    pub jwks_refresh: Option<Duration>,
    #[serde(with = "opt_duration")]
    pub jwks_min_refresh: Option<Duration>,

    // basic
    pub realm: Option<String>,

    // forward_auth
    pub url: Option<String>,
    #[serde(with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// How long a verdict is reused for the same forwarded headers; absent = not cached.
    #[serde(with = "opt_duration")]
    pub cache: Option<Duration>,
    /// Request headers sent to the auth service (default: `authorization`, `cookie`).
    pub forward_headers: Vec<String>,
    /// Headers of the auth service's 2xx answer copied into the upstream request.
    pub copy_response_headers: Vec<String>,
    /// What the route does when the auth service cannot answer: `deny` (503) or `allow`.
    pub on_error: Option<OnAuthError>,
}

/// A PEM file with one public key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub pem: String,
    /// Selects the key by the token's `kid`; without one the key is tried for any `kid`.
    #[serde(default)]
    pub kid: Option<String>,
}

/// What a forward-auth policy does when its service cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnAuthError {
    #[default]
    Deny,
    Allow,
}

/// `identity`: how an authenticated caller is announced upstream, and how often consumers
/// kept in Redis are checked for changes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Header naming the consumer (set upstream; removed from client requests).
    pub consumer_header: String,
    /// Header listing the consumer's groups, comma-separated.
    pub groups_header: String,
    /// How often the Redis consumers' version is read (a change reads them all).
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            consumer_header: "x-consumer-id".into(),
            groups_header: "x-consumer-groups".into(),
            poll_interval: Duration::from_secs(1),
        }
    }
}
