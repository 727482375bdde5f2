//! The Redis connection layer shared by the service registry, the rate limiter's Redis store
//! and the business-event publisher: how a connection is opened, how every call is bounded in
//! time and recorded (`portico_redis_command_duration_seconds{client, command}` and
//! `portico_redis_errors_total{client, kind}`), and what a failure is. Callers decide what a
//! failure means for them (last known good, local fallback, a dropped batch) — Redis being away
//! never fails a request.

mod conn;
mod driven;
mod link;
pub mod sentinel;
mod topology;

pub use conn::{Conn, Opened};
pub use link::{Link, Redis, STUCK_AFTER};
pub use topology::Topology;

use crate::telemetry::redis as redis_metrics;
use std::future::Future;
use std::time::{Duration, Instant};

/// A failed Redis call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected Redis reply: {0}")]
    Reply(String),
    /// No connection: the last dial failed and the next waits for its backoff.
    #[error("Redis unreachable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The `kind` label of `portico_redis_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::Redis(e) if e.is_timeout() => "timeout",
            Error::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
            Error::Unavailable(_) => "connection",
            Error::Redis(_) | Error::Reply(_) => "protocol",
        }
    }

    /// Whether the connection that produced this error should be replaced.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self.kind(), "connection" | "timeout")
    }
}

/// Runs `call` within `timeout`, recording its duration and any error under `client`.
pub async fn bounded<T>(
    client: &'static str,
    command: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(timeout)),
    };
    redis_metrics::observe(
        client,
        command,
        started.elapsed(),
        result.as_ref().err().map(Error::kind),
    );
    result
}
