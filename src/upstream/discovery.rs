//! The in-memory discovery source every balancer reads from. Static instances are written here at
//! load; the Redis registry watcher writes here too, so balancers never talk to Redis themselves.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The current instance set of one service.
#[derive(Debug, Default)]
pub struct InstanceSet {
    backends: ArcSwap<BTreeSet<Backend>>,
}

impl InstanceSet {
    /// A set holding `backends`.
    pub fn new(backends: BTreeSet<Backend>) -> Self {
        Self {
            backends: ArcSwap::from_pointee(backends),
        }
    }

    /// Replaces the set; balancers pick it up on their next update.
    pub fn set(&self, backends: BTreeSet<Backend>) {
        self.backends.store(Arc::new(backends));
    }

    /// The current set.
    pub fn get(&self) -> Arc<BTreeSet<Backend>> {
        self.backends.load_full()
    }
}

/// `ServiceDiscovery` adapter over a shared [`InstanceSet`].
pub struct SetDiscovery(pub Arc<InstanceSet>);

#[async_trait]
impl ServiceDiscovery for SetDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok(((*self.0.get()).clone(), HashMap::new()))
    }
}
