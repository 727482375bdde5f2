//! Per-service upstream state: the balancer over the service's instances, the discovery set it
//! reads, its health probes and its metric handles. An `Upstream` outlives config reloads when
//! its service section is unchanged, so balancer position and health survive.

mod balancer;
pub mod breaker;
mod breakers;
mod discovery;
mod hash_key;
pub mod health;

pub use breakers::Verdict;
pub use discovery::InstanceSet;
pub use hash_key::HashKey;

use crate::config::{parse_instance, Balance, ServiceConfig};
use crate::telemetry::metrics::ServiceMetrics;
use balancer::Balancer;
use breaker::State;
use breakers::Breakers;
use discovery::SetDiscovery;
use health::ProbeSpec;
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A selected instance.
pub struct Selection {
    pub backend: Backend,
    /// Chosen while every instance was unhealthy (fail-open "panic mode").
    pub panic: bool,
    /// A half-open breaker probe: its outcome must be reported.
    pub probe: bool,
}

/// The result of instance selection.
pub enum Pick {
    Selected(Selection),
    /// Every otherwise eligible instance is refused by its breaker.
    CircuitOpen {
        retry_after: Duration,
    },
    /// No instance can be tried (none left untried).
    Exhausted,
}

/// One service's balancer and everything needed to reach its instances.
pub struct Upstream {
    pub name: String,
    /// The configuration this upstream was built from (reuse test on reload).
    pub config: ServiceConfig,
    balancer: Balancer,
    instances: Arc<InstanceSet>,
    hash_key: Option<HashKey>,
    pub metrics: ServiceMetrics,
    breakers: Breakers,
    /// Limits how many of this service's requests may be retrying at once.
    pub budget: crate::retry::RetryBudget,
    /// Serialises balancer updates: pingora forbids overlapping `update()` on one view.
    update_lock: tokio::sync::Mutex<()>,
}

impl Upstream {
    /// Builds a service from validated configuration. Call [`Upstream::refresh`] before use.
    pub fn new(name: &str, config: &ServiceConfig, registry: &Arc<HealthRegistry>) -> Self {
        let spec = Arc::new(ProbeSpec::new(name, config.health_check.as_ref()));
        let metrics = ServiceMetrics::new(name);
        let mut set = BTreeSet::new();
        for entry in &config.instances {
            let Ok(instance) = parse_instance(entry) else {
                continue;
            };
            let weight = match config.balance {
                Balance::RoundRobin => 1,
                _ => instance.weight,
            };
            let mut backend = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(instance.addr),
                weight,
                ext: Default::default(),
            };
            backend.ext.insert(spec.clone());
            metrics.instance_health(&instance.addr.to_string(), true);
            set.insert(backend);
        }
        metrics.instances.set(set.len() as i64);
        let now = Instant::now();
        let breakers = Breakers::new(
            &config.circuit_breaker,
            set.iter()
                .filter_map(|b: &Backend| b.addr.as_inet().copied()),
            now,
        );
        breakers.export(&metrics, now);
        let instances = Arc::new(InstanceSet::new(set));
        let backends = || {
            Backends::new_with_health_registry(
                Box::new(SetDiscovery(instances.clone())),
                registry.clone(),
            )
        };
        let balancer = match config.balance {
            Balance::RoundRobin | Balance::Weighted => {
                Balancer::RoundRobin(LoadBalancer::from_backends(backends()))
            }
            Balance::Random => Balancer::Random(LoadBalancer::from_backends(backends())),
            Balance::ConsistentHash => {
                Balancer::Consistent(LoadBalancer::from_backends(backends()))
            }
        };
        Self {
            name: name.to_string(),
            config: config.clone(),
            balancer,
            instances,
            hash_key: config.hash_key.as_deref().and_then(HashKey::parse),
            metrics,
            breakers,
            budget: Default::default(),
            update_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Pushes the current instance set into the balancer.
    pub async fn refresh(&self) -> pingora::Result<()> {
        let _guard = self.update_lock.lock().await;
        self.balancer.update().await
    }

    /// The hash key for consistent hashing, if the service uses it.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// Picks a healthy instance not in `tried` whose breaker admits it. When no instance at all
    /// is healthy, falls back to the whole set (panic mode) rather than failing every request;
    /// breakers still apply there.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr], now: Instant) -> Pick {
        let untried = |b: &Backend| b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let probe = Cell::new(false);
        let refused: Cell<Option<Duration>> = Cell::new(None);
        let admit = |b: &Backend| {
            let Some(addr) = b.addr.as_inet() else {
                return true;
            };
            match self.breakers.admit(addr, now, &self.metrics) {
                Verdict::Send { probe: p } => {
                    probe.set(p);
                    true
                }
                Verdict::Refuse { retry_after } => {
                    let wait = refused.get().map_or(retry_after, |w| w.min(retry_after));
                    refused.set(Some(wait));
                    false
                }
            }
        };
        let budget = 2 * self.instances.get().len() + 4;
        let selected = |backend| {
            Pick::Selected(Selection {
                backend,
                panic: false,
                probe: probe.get(),
            })
        };
        if let Some(backend) = self
            .balancer
            .select_with(key, budget, |b, healthy| healthy && untried(b) && admit(b))
        {
            return selected(backend);
        }
        let backends = self.balancer.backends();
        if !backends.get_backend().iter().any(|b| backends.ready(b)) {
            if let Some(backend) = self
                .balancer
                .select_with(key, budget, |b, _| untried(b) && admit(b))
            {
                self.metrics.panic_selections.inc();
                return Pick::Selected(Selection {
                    backend,
                    panic: true,
                    probe: probe.get(),
                });
            }
        }
        match refused.get() {
            Some(retry_after) => {
                self.metrics.short_circuited.inc();
                Pick::CircuitOpen { retry_after }
            }
            None => Pick::Exhausted,
        }
    }

    /// Reports the outcome of an attempt on `addr` to its breaker.
    pub fn record_outcome(&self, addr: &SocketAddr, success: bool, probe: bool) {
        self.breakers
            .record(addr, success, probe, Instant::now(), &self.metrics);
    }

    /// Gives back a probe slot whose attempt produced no outcome.
    pub fn release_probe(&self, addr: &SocketAddr) {
        self.breakers.release_probe(addr);
    }

    /// Breaker state and time to its next probe, for the admin API.
    pub fn breaker_view(&self, addr: &SocketAddr) -> Option<(State, Duration)> {
        self.breakers.view(addr, Instant::now())
    }

    /// Number of instances in the discovery set.
    pub fn instance_count(&self) -> usize {
        self.instances.get().len()
    }

    /// Whether a response status counts as a breaker failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        matches!(status, 502..=504) || (self.config.circuit_breaker.trip_on_5xx && status >= 500)
    }

    /// A peer for `backend` with the service's timeouts.
    pub fn peer(&self, backend: &Backend) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(backend, false, String::new());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.config.connect_timeout);
        o.total_connection_timeout = Some(self.config.connect_timeout);
        o.read_timeout = Some(self.config.read_timeout);
        o.write_timeout = Some(self.config.write_timeout);
        o.idle_timeout = Some(self.config.idle_timeout);
        Box::new(peer)
    }

    /// Instances with their readiness, for the admin API.
    pub fn instances(&self) -> Vec<(Backend, bool)> {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .map(|b| (b.clone(), backends.ready(b)))
            .collect()
    }

    /// The discovery set fed to the balancer (the registry watcher writes here).
    pub fn instance_set(&self) -> &Arc<InstanceSet> {
        &self.instances
    }
}
