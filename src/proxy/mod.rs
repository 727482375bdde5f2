//! The `ProxyHttp` implementation. Hooks stay thin: each reads the request context, calls one
//! module (router, upstream, forwarding, reply, metrics) and maps the result.

mod admission;
mod context;
mod failure;
mod headers;
mod invalid_request;
mod report;
mod upstream_request;

pub use context::RequestCtx;

use crate::gateway::Gateway;
use crate::listener::head_deadline::HeadClock;
use crate::reply::{self, ErrorCode};
use crate::request_id;
use crate::retry::Cause;
use crate::router::{host_without_port, RequestFacts};
use crate::telemetry::metrics::HTTP_IN_FLIGHT;
use crate::telemetry::tracing::{end_client_span, name_server_span};
use crate::upstream::Pick;
use async_trait::async_trait;
use context::{is_status_retry, retry_allowed, STATUS_RETRY};
use failure::{error_code, error_kind};
use headers::{apply_edits, rate_header_values};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

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
        RequestCtx {
            start: Instant::now(),
            snapshot: None,
            route: None,
            request_id: None,
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tried: Vec::new(),
            attempts: 0,
            current: None,
            probe: false,
            outcome_recorded: false,
            retry_after: None,
            deadline: None,
            budget_entered: false,
            retry_slot: false,
            retry_cause: None,
            attempt_start: None,
            error: None,
            gateway_made: false,
            in_flight: false,
            rate_headers: None,
            trace: None,
            client_span: None,
            last_instance: None,
            upstream_time: None,
            normalized_path: None,
            body_bytes: 0,
        }
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
        // every request; Portico does not compress, so no module is added.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        HTTP_IN_FLIGHT.inc();
        ctx.in_flight = true;
        let snapshot = self.gateway.snapshot();
        let req = session.req_header();
        ctx.request_id = Some(request_id::accept_or_generate(
            req.headers.get(request_id::HEADER),
        ));
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(ctx.peer_ip);
        ctx.peer_trusted = snapshot.trusted.contains(ctx.peer_ip);
        ctx.client_ip = snapshot
            .trusted
            .client_ip(ctx.peer_ip, req.headers.get("x-forwarded-for"));
        let limits = &snapshot.config.server.limits;
        admission::drop_underscore_headers(session, limits);
        let req = session.req_header();
        let (read_timeout, idle) = (limits.body_read_timeout, limits.keepalive_timeout.as_secs());
        let path = match admission::screen(session, limits) {
            Ok(path) => path,
            Err(code) => {
                ctx.error = Some(code);
                ctx.gateway_made = true;
                ctx.snapshot = Some(snapshot);
                session.set_keepalive(None);
                reply::send(session, code, ctx.request_id.as_ref(), &[]).await?;
                return Ok(true);
            }
        };
        if let std::borrow::Cow::Owned(p) = &path {
            ctx.normalized_path = Some(p.clone());
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .map(host_without_port)
            .unwrap_or("");
        ctx.route = snapshot.router.find(&RequestFacts {
            host,
            path: &path,
            method: &req.method,
            headers: &req.headers,
        });
        if let Some(tracing) = &self.gateway.tracing {
            ctx.trace = tracing.server_span(req, ctx.peer_trusted, ctx.client_ip);
            if let (Some(cx), Some(i)) = (&ctx.trace, ctx.route) {
                name_server_span(cx, &req.method, &snapshot.router.route(i).name);
            }
        }
        ctx.snapshot = Some(snapshot);
        if let Some(i) = ctx.route {
            let snapshot = ctx.snapshot.as_ref().map(Arc::clone);
            if let Some(s) = snapshot {
                if self
                    .enforce_limits(session, ctx, &s.targets[i].limits)
                    .await?
                {
                    return Ok(true);
                }
                ctx.deadline = s.router.route(i).timeout.map(|t| ctx.start + t);
                s.targets[i].upstream.budget.enter();
                ctx.budget_entered = true;
            }
        } else {
            let code = admission::unrouted(&session.req_header().method);
            ctx.error = Some(code);
            ctx.gateway_made = true;
            reply::send(session, code, ctx.request_id.as_ref(), &[]).await?;
            return Ok(true);
        }
        session.set_read_timeout(Some(read_timeout));
        // Only a connection still kept alive gets the configured idle time: Pingora turns
        // keep-alive off once shutdown has begun, and that must reach the response as
        // `Connection: close`, or a client sends its next request into a closing connection.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(idle));
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            let limit = ctx
                .snapshot
                .as_ref()
                .map_or(u64::MAX, |s| s.config.server.limits.max_request_body);
            if ctx.body_bytes > limit {
                ctx.error = Some(ErrorCode::PayloadTooLarge);
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(snapshot), Some(route)) = (ctx.snapshot.clone(), ctx.route) else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let upstream = &snapshot.targets[route].upstream;
        if let Some(cause) = ctx.retry_cause.take() {
            upstream.metrics.retries[cause as usize].inc();
            let wait = snapshot.router.route(route).retry.backoff(ctx.attempts);
            let wait = ctx.deadline.map_or(wait, |d| {
                wait.min(d.saturating_duration_since(Instant::now()))
            });
            tokio::time::sleep(wait).await;
        }
        let remaining = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            ctx.error = Some(ErrorCode::DeadlineExceeded);
            return Error::e_explain(ErrorType::HTTPStatus(504), "route deadline exceeded");
        }
        let key = upstream
            .hash_key()
            .map(|k| k.extract(session.req_header(), ctx.client_ip))
            .unwrap_or_default();
        let selection = match upstream.select(&key, &ctx.tried, Instant::now()) {
            Pick::Selected(selection) => selection,
            // After connect failures the request fails with that error, not as "no instance".
            Pick::CircuitOpen { retry_after } => {
                let code = ctx.error.unwrap_or(ErrorCode::CircuitOpen);
                ctx.error = Some(code);
                ctx.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
                return Error::e_explain(
                    ErrorType::HTTPStatus(code.status()),
                    "every breaker is open",
                );
            }
            Pick::Exhausted => {
                let code = ctx.error.unwrap_or(ErrorCode::NoHealthyUpstream);
                ctx.error = Some(code);
                ctx.retry_after = Some(1);
                return Error::e_explain(
                    ErrorType::HTTPStatus(code.status()),
                    "no instance to try",
                );
            }
        };
        let mut peer = upstream.peer(&selection.backend);
        if let Some(r) = remaining {
            let o = &mut peer.options;
            o.connection_timeout = o.connection_timeout.map(|t| t.min(r));
            o.total_connection_timeout = o.total_connection_timeout.map(|t| t.min(r));
            o.read_timeout = o.read_timeout.map(|t| t.min(r));
            o.write_timeout = o.write_timeout.map(|t| t.min(r));
        }
        ctx.attempts += 1;
        ctx.current = selection.backend.addr.as_inet().copied();
        ctx.last_instance = ctx.current;
        if let Some(stale) = ctx.client_span.take() {
            end_client_span(stale, None, Some("retried"));
        }
        if let (Some(tracing), Some(cx), Some(addr)) =
            (&self.gateway.tracing, &ctx.trace, ctx.current)
        {
            let req = session.req_header();
            ctx.client_span =
                tracing.client_span(cx, &req.method, addr, req.uri.path(), ctx.attempts - 1);
        }
        ctx.probe = selection.probe;
        ctx.outcome_recorded = false;
        ctx.attempt_start = Some(Instant::now());
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.error = Some(error_code(&e));
        ctx.record_outcome(false);
        if let Some(span) = ctx.client_span.take() {
            end_client_span(span, None, Some(error_kind(e.etype())));
        }
        if let Some(addr) = ctx.current.take() {
            ctx.tried.push(addr);
        }
        if let Some(target) = ctx.target() {
            target.upstream.metrics.attempt_error(error_kind(e.etype()));
        }
        if retry_allowed(ctx, Cause::ConnectFailure, &session.req_header().method) {
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
        let mut e = e.more_context(format!("Peer: {peer}"));
        let truncated = session.as_ref().retry_buffer_truncated();
        if e.esource() == &ErrorSource::Upstream {
            let past_deadline = ctx.deadline.is_some_and(|d| Instant::now() >= d);
            ctx.error = Some(if past_deadline {
                ErrorCode::DeadlineExceeded
            } else {
                error_code(&e)
            });
            ctx.record_outcome(false);
            if let Some(span) = ctx.client_span.take() {
                end_client_span(span, None, Some(error_kind(e.etype())));
            }
            if let Some(target) = ctx.target() {
                target.upstream.metrics.attempt_error(error_kind(e.etype()));
            }
            if !truncated && retry_allowed(ctx, Cause::Error, &session.req_header().method) {
                if let Some(addr) = ctx.current.take() {
                    ctx.tried.push(addr);
                }
                e.set_retry(true);
                return e;
            }
        }
        // pingora's default policy: only idempotent requests on a stale pooled connection retry.
        if !session.req_header().method.is_idempotent() || truncated {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
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
        if !reused {
            if let (Some(start), Some(target)) = (ctx.attempt_start, ctx.target()) {
                target
                    .upstream
                    .metrics
                    .connect_duration
                    .observe(start.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.prepare_upstream_request(session, upstream_request, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        let status = upstream_response.status.as_u16();
        let failed = ctx
            .target()
            .is_some_and(|t| t.upstream.is_failure_status(status));
        ctx.record_outcome(!failed);
        let started = ctx.attempt_start.take();
        ctx.upstream_time = started.map(|s| s.elapsed());
        if let Some(span) = ctx.client_span.take() {
            end_client_span(span, Some(status), None);
        }
        if let Some(target) = ctx.target() {
            let metrics = &target.upstream.metrics;
            metrics.attempt_status(upstream_response.status.as_u16());
            if let Some(t) = ctx.upstream_time {
                metrics.duration.observe(t.as_secs_f64());
            }
        }
        let another_instance = ctx
            .target()
            .is_some_and(|t| ctx.tried.len() + 1 < t.upstream.instance_count());
        if failed
            && another_instance
            && retry_allowed(ctx, Cause::Status, &session.req_header().method)
        {
            if let Some(addr) = ctx.current.take() {
                ctx.tried.push(addr);
            }
            let mut e = Error::explain(
                ErrorType::Custom(STATUS_RETRY),
                format!("upstream answered {status}"),
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            upstream_response.insert_header(request_id::HEADER, id.clone())?;
        }
        for (name, value) in rate_header_values(ctx.rate_headers) {
            upstream_response.insert_header(name, value)?;
        }
        if let (Some(snapshot), Some(i)) = (&ctx.snapshot, ctx.route) {
            apply_edits(
                upstream_response,
                &snapshot.router.route(i).response_headers,
            )?;
        }
        Ok(())
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
        if ctx.in_flight {
            HTTP_IN_FLIGHT.dec();
        }
        if ctx.budget_entered {
            if let Some(target) = ctx.target() {
                target.upstream.budget.leave(ctx.retry_slot);
            }
        }
        if ctx.probe && !ctx.outcome_recorded {
            if let (Some(addr), Some(target)) = (ctx.current, ctx.target()) {
                target.upstream.release_probe(&addr);
            }
        }
        self.report(session, ctx);
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

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Upstream failures are counted and answered with a reason code; one line each is enough.
        ctx.error.is_some()
    }
}
