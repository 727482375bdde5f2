//! Slow start: an instance that is new to the service (discovered, or resolved from a host
//! name), or back after being unavailable (failing its health check, or cut off by its
//! breaker), takes a share that ramps linearly from 10% to its full weight over the window —
//! a cold JVM or an empty cache is not handed its full share at once.
//!
//! It works with every balancer by admission: when selection lands on a ramping instance, the
//! instance is taken with probability 0.1 + 0.9 × elapsed / window and otherwise passed over
//! like a busy one, so its share grows as its effective weight would (under round robin with
//! one other instance: p / (1 + p) of the requests). When every candidate was passed over
//! this way, selection runs again without it: slow start never fails a request.
//!
//! Transitions are seen where selection already looks: an instance found unhealthy or
//! refused by its breaker is marked down, and the first time it is found available again its
//! ramp starts. The instances a service starts with are not ramped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The share a ramp starts from.
const FLOOR: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Available since then (a ramp runs until `window` has passed).
    Up(Instant),
    Down,
}

/// One service's ramps.
pub struct SlowStart {
    window: Duration,
    phases: RwLock<HashMap<SocketAddr, Phase>>,
}

impl SlowStart {
    /// Ramps over `window`; `established` instances (the service's own at start) do not ramp.
    pub fn new(
        window: Duration,
        established: impl IntoIterator<Item = SocketAddr>,
        now: Instant,
    ) -> Self {
        let settled = now.checked_sub(window).unwrap_or(now);
        Self {
            window,
            phases: RwLock::new(
                established
                    .into_iter()
                    .map(|a| (a, Phase::Up(settled)))
                    .collect(),
            ),
        }
    }

    /// `addr` was found unavailable: its next availability starts a ramp.
    pub fn down(&self, addr: &SocketAddr) {
        let known_down = self
            .phases
            .read()
            .is_ok_and(|m| matches!(m.get(addr), Some(Phase::Down)));
        if !known_down {
            let mut map = self.phases.write().unwrap_or_else(|e| e.into_inner());
            map.insert(*addr, Phase::Down);
        }
    }

    /// Whether a request may go to the available instance `addr` now (see the module doc).
    pub fn admits(&self, addr: &SocketAddr, now: Instant) -> bool {
        let phase = self.phases.read().ok().and_then(|m| m.get(addr).copied());
        let since = match phase {
            Some(Phase::Up(since)) => since,
            // New, or back: the ramp starts now.
            None | Some(Phase::Down) => {
                let mut map = self.phases.write().unwrap_or_else(|e| e.into_inner());
                map.insert(*addr, Phase::Up(now));
                now
            }
        };
        let share = self.share(now.saturating_duration_since(since));
        share >= 1.0 || fastrand::f64() < share
    }

    /// The share of its full weight an instance available for `elapsed` takes.
    fn share(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        FLOOR + (1.0 - FLOOR) * elapsed.as_secs_f64() / self.window.as_secs_f64()
    }

    /// Forgets instances no longer in the service.
    pub fn retain(&self, present: impl Fn(&SocketAddr) -> bool) {
        let mut map = self.phases.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|a, _| present(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_or_recovered_instance_ramps_and_an_established_one_does_not() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let ss = SlowStart::new(window, [a], t0);
        let taken =
            |at: Instant, addr: SocketAddr| (0..2000).filter(|_| ss.admits(&addr, at)).count();
        assert_eq!(taken(t0, a), 2000, "established");
        let early = taken(t0, b);
        assert!((100..=320).contains(&early), "about 10% at first: {early}");
        let late = taken(t0 + Duration::from_secs(8), b);
        assert!(
            (1500..=1960).contains(&late),
            "about 82% near the end: {late}"
        );
        assert_eq!(taken(t0 + window, b), 2000, "full after the window");
        ss.down(&a);
        let back = t0 + Duration::from_secs(20);
        let recovered = taken(back, a);
        assert!(recovered < 400, "back from down ramps again: {recovered}");
    }
}
