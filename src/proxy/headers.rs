//! What the proxy writes into headers and how a rate-limit verdict maps to a reply.

use crate::ratelimit::{RateHeaders, Verdict};
use crate::reply::ErrorCode;
use crate::router::HeaderEdits;
use http::HeaderValue;
use pingora::http::RequestHeader;
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

pub(super) fn apply_request_edits(req: &mut RequestHeader, edits: &HeaderEdits) -> Result<()> {
    for name in &edits.remove {
        req.remove_header(name);
    }
    for (name, value) in &edits.set {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}
