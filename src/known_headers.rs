//! The header names Portico adds to most requests and responses, parsed once.
//!
//! Pingora's `insert_header("x-forwarded-for", ..)` parses, lowercases and copies the name on
//! every call and copies it again into its case-preserving map — most of an insert's cost
//! (callgrind: ~1.4k instructions per insert). These are `const`s over static bytes, so an
//! insert through `insert_known_header` is two map inserts and two pointer copies. The wire
//! case is the one each header was written in before (tests and clients compare names
//! case-insensitively, but a diff of captured traffic should show nothing changed).

use http::{HeaderName, HeaderValue};
use pingora::http::{CaseHeaderName, KnownHeader};
use std::sync::LazyLock;

const fn known(lower: &'static str, case: &'static str) -> KnownHeader {
    KnownHeader::new(
        HeaderName::from_static(lower),
        CaseHeaderName::from_static(case),
    )
}

pub const X_FORWARDED_FOR: KnownHeader = known("x-forwarded-for", "x-forwarded-for");
pub const X_FORWARDED_PROTO: KnownHeader = known("x-forwarded-proto", "x-forwarded-proto");
pub const X_FORWARDED_HOST: KnownHeader = known("x-forwarded-host", "x-forwarded-host");
pub const X_REQUEST_ID: KnownHeader = known("x-request-id", "x-request-id");
pub const TRACEPARENT: KnownHeader = known("traceparent", "traceparent");
pub const TRACESTATE: KnownHeader = known("tracestate", "tracestate");
pub const DEADLINE_MS: KnownHeader = known("portico-deadline-ms", "portico-deadline-ms");
pub const RATELIMIT_LIMIT: KnownHeader = known("ratelimit-limit", "RateLimit-Limit");
pub const RATELIMIT_REMAINING: KnownHeader = known("ratelimit-remaining", "RateLimit-Remaining");
pub const RATELIMIT_RESET: KnownHeader = known("ratelimit-reset", "RateLimit-Reset");

/// How many of these the proxy may add to a request on its way upstream (forwarding, request
/// id, trace context, deadline), reserved at once so the maps grow once.
pub const UPSTREAM_REQUEST_ADDS: usize = 7;
/// The same for a response on its way to the client (request id, rate-limit headers).
pub const RESPONSE_ADDS: usize = 4;

/// Numbers below this have a header value made once (see [`number`]).
const SMALL_NUMBERS: usize = 1024;

/// `n` as a header value (`RateLimit-*`). `HeaderValue::from(u64)` makes two allocations on
/// every call; values below [`SMALL_NUMBERS`] are slices of one static text instead, and
/// cloning one copies a pointer; larger ones are one copy of their digits.
pub fn number(n: u64) -> HeaderValue {
    static SMALL: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(SMALL_NUMBERS);
        for n in 0..SMALL_NUMBERS {
            text.push_str(itoa::Buffer::new().format(n));
            ends.push(text.len());
        }
        let text: &'static str = Box::leak(text.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let value = HeaderValue::from_static(&text[start..end]);
                start = end;
                value
            })
            .collect()
    });
    match usize::try_from(n).ok().and_then(|i| SMALL.get(i)) {
        Some(value) => value.clone(),
        // One copy of the digits; `From<u64>` formats into a buffer of its own and then
        // converts it, two allocations.
        None => HeaderValue::from_str(itoa::Buffer::new().format(n)).unwrap_or_else(|_| n.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::{RequestHeader, ResponseHeader};

    const ALL: [KnownHeader; 10] = [
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_REQUEST_ID,
        TRACEPARENT,
        TRACESTATE,
        DEADLINE_MS,
        RATELIMIT_LIMIT,
        RATELIMIT_REMAINING,
        RATELIMIT_RESET,
    ];

    #[test]
    fn a_known_insert_equals_a_parsed_one_and_replaces_incoming_values() {
        for known in ALL {
            let lower = known.name().as_str();
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header(lower.to_ascii_uppercase(), "old-1")
                .unwrap();
            req.append_header(lower.to_string(), "old-2").unwrap();
            req.reserve_headers(UPSTREAM_REQUEST_ADDS).unwrap();
            req.insert_known_header(&known, http::HeaderValue::from_static("new"))
                .unwrap();
            let values: Vec<_> = req.headers.get_all(lower).iter().collect();
            assert_eq!(values, ["new"], "{lower}");

            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_known_header(&known, http::HeaderValue::from_static("v"))
                .unwrap();
            let mut wire = Vec::new();
            resp.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).unwrap();
            assert!(
                wire.contains(&format!("{}: v\r\n", known_case(&known))),
                "{wire}"
            );
        }
    }

    #[test]
    fn numbers_are_their_decimal_text() {
        for n in [0, 1, 9, 10, 99, 100, 1023, 1024, 1025, 1 << 40, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    fn known_case(known: &KnownHeader) -> String {
        // The case written on the wire: RateLimit-* in their draft's case, the rest as before.
        let lower = known.name().as_str();
        match lower {
            "ratelimit-limit" => "RateLimit-Limit".into(),
            "ratelimit-remaining" => "RateLimit-Remaining".into(),
            "ratelimit-reset" => "RateLimit-Reset".into(),
            _ => lower.into(),
        }
    }
}
