//! What the proxy writes into headers and how a rate-limit verdict maps to a reply.

use crate::ratelimit::{RateHeaders, Verdict};
use crate::reply::ErrorCode;
use crate::router::HeaderEdits;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// The response a rate-limit verdict calls for, if it refuses the request.
pub(super) fn refusal(verdict: Verdict) -> Option<ErrorCode> {
    match verdict {
        Verdict::Allow => None,
        Verdict::Limited { .. } => Some(ErrorCode::RateLimited),
        Verdict::MissingKey => Some(ErrorCode::BadRequest),
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (delta seconds); none when not governed.
pub(super) fn rate_header_values(
    h: Option<RateHeaders>,
) -> impl Iterator<Item = (&'static str, HeaderValue)> {
    h.into_iter().flat_map(|h| {
        [
            ("RateLimit-Limit", HeaderValue::from(h.limit)),
            ("RateLimit-Remaining", HeaderValue::from(h.remaining)),
            ("RateLimit-Reset", HeaderValue::from(h.reset)),
        ]
    })
}

/// Pingora's request and response headers, so a route's header edits are written once.
pub(super) trait EditHeaders {
    fn remove(&mut self, name: &HeaderName);
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()>;
}

impl EditHeaders for RequestHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

impl EditHeaders for ResponseHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

/// Removes, then sets, the headers of a route's `request_headers` or `response_headers` rule.
pub(super) fn apply_edits(headers: &mut impl EditHeaders, edits: &HeaderEdits) -> Result<()> {
    for name in &edits.remove {
        headers.remove(name);
    }
    for (name, value) in &edits.set {
        headers.insert(name.clone(), value.clone())?;
    }
    Ok(())
}
