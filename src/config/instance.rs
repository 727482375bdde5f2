//! Static instance entries: `HOST:PORT` with an optional ` weight=N`.

use std::net::{SocketAddr, ToSocketAddrs};

/// Largest accepted weight; pingora expands weights into a selection table of at most 65 535 slots.
pub const MAX_WEIGHT: usize = 1000;

/// A parsed, resolved static instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSpec {
    pub addr: SocketAddr,
    pub weight: usize,
}

/// Parses and resolves one entry. Host names are resolved here, at load time, never per request.
pub fn parse_instance(entry: &str) -> Result<InstanceSpec, String> {
    let mut parts = entry.split_whitespace();
    let addr_text = parts.next().ok_or("empty instance")?;
    let mut weight = 1;
    for option in parts {
        match option.split_once('=') {
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
                    "unknown instance option {option:?}; expected weight=N"
                ))
            }
        }
    }
    let addr = resolve(addr_text)?;
    Ok(InstanceSpec { addr, weight })
}

fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("bad address {text:?}: expected HOST:PORT"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("bad address {text:?}: expected HOST:PORT"));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("bad address {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {text:?}: no address found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_and_weight() {
        let i = parse_instance("127.0.0.1:8101 weight=3").unwrap();
        assert_eq!(i.addr, "127.0.0.1:8101".parse().unwrap());
        assert_eq!(i.weight, 3);
        assert_eq!(parse_instance("[::1]:80").unwrap().weight, 1);
    }

    #[test]
    fn rejects_bad_addresses_and_weights() {
        assert!(parse_instance("127.0.0.1").is_err());
        assert!(parse_instance("127.0.0.1:99999").is_err());
        assert!(parse_instance("127.0.0.1:80 weight=0").is_err());
        assert!(parse_instance("127.0.0.1:80 colour=red").is_err());
    }
}
