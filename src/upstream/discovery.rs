//! The in-memory discovery source every balancer reads from. Static instances are written here
//! at build; the Redis registry watcher writes registry instances here too, so balancers never
//! talk to Redis themselves.

use super::Registration;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One service's instances as the balancer should see them.
#[derive(Debug, Default)]
pub struct Members {
    pub backends: BTreeSet<Backend>,
    /// Enablement by `Backend::hash_key`: draining instances are present but disabled, so they
    /// keep their health and breaker state and get no new requests.
    pub enabled: HashMap<u64, bool>,
    /// The registry entries these members were built from (static instances have none).
    pub registered: Vec<Registration>,
}

impl Members {
    /// Whether `backend` takes new requests.
    pub fn is_enabled(&self, backend: &Backend) -> bool {
        self.enabled
            .get(&enablement_key(backend))
            .copied()
            .unwrap_or(true)
    }
}

/// The key pingora's discovery enablement map uses: the hash of the backend's identity
/// (address and weight), as `Backend::hash_key` computes it (that one is crate-private).
pub fn enablement_key(backend: &Backend) -> u64 {
    let mut h = DefaultHasher::new();
    backend.hash(&mut h);
    h.finish()
}

/// The current members of one service.
#[derive(Debug, Default)]
pub struct InstanceSet {
    members: ArcSwap<Members>,
}

impl InstanceSet {
    /// A set holding `members`.
    pub fn new(members: Members) -> Self {
        Self {
            members: ArcSwap::from_pointee(members),
        }
    }

    /// Replaces the members; balancers pick them up on their next update.
    pub fn set(&self, members: Members) {
        self.members.store(Arc::new(members));
    }

    /// The current members.
    pub fn get(&self) -> Arc<Members> {
        self.members.load_full()
    }
}

/// `ServiceDiscovery` adapter over a shared [`InstanceSet`].
pub struct SetDiscovery(pub Arc<InstanceSet>);

#[async_trait]
impl ServiceDiscovery for SetDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let members = self.0.get();
        Ok((members.backends.clone(), members.enabled.clone()))
    }
}
