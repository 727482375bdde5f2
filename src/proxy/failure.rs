//! Failures: classifying upstream errors (the reply code a client sees and the `kind` metric
//! label) and answering a request that could not be proxied.

use super::headers::rate_header_values;
use super::{Proxy, RequestCtx};
use crate::reply::{self, ErrorCode};
use http::HeaderValue;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

impl Proxy {
    /// Answers a request whose proxying failed, unless the connection is dead or the
    /// upstream's response had begun; says whether the connection can serve another request.
    pub(super) async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.esource() {
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                _ => Some(ErrorCode::BadRequest),
            },
            _ => Some(ctx.error.unwrap_or_else(|| error_code(e))),
        };
        let Some(code) = code else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if let Some(sent) = session.response_written() {
            // The upstream's response had begun: nothing more can be said on this connection.
            return FailToProxy {
                error_code: sent.status.as_u16(),
                can_reuse_downstream: false,
            };
        }
        ctx.error = Some(code);
        ctx.gateway_made = true;
        let mut extra: Vec<_> = rate_header_values(ctx.rate_headers).collect();
        if let Some(s) = ctx.retry_after.filter(|_| code.status() == 503) {
            extra.push(("Retry-After", HeaderValue::from(s)));
        }
        let sent = reply::send(session, code, ctx.request_id.as_ref(), &extra).await;
        if let Err(err) = &sent {
            log::debug!("could not send error response: {err}");
        }
        FailToProxy {
            error_code: code.status(),
            // `reply::send` turned keep-alive off when the request was not read completely.
            can_reuse_downstream: sent.is_ok() && session.get_keepalive().is_some(),
        }
    }
}

/// The reply code for an upstream-side error.
pub(super) fn error_code(e: &Error) -> ErrorCode {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ErrorCode::UpstreamTimeout
        }
        ErrorType::HTTPStatus(503) => ErrorCode::NoHealthyUpstream,
        _ => ErrorCode::UpstreamConnectError,
    }
}

/// The `kind` label of `portico_upstream_errors_total`.
pub(super) fn error_kind(etype: &ErrorType) -> &'static str {
    match etype {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::BindError => {
            "connect_error"
        }
        ErrorType::TLSHandshakeFailure | ErrorType::TLSHandshakeTimedout => "tls_handshake",
        ErrorType::ReadTimedout => "read_timeout",
        ErrorType::WriteTimedout => "write_timeout",
        ErrorType::ConnectionClosed => "connection_closed",
        ErrorType::ReadError => "read_error",
        ErrorType::WriteError => "write_error",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => {
            "invalid_response"
        }
        _ => "other",
    }
}
