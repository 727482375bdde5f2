//! Request checks made before any routing: framing that could smuggle a second request past an
//! upstream, size limits, and path normalisation so a prefix route cannot be escaped with
//! `..`, `%2e%2e` or doubled slashes.

use crate::config::LimitsConfig;
use crate::reply::ErrorCode;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// Refuses requests whose framing or size is unacceptable; a declared body over `max_body`
/// (the largest limit of any route, which the route's own limit narrows later) is refused
/// before routing. `raw_head` is the request head as
/// received (HTTP/1): Pingora drops `Content-Length` when `Transfer-Encoding` is present
/// (RFC 9112 §6.3), so only the raw bytes still show that conflict.
pub fn check(
    req: &RequestHeader,
    raw_head: Option<&[u8]>,
    limits: &LimitsConfig,
    max_body: u64,
) -> Result<(), ErrorCode> {
    let h = &req.headers;
    // RFC 9112 §6.1: a message with both is a smuggling vector; we refuse rather than pick one.
    if h.contains_key(http::header::TRANSFER_ENCODING)
        && (h.contains_key(http::header::CONTENT_LENGTH)
            || raw_head.is_some_and(raw_has_content_length))
    {
        return Err(ErrorCode::BadRequest);
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let declared = length_value(first).ok_or(ErrorCode::BadRequest)?;
        if lengths.next().is_some() {
            return Err(ErrorCode::BadRequest);
        }
        if declared > max_body {
            return Err(ErrorCode::PayloadTooLarge);
        }
    }
    let header_bytes: usize = h
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri.path().len()
        + req.uri.query().map_or(0, |q| q.len() + 1)
        + req.uri.authority().map_or(0, |a| a.as_str().len());
    if header_bytes as u64 > limits.max_header_bytes {
        return Err(ErrorCode::HeadersTooLarge);
    }
    Ok(())
}

/// Refuses a missing `Host` on HTTP/1.1 (RFC 9112 §3.2), more than one, and a value that is
/// not `host[:port]`: a comma, a path, userinfo or any character outside a host name, an IPv4
/// address or a bracketed IPv6 literal would let the gateway and an origin disagree on it.
pub fn check_host(req: &RequestHeader) -> Result<(), ErrorCode> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.as_bytes(),
        (None, _) if req.version != http::Version::HTTP_11 => return Ok(()),
        // HTTP/2 carries `:authority` instead; Pingora checks its form.
        (None, _) if req.version == http::Version::HTTP_11 && req.uri.authority().is_some() => {
            return Ok(())
        }
        _ => return Err(ErrorCode::BadRequest),
    };
    if valid_host(host) {
        Ok(())
    } else {
        Err(ErrorCode::BadRequest)
    }
}

/// The body length a request declares; `None` without (or with an unreadable)
/// `Content-Length` — which [`check`] has already refused before anyone else asks.
pub fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(length_value)
}

fn length_value(v: &http::HeaderValue) -> Option<u64> {
    std::str::from_utf8(v.as_bytes()).ok()?.trim().parse().ok()
}

/// `reg-name` of unreserved and percent characters, or `[v6]`, with an optional `:port`.
fn valid_host(value: &[u8]) -> bool {
    let valid_port = |p: &[u8]| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit);
    if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        return literal_ok
            && match &rest[close + 1..] {
                [] => true,
                [b':', port @ ..] => valid_port(port),
                _ => false,
            };
    }
    let (name, port) = match value.iter().position(|b| *b == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'))
        && port.is_none_or(valid_port)
}

/// Header names with `_`: an origin behind a CGI-style convention reads `X_User` as `X-User`,
/// so a client could pass a header the gateway thinks it controls.
pub fn underscore_header_names(req: &RequestHeader) -> impl Iterator<Item = &http::HeaderName> {
    req.headers.keys().filter(|k| k.as_str().contains('_'))
}

/// Whether raw request-head bytes carry a `Content-Length` field (any case).
fn raw_has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n')
        .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// The path routes are matched against: `%2e`/`%2E` decoded to `.`, empty and `.` segments
/// dropped, `..` segments resolved (never above the root). Encoded slashes (`%2F`) stay
/// encoded: they are data, not separators. `None` for a path that is not origin-form.
pub fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    let needs_work = path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path.contains("%2e")
        || path.contains("%2E");
    if !needs_work {
        return Some(Cow::Borrowed(path));
    }
    let decoded = path.replace("%2e", ".").replace("%2E", ".");
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for s in &out {
        normalized.push('/');
        normalized.push_str(s);
    }
    if normalized.is_empty() || (decoded.ends_with('/') && !out.is_empty()) {
        normalized.push('/');
    }
    Some(Cow::Owned(normalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_double_slashes_cannot_escape_a_prefix() {
        let n = |p| normalize_path(p).map(|c| c.into_owned());
        assert_eq!(n("/api/users").as_deref(), Some("/api/users"));
        assert_eq!(n("/api/../admin").as_deref(), Some("/admin"));
        assert_eq!(n("/api/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(n("/api/%2E%2E/%2e%2E/x").as_deref(), Some("/x"));
        assert_eq!(n("//admin").as_deref(), Some("/admin"));
        assert_eq!(n("/a/./b//c/").as_deref(), Some("/a/b/c/"));
        assert_eq!(n("/../../etc/passwd").as_deref(), Some("/etc/passwd"));
        assert_eq!(n("/api/..").as_deref(), Some("/"));
        assert_eq!(
            n("/a%2Fb").as_deref(),
            Some("/a%2Fb"),
            "encoded slashes are data"
        );
        assert_eq!(n("relative"), None);
    }

    #[test]
    fn hosts_must_be_a_single_plain_host_and_port() {
        let with_host = |v: Option<&str>, version| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.set_version(version);
            if let Some(v) = v {
                r.append_header("host", v).unwrap();
            }
            check_host(&r)
        };
        let v11 = http::Version::HTTP_11;
        for good in [
            "api.example.com",
            "a-b.c:8080",
            "10.0.0.1:80",
            "[::1]:8443",
            "[2001:db8::1]",
            "x_y.local",
        ] {
            assert_eq!(with_host(Some(good), v11), Ok(()), "{good}");
        }
        for bad in [
            "a.com,b.com",
            "a.com/evil",
            "user@a.com",
            "a.com:",
            "a.com:123456",
            "a com",
            "[::1",
            "[zz]:1",
            ":80",
            "",
        ] {
            assert_eq!(
                with_host(Some(bad), v11),
                Err(ErrorCode::BadRequest),
                "{bad:?}"
            );
        }
        assert_eq!(
            with_host(None, v11),
            Err(ErrorCode::BadRequest),
            "HTTP/1.1 needs Host"
        );
        assert_eq!(with_host(None, http::Version::HTTP_10), Ok(()));
        let mut two = RequestHeader::build("GET", b"/", None).unwrap();
        two.append_header("host", "a").unwrap();
        two.append_header("host", "b").unwrap();
        assert_eq!(check_host(&two), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn raw_headers_reveal_a_dropped_content_length() {
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\n\r\n"
        ));
        assert!(!raw_has_content_length(
            b"POST / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n"
        ));
    }

    fn req(raw: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in raw {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn check_(req: &RequestHeader, limits: &LimitsConfig) -> Result<(), ErrorCode> {
        check(req, None, limits, limits.max_request_body)
    }

    #[test]
    fn smuggling_shapes_and_oversized_requests_are_refused() {
        let limits = LimitsConfig {
            max_request_body: 100,
            max_header_bytes: 200,
            ..LimitsConfig::default()
        };
        assert_eq!(check_(&req(&[("content-length", "5")]), &limits), Ok(()));
        assert_eq!(
            check_(
                &req(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
                &limits
            ),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            check_(
                &req(&[("content-length", "5"), ("content-length", "5")]),
                &limits
            ),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            check_(&req(&[("content-length", "-1")]), &limits),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            check_(&req(&[("content-length", "101")]), &limits),
            Err(ErrorCode::PayloadTooLarge)
        );
        let big = "a".repeat(300);
        assert_eq!(
            check_(&req(&[("x-big", &big)]), &limits),
            Err(ErrorCode::HeadersTooLarge)
        );
    }
}
