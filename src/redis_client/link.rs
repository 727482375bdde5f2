//! A client's link to Redis: one shared connection per logical client (`registry`,
//! `ratelimit`, `events`, `membership`, `admin`), dialled on first use, dialled again when it is
//! lost, and never dialled by two callers at once.
//!
//! - A dial runs as its own task, so a caller that gives up (the rate limiter waits 50 ms) does
//!   not cancel it; the next caller finds the connection ready.
//! - A failed dial backs off (100 ms doubling to 1 s, with jitter); meanwhile callers fail at
//!   once instead of each waiting for a timeout. Every dial is counted in
//!   `portico_redis_connects_total{client, result}`.
//! - A connection is dropped after an I/O error, a `READONLY` reply (a sentinel demoted the
//!   node) or [`STUCK_AFTER`] timeouts in a row, and when the topology's generation moves (the
//!   sentinels named a new primary). A cluster connection is kept: it reconnects nodes and
//!   re-reads the slot map by itself.
//! - A client on the request path (the rate limiter) is [`Redis::driven`]: its connection to
//!   one node is driven by the calls waiting on it ([`super::driven`]) rather than by a task
//!   that every command and reply would queue for.

use super::conn::Conn;
use super::driven::Driver;
use super::topology::Topology;
use super::Error;
use crate::telemetry::redis as metrics;
use arc_swap::ArcSwapOption;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Timeouts in a row after which a connection is presumed stuck and dialled again.
pub const STUCK_AFTER: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
// Short: a dial costs Redis little, and after an outage every second of backoff is a second
// of local fallback.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One logical client's handle on Redis; clones share the connection.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: &'static str,
    topology: Arc<Topology>,
    /// Bound on each command's reply on this client's connections.
    response: Duration,
    /// Connections are driven by their callers ([`Driver`]) rather than tasks of their own.
    driven: bool,
    link: ArcSwapOption<Link>,
    dial: Mutex<Dial>,
}

/// A connection in use, with what the link tracks about it.
pub struct Link {
    conn: Conn,
    driver: Option<Driver>,
    generation: u64,
    timeouts: AtomicU32,
}

impl Link {
    /// A handle on the connection (clones share it), for a caller that settles its own
    /// outcome. Not for a driven client's link: nothing would read its replies outside
    /// [`Redis::attempt`].
    pub fn conn(&self) -> Conn {
        debug_assert!(
            self.driver.is_none(),
            "a driven link is used through attempt"
        );
        self.conn.clone()
    }
}

type Pending = Shared<BoxFuture<'static, Result<Arc<Link>, String>>>;

#[derive(Default)]
struct Dial {
    pending: Option<Pending>,
    retry_at: Option<Instant>,
    delay: Duration,
    last_error: String,
    /// Where the last connection went (a sentinel's primary moves).
    last_at: Option<String>,
    /// The topology generation of the last failed dial: a newer one (a new primary) is
    /// dialled at once instead of waiting out the backoff.
    failed_in: u64,
}

impl Redis {
    /// A handle for `client` (its metric label) whose commands wait at most `response` each.
    pub fn new(client: &'static str, topology: Arc<Topology>, response: Duration) -> Self {
        Self::with_driving(client, topology, response, false)
    }

    /// [`Redis::new`] for a client on the request path: a connection to one node is driven
    /// by the calls waiting on it, not by a task that each command and reply queues for.
    pub fn driven(client: &'static str, topology: Arc<Topology>, response: Duration) -> Self {
        Self::with_driving(client, topology, response, true)
    }

    fn with_driving(
        client: &'static str,
        topology: Arc<Topology>,
        response: Duration,
        driven: bool,
    ) -> Self {
        metrics::client_in_use(client);
        Self {
            inner: Arc::new(Inner {
                client,
                topology,
                response,
                driven,
                link: ArcSwapOption::empty(),
                dial: Mutex::new(Dial::default()),
            }),
        }
    }

    /// The metric label of this client.
    pub fn client(&self) -> &'static str {
        self.inner.client
    }

    /// Where this client connects.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.inner.topology
    }

    /// The connection in force, dialling one when there is none (or it is stale). Fails at
    /// once while a failed dial backs off.
    pub async fn link(&self) -> Result<Arc<Link>, Error> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let pending = self.dial()?;
        pending.await.map_err(Error::Unavailable)
    }

    /// Runs `call` on the connection within `timeout` (dialling included), records it under
    /// `command`, and settles the link with its outcome.
    pub async fn call<T, F, Fut>(
        &self,
        command: &'static str,
        timeout: Duration,
        call: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let result = self.attempt(timeout, call).await;
        metrics::observe(
            self.inner.client,
            command,
            started.elapsed(),
            result.as_ref().err().map(Error::kind),
        );
        result
    }

    /// [`Redis::call`] without recording: for callers that keep their own metric handles.
    pub async fn attempt<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T, Error>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut used = None;
        let attempt = async {
            let link = self.link().await?;
            let conn = link.conn.clone();
            used = Some(link.clone());
            match &link.driver {
                Some(driver) => driver.drive(call(conn)).await,
                None => call(conn).await,
            }
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        };
        if let Some(link) = &used {
            self.settle(link, &result);
        }
        result
    }

    /// Records the outcome of a call made on `link`: a connection that is lost, stuck or
    /// talking to a demoted primary is dropped so the next call dials again.
    pub fn settle<T>(&self, link: &Arc<Link>, result: &Result<T, Error>) {
        let lost = match result {
            Ok(_) => {
                link.timeouts.store(0, Ordering::Relaxed);
                return;
            }
            Err(e) if e.kind() == "timeout" => {
                link.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= STUCK_AFTER
            }
            Err(Error::Redis(e)) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            }
            Err(_) => false,
        };
        if lost && self.inner.topology.redials() {
            self.forget(link);
        }
    }

    fn current(&self) -> Option<Arc<Link>> {
        let link = self.inner.link.load_full()?;
        if link.generation == self.inner.topology.generation() {
            return Some(link);
        }
        self.forget(&link);
        None
    }

    /// Drops `link` unless another connection already replaced it.
    fn forget(&self, link: &Arc<Link>) {
        let current = self.inner.link.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link)) {
            self.inner.link.compare_and_swap(&*current, None);
        }
    }

    fn dial(&self) -> Result<Pending, Error> {
        let mut dial = lock(&self.inner.dial);
        if let Some(pending) = &dial.pending {
            return Ok(pending.clone());
        }
        if dial.retry_at.is_some_and(|at| Instant::now() < at)
            && dial.failed_in == self.inner.topology.generation()
        {
            return Err(Error::Unavailable(dial.last_error.clone()));
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(inner.establish());
        let pending = async move {
            task.await
                .unwrap_or_else(|e| Err(format!("the dial task failed: {e}")))
        }
        .boxed()
        .shared();
        dial.pending = Some(pending.clone());
        Ok(pending)
    }
}

impl Inner {
    async fn establish(self: Arc<Self>) -> Result<Arc<Link>, String> {
        let generation = self.topology.generation();
        // A sentinel topology asks the sentinels first, then dials the primary.
        let budget = self.topology.config().connect_timeout * 2;
        let opened = match tokio::time::timeout(
            budget,
            self.topology.open(self.response, self.driven),
        )
        .await
        {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {budget:?}")),
        };
        let mut dial = lock(&self.dial);
        dial.pending = None;
        match opened {
            Ok(opened) => {
                metrics::connected(self.client, true);
                let failing = dial.retry_at.take().is_some();
                let moved = dial.last_at.as_ref().is_some_and(|at| *at != opened.at);
                if moved {
                    log::warn!(
                        "redis ({}): now connected to {} (was {})",
                        self.client,
                        opened.at,
                        dial.last_at.as_deref().unwrap_or_default()
                    );
                } else if failing {
                    log::info!("redis ({}): connected to {} again", self.client, opened.at);
                }
                dial.delay = Duration::ZERO;
                dial.last_at = Some(opened.at);
                let link = Arc::new(Link {
                    conn: opened.conn,
                    driver: opened.driver,
                    generation,
                    timeouts: AtomicU32::new(0),
                });
                self.link.store(Some(link.clone()));
                Ok(link)
            }
            Err(e) => {
                metrics::connected(self.client, false);
                if dial.retry_at.is_none() {
                    log::warn!(
                        "redis ({}): cannot connect to {}: {e}; retrying with backoff",
                        self.client,
                        self.topology.describe()
                    );
                }
                dial.delay = (dial.delay * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                let jitter = dial.delay.mul_f64(0.8 + 0.4 * fastrand::f64());
                dial.retry_at = Some(Instant::now() + jitter);
                dial.failed_in = generation;
                dial.last_error = e.clone();
                Err(e)
            }
        }
    }
}

fn lock(dial: &Mutex<Dial>) -> MutexGuard<'_, Dial> {
    dial.lock().unwrap_or_else(|p| p.into_inner())
}
