//! Zone-aware balancing: while at least `min_healthy` of the local zone's instances are
//! available, every request stays in the zone (cross-zone traffic costs latency and money);
//! below it, requests spill over in proportion — local with probability available share /
//! `min_healthy`, otherwise anywhere — so a zone losing instances sheds load smoothly instead
//! of all at once. An instance's zone comes from the registry's `zone` field or ` zone=NAME`
//! on a static instance; instances without one are remote.

use pingora_load_balancing::{Backend, Backends};
use prometheus::IntCounter;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a measured local share is reused: counting the zone's available instances on
/// every request cost more than the rest of selection, and health changes at most every
/// probe interval anyway.
const SHARE_TTL: Duration = Duration::from_millis(100);

/// An instance's zone, kept in its `Backend`'s extensions.
#[derive(Debug, Clone)]
pub struct Zone(pub Arc<str>);

/// A service's zone preference.
pub struct ZoneAware {
    local: Arc<str>,
    min_healthy: f64,
    /// Requests sent in the zone and out of it.
    local_requests: IntCounter,
    cross_requests: IntCounter,
    /// The last measured available share of the local zone (f64 bits; NaN = none) and when
    /// (nanoseconds since `epoch`).
    share: AtomicU64,
    measured_ns: AtomicU64,
    epoch: Instant,
    /// The warning about instances without zones was logged.
    warned: AtomicBool,
}

impl ZoneAware {
    /// Prefers `local` (an empty name turns it off: `None`).
    pub fn new(local: &str, min_healthy: f64, counters: [IntCounter; 2]) -> Option<Self> {
        let [local_requests, cross_requests] = counters;
        (!local.is_empty()).then(|| Self {
            local: Arc::from(local),
            min_healthy,
            local_requests,
            cross_requests,
            share: AtomicU64::new(f64::NAN.to_bits()),
            measured_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            warned: AtomicBool::new(false),
        })
    }

    /// Warns once when `service` has instances and none of them carries a zone: every
    /// request then counts as cross-zone, which is a registry or file missing `zone`, not a
    /// zone outage. A static service is checked at load; a registry-fed one whenever its
    /// instances change, since its zones arrive with the registry. Whether it warned now.
    pub fn check_zones(&self, service: &str, backends: &BTreeSet<Backend>) -> bool {
        let zoned = backends.iter().any(|b| b.ext.get::<Zone>().is_some());
        if zoned || backends.is_empty() || self.warned.swap(true, Ordering::Relaxed) {
            return false;
        }
        log::warn!(
            "service {service}: zone_aware, but no instance has a zone (registry `zone` field or static zone=NAME): every request counts as cross-zone"
        );
        true
    }

    /// Whether `backend` is in the local zone.
    pub fn is_local(&self, backend: &Backend) -> bool {
        backend
            .ext
            .get::<Zone>()
            .is_some_and(|z| *z.0 == *self.local)
    }

    /// Whether this request stays in the zone, given which instances are `available` (the
    /// local zone's available share is measured at most every [`SHARE_TTL`]).
    pub fn stay_local(
        &self,
        backends: &Backends,
        available: impl Fn(&Backend) -> bool,
        now: Instant,
    ) -> bool {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let fresh = now_ns.saturating_sub(self.measured_ns.load(Ordering::Acquire))
            < SHARE_TTL.as_nanos() as u64;
        let cached = f64::from_bits(self.share.load(Ordering::Acquire));
        let share = if fresh && !cached.is_nan() {
            cached
        } else {
            let (mut local, mut up) = (0usize, 0usize);
            for b in backends.get_backend().iter().filter(|b| self.is_local(b)) {
                local += 1;
                up += usize::from(available(b));
            }
            let share = if local == 0 {
                0.0
            } else {
                up as f64 / local as f64
            };
            self.share.store(share.to_bits(), Ordering::Release);
            self.measured_ns.store(now_ns, Ordering::Release);
            share
        };
        share > 0.0 && (share >= self.min_healthy || fastrand::f64() < share / self.min_healthy)
    }

    /// Counts a request sent to `backend`.
    pub fn count(&self, backend: &Backend) {
        if self.is_local(backend) {
            self.local_requests.inc();
        } else {
            self.cross_requests.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(addr: &str, zone: Option<&str>) -> Backend {
        let mut b = Backend::new(addr).unwrap();
        if let Some(z) = zone {
            b.ext.insert(Zone(Arc::from(z)));
        }
        b
    }

    #[test]
    fn instances_without_any_zone_are_warned_about_once() {
        let counters = || {
            [
                IntCounter::new("l", "l").unwrap(),
                IntCounter::new("c", "c").unwrap(),
            ]
        };
        let aware = ZoneAware::new("eu-1", 0.7, counters()).unwrap();
        assert!(
            !aware.check_zones("s", &BTreeSet::new()),
            "no instances yet"
        );
        let zoned = BTreeSet::from([
            backend("127.0.0.1:1", Some("eu-2")),
            backend("127.0.0.1:2", None),
        ]);
        assert!(!aware.check_zones("s", &zoned), "one zone is enough");
        let bare = BTreeSet::from([backend("127.0.0.1:1", None)]);
        assert!(aware.check_zones("s", &bare));
        assert!(!aware.check_zones("s", &bare), "once per service");
        assert!(ZoneAware::new("", 0.7, counters()).is_none());
    }
}
