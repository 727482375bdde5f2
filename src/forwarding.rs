//! Who the client is and what the upstream is told about it: `X-Forwarded-For` is believed only
//! when the socket peer is a trusted proxy, and then walked from the right, skipping trusted hops.

use crate::config::Problems;
use crate::ip_text::IpText;
use crate::known_headers::{self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use http::HeaderValue;
use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `10.0.0.0/8` or a bare address (a /32 or /128).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Compiles `server.trusted_proxies`, recording entries that are not an IP or CIDR.
    pub fn compile(entries: &[String], problems: &mut Problems) -> Self {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            match parse_net(e) {
                Some(n) => nets.push(n),
                None => problems.push(
                    format!("server.trusted_proxies[{i}]"),
                    format!("bad network {e:?}: expected an IP or CIDR"),
                ),
            }
        }
        Self(nets)
    }

    /// True when `ip` lies in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the socket peer, unless the peer is trusted and sent `X-Forwarded-For`;
    /// then the rightmost untrusted entry (or the leftmost when all are trusted).
    pub fn client_ip(&self, peer: IpAddr, xff: Option<&HeaderValue>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let Some(list) = xff.and_then(|v| v.to_str().ok()) else {
            return peer;
        };
        let mut client = peer;
        for entry in list.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host` on the upstream request. Incoming values are extended
/// (For) or kept (Proto, Host) only when the socket peer is trusted; otherwise replaced.
pub fn set_upstream_headers(
    req: &mut pingora::http::RequestHeader,
    peer: IpAddr,
    peer_trusted: bool,
    proto: &'static str,
) -> pingora::Result<()> {
    let peer = IpText::new(canonical(peer));
    let xff = match req.headers.get(X_FORWARDED_FOR.name()) {
        Some(existing) if peer_trusted && !existing.is_empty() => {
            let mut list = Vec::with_capacity(existing.len() + 2 + peer.as_bytes().len());
            list.extend_from_slice(existing.as_bytes());
            list.extend_from_slice(b", ");
            list.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&list)
        }
        _ => HeaderValue::from_bytes(peer.as_bytes()),
    };
    // Both forms are visible ASCII (an accepted header value plus an address), so this holds.
    if let Ok(xff) = xff {
        req.insert_known_header(&known_headers::X_FORWARDED_FOR, xff)?;
    }
    if !(peer_trusted && req.headers.contains_key(X_FORWARDED_PROTO.name())) {
        req.insert_known_header(
            &known_headers::X_FORWARDED_PROTO,
            HeaderValue::from_static(proto),
        )?;
    }
    if !(peer_trusted && req.headers.contains_key(X_FORWARDED_HOST.name())) {
        let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        match host {
            Some(h) => req.insert_known_header(&known_headers::X_FORWARDED_HOST, h)?,
            None => {
                req.remove_header(X_FORWARDED_HOST.name());
            }
        }
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses are compared as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        let mut problems = Problems::default();
        let t = TrustedProxies::compile(
            &["10.0.0.0/8".to_string(), "192.168.1.1".to_string()],
            &mut problems,
        );
        assert!(problems.is_empty());
        t
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn xff_from_an_untrusted_peer_is_ignored() {
        let xff = HeaderValue::from_static("1.2.3.4");
        assert_eq!(
            trusted().client_ip(ip("8.8.8.8"), Some(&xff)),
            ip("8.8.8.8")
        );
    }

    #[test]
    fn xff_from_a_trusted_peer_yields_the_rightmost_untrusted_hop() {
        let xff = HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.1.1.1");
        assert_eq!(
            trusted().client_ip(ip("10.0.0.2"), Some(&xff)),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn garbage_in_xff_stops_the_walk() {
        let xff = HeaderValue::from_static("1.2.3.4, junk, 10.1.1.1");
        assert_eq!(
            trusted().client_ip(ip("192.168.1.1"), Some(&xff)),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn mapped_ipv4_is_treated_as_ipv4() {
        assert!(trusted().contains(ip("::ffff:10.1.2.3")));
    }
}
