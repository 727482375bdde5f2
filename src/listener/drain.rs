//! Ends the process as soon as a graceful shutdown has nothing left to finish. Pingora always
//! sleeps the whole `grace_period` after SIGTERM (and after the upgrade handover), even with no
//! connection open; this service exits once the last client connection has closed, after the
//! access log and the span exporter have flushed. Pingora's own timeline stays the upper bound.

use super::connections::Connections;
use crate::telemetry::tracing::Tracing;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Slightly more than the access-log writer's flush period, so its last lines reach the file.
const LOG_FLUSH: Duration = Duration::from_millis(150);

/// The early-exit watcher.
pub struct Drain {
    pub connections: Arc<Connections>,
    pub tracing: Option<Arc<Tracing>>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.connections.wait_idle().await;
        if let Some(tracing) = self.tracing.clone() {
            let _ = tokio::task::spawn_blocking(move || tracing.flush()).await;
        }
        tokio::time::sleep(LOG_FLUSH).await;
        log::info!("shutdown complete: no client connection left");
        std::process::exit(0);
    }
}
