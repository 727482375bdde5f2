//! Requests in flight per instance, for `max_connections_per_instance` and for the balancers
//! that compare load (`least_request`, `ewma`), and each instance's decaying average response
//! time (`ewma`). Selection takes a slot atomically (compare-and-increment, so two requests
//! racing for the last slot cannot both get it) before it asks the breaker, and an instance
//! without a free slot is skipped like an unhealthy one: traffic moves to instances with room
//! instead of queueing behind a busy one. The attempt holds its [`LoadSlot`]; dropping it (the
//! attempt ended, was retried elsewhere, or the client left) gives the slot back.
//!
//! A service whose configuration is unchanged keeps its upstream across reloads, and these
//! counts with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How fast the response-time average forgets: a sample's weight halves every ~7 s (Finagle's
/// default decay time of 10 s).
const DECAY: Duration = Duration::from_secs(10);

/// In-flight counts of one service's instances, capped at `max` each.
pub struct InstanceLoad {
    max: u32,
    /// When the counts began: the clock of the averages' timestamps.
    epoch: Instant,
    counts: RwLock<HashMap<SocketAddr, Arc<InstanceStats>>>,
}

/// One instance's load.
#[derive(Default)]
struct InstanceStats {
    in_flight: AtomicU32,
    /// The decaying average response time, in nanoseconds (0 = no response yet).
    ewma_ns: AtomicU64,
    /// When it was last updated, in nanoseconds since the epoch.
    stamp_ns: AtomicU64,
}

/// One request's place on one instance.
pub struct LoadSlot(Arc<InstanceStats>);

impl Drop for LoadSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InstanceLoad {
    /// Counts capped at `max` requests per instance.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            epoch: Instant::now(),
            counts: RwLock::new(HashMap::new()),
        }
    }

    /// A slot on `addr`, or `None` when it has `max` requests in flight.
    pub fn try_enter(&self, addr: &SocketAddr) -> Option<LoadSlot> {
        let stats = self.count(addr);
        stats
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| LoadSlot(stats))
    }

    /// Requests in flight on `addr`.
    pub fn in_flight(&self, addr: &SocketAddr) -> u32 {
        self.count(addr).in_flight.load(Ordering::Acquire)
    }

    /// Folds one response time of `addr` into its average: the older value's weight decays
    /// with the time since it was set, so an instance that was slow a minute ago is judged
    /// by what it does now. Races between two updates lose one sample, never the average.
    pub fn observe(&self, addr: &SocketAddr, took: Duration, now: Instant) {
        let stats = self.count(addr);
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let last = stats.stamp_ns.swap(now_ns, Ordering::AcqRel);
        let old = stats.ewma_ns.load(Ordering::Acquire);
        let sample = took.as_nanos() as f64;
        let next = if old == 0 {
            sample
        } else {
            let elapsed = now_ns.saturating_sub(last) as f64;
            let w = (-elapsed / DECAY.as_nanos() as f64).exp();
            old as f64 * w + sample * (1.0 - w)
        };
        stats.ewma_ns.store(next.max(1.0) as u64, Ordering::Release);
    }

    /// `ewma`'s cost of sending one more request to `addr`: average response time, decayed
    /// by the time since its last response (as linkerd's peak EWMA does: an instance that got
    /// no traffic because it was slow is tried again once its estimate has faded, instead of
    /// never), × (in flight + 1). An instance with no response yet costs like the fastest
    /// possible one, so a new instance is tried.
    pub fn cost(&self, addr: &SocketAddr, now: Instant) -> f64 {
        let stats = self.count(addr);
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let idle = now_ns.saturating_sub(stats.stamp_ns.load(Ordering::Acquire)) as f64;
        let ewma = stats.ewma_ns.load(Ordering::Acquire) as f64;
        let faded = (ewma * (-idle / DECAY.as_nanos() as f64).exp()).max(1.0);
        faded * f64::from(stats.in_flight.load(Ordering::Acquire) + 1)
    }

    fn count(&self, addr: &SocketAddr) -> Arc<InstanceStats> {
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

    #[test]
    fn the_average_follows_responses_and_fades_while_idle() {
        let load = InstanceLoad::new(u32::MAX);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let start = Instant::now();
        assert_eq!(load.cost(&a, start), 1.0, "no response yet: the cheapest");
        load.observe(&a, Duration::from_millis(40), start);
        let fresh = load.cost(&a, start);
        assert!((fresh - 40e6).abs() < 1.0, "{fresh}");
        let _busy = load.try_enter(&a).unwrap();
        assert!(
            (load.cost(&a, start) - 80e6).abs() < 1.0,
            "× (in flight + 1)"
        );
        // A fast answer a decay time later outweighs the old slow one.
        load.observe(&a, Duration::from_millis(1), start + DECAY);
        let after = load.cost(&a, start + DECAY) / 2.0;
        assert!(after < 16e6 && after > 1e6, "{after}");
        // Unused for a minute, its estimate has faded: it would be tried again.
        let idle = load.cost(&a, start + DECAY + Duration::from_secs(60)) / 2.0;
        assert!(idle < after / 100.0, "{idle}");
    }
}
