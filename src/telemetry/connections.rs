//! Downstream connection families: how many are open and accepted per listener and protocol,
//! refused by a connection limit, failed in the TLS handshake, closed because the client was too
//! slow to send a request head or the HTTP/2 preface; and when each TLS listener's certificate
//! expires. Listener handles are made at start (listeners do not reload), every series at zero.

use super::metrics::family;
use prometheus::{register_int_counter_vec, register_int_gauge, register_int_gauge_vec};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::LazyLock;

/// Why a new connection was refused.
pub const REFUSAL_REASONS: [&str; 2] = ["max_connections", "max_connections_per_ip"];
/// When a client went away: before or during the response.
pub const DISCONNECT_PHASES: [&str; 2] = ["before_response", "during_response"];
/// Which wait ran out on a slow client.
pub const TIMEOUT_PHASES: [&str; 2] = ["request_head", "h2_preface"];

/// The `protocol` label of connections (the same values as on request counts): what the
/// client speaks, known from ALPN on TLS and from the preface on cleartext.
const PROTOCOLS: [&str; 2] = super::metrics::Protocol::LABELS;
/// Why a TLS handshake failed.
pub const HANDSHAKE_FAILURES: [&str; 2] = ["error", "timeout"];

family!(DOWNSTREAM_OPEN: IntGaugeVec = register_int_gauge_vec!(
    "portico_downstream_connections",
    "Client connections open now (after the TLS handshake), by listener and protocol.",
    &["listener", "protocol"]
));
family!(DOWNSTREAM_IDLE: IntGaugeVec = register_int_gauge_vec!(
    "portico_downstream_connections_idle",
    "HTTP/1 client connections waiting for a request without request state (new ones before their first byte, keep-alive ones idle for over a second), by listener.",
    &["listener"]
));
family!(DOWNSTREAM_DORMANT: IntGauge = register_int_gauge!(
    "portico_downstream_connections_dormant",
    "Idle cleartext HTTP/1 client connections held as their socket alone (no task) until a request or their deadline comes; counted among portico_downstream_connections_idle too.",
));
family!(DOWNSTREAM_ACCEPTED: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_connections_accepted_total",
    "Client connections admitted by the connection limits, by listener and the protocol they spoke.",
    &["listener", "protocol"]
));
family!(DOWNSTREAM_REFUSED: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_connections_refused_total",
    "Client connections closed on arrival because a connection limit was reached.",
    &["listener", "reason"]
));
family!(TLS_HANDSHAKE_FAILURES: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_tls_handshake_failures_total",
    "TLS handshakes with clients that failed (no shared version or cipher, bad SNI, not TLS at all) or did not finish within server.limits.header_timeout.",
    &["listener", "reason"]
));

/// One listener's connection handles.
pub struct ListenerMetrics {
    /// The configured listen address: the `listener` label.
    pub listen: String,
    accepted: [IntCounter; 2],
    open: [IntGauge; 2],
    /// HTTP/1 connections in the idle wait (`listener::idle`).
    pub idle: IntGauge,
    refused: [IntCounter; 2],
}

impl ListenerMetrics {
    /// Makes (at zero) the series of `listen`; a TLS listener also gets its handshake failures.
    pub fn new(listen: &str, tls: bool) -> Self {
        if tls {
            for reason in HANDSHAKE_FAILURES {
                TLS_HANDSHAKE_FAILURES.with_label_values(&[listen, reason]);
            }
        }
        Self {
            listen: listen.to_string(),
            accepted: PROTOCOLS.map(|p| DOWNSTREAM_ACCEPTED.with_label_values(&[listen, p])),
            open: PROTOCOLS.map(|p| DOWNSTREAM_OPEN.with_label_values(&[listen, p])),
            idle: DOWNSTREAM_IDLE.with_label_values(&[listen]),
            refused: REFUSAL_REASONS.map(|r| DOWNSTREAM_REFUSED.with_label_values(&[listen, r])),
        }
    }

    /// Counts an admitted connection speaking `h2` or not; the gauge of its open count, to be
    /// decremented when it closes.
    pub fn accepted(&self, h2: bool) -> IntGauge {
        let p = usize::from(h2);
        self.accepted[p].inc();
        self.open[p].inc();
        self.open[p].clone()
    }

    /// Counts a connection refused for the `reason`-th of [`REFUSAL_REASONS`].
    pub fn refused(&self, reason: usize) {
        self.refused[reason].inc();
    }
}

/// Counts a failed TLS handshake on `listener` (Pingora's handshake hook).
pub fn tls_handshake_failed(listener: &str, timed_out: bool) {
    TLS_HANDSHAKE_FAILURES
        .with_label_values(&[listener, HANDSHAKE_FAILURES[usize::from(timed_out)]])
        .inc();
}
family!(DOWNSTREAM_TIMEOUTS: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_slow_client_timeouts_total",
    "Client connections closed because the request head (or the HTTP/2 preface) did not arrive in time.",
    &["phase"]
));

family!(DOWNSTREAM_DISCONNECTS: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_disconnects_total",
    "Requests whose client closed or reset its connection before the response was complete (status 499 when before it).",
    &["phase"]
));

/// Counts a client that went away, `during` the response or before it.
pub fn client_went_away(during: bool) {
    DOWNSTREAM_DISCONNECTS
        .with_label_values(&[DISCONNECT_PHASES[usize::from(during)]])
        .inc();
}

family!(TLS_CERT_EXPIRY: IntGaugeVec = register_int_gauge_vec!(
    "portico_tls_certificate_expiry_timestamp_seconds",
    "When the leaf certificate a TLS listener serves stops being valid (notAfter, Unix seconds). Certificates are read at start.",
    &["listener"]
));

/// Records when `listener`'s certificate expires.
pub fn tls_certificate_expiry(listener: &str, not_after: i64) {
    TLS_CERT_EXPIRY
        .with_label_values(&[listener])
        .set(not_after);
}

/// Registers the families and pre-creates every series.
pub fn init() {
    LazyLock::force(&DOWNSTREAM_OPEN);
    LazyLock::force(&DOWNSTREAM_DORMANT);
    LazyLock::force(&DOWNSTREAM_ACCEPTED);
    LazyLock::force(&DOWNSTREAM_REFUSED);
    LazyLock::force(&TLS_HANDSHAKE_FAILURES);
    LazyLock::force(&TLS_CERT_EXPIRY);
    for phase in TIMEOUT_PHASES {
        DOWNSTREAM_TIMEOUTS.with_label_values(&[phase]);
    }
    for phase in DISCONNECT_PHASES {
        DOWNSTREAM_DISCONNECTS.with_label_values(&[phase]);
    }
}
