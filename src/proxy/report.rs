//! What happens after a response is finished: metrics, spans, the route's log-phase policies
//! (business KPIs, and the events they publish) and the access log.

use super::{Proxy, RequestCtx};
use crate::policy::kpis::Finished;
use crate::reply::ErrorCode;
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::Entry;
use crate::telemetry::events::Event;
use crate::telemetry::metrics::{Protocol, Source};
use crate::telemetry::tracing::{end_client_span, end_server_span, span_facts, trace_id};
use pingora::proxy::Session;
use std::time::Duration;

/// The outcome of a finished request, gathered once in `logging`.
pub(super) struct Report {
    pub status: u16,
    pub source: Source,
    pub reason: Option<&'static str>,
    pub elapsed: Duration,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub trace_id: Option<[u8; 16]>,
}

impl Proxy {
    /// Records a finished request: metrics, spans, KPIs and events, access log.
    pub(super) fn report(&self, session: &Session, ctx: &mut RequestCtx) {
        if let Some(span) = ctx.upstream.current.as_mut().and_then(|a| a.span.take()) {
            end_client_span(*span, None, Some("aborted"));
        }
        let ctx = &*ctx;
        let Some(snapshot) = &ctx.snapshot else {
            return;
        };
        // 499: the client went away before any response was written (nginx's convention).
        let status = session
            .response_written()
            .map_or(499, |r| r.status.as_u16());
        let metrics = ctx.route().map_or(snapshot.unmatched(), |r| r.metrics());
        let source = if ctx.reply.gateway_made {
            Source::Gateway
        } else {
            Source::Upstream
        };
        let elapsed = ctx.request.start.elapsed();
        let req = session.req_header();
        metrics.record(
            &req.method,
            status,
            source,
            Protocol::of(req.version),
            elapsed.as_secs_f64(),
        );
        let (bytes_in, bytes_out) = (session.body_bytes_read(), session.body_bytes_sent());
        metrics.count_bytes(bytes_in as u64, bytes_out as u64);
        let reason = ctx
            .reply
            .error
            .map(ErrorCode::as_str)
            .or(ctx.reply.answered)
            .filter(|_| ctx.reply.gateway_made);
        if let Some(code) = reason {
            metrics.gateway_response(code);
        }
        let trace_id = ctx.trace.as_ref().and_then(trace_id);
        if let Some(cx) = &ctx.trace {
            let consumer = ctx.reply.policy.consumer().map(|c| c.name.as_str());
            end_server_span(cx, status, reason, consumer);
        }
        let report = Report {
            status,
            source,
            reason,
            elapsed,
            bytes_in,
            bytes_out,
            trace_id,
        };
        self.record_business_events(session, ctx, &report);
        self.write_access_log(session, ctx, snapshot, &report);
    }

    /// Runs the route's log-phase policies (KPIs) and queues the business events they publish.
    pub(super) fn record_business_events(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        report: &Report,
    ) {
        let Some(route) = ctx.route() else {
            return;
        };
        let req = session.req_header();
        let done = Finished {
            method: &req.method,
            status: report.status,
            request: &req.headers,
            response: session.response_written().map(|r| &r.headers),
            consumer: ctx.reply.policy.consumer().map(|c| c.name.as_str()),
        };
        route.policies().record(&done, |kpi| {
            let Some(sink) = self.gateway.events() else {
                return;
            };
            sink.publish(Event {
                kpi: kpi.name.clone(),
                route: route.name().to_string(),
                method: req.method.to_string(),
                status: report.status,
                request_id: request_id(ctx).to_string(),
                trace_id: report
                    .trace_id
                    .map(|id| opentelemetry::trace::TraceId::from_bytes(id).to_string()),
                ts_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            });
        });
    }

    /// Writes the access-log line, if logging is on and the request is sampled (responses
    /// Portico made and 5xx are always logged).
    pub(super) fn write_access_log(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        snapshot: &Snapshot,
        report: &Report,
    ) {
        let Some(log) = self.gateway.access_log() else {
            return;
        };
        let cfg = &snapshot.config().access_log;
        let always = report.source == Source::Gateway || report.status >= 500;
        if !cfg.enabled || !(always || cfg.sample >= 1.0 || fastrand::f64() < cfg.sample) {
            return;
        }
        let req = session.req_header();
        let route = ctx.route();
        log.log(&Entry {
            time: std::time::SystemTime::now(),
            request_id: request_id(ctx),
            trace_id: report.trace_id,
            span: ctx.trace.as_ref().and_then(span_facts),
            route: route.map_or(crate::telemetry::metrics::UNMATCHED_ROUTE, |r| r.name()),
            host: header_text(req, http::header::HOST)
                .or_else(|| req.uri.authority().map(|a| a.as_str())),
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req
                .uri
                .query()
                .filter(|_| cfg.log_query)
                .map(|q| snapshot.query_redaction().redact(q)),
            protocol: protocol(req.version),
            user_agent: header_text(req, http::header::USER_AGENT),
            status: report.status,
            source: match report.source {
                Source::Upstream => "upstream",
                Source::Gateway => "gateway",
            },
            reason: report.reason,
            service: route.and_then(|r| r.service(ctx.upstream.side)),
            consumer: ctx.reply.policy.consumer().map(|c| c.name.as_str()),
            instance: ctx.upstream.last_instance,
            attempts: ctx.upstream.attempts.made(),
            duration: report.elapsed,
            upstream: ctx.upstream.response_time,
            bytes_in: report.bytes_in,
            bytes_out: report.bytes_out,
            client_ip: ctx.request.client_ip,
        });
    }
}

/// A request header as text, when it is valid UTF-8.
fn header_text(req: &pingora::http::RequestHeader, name: http::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The protocol as the access log names it.
fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn request_id(ctx: &RequestCtx) -> &str {
    ctx.request
        .id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
