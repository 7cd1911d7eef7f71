//! IPv4 subnets in CIDR notation (`172.16.28.0/24`): parsing, membership and host addresses.
//! The default network is IPv4 only, as rkt's was (its `default` CNI network, reference/rkt.md
//! §2.14); a subnet type of our own avoids a crate for twenty lines of arithmetic.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 network: its address (host bits zero) and prefix length (8 to 30, so that it has a
/// gateway and at least one pod address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The smallest and largest prefixes accepted: /8 at most (a sane lease scan), /30 at least
    /// (network, gateway, one pod, broadcast).
    pub const PREFIX_RANGE: std::ops::RangeInclusive<u8> = 8..=30;

    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, String> {
        if !Self::PREFIX_RANGE.contains(&prefix) {
            return Err(format!(
                "{addr}/{prefix}: the prefix length must be between 8 and 30"
            ));
        }
        let s = Subnet { addr, prefix };
        if s.network() != addr {
            return Err(format!(
                "{addr}/{prefix} has host bits set; the network is {}/{prefix}",
                s.network()
            ));
        }
        Ok(s)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `ip` is a usable host address: inside, and neither network nor broadcast.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.broadcast()
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    /// Every host address, in order.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network()) + 1;
        let last = u32::from(self.broadcast()) - 1;
        (first..=last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IPv4 subnet (e.g. 172.16.28.0/24)");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Subnet::new(addr, prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let s: Subnet = "172.16.28.0/24".parse().unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(172, 16, 28, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 16, 28, 255));
        assert_eq!(s.hosts().count(), 254);
        assert!(s.is_host(Ipv4Addr::new(172, 16, 28, 9)));
        assert!(!s.is_host(Ipv4Addr::new(172, 16, 28, 0)));
        assert!(!s.contains(Ipv4Addr::new(172, 16, 29, 1)));
        let err = "172.16.28.5/24".parse::<Subnet>().unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("::/64".parse::<Subnet>().is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"172.16.28.0/24\"");
    }
}
