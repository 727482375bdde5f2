//! What an HTTP/1 connection keeps from one request to the next, whether it waits in its task
//! or dormant (`super::dormant`): its place under the limits, Pingora's keep-alive settings,
//! its deadlines, and its count among the idle.

use super::connections::ConnectionGuard;
use super::idle;
use prometheus::IntGauge;
use std::time::Duration;
use tokio::time::Instant;

/// What a connection's next request inherits from the previous one (Pingora's keep-alive
/// settings, kept here while the connection idles without a session).
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    /// Idle seconds allowed before the next request (`Some(0)`: no limit; `None`: no reuse).
    pub keepalive: Option<u64>,
    /// Requests the connection may still serve after the next (`None`: no limit).
    pub reuses: Option<u32>,
}

impl Carried {
    /// Whether the keep-alive outlasts the wait with the request state kept.
    pub fn sheds_when_idle(&self) -> bool {
        self.keepalive
            .is_some_and(|secs| secs == 0 || secs > idle::SHED_AFTER_SECS)
    }

    /// When the idle wait that follows the first [`idle::SHED_AFTER_SECS`] ends (`None`: never).
    pub fn idle_deadline(&self) -> Option<Instant> {
        // `Some(0)` has no end: the subtraction fails.
        let rest = self.keepalive?.checked_sub(idle::SHED_AFTER_SECS)?;
        Some(Instant::now() + Duration::from_secs(rest))
    }
}

/// What an HTTP/1 connection keeps from one request to the next, in its task or dormant.
pub struct Http1 {
    /// Its place under the connection limits.
    pub _place: ConnectionGuard,
    /// Its listener: an index into `Frontend::listeners`.
    pub listener: usize,
    pub header_timeout: Duration,
    pub opened: Instant,
    /// No request has been read yet.
    pub first: bool,
    pub carried: Carried,
    /// When the idle wait ends (`None`: never).
    pub deadline: Option<Instant>,
}

/// One in a gauge for as long as it lives.
pub struct Counted(IntGauge);

impl Counted {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}
