//! Attempts on the route's service: choosing the instance for each one (`upstream_peer`, which
//! Pingora calls again for every retry), and what the end of an attempt means — the breaker's
//! outcome, the attempt metrics, the CLIENT span, and whether another attempt follows
//! ([`crate::retry::Attempts`] decides; this module carries the decision out).

use super::context::{Attempt, RequestCtx};
use super::Proxy;
use crate::reply::ErrorCode;
use crate::retry::{Cause, Decision, Refusal, TimeLeft};
use crate::telemetry::tracing::end_client_span;
use crate::upstream::{Pick, Selection, Upstream};
use http::Method;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Marks the error that asks Pingora to retry after a 502/503/504 answer.
pub(super) const STATUS_RETRY: &str = "PorticoStatusRetry";

/// Whether `e` is Portico's own request for a status retry.
pub(super) fn is_status_retry(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom(name) if *name == STATUS_RETRY)
}

/// How an attempt failed without a response.
pub(super) enum Failure<'a> {
    /// The connection could not be made: nothing was sent.
    Connect(&'a Error),
    /// The connection broke or timed out after the request was (partly) sent;
    /// `truncated` when the request body outgrew the retry buffer.
    Transfer { error: &'a Error, truncated: bool },
}

impl Proxy {
    /// Chooses the instance for the next attempt (waiting out a retry's backoff first) and
    /// returns its peer, with timeouts no longer than the route's remaining time.
    pub(super) async fn next_attempt(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(snapshot), Some(index)) = (ctx.snapshot.clone(), ctx.route) else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let route = snapshot.router().route(index);
        let Some(upstream) = route.upstream(ctx.upstream.side) else {
            return Error::e_explain(ErrorType::InternalError, "the route has no service");
        };
        // One clock read serves the deadline, the selection and the attempt's start (each
        // read is ~20 ns here, and the four used to be taken nanoseconds apart).
        let mut now = Instant::now();
        let attempts = &mut ctx.upstream.attempts;
        if let Some((cause, wait)) = attempts.backoff(route.retry(), now, fastrand::f64()) {
            upstream.metrics().retried(cause);
            tokio::time::sleep(wait).await;
            now = Instant::now();
        }
        let time_left = match ctx.upstream.attempts.time_left(now) {
            TimeLeft::Exceeded => {
                ctx.reply.error = Some(ErrorCode::DeadlineExceeded);
                return Error::e_explain(ErrorType::HTTPStatus(504), "route deadline exceeded");
            }
            TimeLeft::Left(left) => Some(left),
            TimeLeft::Unbounded => None,
        };
        let key = upstream
            .hash_key()
            .map(|k| k.extract(session.req_header(), ctx.request.client_ip))
            .unwrap_or_default();
        let selection = match upstream.select(&key, &ctx.upstream.tried, now) {
            Pick::Selected(selection) => selection,
            Pick::CircuitOpen { retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return no_instance(
                    ctx,
                    ErrorCode::CircuitOpen,
                    seconds,
                    "every breaker is open",
                );
            }
            Pick::Exhausted => {
                return no_instance(ctx, ErrorCode::NoHealthyUpstream, 1, "no instance to try")
            }
            Pick::Saturated => {
                return no_instance(
                    ctx,
                    ErrorCode::Overloaded,
                    1,
                    "every instance is at its cap",
                )
            }
        };
        let peer = within(upstream.peer(&selection.backend), time_left);
        self.start_attempt(session, ctx, upstream, selection, now)?;
        Ok(peer)
    }

    /// Records the attempt going out on `selection` at `now`; a previous attempt Pingora retried
    /// by itself (a stale pooled connection) ends here.
    fn start_attempt(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        upstream: &Arc<Upstream>,
        selection: Selection,
        now: Instant,
    ) -> Result<()> {
        let Some(addr) = selection.backend.addr.as_inet().copied() else {
            return Error::e_explain(ErrorType::InternalError, "instance without an IP address");
        };
        if let Some(span) = ctx.upstream.current.take().and_then(|a| a.span) {
            end_client_span(*span, None, Some("retried"));
        }
        ctx.upstream.attempts.begin();
        let span = match (self.gateway.tracing(), &ctx.trace) {
            (Some(tracing), Some(cx)) => {
                let req = session.req_header();
                let resend = ctx.upstream.attempts.made() - 1;
                tracing
                    .client_span(cx, &req.method, addr, resend)
                    .map(Box::new)
            }
            _ => None,
        };
        ctx.upstream.current = Some(Attempt {
            addr,
            probe: selection.probe.then(|| upstream.probe_slot(addr)),
            started: now,
            reported: false,
            span,
            _slot: selection.slot,
        });
        ctx.upstream.last_instance = Some(addr);
        Ok(())
    }

    /// The connection of an attempt broke or timed out after the request went out: an upstream
    /// failure counts against the instance and may be retried per the route; otherwise
    /// Pingora's own policy applies (only an idempotent request that met a stale pooled
    /// connection is tried again).
    pub(super) fn transfer_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
        client_reused: bool,
    ) -> Box<Error> {
        let truncated = session.as_ref().retry_buffer_truncated();
        let method = &session.req_header().method;
        if e.esource() == &ErrorSource::Upstream {
            let failure = Failure::Transfer {
                error: &e,
                truncated,
            };
            if self.attempt_failed(ctx, failure, method) {
                e.set_retry(true);
                return e;
            }
        }
        if !method.is_idempotent() || truncated {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// An attempt failed without a response: counts it against the instance and says whether
    /// another attempt follows.
    pub(super) fn attempt_failed(
        &self,
        ctx: &mut RequestCtx,
        failure: Failure<'_>,
        method: &Method,
    ) -> bool {
        let now = Instant::now();
        let RequestCtx {
            snapshot,
            route,
            upstream: state,
            reply,
            ..
        } = ctx;
        let (error, cause) = match &failure {
            Failure::Connect(e) => (*e, Cause::ConnectFailure),
            Failure::Transfer { error, .. } => (*error, Cause::Error),
        };
        reply.error = Some(match failure {
            Failure::Transfer { .. } if state.attempts.past_deadline(now) => {
                ErrorCode::DeadlineExceeded
            }
            _ => error_code(error),
        });
        let kind = error_kind(error.etype());
        if let Some(span) = state.current.as_mut().and_then(|a| a.span.take()) {
            end_client_span(*span, None, Some(kind));
        }
        let (Some(snapshot), Some(index)) = (snapshot.as_ref(), *route) else {
            return false;
        };
        let route = snapshot.router().route(index);
        let Some(upstream) = route.upstream(state.side) else {
            return false;
        };
        state.report(upstream, false);
        upstream.metrics().attempt_error(kind);
        match failure {
            Failure::Connect(_) => state.retire(),
            Failure::Transfer {
                truncated: true, ..
            } => return false,
            Failure::Transfer { .. } => {}
        }
        let Some(entry) = state.budget.as_mut() else {
            return false;
        };
        let budget = (upstream.budget(), entry);
        match state
            .attempts
            .after_failure(cause, method, route.retry(), now, budget)
        {
            Decision::Retry => {
                state.retire();
                true
            }
            Decision::GiveUp(Refusal::Budget) => {
                upstream.metrics().count_retry_budget_spent();
                false
            }
            Decision::GiveUp(_) => false,
        }
    }

    /// An attempt got a response header with `status`: reports it to the instance's breaker
    /// and says whether the answer is retried on another instance (a 502/503/504 under a
    /// route that retries on `status`).
    pub(super) fn attempt_answered(
        &self,
        ctx: &mut RequestCtx,
        status: u16,
        method: &Method,
    ) -> bool {
        let RequestCtx {
            snapshot,
            route,
            upstream: state,
            ..
        } = ctx;
        let (Some(snapshot), Some(index)) = (snapshot.as_ref(), *route) else {
            return false;
        };
        let route = snapshot.router().route(index);
        let Some(upstream) = route.upstream(state.side) else {
            return false;
        };
        let failed = upstream.is_failure_status(status);
        state.report(upstream, !failed);
        if let Some(attempt) = state.current.as_mut() {
            let took = attempt.started.elapsed();
            state.response_time = Some(took);
            upstream.metrics().observe_response(took);
            upstream.observe_latency(&attempt.addr, took);
            if let Some(span) = attempt.span.take() {
                end_client_span(*span, Some(status), None);
            }
        }
        upstream.metrics().attempt_status(status);
        let another_instance = state.tried.len() + 1 < upstream.instance_count();
        if !(failed && another_instance) {
            return false;
        }
        let Some(entry) = state.budget.as_mut() else {
            return false;
        };
        let budget = (upstream.budget(), entry);
        match state.attempts.after_failure(
            Cause::Status,
            method,
            route.retry(),
            Instant::now(),
            budget,
        ) {
            Decision::Retry => {
                state.retire();
                true
            }
            Decision::GiveUp(Refusal::Budget) => {
                upstream.metrics().count_retry_budget_spent();
                false
            }
            Decision::GiveUp(_) => false,
        }
    }
}

/// Fails the request for want of an instance; after connect failures it fails with that
/// error instead.
fn no_instance(
    ctx: &mut RequestCtx,
    default: ErrorCode,
    retry_after: u64,
    why: &'static str,
) -> Result<Box<HttpPeer>> {
    let code = *ctx.reply.error.get_or_insert(default);
    ctx.reply.retry_after = Some(retry_after);
    Error::e_explain(ErrorType::HTTPStatus(code.status()), why)
}

/// `peer` with every timeout capped at the route's remaining time.
fn within(mut peer: Box<HttpPeer>, left: Option<Duration>) -> Box<HttpPeer> {
    if let Some(r) = left {
        let o = &mut peer.options;
        o.connection_timeout = o.connection_timeout.map(|t| t.min(r));
        o.total_connection_timeout = o.total_connection_timeout.map(|t| t.min(r));
        o.read_timeout = o.read_timeout.map(|t| t.min(r));
        o.write_timeout = o.write_timeout.map(|t| t.min(r));
    }
    peer
}

/// The reply code for an upstream-side error.
pub(super) fn error_code(e: &Error) -> ErrorCode {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ErrorCode::UpstreamTimeout
        }
        ErrorType::HTTPStatus(503) => ErrorCode::NoHealthyUpstream,
        _ => ErrorCode::UpstreamConnectError,
    }
}

/// The `kind` label of `portico_upstream_errors_total`.
pub(super) fn error_kind(etype: &ErrorType) -> &'static str {
    match etype {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::BindError => {
            "connect_error"
        }
        ErrorType::TLSHandshakeFailure | ErrorType::TLSHandshakeTimedout => "tls_handshake",
        ErrorType::ReadTimedout => "read_timeout",
        ErrorType::WriteTimedout => "write_timeout",
        ErrorType::ConnectionClosed => "connection_closed",
        ErrorType::ReadError => "read_error",
        ErrorType::WriteError => "write_error",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => {
            "invalid_response"
        }
        _ => "other",
    }
}
