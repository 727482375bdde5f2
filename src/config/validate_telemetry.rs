//! Checks of the observability sections: KPIs, business events, tracing, access log.

use super::error::Problem;
use super::types::*;
use super::validate::{closest, Locate, METHODS};
use std::collections::HashSet;

/// Appends every error of the `kpis`, `events`, `tracing` and `access_log` sections.
pub fn validate(config: &Config, at: Locate, errs: &mut Vec<Problem>) {
    let route_names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    let mut kpi_names = HashSet::new();
    for (i, k) in config.kpis.iter().enumerate() {
        let p = format!("kpis[{i}]");
        let name_ok = !k.name.is_empty()
            && k.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            errs.push(at(
                &format!("{p}.name"),
                "KPI names must use only [a-z0-9_]".into(),
            ));
        }
        if !kpi_names.insert(k.name.as_str()) {
            errs.push(at(
                &format!("{p}.name"),
                format!("duplicate KPI {:?}", k.name),
            ));
        }
        for (j, r) in k.routes.iter().enumerate() {
            if !route_names.contains(&r.as_str()) {
                let hint = closest(r, route_names.iter().copied())
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                errs.push(at(
                    &format!("{p}.routes[{j}]"),
                    format!("unknown route {r:?}{hint}"),
                ));
            }
        }
        for (j, m) in k.methods.iter().enumerate() {
            if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                errs.push(at(
                    &format!("{p}.methods[{j}]"),
                    format!("unknown method {m:?}"),
                ));
            }
        }
        match &k.status {
            Some(StatusMatch::Class(c))
                if !matches!(c.as_str(), "1xx" | "2xx" | "3xx" | "4xx" | "5xx") =>
            {
                errs.push(at(
                    &format!("{p}.status"),
                    format!("{c:?} is not a class like 2xx"),
                ))
            }
            Some(StatusMatch::Codes(codes)) if codes.iter().any(|c| !(100..=599).contains(c)) => {
                errs.push(at(
                    &format!("{p}.status"),
                    "status codes must be in 100..=599".into(),
                ))
            }
            _ => {}
        }
        for (field, h) in [
            ("request_header", &k.request_header),
            ("response_header", &k.response_header),
        ] {
            if let Some(h) = h {
                if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                    errs.push(at(
                        &format!("{p}.{field}.name"),
                        format!("bad header name {:?}", h.name),
                    ));
                }
            }
        }
        if k.max_series == 0 {
            errs.push(at(&format!("{p}.max_series"), "must be at least 1".into()));
        }
    }
    if let Some(e) = &config.events {
        if config.redis.is_none() {
            errs.push(at(
                "events",
                "events need a top-level `redis` section".into(),
            ));
        }
        for (i, name) in e.kpis.iter().enumerate() {
            if !kpi_names.contains(name.as_str()) {
                errs.push(at(
                    &format!("events.kpis[{i}]"),
                    format!("unknown KPI {name:?}"),
                ));
            }
        }
        if e.stream.is_empty() {
            errs.push(at("events.stream", "must not be empty".into()));
        }
        if e.maxlen == 0 || e.queue == 0 || !(1..=10_000).contains(&e.batch) {
            errs.push(at(
                "events",
                "maxlen and queue must be positive, batch between 1 and 10000".into(),
            ));
        }
    }
    if let Some(t) = &config.tracing {
        let ok = t
            .otlp_endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !ok {
            errs.push(at(
                "tracing.otlp_endpoint",
                format!("{:?} is not an http(s) URL", t.otlp_endpoint),
            ));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            errs.push(at("tracing.sample_ratio", "must be between 0 and 1".into()));
        }
    }
    if !(0.0..=1.0).contains(&config.access_log.sample) {
        errs.push(at("access_log.sample", "must be between 0 and 1".into()));
    }
}
