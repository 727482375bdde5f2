//! Edge policies as written: named CORS and IP-rule policies, and the per-route settings that
//! use them or stand alone (concurrency, body limit, redirect, static response, compression).
//! What they mean is compiled by the `policy` modules.

use super::units::{byte_size, duration, opt_duration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A named CORS policy (`cors.NAME`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), wildcard subdomains
    /// (`https://*.example.com`), or `*` (any origin; not with `credentials`).
    pub origins: Vec<String>,
    /// Methods a preflight may ask for; empty = GET, HEAD, POST.
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive).
    pub headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose: Vec<String>,
    /// Allow cookies and authorization (`Access-Control-Allow-Credentials: true`).
    pub credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "opt_duration")]
    pub max_age: Option<Duration>,
    /// What a request from an origin not listed gets: `pass` (no CORS headers; the browser
    /// blocks the script) or `reject` (403 `forbidden`).
    pub on_disallowed: OnDisallowed,
    /// Count refusals without enforcing them.
    pub shadow: bool,
}

/// What a request from a disallowed origin gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDisallowed {
    #[default]
    Pass,
    Reject,
}

/// A named IP policy (`ip_rules.NAME`), applied to the client IP after trusted proxies.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IpRuleConfig {
    /// When present, only these networks may use the route (CIDR or single addresses).
    pub allow: Vec<String>,
    /// These networks may not (checked after `allow`).
    pub deny: Vec<String>,
    /// Also refuse the addresses in the Redis deny set (`{prefix}ip:deny`).
    pub deny_from_redis: bool,
    /// Count refusals without enforcing them.
    pub shadow: bool,
}

/// The Redis deny set shared by gateways (`ip_deny` section).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpDenyConfig {
    /// How often the set is read again (full resync; pub/sub makes changes arrive sooner).
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

impl Default for IpDenyConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// `routes[].concurrency`: requests of the route in flight at once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    pub max: u32,
    /// `route` (default), `client_ip` or `header:NAME`.
    #[serde(default = "per_route")]
    pub per: String,
    #[serde(default)]
    pub shadow: bool,
}

fn per_route() -> String {
    "route".into()
}

/// `routes[].redirect`: the gateway answers with a redirect; no service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Target; `$path`, `$query`, `$host` and, with `regex`, `$1`.. / `${name}` are replaced.
    pub to: String,
    /// 301, 302, 307 or 308.
    #[serde(default = "found")]
    pub status: u16,
    /// Matched against the request path; its captures are available in `to`.
    #[serde(default)]
    pub regex: Option<String>,
}

fn found() -> u16 {
    302
}

/// `routes[].respond`: the gateway answers with a fixed response; no service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

/// `routes[].compress`: compress upstream responses for clients that accept it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressConfig {
    /// Media types (`text/*`, `application/json`); the response's `Content-Type` must match.
    pub types: Vec<String>,
    /// Responses declaring a smaller `Content-Length` are sent as they are.
    #[serde(with = "byte_size")]
    pub min_size: u64,
    /// In order of preference on equal client preference: `br`, `zstd`, `gzip`.
    pub algorithms: Vec<String>,
    /// 1 (fast) to 9 (small) for gzip and zstd; brotli uses it too (1..=11 accepted).
    pub level: u32,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            types: vec![
                "text/*".into(),
                "application/json".into(),
                "application/javascript".into(),
                "application/xml".into(),
                "image/svg+xml".into(),
            ],
            min_size: 1024,
            algorithms: vec!["br".into(), "zstd".into(), "gzip".into()],
            level: 5,
        }
    }
}
