//! Request and response body sizes per route as histograms (the byte counters give totals;
//! these give the distribution a proxy dashboard shows: is a route's traffic many small
//! bodies or a few large ones).

use super::metrics::family;
use prometheus::{register_histogram_vec, Histogram, HistogramVec};
use std::sync::LazyLock;

/// 64 B to 16 MiB by factors of four.
const SIZE_BUCKETS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

family!(REQUEST_SIZES: HistogramVec = register_histogram_vec!(
    "portico_http_request_body_size_bytes",
    "Request body bytes read from the client, per request.",
    &["route"],
    SIZE_BUCKETS.to_vec()
));

family!(RESPONSE_SIZES: HistogramVec = register_histogram_vec!(
    "portico_http_response_body_size_bytes",
    "Response body bytes sent to the client, per request.",
    &["route"],
    SIZE_BUCKETS.to_vec()
));

/// Registers the families.
pub fn init() {
    LazyLock::force(&REQUEST_SIZES);
    LazyLock::force(&RESPONSE_SIZES);
}

/// One route's histograms, made at load.
pub struct BodySizes {
    request: Histogram,
    response: Histogram,
}

impl BodySizes {
    /// `route`'s histograms.
    pub fn new(route: &str) -> Self {
        Self {
            request: REQUEST_SIZES.with_label_values(&[route]),
            response: RESPONSE_SIZES.with_label_values(&[route]),
        }
    }

    /// Records one request's body sizes.
    pub fn observe(&self, read: u64, sent: u64) {
        self.request.observe(read as f64);
        self.response.observe(sent as f64);
    }

    /// Removes `route`'s series.
    pub fn remove(route: &str) {
        let _ = REQUEST_SIZES.remove_label_values(&[route]);
        let _ = RESPONSE_SIZES.remove_label_values(&[route]);
    }
}
