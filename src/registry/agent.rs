//! `portico register`: the registrar side of the protocol for services that cannot speak it
//! themselves (a sidecar or a wrapper script). Registers, heartbeats every `ttl / 3`,
//! re-registers when Redis lost the entry, and deregisters on SIGTERM or SIGINT. Redis being
//! down is retried, never fatal: the instance appears once Redis is back.

use super::keys::Keys;
use super::store::{self, StoreError};
use crate::upstream::Registration;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// What to register.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub redis_url: String,
    pub prefix: String,
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
    let keys = Keys::new(&opts.prefix);
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
    let mut conn: Option<MultiplexedConnection> = None;
    let mut registered = false;
    loop {
        match beat(&opts, &keys, &mut reg, &mut conn, registered).await {
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
                conn = None;
                registered = false;
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let conn = match conn {
        Some(c) => c,
        None => store::connect(&opts.redis_url, CALL_TIMEOUT).await?,
    };
    let mut conn = conn;
    let removed = store::bounded(
        "deregister",
        CALL_TIMEOUT,
        store::deregister(&mut conn, &keys, &opts.service, &reg.id),
    )
    .await?;
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
    opts: &AgentOptions,
    keys: &Keys,
    reg: &mut Registration,
    conn: &mut Option<MultiplexedConnection>,
    registered: bool,
) -> Result<(), StoreError> {
    if conn.is_none() {
        *conn = Some(store::connect(&opts.redis_url, CALL_TIMEOUT).await?);
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connection set above");
    };
    reg.heartbeat_ms = store::bounded("time", CALL_TIMEOUT, store::server_time_ms(c)).await?;
    if registered {
        let kept = store::bounded(
            "heartbeat",
            CALL_TIMEOUT,
            store::heartbeat(c, keys, &opts.service, &reg.id, reg.heartbeat_ms),
        )
        .await?;
        if kept {
            return Ok(());
        }
        log::warn!(
            "registration of {} was gone from Redis; registering again",
            reg.id
        );
    }
    store::bounded(
        "register",
        CALL_TIMEOUT,
        store::register(c, keys, &opts.service, reg),
    )
    .await
}
