//! Business events: the queue between the request path and the Redis Stream publisher
//! (`crate::event_stream`). The request path only `try_send`s into a bounded queue; a full
//! queue drops the event and counts it. Nothing ever waits on Redis for a request.

use super::metrics::family;
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::{LazyLock, Mutex};
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
    /// The stream entry's fields.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
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

    /// The publisher's end of the queue; there is one, taken once.
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
