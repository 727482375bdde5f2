//! The registry watcher: a background service that reads every `discovery: redis` service's
//! registrations each `poll_interval` (sooner when a pub/sub event arrives), drops expired and
//! invalid ones, and hands the rest to the service's [`Upstream`]. A failed pass changes nothing:
//! balancers keep the last known good set. Correctness never depends on pub/sub: it only wakes
//! the poll loop early, and every pass is a full resync.
//!
//! Two events would otherwise look like every instance leaving at once: Redis losing its data (a
//! restart without persistence, a failover to an empty replica; Portico notices because a random
//! epoch token it keeps in Redis vanished), and Redis coming back after an outage longer than
//! the TTL (registrars could not heartbeat meanwhile). After either, the watcher grants one TTL
//! of grace: instances it knew stay in use even if absent or expired, the janitor pauses, and
//! registrars have time to re-register or heartbeat.

use super::keys::Keys;
use super::record;
use super::status::RegistryStatus;
use super::store::{self, Entries, StoreError};
use crate::config::Discovery;
use crate::redis_client::{Conn, Redis, Topology};
use crate::snapshot::Current;
use crate::telemetry::redis as redis_metrics;
use crate::upstream::health::Verdicts;
use crate::upstream::{Registration, Upstream};
use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Shortest time between two passes, however many events arrive.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Wait before re-subscribing after the pub/sub connection is lost.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Feeds registry instances into balancers.
pub struct Watcher {
    current: Arc<Current>,
    /// Health verdicts of instances; forgotten when an instance leaves its service.
    verdicts: Arc<Verdicts>,
    redis: Redis,
    keys: Keys,
    status: Arc<RegistryStatus>,
    /// Random per process: the epoch token this replica writes, and its janitor-lock value.
    token: String,
}

/// What one watcher carries from pass to pass.
#[derive(Default)]
struct PassState {
    epoch: Option<String>,
    /// Until this Redis time (ms), known instances that vanished or expired are kept.
    recovery_until_ms: f64,
    /// The last pass failed: the next successful one starts a grace period.
    outage: bool,
    next_janitor: Option<Instant>,
    reported: HashSet<String>,
    logged_invalid: HashSet<String>,
}

impl Watcher {
    /// A watcher over the services of the snapshot in force, reading through `topology`.
    pub fn new(
        current: Arc<Current>,
        verdicts: Arc<Verdicts>,
        topology: Arc<Topology>,
        status: Arc<RegistryStatus>,
    ) -> Self {
        status.enable();
        let timeout = current.load().config().registry.timeout;
        Self {
            current,
            verdicts,
            keys: Keys::new(&topology.config().prefix),
            redis: Redis::new(store::CLIENT, topology, timeout),
            status,
            token: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        }
    }

    /// One full pass; failures are recorded in the status and leave the services they concern
    /// as they were.
    async fn pass(&self, state: &mut PassState) {
        let timeout = self.current.load().config().registry.timeout;
        let result = match store::bounded("connect", timeout, self.redis.link()).await {
            Ok(link) => {
                let result = self.try_pass(&link.conn(), state).await;
                self.redis.settle(&link, &result);
                result
            }
            Err(e) => Err(e),
        };
        state.outage = result.is_err();
        match result {
            Ok(recovering) => self.status.success(recovering),
            Err(e) => self.status.failure(e.to_string()),
        }
    }

    /// Returns whether the registry is in its grace period; a failed service read fails the
    /// pass after the other services were applied.
    async fn try_pass(&self, conn: &Conn, state: &mut PassState) -> Result<bool, StoreError> {
        let snapshot = self.current.load();
        let timeout = snapshot.config().registry.timeout;
        let watched: Vec<(&str, &Arc<Upstream>)> = snapshot
            .services()
            .iter()
            .filter(|(_, u)| u.config().discovery == Discovery::Redis)
            .map(|(n, u)| (n.as_str(), u))
            .collect();
        let names: Vec<&str> = watched.iter().map(|(n, _)| *n).collect();
        let read = store::bounded(
            "registry_read",
            timeout,
            store::read(conn, &self.keys, &names),
        )
        .await?;

        let mut grace = state.outage;
        let known = state.epoch.clone();
        match (&known, &read.epoch) {
            (Some(k), Some(now)) if k == now => {}
            (None, Some(now)) => state.epoch = Some(now.clone()),
            (known, _) => {
                if known.is_some() {
                    grace = true;
                    redis_metrics::REGISTRY_DATA_LOSS
                        .with_label_values::<&str>(&[])
                        .inc();
                    log::warn!(
                        "registry: Redis lost its data (epoch token gone); keeping known instances for one TTL while registrars re-register"
                    );
                }
                state.epoch = store::bounded(
                    "registry_epoch",
                    timeout,
                    store::claim_epoch(&mut conn.clone(), &self.keys, &self.token),
                )
                .await?;
            }
        }
        if grace {
            let longest = watched
                .iter()
                .map(|(_, u)| u.config().heartbeat_ttl)
                .max()
                .unwrap_or_default();
            state.recovery_until_ms = read.now_ms + longest.as_millis() as f64;
        }
        let recovering = read.now_ms < state.recovery_until_ms;

        let mut expired_in = Vec::new();
        let mut failed = None;
        for ((name, upstream), entries) in watched.iter().zip(read.services) {
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => {
                    // This service keeps its last known good instances.
                    failed = Some(StoreError::Reply(format!("service {name}: {e}")));
                    continue;
                }
            };
            let ttl_ms = upstream.config().heartbeat_ttl.as_millis() as f64;
            let (mut live, counts) = self.interpret(name, entries, read.now_ms, ttl_ms, state);
            if recovering {
                for known in upstream.registrations() {
                    if !live.iter().any(|r| r.id == known.id) {
                        live.push(known);
                    }
                }
            }
            for gone in upstream.apply_registrations(live).await {
                self.verdicts.forget(&gone);
            }
            redis_metrics::registry_instances(name, counts);
            state.reported.insert(name.to_string());
            if counts[2] > 0 {
                expired_in.push((*name, read.now_ms - ttl_ms));
            }
        }
        state.reported.retain(|s| {
            let keep = names.contains(&s.as_str());
            if !keep {
                redis_metrics::remove_service(s);
            }
            keep
        });
        if snapshot.config().registry.janitor && !recovering && !expired_in.is_empty() {
            self.janitor(
                &mut conn.clone(),
                &expired_in,
                state,
                snapshot.config().registry.poll_interval,
                timeout,
            )
            .await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(recovering),
        }
    }

    /// Splits one service's entries into usable registrations and counts
    /// `[live, draining, expired, invalid]`.
    fn interpret(
        &self,
        service: &str,
        entries: Entries,
        now_ms: f64,
        ttl_ms: f64,
        state: &mut PassState,
    ) -> (Vec<Registration>, [usize; 4]) {
        let mut counts = [0; 4];
        let mut usable = Vec::with_capacity(entries.len());
        for (id, heartbeat_ms, fields) in entries {
            if heartbeat_ms < now_ms - ttl_ms {
                counts[2] += 1;
                continue;
            }
            let parsed = if fields.is_empty() {
                Err(format!("instance {id}: its hash is missing"))
            } else {
                record::parse(&id, heartbeat_ms, &fields)
            };
            match parsed {
                Ok(r) => {
                    counts[usize::from(r.draining)] += 1;
                    usable.push(r);
                }
                Err(e) => {
                    counts[3] += 1;
                    if state.logged_invalid.len() > 10_000 {
                        state.logged_invalid.clear();
                    }
                    if state.logged_invalid.insert(format!("{service}/{e}")) {
                        log::warn!("registry: service {service}: ignoring {e}");
                    }
                }
            }
        }
        (usable, counts)
    }

    /// Removes expired registrations, at most once per period across all replicas.
    async fn janitor(
        &self,
        conn: &mut Conn,
        expired_in: &[(&str, f64)],
        state: &mut PassState,
        poll: Duration,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        if state.next_janitor.is_some_and(|t| now < t) {
            return Ok(());
        }
        let period = (poll * 5).max(Duration::from_secs(5));
        state.next_janitor = Some(now + period);
        let lock = store::try_janitor_lock(conn, &self.keys, &self.token, period);
        if !store::bounded("registry_janitor", timeout, lock).await? {
            return Ok(());
        }
        for (service, cutoff_ms) in expired_in {
            let removed = store::bounded(
                "registry_janitor",
                timeout,
                store::remove_expired(conn, &self.keys, service, *cutoff_ms),
            )
            .await?;
            if removed > 0 {
                log::info!("registry: removed {removed} expired instance(s) of {service}");
                redis_metrics::REGISTRY_EXPIRED_REMOVED
                    .with_label_values(&[service])
                    .inc_by(removed);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            self.redis.topology().clone(),
            self.keys.events(),
            wake.clone(),
            shutdown.clone(),
        ));
        let mut state = PassState::default();
        loop {
            self.pass(&mut state).await;
            let poll = self.current.load().config().registry.poll_interval;
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(poll) => {}
                _ = wake.notified() => tokio::time::sleep(MIN_GAP).await,
            }
        }
        listener.abort();
    }
}

/// Subscribes to the events channel and wakes the poll loop on every message, and after every
/// (re)subscription, since events may have been missed while disconnected. On a cluster each
/// attempt tries the next seed node.
async fn listen(
    topology: Arc<Topology>,
    channel: String,
    wake: Arc<Notify>,
    mut shutdown: ShutdownWatch,
) {
    let bound = topology.config().connect_timeout;
    for attempt in 0.. {
        let session = async {
            let (client, at) = tokio::time::timeout(bound, topology.subscriber(attempt))
                .await
                .map_err(|_| StoreError::Timeout(bound))??;
            let mut pubsub = tokio::time::timeout(bound, client.get_async_pubsub())
                .await
                .map_err(|_| StoreError::Timeout(bound))??;
            pubsub.subscribe(&channel).await?;
            log::debug!("registry: subscribed to {channel} on {at}");
            wake.notify_one();
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                wake.notify_one();
            }
            Ok::<(), StoreError>(())
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            result = session => {
                if let Err(e) = result {
                    log::debug!("registry: pub/sub unavailable ({e}); polling only");
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}
