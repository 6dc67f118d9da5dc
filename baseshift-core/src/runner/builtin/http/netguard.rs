//! The private-network guard of the `http_request` runner: which IP addresses a request may
//! connect to, checked on IP-literal URLs and, through a DNS resolver, on every address a
//! host name resolves to (so a redirect or a rebinding DNS answer cannot reach inside).

use super::policy::HostPattern;
use crate::error::Error;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// An address block, e.g. `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(super) fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr { network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr { network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), prefix }
    }

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local, shared (CGNAT), unspecified and broadcast blocks.
const DENIED: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),
    Cidr::v4(10, 0, 0, 0, 8),
    Cidr::v4(100, 64, 0, 0, 10),
    Cidr::v4(127, 0, 0, 0, 8),
    Cidr::v4(169, 254, 0, 0, 16),
    Cidr::v4(172, 16, 0, 0, 12),
    Cidr::v4(192, 168, 0, 0, 16),
    Cidr::v4(255, 255, 255, 255, 32),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];

/// Whether `ip` is in a loopback, private or link-local block.
pub(super) fn is_private(ip: IpAddr) -> bool {
    DENIED.iter().any(|block| block.contains(ip))
}

/// The private-network rule: off (`allow_all`), or private addresses only for listed
/// blocks and hosts.
#[derive(Debug)]
pub(super) struct NetGuard {
    allow_all: bool,
    blocks: Vec<Cidr>,
    hosts: Vec<HostPattern>,
}

impl NetGuard {
    /// `allowlist` entries are CIDR blocks (`10.1.0.0/16`), addresses, or host patterns.
    pub(super) fn new(allow_all: bool, allowlist: &[String]) -> Result<Self, Error> {
        let mut blocks = Vec::new();
        let mut hosts = Vec::new();
        for entry in allowlist {
            let entry = entry.trim();
            if let Some(block) = Cidr::parse(entry) {
                blocks.push(block);
            } else if entry.contains('/') {
                return Err(Error::invalid_input(format!(
                    "http.security.private_network_allowlist: `{entry}` is not a valid CIDR block"
                )));
            } else {
                hosts.push(HostPattern::parse(entry, "http.security.private_network_allowlist")?);
            }
        }
        Ok(NetGuard { allow_all, blocks, hosts })
    }

    /// Whether the guard checks anything.
    pub(super) fn is_active(&self) -> bool {
        !self.allow_all
    }

    /// `Err` names the rule: a private `ip` (reached as `host`) that nothing allows.
    pub(super) fn check(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.allow_all || !is_private(ip) || self.blocks.iter().any(|b| b.contains(ip)) {
            return Ok(());
        }
        let normalized = super::policy::normalize_host(host);
        if self.hosts.iter().any(|p| p.matches(&normalized)) {
            return Ok(());
        }
        let shown = if host.trim_matches(['[', ']']) == ip.to_string() {
            format!("address {ip}")
        } else {
            format!("`{host}` resolves to {ip}, which")
        };
        Err(format!(
            "{shown} is a private, loopback or link-local address, {DENIED_MARKER} \
             (allow it with allow_private_networks or private_network_allowlist)"
        ))
    }
}

/// Part of every refusal's message. The HTTP client boxes resolver errors in a way that
/// hides their type from `source()`, so the runner recognizes a refusal by this text.
pub(super) const DENIED_MARKER: &str = "denied by http.allow_private_networks";

/// The error a refused resolution carries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Denied(pub(super) String);

/// Resolves with the system resolver (as reqwest's default does, on a blocking thread) and
/// refuses the whole answer if any address is denied: the connection can then only go to
/// checked addresses.
#[derive(Debug)]
pub(super) struct GuardedResolver {
    pub(super) guard: Arc<NetGuard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let lookup = host.clone();
            let addrs: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs().map(Iterator::collect))
                    .await
                    .map_err(|e| Box::new(std::io::Error::other(e)) as Box<dyn std::error::Error + Send + Sync>)??;
            for addr in &addrs {
                guard.check(&host, addr.ip()).map_err(|msg| Box::new(Denied(msg)))?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges() {
        for denied in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip(denied)), "{denied}");
        }
        for public in ["8.8.8.8", "172.32.0.1", "172.15.255.255", "192.169.0.1", "2606:4700::1111", "fec0::1"] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")) && !block.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd99::1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("[::1]").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "nope/8", "10.0.0/8", "::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn allowlist_entries_open_blocks_and_hosts() {
        let guard = NetGuard::new(false, &["10.1.0.0/16".to_owned(), "*.svc.internal".to_owned()]).unwrap();
        assert!(guard.check("10.1.0.5", ip("10.1.0.5")).is_ok());
        assert!(guard.check("db.svc.internal", ip("10.9.0.5")).is_ok());
        let err = guard.check("evil.example", ip("10.9.0.5")).unwrap_err();
        assert!(err.contains("evil.example") && err.contains("http.allow_private_networks"), "{err}");
        assert!(guard.check("example.com", ip("93.184.216.34")).is_ok());
        assert!(NetGuard::new(true, &[]).unwrap().check("x", ip("127.0.0.1")).is_ok());
        assert!(NetGuard::new(false, &["10.0.0.0/99".to_owned()]).is_err());
        assert!(NetGuard::new(false, &["http://x".to_owned()]).is_err());
    }
}
