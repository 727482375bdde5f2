//! The log-phase policy: which business KPIs a finished request on this route counts for.

use crate::telemetry::kpi::Kpi;
use http::{HeaderMap, Method};
use prometheus::IntCounter;
use std::sync::Arc;

/// A finished request, as KPIs look at it.
pub struct Finished<'a> {
    pub method: &'a Method,
    pub status: u16,
    pub request: &'a HeaderMap,
    /// The response's headers, when a response was written.
    pub response: Option<&'a HeaderMap>,
    /// The authenticated consumer.
    pub consumer: Option<&'a str>,
}

/// A route's KPIs with their counters for that route.
pub struct KpiCounters(Vec<(Arc<Kpi>, IntCounter)>);

impl KpiCounters {
    /// The KPIs counted on one route.
    pub fn new(kpis: Vec<(Arc<Kpi>, IntCounter)>) -> Self {
        Self(kpis)
    }

    /// Whether the route has no KPI.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Counts every KPI the request matches; `publish` gets those published as events.
    pub fn record(&self, done: &Finished<'_>, publish: &mut impl FnMut(&Kpi)) {
        for (kpi, counter) in &self.0 {
            if kpi.matches(done.method, done.status, done.request, done.response) {
                counter.inc();
                kpi.count_consumer(done.consumer);
                if kpi.publish {
                    publish(kpi);
                }
            }
        }
    }
}
