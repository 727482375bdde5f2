//! Registry reads and writes against Redis. Shared by the watcher (reads, janitor), the admin
//! API and `portico register` (writes). Every call is bounded by a timeout and timed into
//! `portico_redis_command_duration_seconds{client="registry"}`; the caller decides what a
//! failure means (the watcher keeps its last known good set).

use super::keys::Keys;
use super::record;
use crate::upstream::Registration;
use redis::aio::ConnectionLike;
use redis::Value;
use std::future::Future;
use std::time::Duration;

/// Metric label of the registry's Redis traffic.
pub const CLIENT: &str = "registry";

/// A failed registry call.
pub use crate::redis_client::Error as StoreError;

/// Runs `call` within `timeout`, recording it as registry traffic.
pub async fn bounded<T>(
    command: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    crate::redis_client::bounded(CLIENT, command, timeout, call).await
}

/// One service's sorted set, as read: `(id, heartbeat_ms, hash fields)`; empty fields = the
/// hash is missing.
pub type Entries = Vec<(String, f64, Vec<(String, String)>)>;

/// Everything one registry pass reads.
#[derive(Debug)]
pub struct Read {
    /// The Redis server's clock, Unix ms: the one clock every replica compares heartbeats to.
    pub now_ms: f64,
    /// The epoch token, if present.
    pub epoch: Option<String>,
    /// Per requested service, in request order; a failed read keeps that service as it was.
    pub services: Vec<Result<Entries, StoreError>>,
}

/// Reads the server time, the epoch token and every listed service's registrations.
///
/// Each service is read on its own (its sorted set, then its hashes: two round trips), all
/// services and the clock concurrently on the one multiplexed connection. A pipeline never
/// spans two services: their keys live in different Redis Cluster hash slots (`{SERVICE}`),
/// and a cluster refuses a cross-slot pipeline.
pub async fn read<C: ConnectionLike + Send + Clone>(
    conn: &C,
    keys: &Keys,
    services: &[&str],
) -> Result<Read, StoreError> {
    let clock = async {
        let mut conn = conn.clone();
        let ((secs, micros), epoch): ((u64, u64), Option<String>) = redis::pipe()
            .cmd("TIME")
            .get(keys.epoch())
            .query_async(&mut conn)
            .await?;
        Ok::<_, StoreError>((secs as f64 * 1000.0 + micros as f64 / 1000.0, epoch))
    };
    let each = futures_util::future::join_all(
        services
            .iter()
            .map(|service| read_service(conn.clone(), keys, service)),
    );
    let (clock, services) = futures_util::future::join(clock, each).await;
    let (now_ms, epoch) = clock?;
    Ok(Read {
        now_ms,
        epoch,
        services,
    })
}

/// One service's registrations: its sorted set, then the hashes of its members.
async fn read_service<C: ConnectionLike + Send>(
    mut conn: C,
    keys: &Keys,
    service: &str,
) -> Result<Entries, StoreError> {
    let set: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys.instances(service))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await?;
    if set.is_empty() {
        return Ok(Vec::new());
    }
    let mut hashes = redis::pipe();
    for (id, _) in &set {
        hashes.hgetall(keys.instance(service, id));
    }
    let fields: Vec<Vec<(String, String)>> = hashes.query_async(&mut conn).await?;
    if fields.len() != set.len() {
        return Err(StoreError::Reply(format!(
            "{} hashes for {} instances",
            fields.len(),
            set.len()
        )));
    }
    Ok(set
        .into_iter()
        .zip(fields)
        .map(|((id, score), fields)| (id, score, fields))
        .collect())
}

/// Writes a new epoch token unless one exists, and returns the token in force.
pub async fn claim_epoch<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    token: &str,
) -> Result<Option<String>, StoreError> {
    let (_, current): (Value, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg(keys.epoch())
        .arg(token)
        .arg("NX")
        .get(keys.epoch())
        .query_async(conn)
        .await?;
    Ok(current)
}

/// Removes registrations of `service` whose heartbeat is older than `cutoff_ms` (member and
/// hash, atomically, so a heartbeat racing the janitor is never half-removed). Returns how
/// many were removed.
pub async fn remove_expired<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
    cutoff_ms: f64,
) -> Result<u64, StoreError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[2] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids",
        )
    });
    Ok(SCRIPT
        .key(keys.instances(service))
        .arg(cutoff_ms as i64)
        .arg(keys.instance_prefix(service))
        .invoke_async(conn)
        .await?)
}

/// Takes the janitor lock for `period` if no replica holds it.
pub async fn try_janitor_lock<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    owner: &str,
    period: Duration,
) -> Result<bool, StoreError> {
    let reply: Option<String> = redis::cmd("SET")
        .arg(keys.janitor_lock())
        .arg(owner)
        .arg("NX")
        .arg("PX")
        .arg(period.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    Ok(reply.is_some())
}

/// The Redis server's clock in Unix ms.
pub async fn server_time_ms<C: ConnectionLike + Send>(conn: &mut C) -> Result<f64, StoreError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs as f64 * 1000.0 + micros as f64 / 1000.0)
}

/// Registers (or re-registers) an instance: replaces its hash and sets its heartbeat score in
/// one MULTI, then publishes the service name (a separate command: the channel is not in the
/// service's cluster hash slot).
pub async fn register<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
    reg: &Registration,
) -> Result<(), StoreError> {
    let hash = keys.instance(service, &reg.id);
    let _: Value = redis::pipe()
        .atomic()
        .del(&hash)
        .hset_multiple(&hash, &record::fields(reg))
        .zadd(keys.instances(service), &reg.id, score(reg.heartbeat_ms))
        .query_async(conn)
        .await?;
    announce(conn, keys, service).await
}

/// Refreshes a heartbeat. Returns false when the member was not in the set (Redis lost its
/// data, or the janitor expired it): the caller then registers again.
pub async fn heartbeat<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
    id: &str,
    now_ms: f64,
) -> Result<bool, StoreError> {
    let (added, hash_exists): (u64, bool) = redis::pipe()
        .zadd(keys.instances(service), id, score(now_ms))
        .exists(keys.instance(service, id))
        .query_async(conn)
        .await?;
    Ok(added == 0 && hash_exists)
}

/// Removes an instance and announces it. Returns whether it existed.
pub async fn deregister<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let (removed, _): (u64, u64) = redis::pipe()
        .atomic()
        .zrem(keys.instances(service), id)
        .del(keys.instance(service, id))
        .query_async(conn)
        .await?;
    announce(conn, keys, service).await?;
    Ok(removed > 0)
}

/// Marks an instance draining and announces it. Returns false if it is not registered.
pub async fn drain<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let hash = keys.instance(service, id);
    let exists: bool = redis::cmd("EXISTS").arg(&hash).query_async(conn).await?;
    if !exists {
        return Ok(false);
    }
    let _: Value = redis::cmd("HSET")
        .arg(&hash)
        .arg("draining")
        .arg("1")
        .query_async(conn)
        .await?;
    announce(conn, keys, service).await?;
    Ok(true)
}

/// Tells watchers that `service` changed. On a Redis Cluster a PUBLISH reaches subscribers on
/// every node.
async fn announce<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    service: &str,
) -> Result<(), StoreError> {
    let _: Value = redis::cmd("PUBLISH")
        .arg(keys.events())
        .arg(service)
        .query_async(conn)
        .await?;
    Ok(())
}

/// A sorted-set score: Unix ms, or `+inf` for a pinned registration.
fn score(ms: f64) -> String {
    if ms.is_infinite() {
        "+inf".into()
    } else {
        format!("{}", ms.round() as i64)
    }
}
