//! An instance found through a registry (today the Redis service registry): its id, address,
//! weight and the metadata routing may use. The balancer treats it like a static instance,
//! except that it can drain and expire.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A registry instance, as the watcher last read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub id: String,
    pub addr: SocketAddr,
    pub weight: usize,
    /// Take no new requests; in-flight ones finish.
    pub draining: bool,
    /// Last heartbeat, Unix ms; `f64::INFINITY` for a pinned (never expiring) registration.
    pub heartbeat_ms: f64,
    pub zone: Option<String>,
    pub version: Option<String>,
    pub meta: BTreeMap<String, String>,
}

impl Registration {
    /// Whether routing would treat `self` and `other` alike (heartbeats and metadata aside).
    pub fn same_routing(&self, other: &Registration) -> bool {
        self.id == other.id
            && self.addr == other.addr
            && self.weight == other.weight
            && self.draining == other.draining
    }

    /// Whether the heartbeat is within `ttl_ms` of `now_ms`.
    pub fn is_live(&self, now_ms: f64, ttl_ms: f64) -> bool {
        self.heartbeat_ms >= now_ms - ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_uses_the_ttl_and_pinned_never_expires() {
        let r = Registration {
            id: "i".into(),
            addr: "1.2.3.4:1".parse().unwrap(),
            weight: 1,
            draining: false,
            heartbeat_ms: 1_000.0,
            zone: None,
            version: None,
            meta: BTreeMap::new(),
        };
        assert!(r.is_live(1_500.0, 500.0));
        assert!(!r.is_live(1_501.0, 500.0));
        let pinned = Registration {
            heartbeat_ms: f64::INFINITY,
            ..r
        };
        assert!(pinned.is_live(1e15, 1.0));
    }
}
