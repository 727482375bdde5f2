//! Sets of IP networks for allow and deny lists. Networks are kept as sorted, merged ranges
//! of integers (IPv4 as `u32`, IPv6 as `u128`), so a lookup is one binary search whatever the
//! number of entries — a deny list synced from Redis may hold tens of thousands — and an
//! IPv4-mapped IPv6 client (`::ffff:10.0.0.1`, how a dual-stack listener sees IPv4 peers) is
//! looked up as the IPv4 address it is.

use std::net::IpAddr;

/// One network: its first and last address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    V4(u32, u32),
    V6(u128, u128),
}

impl Network {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address. `strict` refuses host bits
    /// set below the prefix (`10.1.2.3/8`), which in a configuration file is usually a typo.
    pub fn parse(text: &str, strict: bool) -> Result<Network, String> {
        let (addr, len) = match text.trim().split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let ip = canonical(ip);
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = match len {
            None => bits,
            Some(l) => l
                .parse()
                .ok()
                .filter(|l| *l <= bits)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={bits}"))?,
        };
        // Both families in one width: an IPv4 address is the low 32 bits.
        let n = match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let host = (u128::MAX >> (128 - bits)).checked_shr(len).unwrap_or(0);
        let (first, last) = (n & !host, n | host);
        if strict && n & host != 0 {
            let network = match ip {
                IpAddr::V4(_) => IpAddr::V4((first as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(first.into()),
            };
            return Err(format!(
                "{text:?} has host bits set; the network is {network}/{len}"
            ));
        }
        let network = match ip {
            IpAddr::V4(_) => Network::V4(first as u32, last as u32),
            IpAddr::V6(_) => Network::V6(first, last),
        };
        Ok(network)
    }
}

/// A set of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// The set covering `networks`.
    pub fn new(networks: impl IntoIterator<Item = Network>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in networks {
            match n {
                Network::V4(a, b) => v4.push((a, b)),
                Network::V6(a, b) => v6.push((a, b)),
            }
        }
        Self {
            v4: merge(v4, |end| end.checked_add(1)),
            v6: merge(v6, |end| end.checked_add(1)),
        }
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => covers(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => covers(&self.v6, u128::from(v6)),
        }
    }

    /// Whether the set has no network.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Disjoint ranges the set is kept as (after merging).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Sorts ranges and merges overlapping or adjacent ones.
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if next(last.1).is_none_or(|after| start <= after) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

fn covers<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|(start, _)| *start <= x);
    i > 0 && ranges[i - 1].1 >= x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(networks: &[&str]) -> IpSet {
        IpSet::new(networks.iter().map(|n| Network::parse(n, true).unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_single_addresses_of_both_families() {
        let s = set(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.168.1.7",
            "2001:db8:ffff::1",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.0",
            "9.255.255.255",
            "192.168.1.8",
            "2001:db9::",
            "::2",
            "0.0.0.0",
        ] {
            assert!(!s.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let s = set(&["10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/16", "0.0.0.0/0"]);
        assert_eq!(s.ranges(), 1);
        assert!(s.contains(ip("255.255.255.255")));
        assert!(!s.contains(ip("::2")));
        let all6 = set(&["::/0", "2001:db8::/32"]);
        assert_eq!(all6.ranges(), 1);
        assert!(all6.contains(ip("ffff::")));
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        let e = Network::parse("10.1.2.3/8", true).unwrap_err();
        assert!(
            e.contains("host bits set; the network is 10.0.0.0/8"),
            "{e}"
        );
        assert!(Network::parse("10.1.2.3/8", false).is_ok());
        assert!(Network::parse("10.0.0.0/33", true)
            .unwrap_err()
            .contains("0..=32"));
        assert!(Network::parse("example.com", true)
            .unwrap_err()
            .contains("not an IP"));
    }

    #[test]
    fn a_lookup_agrees_with_a_linear_scan() {
        let mut rng = fastrand::Rng::with_seed(7);
        let networks: Vec<Network> = (0..2000)
            .map(|_| {
                let len = rng.u32(8..=32);
                Network::parse(
                    &format!("{}/{len}", std::net::Ipv4Addr::from(rng.u32(..))),
                    false,
                )
                .unwrap()
            })
            .collect();
        let s = IpSet::new(networks.iter().copied());
        for _ in 0..20_000 {
            let x = rng.u32(..);
            let linear = networks
                .iter()
                .any(|n| matches!(n, Network::V4(a, b) if *a <= x && x <= *b));
            assert_eq!(s.contains(IpAddr::V4(x.into())), linear, "{x}");
        }
    }
}
