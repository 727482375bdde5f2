//! The business-event publisher: a background service that drains the request path's event
//! queue (`telemetry::events`) every 50 ms and writes the events to a Redis Stream in batches
//! of pipelined `XADD stream MAXLEN ~ N * ...`. Redis being down drops the batch and counts it
//! (`portico_events_dropped_total{reason="redis_error"}`); nothing waits on Redis for a request.

use crate::config::{EventsConfig, RedisConfig};
use crate::redis_client;
use crate::snapshot::Current;
use crate::telemetry::events::{Event, EventSink, EVENTS_DROPPED, EVENTS_PUBLISHED};
use crate::telemetry::redis::REDIS_UP;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::MultiplexedConnection;
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
    redis: RedisConfig,
}

impl Publisher {
    /// A publisher draining `sink`'s queue; the `events` section in force says where to.
    pub fn new(current: Arc<Current>, sink: &EventSink, redis: RedisConfig) -> Self {
        crate::telemetry::redis::client_in_use(CLIENT);
        Self {
            current,
            queue: Mutex::new(sink.take_receiver()),
            redis,
        }
    }

    async fn write(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        cfg: &EventsConfig,
        batch: &[Event],
    ) -> Result<(), redis_client::Error> {
        if conn.is_none() {
            *conn = Some(
                redis_client::connect(CLIENT, &self.redis.url, self.redis.connect_timeout).await?,
            );
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
        redis_client::bounded(CLIENT, "xadd", timeout, async {
            Ok(pipe.query_async::<()>(c).await?)
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
        let up = REDIS_UP.with_label_values(&[CLIENT]);
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
