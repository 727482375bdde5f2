//! The Redis store: one `EVALSHA` of the GCRA script per decision (NOSCRIPT reloads it), on the
//! rate limiter's own Redis link (one multiplexed connection, or a cluster connection routing
//! each bucket to its hash slot's primary), bounded by `redis.command_timeout`.
//!
//! The link dials on first use, from the proxy's own runtime, so its driver task runs beside
//! the requests that use it. After a failure the store is marked down for [`RETRY_AFTER`]:
//! requests meanwhile go straight to their rule's `on_store_error` policy instead of each
//! waiting for a timeout, and the first request after it probes Redis again.

use super::gcra::{Decision, Gcra, REDIS_SCRIPT};
use super::peers::Peers;
use crate::redis_client::{Error as StoreError, Redis, Topology};
use crate::telemetry::redis::{REDIS_COMMAND_DURATION, REDIS_ERRORS, REDIS_UP};
use prometheus::{Histogram, IntGauge};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
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
    redis: Redis,
    prefix: String,
    timeout: Duration,
    peers: Arc<Peers>,
    /// Microseconds since [`EPOCH`] until which Redis is not tried; 0 = up.
    down_until_us: AtomicU64,
    duration: Histogram,
    up: IntGauge,
}

impl SharedStore {
    /// A store on `topology`; nothing connects until the first decision. `peers` divides a
    /// rule's local fallback.
    pub fn new(topology: Arc<Topology>, peers: Arc<Peers>) -> Self {
        let up = REDIS_UP.with_label_values(&[CLIENT]);
        up.set(1);
        let config = topology.config();
        Self {
            duration: REDIS_COMMAND_DURATION.with_label_values(&[CLIENT, "gcra"]),
            up,
            prefix: config.prefix.clone(),
            timeout: config.command_timeout,
            redis: Redis::new(CLIENT, topology.clone(), config.command_timeout),
            peers,
            down_until_us: AtomicU64::new(0),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The gateways sharing this store.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// One decision for `key`, on the Redis server's clock (the one clock every replica shares).
    pub async fn decide(&self, gcra: &Gcra, key: &str) -> Result<Decision, SharedError> {
        let clock = EPOCH.elapsed().as_micros() as u64;
        if clock < self.down_until_us.load(Ordering::Relaxed) {
            return Err(SharedError::Unavailable);
        }
        let started = Instant::now();
        let result = self
            .redis
            .attempt(self.timeout, |mut conn| async move {
                let mut invocation = SCRIPT.key(key);
                invocation
                    .arg(gcra.interval_us)
                    .arg(gcra.capacity)
                    // 0: the script reads the server clock (`TIME`).
                    .arg(0);
                let (allowed, remaining, reset_us, retry_after_us) = invocation
                    .invoke_async::<(u64, u64, u64, u64)>(&mut conn)
                    .await?;
                Ok(Decision {
                    allowed: allowed == 1,
                    remaining,
                    reset_us,
                    retry_after_us,
                })
            })
            .await;
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
