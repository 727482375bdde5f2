//! Assembles the Pingora server: the proxy listeners, the admin listener, the shared health
//! check service and the SIGHUP reloader, all over one [`Gateway`].

use crate::admin::Admin;
use crate::config::ServerConfig;
use crate::event_stream::Publisher;
use crate::gateway::{Gateway, ReloadOnHangup, ResolveHosts};
use crate::ip_deny::DenySync;
use crate::listener::buffers;
use crate::listener::drain::Drain;
use crate::listener::frontend::Frontend;
use crate::listener::Bound;
use crate::membership::Heartbeat;
use crate::proxy::Proxy;
use crate::redis_client::sentinel::SentinelWatch;
use crate::registry::watcher::Watcher;
use crate::telemetry::tracing::TracingService;
use crate::upstream::health::TICK;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::{background_service, Opt};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use pingora_load_balancing::HealthCheckService;
use std::sync::Arc;

/// Idle upstream connections kept, across all services and workers. Pingora's default of 128
/// is below what a few hundred client connections keep busy: past it, released connections
/// were evicted and new ones opened for the next requests (5,000–9,000 upstream connections
/// opened in 2 s at 256 client connections, `benches/load.py`). An idle pooled connection has
/// no socket buffers and costs a small task: the bound only caps memory.
const UPSTREAM_POOL_SIZE: usize = 4096;

/// Pingora's timeouts of at least this many seconds run on tokio's timer instead of Pingora's
/// own (a shared 10 ms-grained `BTreeMap` per thread and a clock thread that fires it).
///
/// On the no-steal runtime each worker thread is a current-thread runtime with a timer wheel of
/// its own, so tokio's timer has no lock to contend for, and it is cheaper per use: Pingora's
/// fast timeout boxes its timer twice, reads the clock twice and subscribes to a `Notify`
/// (callgrind, `benches/instructions.sh`: Portico a 83.6k → 81.7k and Portico b 95.2k → 93.5k
/// instructions per request; under `wrk -c64` b 84.3k → 82.9k). The upstream read and write
/// timeouts, armed on every proxied request, are the ones this moves. Only Pingora's body and
/// header write timeouts (armed when a write blocks) and sub-second timeouts still use the fast
/// timer; until one does, its clock thread (100 wake-ups a second) does not start.
/// With work stealing the workers share one multi-thread runtime, where Pingora's default
/// (only timeouts over 15 minutes on tokio) stays.
fn tokio_timer_threshold(work_stealing: bool) -> u64 {
    if work_stealing {
        pingora::prelude::fast_timeout::DEFAULT_FAST_TIMEOUT_TO_TOKIO_THRESHOLD.as_secs()
    } else {
        0
    }
}

/// Process-level switches passed through to Pingora.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Take over the listeners of a running Portico (graceful binary upgrade).
    pub upgrade: bool,
    /// Run in the background.
    pub daemon: bool,
}

/// Pingora's settings for the `server` section: threads and runtime, shutdown timeline,
/// upgrade socket.
pub fn server_conf(cfg: &ServerConfig) -> ServerConf {
    ServerConf {
        threads: cfg.threads,
        work_stealing: cfg.work_stealing,
        // Whole seconds only; rounded up so `500ms` is not no grace at all. The drain service
        // ends the process earlier once every connection has closed.
        grace_period_seconds: Some(cfg.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(cfg.shutdown_timeout.as_secs().max(1)),
        upgrade_sock: cfg.upgrade_sock.clone(),
        upstream_keepalive_pool_size: UPSTREAM_POOL_SIZE,
        fast_timeout_to_tokio_threshold_seconds: Some(tokio_timer_threshold(cfg.work_stealing)),
        ..ServerConf::default()
    }
}

/// Builds a ready-to-run server; `extra` background services (e.g. demo upstreams) are added.
pub fn build(
    gateway: Arc<Gateway>,
    options: ProcessOptions,
    extra: Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Server, String> {
    let snapshot = gateway.snapshot();
    let cfg = &snapshot.config().server;
    let conf = server_conf(cfg);
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy(&server.configuration, Proxy::new(gateway.clone()));
    let mut options = HttpServerOptions::default();
    options.h2c = cfg.h2c;
    // The idle limit between requests holds for HTTP/2 connections too.
    options.h2_idle_timeout = Some(cfg.limits.keepalive_timeout);
    proxy.server_options = Some(options);
    let listeners: Vec<(String, bool)> = (cfg.listen.iter().map(|l| (l.clone(), false)))
        .chain(cfg.tls.iter().map(|t| (t.listen.clone(), true)))
        .collect();
    let frontend = Frontend::new(
        proxy,
        gateway.current().clone(),
        gateway.listeners().connections.clone(),
        &listeners,
    );
    let mut listening = Service::new("portico proxy".to_string(), frontend);
    // A TLS handshake that does not complete holds a connection like a slow request head.
    listening.handshake_timeout = cfg.limits.header_timeout;
    listening.handshake_failed = Some(Arc::new(
        crate::telemetry::connections::tls_handshake_failed,
    ));
    let mut addresses = Vec::new();
    for listen in &cfg.listen {
        listening.add_listener(ListenerConfig::tcp(listen.as_str()).l4_buffer(buffers::PLAIN));
        addresses.push(listen.clone());
    }
    for tls in &cfg.tls {
        // The pair was checked when the configuration was loaded (crate::tls_files).
        let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| format!("TLS listener {}: {e}", tls.listen))?;
        settings.enable_h2();
        if let Some(not_after) = crate::tls_files::not_after(&tls.cert) {
            crate::telemetry::connections::tls_certificate_expiry(&tls.listen, not_after);
        }
        listening.add_listener(
            ListenerConfig::tcp(tls.listen.as_str())
                .tls(settings)
                .l4_buffer(buffers::TLS),
        );
        addresses.push(tls.listen.clone());
    }
    server.add_service(Bound::new(
        listening,
        addresses,
        Some(gateway.listeners().clone()),
    ));

    let mut admin = Service::new("portico admin".to_string(), Admin::new(gateway.clone()));
    admin.add_tcp(&cfg.admin.listen);
    admin.threads = Some(1);
    server.add_service(Bound::new(admin, vec![cfg.admin.listen.clone()], None));
    server.add_service(background_service(
        "drain",
        Drain {
            connections: gateway.listeners().connections.clone(),
            tracing: gateway.tracing().cloned(),
        },
    ));

    server.add_service(background_service(
        "jwks",
        crate::identity::jwks::Refresher {
            sources: gateway.key_sources().clone(),
            caller: gateway.caller().clone(),
        },
    ));
    if let Some(redis) = gateway.redis_topology().cloned() {
        let watcher = Watcher::new(
            gateway.current().clone(),
            gateway.verdicts().clone(),
            redis.clone(),
            gateway.registry().clone(),
        );
        server.add_service(background_service("registry watcher", watcher));
        let deny = DenySync::new(
            gateway.current().clone(),
            gateway.ip_deny().clone(),
            redis.clone(),
        );
        server.add_service(background_service("ip deny set", deny));
        let consumers = crate::consumer_store::ConsumerSync::new(
            gateway.current().clone(),
            gateway.stored_consumers().clone(),
            redis.clone(),
        );
        server.add_service(background_service("redis consumers", consumers));
        if redis.sentinels().is_some() {
            server.add_service(background_service(
                "redis sentinel watch",
                SentinelWatch(redis),
            ));
        }
    }
    if let Some(membership) = gateway.membership().cloned() {
        server.add_service(background_service("membership", Heartbeat(membership)));
    }
    if let Some(tracing) = gateway.tracing().cloned() {
        server.add_service(background_service("tracing", TracingService(tracing)));
    }
    if let (Some(redis), Some(sink)) = (gateway.redis_topology().cloned(), gateway.events()) {
        let publisher = Publisher::new(gateway.current().clone(), sink, redis);
        server.add_service(background_service("business events", publisher));
    }
    let mut health = HealthCheckService::new(gateway.health().clone());
    health.health_check_frequency = Some(TICK);
    health.parallel_health_check = true;
    server.add_service(background_service("health checks", health));
    server.add_service(background_service(
        "resolve host names",
        ResolveHosts {
            current: gateway.current().clone(),
            verdicts: gateway.verdicts().clone(),
        },
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup(gateway),
    ));
    for service in extra {
        server.add_boxed_service(service);
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_server_section_reaches_pingora() {
        let cfg = ServerConfig {
            threads: 3,
            work_stealing: true,
            grace_period: Duration::from_millis(500),
            shutdown_timeout: Duration::from_millis(200),
            upgrade_sock: "/tmp/x.sock".into(),
            ..ServerConfig::default()
        };
        let conf = server_conf(&cfg);
        assert_eq!((conf.threads, conf.work_stealing), (3, true));
        assert_eq!(
            conf.grace_period_seconds,
            Some(1),
            "500ms rounds up, never to 0"
        );
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(1));
        assert_eq!(conf.upgrade_sock, "/tmp/x.sock");
        let off = server_conf(&ServerConfig::default());
        assert_eq!((off.threads, off.work_stealing), (2, false));
    }
}
