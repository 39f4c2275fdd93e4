//! IPv4 subnets: parsing, containment, overlap, and the default-subnet choice; the bridge's
//! optional IPv6 /64.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use super::NetworkError;

/// An IPv4 network such as `10.88.0.0/24` (host bits are cleared on parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from an address and a prefix length 0..=32; host bits are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first usable address (`.1` in a /24): the bridge's address and the containers' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !mask(self.prefix)
    }

    /// Addresses that containers may get: after the gateway, before the broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let last = self.broadcast();
        (first..last).map(Ipv4Addr::from)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(p) == u32::from(other.network) & mask(p)
    }

    /// The candidates tried when no subnet is configured: `10.88.0.0/24` .. `10.88.255.0/24`.
    pub fn default_candidates() -> impl Iterator<Item = Subnet> {
        (0..=255u8).map(|third| Subnet {
            network: Ipv4Addr::new(10, 88, third, 0),
            prefix: 24,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NetworkError;

    /// `A.B.C.D/N` with N in 16..=30 (a bridge subnet needs room for a gateway and containers,
    /// and a shorter prefix than /16 would swallow too much of the host's address space).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| NetworkError::InvalidSubnet {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| invalid("must be an IPv4 network like 10.88.0.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| invalid("the address must be IPv4 like 10.88.0.0"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix length must be a number 16-30"))?;
        if !(16..=30).contains(&prefix) {
            return Err(invalid("the prefix length must be 16-30"));
        }
        let net = Subnet::new(addr, prefix).ok_or_else(|| invalid("bad prefix"))?;
        if net.network != addr {
            return Err(invalid("host bits must be zero"));
        }
        Ok(net)
    }
}

/// The bridge's IPv6 network: a /64, normally a ULA (`fd00::/8`) since it is masqueraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet6(Ipv6Addr);

impl Subnet6 {
    pub fn prefix(&self) -> u8 {
        64
    }

    /// `prefix::1`: the bridge's address and the containers' gateway.
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.0) | 1)
    }

    /// A container's IPv6 address: the prefix with its IPv4 address as the last 32 bits
    /// (`fd..::a58:5` for 10.88.0.5): unique as the IPv4 one is, and never the gateway.
    pub fn address_for(&self, v4: Ipv4Addr) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.0) | u128::from(u32::from(v4)))
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/64", self.0)
    }
}

impl FromStr for Subnet6 {
    type Err = NetworkError;

    /// `PREFIX::/64` with the host bits zero, e.g. `fd42:c0a1:2::/64`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| NetworkError::InvalidSubnet {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| invalid("must be an IPv6 /64 like fd42:c0a1:2::/64"))?;
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| invalid("the address must be IPv6 like fd42:c0a1:2::"))?;
        if prefix != "64" {
            return Err(invalid("the prefix length must be 64"));
        }
        if u128::from(addr) & u128::from(u64::MAX) != 0 {
            return Err(invalid("the last 64 bits must be zero"));
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            return Err(invalid("must be a unicast network (a ULA like fd00::/8)"));
        }
        Ok(Subnet6(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_subnets() {
        let n: Subnet6 = "fd42:c0a1:2::/64".parse().unwrap();
        assert_eq!(n.to_string(), "fd42:c0a1:2::/64");
        assert_eq!(n.gateway().to_string(), "fd42:c0a1:2::1");
        assert_eq!(
            n.address_for(Ipv4Addr::new(10, 88, 0, 5)).to_string(),
            "fd42:c0a1:2::a58:5"
        );
        for bad in [
            "fd42::/48",
            "fd42::1/64",
            "10.0.0.0/64",
            "fd42::",
            "ff02::/64",
        ] {
            assert!(bad.parse::<Subnet6>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_and_rejects() {
        let s: Subnet = "10.88.3.0/24".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 3, 1));
        assert_eq!(s.hosts().count(), 253);
        assert_eq!(s.hosts().next(), Some(Ipv4Addr::new(10, 88, 3, 2)));
        assert_eq!(s.hosts().last(), Some(Ipv4Addr::new(10, 88, 3, 254)));
        for bad in [
            "10.88.3.1/24",
            "10.88.0.0",
            "10.88.0.0/8",
            "10.88.0.0/31",
            "::1/64",
            "x/24",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_table() {
        let a: Subnet = "10.88.0.0/24".parse().unwrap();
        let cases = [
            ("10.88.0.0/16", true),
            ("10.88.0.128/25", true),
            ("10.88.1.0/24", false),
            ("10.0.0.0/8", true),
        ];
        for (other, want) in cases {
            let b = Subnet::new(
                other.split('/').next().unwrap().parse().unwrap(),
                other.split('/').nth(1).unwrap().parse().unwrap(),
            )
            .unwrap();
            assert_eq!(a.overlaps(&b), want, "{other}");
            assert_eq!(b.overlaps(&a), want, "{other}");
        }
        assert!(a.contains(Ipv4Addr::new(10, 88, 0, 77)));
        assert!(!a.contains(Ipv4Addr::new(10, 88, 1, 77)));
    }
}
