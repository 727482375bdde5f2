//! The membership list in Redis, a public protocol like the registry's:
//! `{prefix}gateways:{members}` (sorted set, member = gateway id, score = last heartbeat in
//! Unix ms on the Redis clock) and `{prefix}gateways:{members}:info` (hash, id → JSON with the
//! gateway's version, start time, host and pid). Both keys carry the same hash tag, so the
//! heartbeat script runs on one Redis Cluster shard.

use crate::redis_client::Error;
use redis::aio::ConnectionLike;
use std::collections::HashMap;

/// Gateways silent for this many TTLs are removed from the list (their info with them).
const FORGET_AFTER_TTLS: u64 = 10;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    members: String,
    info: String,
}

impl Keys {
    /// Keys under `prefix` (default `portico:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            members: format!("{prefix}gateways:{{members}}"),
            info: format!("{prefix}gateways:{{members}}:info"),
        }
    }
}

/// One heartbeat: sets this gateway's score to the Redis clock, refreshes its info, forgets
/// long-silent gateways, and returns how many heartbeated within `ttl_ms` (this one included).
static HEARTBEAT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl * tonumber(ARGV[4])))
for _, id in ipairs(gone) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return redis.call('ZCOUNT', KEYS[1], now - ttl, '+inf')
",
    )
});

/// Heartbeats `id` with `info`; returns the live gateway count.
pub async fn heartbeat<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    id: &str,
    info: &str,
    ttl_ms: u64,
) -> Result<u32, Error> {
    Ok(HEARTBEAT
        .key(&keys.members)
        .key(&keys.info)
        .arg(id)
        .arg(info)
        .arg(ttl_ms)
        .arg(FORGET_AFTER_TTLS)
        .invoke_async(conn)
        .await?)
}

/// Removes `id` (a gateway shutting down), so the others count one fewer at once.
pub async fn leave<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
    id: &str,
) -> Result<(), Error> {
    let _: (u64, u64) = redis::pipe()
        .atomic()
        .zrem(&keys.members, id)
        .hdel(&keys.info, id)
        .query_async(conn)
        .await?;
    Ok(())
}

/// One gateway of the list as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    /// Milliseconds since its last heartbeat, on the Redis clock.
    pub silent_ms: u64,
    /// Its info JSON as written (absent if the hash lost it).
    pub info: Option<String>,
}

/// Every gateway still in the list, the most recently seen first.
pub async fn list<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<Member>, Error> {
    type Reply = ((u64, u64), Vec<(String, f64)>, HashMap<String, String>);
    let ((secs, micros), members, mut infos): Reply = redis::pipe()
        .cmd("TIME")
        .zrevrange_withscores(&keys.members, 0, -1)
        .hgetall(&keys.info)
        .query_async(conn)
        .await?;
    let now_ms = secs * 1000 + micros / 1000;
    Ok(members
        .into_iter()
        .map(|(id, score)| Member {
            silent_ms: now_ms.saturating_sub(score as u64),
            info: infos.remove(&id),
            id,
        })
        .collect())
}
