//! The shared state of a running gateway: the snapshot in force ([`Current`]), the health
//! registry every balancer uses, the Redis-backed stores, and reload (admin API and SIGHUP). A
//! reload compiles the new file completely ([`crate::snapshot::compile_file`]) before one
//! atomic swap; a rejected file changes nothing.

use crate::config::{ConfigErrors, RedisConfig};
use crate::http_call::Caller;
use crate::identity::jwks::KeySources;
use crate::identity::StoredConsumers;
use crate::listener::ListenerState;
use crate::membership::Membership;
use crate::policy::ip_rules::SharedDeny;
use crate::ratelimit::peers::Peers;
use crate::ratelimit::shared::SharedStore;
use crate::redis_client::{Redis, Topology};
use crate::registry::RegistryStatus;
use crate::snapshot::{self, Current, Plan, Shared, Snapshot};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::events::EventSink;
use crate::telemetry::metrics;
use crate::telemetry::tracing::Tracing;
use crate::telemetry::unix_seconds;
use crate::upstream::health::{self, Verdicts};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_load_balancing::HealthRegistry;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often static instance host names are looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// Built in (`--demo`); nothing to reload from.
    Embedded,
}

/// Outcome of the last reload attempt, shown at `/admin/config`.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub ok: bool,
    pub error: Option<String>,
}

/// Why a reload was refused; the old configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the embedded demo configuration cannot be reloaded")]
    Embedded,
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("the reload task failed: {0}")]
    Task(String),
    #[error("service {service}: {error}")]
    Balancer {
        service: String,
        error: Box<pingora::Error>,
    },
}

/// Gateway-wide state shared by the proxy, admin and background services.
pub struct Gateway {
    current: Arc<Current>,
    source: ConfigSource,
    /// Health state shared by every balancer (one probe loop for all services).
    health: Arc<HealthRegistry>,
    verdicts: Arc<Verdicts>,
    /// Where Redis is, since start (the section is not reloadable).
    redis: Option<Arc<Topology>>,
    /// The admin API's own Redis link (registrar operations, the membership list).
    admin_redis: Option<Redis>,
    /// This gateway's entry in the membership list.
    membership: Option<Arc<Membership>>,
    /// State of the Redis service registry watcher.
    registry: Arc<RegistryStatus>,
    /// The Redis store of `store: redis` rate limits (connects on first use).
    shared_limits: Option<Arc<SharedStore>>,
    /// The Redis deny set of IP rules (the last good read; empty without Redis).
    ip_deny: Arc<SharedDeny>,
    /// JWKS sources of JWT policies, by URL (their keys outlive snapshots).
    key_sources: Arc<KeySources>,
    /// Outbound HTTP calls (JWKS reads, forward auth).
    caller: Arc<Caller>,
    /// Consumers read from Redis (the last good read).
    stored_consumers: Arc<StoredConsumers>,
    /// Queue of business events for the Redis Stream publisher.
    events: Option<EventSink>,
    /// OpenTelemetry tracing, when configured at start.
    tracing: Option<Arc<Tracing>>,
    /// The access-log sink (its path is fixed at start; `enabled` and `sample` reload).
    access_log: Option<AccessLog>,
    /// The proxy listeners: bound yet, and their open connections.
    listeners: Arc<ListenerState>,
    last_reload: Mutex<Option<ReloadStatus>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// Builds the first snapshot, resolves static host names and populates every balancer.
    /// Runs before the server starts, on a throwaway runtime: the lookups run on its blocking
    /// pool and balancer updates only read memory.
    pub fn new(plan: Plan, source: ConfigSource) -> std::io::Result<Arc<Self>> {
        crate::telemetry::init();
        crate::log_filter::configured(plan.config.log.level.as_deref());
        let verdicts = Arc::new(Verdicts::default());
        let health = health::registry(verdicts.clone());
        let config = plan.config.clone();
        let redis = plan.redis.clone();
        let events = config
            .events
            .as_ref()
            .filter(|_| redis.is_some())
            .map(|e| EventSink::new(e.queue));
        let (tracing, warnings) =
            crate::telemetry::otel_env::settings(config.tracing.as_ref(), |k| {
                std::env::var(k).ok()
            });
        for w in warnings {
            log::warn!("tracing: {w}");
        }
        let tracing = tracing.map(|t| Arc::new(Tracing::new(t)));
        let access_log = match AccessLog::open(&config.access_log.path) {
            Ok(log) => Some(log),
            Err(e) => {
                log::error!(
                    "access log {}: {e}; access logging off",
                    config.access_log.path
                );
                None
            }
        };
        let peers = Arc::new(Peers::default());
        let shared_limits = redis
            .clone()
            .map(|r| Arc::new(SharedStore::new(r, peers.clone())));
        let membership = redis
            .clone()
            .map(|r| Arc::new(Membership::new(r, peers.clone())));
        let admin_redis = redis.clone().map(|r| {
            let timeout = config.registry.timeout;
            Redis::new("admin", r, timeout)
        });
        if let Some(r) = &redis {
            crate::telemetry::redis::topology(r.kind(), r.uses_tls());
            log::info!("redis: {} ({})", r.describe(), r.kind());
        }
        let ip_deny = Arc::new(SharedDeny::default());
        let key_sources = Arc::new(KeySources::default());
        let caller = Arc::new(Caller::default());
        let stored_consumers = Arc::new(StoredConsumers::default());
        let shared = Shared {
            health: &health,
            limiter: shared_limits.as_ref(),
            ip_deny: &ip_deny,
            key_sources: &key_sources,
            caller: &caller,
            stored_consumers: &stored_consumers,
        };
        let snapshot = Snapshot::build(plan, None, shared);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                for upstream in snapshot.services().values() {
                    upstream.resolve_hosts().await;
                    if let Err(e) = upstream.refresh().await {
                        log::error!(
                            "service {}: initial balancer update failed: {e}",
                            upstream.name()
                        );
                    }
                }
            });
        metrics::set_config_hash(None, snapshot.hash());
        metrics::CONFIG_LAST_RELOAD_TIME.set(unix_seconds(snapshot.loaded_at()));
        Ok(Arc::new(Self {
            current: Arc::new(Current::new(snapshot)),
            source,
            health,
            verdicts,
            shared_limits,
            ip_deny,
            key_sources,
            caller,
            stored_consumers,
            events,
            tracing,
            access_log,
            listeners: Arc::default(),
            redis,
            admin_redis,
            membership,
            registry: Arc::new(RegistryStatus::default()),
            last_reload: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The Redis deny set of IP rules.
    pub fn ip_deny(&self) -> &Arc<SharedDeny> {
        &self.ip_deny
    }

    /// JWKS sources of JWT policies.
    pub fn key_sources(&self) -> &Arc<KeySources> {
        &self.key_sources
    }

    /// Outbound HTTP calls.
    pub fn caller(&self) -> &Arc<Caller> {
        &self.caller
    }

    /// Consumers read from Redis.
    pub fn stored_consumers(&self) -> &Arc<StoredConsumers> {
        &self.stored_consumers
    }

    /// The health registry every balancer reports into (one probe loop for all services).
    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.health
    }

    /// The latest health-check verdicts, for the admin API and the services that forget them.
    pub fn verdicts(&self) -> &Arc<Verdicts> {
        &self.verdicts
    }

    /// The Redis settings in force since start.
    pub fn redis(&self) -> Option<&RedisConfig> {
        self.redis.as_deref().map(Topology::config)
    }

    /// Where Redis is, since start.
    pub fn redis_topology(&self) -> Option<&Arc<Topology>> {
        self.redis.as_ref()
    }

    /// The admin API's Redis link.
    pub fn admin_redis(&self) -> Option<&Redis> {
        self.admin_redis.as_ref()
    }

    /// This gateway's membership, when Redis is configured.
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    /// State of the Redis service registry watcher.
    pub fn registry(&self) -> &Arc<RegistryStatus> {
        &self.registry
    }

    /// The business-event queue, when events are configured.
    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_ref()
    }

    /// Tracing, when configured at start.
    pub fn tracing(&self) -> Option<&Arc<Tracing>> {
        self.tracing.as_ref()
    }

    /// The access-log sink, when it could be opened.
    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access_log.as_ref()
    }

    /// The proxy listeners: bound yet, and their open connections.
    pub fn listeners(&self) -> &Arc<ListenerState> {
        &self.listeners
    }

    /// The snapshot in force; callers keep the `Arc` for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load()
    }

    /// The handle background services read the snapshot in force through.
    pub fn current(&self) -> &Arc<Current> {
        &self.current
    }

    /// Where the configuration is read from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// The last reload outcome, if any reload was attempted.
    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the file, compiles it fully and swaps it in; on any error the old snapshot
    /// stays. Reloads are serialised. Returns the new configuration hash.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let _guard = self.reload_lock.lock().await;
        let result = self.try_reload().await;
        let ok = result.is_ok();
        metrics::CONFIG_RELOADS
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        metrics::CONFIG_LAST_RELOAD_OK.set(i64::from(ok));
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReloadStatus {
            at: SystemTime::now(),
            ok,
            error: result.as_ref().err().map(ToString::to_string),
        });
        match &result {
            Ok(hash) => log::info!("configuration reloaded (hash {hash})"),
            Err(e) => log::error!("configuration reload rejected, keeping the old one: {e}"),
        }
        result
    }

    async fn try_reload(&self) -> Result<String, ReloadError> {
        let ConfigSource::File(path) = &self.source else {
            return Err(ReloadError::Embedded);
        };
        // Reading and compiling a file is blocking work (and may check TLS files): off the
        // serving threads.
        let path = path.clone();
        let plan = tokio::task::spawn_blocking(move || snapshot::compile_file(&path))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let old = self.snapshot();
        warn_about_restart_only_changes(&old, &plan, self.redis());
        let shared = Shared {
            health: &self.health,
            limiter: self.shared_limits.as_ref(),
            ip_deny: &self.ip_deny,
            key_sources: &self.key_sources,
            caller: &self.caller,
            stored_consumers: &self.stored_consumers,
        };
        let next = Snapshot::build(plan, Some(&old), shared);
        for upstream in next.fresh_upstreams(Some(&old)) {
            upstream.resolve_hosts().await;
            upstream
                .refresh()
                .await
                .map_err(|error| ReloadError::Balancer {
                    service: upstream.name().to_string(),
                    error,
                })?;
        }
        old.retire_metrics(&next);
        crate::telemetry::kpi::retire(old.config(), next.config());
        metrics::set_config_hash(Some(old.hash()), next.hash());
        metrics::CONFIG_LAST_RELOAD_TIME.set(unix_seconds(next.loaded_at()));
        crate::log_filter::reconfigured(
            old.config().log.level.as_deref(),
            next.config().log.level.as_deref(),
        );
        let hash = next.hash().to_string();
        self.current.replace(next);
        Ok(hash)
    }
}

/// Listener, thread, Redis and tracing settings are read at start only.
fn warn_about_restart_only_changes(old: &Snapshot, plan: &Plan, redis: Option<&RedisConfig>) {
    let (new, was) = (&plan.config.server, &old.config().server);
    if new.listen != was.listen
        || new.tls != was.tls
        || new.admin.listen != was.admin.listen
        || new.threads != was.threads
        || new.work_stealing != was.work_stealing
    {
        log::warn!(
            "listener and thread changes take effect only after a restart or binary upgrade"
        );
    }
    if plan.config.redis.as_ref() != redis {
        log::warn!("changes to the redis section take effect only after a restart");
    }
    if plan.config.tracing != old.config().tracing {
        log::warn!("changes to the tracing section take effect only after a restart");
    }
}

/// Reloads the configuration on SIGHUP.
pub struct ReloadOnHangup(pub Arc<Gateway>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            log::error!("cannot install the SIGHUP handler; reload via POST /admin/reload only");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = hangups.recv() => { let _ = self.0.reload().await; }
            }
        }
    }
}

/// Looks up static instances' host names again every 30 s (keeping the last good answer on
/// failure), so a service behind a DNS name follows its address changes without a reload.
pub struct ResolveHosts {
    pub current: Arc<Current>,
    /// Health verdicts of instances that left are forgotten.
    pub verdicts: Arc<Verdicts>,
}

#[async_trait]
impl BackgroundService for ResolveHosts {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RESOLVE_EVERY) => {}
            }
            let snapshot = self.current.load();
            for upstream in snapshot.services().values() {
                for gone in upstream.resolve_hosts().await {
                    self.verdicts.forget(&gone);
                }
            }
        }
    }
}
