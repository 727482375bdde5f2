//! The shared state of a running gateway: the current [`Snapshot`] behind an `ArcSwap`, the
//! health registry every balancer uses, and reload (admin API and SIGHUP). A reload validates
//! and compiles the new file completely before one atomic swap; a rejected file changes nothing.

use crate::config::{self, Config, RedisConfig};
use crate::listener::ListenerState;
use crate::ratelimit::shared::SharedStore;
use crate::registry::RegistryStatus;
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::events::EventSink;
use crate::telemetry::metrics;
use crate::telemetry::tracing::Tracing;
use crate::upstream::health::{self, Verdicts};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_load_balancing::HealthRegistry;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

/// Gateway-wide state shared by the proxy, admin and background services.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    source: ConfigSource,
    /// Health state shared by every balancer (one probe loop for all services).
    pub health: Arc<HealthRegistry>,
    pub verdicts: Arc<Verdicts>,
    /// The Redis connection settings in force since start (the section is not reloadable).
    pub redis: Option<RedisConfig>,
    /// State of the Redis service registry watcher.
    pub registry: Arc<RegistryStatus>,
    /// The Redis store of `store: redis` rate limits (connects on first use).
    pub shared_limits: Option<SharedStore>,
    /// Queue of business events for the Redis Stream publisher.
    pub events: Option<EventSink>,
    /// OpenTelemetry tracing, when configured at start.
    pub tracing: Option<Arc<Tracing>>,
    /// The access-log sink (its path is fixed at start; `enabled` and `sample` reload).
    pub access_log: Option<AccessLog>,
    /// The proxy listeners: bound yet, and their open connections.
    pub listeners: Arc<ListenerState>,
    last_reload: Mutex<Option<ReloadStatus>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// Compiles the first snapshot and populates every balancer. Runs before the server starts,
    /// on a throwaway runtime: balancer updates here only read memory (no IO, no spawned tasks).
    pub fn new(config: Config, source: ConfigSource) -> std::io::Result<Arc<Self>> {
        metrics::init();
        let verdicts = Arc::new(Verdicts::default());
        let health = health::registry(verdicts.clone());
        let redis = config.redis.clone();
        let events = config
            .events
            .as_ref()
            .filter(|_| redis.is_some())
            .map(|e| EventSink::new(e.queue));
        let tracing = config.tracing.clone().map(|t| Arc::new(Tracing::new(t)));
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
        let snapshot = Snapshot::build(config, None, &health);
        tokio::runtime::Builder::new_current_thread()
            .build()?
            .block_on(async {
                for upstream in snapshot.services.values() {
                    if let Err(e) = upstream.refresh().await {
                        log::error!(
                            "service {}: initial balancer update failed: {e}",
                            upstream.name
                        );
                    }
                }
            });
        metrics::set_config_hash(None, &snapshot.hash);
        metrics::CONFIG_LAST_RELOAD_TIME.set(unix_seconds(snapshot.loaded_at));
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            source,
            health,
            verdicts,
            shared_limits: redis.clone().map(SharedStore::new),
            events,
            tracing,
            access_log,
            listeners: Arc::default(),
            redis,
            registry: Arc::new(RegistryStatus::default()),
            last_reload: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The snapshot in force; callers keep the `Arc` for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
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

    /// Re-reads the file, validates it fully and swaps it in; on any error the old snapshot
    /// stays. Reloads are serialised.
    pub async fn reload(&self) -> Result<String, String> {
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
            error: result.as_ref().err().cloned(),
        });
        match &result {
            Ok(hash) => log::info!("configuration reloaded (hash {hash})"),
            Err(e) => log::error!("configuration reload rejected, keeping the old one: {e}"),
        }
        result
    }

    async fn try_reload(&self) -> Result<String, String> {
        let ConfigSource::File(path) = &self.source else {
            return Err("the embedded demo configuration cannot be reloaded".into());
        };
        let config = config::load_file(path).map_err(|e| e.to_string())?;
        let old = self.snapshot();
        if config.server.listen != old.config.server.listen
            || config.server.admin.listen != old.config.server.admin.listen
            || config.server.threads != old.config.server.threads
            || config.server.work_stealing != old.config.server.work_stealing
        {
            log::warn!(
                "listener and thread changes take effect only after a restart or binary upgrade"
            );
        }
        if config.redis != self.redis {
            log::warn!("changes to the redis section take effect only after a restart");
        }
        if config.tracing != old.config.tracing {
            log::warn!("changes to the tracing section take effect only after a restart");
        }
        let next = Snapshot::build(config, Some(&old), &self.health);
        for upstream in next.fresh_upstreams(Some(&old)) {
            upstream
                .refresh()
                .await
                .map_err(|e| format!("service {}: {e}", upstream.name))?;
        }
        old.retire_metrics(&next);
        crate::telemetry::kpi::retire(&old.config, &next.config);
        metrics::set_config_hash(Some(&old.hash), &next.hash);
        metrics::CONFIG_LAST_RELOAD_TIME.set(unix_seconds(next.loaded_at));
        let hash = next.hash.clone();
        self.snapshot.store(Arc::new(next));
        Ok(hash)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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
