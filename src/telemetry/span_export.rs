//! The span exporter as Portico runs it: the OTLP exporter wrapped so that a failed export is
//! counted (`portico_tracing_export_failures_total`, and the spans it carried in
//! `portico_tracing_spans_dropped_total`) and logged at most once a minute — an unreachable
//! collector used to lose spans without a trace of its own.

use super::metrics::family;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prometheus::{register_int_counter, IntCounter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

family!(EXPORT_FAILURES: IntCounter = register_int_counter!(
    "portico_tracing_export_failures_total",
    "Span batches the OTLP exporter failed to deliver (collector unreachable, refused, timed out)."
));

family!(SPANS_DROPPED: IntCounter = register_int_counter!(
    "portico_tracing_spans_dropped_total",
    "Spans lost because the batch carrying them could not be exported."
));

/// Least time between two log lines about failed exports.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Registers the families (at zero).
pub fn init() {
    LazyLock::force(&EXPORT_FAILURES);
    LazyLock::force(&SPANS_DROPPED);
}

/// An exporter whose failures are counted and logged, rate-limited.
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    /// When a failure was last logged (Unix seconds; 0 = never).
    last_log: AtomicU64,
}

impl<E> Counted<E> {
    /// Wraps `inner`.
    pub fn new(inner: E) -> Self {
        Self {
            inner,
            last_log: AtomicU64::new(0),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        EXPORT_FAILURES.inc();
        SPANS_DROPPED.inc_by(spans as u64);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_log.load(Ordering::Relaxed);
        if now >= last + LOG_EVERY.as_secs()
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "tracing: exporting {spans} spans failed ({error}); counted in portico_tracing_export_failures_total, logged at most once a minute"
            );
        }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failed(spans, e);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
