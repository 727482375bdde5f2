//! One registered instance as stored in its hash: `addr` (required), `weight`, `zone`,
//! `version`, `draining` and `meta.*` fields. Parsing is strict about what routing needs
//! (address, weight) and lenient about the rest, so a registrar written in any language with a
//! stray field never knocks an instance out.

use crate::config::MAX_WEIGHT;
use crate::upstream::Registration;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Parses an instance hash. `addr` must be `IP:PORT` (registrars resolve names: the gateway
/// never blocks on DNS for a registry entry); weight defaults to 1.
pub fn parse(
    id: &str,
    heartbeat_ms: f64,
    fields: &[(String, String)],
) -> Result<Registration, String> {
    let mut addr = None;
    let mut reg = Registration {
        id: id.to_string(),
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        weight: 1,
        draining: false,
        heartbeat_ms,
        zone: None,
        version: None,
        meta: BTreeMap::new(),
    };
    for (name, value) in fields {
        match name.as_str() {
            "addr" => {
                addr = Some(
                    value
                        .trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| format!("instance {id}: addr {value:?} is not IP:PORT"))?,
                )
            }
            "weight" => {
                reg.weight = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        format!("instance {id}: weight {value:?} is not in 1..={MAX_WEIGHT}")
                    })?
            }
            "draining" => reg.draining = matches!(value.trim(), "1" | "true"),
            "zone" => reg.zone = Some(value.clone()),
            "version" => reg.version = Some(value.clone()),
            other => {
                if let Some(key) = other.strip_prefix("meta.") {
                    reg.meta.insert(key.to_string(), value.clone());
                }
            }
        }
    }
    reg.addr = addr.ok_or_else(|| format!("instance {id}: no addr field"))?;
    Ok(reg)
}

/// The hash fields describing this instance (what a registrar writes).
pub fn fields(reg: &Registration) -> Vec<(String, String)> {
    let mut out = vec![
        ("addr".to_string(), reg.addr.to_string()),
        ("weight".to_string(), reg.weight.to_string()),
    ];
    if reg.draining {
        out.push(("draining".into(), "1".into()));
    }
    if let Some(z) = &reg.zone {
        out.push(("zone".into(), z.clone()));
    }
    if let Some(v) = &reg.version {
        out.push(("version".into(), v.clone()));
    }
    for (k, v) in &reg.meta {
        out.push((format!("meta.{k}"), v.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_full_hash_parses_and_round_trips() {
        let fields = f(&[
            ("addr", "10.0.0.7:8080"),
            ("weight", "3"),
            ("zone", "a"),
            ("draining", "1"),
            ("meta.git", "abc"),
            ("unknown", "ignored"),
        ]);
        let r = parse("i1", 5.0, &fields).unwrap();
        assert_eq!(r.addr, "10.0.0.7:8080".parse().unwrap());
        assert_eq!((r.weight, r.draining), (3, true));
        assert_eq!(r.meta.get("git").map(String::as_str), Some("abc"));
        let again = parse("i1", 5.0, &super::fields(&r)).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn missing_or_bad_addr_and_weight_are_rejected() {
        assert!(parse("i", 0.0, &f(&[("weight", "1")])).is_err());
        assert!(parse("i", 0.0, &f(&[("addr", "host:80")])).is_err());
        assert!(parse("i", 0.0, &f(&[("addr", "1.2.3.4:1"), ("weight", "0")])).is_err());
        let ok = parse("i", 0.0, &f(&[("addr", "[::1]:80")])).unwrap();
        assert_eq!(ok.weight, 1);
    }
}
