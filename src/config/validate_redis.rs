//! Checks of the Redis-backed sections: `redis`, `registry` and `rate_limits`.

use super::error::Problem;
use super::types::*;
use super::validate::{is_label_safe, Locate};
use std::time::Duration;

/// Largest `capacity × interval` in µs: the Redis script computes in doubles, exact to 2^53.
const MAX_WINDOW_US: u128 = 1 << 50;

pub(super) fn redis(config: &Config, at: Locate, errs: &mut Vec<Problem>) {
    if let Some(r) = &config.redis {
        if r.replicas == 0 {
            errs.push(at("redis.replicas", "must be at least 1".into()));
        }
        if let Err(e) = redis::Client::open(r.url.as_str()) {
            errs.push(at("redis.url", format!("bad Redis URL: {e}")));
        }
        for (field, d) in [
            ("command_timeout", r.command_timeout),
            ("connect_timeout", r.connect_timeout),
        ] {
            if d.is_zero() {
                errs.push(at(&format!("redis.{field}"), "must be positive".into()));
            }
        }
    }
    let reg = &config.registry;
    if reg.poll_interval < Duration::from_millis(50) || reg.poll_interval > Duration::from_secs(60)
    {
        errs.push(at(
            "registry.poll_interval",
            "must be between 50ms and 60s".into(),
        ));
    }
    if reg.timeout.is_zero() {
        errs.push(at("registry.timeout", "must be positive".into()));
    }
}

pub(super) fn rate_limit(
    name: &str,
    r: &RateLimitConfig,
    config: &Config,
    at: Locate,
    errs: &mut Vec<Problem>,
) {
    let p = format!("rate_limits.{name}");
    if !is_label_safe(name) {
        errs.push(at(&p, "rule names must use only [A-Za-z0-9_.-]".into()));
    }
    let key_ok = matches!(r.key.as_str(), "client_ip" | "route" | "global")
        || r.key
            .strip_prefix("header:")
            .is_some_and(|h| http::HeaderName::from_bytes(h.as_bytes()).is_ok());
    if !key_ok {
        errs.push(at(
            &format!("{p}.key"),
            format!(
                "unknown key {:?}: expected client_ip, header:NAME, route or global",
                r.key
            ),
        ));
    }
    if r.limit == 0 {
        errs.push(at(&format!("{p}.limit"), "must be at least 1".into()));
    }
    let per_us = r.per.as_micros();
    if per_us < u128::from(r.limit.max(1)) {
        errs.push(at(
            &format!("{p}.per"),
            "too short for the limit: at least 1µs per request".into(),
        ));
    }
    let capacity = u128::from(r.limit.max(1)) + u128::from(r.burst);
    if capacity * (per_us / u128::from(r.limit.max(1))).max(1) > MAX_WINDOW_US {
        errs.push(at(
            &p,
            "limit + burst at this rate spans more than ~35 years; use a smaller per or burst"
                .into(),
        ));
    }
    if r.store == LimitStore::Redis && config.redis.is_none() {
        errs.push(at(
            &format!("{p}.store"),
            "store: redis needs a top-level `redis` section".into(),
        ));
    }
    if r.max_keys < 1_000 {
        errs.push(at(&format!("{p}.max_keys"), "must be at least 1000".into()));
    }
}
