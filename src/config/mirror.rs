//! Request mirroring: a sampled copy of a route's requests sent to another service off the
//! client's path, optionally compared with the primary's answer.

use super::units::{byte_size, duration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A route's `mirror`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The service the copies go to.
    pub service: String,
    /// Share of the route's requests copied, 0–100 (fractions allowed).
    #[serde(default = "default_percent")]
    pub percent: f64,
    /// Compare the mirror's status with the primary's.
    #[serde(default)]
    pub compare: bool,
    /// Also compare a hash of the response bodies (implies `compare`).
    #[serde(default)]
    pub compare_body: bool,
    /// Bound on one mirrored exchange, from sending to the end of the response body.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Copies in flight at once for this route; more are dropped and counted.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Largest request body copied; a request with a larger body is not mirrored (counted).
    #[serde(default = "default_max_body", with = "byte_size")]
    pub max_body: u64,
    /// `Host` of the copies; unset = the client's, unchanged.
    #[serde(default)]
    pub host: Option<String>,
}

fn default_percent() -> f64 {
    100.0
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_max_in_flight() -> u32 {
    64
}

fn default_max_body() -> u64 {
    64 << 10
}
