//! What a rule counts by. A bucket is identified by the rule and the key value, never by the
//! route (unless the key is `route`), so a rule attached to several routes is one limit — the
//! same in the local and the Redis store.

use crate::config::MissingKey;
use crate::ip_text::IpText;
use http::{HeaderMap, HeaderName};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

/// A compiled `key:` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    ClientIp,
    Header(HeaderName),
    /// The authenticated consumer's name.
    Consumer,
    Route,
    Global,
}

impl KeyKind {
    /// Parses `client_ip`, `header:NAME`, `consumer`, `route` or `global`; `None` for anything
    /// else (the compile step reports it).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client_ip" => Some(KeyKind::ClientIp),
            "consumer" => Some(KeyKind::Consumer),
            "route" => Some(KeyKind::Route),
            "global" => Some(KeyKind::Global),
            other => other
                .strip_prefix("header:")
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map(KeyKind::Header),
        }
    }
}

/// One request's bucket key for one rule, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A client address; IPv6 is grouped by /64 (one subscriber usually holds a whole /64).
    Ip(IpAddr),
    Header(&'a [u8]),
    Consumer(&'a str),
    Route(&'a str),
    Global,
}

/// The result of extracting a key.
pub enum Extracted<'a> {
    Key(Key<'a>),
    /// The header (or consumer) is absent and the rule says `on_missing_key: reject`.
    Reject,
    /// The header (or consumer) is absent and the rule says `on_missing_key: allow`.
    Skip,
}

/// What a key is taken from.
pub struct Source<'a> {
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// The authenticated consumer's name.
    pub consumer: Option<&'a str>,
    pub route: &'a str,
}

/// Extracts `kind`'s key from a request.
pub fn extract<'a>(kind: &KeyKind, missing: MissingKey, from: &Source<'a>) -> Extracted<'a> {
    let absent = || match missing {
        MissingKey::ClientIp => Extracted::Key(Key::Ip(group(from.client_ip))),
        MissingKey::Reject => Extracted::Reject,
        MissingKey::Allow => Extracted::Skip,
    };
    match kind {
        KeyKind::ClientIp => Extracted::Key(Key::Ip(group(from.client_ip))),
        KeyKind::Route => Extracted::Key(Key::Route(from.route)),
        KeyKind::Global => Extracted::Key(Key::Global),
        KeyKind::Header(name) => match from.headers.get(name) {
            Some(v) if !v.is_empty() => Extracted::Key(Key::Header(v.as_bytes())),
            _ => absent(),
        },
        KeyKind::Consumer => match from.consumer {
            Some(name) => Extracted::Key(Key::Consumer(name)),
            None => absent(),
        },
    }
}

/// IPv6 addresses keep their /64 prefix; IPv4 (and IPv4-mapped IPv6) stay whole.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Longest header value used verbatim in a Redis key; longer ones are hashed.
const MAX_RAW: usize = 128;

impl Key<'_> {
    /// The Redis key `{prefix}rl:{RULE:KIND:VALUE}`; the braces are a Cluster hash tag, so a
    /// bucket's key always lands on one shard. Header values that are long, non-UTF-8 or contain
    /// braces are replaced by a stable hash. Built piece by piece: `format!` cost ~2,000
    /// instructions per Redis decision (most of them writing the address through `core::fmt`).
    pub fn redis_key(&self, prefix: &str, rule: &str) -> String {
        let mut key = String::with_capacity(prefix.len() + rule.len() + 64);
        key.push_str(prefix);
        key.push_str("rl:{");
        key.push_str(rule);
        match self {
            Key::Ip(ip) => {
                key.push_str(":ip:");
                // IpText writes only ASCII.
                key.push_str(std::str::from_utf8(IpText::new(*ip).as_bytes()).unwrap_or(""));
                if ip.is_ipv6() {
                    key.push_str("/64");
                }
            }
            Key::Route(r) => {
                key.push_str(":route:");
                key.push_str(r);
            }
            // A JWT subject may be any string: long or braced names are hashed like headers.
            Key::Consumer(c) if c.len() <= MAX_RAW && !c.contains(['{', '}']) => {
                key.push_str(":c:");
                key.push_str(c);
            }
            Key::Consumer(c) => {
                key.push_str(":c#");
                key.push_str(&crate::config::content_hash(c.as_bytes()));
            }
            Key::Global => key.push_str(":global"),
            Key::Header(v) => match std::str::from_utf8(v) {
                Ok(s) if s.len() <= MAX_RAW && !s.contains(['{', '}']) => {
                    key.push_str(":h:");
                    key.push_str(s);
                }
                _ => {
                    key.push_str(":h#");
                    key.push_str(&crate::config::content_hash(v));
                }
            },
        }
        key.push('}');
        key
    }

    /// Feeds the key into `state` (the local store hashes it without allocating).
    pub fn feed<H: Hasher>(&self, state: &mut H) {
        self.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(kind: &str, missing: MissingKey, headers: &HeaderMap, ip: &str) -> Option<String> {
        let from = Source {
            headers,
            client_ip: ip.parse().unwrap(),
            consumer: headers.get("x-test-consumer").map(|v| v.to_str().unwrap()),
            route: "orders",
        };
        match extract(&KeyKind::parse(kind).unwrap(), missing, &from) {
            Extracted::Key(k) => Some(k.redis_key("p:", "r")),
            Extracted::Reject => Some("reject".into()),
            Extracted::Skip => None,
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap());
        let none = HeaderMap::new();
        let c = MissingKey::ClientIp;
        assert_eq!(
            key_of("client_ip", c, &none, "1.2.3.4").unwrap(),
            "p:rl:{r:ip:1.2.3.4}"
        );
        assert_eq!(
            key_of("client_ip", c, &none, "2001:db8:1:2:3:4:5:6").unwrap(),
            "p:rl:{r:ip:2001:db8:1:2::/64}"
        );
        assert_eq!(
            key_of("header:x-api-key", c, &h, "1.2.3.4").unwrap(),
            "p:rl:{r:h:k1}"
        );
        assert_eq!(
            key_of("header:x-api-key", c, &none, "1.2.3.4").unwrap(),
            "p:rl:{r:ip:1.2.3.4}"
        );
        assert_eq!(
            key_of("header:x-api-key", MissingKey::Reject, &none, "1.2.3.4").unwrap(),
            "reject"
        );
        assert_eq!(
            key_of("header:x-api-key", MissingKey::Allow, &none, "1.2.3.4"),
            None
        );
        assert_eq!(
            key_of("route", c, &none, "1.2.3.4").unwrap(),
            "p:rl:{r:route:orders}"
        );
        assert_eq!(
            key_of("global", c, &none, "1.2.3.4").unwrap(),
            "p:rl:{r:global}"
        );
        let mut acme = HeaderMap::new();
        acme.insert("x-test-consumer", "acme".parse().unwrap());
        assert_eq!(
            key_of("consumer", c, &acme, "1.2.3.4").unwrap(),
            "p:rl:{r:c:acme}"
        );
        assert_eq!(
            key_of("consumer", c, &none, "1.2.3.4").unwrap(),
            "p:rl:{r:ip:1.2.3.4}"
        );
        assert_eq!(
            key_of("consumer", MissingKey::Allow, &none, "1.2.3.4"),
            None
        );
    }

    #[test]
    fn a_whole_ipv6_slash_64_shares_a_key_and_hostile_values_are_hashed() {
        let none = HeaderMap::new();
        let a = key_of("client_ip", MissingKey::ClientIp, &none, "2001:db8::1");
        let b = key_of("client_ip", MissingKey::ClientIp, &none, "2001:db8::ffff:1");
        assert_eq!(a, b);
        let mut h = HeaderMap::new();
        h.insert("x-k", "a}b{".parse().unwrap());
        let k = key_of("header:x-k", MissingKey::ClientIp, &h, "1.2.3.4").unwrap();
        assert!(k.starts_with("p:rl:{r:h#") && k.ends_with('}'), "{k}");
        let mut long = HeaderMap::new();
        long.insert("x-test-consumer", "c".repeat(200).parse().unwrap());
        let k = key_of("consumer", MissingKey::ClientIp, &long, "1.2.3.4").unwrap();
        assert_eq!(k.len(), "p:rl:{r:c#}".len() + 16, "{k}");
        assert!(k.starts_with("p:rl:{r:c#") && k.ends_with('}'), "{k}");
        let mapped = key_of("client_ip", MissingKey::ClientIp, &none, "::ffff:10.0.0.7");
        assert_eq!(
            mapped.unwrap(),
            "p:rl:{r:ip:10.0.0.7}",
            "IPv4-mapped is IPv4"
        );
    }
}
