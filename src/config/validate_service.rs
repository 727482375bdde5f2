//! Checks of one `services` entry: instances, balancing, health checks, breakers, timeouts and
//! upstream TLS.

use super::error::Problem;
use super::instance::parse_instance;
use super::types::*;
use super::validate::{is_label_safe, Locate};
use std::collections::HashSet;
use std::time::Duration;

pub(super) fn service(name: &str, s: &ServiceConfig, p: &str, at: Locate, errs: &mut Vec<Problem>) {
    if !is_label_safe(name) {
        errs.push(at(p, "service names must use only [A-Za-z0-9_.-]".into()));
    }
    if s.instances.is_empty() && s.discovery == Discovery::Static {
        errs.push(at(
            &format!("{p}.instances"),
            "at least one instance is required (or discovery: redis)".into(),
        ));
    }
    if s.heartbeat_ttl < Duration::from_millis(100) {
        errs.push(at(
            &format!("{p}.heartbeat_ttl"),
            "must be at least 100ms".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, entry) in s.instances.iter().enumerate() {
        match parse_instance(entry) {
            Ok(spec) if !seen.insert(spec.addr) => {
                errs.push(at(
                    &format!("{p}.instances[{i}]"),
                    format!("duplicate instance {}", spec.addr),
                ));
            }
            Ok(_) => {}
            Err(e) => errs.push(at(&format!("{p}.instances[{i}]"), e)),
        }
    }
    match (s.balance, &s.hash_key) {
        (Balance::ConsistentHash, None) => {
            errs.push(at(
                &format!("{p}.hash_key"),
                "consistent_hash needs a hash_key".into(),
            ));
        }
        (Balance::ConsistentHash, Some(k)) if crate::upstream::HashKey::parse(k).is_none() => {
            errs.push(at(
                &format!("{p}.hash_key"),
                format!("bad hash_key {k:?}: expected client_ip, header:NAME, cookie:NAME or path"),
            ));
        }
        (b, Some(_)) if b != Balance::ConsistentHash => {
            errs.push(at(
                &format!("{p}.hash_key"),
                "hash_key is only used with balance: consistent_hash".into(),
            ));
        }
        _ => {}
    }
    for (field, d) in [
        ("connect_timeout", s.connect_timeout),
        ("read_timeout", s.read_timeout),
        ("write_timeout", s.write_timeout),
    ] {
        if d.is_zero() {
            errs.push(at(
                &format!("{p}.{field}"),
                "must be greater than zero".into(),
            ));
        }
    }
    let cb = &s.circuit_breaker;
    let cp = format!("{p}.circuit_breaker");
    if cb.consecutive_failures == 0 || cb.min_requests == 0 || cb.half_open_probes == 0 {
        errs.push(at(
            &cp,
            "consecutive_failures, min_requests and half_open_probes must be at least 1".into(),
        ));
    }
    if !(cb.failure_ratio > 0.0 && cb.failure_ratio <= 1.0) {
        errs.push(at(
            &format!("{cp}.failure_ratio"),
            "must be in (0, 1]".into(),
        ));
    }
    if !(0.0..=1.0).contains(&cb.max_ejected_ratio) {
        errs.push(at(
            &format!("{cp}.max_ejected_ratio"),
            "must be in [0, 1]".into(),
        ));
    }
    if cb.window.as_millis() < 10 || cb.open_for.is_zero() || cb.max_open_for < cb.open_for {
        errs.push(at(
            &cp,
            "window must be at least 10ms, open_for above zero and max_open_for not below open_for"
                .into(),
        ));
    }
    if let Some(hc) = &s.health_check {
        let hp = format!("{p}.health_check");
        if hc.kind == HealthCheckKind::Http && !hc.path.starts_with('/') {
            errs.push(at(&format!("{hp}.path"), "must start with '/'".into()));
        }
        if hc.expect.is_empty() || hc.expect.iter().any(|c| !(100..=599).contains(c)) {
            errs.push(at(
                &format!("{hp}.expect"),
                "must list status codes between 100 and 599".into(),
            ));
        }
        if hc.interval.as_millis() < 100 {
            errs.push(at(
                &format!("{hp}.interval"),
                "must be at least 100ms".into(),
            ));
        }
        if hc.timeout.is_zero() || hc.timeout > hc.interval {
            errs.push(at(
                &format!("{hp}.timeout"),
                "must be greater than zero and not above interval".into(),
            ));
        }
        if hc.rise == 0 || hc.fall == 0 {
            errs.push(at(&hp, "rise and fall must be at least 1".into()));
        }
    }
}
