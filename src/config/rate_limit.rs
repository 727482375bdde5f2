//! Schema of the `rate_limits` section.

use super::types::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One rate-limit rule: `limit` requests per `per`, plus `burst` at once, per key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `client_ip` (IPv6 grouped by /64), `header:NAME`, `consumer`, `route` or `global`.
    #[serde(default = "default_limit_key")]
    pub key: String,
    #[serde(default)]
    pub on_missing_key: MissingKey,
    pub limit: u64,
    #[serde(default = "default_per", with = "duration")]
    pub per: Duration,
    #[serde(default)]
    pub burst: u64,
    #[serde(default)]
    pub store: LimitStore,
    #[serde(default)]
    pub on_store_error: StoreErrorPolicy,
    /// Compute and count, never refuse.
    #[serde(default)]
    pub shadow: bool,
    /// Send `RateLimit-*` headers for this rule.
    #[serde(default = "super::types::yes")]
    pub headers: bool,
    /// Bound on keys the local store (and the Redis fallback) keeps for this rule.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// For `key: consumer`: other limits for consumers of these groups (the most generous
    /// of the consumer's groups applies).
    #[serde(default)]
    pub by_group: std::collections::BTreeMap<String, GroupLimit>,
}

/// A group's own limit in a `key: consumer` rule; what it leaves out is the rule's.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLimit {
    pub limit: u64,
    #[serde(default, with = "super::types::opt_duration")]
    pub per: Option<Duration>,
    #[serde(default)]
    pub burst: Option<u64>,
}

fn default_limit_key() -> String {
    "client_ip".into()
}
fn default_per() -> Duration {
    Duration::from_secs(1)
}
fn default_max_keys() -> usize {
    100_000
}

/// What a `header:NAME` rule does when the header is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingKey {
    /// Limit by client IP instead.
    #[default]
    ClientIp,
    /// Answer 400.
    Reject,
    /// Do not limit the request.
    Allow,
}

/// Where a rule keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitStore {
    /// In this process.
    #[default]
    Local,
    /// Shared by every replica through Redis.
    Redis,
}

/// What a Redis-stored rule does when Redis fails or is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorPolicy {
    /// Enforce `limit / redis.replicas` locally.
    #[default]
    LocalFallback,
    /// Let the request through.
    Allow,
    /// Refuse with 429.
    Deny,
}
