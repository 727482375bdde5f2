//! What the upstream request carries: the rewritten path, the remaining deadline, the
//! forwarding headers, the route's upstream-request policies, the request id and the trace
//! context.

use super::{Proxy, RequestCtx};
use crate::known_headers;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::time::Instant;

impl Proxy {
    /// Edits the upstream request of `ctx`'s route (the `upstream_request_filter` hook).
    pub(super) fn prepare_upstream_request(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route() else {
            return Ok(());
        };
        // Pingora's copy of the client's head has room for exactly its own headers.
        upstream_request.reserve_headers(known_headers::UPSTREAM_REQUEST_ADDS)?;
        let normalized = ctx.request.normalized_path.as_ref();
        let uri = &upstream_request.uri;
        let path = normalized.map_or(uri.path(), String::as_str);
        let rewritten = route.rewrite().apply(path, uri.query()).or_else(|| {
            normalized.map(|p| match uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.clone(),
            })
        });
        if let Some(new) = rewritten {
            let uri = new.parse::<http::Uri>().map_err(|e| {
                Error::because(
                    ErrorType::InternalError,
                    "rewritten path is not a valid URI",
                    e,
                )
            })?;
            upstream_request.set_uri(uri);
        }
        if let Some(deadline) = ctx.upstream.attempts.deadline() {
            let ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            upstream_request.insert_known_header(&known_headers::DEADLINE_MS, ms.into())?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        crate::forwarding::set_upstream_headers(
            upstream_request,
            ctx.request.peer_ip,
            ctx.request.peer_trusted,
            if tls { "https" } else { "http" },
        )?;
        route
            .policies()
            .edit_request(upstream_request, &ctx.reply.policy)?;
        if let Some(id) = &ctx.request.id {
            upstream_request.insert_known_header(&known_headers::X_REQUEST_ID, id.clone())?;
        }
        self.inject_trace(upstream_request, ctx);
        Ok(())
    }

    fn inject_trace(&self, upstream_request: &mut RequestHeader, ctx: &RequestCtx) {
        let Some(tracing) = self.gateway.tracing() else {
            return;
        };
        let span = ctx.upstream.current.as_ref().and_then(|a| a.span.as_ref());
        match (span, &ctx.trace) {
            (Some(span), _) => tracing.inject(span, upstream_request),
            (None, Some(server)) => tracing.inject_server(server, upstream_request),
            (None, None) => {}
        }
    }
}

/// Records the final upstream URL on the attempt's CLIENT span (sampled traces only; an
/// attempt that never connected has none, having sent nothing).
pub(super) fn trace_url(upstream_request: &RequestHeader, ctx: &mut RequestCtx) {
    let tls = ctx
        .route()
        .and_then(|r| r.upstream(ctx.upstream.side))
        .is_some_and(|u| u.config().tls);
    let Some(snapshot) = ctx.snapshot.as_deref() else {
        return;
    };
    if let Some(attempt) = ctx.upstream.current.as_mut() {
        let addr = attempt.addr;
        if let Some(span) = attempt.span.as_deref_mut() {
            let redaction = snapshot.query_redaction();
            crate::telemetry::tracing::set_url_full(span, tls, addr, upstream_request, redaction);
        }
    }
}
