//! Admission before routing and before any upstream work: framing, size and path checks, then
//! the route's rate limits.

use super::headers::{rate_header_values, refusal};
use super::{Proxy, RequestCtx};
use crate::config::{LimitsConfig, UnderscoreHeaders};
use crate::hardening;
use crate::ratelimit::{Limits, Verdict};
use crate::reply::{self, ErrorCode};
use http::HeaderValue;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::Result;
use std::borrow::Cow;

/// Refuses unacceptable framing or sizes; otherwise returns the normalised path to route on.
pub(super) fn screen<'a>(
    session: &'a Session,
    limits: &LimitsConfig,
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
    hardening::check(req, raw_head.as_deref(), limits)?;
    hardening::normalize_path(req.uri.path()).ok_or(ErrorCode::BadRequest)
}

/// The refusal for a request no route matched: `TRACE` only matches routes that name it, so
/// an unmatched one is a method the gateway does not allow, not a missing route.
pub(super) fn unrouted(method: &http::Method) -> ErrorCode {
    if method == http::Method::TRACE {
        ErrorCode::MethodNotAllowed
    } else {
        ErrorCode::NoRoute
    }
}

/// Removes header names with `_` when the policy is `drop` (before routing sees them).
pub(super) fn drop_underscore_headers(session: &mut Session, limits: &LimitsConfig) {
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

impl Proxy {
    /// Applies the route's rate limits; `Ok(true)` when the request was refused and answered.
    pub(super) async fn enforce_limits(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        limits: &Limits,
    ) -> Result<bool> {
        if limits.is_empty() {
            return Ok(false);
        }
        let shared = self.gateway.shared_limits.as_ref();
        let headers = &session.req_header().headers;
        let (verdict, shown) = limits.check(headers, ctx.client_ip, shared).await;
        ctx.rate_headers = shown;
        let Some(code) = refusal(verdict) else {
            return Ok(false);
        };
        ctx.error = Some(code);
        ctx.gateway_made = true;
        let mut extra: Vec<_> = rate_header_values(shown).collect();
        if let Verdict::Limited { retry_after } = verdict {
            extra.push(("Retry-After", HeaderValue::from(retry_after)));
        }
        reply::send(session, code, ctx.request_id.as_ref(), &extra).await?;
        Ok(true)
    }
}
