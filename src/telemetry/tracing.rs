//! OpenTelemetry tracing: a SERVER span per request and a CLIENT span per upstream attempt,
//! W3C `traceparent`/`tracestate` continued from trusted peers and injected upstream,
//! parent-based ratio sampling, OTLP export off the request path: HTTP/protobuf through the
//! exporter's own (blocking) client on the batch processor's own thread, or gRPC driven on the
//! tracing service's runtime. An unreachable collector only loses spans (counted).
//!
//! The provider is built inside a background service (after any daemonizing fork, so the
//! batch thread lives in the serving process) and shut down, flushing, when the server stops.
//! Requests served before it is up carry no span.

use super::query_redaction::QueryRedaction;
use super::server_trace::{self, PresetIds, ServerTrace};
use crate::config::{OtlpCompression, OtlpProtocol, TracingConfig, TrustIncoming};
use crate::known_headers;
use async_trait::async_trait;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SdkTracer, SdkTracerProvider, ShouldSample, Span, SpanExporter,
};
use opentelemetry_sdk::Resource;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Tracing state shared by the proxy and the service that owns the provider.
pub struct Tracing {
    config: TracingConfig,
    tracer: OnceLock<SdkTracer>,
    provider: OnceLock<SdkTracerProvider>,
    propagator: TraceContextPropagator,
    /// The provider's sampler, consulted before any SDK span is made (see `server_trace`).
    sampler: Sampler,
}

/// Parent-based ratio sampling: a trusted parent's decision is followed, a new trace is
/// sampled by its id.
fn sampler(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
}

impl Tracing {
    /// Tracing per `config`; spans start once [`TracingService`] has run.
    pub fn new(config: TracingConfig) -> Self {
        Self {
            sampler: sampler(config.sample_ratio),
            config,
            tracer: OnceLock::new(),
            provider: OnceLock::new(),
            propagator: TraceContextPropagator::new(),
        }
    }

    /// Exports every finished span still queued (blocks: call off the async threads).
    pub fn flush(&self) {
        if let Some(provider) = self.provider.get() {
            let _ = provider.force_flush();
        }
    }

    /// Builds the exporter and the provider; must run on the tracing service's runtime, which
    /// drives a gRPC exporter's connection.
    fn start_provider(&self) -> Result<(), String> {
        let compression = match self.config.compression {
            OtlpCompression::None => None,
            OtlpCompression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        };
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let provider = match self.config.protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut http = builder
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(self.config.otlp_endpoint.clone())
                    .with_timeout(self.config.export_timeout);
                if let Some(c) = compression {
                    http = http.with_compression(c);
                }
                self.provider(http.build().map_err(|e| e.to_string())?)
            }
            OtlpProtocol::Grpc => {
                let mut grpc = builder
                    .with_tonic()
                    .with_endpoint(self.config.otlp_endpoint.clone())
                    .with_timeout(self.config.export_timeout);
                if let Some(c) = compression {
                    grpc = grpc.with_compression(c);
                }
                // Built here, on the tracing service's runtime: tonic's channel spawns its
                // connection there (the documented pattern: the runtime must outlive the
                // provider, and this service's lives until the provider is shut down).
                self.provider(grpc.build().map_err(|e| e.to_string())?)
            }
        };
        let scope = opentelemetry::InstrumentationScope::builder("portico")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let _ = self.tracer.set(provider.tracer_with_scope(scope));
        let _ = self.provider.set(provider);
        Ok(())
    }

    fn provider<E: SpanExporter + 'static>(&self, exporter: E) -> SdkTracerProvider {
        let resource = Resource::builder()
            .with_service_name(self.config.service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                // The same id as the gateway's membership entry (`GET /admin/gateways`).
                KeyValue::new("service.instance.id", super::instance_id()),
                KeyValue::new("host.name", super::host_name()),
            ])
            .build();
        SdkTracerProvider::builder()
            .with_batch_exporter(super::span_export::Counted::new(exporter))
            .with_sampler(sampler(self.config.sample_ratio))
            .with_id_generator(PresetIds)
            .with_resource(resource)
            .build()
    }

    /// Starts the SERVER span of a request. The incoming trace context is continued only when
    /// the peer is trusted per `trust_incoming`; otherwise a new root is started. Only a
    /// sampled trace gets an SDK span (see `server_trace`).
    pub fn server_span(&self, req: &RequestHeader, facts: &ServerFacts) -> Option<ServerTrace> {
        let tracer = self.tracer.get()?;
        let trusted = match self.config.trust_incoming {
            TrustIncoming::All => true,
            TrustIncoming::TrustedProxies => facts.peer_trusted,
            TrustIncoming::None => false,
        };
        let parent = if trusted {
            self.propagator.extract(&HeaderExtractor(&req.headers))
        } else {
            Context::new()
        };
        let parent_sc = parent.span().span_context().clone();
        let trace_id = if parent_sc.is_valid() {
            parent_sc.trace_id()
        } else {
            server_trace::new_trace_id()
        };
        let method = method_label(&req.method);
        let kind = SpanKind::Server;
        let decision = self
            .sampler
            .should_sample(Some(&parent), trace_id, method, &kind, &[], &[]);
        if decision.decision == SamplingDecision::Drop {
            // As the SDK makes a dropped span: no flags, the sampler's trace state.
            let sc = SpanContext::new(
                trace_id,
                server_trace::new_span_id(),
                TraceFlags::default(),
                false,
                decision.trace_state,
            );
            return Some(ServerTrace::Unsampled(sc));
        }
        let span = server_trace::with_preset_trace_id(trace_id, || {
            tracer
                .span_builder(method)
                .with_kind(kind)
                .start_with_context(tracer, &parent)
        });
        Some(ServerTrace::Sampled(
            parent.with_span(described(span, req, facts)),
        ))
    }

    /// Starts the CLIENT span of one upstream attempt under `server`. None for an unsampled
    /// trace: the upstream then continues from the SERVER span (see [`Tracing::inject_server`]).
    /// `url.full` is set once the upstream request is final ([`set_url_full`]).
    pub fn client_span(
        &self,
        server: &ServerTrace,
        method: &http::Method,
        addr: SocketAddr,
        resend_count: u32,
    ) -> Option<Span> {
        let tracer = self.tracer.get()?;
        let server = server.sampled()?;
        let method = method_label(method);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("server.address", addr.ip().to_string()),
            KeyValue::new("server.port", i64::from(addr.port())),
        ];
        if resend_count > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(resend_count),
            ));
        }
        Some(
            tracer
                .span_builder(method)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes)
                .start_with_context(tracer, server),
        )
    }

    /// Writes `span`'s context into the upstream request as `traceparent`/`tracestate`.
    pub fn inject(&self, span: &Span, req: &mut RequestHeader) {
        inject_span_context(span.span_context(), req);
    }

    /// Writes the SERVER span's context upstream (unsampled traces have no CLIENT span).
    pub fn inject_server(&self, server: &ServerTrace, req: &mut RequestHeader) {
        server.with_span_context(|sc| inject_span_context(sc, req));
    }
}

/// The SERVER span's attributes from the request head and the connection.
fn described(mut span: Span, req: &RequestHeader, facts: &ServerFacts) -> Span {
    if !span.is_recording() {
        return span;
    }
    let ServerFacts {
        client_ip,
        tls,
        peer,
        ..
    } = *facts;
    let scheme = if tls { "https" } else { "http" };
    span.set_attributes([
        KeyValue::new("http.request.method", method_label(&req.method)),
        KeyValue::new("url.path", req.uri.path().to_string()),
        KeyValue::new("url.scheme", scheme),
        KeyValue::new("client.address", client_ip.to_string()),
        KeyValue::new("network.protocol.version", protocol_version(req.version)),
    ]);
    if let Some((host, port)) = server_address(req, tls) {
        span.set_attribute(KeyValue::new("server.address", host.to_string()));
        span.set_attribute(KeyValue::new("server.port", i64::from(port)));
    }
    if let Some(peer) = peer {
        span.set_attribute(KeyValue::new("network.peer.address", peer.ip().to_string()));
        span.set_attribute(KeyValue::new("network.peer.port", i64::from(peer.port())));
    }
    if let Some(ua) = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.set_attribute(KeyValue::new("user_agent.original", ua.to_string()));
    }
    span
}

/// Writes `sc` into the upstream request as `traceparent`/`tracestate` (or removes both
/// when there is no valid context to hand on).
fn inject_span_context(sc: &SpanContext, req: &mut RequestHeader) {
    if !sc.is_valid() {
        req.remove_header(known_headers::TRACEPARENT.name());
        req.remove_header(known_headers::TRACESTATE.name());
        return;
    }
    // Written by hand: the generic propagator allocates a String per header and field.
    let mut buf = [0u8; 55];
    buf[..3].copy_from_slice(b"00-");
    crate::hex::encode_into(&mut buf[3..35], &sc.trace_id().to_bytes());
    buf[35] = b'-';
    crate::hex::encode_into(&mut buf[36..52], &sc.span_id().to_bytes());
    buf[52] = b'-';
    crate::hex::encode_into(&mut buf[53..55], &[sc.trace_flags().to_u8()]);
    // insert_header replaces any incoming value, so only tracestate may need a removal.
    if let Ok(v) = http::HeaderValue::from_bytes(&buf) {
        let _ = req.insert_known_header(&known_headers::TRACEPARENT, v);
    }
    let state = sc.trace_state().header();
    if state.is_empty() {
        req.remove_header(known_headers::TRACESTATE.name());
    } else if let Ok(state) = http::HeaderValue::try_from(state) {
        let _ = req.insert_known_header(&known_headers::TRACESTATE, state);
    }
}

/// What the SERVER span says about the connection.
#[derive(Clone, Copy)]
pub struct ServerFacts {
    /// Whether the socket peer is a trusted proxy (its `traceparent` is believed then).
    pub peer_trusted: bool,
    /// The client, after trusted proxies.
    pub client_ip: IpAddr,
    pub tls: bool,
    /// The socket peer.
    pub peer: Option<SocketAddr>,
}

/// Names the route on the server span once it is known: `http.route` is the route's path
/// template (its prefix — bounded, as the convention asks), the span name `METHOD template`,
/// and `portico.route` the route's name.
pub fn name_server_span(trace: &ServerTrace, method: &http::Method, route: &str, template: &str) {
    let Some(cx) = trace.sampled() else {
        return;
    };
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    span.update_name(format!("{} {template}", method_label(method)));
    span.set_attribute(KeyValue::new("http.route", template.to_string()));
    span.set_attribute(KeyValue::new("portico.route", route.to_string()));
}

/// The URL the upstream request actually targets — after strip, rewrite and credential
/// removal — on the attempt's CLIENT span.
pub fn set_url_full(
    span: &mut Span,
    tls: bool,
    addr: SocketAddr,
    req: &RequestHeader,
    redaction: &QueryRedaction,
) {
    let scheme = if tls { "https" } else { "http" };
    let path = req.uri.path();
    let url = match req.uri.query() {
        Some(query) => format!("{scheme}://{addr}{path}?{}", redaction.redact(query)),
        None => format!("{scheme}://{addr}{path}"),
    };
    span.set_attribute(KeyValue::new("url.full", url));
}

/// Records the client's query on a sampled SERVER span as `url.query`, secrets blanked.
pub fn set_url_query(trace: &ServerTrace, req: &RequestHeader, redaction: &QueryRedaction) {
    let Some(cx) = trace.sampled() else {
        return;
    };
    let span = cx.span();
    if let Some(query) = req.uri.query().filter(|_| span.is_recording()) {
        span.set_attribute(KeyValue::new(
            "url.query",
            redaction.redact(query).into_owned(),
        ));
    }
}

/// `network.protocol.version`: `1.0`, `1.1`, `2`.
fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `server.address` and `server.port` from `Host` (or `:authority`), the port defaulting by
/// scheme.
fn server_address(req: &RequestHeader, tls: bool) -> Option<(&str, u16)> {
    let authority = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let default = if tls { 443 } else { 80 };
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host();
    let host = &authority[authority.find(host)?..][..host.len()];
    Some((host, parsed.port_u16().unwrap_or(default)))
}

/// Ends a CLIENT span with the upstream's status, or with `error_type` when none came.
pub fn end_client_span(mut span: Span, status: Option<u16>, error_type: Option<&'static str>) {
    if let Some(code) = status {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
        if code >= 400 {
            span.set_status(Status::error(""));
        }
    }
    if let Some(kind) = error_type {
        span.set_attribute(KeyValue::new("error.type", kind));
        span.set_status(Status::error(kind));
    }
    span.end();
}

/// Ends the SERVER span with the final status (`reason` = Portico's code when it answered)
/// and the authenticated consumer (`user.id`).
pub fn end_server_span(
    trace: &ServerTrace,
    status: u16,
    reason: Option<&'static str>,
    consumer: Option<&str>,
) {
    let Some(cx) = trace.sampled() else {
        return;
    };
    let span = cx.span();
    if !span.is_recording() {
        span.end();
        return;
    }
    if let Some(c) = consumer {
        span.set_attribute(KeyValue::new("user.id", c.to_string()));
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(reason.unwrap_or("")));
    }
    // `error.type` on every failure: Portico's code when it answered, else (an upstream 5xx)
    // the status code, as the convention says.
    match reason {
        Some(r) => span.set_attribute(KeyValue::new("error.type", r)),
        None if status >= 500 => {
            span.set_attribute(KeyValue::new("error.type", status.to_string()))
        }
        None => {}
    }
    span.end();
}

/// The span id of a request's span and whether its trace is sampled (exported), if it has
/// one: the access log carries both, so a reader knows which trace ids lead to a trace.
pub fn span_facts(trace: &ServerTrace) -> Option<([u8; 8], bool)> {
    trace.with_span_context(|sc| {
        sc.is_valid()
            .then(|| (sc.span_id().to_bytes(), sc.is_sampled()))
    })
}

/// The trace id of a request's span, as 32 hex digits, if it has one.
pub fn trace_id(trace: &ServerTrace) -> Option<[u8; 16]> {
    trace.with_span_context(|sc| sc.is_valid().then(|| sc.trace_id().to_bytes()))
}

/// OTel's method label: the standard methods, everything else `_OTHER`.
fn method_label(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Builds the tracer provider on start and flushes it on shutdown.
pub struct TracingService(pub Arc<Tracing>);

#[async_trait]
impl BackgroundService for TracingService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if let Err(e) = self.0.start_provider() {
            log::error!("tracing disabled: cannot build the OTLP exporter: {e}");
            return;
        }
        log::info!(
            "tracing to {} ({:?}, {:?} compression, sample ratio {})",
            self.0.config.otlp_endpoint,
            self.0.config.protocol,
            self.0.config.compression,
            self.0.config.sample_ratio
        );
        let _ = shutdown.changed().await;
        if let Some(provider) = self.0.provider.get() {
            let provider = provider.clone();
            // The batch processor's shutdown blocks while it flushes; keep it off the runtime.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}
