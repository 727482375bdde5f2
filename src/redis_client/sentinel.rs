//! Following a Sentinel failover. The redis crate resolves the primary once per dial and keeps
//! talking to that address; after a failover the old primary may stay writable for seconds
//! until the sentinels demote it, and writes it takes then are lost. So one task per process
//! listens for the sentinels' `+switch-master` announcement and, as a safety net, asks them for
//! the primary's address every [`CHECK_EVERY`]; when it changes, the topology's generation
//! moves and every link dials the new primary. Links also redial on their own after an I/O
//! error or a `READONLY` reply, so a missed announcement costs time, not correctness.

use super::topology::Topology;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often the sentinels are asked for the primary's address.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Pause after the sentinels could not be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The background service following failovers of a `sentinel` topology.
pub struct SentinelWatch(pub Arc<Topology>);

#[async_trait::async_trait]
impl BackgroundService for SentinelWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = follow(self.0.clone()) => {}
        }
    }
}

/// Follows the primary of `topology` until dropped; returns at once for other topologies.
pub async fn follow(topology: Arc<Topology>) {
    if topology.sentinels().is_none() {
        return;
    }
    let mut known: Option<String> = None;
    loop {
        if let Err(e) = session(&topology, &mut known).await {
            log::debug!("redis sentinel watch: {e}; retrying");
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One subscription to a sentinel, until it fails.
async fn session(topology: &Topology, known: &mut Option<String>) -> Result<(), String> {
    let bound = topology.config().connect_timeout;
    let Some(sentinels) = topology.sentinels() else {
        return Ok(());
    };
    let (mut sentinels, master) = sentinels.map_err(|e| e.to_string())?;
    let client = tokio::time::timeout(bound, sentinels.async_get_sentinel_client())
        .await
        .map_err(|_| "no sentinel answered".to_string())?
        .map_err(|e| e.to_string())?;
    let mut pubsub = tokio::time::timeout(bound, client.get_async_pubsub())
        .await
        .map_err(|_| "sentinel subscription timed out".to_string())?
        .map_err(|e| e.to_string())?;
    pubsub
        .subscribe("+switch-master")
        .await
        .map_err(|e| e.to_string())?;
    let mut asker = tokio::time::timeout(bound, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "sentinel connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut messages = pubsub.on_message();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err("sentinel closed the subscription".into());
                };
                // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                let payload: String = message.get_payload().unwrap_or_default();
                let mut words = payload.split(' ');
                if words.next() == Some(master.as_str()) {
                    let primary = words.skip(2).collect::<Vec<_>>().join(":");
                    switched(topology, known, primary, "announced");
                }
            }
            _ = tick.tick() => {
                let mut ask = redis::cmd("SENTINEL");
                ask.arg("get-master-addr-by-name").arg(&master);
                let ask = ask.query_async::<Option<(String, String)>>(&mut asker);
                match tokio::time::timeout(bound, ask).await {
                    Ok(Ok(Some((host, port)))) => {
                        switched(topology, known, format!("{host}:{port}"), "checked");
                    }
                    Ok(Ok(None)) => return Err(format!("the sentinel does not know {master:?}")),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("the sentinel did not answer".into()),
                }
            }
        }
    }
}

/// Records the primary's address; a change (after the first sighting) moves the topology on.
fn switched(topology: &Topology, known: &mut Option<String>, primary: String, how: &str) {
    match known {
        Some(k) if *k == primary => {}
        Some(k) => {
            log::warn!("redis: the sentinels moved the primary from {k} to {primary} ({how}); reconnecting");
            crate::telemetry::redis::PRIMARY_SWITCHES.inc();
            topology.advance();
            *known = Some(primary);
        }
        None => *known = Some(primary),
    }
}
