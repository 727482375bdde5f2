//! The in-process store: GCRA state per key hash in a sharded map with a hard bound on keys.
//!
//! Memory: at most `max_keys` entries (16 bytes of state each, plus map overhead), whatever the
//! number of distinct clients. When a shard is full, entries whose bucket is already full again
//! (`tat <= now`) are dropped first: that changes no decision. If a flood of distinct, active
//! keys still fills it, the shard drops entries at random until it is 3/4 full; an evicted key
//! starts again with a full bucket, so under such a flood a client may get up to one extra
//! bucket — the bound on memory wins over exactness, and the eviction is counted.
//!
//! Keys are 64-bit SipHash values with a per-process random key (no attacker-chosen
//! collisions); two real keys sharing a hash would share a bucket, with negligible probability.

use super::gcra::{Decision, Gcra};
use prometheus::{IntCounter, IntGauge};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const SHARDS: usize = 64;

/// A bounded, sharded GCRA state map.
pub struct LocalStore {
    shards: Box<[Mutex<HashMap<u64, u64, PassThrough>>]>,
    per_shard: usize,
    hasher: RandomState,
    evictions: AtomicU64,
    metrics: Option<(IntGauge, IntCounter)>,
}

impl LocalStore {
    /// A store holding at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self::with_metrics(max_keys, None)
    }

    /// Like [`LocalStore::new`], keeping a key gauge and an eviction counter current.
    pub fn with_metrics(max_keys: usize, metrics: Option<(IntGauge, IntCounter)>) -> Self {
        if let Some((keys, _)) = &metrics {
            keys.set(0);
        }
        let per_shard = max_keys.div_ceil(SHARDS).max(16);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(PassThrough)))
                .collect(),
            per_shard,
            hasher: RandomState::new(),
            evictions: AtomicU64::new(0),
            metrics,
        }
    }

    /// The store's hash of a key (any `Hash` value; no allocation needed).
    pub fn hash_key(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The keyed hasher behind [`LocalStore::hash_key`].
    pub fn hasher(&self) -> &RandomState {
        &self.hasher
    }

    /// Decides one request for the key hashed as `key` at `now_us`.
    pub fn decide(&self, gcra: &Gcra, key: u64, now_us: u64) -> Decision {
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(&key).copied().unwrap_or(0);
        let (decision, next) = gcra.decide(tat, now_us);
        if let Some(next) = next {
            if map.insert(key, next).is_none() {
                if let Some((keys, _)) = &self.metrics {
                    keys.inc();
                }
                if map.len() > self.per_shard {
                    self.make_room(&mut map, now_us);
                }
            }
        }
        decision
    }

    fn make_room(&self, map: &mut HashMap<u64, u64, PassThrough>, now_us: u64) {
        let before = map.len();
        map.retain(|_, tat| *tat > now_us);
        let target = self.per_shard * 3 / 4;
        let mut evicted = 0;
        if map.len() > target {
            evicted = map.len() - target;
            // HashMap iteration order is arbitrary: effectively random eviction.
            let victims: Vec<u64> = map.keys().take(evicted).copied().collect();
            for k in victims {
                map.remove(&k);
            }
            self.evictions.fetch_add(evicted as u64, Ordering::Relaxed);
        }
        if let Some((keys, evictions)) = &self.metrics {
            keys.sub((before - map.len()) as i64);
            evictions.inc_by(evicted as u64);
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Active keys evicted so far to respect the bound.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The configured bound.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

/// Keys are already SipHash outputs; hashing them again would only cost time.
#[derive(Default, Clone)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_match_the_algorithm() {
        let store = LocalStore::new(1000);
        let g = Gcra::new(3, 1_000_000, 0);
        let k = store.hash_key("client");
        let got: Vec<bool> = (0..5).map(|_| store.decide(&g, k, 10).allowed).collect();
        assert_eq!(got, [true, true, true, false, false]);
        let other = store.hash_key("other");
        assert!(store.decide(&g, other, 10).allowed, "keys are independent");
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_keys() {
        let store = LocalStore::new(10_000);
        let g = Gcra::new(10, 60_000_000, 0);
        for i in 0..200_000u64 {
            store.decide(&g, store.hash_key(i), 1_000 + i);
        }
        assert!(store.len() <= store.capacity(), "{} keys", store.len());
        assert!(store.evictions() > 0);
    }

    #[test]
    fn expired_state_is_dropped_before_anything_is_evicted() {
        let store = LocalStore::new(1_024);
        let g = Gcra::new(10, 1_000, 0);
        // Each key's bucket refills within 1 ms; a later flood finds only expired entries.
        for i in 0..5_000u64 {
            store.decide(&g, store.hash_key(i), i * 10_000);
        }
        assert_eq!(store.evictions(), 0);
    }
}
