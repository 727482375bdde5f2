//! The business-event publisher: a background service that drains the request path's event
//! queue (`telemetry::events`) every 50 ms and writes the events to a Redis Stream in batches
//! of pipelined `XADD stream MAXLEN ~ N * ...`. Redis being down drops the batch and counts it
//! (`portico_events_dropped_total{reason="redis_error"}`); nothing waits on Redis for a request.

use crate::config::EventsConfig;
use crate::redis_client::{self, Redis, Topology};
use crate::snapshot::Current;
use crate::telemetry::events::{Event, EventSink, EVENTS_DROPPED, EVENTS_PUBLISHED};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Metric label of the publisher's Redis traffic.
const CLIENT: &str = "events";
/// How often queued events are drained.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Pause after a failed batch before the next attempt.
const BACKOFF: Duration = Duration::from_millis(500);

/// The background service writing queued events to Redis.
pub struct Publisher {
    current: Arc<Current>,
    queue: Mutex<Option<mpsc::Receiver<Event>>>,
    redis: Redis,
}

impl Publisher {
    /// A publisher draining `sink`'s queue; the `events` section in force says where to.
    pub fn new(current: Arc<Current>, sink: &EventSink, topology: Arc<Topology>) -> Self {
        let timeout = topology
            .config()
            .command_timeout
            .max(Duration::from_millis(500));
        Self {
            current,
            queue: Mutex::new(sink.take_receiver()),
            redis: Redis::new(CLIENT, topology, timeout),
        }
    }

    /// Writes one batch (one pipeline on the stream's node; at least once: a cluster
    /// redirect or reconnect re-sends the whole pipeline).
    async fn write(&self, cfg: &EventsConfig, batch: &[Event]) -> Result<(), redis_client::Error> {
        let mut pipe = redis::pipe();
        for e in batch {
            pipe.cmd("XADD")
                .arg(&cfg.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(cfg.maxlen)
                .arg("*")
                .arg(e.fields())
                .ignore();
        }
        let timeout = self
            .redis
            .topology()
            .config()
            .command_timeout
            .max(Duration::from_millis(500));
        self.redis
            .call("xadd", timeout, |mut conn| async move {
                Ok(pipe.query_async::<()>(&mut conn).await?)
            })
            .await
    }
}

#[async_trait]
impl BackgroundService for Publisher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut batch = Vec::new();
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Drain on a timer rather than waking per event: a wake-up per request would cost
            // the serving threads a cross-thread notification each.
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            // Then write full batches until the queue is empty.
            loop {
                let Some(cfg) = self.current.load().config().events.clone() else {
                    while rx.try_recv().is_ok() {}
                    break;
                };
                while batch.len() < cfg.batch {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                if batch.is_empty() {
                    break;
                }
                match self.write(&cfg, &batch).await {
                    // `portico_redis_up` follows each call (telemetry::redis::observe).
                    Ok(()) => EVENTS_PUBLISHED.inc_by(batch.len() as u64),
                    Err(e) => {
                        log::debug!("events: dropping {} event(s): {e}", batch.len());
                        EVENTS_DROPPED
                            .with_label_values(&["redis_error"])
                            .inc_by(batch.len() as u64);
                        batch.clear();
                        tokio::time::sleep(BACKOFF).await;
                        break;
                    }
                }
                batch.clear();
            }
        }
    }
}
