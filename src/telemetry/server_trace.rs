//! A request's SERVER span as the proxy holds it. Most traces are not sampled, and for those
//! nothing is recorded or exported: all the request needs is its ids (to send upstream in
//! `traceparent` and to write in the access log). Going through the SDK for them cost an SDK
//! span, a boxed span in an `Arc` inside a `Context`, the sampler and the id generator on every
//! request (~4.5k instructions per request with tracing on). So the sampling decision is made
//! here, with the provider's own sampler, and only a sampled request gets an SDK span.
//!
//! The SDK decides again when it builds that span, on the same trace id (see [`PresetIds`]),
//! so both decisions agree and a ratio sampler stays consistent by trace id across services.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::trace::IdGenerator;
use std::cell::Cell;

/// The SERVER span of one request.
pub enum ServerTrace {
    /// A sampled trace: a recording SDK span, exported when it ends.
    Sampled(Context),
    /// An unsampled trace: the ids handed on, nothing recorded.
    Unsampled(SpanContext),
}

impl ServerTrace {
    /// The recording span's context, for a sampled trace.
    pub fn sampled(&self) -> Option<&Context> {
        match self {
            ServerTrace::Sampled(cx) => Some(cx),
            ServerTrace::Unsampled(_) => None,
        }
    }

    /// Calls `f` with the span's ids, flags and trace state.
    pub fn with_span_context<R>(&self, f: impl FnOnce(&SpanContext) -> R) -> R {
        match self {
            ServerTrace::Sampled(cx) => f(cx.span().span_context()),
            ServerTrace::Unsampled(sc) => f(sc),
        }
    }
}

thread_local! {
    /// The trace id the next SDK span on this thread starts with, when Portico chose it.
    static PRESET_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Runs `f` (which builds one SDK root span) with `trace_id` as the id the SDK generates.
pub fn with_preset_trace_id<R>(trace_id: TraceId, f: impl FnOnce() -> R) -> R {
    PRESET_TRACE_ID.set(Some(trace_id));
    let out = f();
    PRESET_TRACE_ID.set(None);
    out
}

/// A random, valid (non-zero) trace id.
pub fn new_trace_id() -> TraceId {
    TraceId::from(fastrand::u128(1..))
}

/// A random, valid (non-zero) span id.
pub fn new_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

/// The provider's id generator: random ids, except a root span's trace id that Portico
/// already drew (and sampled on) for the request.
#[derive(Debug)]
pub struct PresetIds;

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        PRESET_TRACE_ID.take().unwrap_or_else(new_trace_id)
    }

    fn new_span_id(&self) -> SpanId {
        new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_trace_id_is_used_once_then_ids_are_random_and_valid() {
        let preset = TraceId::from(42u128);
        let first = with_preset_trace_id(preset, || PresetIds.new_trace_id());
        assert_eq!(first, preset);
        let next = PresetIds.new_trace_id();
        assert_ne!(next, preset);
        assert_ne!(next, TraceId::INVALID);
        assert_ne!(PresetIds.new_span_id(), SpanId::INVALID);
        // Unused presets do not leak into the next span either.
        with_preset_trace_id(preset, || ());
        assert_ne!(PresetIds.new_trace_id(), preset);
    }
}
