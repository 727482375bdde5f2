//! Responses Portico makes itself. One closed set of codes is shared by the JSON body, the
//! `Portico-Error` header, metrics and logs.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

/// Why Portico answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoRoute,
    RateLimited,
    CircuitOpen,
    NoHealthyUpstream,
    UpstreamConnectError,
    UpstreamTimeout,
    DeadlineExceeded,
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    HeadersTooLarge,
    MethodNotAllowed,
    RequestTimeout,
    Forbidden,
    Overloaded,
    AuthUnavailable,
}

impl ErrorCode {
    /// Every code, in a stable order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::NoRoute,
        ErrorCode::RateLimited,
        ErrorCode::CircuitOpen,
        ErrorCode::NoHealthyUpstream,
        ErrorCode::UpstreamConnectError,
        ErrorCode::UpstreamTimeout,
        ErrorCode::DeadlineExceeded,
        ErrorCode::BadRequest,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::HeadersTooLarge,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::Forbidden,
        ErrorCode::Overloaded,
        ErrorCode::AuthUnavailable,
    ];

    /// The wire and label name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no_route",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::NoHealthyUpstream => "no_healthy_upstream",
            ErrorCode::UpstreamConnectError => "upstream_connect_error",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::AuthUnavailable => "auth_unavailable",
        }
    }

    /// The HTTP status sent with this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::NoRoute => 404,
            ErrorCode::RateLimited => 429,
            ErrorCode::CircuitOpen
            | ErrorCode::NoHealthyUpstream
            | ErrorCode::Overloaded
            | ErrorCode::AuthUnavailable => 503,
            ErrorCode::UpstreamConnectError => 502,
            ErrorCode::UpstreamTimeout | ErrorCode::DeadlineExceeded => 504,
            ErrorCode::BadRequest => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Forbidden => 403,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no route matches this request",
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::CircuitOpen => {
                "every instance of the service is refused by its circuit breaker"
            }
            ErrorCode::NoHealthyUpstream => "no healthy instance is available",
            ErrorCode::UpstreamConnectError => {
                "the upstream could not be reached or answered badly"
            }
            ErrorCode::UpstreamTimeout => "the upstream did not answer in time",
            ErrorCode::DeadlineExceeded => "the route's deadline ran out",
            ErrorCode::BadRequest => "the request is malformed",
            ErrorCode::PayloadTooLarge => "the request is too large",
            ErrorCode::Unauthorized => "missing or wrong credentials",
            ErrorCode::HeadersTooLarge => "the request headers are too large",
            ErrorCode::MethodNotAllowed => "no route allows this method",
            ErrorCode::RequestTimeout => "the request body stopped arriving",
            ErrorCode::Forbidden => "a route policy does not allow this request",
            ErrorCode::Overloaded => "too many requests are in progress; retry later",
            ErrorCode::AuthUnavailable => {
                "the credentials could not be checked (identity provider or auth service unavailable); retry later"
            }
        }
    }
}

/// The `reason` of gateway-made responses that answer rather than refuse.
pub const ANSWER_REASONS: [&str; 4] = [
    "redirect",
    "static_response",
    "cors_preflight",
    "auth_denied",
];

/// A response the gateway makes that is not an error: a redirect, a static response, a CORS
/// preflight's answer.
pub struct Answer {
    pub head: Box<ResponseHeader>,
    pub body: Bytes,
    /// The `reason` label, one of [`ANSWER_REASONS`].
    pub reason: &'static str,
}

impl Answer {
    /// An answer with `status`, room for `headers` more headers, and no body yet.
    pub fn new(status: u16, headers: usize, reason: &'static str) -> pingora::Result<Self> {
        Ok(Self {
            head: Box::new(ResponseHeader::build(status, Some(headers + 2))?),
            body: Bytes::new(),
            reason,
        })
    }
}

/// The JSON body of an error response.
pub fn body(code: ErrorCode, request_id: &str) -> Bytes {
    let value = serde_json::json!({
        "error": {"code": code.as_str(), "message": code.message(), "request_id": request_id}
    });
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// Writes a complete error response; `extra` headers (e.g. `Retry-After`) are added. The
/// connection stays open for the next request when the request was read completely.
pub async fn send(
    session: &mut Session,
    code: ErrorCode,
    request_id: Option<&HeaderValue>,
    extra: &[(&'static str, HeaderValue)],
) -> pingora::Result<()> {
    let (resp, body) = response(code, request_id, extra)?;
    write(session, resp, body).await
}

/// Writes an answer, with the request id.
pub async fn send_answer(
    session: &mut Session,
    mut answer: Answer,
    request_id: Option<&HeaderValue>,
) -> pingora::Result<()> {
    if let Some(id) = request_id {
        answer.head.insert_header("X-Request-Id", id.clone())?;
    }
    answer.head.set_content_length(answer.body.len())?;
    write(session, answer.head, answer.body).await
}

async fn write(
    session: &mut Session,
    resp: Box<ResponseHeader>,
    body: Bytes,
) -> pingora::Result<()> {
    // An unread request body would be taken for the next request: such a connection is
    // closed, and the response says so (`Connection: close`) instead of promising keep-alive.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(resp, false).await?;
    session.write_response_body(Some(body), true).await
}

/// Answers a request Pingora could not parse, straight on the connection (there is no proxy
/// session yet); the connection is closed afterwards.
pub async fn send_before_session(
    session: &mut ServerSession,
    code: ErrorCode,
    request_id: &HeaderValue,
) -> pingora::Result<()> {
    let (resp, body) = response(code, Some(request_id), &[])?;
    session.set_keepalive(None);
    session.write_response_header(resp).await?;
    session.write_response_body(body, true).await?;
    session.finish_body().await
}

fn response(
    code: ErrorCode,
    request_id: Option<&HeaderValue>,
    extra: &[(&'static str, HeaderValue)],
) -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    let id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = body(code, id);
    let mut resp = ResponseHeader::build(code.status(), Some(6 + extra.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header("Portico-Error", code.as_str())?;
    if let Some(id) = request_id {
        resp.insert_header("X-Request-Id", id.clone())?;
    }
    // Appended: a 401 carries one `WWW-Authenticate` per mechanism of the route.
    for (name, value) in extra {
        resp.append_header(*name, value.clone())?;
    }
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.set_content_length(body.len())?;
    Ok((Box::new(resp), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_names_code_and_request_id() {
        let v: serde_json::Value =
            serde_json::from_slice(&body(ErrorCode::NoRoute, "abc\"1")).unwrap();
        assert_eq!(v["error"]["code"], "no_route");
        assert_eq!(v["error"]["request_id"], "abc\"1");
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(ErrorCode::RateLimited.status(), 429);
        assert_eq!(ErrorCode::CircuitOpen.status(), 503);
        assert_eq!(ErrorCode::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorCode::ALL.len(), 16);
    }
}
