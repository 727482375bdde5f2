//! Gateways that know each other. Every gateway with a `redis` section heartbeats itself into a
//! membership list in Redis ([`store`]) every quarter of `redis.gateway_ttl`, and learns from
//! the same call how many gateways heartbeated within the TTL. That count divides the local
//! fallback share of Redis-stored rate limits (`limit / live gateways`, [`Peers`]), is exported
//! as `portico_gateways_live`, and `/admin/gateways` lists the members.
//!
//! While Redis is away the last count stays in force: the gateways that were there are most
//! likely still there, and guessing 1 would let each admit the whole limit. A gateway that
//! stops cleanly leaves the list at once; one that dies drops out after its TTL.

pub mod store;

use crate::ratelimit::peers::Peers;
use crate::redis_client::{Error, Redis, Topology};
use crate::telemetry::redis::GATEWAYS_LIVE;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::Keys;

/// Metric label of the membership's Redis traffic.
pub const CLIENT: &str = "membership";

/// This gateway's entry in the membership list.
pub struct Membership {
    id: String,
    /// The JSON stored beside the id.
    info: String,
    keys: Keys,
    ttl: Duration,
    redis: Redis,
    peers: Arc<Peers>,
}

impl Membership {
    /// This gateway's membership through `topology`; its count goes to `peers`.
    pub fn new(topology: Arc<Topology>, peers: Arc<Peers>) -> Self {
        let config = topology.config();
        let host = crate::telemetry::host_name();
        let pid = std::process::id();
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = crate::telemetry::instance_id().to_string();
        let info = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": started,
            "host": host,
            "pid": pid,
        })
        .to_string();
        GATEWAYS_LIVE.set(i64::from(peers.live()));
        Self {
            id,
            info,
            keys: Keys::new(&config.prefix),
            ttl: config.gateway_ttl,
            // A heartbeat may wait as long as a registry call; it is never on a request's path.
            redis: Redis::new(CLIENT, topology.clone(), config.connect_timeout),
            peers,
        }
    }

    /// This gateway's id in the list.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long a silent gateway still counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// One heartbeat; on success the live count is current.
    pub async fn beat(&self) -> Result<u32, Error> {
        let ttl_ms = self.ttl.as_millis() as u64;
        let live = self
            .redis
            .call("gateway_heartbeat", self.bound(), |mut conn| async move {
                store::heartbeat(&mut conn, &self.keys, &self.id, &self.info, ttl_ms).await
            })
            .await?;
        self.peers.set_live(live);
        GATEWAYS_LIVE.set(i64::from(self.peers.live()));
        Ok(live)
    }

    /// The list as `/admin/gateways` shows it.
    pub async fn to_json(&self) -> Result<Value, Error> {
        let members = self
            .redis
            .call("gateway_list", self.bound(), |mut conn| async move {
                store::list(&mut conn, &self.keys).await
            })
            .await?;
        let ttl_ms = self.ttl.as_millis() as u64;
        let gateways: Vec<Value> = members
            .into_iter()
            .map(|m| {
                let mut entry = m
                    .info
                    .as_deref()
                    .and_then(|i| serde_json::from_str::<Value>(i).ok())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                entry["id"] = json!(m.id);
                entry["live"] = json!(m.silent_ms <= ttl_ms);
                entry["last_seen_ms_ago"] = json!(m.silent_ms);
                entry["self"] = json!(m.id == self.id);
                entry
            })
            .collect();
        let live = gateways.iter().filter(|g| g["live"] == true).count();
        Ok(json!({
            "self": self.id,
            "live": live,
            "ttl_ms": ttl_ms,
            "gateways": gateways,
        }))
    }

    fn bound(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(100))
    }
}

/// The background service heartbeating a [`Membership`].
pub struct Heartbeat(pub Arc<Membership>);

#[async_trait]
impl BackgroundService for Heartbeat {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let membership = &self.0;
        let every = (membership.ttl / 4).max(Duration::from_millis(50));
        let mut failing = false;
        loop {
            match membership.beat().await {
                Ok(live) if failing => {
                    failing = false;
                    log::info!("membership: heartbeating again; {live} gateway(s) live");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    log::warn!(
                        "membership: heartbeat failed ({e}); keeping the last count ({})",
                        membership.peers.live()
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        let leave = membership
            .redis
            .call("gateway_leave", membership.bound(), |mut conn| async move {
                store::leave(&mut conn, &membership.keys, &membership.id).await
            })
            .await;
        if let Err(e) = leave {
            log::debug!("membership: could not leave the list ({e}); it expires after its TTL");
        }
    }
}
