//! Small, exact address arithmetic for validation and pool sizes (no external crate needed:
//! `std::net` parses addresses, prefixes are masks on u128).

use std::net::IpAddr;

use gatehouse_api::IpFamily;

/// An inclusive address range of one family, as u128 (IPv4 mapped into the low 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub family: IpFamily,
    pub first: u128,
    pub last: u128,
}

impl Range {
    pub fn contains(&self, ip: IpAddr) -> bool {
        family_of(ip) == self.family && (self.first..=self.last).contains(&to_u128(ip))
    }

    /// Number of addresses, saturating at `i64::MAX` (large IPv6 pools).
    pub fn size(&self) -> i64 {
        i64::try_from(self.last - self.first + 1).unwrap_or(i64::MAX)
    }
}

pub fn family_of(ip: IpAddr) -> IpFamily {
    match ip {
        IpAddr::V4(_) => IpFamily::IPv4,
        IpAddr::V6(_) => IpFamily::IPv6,
    }
}

/// The first and last address of a range, as addresses (for range queries on ordered
/// address maps: `IpAddr` orders every IPv4 address before every IPv6 one, each numerically).
pub fn bounds(r: &Range) -> (IpAddr, IpAddr) {
    let of = |v: u128| match r.family {
        IpFamily::IPv4 => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpFamily::IPv6 => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    };
    (of(r.first), of(r.last))
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The one-address CIDR of an address: `/32` or `/128`.
pub fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

/// Parses `addr/prefix` (host bits allowed, as Multus static IPs are written) into the
/// address and the subnet range it implies.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, Range)> {
    let (addr, prefix) = s.trim().split_once('/')?;
    let ip = parse_ip(addr)?;
    let prefix: u32 = prefix.parse().ok()?;
    let bits = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if prefix > bits {
        return None;
    }
    let host_bits = bits - prefix;
    let host_mask: u128 = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let value = to_u128(ip);
    Some((
        ip,
        Range {
            family: family_of(ip),
            first: value & !host_mask,
            last: value | host_mask,
        },
    ))
}

/// A CIDR block as (family, network address, prefix length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    pub v6: bool,
    pub base: u128,
    pub len: u32,
}

impl Block {
    pub fn parse(s: &str) -> Option<Block> {
        let (ip, r) = parse_cidr(s)?;
        let bits = if ip.is_ipv6() { 128 } else { 32 };
        let host = (r.last - r.first).count_ones();
        Some(Block {
            v6: ip.is_ipv6(),
            base: r.first,
            len: bits - host,
        })
    }

    fn bits(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    fn last(&self) -> u128 {
        let host = self.bits() - self.len;
        if host == 128 {
            u128::MAX
        } else {
            self.base | ((1u128 << host) - 1)
        }
    }

    fn contains(&self, o: &Block) -> bool {
        self.v6 == o.v6 && self.len <= o.len && self.base <= o.base && o.last() <= self.last()
    }

    fn overlaps(&self, o: &Block) -> bool {
        self.v6 == o.v6 && self.base <= o.last() && o.base <= self.last()
    }

    fn halves(&self) -> [Block; 2] {
        let half = 1u128 << (self.bits() - self.len - 1);
        let lo = Block {
            len: self.len + 1,
            ..*self
        };
        [
            lo,
            Block {
                base: self.base + half,
                ..lo
            },
        ]
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.base), self.len)
        } else {
            write!(
                f,
                "{}/{}",
                std::net::Ipv4Addr::from(self.base as u32),
                self.len
            )
        }
    }
}

/// `block` without `except`, as the fewest CIDR blocks, in address order. A whole address
/// space (`/0`) comes back as its two halves even without excepts, so a route to it is
/// more specific than a default route that already exists (which it then never replaces).
pub fn subtract(block: Block, except: &[Block]) -> Vec<Block> {
    if except.iter().any(|e| e.contains(&block)) {
        return Vec::new();
    }
    if block.len > 0 && !except.iter().any(|e| e.overlaps(&block)) {
        return vec![block];
    }
    block
        .halves()
        .into_iter()
        .flat_map(|h| subtract(h, except))
        .collect()
}

/// Parses a pool entry: a CIDR or an inclusive `first-last` range of one family.
pub fn parse_pool_entry(s: &str) -> Option<Range> {
    if s.contains('/') {
        return parse_cidr(s).map(|(_, r)| r);
    }
    let (a, b) = s.split_once('-')?;
    let (a, b) = (parse_ip(a)?, parse_ip(b)?);
    if family_of(a) != family_of(b) || to_u128(a) > to_u128(b) {
        return None;
    }
    Some(Range {
        family: family_of(a),
        first: to_u128(a),
        last: to_u128(b),
    })
}

/// Whether `host` equals `zone` or lies under it (`*.zone` lies under `zone`).
/// Whether an address is only meaningful inside some private network, so a public DNS
/// record must not point at it: RFC 1918, CGNAT (100.64/10), link-local, loopback and
/// unspecified; IPv6 unique-local (fc00::/7), link-local (fe80::/10), loopback. The
/// documentation ranges (192.0.2/24, 2001:db8::/32, ...) count as public.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

pub fn host_in_zone(host: &str, zone: &str) -> bool {
    let host = host.trim_end_matches('.');
    let zone = zone.trim_end_matches('.');
    host == zone
        || host
            .strip_suffix(zone)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(s: &[&str]) -> Vec<Block> {
        s.iter().map(|b| Block::parse(b).unwrap()).collect()
    }

    #[test]
    fn subtracting_gives_the_fewest_blocks_and_splits_a_whole_space() {
        let show = |v: Vec<Block>| v.iter().map(|b| b.to_string()).collect::<Vec<_>>();
        // The seed's shape: the world through the DMZ router, 10/8 left to the pod network.
        assert_eq!(
            show(subtract(
                blocks(&["0.0.0.0/0"])[0],
                &blocks(&["10.0.0.0/8"])
            )),
            [
                "0.0.0.0/5",
                "8.0.0.0/7",
                "11.0.0.0/8",
                "12.0.0.0/6",
                "16.0.0.0/4",
                "32.0.0.0/3",
                "64.0.0.0/2",
                "128.0.0.0/1"
            ]
        );
        assert_eq!(
            show(subtract(blocks(&["0.0.0.0/0"])[0], &[])),
            ["0.0.0.0/1", "128.0.0.0/1"]
        );
        assert_eq!(
            show(subtract(blocks(&["::/0"])[0], &blocks(&["fd00::/8"]))).len(),
            8
        );
        assert_eq!(
            show(subtract(blocks(&["192.168.0.0/16"])[0], &[])),
            ["192.168.0.0/16"]
        );
        assert!(subtract(blocks(&["10.1.0.0/16"])[0], &blocks(&["10.0.0.0/8"])).is_empty());
        // Host bits are ignored; other families never subtract.
        assert_eq!(
            show(subtract(blocks(&["10.0.0.7/30"])[0], &blocks(&["::/0"]))),
            ["10.0.0.4/30"]
        );
    }

    #[test]
    fn private_addresses_are_the_ones_public_dns_must_not_publish() {
        for private in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.29.15",
            "100.64.0.1",
            "169.254.1.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_private(parse_ip(private).unwrap()), "{private}");
        }
        for public in [
            "203.0.113.10",
            "192.0.2.1",
            "100.128.0.1",
            "172.32.0.1",
            "2a01:799:393:f10b:1::1",
            "2001:db8::1",
        ] {
            assert!(!is_private(parse_ip(public).unwrap()), "{public}");
        }
    }

    #[test]
    fn cidr_and_ranges() {
        let (_, r) = parse_cidr("192.168.31.13/24").unwrap();
        assert!(r.contains("192.168.31.200".parse().unwrap()));
        assert!(!r.contains("192.168.32.1".parse().unwrap()));
        assert_eq!(r.size(), 256);
        let r = parse_pool_entry("10.0.0.10-10.0.0.20").unwrap();
        assert_eq!(r.size(), 11);
        assert!(parse_pool_entry("10.0.0.20-10.0.0.10").is_none());
        assert!(parse_pool_entry("10.0.0.1-2001:db8::1").is_none());
        assert_eq!(parse_pool_entry("2001:db8::/64").unwrap().size(), i64::MAX);
        assert_eq!(parse_pool_entry("0.0.0.0/0").unwrap().size(), 1 << 32);
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }

    #[test]
    fn zones() {
        assert!(host_in_zone("blog.example.com", "example.com"));
        assert!(host_in_zone("example.com", "example.com"));
        assert!(host_in_zone("*.example.com", "example.com"));
        assert!(!host_in_zone("badexample.com", "example.com"));
        assert!(!host_in_zone("example.org", "example.com"));
    }
}
