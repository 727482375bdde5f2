//! Registrar endpoints of the admin API: add, remove and drain registry instances of a
//! `discovery: redis` service. They write the public protocol like any registrar, so every
//! gateway replica sees the change (pub/sub first, the next poll at the latest).
//!
//! An instance added here is pinned (heartbeat score `+inf`, it never expires) unless the body
//! gives a `ttl`, in which case the caller must keep re-posting it within that time.

use super::{error, redis_unavailable};
use crate::config::{Discovery, MAX_WEIGHT};
use crate::gateway::Gateway;
use crate::registry::{store, Keys};
use crate::upstream::Registration;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Body of `POST /admin/services/{svc}/instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInstance {
    addr: SocketAddr,
    #[serde(default)]
    id: Option<String>,
    #[serde(default = "one")]
    weight: usize,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    /// Expire unless re-posted within this time; absent = pinned.
    #[serde(default)]
    ttl: Option<String>,
}

fn one() -> usize {
    1
}

/// A registrar operation requested through the admin API.
pub enum Operation<'a> {
    Add(&'a [u8]),
    Remove(&'a str),
    Drain(&'a str),
}

/// Runs `op` on `service`'s registry entries.
pub async fn handle(gateway: &Gateway, service: &str, op: Operation<'_>) -> (StatusCode, Value) {
    let (Some(redis), Some(link)) = (gateway.redis(), gateway.admin_redis()) else {
        return error(
            StatusCode::CONFLICT,
            "no_registry",
            "no redis section is configured".into(),
        );
    };
    let snapshot = gateway.snapshot();
    match snapshot.services().get(service) {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no service {service:?}"),
            )
        }
        Some(u) if u.config().discovery != Discovery::Redis => {
            return error(
                StatusCode::CONFLICT,
                "not_discovered",
                format!("service {service:?} does not use discovery: redis"),
            )
        }
        Some(_) => {}
    }
    let timeout = snapshot.config().registry.timeout;
    let keys = Keys::new(&redis.prefix);
    match op {
        Operation::Add(body) => {
            let req: NewInstance = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            };
            if !(1..=MAX_WEIGHT).contains(&req.weight) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("weight must be in 1..={MAX_WEIGHT}"),
                );
            }
            let heartbeat_ms = match req.ttl.as_deref().map(humantime::parse_duration) {
                None => f64::INFINITY,
                Some(Ok(_)) => {
                    let time = link.call("time", timeout, |mut conn| async move {
                        store::server_time_ms(&mut conn).await
                    });
                    match time.await {
                        Ok(t) => t,
                        Err(e) => return redis_unavailable(e),
                    }
                }
                Some(Err(e)) => {
                    return error(StatusCode::BAD_REQUEST, "bad_request", format!("ttl: {e}"))
                }
            };
            let reg = Registration {
                id: req.id.unwrap_or_else(|| req.addr.to_string()),
                addr: req.addr,
                weight: req.weight,
                draining: false,
                heartbeat_ms,
                zone: req.zone,
                version: req.version,
                meta: req.meta,
            };
            let (keys, reg) = (&keys, &reg);
            let register = link.call("register", timeout, |mut conn| async move {
                store::register(&mut conn, keys, service, reg).await
            });
            match register.await {
                Ok(()) => (
                    StatusCode::CREATED,
                    json!({"service": service, "id": reg.id, "addr": reg.addr.to_string(),
                           "weight": reg.weight, "pinned": heartbeat_ms.is_infinite()}),
                ),
                Err(e) => redis_unavailable(e),
            }
        }
        Operation::Remove(id) => {
            let keys = &keys;
            let done = link
                .call("deregister", timeout, |mut conn| async move {
                    store::deregister(&mut conn, keys, service, id).await
                })
                .await;
            found(
                done,
                id,
                json!({"service": service, "id": id, "removed": true}),
            )
        }
        Operation::Drain(id) => {
            let keys = &keys;
            let done = link
                .call("drain", timeout, |mut conn| async move {
                    store::drain(&mut conn, keys, service, id).await
                })
                .await;
            found(
                done,
                id,
                json!({"service": service, "id": id, "draining": true}),
            )
        }
    }
}

/// 200 with `body` when the instance existed, 404 when it did not, 503 when Redis failed.
fn found(result: Result<bool, store::StoreError>, id: &str, body: Value) -> (StatusCode, Value) {
    match result {
        Ok(true) => (StatusCode::OK, body),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no instance {id:?}"),
        ),
        Err(e) => redis_unavailable(e),
    }
}
