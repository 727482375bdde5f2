//! Assembles the Pingora server: the proxy listeners, the admin listener, the shared health
//! check service and the SIGHUP reloader, all over one [`Gateway`].

use crate::admin::Admin;
use crate::gateway::{Gateway, ReloadOnHangup};
use crate::proxy::Proxy;
use crate::registry::watcher::Watcher;
use crate::telemetry::events::Publisher;
use crate::telemetry::tracing::TracingService;
use crate::upstream::health::TICK;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{background_service, Opt};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use pingora_load_balancing::HealthCheckService;
use std::sync::Arc;

/// Process-level switches passed through to Pingora.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Take over the listeners of a running Portico (graceful binary upgrade).
    pub upgrade: bool,
    /// Run in the background.
    pub daemon: bool,
}

/// Builds a ready-to-run server; `extra` background services (e.g. demo upstreams) are added.
pub fn build(
    gateway: Arc<Gateway>,
    options: ProcessOptions,
    extra: Vec<Box<dyn ServiceWithDependents>>,
) -> Server {
    let snapshot = gateway.snapshot();
    let cfg = &snapshot.config.server;
    let conf = ServerConf {
        threads: cfg.threads,
        work_stealing: cfg.work_stealing,
        grace_period_seconds: Some(cfg.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(cfg.shutdown_timeout.as_secs().max(1)),
        upgrade_sock: cfg.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Proxy::new(gateway.clone()),
        "portico proxy",
    );
    for listen in &cfg.listen {
        proxy.add_tcp(listen);
    }
    for tls in &cfg.tls {
        match TlsSettings::intermediate(&tls.cert, &tls.key) {
            Ok(mut settings) => {
                settings.enable_h2();
                proxy.add_tls_with_settings(&tls.listen, None, settings);
            }
            Err(e) => log::error!("TLS listener {} not started: {e}", tls.listen),
        }
    }
    if cfg.h2c {
        if let Some(app) = proxy.app_logic_mut() {
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
    }
    server.add_service(proxy);

    let mut admin = Service::new("portico admin".to_string(), Admin::new(gateway.clone()));
    admin.add_tcp(&cfg.admin.listen);
    admin.threads = Some(1);
    server.add_service(admin);

    if let Some(redis) = gateway.redis.clone() {
        let watcher = Watcher::new(gateway.clone(), redis, gateway.registry.clone());
        server.add_service(background_service("registry watcher", watcher));
    }
    if let Some(tracing) = gateway.tracing.clone() {
        server.add_service(background_service("tracing", TracingService(tracing)));
    }
    if let (Some(redis), Some(_)) = (gateway.redis.clone(), gateway.events.as_ref()) {
        let publisher = Publisher::new(gateway.clone(), redis);
        server.add_service(background_service("business events", publisher));
    }
    let mut health = HealthCheckService::new(gateway.health.clone());
    health.health_check_frequency = Some(TICK);
    health.parallel_health_check = true;
    server.add_service(background_service("health checks", health));
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup(gateway),
    ));
    for service in extra {
        server.add_boxed_service(service);
    }
    server
}
