//! Requests in flight per instance, for `max_connections_per_instance`. Selection takes a slot
//! atomically (compare-and-increment, so two requests racing for the last slot cannot both get
//! it) before it asks the breaker, and an instance without a free slot is skipped like an
//! unhealthy one: traffic moves to instances with room instead of queueing behind a busy one.
//! The attempt holds its [`LoadSlot`]; dropping it (the attempt ended, was retried elsewhere,
//! or the client left) gives the slot back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// In-flight counts of one service's instances, capped at `max` each.
pub struct InstanceLoad {
    max: u32,
    counts: RwLock<HashMap<SocketAddr, Arc<AtomicU32>>>,
}

/// One request's place on one instance.
pub struct LoadSlot(Arc<AtomicU32>);

impl Drop for LoadSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InstanceLoad {
    /// Counts capped at `max` requests per instance.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            counts: RwLock::new(HashMap::new()),
        }
    }

    /// A slot on `addr`, or `None` when it has `max` requests in flight.
    pub fn try_enter(&self, addr: &SocketAddr) -> Option<LoadSlot> {
        let count = self.count(addr);
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| LoadSlot(count))
    }

    /// Requests in flight on `addr`.
    #[cfg(test)]
    pub fn in_flight(&self, addr: &SocketAddr) -> u32 {
        self.count(addr).load(Ordering::Acquire)
    }

    fn count(&self, addr: &SocketAddr) -> Arc<AtomicU32> {
        // The read lock is held for one lookup, never across an await; the write lock only the
        // first time an instance is seen.
        if let Some(c) = self.counts.read().ok().and_then(|m| m.get(addr).cloned()) {
            return c;
        }
        let mut map = self.counts.write().unwrap_or_else(|e| e.into_inner());
        map.entry(*addr).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back_on_drop() {
        let load = InstanceLoad::new(2);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let first = load.try_enter(&a).unwrap();
        let _second = load.try_enter(&a).unwrap();
        assert!(load.try_enter(&a).is_none());
        assert!(load.try_enter(&b).is_some(), "instances are counted apart");
        drop(first);
        assert_eq!(load.in_flight(&a), 1);
        assert!(load.try_enter(&a).is_some());
    }

    #[test]
    fn racing_threads_never_exceed_the_cap() {
        let load = Arc::new(InstanceLoad::new(3));
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (load, peak) = (load.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Some(slot) = load.try_enter(&a) {
                            peak.fetch_max(load.in_flight(&a), Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(load.in_flight(&a), 0);
    }
}
