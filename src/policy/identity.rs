//! Which organization a client belongs to.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Identity;
use crate::query::ClientHints;

/// Lookup tables built at load time.
#[derive(Debug, Default)]
pub(crate) struct IdentityIndex {
    tokens: HashMap<Box<str>, u32>,
    dot_names: HashMap<Box<str>, u32>,
    /// (prefix length, network address → org), longest prefix first.
    v4: Vec<(u8, HashMap<u32, u32>)>,
    v6: Vec<(u8, HashMap<u128, u32>)>,
}

/// How an identity was chosen (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    DohToken,
    UnknownDohToken,
    DotName(String),
    Network(IpNet),
    None,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DohToken => f.write_str("by DoH path token"),
            Self::UnknownDohToken => {
                f.write_str("DoH path token matches no organization (the DoH listener answers 404)")
            }
            Self::DotName(n) => write!(f, "by DoT server name label \"{n}\""),
            Self::Network(n) => write!(f, "by client network {n}"),
            Self::None => f.write_str("no organization matches the client"),
        }
    }
}

fn mask4(ip: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        ip & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(ip: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        ip & (u128::MAX << (128 - u32::from(len)))
    }
}

impl IdentityIndex {
    /// Add a DoH token; returns the org already using it, if any.
    pub(crate) fn add_token(&mut self, token: &str, org: u32) -> Option<u32> {
        match self.tokens.insert(token.into(), org) {
            Some(prev) => {
                self.tokens.insert(token.into(), prev);
                Some(prev)
            }
            None => None,
        }
    }

    /// Add a DoT name label (lower case); returns the org already using it, if any.
    pub(crate) fn add_dot_name(&mut self, name: &str, org: u32) -> Option<u32> {
        match self.dot_names.insert(name.into(), org) {
            Some(prev) => {
                self.dot_names.insert(name.into(), prev);
                Some(prev)
            }
            None => None,
        }
    }

    /// Add a client network; returns the org already using exactly this network, if any.
    pub(crate) fn add_network(&mut self, net: IpNet, org: u32) -> Option<u32> {
        let net = net.trunc();
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let key = u32::from(n.network());
                let pos = match self.v4.iter().position(|(l, _)| *l == len) {
                    Some(p) => p,
                    None => {
                        self.v4.push((len, HashMap::new()));
                        self.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
                        self.v4.iter().position(|(l, _)| *l == len).unwrap_or(0)
                    }
                };
                let map = &mut self.v4[pos].1;
                match map.get(&key) {
                    Some(&prev) => Some(prev),
                    None => {
                        map.insert(key, org);
                        None
                    }
                }
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = u128::from(n.network());
                let pos = match self.v6.iter().position(|(l, _)| *l == len) {
                    Some(p) => p,
                    None => {
                        self.v6.push((len, HashMap::new()));
                        self.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
                        self.v6.iter().position(|(l, _)| *l == len).unwrap_or(0)
                    }
                };
                let map = &mut self.v6[pos].1;
                match map.get(&key) {
                    Some(&prev) => Some(prev),
                    None => {
                        map.insert(key, org);
                        None
                    }
                }
            }
        }
    }

    /// The longest network containing `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn by_ip(&self, ip: IpAddr) -> Option<(u32, IpNet)> {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().find_map(|(len, map)| {
                    let key = mask4(a, *len);
                    map.get(&key).map(|&org| {
                        let net = ipnet::Ipv4Net::new(key.into(), *len)
                            .map(IpNet::V4)
                            .unwrap_or_default();
                        (org, net)
                    })
                })
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().find_map(|(len, map)| {
                    let key = mask6(a, *len);
                    map.get(&key).map(|&org| {
                        let net = ipnet::Ipv6Net::new(key.into(), *len)
                            .map(IpNet::V6)
                            .unwrap_or_default();
                        (org, net)
                    })
                })
            }
        }
    }

    /// Identify a client, and say how.
    pub(crate) fn identify(&self, hints: &ClientHints) -> (Identity, Reason) {
        if let Some(token) = hints.doh_token.as_deref().filter(|t| !t.is_empty()) {
            return match self.tokens.get(token) {
                Some(&org) => (Identity::Org(org), Reason::DohToken),
                None => (Identity::UnknownToken, Reason::UnknownDohToken),
            };
        }
        if let Some(label) = hints.dot_label.as_deref().filter(|l| !l.is_empty()) {
            let found = if label.bytes().any(|b| b.is_ascii_uppercase()) {
                self.dot_names.get(label.to_ascii_lowercase().as_str())
            } else {
                self.dot_names.get(label)
            };
            if let Some(&org) = found {
                return (Identity::Org(org), Reason::DotName(label.to_owned()));
            }
        }
        match self.by_ip(hints.ip) {
            Some((org, net)) => (Identity::Org(org), Reason::Network(net)),
            None => (Identity::NoOrg, Reason::None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Transport;

    #[test]
    fn longest_prefix_wins() {
        let mut ix = IdentityIndex::default();
        assert_eq!(ix.add_network("10.0.0.0/8".parse().unwrap(), 0), None);
        assert_eq!(ix.add_network("10.1.0.0/16".parse().unwrap(), 1), None);
        assert_eq!(ix.add_network("10.1.0.0/16".parse().unwrap(), 2), Some(1));
        assert_eq!(ix.add_network("2001:db8::/32".parse().unwrap(), 2), None);
        let id = |ip: &str| {
            ix.identify(&ClientHints::plain(ip.parse().unwrap(), Transport::Udp))
                .0
        };
        assert_eq!(id("10.1.2.3"), Identity::Org(1));
        assert_eq!(id("10.2.2.3"), Identity::Org(0));
        assert_eq!(id("::ffff:10.2.2.3"), Identity::Org(0));
        assert_eq!(id("2001:db8::1"), Identity::Org(2));
        assert_eq!(id("192.0.2.1"), Identity::NoOrg);
    }

    #[test]
    fn token_then_sni_then_network() {
        let mut ix = IdentityIndex::default();
        ix.add_network("0.0.0.0/0".parse().unwrap(), 0);
        ix.add_token("tok", 1);
        ix.add_dot_name("acme", 2);
        let mut h = ClientHints::plain("192.0.2.1".parse().unwrap(), Transport::Doh);
        h.doh_token = Some("tok".into());
        assert_eq!(ix.identify(&h).0, Identity::Org(1));
        h.doh_token = Some("nope".into());
        assert_eq!(ix.identify(&h).0, Identity::UnknownToken);
        h.doh_token = None;
        h.dot_label = Some("ACME".into());
        assert_eq!(ix.identify(&h).0, Identity::Org(2));
        h.dot_label = Some("other".into());
        assert_eq!(ix.identify(&h).0, Identity::Org(0));
    }
}
