//! The breakers of one service's instances, and the ejection cap across them: at most
//! `max_ejected_ratio` of the instances (but always at least one) may be open or half-open at
//! once, so a bad deploy or a shared dependency outage cannot eject the whole pool.

use super::breaker::{Admission, Breaker, State, Transition};
use crate::config::BreakerConfig;
use crate::telemetry::metrics::ServiceMetrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the breakers say about sending a request to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; `probe` when it is a half-open probe whose outcome must be reported.
    Send { probe: bool },
    /// Do not send it; the breaker admits probes again in `retry_after`.
    Refuse { retry_after: Duration },
}

/// Breakers keyed by instance address. Membership follows the instance set: an address that
/// stays keeps its breaker across registry updates; one that leaves and returns starts closed.
#[derive(Debug)]
pub struct Breakers {
    cfg: BreakerConfig,
    table: ArcSwap<Table>,
    ejected: AtomicUsize,
}

#[derive(Debug, Default)]
struct Table {
    by_addr: HashMap<SocketAddr, Arc<Breaker>>,
    max_ejected: usize,
}

impl Breakers {
    /// One closed breaker per address; none at all when breakers are disabled.
    pub fn new(
        cfg: &BreakerConfig,
        addrs: impl IntoIterator<Item = SocketAddr>,
        now: Instant,
    ) -> Self {
        let breakers = Self {
            cfg: cfg.clone(),
            table: ArcSwap::from_pointee(Table::default()),
            ejected: AtomicUsize::new(0),
        };
        breakers.sync(addrs, now);
        breakers
    }

    /// Makes the table follow `addrs`: kept addresses keep their breakers, new ones start
    /// closed, gone ones are dropped. Returns the addresses that got a new breaker. Called by
    /// the single writer of the service's instance set.
    pub fn sync(
        &self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        now: Instant,
    ) -> Vec<SocketAddr> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let old = self.table.load();
        let mut fresh = Vec::new();
        let by_addr: HashMap<_, _> = addrs
            .into_iter()
            .map(|a| {
                let breaker = old.by_addr.get(&a).cloned().unwrap_or_else(|| {
                    fresh.push(a);
                    Arc::new(Breaker::new(self.cfg.clone(), now))
                });
                (a, breaker)
            })
            .collect();
        let ejected = by_addr
            .values()
            .filter(|b| b.state(now) != State::Closed)
            .count();
        let max_ejected =
            ((by_addr.len() as f64 * self.cfg.max_ejected_ratio).floor() as usize).max(1);
        self.table.store(Arc::new(Table {
            by_addr,
            max_ejected,
        }));
        self.ejected.store(ejected, Ordering::Relaxed);
        fresh
    }

    /// Admission for `addr`; in shadow mode a refusal is counted and the request sent anyway.
    pub fn admit(&self, addr: &SocketAddr, now: Instant, metrics: &ServiceMetrics) -> Verdict {
        let table = self.table.load();
        let Some(breaker) = table.by_addr.get(addr) else {
            return Verdict::Send { probe: false };
        };
        let (admission, transition) = breaker.try_acquire(now);
        if let Some(t) = transition {
            self.note(addr, t, metrics);
        }
        match admission {
            Admission::Allowed => Verdict::Send { probe: false },
            Admission::Probe => Verdict::Send { probe: true },
            Admission::Refused { .. } if self.cfg.shadow => {
                metrics.count_short_circuit(true);
                Verdict::Send { probe: false }
            }
            Admission::Refused { retry_after } => Verdict::Refuse { retry_after },
        }
    }

    /// Reports the outcome of a request sent to `addr`.
    pub fn record(
        &self,
        addr: &SocketAddr,
        success: bool,
        probe: bool,
        now: Instant,
        metrics: &ServiceMetrics,
    ) {
        let table = self.table.load();
        let Some(breaker) = table.by_addr.get(addr) else {
            return;
        };
        let may_open = self.ejected.load(Ordering::Relaxed) < table.max_ejected;
        if let Some(t) = breaker.record(now, success, probe, may_open) {
            self.note(addr, t, metrics);
        }
    }

    /// Returns an unused probe slot.
    pub fn release_probe(&self, addr: &SocketAddr) {
        if let Some(b) = self.table.load().by_addr.get(addr) {
            b.release_probe();
        }
    }

    /// State and time to the next probe of `addr`, for the admin API.
    pub fn view(&self, addr: &SocketAddr, now: Instant) -> Option<(State, Duration)> {
        self.table
            .load()
            .by_addr
            .get(addr)
            .map(|b| (b.state(now), b.retry_after(now)))
    }

    fn note(&self, addr: &SocketAddr, t: Transition, metrics: &ServiceMetrics) {
        match (t.from, t.to) {
            (State::Closed, State::Open) => {
                self.ejected.fetch_add(1, Ordering::Relaxed);
            }
            (State::HalfOpen, State::Closed) => {
                // Saturating: a membership sync may have recounted meanwhile.
                let _ = self
                    .ejected
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            _ => {}
        }
        let instance = addr.to_string();
        log::warn!(
            "circuit breaker of {instance} went {} -> {}",
            t.from.as_str(),
            t.to.as_str()
        );
        metrics.breaker_transition(t.from.as_str(), t.to.as_str());
        metrics.breaker_state(&instance, t.to.as_str());
    }

    /// Exports the current state of the breakers of `addrs`.
    pub fn export<'a>(
        &self,
        addrs: impl IntoIterator<Item = &'a SocketAddr>,
        metrics: &ServiceMetrics,
        now: Instant,
    ) {
        let table = self.table.load();
        for addr in addrs {
            if let Some(b) = table.by_addr.get(addr) {
                metrics.breaker_state(&addr.to_string(), b.state(now).as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 1,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn at_most_half_of_the_instances_are_ejected() {
        let now = Instant::now();
        let metrics = ServiceMetrics::new("ejection-test");
        let list = addrs(4);
        let b = Breakers::new(&cfg(), list.clone(), now);
        for a in &list {
            b.record(a, false, false, now, &metrics);
        }
        let refused = list
            .iter()
            .filter(|a| matches!(b.admit(a, now, &metrics), Verdict::Refuse { .. }))
            .count();
        assert_eq!(refused, 2);
    }

    #[test]
    fn a_single_instance_can_still_be_ejected() {
        let now = Instant::now();
        let metrics = ServiceMetrics::new("single-test");
        let b = Breakers::new(&cfg(), addrs(1), now);
        b.record(&addrs(1)[0], false, false, now, &metrics);
        assert!(matches!(
            b.admit(&addrs(1)[0], now, &metrics),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn shadow_mode_never_refuses() {
        let now = Instant::now();
        let metrics = ServiceMetrics::new("shadow-test");
        let b = Breakers::new(
            &BreakerConfig {
                shadow: true,
                ..cfg()
            },
            addrs(1),
            now,
        );
        b.record(&addrs(1)[0], false, false, now, &metrics);
        assert_eq!(b.view(&addrs(1)[0], now).map(|v| v.0), Some(State::Open));
        assert_eq!(
            b.admit(&addrs(1)[0], now, &metrics),
            Verdict::Send { probe: false }
        );
    }

    #[test]
    fn kept_addresses_keep_their_breaker_and_returning_ones_start_closed() {
        let now = Instant::now();
        let metrics = ServiceMetrics::new("sync-test");
        let list = addrs(3);
        let b = Breakers::new(&cfg(), list.clone(), now);
        b.record(&list[0], false, false, now, &metrics);
        assert_eq!(b.view(&list[0], now).map(|v| v.0), Some(State::Open));
        assert_eq!(b.sync(list.clone(), now), Vec::<SocketAddr>::new());
        assert_eq!(b.view(&list[0], now).map(|v| v.0), Some(State::Open));
        b.sync(list[1..].to_vec(), now);
        assert!(b.view(&list[0], now).is_none());
        assert_eq!(b.sync(list.clone(), now), vec![list[0]]);
        assert_eq!(b.view(&list[0], now).map(|v| v.0), Some(State::Closed));
    }
}
