//! Per-service upstream state: the balancer over the service's instances, the discovery set it
//! reads, its health probes, breakers, retry budget and metric handles. An `Upstream` outlives
//! config reloads when its service section is unchanged, so balancer position, health and
//! breaker state survive.
//!
//! Instances come from two places: the static list (IP addresses, or host names that
//! [`Upstream::resolve_hosts`] looks up off the request path and keeps the last good answer
//! of) and a registry (written through [`Upstream::apply_registrations`]). Nothing here blocks
//! on DNS.

mod balancer;
pub mod breaker;
mod breakers;
mod discovery;
mod hash_key;
pub mod health;
mod load;
mod members;
mod registration;
mod selection;
mod slow_start;
mod spec;
mod zones;

pub use breakers::Verdict;
pub use discovery::{InstanceSet, Members};
pub use hash_key::HashKey;
pub use load::LoadSlot;
pub use registration::Registration;
pub use spec::{ServiceSpec, StaticInstance, Target};

use crate::config::{Balance, ServiceConfig};
use crate::retry::RetryBudget;
use crate::telemetry::metrics::ServiceMetrics;
use balancer::Balancer;
use breaker::State;
use breakers::Breakers;
use discovery::SetDiscovery;
use health::ProbeSpec;
use members::{build_members, inet_addrs};
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A selected instance.
pub struct Selection {
    pub backend: Backend,
    /// Chosen while every instance was unhealthy (fail-open "panic mode").
    pub panic: bool,
    /// A half-open breaker probe: its outcome must be reported.
    pub probe: bool,
    /// The attempt's place under `max_connections_per_instance`, when the service caps it.
    pub slot: Option<LoadSlot>,
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
    /// Every instance that could be tried has `max_connections_per_instance` in flight.
    Saturated,
}

/// A half-open breaker's probe slot, held by the attempt that is the probe. Reporting the
/// attempt's outcome uses the slot; dropping it unreported (the client left, the request
/// ended before an answer) gives it back, so a breaker can never run out of probes.
pub struct ProbeSlot {
    upstream: Arc<Upstream>,
    addr: SocketAddr,
    armed: bool,
}

impl ProbeSlot {
    /// Reports the probe's outcome to the breaker.
    pub fn report(mut self, success: bool) {
        self.armed = false;
        self.upstream.record(&self.addr, success, true);
    }
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        if self.armed {
            self.upstream.release_probe(&self.addr);
        }
    }
}

/// Addresses of the static host names, as last resolved.
pub type Resolved = HashMap<Target, Vec<SocketAddr>>;

/// One service's balancer and everything needed to reach its instances.
pub struct Upstream {
    name: String,
    /// The configuration this upstream was built from (reuse test on reload).
    config: ServiceConfig,
    statics: Vec<StaticInstance>,
    /// Last good addresses of the static host names.
    resolved: Mutex<Resolved>,
    balancer: Balancer,
    instances: Arc<InstanceSet>,
    probe: Arc<ProbeSpec>,
    hash_key: Option<HashKey>,
    metrics: ServiceMetrics,
    breakers: Breakers,
    /// Limits how many of this service's requests may be retrying at once.
    budget: RetryBudget,
    /// Serialises balancer updates: pingora forbids overlapping `update()` on one view.
    update_lock: tokio::sync::Mutex<()>,
    /// Rotation of fail-open (panic mode) picks.
    fail_open_cursor: AtomicUsize,
    /// In-flight counts per instance, when the service caps them.
    load: Option<load::InstanceLoad>,
    /// Ramps of new and recovered instances, when the service has `slow_start`.
    slow_start: Option<slow_start::SlowStart>,
    /// The local-zone preference, when `zone_aware` names a zone.
    zones: Option<zones::ZoneAware>,
}

impl Upstream {
    /// Builds a service from its compiled spec plus what a previous generation of it knew: the
    /// registry entries and resolved host names (carried across a reload). Call
    /// [`Upstream::resolve_hosts`] and [`Upstream::refresh`] before use.
    pub fn new(
        spec: &ServiceSpec,
        registry: &Arc<HealthRegistry>,
        registered: Vec<Registration>,
        resolved: Resolved,
    ) -> Self {
        let name = spec.name.as_str();
        let config = &spec.config;
        let probe = Arc::new(spec.probe.clone());
        let metrics = ServiceMetrics::new(name);
        let zones = config.zone_aware.as_ref().and_then(|z| {
            let aware =
                zones::ZoneAware::new(&z.local_zone, z.min_healthy, metrics.zone_counters());
            if aware.is_none() {
                log::info!("service {name}: zone_aware has no local_zone; zone awareness is off");
            }
            aware
        });
        if config.discovery == crate::config::Discovery::Redis {
            // At zero before the watcher's first pass, which runs after the gateway is ready.
            crate::telemetry::redis::registry_service(name);
        }
        let members = build_members(config, &probe, &spec.instances, &resolved, registered);
        if let Some(zones) = &zones {
            zones.check_zones(name, &members.backends);
        }
        for b in &members.backends {
            metrics.instance_health(&b.addr.to_string(), true);
        }
        metrics.set_instances(members.backends.len());
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
            // Two choices are made in `selection.rs`; the random balancer keeps the set and
            // serves the fallback when neither choice can be used.
            Balance::Random | Balance::LeastRequest | Balance::Ewma => {
                Balancer::Random(LoadBalancer::from_backends(backends()))
            }
            Balance::ConsistentHash => {
                Balancer::Consistent(LoadBalancer::from_backends(backends()))
            }
        };
        Self {
            name: name.to_string(),
            config: config.clone(),
            statics: spec.instances.clone(),
            resolved: Mutex::new(resolved),
            probe,
            balancer,
            instances,
            hash_key: spec.hash_key.clone(),
            metrics,
            breakers,
            budget: RetryBudget::default(),
            update_lock: tokio::sync::Mutex::new(()),
            fail_open_cursor: AtomicUsize::new(0),
            slow_start: config
                .slow_start
                .map(|w| slow_start::SlowStart::new(w, addrs.iter().copied(), now)),
            zones,
            // Counted when capped, and always for the balancers that compare load.
            load: match (config.max_connections_per_instance, config.balance.is_p2c()) {
                (Some(max), _) => Some(load::InstanceLoad::new(max)),
                (None, true) => Some(load::InstanceLoad::new(u32::MAX)),
                (None, false) => None,
            },
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service section this upstream was built from.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The service's metric handles.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// The service's retry budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
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

    /// Reports the outcome of an ordinary (non-probe) attempt on `addr` to its breaker.
    pub fn record_outcome(&self, addr: &SocketAddr, success: bool) {
        self.record(addr, success, false);
    }

    fn record(&self, addr: &SocketAddr, success: bool, probe: bool) {
        self.breakers
            .record(addr, success, probe, Instant::now(), &self.metrics);
    }

    /// The probe slot the breaker of `addr` granted to a selection.
    pub fn probe_slot(self: &Arc<Self>, addr: SocketAddr) -> ProbeSlot {
        ProbeSlot {
            upstream: self.clone(),
            addr,
            armed: true,
        }
    }

    /// Gives back a probe slot whose attempt produced no outcome.
    fn release_probe(&self, addr: &SocketAddr) {
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

    fn spec(name: &str, yaml: &str) -> ServiceSpec {
        let cfg: ServiceConfig = serde_yaml::from_str(yaml).unwrap();
        let mut problems = crate::config::Problems::default();
        let spec = ServiceSpec::compile(name, &cfg, true, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        spec
    }

    fn upstream(initial: Vec<Registration>) -> Upstream {
        let spec = spec(
            "registry-test",
            "discovery: redis\ncircuit_breaker: {consecutive_failures: 1}\n",
        );
        let registry = health::registry(Arc::new(Verdicts::default()));
        Upstream::new(&spec, &registry, initial, Resolved::new())
    }

    #[tokio::test]
    async fn breaker_state_follows_addresses_across_registry_updates() {
        let (a, b) = (reg("a", 1, false), reg("b", 2, false));
        let up = upstream(vec![a.clone(), b.clone()]);
        up.refresh().await.unwrap();
        up.record_outcome(&a.addr, false);
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
        let spec = spec(
            "static-test",
            "discovery: redis\ninstances: [\"127.0.0.1:1 weight=2\"]\nbalance: weighted\n",
        );
        let registry = health::registry(Arc::new(Verdicts::default()));
        let up = Upstream::new(&spec, &registry, vec![], Resolved::new());
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

    #[tokio::test]
    async fn host_names_resolve_off_the_build_and_a_failed_lookup_keeps_the_last_answer() {
        let spec = spec(
            "dns-test",
            "instances: [\"localhost:7\", \"no-such-host.invalid:80\"]\n",
        );
        let registry = health::registry(Arc::new(Verdicts::default()));
        let gone = Target::Host {
            name: "no-such-host.invalid".into(),
            port: 80,
        };
        let known = Resolved::from([(gone, vec!["10.9.9.9:80".parse().unwrap()])]);
        let up = Upstream::new(&spec, &registry, vec![], known);
        up.refresh().await.unwrap();
        let addrs = |up: &Upstream| -> Vec<String> {
            up.instances()
                .iter()
                .map(|(b, _, _)| b.addr.to_string())
                .collect()
        };
        assert_eq!(
            addrs(&up),
            ["10.9.9.9:80"],
            "building looks nothing up; a carried answer is used"
        );
        let failures =
            crate::telemetry::metrics::UPSTREAM_DNS_FAILURES.with_label_values(&["dns-test"]);
        let before = failures.get();
        up.resolve_hosts().await;
        let now = addrs(&up);
        assert!(now.contains(&"127.0.0.1:7".to_string()), "{now:?}");
        assert!(
            now.contains(&"10.9.9.9:80".to_string()),
            "kept after a failed lookup: {now:?}"
        );
        assert_eq!(failures.get(), before + 1);
    }
}
