//! Consumer endpoints of the admin API: list the consumers in force, and add or remove
//! consumers kept in Redis (`consumer_store`), which every gateway replica picks up within
//! `identity.poll_interval`. Keys given in plain text are stored as digests; a key or a
//! password hash is never shown.

use super::{error, redis_unavailable};
use crate::config::ConsumerConfig;
use crate::consumer_store::{self, Keys};
use crate::gateway::Gateway;
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Bound on one consumer write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// An operation requested through the admin API.
pub enum Operation<'a> {
    Put(&'a [u8]),
    Remove,
}

/// `GET /admin/consumers`: names and groups, by source.
pub fn list(gateway: &Gateway) -> (StatusCode, Value) {
    let snapshot = gateway.snapshot();
    let configured: Vec<Value> = snapshot
        .config()
        .consumers
        .iter()
        .map(|(name, c)| json!({"name": name, "groups": c.groups, "source": "config"}))
        .collect();
    let stored = gateway.stored_consumers().current();
    let from_redis: Vec<Value> = stored
        .summary()
        .into_iter()
        .map(|(name, groups)| json!({"name": name, "groups": groups, "source": "redis"}))
        .collect();
    (
        StatusCode::OK,
        Value::Array(configured.into_iter().chain(from_redis).collect()),
    )
}

/// Runs `op` on the Redis consumer `name`.
pub async fn handle(gateway: &Gateway, name: &str, op: Operation<'_>) -> (StatusCode, Value) {
    let (Some(redis), Some(link)) = (gateway.redis(), gateway.admin_redis()) else {
        return error(
            StatusCode::CONFLICT,
            "no_redis",
            "consumers are kept in Redis, and no redis section is configured".into(),
        );
    };
    let keys = Keys::new(&redis.prefix);
    match op {
        Operation::Put(body) => {
            let record: ConsumerConfig = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            };
            let record = match consumer_store::prepare(name, record) {
                Ok(r) => r,
                Err(errors) => {
                    return error(StatusCode::BAD_REQUEST, "bad_request", errors.join("; "))
                }
            };
            match consumer_store::put(link, &keys, name, &record, WRITE_TIMEOUT).await {
                Ok(()) => (
                    StatusCode::OK,
                    json!({"consumer": name, "groups": record.groups,
                           "api_keys": record.api_keys.len(), "basic": record.basic.is_some()}),
                ),
                Err(e) => redis_unavailable(e),
            }
        }
        Operation::Remove => match consumer_store::remove(link, &keys, name, WRITE_TIMEOUT).await {
            Ok(true) => (StatusCode::OK, json!({"consumer": name, "removed": true})),
            Ok(false) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no consumer {name:?} in Redis"),
            ),
            Err(e) => redis_unavailable(e),
        },
    }
}
