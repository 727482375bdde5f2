//! Per-service upstream state: the balancer over the service's instances, the discovery set it
//! reads, its health probes and its metric handles. An `Upstream` outlives config reloads when
//! its service section is unchanged, so balancer position and health survive.

mod balancer;
pub mod breaker;
mod breakers;
mod discovery;
mod hash_key;
pub mod health;
mod selection;

pub use breakers::Verdict;
pub use discovery::{InstanceSet, Members};
pub use hash_key::HashKey;

use crate::config::{parse_instance, Balance, ServiceConfig};
use crate::registry::Registration;
use crate::telemetry::metrics::ServiceMetrics;
use balancer::Balancer;
use breaker::State;
use breakers::Breakers;
use discovery::SetDiscovery;
use health::ProbeSpec;
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
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
    spec: Arc<ProbeSpec>,
    hash_key: Option<HashKey>,
    pub metrics: ServiceMetrics,
    breakers: Breakers,
    /// Limits how many of this service's requests may be retrying at once.
    pub budget: crate::retry::RetryBudget,
    /// Serialises balancer updates: pingora forbids overlapping `update()` on one view.
    update_lock: tokio::sync::Mutex<()>,
    /// Rotation of fail-open (panic mode) picks.
    fail_open_cursor: AtomicUsize,
}

impl Upstream {
    /// Builds a service from validated configuration plus the registry entries it last had
    /// (carried across a reload). Call [`Upstream::refresh`] before use.
    pub fn new(
        name: &str,
        config: &ServiceConfig,
        registry: &Arc<HealthRegistry>,
        registered: Vec<Registration>,
    ) -> Self {
        let spec = Arc::new(ProbeSpec::new(name, config.health_check.as_ref()));
        let metrics = ServiceMetrics::new(name);
        let members = build_members(config, &spec, registered);
        for b in &members.backends {
            metrics.instance_health(&b.addr.to_string(), true);
        }
        metrics.instances.set(members.backends.len() as i64);
        let now = Instant::now();
        let addrs: Vec<SocketAddr> = inet_addrs(&members.backends).collect();
        let breakers = Breakers::new(&config.circuit_breaker, addrs.iter().copied(), now);
        breakers.export(&addrs, &metrics, now);
        let instances = Arc::new(InstanceSet::new(members));
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
            spec,
            balancer,
            instances,
            hash_key: config.hash_key.as_deref().and_then(HashKey::parse),
            metrics,
            breakers,
            budget: Default::default(),
            update_lock: tokio::sync::Mutex::new(()),
            fail_open_cursor: AtomicUsize::new(0),
        }
    }

    /// Replaces the registry part of the instance set with `registered` (static instances
    /// always stay; a registry entry at a static address is ignored). Breakers and health
    /// follow by address; the balancer is refreshed only when routing changed. Returns the
    /// backends that left, whose health verdicts the caller forgets.
    pub async fn apply_registrations(&self, registered: Vec<Registration>) -> Vec<Backend> {
        let _guard = self.update_lock.lock().await;
        let old = self.instances.get();
        let members = build_members(&self.config, &self.spec, registered);
        let same_routing = old.registered.len() == members.registered.len()
            && old
                .registered
                .iter()
                .zip(&members.registered)
                .all(|(a, b)| a.same_routing(b));
        if same_routing {
            // Heartbeats and metadata only: keep the view for the admin API, skip the rebuild.
            self.instances.set(members);
            return Vec::new();
        }
        let now = Instant::now();
        let gone: Vec<Backend> = old
            .backends
            .iter()
            .filter(|b| !members.backends.iter().any(|n| n.addr == b.addr))
            .cloned()
            .collect();
        for b in &gone {
            self.metrics.remove_instance(&b.addr.to_string());
        }
        let fresh = self.breakers.sync(inet_addrs(&members.backends), now);
        self.breakers.export(&fresh, &self.metrics, now);
        for b in &members.backends {
            if !old.backends.iter().any(|o| o.addr == b.addr) {
                self.metrics.instance_health(&b.addr.to_string(), true);
            }
        }
        self.metrics.instances.set(members.backends.len() as i64);
        self.instances.set(members);
        if let Err(e) = self.balancer.update().await {
            log::error!("service {}: balancer update failed: {e}", self.name);
        }
        gone
    }

    /// The registry entries in use (empty for static-only services).
    pub fn registrations(&self) -> Vec<Registration> {
        self.instances.get().registered.clone()
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

    /// Number of instances in the balancer (draining ones included).
    pub fn instance_count(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    /// Whether a response status counts as a breaker failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        matches!(status, 502..=504) || (self.config.circuit_breaker.trip_on_5xx && status >= 500)
    }

    /// A peer for `backend` with the service's timeouts.
    pub fn peer(&self, backend: &Backend) -> Box<HttpPeer> {
        let c = &self.config;
        // The SNI string is only built for TLS: formatting an address costs more than the rest.
        let sni = match (c.tls, c.sni.is_empty()) {
            (false, _) => String::new(),
            (true, false) => c.sni.clone(),
            (true, true) => backend
                .addr
                .as_inet()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
        };
        let mut peer = match backend.addr.as_inet() {
            Some(addr) => HttpPeer::new(*addr, c.tls, sni),
            None => HttpPeer::new(backend, c.tls, sni),
        };
        let o = &mut peer.options;
        if c.tls {
            o.verify_cert = c.tls_verify;
            o.verify_hostname = c.tls_verify;
        }
        if c.http2 {
            o.alpn = pingora::protocols::ALPN::H2;
        }
        o.connection_timeout = Some(self.config.connect_timeout);
        o.total_connection_timeout = Some(self.config.connect_timeout);
        o.read_timeout = Some(self.config.read_timeout);
        o.write_timeout = Some(self.config.write_timeout);
        o.idle_timeout = Some(self.config.idle_timeout);
        Box::new(peer)
    }

    /// Instances with their readiness and registry entry (None = static), for the admin API.
    pub fn instances(&self) -> Vec<(Backend, bool, Option<Registration>)> {
        let backends = self.balancer.backends();
        let members = self.instances.get();
        backends
            .get_backend()
            .iter()
            .map(|b| {
                let reg = members
                    .registered
                    .iter()
                    .find(|r| Some(&r.addr) == b.addr.as_inet())
                    .cloned();
                (b.clone(), backends.ready(b), reg)
            })
            .collect()
    }

    /// The discovery set fed to the balancer (the registry watcher writes here).
    pub fn instance_set(&self) -> &Arc<InstanceSet> {
        &self.instances
    }
}

/// Static instances plus registry entries at other addresses, weighted per the balance mode.
fn build_members(
    config: &ServiceConfig,
    spec: &Arc<ProbeSpec>,
    registered: Vec<Registration>,
) -> Members {
    let weight = |w: usize| match config.balance {
        Balance::RoundRobin => 1,
        _ => w,
    };
    let backend = |addr: SocketAddr, w: usize| {
        let mut b = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: weight(w),
            ext: Default::default(),
        };
        b.ext.insert(spec.clone());
        b
    };
    let mut backends = BTreeSet::new();
    let mut enabled = HashMap::new();
    let mut taken = std::collections::HashSet::new();
    for entry in &config.instances {
        if let Ok(i) = parse_instance(entry) {
            if taken.insert(i.addr) {
                backends.insert(backend(i.addr, i.weight));
            }
        }
    }
    // Sorted by id so that heartbeat order in the sorted set never looks like a change.
    let mut registered: Vec<Registration> = registered;
    registered.sort_by(|a, b| a.id.cmp(&b.id));
    registered.retain(|r| taken.insert(r.addr));
    for r in &registered {
        let b = backend(r.addr, r.weight);
        enabled.insert(discovery::enablement_key(&b), !r.draining);
        backends.insert(b);
    }
    Members {
        backends,
        enabled,
        registered,
    }
}

/// The IP addresses of `backends`.
fn inet_addrs(backends: &BTreeSet<Backend>) -> impl Iterator<Item = SocketAddr> + '_ {
    backends.iter().filter_map(|b| b.addr.as_inet().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::health::{self, Verdicts};

    fn reg(id: &str, port: u16, draining: bool) -> Registration {
        Registration {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            draining,
            heartbeat_ms: 0.0,
            zone: None,
            version: None,
            meta: Default::default(),
        }
    }

    fn upstream(initial: Vec<Registration>) -> Upstream {
        let cfg: ServiceConfig =
            serde_yaml::from_str("discovery: redis\ncircuit_breaker: {consecutive_failures: 1}\n")
                .unwrap();
        let registry = health::registry(Arc::new(Verdicts::default()));
        Upstream::new("registry-test", &cfg, &registry, initial)
    }

    #[tokio::test]
    async fn breaker_state_follows_addresses_across_registry_updates() {
        let (a, b) = (reg("a", 1, false), reg("b", 2, false));
        let up = upstream(vec![a.clone(), b.clone()]);
        up.refresh().await.unwrap();
        up.record_outcome(&a.addr, false, false);
        assert_eq!(up.breaker_view(&a.addr).unwrap().0, State::Open);

        let mut heavier = b.clone();
        heavier.weight = 3;
        assert!(up
            .apply_registrations(vec![a.clone(), heavier])
            .await
            .is_empty());
        assert_eq!(up.breaker_view(&a.addr).unwrap().0, State::Open, "kept");

        let gone = up.apply_registrations(vec![b.clone()]).await;
        assert_eq!(gone.len(), 1);
        assert!(up.breaker_view(&a.addr).is_none());
        up.apply_registrations(vec![a.clone(), b.clone()]).await;
        assert_eq!(
            up.breaker_view(&a.addr).unwrap().0,
            State::Closed,
            "a returning instance starts fresh"
        );
    }

    #[tokio::test]
    async fn draining_instances_get_no_new_requests_even_in_panic_mode() {
        let up = upstream(vec![reg("a", 1, true), reg("b", 2, false)]);
        up.refresh().await.unwrap();
        for _ in 0..10 {
            match up.select(b"", &[], Instant::now()) {
                Pick::Selected(s) => assert_eq!(s.backend.addr.to_string(), "127.0.0.1:2"),
                _ => panic!("b is selectable"),
            }
        }
        up.apply_registrations(vec![reg("a", 1, true)]).await;
        assert!(matches!(
            up.select(b"", &[], Instant::now()),
            Pick::Exhausted
        ));
        assert_eq!(up.instance_count(), 1);
    }

    #[tokio::test]
    async fn static_instances_always_stay_and_win_over_registry_entries() {
        let cfg: ServiceConfig = serde_yaml::from_str(
            "discovery: redis\ninstances: [\"127.0.0.1:1 weight=2\"]\nbalance: weighted\n",
        )
        .unwrap();
        let registry = health::registry(Arc::new(Verdicts::default()));
        let up = Upstream::new("static-test", &cfg, &registry, vec![]);
        up.refresh().await.unwrap();
        up.apply_registrations(vec![reg("dup", 1, true), reg("b", 2, false)])
            .await;
        let listed = up.instances();
        assert_eq!(listed.len(), 2);
        let first = listed
            .iter()
            .find(|(b, _, _)| b.addr.to_string() == "127.0.0.1:1")
            .unwrap();
        assert!(first.2.is_none(), "the static entry wins");
        assert_eq!(first.0.weight, 2);
        up.apply_registrations(vec![]).await;
        assert_eq!(up.instance_count(), 1);
    }
}
