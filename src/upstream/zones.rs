//! Zone-aware balancing: while at least `min_healthy` of the local zone's instances are
//! available, every request stays in the zone (cross-zone traffic costs latency and money);
//! below it, requests spill over in proportion — local with probability available share /
//! `min_healthy`, otherwise anywhere — so a zone losing instances sheds load smoothly instead
//! of all at once. An instance's zone comes from the registry's `zone` field or ` zone=NAME`
//! on a static instance; instances without one are remote.

use pingora_load_balancing::{Backend, Backends};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicU64, Ordering};
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
        })
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
