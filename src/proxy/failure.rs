//! Answering a request that could not be proxied.

use super::attempt::error_code;
use super::{rate_headers, Proxy, RequestCtx};
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
            ErrorSource::Downstream if client_went_away(e) => None,
            // The body stopped arriving for `body_read_timeout`.
            ErrorSource::Downstream if e.etype() == &ErrorType::ReadTimedout => {
                Some(ErrorCode::RequestTimeout)
            }
            ErrorSource::Downstream => Some(ErrorCode::BadRequest),
            _ => Some(ctx.reply.error.unwrap_or_else(|| error_code(e))),
        };
        let Some(code) = code else {
            // Normal on the internet (a closed tab, a mobile network gone): counted, logged at
            // debug level only (Pingora's own line is suppressed, see `suppress_error_log`).
            let during = session.response_written().is_some();
            crate::telemetry::connections::client_went_away(during);
            log::debug!(
                "client went away {}: {e}",
                if during {
                    "during the response"
                } else {
                    "before the response"
                }
            );
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
        ctx.answer(code);
        let mut extra: Vec<_> = rate_headers(&ctx.reply).into_iter().flatten().collect();
        if let Some(s) = ctx.reply.retry_after.filter(|_| code.status() == 503) {
            extra.push(("Retry-After", HeaderValue::from(s)));
        }
        let sent = reply::send(session, code, ctx.request.id.as_ref(), &extra).await;
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

/// Whether `e` is the client closing or resetting its connection.
pub(super) fn client_went_away(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        )
}
