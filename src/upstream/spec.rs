//! A service's section compiled: static instances parsed (host names kept for the resolver,
//! never looked up here), the consistent-hash key, the probe spec, and every check of the
//! section's values. Compiling has no effects: no DNS, no sockets, no metrics, so `portico validate`
//! and a rejected reload leave nothing behind.

use super::hash_key::HashKey;
use super::health::ProbeSpec;
use crate::config::{Balance, Discovery, HealthCheckKind, Problems, ServiceConfig, MAX_WEIGHT};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a static instance is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Ip(SocketAddr),
    /// A host name, resolved off the serving threads ([`super::Upstream::resolve_hosts`]).
    Host {
        name: String,
        port: u16,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ip(addr) => write!(f, "{addr}"),
            Target::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// One `instances` entry: `HOST:PORT` with optional ` weight=N` and ` zone=NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StaticInstance {
    pub target: Target,
    pub weight: usize,
    /// The instance's zone, for `zone_aware` balancing.
    pub zone: Option<String>,
}

impl StaticInstance {
    /// Parses an entry without resolving it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let mut parts = entry.split_whitespace();
        let text = parts.next().ok_or("empty instance")?;
        let mut weight = 1;
        let mut zone = None;
        for option in parts {
            match option.split_once('=') {
                Some(("zone", z)) if !z.is_empty() => zone = Some(z.to_string()),
                Some(("weight", w)) => {
                    weight = w
                        .parse::<usize>()
                        .ok()
                        .filter(|w| (1..=MAX_WEIGHT).contains(w))
                        .ok_or_else(|| {
                            format!("weight must be an integer in 1..={MAX_WEIGHT}, got {w:?}")
                        })?;
                }
                _ => {
                    return Err(format!(
                        "unknown instance option {option:?}; expected weight=N or zone=NAME"
                    ))
                }
            }
        }
        Ok(Self {
            target: parse_target(text)?,
            weight,
            zone,
        })
    }
}

fn parse_target(text: &str) -> Result<Target, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Target::Ip(addr));
    }
    let bad = || format!("bad address {text:?}: expected HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    // Names as resolvers take them: letters, digits, `-` and `_` (Docker and /etc/hosts names
    // use it), and an optional trailing dot (a fully qualified name).
    let bare = host.strip_suffix('.').unwrap_or(host);
    let name_ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !name_ok {
        return Err(bad());
    }
    Ok(Target::Host {
        name: host.to_ascii_lowercase(),
        port,
    })
}

/// A compiled `services` entry.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// The section as written: an upstream is reused across a reload while it is unchanged.
    pub config: ServiceConfig,
    pub instances: Vec<StaticInstance>,
    pub hash_key: Option<HashKey>,
    pub probe: ProbeSpec,
}

impl ServiceSpec {
    /// Compiles `services.NAME` (at `at`), recording every problem.
    pub fn compile(
        name: &str,
        s: &ServiceConfig,
        has_redis: bool,
        problems: &mut Problems,
    ) -> Self {
        let at = format!("services.{name}");
        if !crate::config::is_label_safe(name) {
            problems.push(&at, "service names must use only [A-Za-z0-9_.-]");
        }
        if s.instances.is_empty() && s.discovery == Discovery::Static {
            problems.push(
                format!("{at}.instances"),
                "at least one instance is required (or discovery: redis)",
            );
        }
        if s.discovery == Discovery::Redis && !has_redis {
            problems.push(
                format!("{at}.discovery"),
                "discovery: redis needs a top-level `redis` section",
            );
        }
        if s.heartbeat_ttl < Duration::from_millis(100) {
            problems.push(format!("{at}.heartbeat_ttl"), "must be at least 100ms");
        }
        if s.slow_start
            .is_some_and(|w| !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&w))
        {
            problems.push(format!("{at}.slow_start"), "must be between 1s and 1h");
        }
        if let Some(z) = &s.zone_aware {
            if !(z.min_healthy > 0.0 && z.min_healthy <= 1.0) {
                problems.push(format!("{at}.zone_aware.min_healthy"), "must be in (0, 1]");
            }
        }
        if s.max_connections_per_instance == Some(0) {
            problems.push(
                format!("{at}.max_connections_per_instance"),
                "must be at least 1 (leave it out for no cap)",
            );
        }
        let mut seen = HashSet::new();
        let mut instances = Vec::new();
        for (i, entry) in s.instances.iter().enumerate() {
            match StaticInstance::parse(entry) {
                Ok(spec) if !seen.insert(spec.target.clone()) => problems.push(
                    format!("{at}.instances[{i}]"),
                    format!("duplicate instance {}", spec.target),
                ),
                Ok(spec) => instances.push(spec),
                Err(e) => problems.push(format!("{at}.instances[{i}]"), e),
            }
        }
        let hash_key = compile_hash_key(s, &at, problems);
        for (field, d) in [
            ("connect_timeout", s.connect_timeout),
            ("read_timeout", s.read_timeout),
            ("write_timeout", s.write_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{at}.{field}"), "must be greater than zero");
            }
        }
        check_breaker(s, &at, problems);
        check_health(s, &at, problems);
        Self {
            name: name.to_string(),
            config: s.clone(),
            instances,
            hash_key,
            probe: ProbeSpec::new(name, s.health_check.as_ref()),
        }
    }
}

fn compile_hash_key(s: &ServiceConfig, at: &str, problems: &mut Problems) -> Option<HashKey> {
    match (s.balance, &s.hash_key) {
        (Balance::ConsistentHash, None) => {
            problems.push(format!("{at}.hash_key"), "consistent_hash needs a hash_key");
            None
        }
        (Balance::ConsistentHash, Some(k)) => {
            let key = HashKey::parse(k);
            if key.is_none() {
                problems.push(
                    format!("{at}.hash_key"),
                    format!(
                        "bad hash_key {k:?}: expected client_ip, header:NAME, cookie:NAME or path"
                    ),
                );
            }
            key
        }
        (_, Some(_)) => {
            problems.push(
                format!("{at}.hash_key"),
                "hash_key is only used with balance: consistent_hash",
            );
            None
        }
        (_, None) => None,
    }
}

fn check_breaker(s: &ServiceConfig, at: &str, problems: &mut Problems) {
    let cb = &s.circuit_breaker;
    let cp = format!("{at}.circuit_breaker");
    for (field, n) in [
        ("consecutive_failures", cb.consecutive_failures),
        ("min_requests", cb.min_requests),
        ("half_open_probes", cb.half_open_probes),
    ] {
        if n == 0 {
            problems.push(format!("{cp}.{field}"), "must be at least 1");
        }
    }
    if !(cb.failure_ratio > 0.0 && cb.failure_ratio <= 1.0) {
        problems.push(format!("{cp}.failure_ratio"), "must be in (0, 1]");
    }
    if !(0.0..=1.0).contains(&cb.max_ejected_ratio) {
        problems.push(format!("{cp}.max_ejected_ratio"), "must be in [0, 1]");
    }
    if cb.window.as_millis() < 10 {
        problems.push(format!("{cp}.window"), "must be at least 10ms");
    }
    if cb.open_for.is_zero() {
        problems.push(format!("{cp}.open_for"), "must be above zero");
    }
    if cb.max_open_for < cb.open_for {
        problems.push(format!("{cp}.max_open_for"), "must not be below open_for");
    }
}

fn check_health(s: &ServiceConfig, at: &str, problems: &mut Problems) {
    let Some(hc) = &s.health_check else {
        return;
    };
    let hp = format!("{at}.health_check");
    if hc.kind == HealthCheckKind::Http && !hc.path.starts_with('/') {
        problems.push(format!("{hp}.path"), "must start with '/'");
    }
    if hc.expect.is_empty() {
        problems.push(format!("{hp}.expect"), "must list at least one status code");
    }
    for (i, code) in hc.expect.iter().enumerate() {
        if !(100..=599).contains(code) {
            problems.push(format!("{hp}.expect[{i}]"), "must be between 100 and 599");
        }
    }
    if hc.interval.as_millis() < 100 {
        problems.push(format!("{hp}.interval"), "must be at least 100ms");
    }
    if hc.timeout.is_zero() || hc.timeout > hc.interval {
        problems.push(
            format!("{hp}.timeout"),
            "must be greater than zero and not above interval",
        );
    }
    for (field, n) in [("rise", hc.rise), ("fall", hc.fall)] {
        if n == 0 {
            problems.push(format!("{hp}.{field}"), "must be at least 1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_and_weight() {
        let i = StaticInstance::parse("127.0.0.1:8101 weight=3").unwrap();
        assert_eq!(i.target, Target::Ip("127.0.0.1:8101".parse().unwrap()));
        assert_eq!(i.weight, 3);
        assert_eq!(StaticInstance::parse("[::1]:80").unwrap().weight, 1);
        assert_eq!(
            StaticInstance::parse("Orders.internal:8080")
                .unwrap()
                .target,
            Target::Host {
                name: "orders.internal".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn host_names_may_have_underscores_and_a_trailing_dot() {
        for name in ["my_service", "api.internal."] {
            let parsed = StaticInstance::parse(&format!("{name}:80")).unwrap();
            let host = Target::Host {
                name: name.into(),
                port: 80,
            };
            assert_eq!(parsed.target, host);
        }
    }

    #[test]
    fn rejects_bad_addresses_and_weights_without_any_lookup() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:99999",
            "127.0.0.1:80 weight=0",
            "127.0.0.1:80 colour=red",
            "nonsense",
            "bad host:80",
            ":80",
            "a..b:80",
            ".:80",
        ] {
            assert!(StaticInstance::parse(bad).is_err(), "{bad}");
        }
    }
}
