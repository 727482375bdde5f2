//! Classifying upstream failures: the reply code a client sees and the `kind` metric label.

use crate::reply::ErrorCode;
use pingora::{Error, ErrorType};

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
