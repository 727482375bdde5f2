//! Per-service upstream state: the balancer over the service's instances, the discovery set it
//! reads, its health probes and its metric handles. An `Upstream` outlives config reloads when
//! its service section is unchanged, so balancer position and health survive.

mod balancer;
mod discovery;
mod hash_key;
pub mod health;

pub use discovery::InstanceSet;
pub use hash_key::HashKey;

use crate::config::{parse_instance, Balance, ServiceConfig};
use crate::telemetry::metrics::ServiceMetrics;
use balancer::Balancer;
use discovery::SetDiscovery;
use health::ProbeSpec;
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// A selected instance.
pub struct Selection {
    pub backend: Backend,
    /// Chosen while every instance was unhealthy (fail-open "panic mode").
    pub panic: bool,
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

    /// Picks a healthy instance not in `tried`. When no instance at all is healthy, falls back
    /// to the whole set (panic mode) rather than failing every request.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Selection> {
        let untried = |b: &Backend| b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let budget = 2 * self.instances.get().len() + 4;
        if let Some(backend) = self
            .balancer
            .select_with(key, budget, |b, healthy| healthy && untried(b))
        {
            return Some(Selection {
                backend,
                panic: false,
            });
        }
        let backends = self.balancer.backends();
        let all = backends.get_backend();
        if all.iter().any(|b| backends.ready(b)) {
            return None;
        }
        let backend = self.balancer.select_with(key, budget, |b, _| untried(b))?;
        self.metrics.panic_selections.inc();
        Some(Selection {
            backend,
            panic: true,
        })
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
