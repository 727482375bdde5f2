//! The Redis store: one `EVALSHA` of the GCRA script per decision (NOSCRIPT reloads it), on one
//! multiplexed connection shared by every request, bounded by `redis.command_timeout`.
//!
//! The connection is created on first use, from the proxy's own runtime, so its driver task
//! runs beside the requests that use it. After a failure the store is marked down for
//! [`RETRY_AFTER`]: requests meanwhile go straight to their rule's `on_store_error` policy
//! instead of each waiting for a timeout, and the first request after it probes Redis again.

use super::gcra::{Decision, Gcra, REDIS_SCRIPT};
use crate::config::RedisConfig;
use crate::redis_client::Error as StoreError;
use crate::telemetry::redis::{REDIS_COMMAND_DURATION, REDIS_ERRORS, REDIS_UP};
use prometheus::{Histogram, IntGauge};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

/// How long a failed Redis store is skipped before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Metric label of the rate limiter's Redis traffic.
pub const CLIENT: &str = "ratelimit";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REDIS_SCRIPT));
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Why a Redis decision was not made.
#[derive(Debug)]
pub enum SharedError {
    /// Redis is marked down after a recent failure; not tried.
    Unavailable,
    Failed(StoreError),
}

impl SharedError {
    /// The `kind` label of `portico_ratelimit_store_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            SharedError::Unavailable => "unavailable",
            SharedError::Failed(e) => e.kind(),
        }
    }
}

/// The shared (Redis) rate-limit store of one gateway.
pub struct SharedStore {
    config: RedisConfig,
    conn: OnceLock<Option<ConnectionManager>>,
    /// Microseconds since [`EPOCH`] until which Redis is not tried; 0 = up.
    down_until_us: AtomicU64,
    duration: Histogram,
    up: IntGauge,
}

impl SharedStore {
    /// A store for `config`; nothing connects until the first decision.
    pub fn new(config: RedisConfig) -> Self {
        let up = REDIS_UP.with_label_values(&[CLIENT]);
        up.set(1);
        crate::telemetry::redis::client_in_use(CLIENT);
        Self {
            duration: REDIS_COMMAND_DURATION.with_label_values(&[CLIENT, "gcra"]),
            up,
            config,
            conn: OnceLock::new(),
            down_until_us: AtomicU64::new(0),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn
            .get_or_init(|| {
                crate::redis_client::request_path(&self.config)
                    .map_err(|e| log::error!("rate limiter: cannot create a Redis client: {e}"))
                    .ok()
            })
            .clone()
    }

    /// One decision for `key`, on the Redis server's clock (the one clock every replica shares).
    pub async fn decide(&self, gcra: &Gcra, key: &str) -> Result<Decision, SharedError> {
        let clock = EPOCH.elapsed().as_micros() as u64;
        if clock < self.down_until_us.load(Ordering::Relaxed) {
            return Err(SharedError::Unavailable);
        }
        let Some(mut conn) = self.connection() else {
            return Err(SharedError::Unavailable);
        };
        let started = Instant::now();
        let mut invocation = SCRIPT.key(key);
        invocation
            .arg(gcra.interval_us)
            .arg(gcra.capacity)
            // 0: the script reads the server clock (`TIME`).
            .arg(0);
        let call = invocation.invoke_async::<(u64, u64, u64, u64)>(&mut conn);
        let result = match tokio::time::timeout(self.config.command_timeout, call).await {
            Ok(Ok((allowed, remaining, reset_us, retry_after_us))) => Ok(Decision {
                allowed: allowed == 1,
                remaining,
                reset_us,
                retry_after_us,
            }),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.config.command_timeout)),
        };
        self.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(d) => {
                self.up.set(1);
                Ok(d)
            }
            Err(e) => {
                self.up.set(0);
                REDIS_ERRORS.with_label_values(&[CLIENT, e.kind()]).inc();
                let until = EPOCH.elapsed() + RETRY_AFTER;
                self.down_until_us
                    .store(until.as_micros() as u64, Ordering::Relaxed);
                Err(SharedError::Failed(e))
            }
        }
    }
}

/// Microseconds on the process's monotonic clock, for local decisions (never 0).
pub fn local_now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64 + 1
}
