//! A service's instance set as the balancer sees it: static instances (addresses and the
//! addresses their host names resolve to) plus registry entries, each a `Backend` carrying
//! its probe spec and zone — built here, and kept current as the registry and the resolver
//! answer (breakers, health, slow start and zones follow the set by address).

use super::discovery::{self, Members};
use super::health::ProbeSpec;
use super::spec::{StaticInstance, Target};
use super::zones;
use super::{Registration, Resolved};
use crate::config::{Balance, ServiceConfig};
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for one host-name lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Static instances (IP addresses and resolved host names) plus registry entries at other
/// addresses, weighted per the balance mode.
pub(super) fn build_members(
    config: &ServiceConfig,
    probe: &Arc<ProbeSpec>,
    statics: &[StaticInstance],
    resolved: &Resolved,
    registered: Vec<Registration>,
) -> Members {
    let weight = |w: usize| match config.balance {
        Balance::RoundRobin => 1,
        _ => w,
    };
    let backend = |addr: SocketAddr, w: usize, zone: Option<&String>| {
        let mut b = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: weight(w),
            ext: Default::default(),
        };
        b.ext.insert(probe.clone());
        if let Some(zone) = zone {
            b.ext.insert(zones::Zone(Arc::from(zone.as_str())));
        }
        b
    };
    let mut backends = BTreeSet::new();
    let mut enabled = HashMap::new();
    let mut taken = std::collections::HashSet::new();
    for instance in statics {
        let addrs = match &instance.target {
            Target::Ip(addr) => std::slice::from_ref(addr),
            host => resolved.get(host).map_or(&[][..], Vec::as_slice),
        };
        for addr in addrs {
            if taken.insert(*addr) {
                backends.insert(backend(*addr, instance.weight, instance.zone.as_ref()));
            }
        }
    }
    // Sorted by id so that heartbeat order in the sorted set never looks like a change.
    let mut registered: Vec<Registration> = registered;
    registered.sort_by(|a, b| a.id.cmp(&b.id));
    registered.retain(|r| taken.insert(r.addr));
    for r in &registered {
        let b = backend(r.addr, r.weight, r.zone.as_ref());
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
pub(super) fn inet_addrs(backends: &BTreeSet<Backend>) -> impl Iterator<Item = SocketAddr> + '_ {
    backends.iter().filter_map(|b| b.addr.as_inet().copied())
}

impl super::Upstream {
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
}
