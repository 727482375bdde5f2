//! Per-request state carried through the proxy hooks, grouped by concern: what the request is
//! ([`RequestInfo`]), which route it took (the snapshot and the route's index in it), its
//! upstream attempts ([`UpstreamState`]), what the client will be answered ([`ReplyState`]) and
//! its trace. Everything acquired for the request — the in-flight gauge, the retry-budget entry,
//! a half-open breaker's probe slot, a concurrency-limit slot — is given back by [`RequestCtx::release`], which `logging`
//! calls as soon as the request is over (Pingora drops the context only after the client has
//! read the response and the connection is ready for the next request, which a slow reader can
//! delay) and `Drop` calls again as the backstop, so no early exit can leak any of it.

use super::mirror::MirrorState;
use crate::policy;
use crate::policy::compress::Encoder;
use crate::reply::ErrorCode;
use crate::retry::{Attempts, BudgetEntry};
use crate::snapshot::{Route, Snapshot};
use crate::telemetry::metrics::InFlight;
use crate::upstream::{LoadSlot, ProbeSlot, Upstream};
use http::HeaderValue;
use opentelemetry_sdk::trace::Span;
use pingora::protocols::http::compression::Algorithm;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request state.
pub struct RequestCtx {
    pub(super) request: RequestInfo,
    /// The snapshot the request runs on (loaded once, at its start).
    pub(super) snapshot: Option<Arc<Snapshot>>,
    /// Index of the matched route in the snapshot's router.
    pub(super) route: Option<usize>,
    pub(super) upstream: UpstreamState,
    pub(super) reply: ReplyState,
    /// The SERVER span's context, when tracing is on.
    pub(super) trace: Option<crate::telemetry::server_trace::ServerTrace>,
    pub(super) in_flight: Option<InFlight>,
    /// The request's copy to the route's mirror.
    pub(super) mirror: MirrorState,
}

/// What the request is and who sent it.
pub(super) struct RequestInfo {
    pub start: Instant,
    pub id: Option<HeaderValue>,
    /// The socket peer.
    pub peer_ip: IpAddr,
    pub peer_trusted: bool,
    /// The client, after trusted proxies' `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The normalised path, when it differs from the request's (sent upstream instead).
    pub normalized_path: Option<String>,
}

/// The request's attempts on the route's service.
#[derive(Default)]
pub(super) struct UpstreamState {
    /// The side of the route's split the request goes to (0 for a route with one service).
    pub side: usize,
    pub attempts: Attempts,
    /// The request's place in the service's retry budget.
    pub budget: Option<BudgetEntry>,
    /// Instances already tried; never selected again for this request.
    pub tried: Vec<SocketAddr>,
    /// The attempt in progress.
    pub current: Option<Attempt>,
    /// The instance of the last attempt, for the access log.
    pub last_instance: Option<SocketAddr>,
    /// Time to response header of the last attempt.
    pub response_time: Option<Duration>,
}

/// One attempt on one instance.
pub(super) struct Attempt {
    pub addr: SocketAddr,
    /// Held when the attempt is a half-open breaker's probe.
    pub probe: Option<ProbeSlot>,
    pub started: Instant,
    /// The outcome went to the instance's breaker.
    pub reported: bool,
    /// The attempt's place under the service's per-instance cap (given back on drop).
    pub _slot: Option<LoadSlot>,
    /// The CLIENT span, when the trace is sampled (boxed: an unsampled attempt, nearly all
    /// of them, then carries a pointer instead of ~300 bytes through every move).
    pub span: Option<Box<Span>>,
}

/// What the client will be answered.
#[derive(Default)]
pub(super) struct ReplyState {
    /// Set when Portico (not an upstream) decides the response.
    pub error: Option<ErrorCode>,
    pub gateway_made: bool,
    /// The `reason` of a gateway-made answer that is not an error (a redirect, ...).
    pub answered: Option<&'static str>,
    /// Seconds for `Retry-After` on a 503 Portico makes.
    pub retry_after: Option<u64>,
    /// What the route's policies learned (e.g. the `RateLimit-*` values).
    pub policy: policy::State,
    /// The compression this client accepts, when the route compresses.
    pub encoding: Option<Algorithm>,
    /// The encoder of a response being compressed.
    pub encoder: Option<Encoder>,
    /// A split's sticky cookie to set on the response.
    pub set_cookie: Option<HeaderValue>,
}

impl RequestCtx {
    /// State for a request whose head was just read.
    pub fn new() -> Self {
        Self {
            request: RequestInfo {
                start: Instant::now(),
                id: None,
                peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                peer_trusted: false,
                client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                normalized_path: None,
            },
            snapshot: None,
            route: None,
            upstream: UpstreamState::default(),
            reply: ReplyState::default(),
            trace: None,
            in_flight: None,
            mirror: MirrorState::Undecided,
        }
    }

    /// The matched route.
    pub(super) fn route(&self) -> Option<&Route> {
        Some(self.snapshot.as_ref()?.router().route(self.route?))
    }

    /// The request body limit: the route's own, else the server's.
    pub(super) fn body_limit(&self) -> u64 {
        let server = self
            .snapshot
            .as_ref()
            .map(|s| s.config().server.limits.max_request_body);
        self.route()
            .and_then(|r| r.body_limit())
            .or(server)
            .unwrap_or(u64::MAX)
    }

    /// Portico answers with `code` (not an upstream).
    pub(super) fn answer(&mut self, code: ErrorCode) {
        self.reply.error = Some(code);
        self.reply.gateway_made = true;
    }
}

impl UpstreamState {
    /// Reports the current attempt's outcome to its instance's breaker, once.
    pub(super) fn report(&mut self, upstream: &Upstream, success: bool) {
        let Some(attempt) = self.current.as_mut() else {
            return;
        };
        if std::mem::replace(&mut attempt.reported, true) {
            return;
        }
        match attempt.probe.take() {
            Some(slot) => slot.report(success),
            None => upstream.record_outcome(&attempt.addr, success),
        }
    }

    /// The current attempt is over and its instance is not to be tried again.
    pub(super) fn retire(&mut self) {
        if let Some(attempt) = self.current.take() {
            self.tried.push(attempt.addr);
        }
    }
}

impl RequestCtx {
    /// Gives back everything the request holds: the unused probe slot of its last attempt, its
    /// retry-budget entry, its in-flight count. Safe to call more than once.
    pub(super) fn release(&mut self) {
        let RequestCtx {
            snapshot,
            route,
            upstream,
            reply,
            in_flight,
            ..
        } = self;
        upstream.current = None;
        reply.policy.release();
        let side = upstream.side;
        if let Some(entry) = upstream.budget.take() {
            let route = snapshot
                .as_ref()
                .zip(*route)
                .map(|(s, i)| s.router().route(i));
            if let Some(service) = route.and_then(|r| r.upstream(side)) {
                service.budget().leave(entry);
            }
        }
        *in_flight = None;
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.release();
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
