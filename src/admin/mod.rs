//! The admin listener: liveness, readiness, metrics and the admin API. `/healthz`, `/readyz`
//! and `/metrics` are open (probes and scrapers); `/admin/*` needs the bearer token when one is
//! configured. Everything answers JSON except `/metrics`.

mod consumers;
mod registry;

use crate::gateway::{ConfigSource, Gateway};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics;
use crate::telemetry::unix_seconds;
use crate::upstream::Upstream;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::sync::Arc;

/// The admin HTTP application.
pub struct Admin {
    gateway: Arc<Gateway>,
}

impl Admin {
    /// An admin API over `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        authorized: bool,
    ) -> (StatusCode, Value) {
        let snapshot = self.gateway.snapshot();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => (StatusCode::OK, json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => {
                // Ready once every proxy listener is bound: before that nothing is served.
                let ready = self.gateway.listeners().is_ready();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (
                    status,
                    readiness(&snapshot, ready, self.gateway.registry().to_json()),
                )
            }
            (_, ["admin", ..]) if !authorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "unauthorized", "message": "missing or wrong bearer token"}}),
            ),
            (&Method::GET, ["admin", "routes"]) => (StatusCode::OK, routes(&snapshot)),
            (&Method::GET, ["admin", "services"]) => (
                StatusCode::OK,
                Value::Array(
                    snapshot
                        .services()
                        .values()
                        .map(|u| self.service(u))
                        .collect(),
                ),
            ),
            (&Method::GET, ["admin", "services", name]) => match snapshot.services().get(*name) {
                Some(u) => (StatusCode::OK, self.service(u)),
                None => not_found(),
            },
            (&Method::GET, ["admin", "gateways"]) => self.gateways().await,
            (&Method::GET, ["admin", "registry"]) => {
                (StatusCode::OK, self.gateway.registry().to_json())
            }
            (&Method::POST, ["admin", "services", name, "instances"]) => {
                registry::handle(&self.gateway, name, registry::Operation::Add(body)).await
            }
            (&Method::DELETE, ["admin", "services", name, "instances", id]) => {
                registry::handle(&self.gateway, name, registry::Operation::Remove(id)).await
            }
            (&Method::POST, ["admin", "services", name, "instances", id, "drain"]) => {
                registry::handle(&self.gateway, name, registry::Operation::Drain(id)).await
            }
            (&Method::GET, ["admin", "consumers"]) => consumers::list(&self.gateway),
            (&Method::POST, ["admin", "consumers", name]) => {
                consumers::handle(&self.gateway, name, consumers::Operation::Put(body)).await
            }
            (&Method::DELETE, ["admin", "consumers", name]) => {
                consumers::handle(&self.gateway, name, consumers::Operation::Remove).await
            }
            (&Method::GET, ["admin", "config"]) => (StatusCode::OK, self.config(&snapshot)),
            (&Method::GET, ["admin", "log-level"]) => (
                StatusCode::OK,
                json!({"level": crate::log_filter::current()}),
            ),
            (&Method::PUT, ["admin", "log-level"]) => set_log_level(body),
            (&Method::POST, ["admin", "reload"]) => match self.gateway.reload().await {
                Ok(hash) => (StatusCode::OK, json!({"reloaded": true, "hash": hash})),
                Err(e) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"reloaded": false, "error": e.to_string(), "hash": snapshot.hash()}),
                ),
            },
            _ => not_found(),
        }
    }

    fn service(&self, upstream: &Upstream) -> Value {
        let instances: Vec<Value> = upstream
            .instances()
            .into_iter()
            .map(|(backend, ready, registration)| {
                let verdict = self.gateway.verdicts().get(&backend);
                let breaker = backend
                    .addr
                    .as_inet()
                    .and_then(|a| upstream.breaker_view(a));
                json!({
                    "addr": backend.addr.to_string(),
                    "weight": backend.weight,
                    "source": if registration.is_some() { "redis" } else { "static" },
                    "id": registration.as_ref().map(|r| r.id.clone()),
                    "draining": registration.as_ref().is_some_and(|r| r.draining),
                    "heartbeat_age_seconds": registration.as_ref().and_then(|r| heartbeat_age(r.heartbeat_ms)),
                    "zone": registration.as_ref().and_then(|r| r.zone.clone()),
                    "version": registration.as_ref().and_then(|r| r.version.clone()),
                    "meta": registration.as_ref().map(|r| r.meta.clone()),
                    "healthy": ready,
                    "last_check_error": verdict.and_then(|v| v.last_error),
                    "breaker": breaker.map(|(state, next_probe)| json!({
                        "state": state.as_str(),
                        "next_probe_in_seconds": next_probe.as_secs_f64(),
                    })),
                })
            })
            .collect();
        json!({
            "name": upstream.name(),
            "balance": upstream.config().balance,
            "hash_key": upstream.config().hash_key,
            "health_check": upstream.config().health_check,
            "instances": instances,
        })
    }

    /// The membership list: every gateway sharing this Redis.
    async fn gateways(&self) -> (StatusCode, Value) {
        let Some(membership) = self.gateway.membership() else {
            return (
                StatusCode::CONFLICT,
                json!({"error": {"code": "no_redis", "message": "no redis section is configured; this gateway is alone"}}),
            );
        };
        match membership.to_json().await {
            Ok(list) => (StatusCode::OK, list),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": {"code": "redis_unavailable", "message": e.to_string()},
                       "self": membership.id(),
                       "live_last_known": crate::telemetry::redis::GATEWAYS_LIVE.get()}),
            ),
        }
    }

    fn config(&self, snapshot: &Snapshot) -> Value {
        let mut config = serde_json::to_value(&**snapshot.config()).unwrap_or(Value::Null);
        redact_secrets(&mut config);
        let last = self
            .gateway
            .last_reload()
            .map(|r| json!({"at": unix_seconds(r.at), "ok": r.ok, "error": r.error}));
        json!({
            "hash": snapshot.hash(),
            "loaded_at": unix_seconds(snapshot.loaded_at()),
            "source": match self.gateway.source() {
                ConfigSource::File(p) => p.display().to_string(),
                ConfigSource::Embedded => "embedded demo".to_string(),
            },
            "last_reload": last,
            "config": config,
        })
    }
}

/// Hides the admin token, Redis credentials (passwords and the password part of URLs),
/// consumers' API keys and password hashes and JWT secrets of a configuration shown by
/// `/admin/config`.
fn redact_secrets(config: &mut Value) {
    if let Some(Value::Object(consumers)) = config.pointer_mut("/consumers") {
        for consumer in consumers.values_mut() {
            if let Some(Value::Array(keys)) = consumer.pointer_mut("/api_keys") {
                keys.iter_mut().for_each(|k| *k = json!("<redacted>"));
            }
            if let Some(hash) = consumer.pointer_mut("/basic/password_hash") {
                *hash = json!("<redacted>");
            }
        }
    }
    if let Some(Value::Object(policies)) = config.pointer_mut("/auth") {
        for policy in policies.values_mut() {
            if let Some(secret) = policy.pointer_mut("/secret").filter(|s| s.is_string()) {
                *secret = json!("<redacted>");
            }
        }
    }
    for pointer in [
        "/server/admin/token",
        "/redis/password",
        "/redis/sentinel/password",
    ] {
        if let Some(secret) = config.pointer_mut(pointer) {
            if secret.as_str().is_some_and(|t| !t.is_empty()) {
                *secret = json!("<redacted>");
            }
        }
    }
    let urls = ["/redis/url", "/redis/cluster", "/redis/sentinel/nodes"];
    for pointer in urls {
        match config.pointer_mut(pointer) {
            Some(Value::String(url)) => *url = redact_url(url),
            Some(Value::Array(list)) => {
                for url in list.iter_mut() {
                    if let Value::String(u) = url {
                        *u = redact_url(u);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `redis://user:secret@host` → `redis://user:<redacted>@host`.
fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':').map(|i| start + i) {
        Some(colon) => format!("{}:<redacted>{}", &url[..colon], &url[at..]),
        None => url.to_string(),
    }
}

/// Seconds since a heartbeat (Unix ms); None for pinned registrations.
fn heartbeat_age(heartbeat_ms: f64) -> Option<f64> {
    let now_ms = unix_seconds(std::time::SystemTime::now()) * 1000.0;
    heartbeat_ms
        .is_finite()
        .then(|| ((now_ms - heartbeat_ms) / 1000.0).max(0.0))
}

fn readiness(snapshot: &Snapshot, ready: bool, registry: Value) -> Value {
    json!({
        "ready": ready,
        "registry": registry,
        "config_hash": snapshot.hash(),
        "routes": snapshot.router().routes().len(),
        "services": snapshot.services().len(),
    })
}

fn routes(snapshot: &Snapshot) -> Value {
    Value::Array(
        snapshot
            .config()
            .routes
            .iter()
            .map(|r| {
                json!({"name": r.name, "service": r.service, "split": r.split,
                       "sticky": r.sticky, "mirror": r.mirror, "match": r.matcher,
                       "strip_prefix": r.strip_prefix, "rewrite": r.rewrite})
            })
            .collect(),
    )
}

/// `PUT /admin/log-level`: the body is the filter in `RUST_LOG` syntax, as text or as
/// `{"level": "..."}`. It holds until the process ends or a reload changes `log.level`.
fn set_log_level(body: &[u8]) -> (StatusCode, Value) {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let spec = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => match o.get("level").and_then(Value::as_str) {
            Some(level) => level.to_string(),
            None => {
                let message = "a JSON body needs a string `level`".to_string();
                return error(StatusCode::BAD_REQUEST, "bad_request", message);
            }
        },
        _ => text.to_string(),
    };
    match crate::log_filter::set(&spec) {
        Ok(previous) => {
            log::warn!("log filter {previous:?} -> {spec:?} (PUT /admin/log-level)");
            (StatusCode::OK, json!({"level": spec, "previous": previous}))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", e),
    }
}

/// An admin error answer: `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: String) -> (StatusCode, Value) {
    (status, json!({"error": {"code": code, "message": message}}))
}

/// 503 `redis_unavailable`: a Redis write or read the admin API needed failed.
fn redis_unavailable(e: impl std::fmt::Display) -> (StatusCode, Value) {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "redis_unavailable",
        e.to_string(),
    )
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"error": {"code": "not_found", "message": "no such admin resource"}}),
    )
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        if (method == Method::GET || method == Method::HEAD) && path == "/metrics" {
            let gzip = req
                .headers
                .get(http::header::ACCEPT_ENCODING)
                .is_some_and(|v| accepts_gzip(v.as_bytes()));
            return exposition(metrics::render(), gzip, method == Method::HEAD);
        }
        let snapshot = self.gateway.snapshot();
        let token = &snapshot.config().server.admin.token;
        let authorized = token.is_empty()
            || req
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .is_some_and(|given| constant_time_eq(given, token.as_bytes()));
        let body =
            match read_body(session).await {
                Ok(b) => b,
                Err(status) => return respond(
                    status,
                    "application/json",
                    br#"{"error":{"code":"bad_request","message":"unreadable or oversized body"}}"#
                        .to_vec(),
                ),
            };
        let (status, body) = self.route(&method, &path, &body, authorized).await;
        respond(
            status,
            "application/json",
            serde_json::to_vec_pretty(&body).unwrap_or_default(),
        )
    }
}

/// Largest admin request body accepted.
const MAX_BODY: usize = 64 * 1024;

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, StatusCode> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
}

/// The `/metrics` answer: gzip-compressed when the scraper asks for it (an exposition is
/// hundreds of kilobytes of repetitive text; gzip takes it to about a tenth), headers only for
/// `HEAD` (with the length a `GET` would get).
fn exposition(text: Vec<u8>, gzip: bool, head: bool) -> Response<Vec<u8>> {
    use std::io::Write;
    let body = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = enc.write_all(&text);
        enc.finish().unwrap_or(text)
    } else {
        text
    };
    let len = body.len();
    let mut resp = respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        if head { Vec::new() } else { body },
    );
    let headers = resp.headers_mut();
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    headers.insert(
        http::header::VARY,
        http::HeaderValue::from_static("Accept-Encoding"),
    );
    if gzip {
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
    }
    resp
}

/// Whether an `Accept-Encoding` value accepts gzip (listed, or `*`, without `q=0`).
fn accepts_gzip(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    text.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_to_scrapers_that_accept_it() {
        assert!(accepts_gzip(b"gzip"));
        assert!(accepts_gzip(b"br, GZIP;q=0.5"));
        assert!(accepts_gzip(b"*"));
        assert!(!accepts_gzip(b"gzip;q=0"));
        assert!(!accepts_gzip(b"identity, br"));
        assert!(!accepts_gzip(b"x-gzip-like"));
    }

    #[test]
    fn credentials_never_leave_through_the_config_view() {
        assert_eq!(
            redact_url("rediss://app:s3cret@10.0.0.1:6380/0"),
            "rediss://app:<redacted>@10.0.0.1:6380/0"
        );
        assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://:<redacted>@h:1");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redact_url("unix:///run/redis.sock"),
            "unix:///run/redis.sock"
        );
        let mut config = json!({
            "server": {"admin": {"token": "t0k"}},
            "redis": {"password": "pw", "cluster": ["redis://u:p@a:1", "redis://b:2"],
                      "sentinel": {"password": "spw", "nodes": ["redis://:x@s:26379"]}},
        });
        redact_secrets(&mut config);
        let text = config.to_string();
        for secret in ["t0k", "\"pw\"", "spw", "u:p@", ":x@"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
