//! What the registry watcher last achieved, for `/readyz`, the admin API and logs.

use crate::telemetry::redis::{REDIS_UP, REGISTRY_LAST_SYNC, REGISTRY_SYNCS};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::SystemTime;

/// Registry sync state shared between the watcher and the admin listener.
#[derive(Debug, Default)]
pub struct RegistryStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    enabled: bool,
    redis_up: bool,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    data_loss_recovery: bool,
}

impl RegistryStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the registry as configured (a watcher runs).
    pub fn enable(&self) {
        self.lock().enabled = true;
        crate::telemetry::redis::client_in_use(super::store::CLIENT);
        REDIS_UP.with_label_values(&[super::store::CLIENT]).set(0);
    }

    /// Records a successful pass.
    pub fn success(&self, recovering: bool) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        if !inner.redis_up && inner.last_error.is_some() {
            log::info!("registry: Redis reachable again, resynced");
        }
        inner.redis_up = true;
        inner.last_success = Some(now);
        inner.last_error = None;
        inner.data_loss_recovery = recovering;
        drop(inner);
        REDIS_UP.with_label_values(&[super::store::CLIENT]).set(1);
        REGISTRY_SYNCS.with_label_values(&["success"]).inc();
        REGISTRY_LAST_SYNC.set(crate::telemetry::unix_seconds(now));
    }

    /// Records a failed pass; the last known good instances stay in use.
    pub fn failure(&self, error: String) {
        let mut inner = self.lock();
        if inner.redis_up || inner.last_error.is_none() {
            log::warn!("registry: Redis unavailable, keeping the last known instances: {error}");
        }
        inner.redis_up = false;
        inner.last_error = Some(error);
        drop(inner);
        REDIS_UP.with_label_values(&[super::store::CLIENT]).set(0);
        REGISTRY_SYNCS.with_label_values(&["failure"]).inc();
    }

    /// Whether the last pass reached Redis.
    pub fn redis_up(&self) -> bool {
        self.lock().redis_up
    }

    /// JSON for `/readyz` and `/admin/registry`; readiness never depends on it.
    pub fn to_json(&self) -> Value {
        let inner = self.lock();
        if !inner.enabled {
            return json!({"enabled": false});
        }
        let age = inner
            .last_success
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64());
        json!({
            "enabled": true,
            "redis_up": inner.redis_up,
            "last_sync_age_seconds": age,
            "last_error": inner.last_error,
            "data_loss_recovery": inner.data_loss_recovery,
        })
    }
}
