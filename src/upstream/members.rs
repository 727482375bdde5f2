//! A service's instance set as the balancer sees it: static instances (addresses and the
//! addresses their host names resolve to) plus registry entries, each a `Backend` carrying
//! its probe spec and zone.

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
