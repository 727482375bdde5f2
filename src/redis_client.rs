//! The Redis connection layer shared by the service registry, the rate limiter's Redis store
//! and the business-event publisher: how a connection is opened, how every call is bounded in
//! time and recorded (`portico_redis_command_duration_seconds{client, command}` and
//! `portico_redis_errors_total{client, kind}`), and what a failure is. Callers decide what a
//! failure means for them (last known good, local fallback, a dropped batch) — Redis being away
//! never fails a request.

use crate::config::RedisConfig;
use crate::telemetry::redis as redis_metrics;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};
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
}

impl Error {
    /// The `kind` label of `portico_redis_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::Redis(e) if e.is_timeout() => "timeout",
            Error::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
            Error::Redis(_) | Error::Reply(_) => "protocol",
        }
    }

    /// Whether the connection that produced this error should be replaced.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self.kind(), "connection" | "timeout")
    }
}

/// Opens a multiplexed connection whose driver task runs on the current runtime; `client`
/// labels its metrics.
pub async fn connect(
    client: &'static str,
    url: &str,
    timeout: Duration,
) -> Result<MultiplexedConnection, Error> {
    let redis = Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    bounded(client, "connect", timeout, async {
        Ok(redis
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    })
    .await
}

/// A connection for request-path commands: multiplexed, connecting on first use, reconnecting
/// by itself (once per call, backing off up to 500 ms), every response bounded by
/// `command_timeout`. Its driver task runs on the runtime of its first use.
pub fn request_path(settings: &RedisConfig) -> Result<ConnectionManager, Error> {
    let client = Client::open(settings.url.as_str())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.command_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
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
