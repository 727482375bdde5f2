//! Requests Pingora's HTTP/1 parser refused (duplicate or invalid `Content-Length`, an
//! unsupported `Transfer-Encoding`, garbage bytes, a head over Pingora's size cap) get the
//! same answer as every other refusal: the JSON body with `bad_request`, a request id, a count
//! in the request and gateway-response metrics, and an access-log line. Connections that broke
//! or went silent while sending a head get nothing (there is nobody to answer); the slow ones
//! are counted by the head deadline.

use super::Proxy;
use crate::reply::{self, ErrorCode};
use crate::request_id;
use crate::telemetry::access_log::Entry;
use crate::telemetry::metrics::{Protocol, Source, UNMATCHED_ROUTE};
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Instant, SystemTime};

/// The method label of a request whose method is unknown (it was never parsed).
const UNPARSED_METHOD: &str = "-";

impl Proxy {
    /// Answers (or not) a request head that could not be read.
    pub(super) async fn answer_invalid_request(&self, session: &mut ServerSession, e: &Error) {
        if !matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
            log::debug!("request head not read: {e}");
            return;
        }
        let start = Instant::now();
        let id = request_id::accept_or_generate(None);
        if let Err(err) = reply::send_before_session(session, ErrorCode::BadRequest, &id).await {
            log::debug!("could not answer a malformed request: {err}");
        }
        let snapshot = self.gateway.snapshot();
        let metrics = &snapshot.unmatched();
        // `_OTHER`, the label of every method outside the standard set.
        let method = http::Method::from_bytes(b"_OTHER").unwrap_or_default();
        let status = ErrorCode::BadRequest.status();
        // Only HTTP/1 reaches this hook: an HTTP/2 stream with a bad head is refused by h2.
        metrics.record(
            &method,
            status,
            Source::Gateway,
            Protocol::H1,
            start.elapsed().as_secs_f64(),
        );
        metrics.gateway_response(ErrorCode::BadRequest.as_str());
        let (Some(log), true) = (
            self.gateway.access_log(),
            snapshot.config().access_log.enabled,
        ) else {
            return;
        };
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        log.log(&Entry {
            time: SystemTime::now(),
            request_id: id.to_str().unwrap_or(""),
            trace_id: None,
            span: None,
            route: UNMATCHED_ROUTE,
            host: None,
            method: UNPARSED_METHOD,
            path: "",
            query: None,
            protocol: "HTTP/1.1",
            user_agent: None,
            status,
            source: "gateway",
            reason: Some(ErrorCode::BadRequest.as_str()),
            service: None,
            consumer: None,
            instance: None,
            attempts: 0,
            duration: start.elapsed(),
            upstream: None,
            bytes_in: 0,
            bytes_out: session.body_bytes_sent(),
            client_ip,
        });
    }
}
