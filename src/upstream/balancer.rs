//! One pingora `LoadBalancer` per service, whichever selection algorithm it uses.

use pingora_load_balancing::selection::{Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

/// A service's balancer; `round_robin` and `weighted` share one type (weights decide).
pub enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<Consistent>),
}

impl Balancer {
    /// Picks the first backend `accept` takes, trying at most `max_iterations` candidates.
    pub fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: impl Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, max_iterations, accept),
            Balancer::Random(lb) => lb.select_with(key, max_iterations, accept),
            Balancer::Consistent(lb) => lb.select_with(key, max_iterations, accept),
        }
    }

    /// Membership, enablement and health of the balancer's backends.
    pub fn backends(&self) -> &Backends {
        match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Random(lb) => lb.backends(),
            Balancer::Consistent(lb) => lb.backends(),
        }
    }

    /// Re-reads discovery and rebuilds the selector if membership changed.
    pub async fn update(&self) -> pingora::Result<()> {
        match self {
            Balancer::RoundRobin(lb) => lb.update().await,
            Balancer::Random(lb) => lb.update().await,
            Balancer::Consistent(lb) => lb.update().await,
        }
    }
}
