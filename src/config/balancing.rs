//! How a service spreads requests over its instances: the selection algorithm and the zone
//! preference.

use serde::{Deserialize, Serialize};

/// Selection algorithm of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each instance in turn, ignoring weights.
    #[default]
    RoundRobin,
    /// Round robin in proportion to instance weights.
    Weighted,
    /// Uniformly random (weights honoured).
    Random,
    /// Ketama consistent hashing on `hash_key`.
    ConsistentHash,
    /// Power of two choices on requests in flight per instance (Envoy's LEAST_REQUEST).
    LeastRequest,
    /// Power of two choices on a decaying average of response time × (in flight + 1)
    /// (Finagle's and linkerd's peak EWMA).
    Ewma,
}

impl Balance {
    /// Whether selection compares two random instances' load (`least_request`, `ewma`).
    pub fn is_p2c(self) -> bool {
        matches!(self, Balance::LeastRequest | Balance::Ewma)
    }
}

/// Zone-aware balancing: requests stay in `local_zone` while enough of it is available.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneAwareConfig {
    /// The gateway's zone (typically `${PORTICO_ZONE:-}`); empty turns zone awareness off.
    pub local_zone: String,
    /// Least share of the local zone's instances that must be available for all requests
    /// to stay local; below it, requests spill over in proportion.
    #[serde(default = "default_min_healthy")]
    pub min_healthy: f64,
}

fn default_min_healthy() -> f64 {
    0.7
}
