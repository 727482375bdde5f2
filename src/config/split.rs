//! Traffic splits: a route that sends its requests to several services by weight, by a match
//! that forces a side, and stickily per caller.

use super::units::duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One side of a route's `split`: a service, taken either by `weight` (sharing the requests
/// no `when` entry took) or whenever its `when` matches.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntryConfig {
    pub service: String,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub when: Option<SplitWhenConfig>,
}

/// What forces a request to a side; every listed value must be present exactly.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SplitWhenConfig {
    pub header: BTreeMap<String, String>,
    pub cookie: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
}

/// Keeps a caller on one side of a split: by a cookie Portico sets, by a header the client
/// sends, or by the authenticated consumer. Exactly one of `cookie`, `header`, `consumer`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub consumer: bool,
    /// Lifetime of the cookie (`Max-Age`).
    #[serde(default = "default_sticky_ttl", with = "duration")]
    pub ttl: Duration,
}

fn default_sticky_ttl() -> Duration {
    Duration::from_secs(3600)
}
