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

/// Longest wait for one host-name lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Replaces the registry part of the instance set with `registered` (static instances
    /// always stay; a registry entry at a static address is ignored). Breakers and health
    /// follow by address; the balancer is refreshed only when routing changed. Returns the
    /// backends that left, whose health verdicts the caller forgets.
    pub async fn apply_registrations(&self, registered: Vec<Registration>) -> Vec<Backend> {
        let _guard = self.update_lock.lock().await;
        self.rebuild(registered).await
    }

    /// Looks up the static host names (on tokio's blocking pool, never on a serving thread).
    /// A failed lookup keeps the last good addresses and is counted
    /// (`portico_upstream_dns_failures_total`); a changed answer re-balances. Returns the
    /// backends that left.
    pub async fn resolve_hosts(&self) -> Vec<Backend> {
        let hosts: Vec<&Target> = self
            .statics
            .iter()
            .map(|s| &s.target)
            .filter(|t| matches!(t, Target::Host { .. }))
            .collect();
        if hosts.is_empty() {
            return Vec::new();
        }
        // All names at once: a reload waits for the slowest lookup, not for their sum.
        let lookups = hosts.into_iter().map(|target| async move {
            let Target::Host { name, port } = target else {
                return (target, Err("not a host name".to_string()));
            };
            let lookup = tokio::net::lookup_host((name.as_str(), *port));
            let answer = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => {
                    let mut addrs: Vec<SocketAddr> = addrs.collect();
                    addrs.sort();
                    addrs.dedup();
                    if addrs.is_empty() {
                        Err("no address".to_string())
                    } else {
                        Ok(addrs)
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            };
            (target, answer)
        });
        let mut answers = Vec::new();
        for (target, answer) in futures_util::future::join_all(lookups).await {
            match answer {
                Ok(addrs) => answers.push((target.clone(), addrs)),
                Err(e) => self.lookup_failed(target, &e),
            }
        }
        let _guard = self.update_lock.lock().await;
        let changed = {
            let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            let mut changed = false;
            for (target, addrs) in answers {
                if resolved.get(&target) != Some(&addrs) {
                    log::info!("service {}: {target} resolves to {addrs:?}", self.name);
                    resolved.insert(target, addrs);
                    changed = true;
                }
            }
            changed
        };
        if !changed {
            return Vec::new();
        }
        let registered = self.instances.get().registered.clone();
        self.rebuild(registered).await
    }

    fn lookup_failed(&self, target: &Target, error: &str) {
        self.metrics.count_dns_failure();
        let known = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned();
        match known {
            Some(addrs) => log::warn!(
                "service {}: cannot resolve {target} ({error}); keeping {addrs:?}",
                self.name
            ),
            None => log::error!(
                "service {}: cannot resolve {target} ({error}); it gets no traffic until it resolves",
                self.name
            ),
        }
    }

    /// The resolved host names, for the next generation of this service after a reload.
    pub fn resolved_hosts(&self) -> Resolved {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the members from the static list and `registered`; the caller holds the
    /// update lock.
    async fn rebuild(&self, registered: Vec<Registration>) -> Vec<Backend> {
        let old = self.instances.get();
        let members = {
            let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            build_members(
                &self.config,
                &self.probe,
                &self.statics,
                &resolved,
                registered,
            )
        };
        let same_routing = old.backends == members.backends
            && old.registered.len() == members.registered.len()
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
        if let Some(ramps) = &self.slow_start {
            ramps.retain(|a| inet_addrs(&members.backends).any(|m| m == *a));
        }
        let fresh = self.breakers.sync(inet_addrs(&members.backends), now);
        self.breakers.export(&fresh, &self.metrics, now);
        for b in &members.backends {
            if !old.backends.iter().any(|o| o.addr == b.addr) {
                self.metrics.instance_health(&b.addr.to_string(), true);
            }
        }
        self.metrics.set_instances(members.backends.len());
        if let Some(zones) = &self.zones {
            zones.check_zones(&self.name, &members.backends);
        }
        self.instances.set(members);
        if let Err(e) = self.balancer.update().await {
            log::error!("service {}: balancer update failed: {e}", self.name);
        }
        gone
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
