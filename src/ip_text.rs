//! Addresses as text without `core::fmt`, which spends ~1,500 instructions on one `Ipv4Addr`;
//! the request path writes two or three addresses per request (`X-Forwarded-For`, the access
//! log). IPv4 is written directly; IPv6 still goes through `Display`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// An address as text in a stack buffer: `IpText::new(ip).as_bytes()`.
pub struct IpText {
    buf: [u8; Self::CAPACITY],
    len: usize,
}

impl IpText {
    /// The longest standard form: an IPv6 address with an embedded IPv4 tail.
    const CAPACITY: usize = 45;

    /// `ip` in its standard text form (IPv6 compressed, exactly as `Display` writes it).
    pub fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; Self::CAPACITY],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.push_u8(octet);
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.buf[..];
                let _ = write!(rest, "{v6}");
                text.len = Self::CAPACITY - rest.len();
            }
        }
        text
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn push_u8(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + n / 10 % 10);
        }
        self.push(b'0' + n % 10);
    }
}

/// Appends `addr` as `IP:PORT`, or `[IPv6]:PORT`.
pub fn write_socket_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    let ip = IpText::new(addr.ip());
    if addr.is_ipv6() {
        buf.push(b'[');
        buf.extend_from_slice(ip.as_bytes());
        buf.push(b']');
    } else {
        buf.extend_from_slice(ip.as_bytes());
    }
    buf.push(b':');
    buf.extend_from_slice(itoa::Buffer::new().format(addr.port()).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ip: IpAddr) -> String {
        String::from_utf8(IpText::new(ip).as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn matches_display_for_every_octet_and_both_families() {
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 255 - n, n / 7, 10]);
            assert_eq!(text(ip), ip.to_string());
        }
        for t in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.1.2.3",
            "fe80::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:0:0:0:0:ffff:255.255.255.255",
        ] {
            let ip: IpAddr = t.parse().unwrap();
            assert_eq!(text(ip), ip.to_string());
        }
    }

    #[test]
    fn socket_addresses_match_display() {
        for t in [
            "127.0.0.1:8080",
            "[::1]:443",
            "10.0.0.255:0",
            "[2001:db8::1]:65535",
        ] {
            let addr: SocketAddr = t.parse().unwrap();
            let mut buf = Vec::new();
            write_socket_addr(&mut buf, addr);
            assert_eq!(String::from_utf8(buf).unwrap(), addr.to_string());
        }
    }
}
