//! How many gateways share the Redis-stored limits: the divisor of a rule's local fallback
//! (`limit / gateways`) while Redis cannot decide. The membership service keeps it current
//! from the live gateways it sees in Redis, and leaves the last count in place while Redis is
//! away; `redis.replicas` overrides it per configuration.

use std::sync::atomic::{AtomicU32, Ordering};

/// The live gateway count, 1 until the membership list says otherwise.
#[derive(Debug)]
pub struct Peers {
    live: AtomicU32,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            live: AtomicU32::new(1),
        }
    }
}

impl Peers {
    /// Gateways known to be live (this one included; never 0).
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed)
    }

    /// Records a fresh count.
    pub fn set_live(&self, n: u32) {
        self.live.store(n.max(1), Ordering::Relaxed);
    }
}
