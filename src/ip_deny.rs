//! The shared IP deny set: a background service reading the sorted set `{prefix}ip:deny` every
//! `ip_deny.poll_interval` into [`SharedDeny`], which IP rules with `deny_from_redis` consult.
//! Members are addresses or CIDR networks; a member's score is when its block ends (Unix
//! milliseconds; `+inf` for never), so an operator blocks an address on every replica with one
//! `ZADD` and lets it lapse without a second command. A failed read keeps the last good set
//! (Redis away never unblocks anyone); members that are not addresses are skipped and logged
//! once. The set is read only while some IP rule in force uses it.

use crate::ip_set::{IpSet, Network};
use crate::policy::ip_rules::SharedDeny;
use crate::redis_client::{Error, Redis, Topology};
use crate::snapshot::Current;
use crate::telemetry::policy::{IP_DENY_ENTRIES, IP_DENY_SYNC_FAILURES};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Metric label of the deny set's Redis traffic.
pub const CLIENT: &str = "ip_deny";

/// The background service keeping [`SharedDeny`] in step with Redis.
pub struct DenySync {
    current: Arc<Current>,
    set: Arc<SharedDeny>,
    redis: Redis,
    key: String,
}

impl DenySync {
    /// A sync of `{prefix}ip:deny` into `set`.
    pub fn new(current: Arc<Current>, set: Arc<SharedDeny>, topology: Arc<Topology>) -> Self {
        let key = format!("{}ip:deny", topology.config().prefix);
        let timeout = topology.config().connect_timeout;
        Self {
            current,
            set,
            redis: Redis::new(CLIENT, topology, timeout),
            key,
        }
    }

    /// One read; on success the set in force is replaced.
    async fn pass(&self, logged: &mut HashSet<String>) -> Result<usize, Error> {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let bound = self
            .current
            .load()
            .config()
            .ip_deny
            .poll_interval
            .max(Duration::from_millis(200));
        let key = self.key.as_str();
        let members: Vec<String> = self
            .redis
            .call("ip_deny_read", bound, |mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg(now_ms)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await
                    .map_err(Error::from)
            })
            .await?;
        let set = IpSet::new(
            members
                .iter()
                .filter_map(|m| match Network::parse(m, false) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        if logged.insert(m.clone()) {
                            log::warn!("ip deny set {key}: skipping {e}");
                        }
                        None
                    }
                }),
        );
        let entries = members.len();
        self.set.replace(set);
        Ok(entries)
    }
}

#[async_trait]
impl BackgroundService for DenySync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut logged = HashSet::new();
        let mut failing = false;
        loop {
            let snapshot = self.current.load();
            let every = snapshot.config().ip_deny.poll_interval;
            if snapshot.uses_redis_deny() {
                match self.pass(&mut logged).await {
                    Ok(entries) => {
                        IP_DENY_ENTRIES.set(entries as i64);
                        if std::mem::take(&mut failing) {
                            log::info!("ip deny set: reading again ({entries} entries)");
                        }
                    }
                    Err(e) => {
                        IP_DENY_SYNC_FAILURES.inc();
                        if !std::mem::replace(&mut failing, true) {
                            log::warn!("ip deny set: read failed ({e}); keeping the last good set");
                        }
                    }
                }
            }
            drop(snapshot);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
