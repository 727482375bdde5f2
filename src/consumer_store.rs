//! Consumers kept in Redis, beside the configuration's: the schema, the writes the admin API
//! and `portico consumer` make, and the background service that reads them into
//! [`StoredConsumers`].
//!
//! Schema (public; `{prefix}` is `redis.prefix`):
//! - `{prefix}consumers` — a hash: field = consumer name, value = JSON
//!   `{"groups": [..], "api_keys": ["sha256:HEX", ..], "basic": {"user", "password_hash"}}`
//!   (the shape of a `consumers` entry; keys are always stored as digests).
//! - `{prefix}consumers:version` — a counter every writer increments after a change.
//!
//! Every `identity.poll_interval` a gateway reads the counter (one `GET`); when it moved — and
//! every 30th poll regardless — it reads the hash (`HGETALL`). A failed read keeps the
//! consumers in force: Redis away never logs anyone out. A record that does not compile is
//! skipped and logged once. Reading happens only while some `auth` policy is configured.

use crate::config::ConsumerConfig;
use crate::identity::{api_key, Directory, StoredConsumers};
use crate::redis_client::{Error, Redis, Topology};
use crate::snapshot::Current;
use crate::telemetry::auth as metrics;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Metric label of the consumer store's Redis traffic.
pub const CLIENT: &str = "consumers";

/// Polls between two full reads even when the version did not move (a writer that forgot the
/// counter is picked up anyway).
const FULL_READ_EVERY: u32 = 30;

/// The store's keys under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    pub hash: String,
    pub version: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            hash: format!("{prefix}consumers"),
            version: format!("{prefix}consumers:version"),
        }
    }
}

/// A consumer as the admin API or the CLI gives it, made ready to store: the name checked,
/// plain keys replaced by their digests, the whole record compiled like a configured one.
pub fn prepare(name: &str, mut record: ConsumerConfig) -> Result<ConsumerConfig, Vec<String>> {
    let mut errors = Vec::new();
    for key in &mut record.api_keys {
        match api_key::stored_digest(key) {
            Ok(d) => {
                let mut hex = [0u8; 64];
                crate::hex::encode_into(&mut hex, &d);
                *key = format!("sha256:{}", std::str::from_utf8(&hex).unwrap_or_default());
            }
            Err(e) => errors.push(format!("api_keys: {e}")),
        }
    }
    if errors.is_empty() {
        let one = BTreeMap::from([(name.to_string(), record.clone())]);
        let mut problems = crate::config::Problems::default();
        Directory::compile(&one, &mut problems);
        errors.extend(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message)),
        );
    }
    match errors.is_empty() {
        true => Ok(record),
        false => Err(errors),
    }
}

/// Stores `record` (already [`prepare`]d) under `name` and announces the change.
pub async fn put(
    redis: &Redis,
    keys: &Keys,
    name: &str,
    record: &ConsumerConfig,
    timeout: Duration,
) -> Result<(), Error> {
    let json = serde_json::to_string(record).unwrap_or_default();
    redis
        .call("consumer_write", timeout, |mut conn| async move {
            redis::cmd("HSET")
                .arg(&keys.hash)
                .arg(name)
                .arg(json)
                .query_async::<()>(&mut conn)
                .await?;
            redis::cmd("INCR")
                .arg(&keys.version)
                .query_async::<()>(&mut conn)
                .await
                .map_err(Error::from)
        })
        .await
}

/// Removes `name`; whether it existed.
pub async fn remove(
    redis: &Redis,
    keys: &Keys,
    name: &str,
    timeout: Duration,
) -> Result<bool, Error> {
    redis
        .call("consumer_write", timeout, |mut conn| async move {
            let removed: u32 = redis::cmd("HDEL")
                .arg(&keys.hash)
                .arg(name)
                .query_async(&mut conn)
                .await?;
            redis::cmd("INCR")
                .arg(&keys.version)
                .query_async::<()>(&mut conn)
                .await?;
            Ok(removed > 0)
        })
        .await
}

/// The stored record of `name`, if any (`Ok(None)` also for a record that is not JSON).
pub async fn get(
    redis: &Redis,
    keys: &Keys,
    name: &str,
    timeout: Duration,
) -> Result<Option<ConsumerConfig>, Error> {
    let text: Option<String> = redis
        .call("consumer_read", timeout, |mut conn| async move {
            redis::cmd("HGET")
                .arg(&keys.hash)
                .arg(name)
                .query_async(&mut conn)
                .await
                .map_err(Error::from)
        })
        .await?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// The background service keeping [`StoredConsumers`] in step with Redis.
pub struct ConsumerSync {
    current: Arc<Current>,
    stored: Arc<StoredConsumers>,
    redis: Redis,
    keys: Keys,
}

impl ConsumerSync {
    /// A sync of `topology`'s consumers into `stored`.
    pub fn new(
        current: Arc<Current>,
        stored: Arc<StoredConsumers>,
        topology: Arc<Topology>,
    ) -> Self {
        let keys = Keys::new(&topology.config().prefix);
        let timeout = topology.config().connect_timeout;
        Self {
            current,
            stored,
            redis: Redis::new(CLIENT, topology, timeout),
            keys,
        }
    }

    /// The version counter (0 when absent).
    async fn version(&self, bound: Duration) -> Result<u64, Error> {
        let key = self.keys.version.as_str();
        let v: Option<u64> = self
            .redis
            .call("consumer_version", bound, |mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(Error::from)
            })
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Reads every record; on success the stored consumers in force are replaced.
    async fn read_all(&self, bound: Duration, logged: &mut HashSet<String>) -> Result<(), Error> {
        let key = self.keys.hash.as_str();
        let records: Vec<(String, String)> = self
            .redis
            .call("consumer_read", bound, |mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(Error::from)
            })
            .await?;
        let (directory, skipped) = Directory::from_records(&records);
        for why in skipped {
            if logged.insert(why.clone()) {
                log::warn!("redis consumers: skipping {why}");
            }
        }
        metrics::consumers("redis", directory.len());
        self.stored.replace(directory);
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for ConsumerSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut logged = HashSet::new();
        let (mut seen, mut polls, mut failing) = (None, 0u32, false);
        loop {
            let snapshot = self.current.load();
            let every = snapshot.config().identity.poll_interval;
            let in_use = !snapshot.config().auth.is_empty();
            drop(snapshot);
            if in_use {
                let bound = every.max(Duration::from_millis(200));
                let result = match self.version(bound).await {
                    Ok(v) if seen == Some(v) && polls % FULL_READ_EVERY != 0 => Ok(()),
                    Ok(v) => self.read_all(bound, &mut logged).await.map(|()| {
                        seen = Some(v);
                    }),
                    Err(e) => Err(e),
                };
                polls = polls.wrapping_add(1);
                match result {
                    Ok(()) if std::mem::take(&mut failing) => {
                        log::info!("redis consumers: reading again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        metrics::CONSUMER_SYNC_FAILURES.inc();
                        if !std::mem::replace(&mut failing, true) {
                            log::warn!(
                                "redis consumers: read failed ({e}); keeping the last good set"
                            );
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_stored_with_key_digests_only() {
        let record: ConsumerConfig = serde_json::from_value(
            serde_json::json!({"groups": ["gold"], "api_keys": ["plain-key-0123456789"]}),
        )
        .unwrap();
        let ready = prepare("acme", record).unwrap();
        let digest = crate::identity::digest(b"plain-key-0123456789");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ready.api_keys, [format!("sha256:{hex}")]);
        let json = serde_json::to_string(&ready).unwrap();
        assert!(!json.contains("plain-key"), "{json}");
        let (dir, skipped) = Directory::from_records(&[
            ("acme".into(), json),
            ("broken".into(), "{not json".into()),
            ("bad name!".into(), "{}".into()),
        ]);
        assert!(dir.find_key(&digest).is_some());
        assert_eq!(dir.len(), 1);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        let short: ConsumerConfig =
            serde_json::from_value(serde_json::json!({"api_keys": ["short"]})).unwrap();
        assert!(prepare("acme", short).is_err());
        assert!(prepare("bad name", ConsumerConfig::default()).is_err());
    }
}
