//! Business events: KPI matches published to a Redis Stream (`XADD stream MAXLEN ~ N * ...`).
//! The request path only `try_send`s into a bounded queue; a background service drains it in
//! batches of pipelined `XADD`s. A full queue drops the event and counts it; Redis being down
//! drops the batch and counts it. Nothing ever waits on Redis for a request.

use super::metrics::family;
use crate::config::{EventsConfig, RedisConfig};
use crate::gateway::Gateway;
use crate::registry::store::{self, StoreError};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use redis::aio::MultiplexedConnection;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

family!(EVENTS_PUBLISHED: IntCounter = register_int_counter!(
    "portico_events_published_total",
    "Business events written to the Redis Stream."
));
family!(EVENTS_DROPPED: IntCounterVec = register_int_counter_vec!(
    "portico_events_dropped_total",
    "Business events dropped: queue_full (never blocks a request) or redis_error.",
    &["reason"]
));

/// Metric label of the publisher's Redis traffic.
const CLIENT: &str = "events";
/// How often queued events are drained.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Pause after a failed batch before the next attempt.
const BACKOFF: Duration = Duration::from_millis(500);

/// Registers the families.
pub fn init() {
    LazyLock::force(&EVENTS_PUBLISHED);
    for reason in ["queue_full", "redis_error"] {
        EVENTS_DROPPED.with_label_values(&[reason]);
    }
}

/// One KPI match, as stream fields.
#[derive(Debug, Clone)]
pub struct Event {
    pub kpi: String,
    pub route: String,
    pub method: String,
    pub status: u16,
    pub request_id: String,
    pub trace_id: Option<String>,
    pub ts_ms: u64,
}

impl Event {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("kpi", self.kpi.clone()),
            ("route", self.route.clone()),
            ("method", self.method.clone()),
            ("status", self.status.to_string()),
            ("request_id", self.request_id.clone()),
            ("ts_ms", self.ts_ms.to_string()),
        ];
        if let Some(t) = &self.trace_id {
            f.push(("trace_id", t.clone()));
        }
        f
    }
}

/// The request path's end of the queue.
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
}

impl EventSink {
    /// A queue of `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub fn publish(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            EVENTS_DROPPED.with_label_values(&["queue_full"]).inc();
        }
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The background service writing queued events to Redis.
pub struct Publisher {
    gateway: Arc<Gateway>,
    redis: RedisConfig,
}

impl Publisher {
    /// A publisher for `gateway`'s event queue.
    pub fn new(gateway: Arc<Gateway>, redis: RedisConfig) -> Self {
        Self { gateway, redis }
    }

    async fn write(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        cfg: &EventsConfig,
        batch: &[Event],
    ) -> Result<(), StoreError> {
        if conn.is_none() {
            *conn = Some(store::connect(&self.redis.url, self.redis.connect_timeout).await?);
        }
        let Some(c) = conn.as_mut() else {
            unreachable!("connection set above");
        };
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
        let timeout = self.redis.command_timeout.max(Duration::from_millis(500));
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, pipe.query_async::<()>(c)).await;
        let result = match result {
            Ok(r) => r.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        super::redis::observe(
            CLIENT,
            "xadd",
            started.elapsed(),
            result.as_ref().err().map(StoreError::kind),
        );
        result
    }
}

#[async_trait]
impl BackgroundService for Publisher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self
            .gateway
            .events
            .as_ref()
            .and_then(EventSink::take_receiver)
        else {
            return;
        };
        let up = super::redis::REDIS_UP.with_label_values(&[CLIENT]);
        let mut conn = None;
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
                let Some(cfg) = self.gateway.snapshot().config.events.clone() else {
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
                match self.write(&mut conn, &cfg, &batch).await {
                    Ok(()) => {
                        up.set(1);
                        EVENTS_PUBLISHED.inc_by(batch.len() as u64);
                    }
                    Err(e) => {
                        up.set(0);
                        conn = None;
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
