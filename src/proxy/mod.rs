//! The `ProxyHttp` implementation. Each hook reads the request context, calls one step and maps
//! the result; the steps live beside it by phase:
//!
//! - [`admission`]: screening, routing, the route's access and admission policies;
//! - [`attempt`]: choosing an instance for each attempt, and what a failed attempt means
//!   (breaker outcome, retry or not);
//! - [`upstream_request`]: what the upstream request carries;
//! - [`failure`]: answering a request that could not be proxied;
//! - [`report`]: metrics, spans, KPIs and the access log of a finished request;
//! - [`invalid_request`]: requests Pingora's parser refused.

mod admission;
mod attempt;
mod compression;
mod context;
mod failure;
mod invalid_request;
mod mirror;
mod report;
mod upstream_request;

pub use context::RequestCtx;

use crate::gateway::Gateway;
use crate::known_headers;
use crate::listener::head_deadline::HeadClock;
use crate::reply::{self, ErrorCode};
use admission::Verdict;
use async_trait::async_trait;
use attempt::{is_status_retry, Failure};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;

/// The gateway's proxy logic.
pub struct Proxy {
    gateway: Arc<Gateway>,
}

impl Proxy {
    /// A proxy serving the gateway's current snapshot.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        connection: Box<dyn std::any::Any + Send + Sync>,
    ) {
        // Called right after the request head was parsed: its deadline no longer applies.
        if let Ok(clock) = connection.downcast::<Arc<HeadClock>>() {
            clock.stop();
        }
    }

    async fn invalid_request(&self, session: &mut ServerSession, e: &Error) {
        self.answer_invalid_request(session, e).await
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // Pingora's default adds a disabled response-compression module that still runs on
        // every request; Portico compresses per route instead (`policy::compress`), so no
        // module is added.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.admit(session, ctx).await {
            None => return Ok(false),
            Some(Verdict::Refuse(refusal)) => {
                let id = ctx.request.id.as_ref();
                reply::send(session, refusal.code, id, &refusal.headers).await?
            }
            Some(Verdict::Answer(answer)) => {
                reply::send_answer(session, answer, ctx.request.id.as_ref()).await?
            }
        }
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Read from the client, not summed here: a retry passes the body through again. Only a
        // chunk can take it over the limit (a bodiless request skips the route lookup).
        if body.is_some() && session.body_bytes_read() as u64 > ctx.body_limit() {
            ctx.reply.error = Some(ErrorCode::PayloadTooLarge);
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
        }
        mirror::body(ctx, body.as_deref(), end_of_stream, self.gateway.caller());
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.next_attempt(session, ctx).await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self.attempt_failed(ctx, Failure::Connect(&e), &session.req_header().method) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if is_status_retry(&e) {
            return e;
        }
        let e = e.more_context(format!("Peer: {peer}"));
        self.transfer_failed(session, ctx, e, client_reused)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(upstream) = ctx.route().and_then(|r| r.upstream(ctx.upstream.side)) else {
            return Ok(());
        };
        upstream.metrics().count_connection(reused);
        if let (false, Some(a)) = (reused, &ctx.upstream.current) {
            upstream.metrics().observe_connect(a.started.elapsed());
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.prepare_upstream_request(session, upstream_request, ctx)?;
        upstream_request::trace_url(upstream_request, ctx);
        mirror::head(ctx, upstream_request);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status;
        if status.is_informational() {
            return Ok(());
        }
        if self.attempt_answered(ctx, status.as_u16(), &session.req_header().method) {
            let mut e = Error::explain(
                ErrorType::Custom(attempt::STATUS_RETRY),
                format!("upstream answered {status}"),
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        stamp_response(upstream_response, ctx)?;
        if let Some(route) = ctx.route() {
            route
                .policies()
                .edit_response(upstream_response, &ctx.reply.policy)?;
        }
        if let Some(cookie) = ctx.reply.set_cookie.take() {
            upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
        }
        self.start_compression(session, upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        mirror::response_body(ctx, body.as_deref(), end_of_stream);
        self.compress_chunk(body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        self.answer_failure(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        self.report(session, ctx);
        mirror::finish(session, ctx);
        compression::record(ctx);
        // Now, not when Pingora drops the context (after the client has read everything).
        ctx.release();
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        // A retried attempt is counted in portico_upstream_retries_total; a warning per attempt
        // would flood the log exactly when an instance dies.
        matches!(context, ProxyWarnLogContext::UpstreamRetry)
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        // Upstream failures are counted and answered with a reason code; one line each is
        // enough. A client that went away is normal: counted and logged at debug level.
        ctx.reply.error.is_some() || failure::client_went_away(error)
    }
}

/// The headers every proxied response gets: the request id and the rate-limit state.
fn stamp_response(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    use known_headers::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, X_REQUEST_ID};
    resp.reserve_headers(known_headers::RESPONSE_ADDS)?;
    if let Some(id) = &ctx.request.id {
        resp.insert_known_header(&X_REQUEST_ID, id.clone())?;
    }
    if let Some(h) = ctx.reply.policy.rate_headers {
        resp.insert_known_header(&RATELIMIT_LIMIT, known_headers::number(h.limit))?;
        resp.insert_known_header(&RATELIMIT_REMAINING, known_headers::number(h.remaining))?;
        resp.insert_known_header(&RATELIMIT_RESET, known_headers::number(h.reset))?;
    }
    Ok(())
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (delta seconds); none when not governed.
fn rate_headers(reply: &context::ReplyState) -> Option<[(&'static str, HeaderValue); 3]> {
    let h = reply.policy.rate_headers?;
    Some([
        ("RateLimit-Limit", known_headers::number(h.limit)),
        ("RateLimit-Remaining", known_headers::number(h.remaining)),
        ("RateLimit-Reset", known_headers::number(h.reset)),
    ])
}
