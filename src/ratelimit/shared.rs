//! The Redis store: `EVALSHA` of the GCRA script (NOSCRIPT reloads it) on the rate limiter's
//! own Redis link (one multiplexed connection, or a cluster connection routing each bucket to
//! its hash slot's primary), each call bounded by `redis.command_timeout`. On one node or a
//! sentinel's primary, concurrent decisions share calls ([`super::coalesce`]); on a cluster
//! each decision is its own call, since one script call cannot span hash slots.
//!
//! The link dials on first use, from the proxy's own runtime. A connection to one node over
//! TCP is driven by the decisions waiting on it ([`Redis::driven`]): the leader of a batch
//! writes the call and reads the reply in its own polls, instead of handing both through a
//! connection task queued behind the requests on the same single-threaded runtime (Redis-store
//! / local-store req/s at 64 connections 0.78x → 0.88x, BENCHMARKS.md, sixth session).
//!
//! After a failure the store is marked down for [`RETRY_AFTER`]: requests meanwhile go
//! straight to their rule's `on_store_error` policy instead of each waiting for a timeout, and
//! the first request after it probes Redis again.

use super::coalesce::{Coalescer, Entry};
use super::gcra::{read_reply, Decision, Gcra, REDIS_SCRIPT};
use super::peers::Peers;
use crate::redis_client::{Error as StoreError, Redis, Topology};
use crate::telemetry::ratelimit::REDIS_BATCH;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// Redis is marked down after a recent failure; not tried.
    Unavailable,
    /// The call failed; the error's `kind` (every decision of a batch shares it).
    Failed(&'static str),
}

impl SharedError {
    /// The `kind` label of `portico_ratelimit_store_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            SharedError::Unavailable => "unavailable",
            SharedError::Failed(kind) => kind,
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
    /// Decisions per call.
    batch: Histogram,
    up: IntGauge,
    /// Present when decisions may share calls (not on a cluster).
    coalescer: Option<Coalescer>,
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
            batch: REDIS_BATCH.clone(),
            up,
            prefix: config.prefix.clone(),
            timeout: config.command_timeout,
            redis: Redis::driven(CLIENT, topology.clone(), config.command_timeout),
            peers,
            down_until_us: AtomicU64::new(0),
            coalescer: topology.redials().then(Coalescer::default),
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
    pub async fn decide(
        &self,
        gcra: &Gcra,
        key: impl Into<String>,
    ) -> Result<Decision, SharedError> {
        let clock = EPOCH.elapsed().as_micros() as u64;
        if clock < self.down_until_us.load(Ordering::Relaxed) {
            return Err(SharedError::Unavailable);
        }
        let entry = Entry {
            key: key.into(),
            gcra: *gcra,
        };
        match &self.coalescer {
            Some(c) => c.decide(entry, |batch| self.call(batch)).await,
            None => self
                .call(vec![entry])
                .await?
                .pop()
                .ok_or(SharedError::Failed("protocol")),
        }
    }

    /// One script call deciding `batch` in order.
    async fn call(&self, batch: Vec<Entry>) -> Result<Vec<Decision>, SharedError> {
        self.batch.observe(batch.len() as f64);
        let started = Instant::now();
        let result = self
            .redis
            .attempt(self.timeout, |mut conn| async move {
                let mut invocation = SCRIPT.prepare_invoke();
                // 0: the script reads the server clock (`TIME`).
                invocation.arg(0);
                for e in &batch {
                    invocation
                        .key(&e.key)
                        .arg(e.gcra.interval_us)
                        .arg(e.gcra.capacity);
                }
                let reply = invocation.invoke_async::<Vec<u8>>(&mut conn).await?;
                match read_reply(&reply) {
                    Some(decisions) if decisions.len() == batch.len() => Ok(decisions),
                    _ => Err(StoreError::Reply(format!(
                        "{:.80} for {} decisions",
                        String::from_utf8_lossy(&reply),
                        batch.len()
                    ))),
                }
            })
            .await;
        self.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(decisions) => {
                self.up.set(1);
                Ok(decisions)
            }
            Err(e) => {
                self.up.set(0);
                REDIS_ERRORS.with_label_values(&[CLIENT, e.kind()]).inc();
                let until = EPOCH.elapsed() + RETRY_AFTER;
                self.down_until_us
                    .store(until.as_micros() as u64, Ordering::Relaxed);
                Err(SharedError::Failed(e.kind()))
            }
        }
    }
}

/// Microseconds on the process's monotonic clock, for local decisions (never 0).
pub fn local_now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64 + 1
}
