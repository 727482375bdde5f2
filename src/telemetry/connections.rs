//! Downstream connection families: how many are open, accepted, refused by a connection limit,
//! and closed because the client was too slow to send a request head or the HTTP/2 preface; and
//! when each TLS listener's certificate expires.

use super::metrics::family;
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::LazyLock;

/// Why a new connection was refused.
pub const REFUSAL_REASONS: [&str; 2] = ["max_connections", "max_connections_per_ip"];
/// When a client went away: before or during the response.
pub const DISCONNECT_PHASES: [&str; 2] = ["before_response", "during_response"];
/// Which wait ran out on a slow client.
pub const TIMEOUT_PHASES: [&str; 2] = ["request_head", "h2_preface"];

family!(DOWNSTREAM_OPEN: IntGauge = register_int_gauge!(
    "portico_downstream_connections",
    "Client connections open now (after the TLS handshake)."
));
family!(DOWNSTREAM_ACCEPTED: IntCounter = register_int_counter!(
    "portico_downstream_connections_accepted_total",
    "Client connections admitted by the connection limits."
));
family!(DOWNSTREAM_REFUSED: IntCounterVec = register_int_counter_vec!(
    "portico_downstream_connections_refused_total",
    "Client connections closed on arrival because a connection limit was reached.",
    &["reason"]
));
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
    LazyLock::force(&DOWNSTREAM_ACCEPTED);
    LazyLock::force(&TLS_CERT_EXPIRY);
    for reason in REFUSAL_REASONS {
        DOWNSTREAM_REFUSED.with_label_values(&[reason]);
    }
    for phase in TIMEOUT_PHASES {
        DOWNSTREAM_TIMEOUTS.with_label_values(&[phase]);
    }
    for phase in DISCONNECT_PHASES {
        DOWNSTREAM_DISCONNECTS.with_label_values(&[phase]);
    }
}
