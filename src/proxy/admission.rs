//! `request_filter`'s work, in order: who the client is; framing, size and path checks; the
//! route; then the route's access and admission policies. Anything refused here never costs an
//! upstream connection.

use super::context::{ReplyState, RequestInfo, UpstreamState};
use super::{Proxy, RequestCtx};
use crate::answer::Facts;
use crate::config::{LimitsConfig, UnderscoreHeaders};
use crate::hardening;
use crate::known_headers::{self, X_FORWARDED_FOR};
use crate::policy::{self, Outcome, Refusal};
use crate::reply::Answer;
use crate::reply::ErrorCode;
use crate::request_id;
use crate::retry::Attempts;
use crate::router::{host_without_port, RequestFacts};
use crate::snapshot::Route;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::InFlight;
use crate::telemetry::tracing::{name_server_span, set_url_query, ServerFacts};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// What the gateway answers itself instead of proxying.
pub(super) enum Verdict {
    Refuse(Refusal),
    Answer(Answer),
}

impl From<Refusal> for Verdict {
    fn from(refusal: Refusal) -> Self {
        Verdict::Refuse(refusal)
    }
}

impl Proxy {
    /// Admits a request to its route, or says what the gateway answers instead.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Option<Verdict> {
        ctx.in_flight = Some(InFlight::enter());
        let snapshot = self.gateway.snapshot();
        ctx.request = identify(session, &snapshot, ctx.request.start);
        let limits = &snapshot.config().server.limits;
        // Every answer, refusals included, keeps the connection for the configured idle time:
        // parsing the head left Pingora's HTTP/1.1 default (no limit) or the client's own
        // `Keep-Alive: timeout=`. Only a connection still kept alive gets it: Pingora turns
        // keep-alive off once shutdown has begun (and for `Connection: close`), and that must
        // reach the response as `Connection: close`.
        if session.get_keepalive().is_some() {
            session.set_keepalive(limits.keepalive_secs());
        }
        drop_underscore_headers(session, limits);
        let route = match screen(session, limits, snapshot.body_ceiling()) {
            Ok(path) => {
                if let Cow::Owned(p) = &path {
                    ctx.request.normalized_path = Some(p.clone());
                }
                find_route(&snapshot, session, &path)
            }
            Err(code) => {
                // A request that breaks the rules may be desynchronised: close after answering.
                session.set_keepalive(None);
                return Some(self.refuse(ctx, snapshot, code).into());
            }
        };
        self.start_trace(session, ctx, &snapshot, route);
        ctx.snapshot = Some(snapshot);
        let Some(index) = route else {
            let code = unrouted(&session.req_header().method);
            return Some(self.refuse_unrouted(ctx, code).into());
        };
        ctx.route = Some(index);
        self.admit_to_route(session, ctx).await
    }

    /// Runs the route's policies, then answers for the route or prepares its attempts.
    async fn admit_to_route(&self, session: &mut Session, ctx: &mut RequestCtx) -> Option<Verdict> {
        let RequestCtx {
            request,
            snapshot,
            route,
            upstream,
            reply,
            ..
        } = ctx;
        let snapshot = snapshot.as_ref()?;
        let route = snapshot.router().route((*route)?);
        if !route.policies().admits_everything() {
            if let Some(verdict) = run_policies(session, request, reply, route).await {
                return Some(verdict);
            }
        }
        if over_body_limit(session.req_header(), route.body_limit()) {
            return Some(refuse_on_route(
                reply,
                route,
                Refusal::new(ErrorCode::PayloadTooLarge),
            ));
        }
        if let Some(answer) = route.answer() {
            return Some(answer_for(session, request, reply, route, answer));
        }
        reply.encoding = route.policies().compression().and_then(|c| {
            c.negotiate(
                session
                    .req_header()
                    .headers
                    .get(http::header::ACCEPT_ENCODING),
            )
        });
        // After the access policies: a split may keep callers by their consumer.
        let consumer = reply.policy.consumer().map(|c| c.name.as_str());
        let choice = route
            .split()
            .map(|s| s.choose(session.req_header(), consumer));
        let side = choice.as_ref().map_or(0, |c| c.side);
        reply.set_cookie = choice.and_then(|c| c.set_cookie);
        *upstream = UpstreamState {
            side,
            attempts: Attempts::new(request.start, route.timeout()),
            budget: route.upstream(side).map(|u| u.budget().enter()),
            ..UpstreamState::default()
        };
        let limits = &snapshot.config().server.limits;
        session.set_read_timeout(Some(limits.body_read_timeout));
        None
    }

    fn refuse(&self, ctx: &mut RequestCtx, snapshot: Arc<Snapshot>, code: ErrorCode) -> Refusal {
        ctx.snapshot = Some(snapshot);
        self.refuse_unrouted(ctx, code)
    }

    fn refuse_unrouted(&self, ctx: &mut RequestCtx, code: ErrorCode) -> Refusal {
        ctx.answer(code);
        Refusal::new(code)
    }

    fn start_trace(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        route: Option<usize>,
    ) {
        let Some(tracing) = self.gateway.tracing() else {
            return;
        };
        let req = session.req_header();
        let facts = ServerFacts {
            peer_trusted: ctx.request.peer_trusted,
            client_ip: ctx.request.client_ip,
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
            peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
        };
        ctx.trace = tracing.server_span(req, &facts);
        if let Some(cx) = &ctx.trace {
            set_url_query(cx, req, snapshot.query_redaction());
        }
        if let (Some(cx), Some(i)) = (&ctx.trace, route) {
            let router = snapshot.router();
            let template = match router.matcher(i).prefix() {
                "" => "/",
                prefix => prefix,
            };
            name_server_span(cx, &req.method, router.route(i).name(), template);
        }
    }
}

/// The route's access and admission policies; what the gateway answers when they end the run.
async fn run_policies(
    session: &Session,
    request: &RequestInfo,
    reply: &mut ReplyState,
    route: &Route,
) -> Option<Verdict> {
    let req = session.req_header();
    let view = policy::Request {
        headers: &req.headers,
        method: &req.method,
        uri: &req.uri,
        host: request_host(req),
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        client_ip: request.client_ip,
    };
    match route.policies().admit(&view, &mut reply.policy).await {
        Outcome::Continue => None,
        Outcome::Refuse(refusal) => Some(refuse_on_route(reply, route, refusal)),
        Outcome::Reject(answer) => {
            reply.gateway_made = true;
            reply.answered = Some(answer.reason);
            Some(Verdict::Answer(*answer))
        }
        Outcome::Answer(answer) => {
            reply.gateway_made = true;
            reply.answered = Some(answer.reason);
            Some(Verdict::Answer(*answer))
        }
    }
}

/// A refusal on a matched route, with the `RateLimit-*` and CORS headers the policies earned.
fn refuse_on_route(reply: &mut ReplyState, route: &Route, mut refusal: Refusal) -> Verdict {
    reply.error = Some(refusal.code);
    reply.gateway_made = true;
    refusal
        .headers
        .splice(0..0, super::rate_headers(reply).into_iter().flatten());
    route
        .policies()
        .refusal_headers(&reply.policy, &mut refusal.headers);
    Verdict::Refuse(refusal)
}

/// The route's own answer (redirect or static response), with its response header edits;
/// a redirect whose `regex` does not match the path is `no_route`.
fn answer_for(
    session: &Session,
    request: &RequestInfo,
    reply: &mut ReplyState,
    route: &Route,
    answer: &crate::answer::Answer,
) -> Verdict {
    let req = session.req_header();
    let facts = Facts {
        path: request.normalized_path.as_deref().unwrap_or(req.uri.path()),
        query: req.uri.query(),
        host: request_host(req),
    };
    reply.gateway_made = true;
    let made = answer.render(&facts).and_then(|mut made| {
        route
            .policies()
            .edit_response(&mut made.head, &reply.policy)
            .ok()?;
        Some(made)
    });
    match made {
        Some(made) => {
            reply.answered = Some(made.reason);
            Verdict::Answer(made)
        }
        None => {
            reply.error = Some(ErrorCode::NoRoute);
            Verdict::Refuse(Refusal::new(ErrorCode::NoRoute))
        }
    }
}

/// Whether the declared `Content-Length` is over the route's own limit (the server's limit
/// was checked before routing; a chunked body is counted as it streams).
fn over_body_limit(req: &pingora::http::RequestHeader, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| hardening::declared_length(req).is_some_and(|n| n > limit))
}

/// The request's host, without the port (`Host`, or the authority of an absolute target).
fn request_host(req: &pingora::http::RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .map(host_without_port)
        .unwrap_or("")
}

/// The request id, the socket peer and the client behind trusted proxies.
fn identify(session: &Session, snapshot: &Snapshot, start: std::time::Instant) -> RequestInfo {
    let req = session.req_header();
    let peer_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    RequestInfo {
        start,
        id: Some(request_id::accept_or_generate(
            req.headers.get(known_headers::X_REQUEST_ID.name()),
        )),
        peer_ip,
        peer_trusted: snapshot.trusted().contains(peer_ip),
        client_ip: snapshot
            .trusted()
            .client_ip(peer_ip, req.headers.get(X_FORWARDED_FOR.name())),
        normalized_path: None,
    }
}

fn find_route(snapshot: &Snapshot, session: &Session, path: &str) -> Option<usize> {
    let req = session.req_header();
    snapshot.router().find(&RequestFacts {
        host: request_host(req),
        path,
        method: &req.method,
        headers: &req.headers,
    })
}

/// Refuses unacceptable framing or sizes; otherwise returns the normalised path to route on.
fn screen<'a>(
    session: &'a Session,
    limits: &LimitsConfig,
    max_body: u64,
) -> Result<Cow<'a, str>, ErrorCode> {
    let req = session.req_header();
    // Request lines with spaces or control bytes in the target never get here: the frontend
    // makes Pingora's parser refuse them (`set_strict_request_line`).
    hardening::check_host(req)?;
    if limits.headers_with_underscores == UnderscoreHeaders::Reject
        && hardening::underscore_header_names(req).next().is_some()
    {
        return Err(ErrorCode::BadRequest);
    }
    // Only a request with Transfer-Encoding needs its raw head looked at.
    let raw_head = match session.as_downstream() {
        ServerSession::H1(h1) if req.headers.contains_key(http::header::TRANSFER_ENCODING) => {
            Some(h1.get_headers_raw_bytes())
        }
        _ => None,
    };
    hardening::check(req, raw_head.as_deref(), limits, max_body)?;
    hardening::normalize_path(req.uri.path()).ok_or(ErrorCode::BadRequest)
}

/// The refusal for a request no route matched: `TRACE` only matches routes that name it, so
/// an unmatched one is a method the gateway does not allow, not a missing route.
fn unrouted(method: &http::Method) -> ErrorCode {
    if method == http::Method::TRACE {
        ErrorCode::MethodNotAllowed
    } else {
        ErrorCode::NoRoute
    }
}

/// Removes header names with `_` when the policy is `drop` (before routing sees them).
fn drop_underscore_headers(session: &mut Session, limits: &LimitsConfig) {
    if limits.headers_with_underscores != UnderscoreHeaders::Drop {
        return;
    }
    let req = session.req_header();
    if hardening::underscore_header_names(req).next().is_none() {
        return;
    }
    let names: Vec<http::HeaderName> = hardening::underscore_header_names(req).cloned().collect();
    let req = session.req_header_mut();
    for name in names {
        req.remove_header(&name);
    }
}
