//! What the upstream request carries: the rewritten path, the remaining deadline, the
//! forwarding headers, the route's header edits, the request id and the trace context.

use super::headers::apply_edits;
use super::{Proxy, RequestCtx};
use crate::request_id;
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
        let Some(snapshot) = &ctx.snapshot else {
            return Ok(());
        };
        let Some(route) = ctx.route.map(|i| snapshot.router.route(i)) else {
            return Ok(());
        };
        let uri = &upstream_request.uri;
        let path = ctx.normalized_path.as_deref().unwrap_or(uri.path());
        let rewritten = route.rewrite.apply(path, uri.query()).or_else(|| {
            ctx.normalized_path.as_ref().map(|p| match uri.query() {
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
        if let Some(deadline) = ctx.deadline {
            let ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            upstream_request.insert_header("portico-deadline-ms", ms)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        crate::forwarding::set_upstream_headers(
            upstream_request,
            ctx.peer_ip,
            ctx.peer_trusted,
            if tls { "https" } else { "http" },
        )?;
        apply_edits(upstream_request, &route.request_headers)?;
        if let Some(id) = &ctx.request_id {
            upstream_request.insert_header(request_id::HEADER, id.clone())?;
        }
        if let Some(tracing) = &self.gateway.tracing {
            match (&ctx.client_span, &ctx.trace) {
                (Some(span), _) => tracing.inject(span, upstream_request),
                (None, Some(server)) => tracing.inject_server(server, upstream_request),
                (None, None) => {}
            }
        }
        Ok(())
    }
}
