//! Per-request state carried through the proxy hooks, and the retry decision that reads and
//! updates it.

use crate::ratelimit::RateHeaders;
use crate::reply::ErrorCode;
use crate::retry::Cause;
use crate::snapshot::{RouteTarget, Snapshot};
use http::HeaderValue;
use pingora::{Error, ErrorType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Per-request state.
pub struct RequestCtx {
    pub(super) start: Instant,
    pub(super) snapshot: Option<Arc<Snapshot>>,
    pub(super) route: Option<usize>,
    pub(super) request_id: Option<HeaderValue>,
    pub(super) peer_ip: IpAddr,
    pub(super) peer_trusted: bool,
    pub(super) client_ip: IpAddr,
    /// Instances that failed to connect; never selected again for this request.
    pub(super) tried: Vec<SocketAddr>,
    pub(super) attempts: u32,
    pub(super) current: Option<SocketAddr>,
    /// The current attempt is a half-open breaker probe.
    pub(super) probe: bool,
    /// The current attempt's outcome was reported to its breaker.
    pub(super) outcome_recorded: bool,
    /// Seconds for `Retry-After` on a 503 Portico makes.
    pub(super) retry_after: Option<u64>,
    /// End of the route's time budget, retries included.
    pub(super) deadline: Option<Instant>,
    /// The request counts in its service's retry budget (entered / holding a retry slot).
    pub(super) budget_entered: bool,
    pub(super) retry_slot: bool,
    /// Why the next attempt is a retry.
    pub(super) retry_cause: Option<Cause>,
    pub(super) attempt_start: Option<Instant>,
    /// Set when Portico (not an upstream) decides the response.
    pub(super) error: Option<ErrorCode>,
    pub(super) gateway_made: bool,
    pub(super) in_flight: bool,
    /// `RateLimit-*` values for the response, when a rule governs the request.
    pub(super) rate_headers: Option<RateHeaders>,
    /// The SERVER span's context, when tracing is on.
    pub(super) trace: Option<opentelemetry::Context>,
    /// The CLIENT span of the attempt in progress.
    pub(super) client_span: Option<opentelemetry_sdk::trace::Span>,
    /// The instance of the last attempt, for the access log.
    pub(super) last_instance: Option<SocketAddr>,
    /// Time to response header of the last attempt.
    pub(super) upstream_time: Option<std::time::Duration>,
    /// The normalised path, when it differs from the request's (sent upstream instead).
    pub(super) normalized_path: Option<String>,
    /// Request body bytes seen so far.
    pub(super) body_bytes: u64,
}

impl RequestCtx {
    pub(super) fn target(&self) -> Option<&RouteTarget> {
        Some(&self.snapshot.as_ref()?.targets[self.route?])
    }

    /// Reports the current attempt's outcome to its instance's breaker, once.
    pub(super) fn record_outcome(&mut self, success: bool) {
        if self.outcome_recorded {
            return;
        }
        self.outcome_recorded = true;
        if let (Some(addr), Some(target)) = (self.current, self.target()) {
            target.upstream.record_outcome(&addr, success, self.probe);
        }
    }
}

/// Marks the error that asks pingora to retry after a 502/503/504 answer.
pub(super) const STATUS_RETRY: &str = "PorticoStatusRetry";

pub(super) fn is_status_retry(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom(name) if *name == STATUS_RETRY)
}

/// Whether the failed attempt may be retried: the route's policy, the deadline and the
/// service's retry budget must all allow it. Takes a budget slot on a request's first retry.
pub(super) fn retry_allowed(ctx: &mut RequestCtx, cause: Cause, method: &http::Method) -> bool {
    let (Some(snapshot), Some(i)) = (ctx.snapshot.clone(), ctx.route) else {
        return false;
    };
    if !snapshot
        .router
        .route(i)
        .retry
        .allows(cause, method, ctx.attempts)
        || ctx.deadline.is_some_and(|d| Instant::now() >= d)
    {
        return false;
    }
    let upstream = &snapshot.targets[i].upstream;
    if !ctx.retry_slot {
        if !upstream.budget.try_take() {
            upstream.metrics.retry_budget_exhausted.inc();
            return false;
        }
        ctx.retry_slot = true;
    }
    ctx.retry_cause = Some(cause);
    true
}
