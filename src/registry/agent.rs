//! `portico register`: the registrar side of the protocol for services that cannot speak it
//! themselves (a sidecar or a wrapper script). Registers, heartbeats every `ttl / 3`,
//! re-registers when Redis lost the entry, and deregisters on SIGTERM or SIGINT. Redis being
//! down is retried, never fatal: the instance appears once Redis is back. Works on every
//! topology the gateway does (one node, cluster, sentinel; TLS), and follows a sentinel
//! failover like the gateway.

use super::keys::Keys;
use super::store::{self, StoreError};
use crate::redis_client::{Redis, Topology};
use crate::upstream::Registration;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// What to register.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Where Redis is; its `prefix` is the registry's key prefix.
    pub redis: Arc<Topology>,
    pub service: String,
    /// `HOST:PORT`; a host name is resolved once at start (the registry stores IP:PORT).
    pub addr: String,
    pub id: Option<String>,
    pub weight: usize,
    pub ttl: Duration,
    pub zone: Option<String>,
    pub version: Option<String>,
    pub meta: BTreeMap<String, String>,
}

/// Bound on each Redis call of the agent.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until SIGTERM or SIGINT, then deregisters.
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    let addr = tokio::net::lookup_host(&opts.addr)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} resolves to no address", opts.addr))?;
    let keys = Keys::new(&opts.redis.config().prefix);
    let redis = Redis::new(store::CLIENT, opts.redis.clone(), CALL_TIMEOUT);
    let follow = tokio::spawn(crate::redis_client::sentinel::follow(opts.redis.clone()));
    let mut reg = Registration {
        id: opts.id.clone().unwrap_or_else(|| addr.to_string()),
        addr,
        weight: opts.weight,
        draining: false,
        heartbeat_ms: 0.0,
        zone: opts.zone.clone(),
        version: opts.version.clone(),
        meta: opts.meta.clone(),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let every = (opts.ttl / 3).max(Duration::from_millis(100));
    let mut registered = false;
    loop {
        match beat(&redis, &opts, &keys, &mut reg, registered).await {
            Ok(()) => {
                if !registered {
                    log::info!(
                        "registered {} as {} in service {}",
                        reg.addr,
                        reg.id,
                        opts.service
                    );
                }
                registered = true;
            }
            Err(e) => {
                log::warn!("heartbeat failed, retrying in {every:?}: {e}");
                registered = false;
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let (keys, service, id) = (&keys, &opts.service, &reg.id);
    let removed = redis
        .call("deregister", CALL_TIMEOUT, |mut conn| async move {
            store::deregister(&mut conn, keys, service, id).await
        })
        .await;
    follow.abort();
    let removed = removed?;
    log::info!(
        "deregistered {} from service {} ({})",
        reg.id,
        opts.service,
        if removed {
            "removed"
        } else {
            "was not registered"
        }
    );
    Ok(())
}

/// One heartbeat, or a full registration when needed.
async fn beat(
    redis: &Redis,
    opts: &AgentOptions,
    keys: &Keys,
    reg: &mut Registration,
    registered: bool,
) -> Result<(), StoreError> {
    redis
        .call("heartbeat", CALL_TIMEOUT, |mut conn| async move {
            reg.heartbeat_ms = store::server_time_ms(&mut conn).await?;
            if registered {
                let kept =
                    store::heartbeat(&mut conn, keys, &opts.service, &reg.id, reg.heartbeat_ms)
                        .await?;
                if kept {
                    return Ok(());
                }
                log::warn!(
                    "registration of {} was gone from Redis; registering again",
                    reg.id
                );
            }
            store::register(&mut conn, keys, &opts.service, reg).await
        })
        .await
}
