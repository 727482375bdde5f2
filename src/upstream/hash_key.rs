//! What a consistent-hash service hashes on.

use crate::request_values::cookie;
use http::HeaderName;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// The request property that keeps a client on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
    Path,
}

impl HashKey {
    /// Parses `client_ip`, `header:NAME`, `cookie:NAME` or `path`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None if text == "client_ip" => Some(HashKey::ClientIp),
            None if text == "path" => Some(HashKey::Path),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
                Some(HashKey::Cookie(name.to_string()))
            }
            _ => None,
        }
    }

    /// The bytes to hash for `req`; requests without the property hash on the client IP, so they
    /// still spread rather than all landing on one instance.
    pub fn extract(&self, req: &RequestHeader, client_ip: IpAddr) -> Vec<u8> {
        let found = match self {
            HashKey::ClientIp => None,
            HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()),
            HashKey::Cookie(name) => cookie(req, name).map(|v| v.as_bytes().to_vec()),
            HashKey::Path => Some(req.uri.path().as_bytes().to_vec()),
        };
        found.unwrap_or_else(|| match client_ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/p/1", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn parses_every_key_kind() {
        assert_eq!(HashKey::parse("client_ip"), Some(HashKey::ClientIp));
        assert_eq!(HashKey::parse("path"), Some(HashKey::Path));
        assert!(matches!(
            HashKey::parse("header:x-user-id"),
            Some(HashKey::Header(_))
        ));
        assert_eq!(
            HashKey::parse("cookie:sid"),
            Some(HashKey::Cookie("sid".into()))
        );
        assert_eq!(HashKey::parse("body"), None);
        assert_eq!(HashKey::parse("header:bad name"), None);
    }

    #[test]
    fn extracts_header_cookie_and_path_with_ip_fallback() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let r = req(&[("x-user-id", "42"), ("cookie", "a=1; sid=abc")]);
        assert_eq!(
            HashKey::parse("header:x-user-id").unwrap().extract(&r, ip),
            b"42"
        );
        assert_eq!(
            HashKey::parse("cookie:sid").unwrap().extract(&r, ip),
            b"abc"
        );
        assert_eq!(HashKey::Path.extract(&r, ip), b"/p/1");
        assert_eq!(
            HashKey::parse("header:x-none").unwrap().extract(&r, ip),
            vec![10, 0, 0, 1]
        );
    }
}
