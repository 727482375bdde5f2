//! `portico run --demo`: two echo upstreams on loopback and an embedded configuration routing to
//! them, so a new user sees routing, balancing, health checks, rate limiting, KPIs and metrics
//! with no files and no Redis.

use crate::config::ConfigErrors;
use crate::echo::{serve, EchoState};
use crate::snapshot::{self, Plan};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};

/// The embedded demo configuration; `{ECHO_1}`/`{ECHO_2}` become the echo addresses.
/// Listeners can be moved with `PORTICO_DEMO_LISTEN` and `PORTICO_DEMO_ADMIN`.
pub const DEMO_CONFIG: &str = r#"
server:
  listen: ["${PORTICO_DEMO_LISTEN:-127.0.0.1:8080}"]
  admin: {listen: "${PORTICO_DEMO_ADMIN:-127.0.0.1:9901}"}
routes:
  - name: demo-api
    match: {path_prefix: /api}
    service: echo
    strip_prefix: true
    request_headers: {set: {x-gateway: portico}}
  - name: demo-sticky
    match: {path_prefix: /sticky}
    service: echo-sticky
  - name: demo-limited
    match: {path_prefix: /limited}
    service: echo
    rate_limits: [demo-per-client]
  - name: demo-root
    service: echo
rate_limits:
  demo-per-client: {key: client_ip, limit: 5, per: 10s}
kpis:
  - {name: demo_posts, methods: [POST], status: 2xx}
services:
  echo:
    instances: ["{ECHO_1}", "{ECHO_2}"]
    health_check: {type: http, path: /health, interval: 2s, timeout: 500ms, rise: 2, fall: 2}
  echo-sticky:
    instances: ["{ECHO_1}", "{ECHO_2}"]
    balance: consistent_hash
    hash_key: header:x-user-id
"#;

/// The demo's upstreams, bound before the server starts and served by a background service.
pub struct DemoUpstreams {
    listeners: Mutex<Vec<(std::net::TcpListener, Arc<EchoState>)>>,
}

/// Binds two echo listeners on free loopback ports and returns the demo configuration.
pub fn prepare() -> Result<(Plan, DemoUpstreams), Box<dyn std::error::Error>> {
    let mut listeners = Vec::new();
    let mut text = DEMO_CONFIG.to_string();
    for i in 1..=2 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        text = text.replace(
            &format!("{{ECHO_{i}}}"),
            &listener.local_addr()?.to_string(),
        );
        listeners.push((listener, EchoState::new(&format!("echo-{i}"))));
    }
    let plan = snapshot::compile_str("<demo>", &text).map_err(|e: ConfigErrors| e.to_string())?;
    Ok((
        plan,
        DemoUpstreams {
            listeners: Mutex::new(listeners),
        },
    ))
}

#[async_trait]
impl BackgroundService for DemoUpstreams {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|p| p.into_inner()));
        let mut tasks = Vec::new();
        for (listener, state) in listeners {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => tasks.push(tokio::spawn(serve(l, state))),
                Err(e) => log::error!("demo upstream could not start: {e}"),
            }
        }
        let _ = shutdown.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}
