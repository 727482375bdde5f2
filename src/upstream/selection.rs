//! Choosing the instance for one attempt: healthy, untried, with room under the service's
//! per-instance cap and admitted by its breaker, or — when no instance is healthy — fail-open
//! over the whole set (panic mode).

use super::breakers::Verdict;
use super::{LoadSlot, Pick, Selection, Upstream};
use crate::config::Balance;
use pingora_load_balancing::{Backend, Backends};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Upstream {
    /// Whether some instance passes its health checks and is not cut off by an open breaker.
    /// A traffic split sends nothing to a service without one while another side has one.
    pub fn has_available_instance(&self, now: Instant) -> bool {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .any(|b| self.available(backends, b, now))
    }

    /// Whether `b` passes its health check (and is not draining) and its breaker is not open
    /// (refusing everything until its cool-down ends).
    fn available(&self, backends: &Backends, b: &Backend, now: Instant) -> bool {
        backends.ready(b)
            && !b.addr.as_inet().is_some_and(|a| {
                matches!(self.breakers.view(a, now), Some((super::State::Open, _)))
            })
    }

    /// Picks a healthy instance not in `tried` whose breaker admits it. When no instance at all
    /// is healthy, falls back to the whole set (panic mode) rather than failing every request;
    /// breakers still apply there.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr], now: Instant) -> Pick {
        let untried = |b: &Backend| b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let probe = Cell::new(false);
        let refused: Cell<Option<Duration>> = Cell::new(None);
        let saturated = Cell::new(false);
        let slot: Cell<Option<LoadSlot>> = Cell::new(None);
        // Slow start passes ramping instances over, until a pass finds nothing else.
        let ramp = Cell::new(self.slow_start.is_some());
        let ramped = Cell::new(false);
        let admit = |b: &Backend| {
            let Some(addr) = b.addr.as_inet() else {
                return true;
            };
            // The slot is taken before the breaker is asked, and dropped if it refuses, so
            // a half-open probe is never spent on an instance that has no room.
            let taken = match &self.load {
                Some(load) => match load.try_enter(addr) {
                    Some(s) => Some(s),
                    None => {
                        saturated.set(true);
                        return false;
                    }
                },
                None => None,
            };
            match self.breakers.admit(addr, now, &self.metrics) {
                // A half-open breaker's probe always goes: it decides whether the instance
                // is back at all.
                Verdict::Send { probe: false }
                    if ramp.get()
                        && self
                            .slow_start
                            .as_ref()
                            .is_some_and(|s| !s.admits(addr, now)) =>
                {
                    ramped.set(true);
                    false
                }
                Verdict::Send { probe: p } => {
                    probe.set(p);
                    slot.set(taken);
                    true
                }
                Verdict::Refuse { retry_after } => {
                    if let Some(ramps) = &self.slow_start {
                        ramps.down(addr);
                    }
                    let wait = refused.get().map_or(retry_after, |w| w.min(retry_after));
                    refused.set(Some(wait));
                    false
                }
            }
        };
        // An unhealthy instance is marked down, so its recovery starts a ramp.
        let healthy = |b: &Backend, ready: bool| {
            if let (false, Some(ramps), Some(addr)) = (ready, &self.slow_start, b.addr.as_inet()) {
                ramps.down(addr);
            }
            ready
        };
        let budget = 2 * self.instance_count() + 4;
        let selected = |backend: Backend, panic| {
            if let Some(zones) = &self.zones {
                zones.count(&backend);
            }
            Pick::Selected(Selection {
                backend,
                panic,
                probe: probe.get(),
                slot: slot.take(),
            })
        };
        // Zone awareness narrows the first pass to the local zone; each pass that finds
        // nothing drops one preference (the zone, then slow start) before giving up.
        let local = Cell::new(self.zones.as_ref().is_some_and(|z| {
            let backends = self.balancer.backends();
            z.stay_local(backends, |b| self.available(backends, b, now), now)
        }));
        let in_zone =
            |b: &Backend| !local.get() || self.zones.as_ref().is_none_or(|z| z.is_local(b));
        let usable = |b: &Backend| in_zone(b) && untried(b) && admit(b);
        for _pass in 0..3 {
            if self.config.balance.is_p2c() {
                if let Some(backend) = self.two_choices(healthy, usable) {
                    return selected(backend, false);
                }
            }
            if let Some(backend) = self
                .balancer
                .select_with(key, budget, |b, ready| healthy(b, ready) && usable(b))
            {
                return selected(backend, false);
            }
            if let Some(backend) = self.past_the_ring(|b, ready| healthy(b, ready) && usable(b)) {
                return selected(backend, false);
            }
            if local.get() {
                local.set(false);
            } else if ramped.get() && ramp.get() {
                ramp.set(false);
            } else {
                break;
            }
        }
        let backends = self.balancer.backends();
        if !backends.get_backend().iter().any(|b| backends.ready(b)) {
            let members = self.instances.get();
            let eligible = |b: &Backend| untried(b) && members.is_enabled(b) && admit(b);
            if let Some(backend) = self.select_fail_open(key, budget, eligible) {
                self.metrics.count_panic_selection();
                return selected(backend, true);
            }
        }
        if saturated.get() {
            return Pick::Saturated;
        }
        match refused.get() {
            Some(retry_after) => {
                self.metrics.count_short_circuit(false);
                Pick::CircuitOpen { retry_after }
            }
            None => Pick::Exhausted,
        }
    }

    /// Consistent hashing only, when the balancer's walk found nothing: one pass over the
    /// set, in its order. The walk follows Ketama's ring (160 points per unit of weight, so an
    /// instance's points come in runs) and gives up after its candidate budget; a run of a
    /// refused instance longer than that ended the selection with other instances untried,
    /// and a retry became a 504 (`tests/retries.rs` failed about once in 50 runs). A budget of
    /// the whole ring would fix it too, but would walk every point on every request while all
    /// breakers are open; this pass is bounded by the instance count. Instances the walk
    /// already refused are asked again, as the zone and slow-start passes already do.
    fn past_the_ring(&self, accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        if !matches!(self.config.balance, Balance::ConsistentHash) {
            return None;
        }
        let backends = self.balancer.backends();
        let set = backends.get_backend();
        set.iter().find(|b| accept(b, backends.ready(b))).cloned()
    }

    /// Power of two choices: two distinct random instances, the lighter one first, the first
    /// that is healthy and `usable` (untried, with room, admitted by its breaker). None sends
    /// the caller to the random balancer over the whole set, as when both are unusable.
    /// Weights divide the load compared, so an instance of weight 2 takes twice the share.
    fn two_choices(
        &self,
        healthy: impl Fn(&Backend, bool) -> bool,
        usable: impl Fn(&Backend) -> bool,
    ) -> Option<Backend> {
        let load = self.load.as_ref()?;
        let backends = self.balancer.backends();
        let set = backends.get_backend();
        let n = set.len();
        if n == 0 {
            return None;
        }
        let i = fastrand::usize(..n);
        let j = if n > 1 {
            (i + 1 + fastrand::usize(..n - 1)) % n
        } else {
            i
        };
        let (a, b) = (set.iter().nth(i)?, set.iter().nth(j)?);
        let now = Instant::now();
        let weighted = |x: &Backend| {
            let cost = x
                .addr
                .as_inet()
                .map_or(f64::MAX, |addr| match self.config.balance {
                    Balance::Ewma => load.cost(addr, now),
                    _ => f64::from(load.in_flight(addr)) + 1.0,
                });
            cost / x.weight.max(1) as f64
        };
        let (first, second) = if weighted(b) < weighted(a) {
            (b, a)
        } else {
            (a, b)
        };
        // Bound before returning: the candidates borrow `set`, which the tail expression's
        // temporaries would otherwise outlive.
        #[allow(clippy::let_and_return)]
        let chosen = [first, second]
            .into_iter()
            .find(|c| healthy(c, backends.ready(c)) && usable(c))
            .cloned();
        chosen
    }

    /// Folds an attempt's time to response header into its instance's average (`ewma`).
    pub fn observe_latency(&self, addr: &SocketAddr, took: Duration) {
        if let (Some(load), Balance::Ewma) = (&self.load, self.config.balance) {
            load.observe(addr, took, Instant::now());
        }
    }

    /// A fail-open pick over the whole set. Hashing keeps its key's instance; round robin and
    /// weighted use this service's own rotation, because the healthy-only pass that just
    /// rejected every instance moved the balancer's position by `budget + 1`, a multiple of
    /// the set size for 2 or 3 instances, which sent every fail-open request to one instance.
    fn select_fail_open(
        &self,
        key: &[u8],
        budget: usize,
        eligible: impl Fn(&Backend) -> bool,
    ) -> Option<Backend> {
        if !matches!(self.config.balance, Balance::RoundRobin | Balance::Weighted) {
            return self.balancer.select_with(key, budget, |b, _| eligible(b));
        }
        let backends = self.balancer.backends().get_backend();
        let total: usize = backends.iter().map(|b| b.weight.max(1)).sum();
        if total == 0 {
            return None;
        }
        // The instance owning this position of the weighted ring, then the ones after it.
        let mut position = self.fail_open_cursor.fetch_add(1, Ordering::Relaxed) % total;
        let first = backends
            .iter()
            .position(|b| {
                let w = b.weight.max(1);
                let here = position < w;
                position = position.saturating_sub(w);
                here
            })
            .unwrap_or(0);
        backends
            .iter()
            .cycle()
            .skip(first)
            .take(backends.len())
            .find(|b| eligible(b))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::health::{self, Verdicts};
    use super::super::{Pick, Resolved, Selection, ServiceSpec, Upstream};
    use crate::config::ServiceConfig;
    use std::sync::Arc;
    use std::time::Instant;

    #[tokio::test]
    async fn a_consistent_hash_retry_reaches_the_other_instance_past_a_run_of_the_first() {
        // Ketama's ring holds 160 points per instance; from some keys the next points all
        // belong to the same instance for longer than a small candidate budget.
        let yaml = "instances: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nbalance: consistent_hash\nhash_key: header:x-k\n";
        let cfg: ServiceConfig = serde_yaml::from_str(yaml).unwrap();
        let mut problems = crate::config::Problems::default();
        let spec = ServiceSpec::compile("ring-test", &cfg, true, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let registry = health::registry(Arc::new(Verdicts::default()));
        let up = Upstream::new(&spec, &registry, vec![], Resolved::new());
        up.refresh().await.unwrap();
        let inet = |s: &Selection| s.backend.addr.as_inet().copied().unwrap();
        for i in 0..2000 {
            let key = format!("k{i}");
            let Pick::Selected(first) = up.select(key.as_bytes(), &[], Instant::now()) else {
                panic!("key {key}: no first instance");
            };
            let first = inet(&first);
            match up.select(key.as_bytes(), &[first], Instant::now()) {
                Pick::Selected(retry) => assert_ne!(inet(&retry), first, "key {key}"),
                _ => panic!("key {key}: the retry found no instance, the other one untried"),
            }
        }
    }
}
