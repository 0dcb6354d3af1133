//! Which organization a client belongs to.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::Identity;
use crate::query::ClientHints;

/// Lookup tables built at load time.
#[derive(Debug, Default)]
pub(crate) struct IdentityIndex {
    tokens: HashMap<Box<str>, u32>,
    dot_names: HashMap<Box<str>, u32>,
    v4: Networks<u32>,
    v6: Networks<u128>,
}

/// Gives `key` to `org` unless another org has it already; returns that org.
/// The first claim stands, so the loader can name both claimants.
fn claim<K: Eq + Hash>(owners: &mut HashMap<K, u32>, key: K, org: u32) -> Option<u32> {
    match owners.entry(key) {
        Entry::Occupied(first) => Some(*first.get()),
        Entry::Vacant(slot) => {
            slot.insert(org);
            None
        }
    }
}

/// An address as the integer its bits make, so that one lookup serves IPv4
/// (`u32`) and IPv6 (`u128`).
trait AddressBits: Copy + Eq + Hash {
    /// The network of `len` bits this address is in.
    fn masked(self, len: u8) -> Self;
    /// This network address and prefix length as an `IpNet`.
    fn to_net(self, len: u8) -> IpNet;
}

/// Implements [`AddressBits`] for the integer of one address family.
macro_rules! address_bits {
    ($bits:ty, $address:ty) => {
        impl AddressBits for $bits {
            fn masked(self, len: u8) -> Self {
                // A shift by the full width (prefix 0) overflows: no bit is kept.
                self & <$bits>::MAX
                    .checked_shl(<$bits>::BITS - u32::from(len))
                    .unwrap_or(0)
            }

            fn to_net(self, len: u8) -> IpNet {
                IpNet::new(<$address>::from(self).into(), len).unwrap_or_default()
            }
        }
    };
}

address_bits!(u32, Ipv4Addr);
address_bits!(u128, Ipv6Addr);

/// The client networks of one address family: for each prefix length in use,
/// network address → org, longest prefix first so that the first match is the
/// longest. A lookup masks and probes once per prefix length, without
/// allocating (it runs for every query).
#[derive(Debug, Default)]
struct Networks<A> {
    by_prefix: Vec<(u8, HashMap<A, u32>)>,
}

impl<A: AddressBits> Networks<A> {
    /// Adds a network (its address already truncated to `len` bits); returns
    /// the org already using exactly this network, if any.
    fn insert(&mut self, network: A, len: u8, org: u32) -> Option<u32> {
        claim(self.of_prefix(len), network, org)
    }

    /// The table for prefix length `len`, made (in order) if new.
    fn of_prefix(&mut self, len: u8) -> &mut HashMap<A, u32> {
        let pos = match self.by_prefix.iter().position(|(l, _)| *l == len) {
            Some(pos) => pos,
            None => {
                self.by_prefix.push((len, HashMap::new()));
                self.by_prefix.sort_by_key(|(l, _)| std::cmp::Reverse(*l));
                self.by_prefix
                    .iter()
                    .position(|(l, _)| *l == len)
                    .unwrap_or(0)
            }
        };
        &mut self.by_prefix[pos].1
    }

    /// The org of the longest network containing `addr`, and that network.
    fn longest_match(&self, addr: A) -> Option<(u32, IpNet)> {
        self.by_prefix.iter().find_map(|(len, orgs)| {
            let network = addr.masked(*len);
            orgs.get(&network).map(|&org| (org, network.to_net(*len)))
        })
    }
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

impl IdentityIndex {
    /// Add a DoH token; returns the org already using it, if any.
    pub(crate) fn add_token(&mut self, token: &str, org: u32) -> Option<u32> {
        claim(&mut self.tokens, token.into(), org)
    }

    /// Add a DoT name label (lower case); returns the org already using it, if any.
    pub(crate) fn add_dot_name(&mut self, name: &str, org: u32) -> Option<u32> {
        claim(&mut self.dot_names, name.into(), org)
    }

    /// Add a client network; returns the org already using exactly this network, if any.
    pub(crate) fn add_network(&mut self, net: IpNet, org: u32) -> Option<u32> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n.network().into(), n.prefix_len(), org),
            IpNet::V6(n) => self.v6.insert(n.network().into(), n.prefix_len(), org),
        }
    }

    /// The longest network containing `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn by_ip(&self, ip: IpAddr) -> Option<(u32, IpNet)> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.longest_match(v4.into()),
            IpAddr::V6(v6) => self.v6.longest_match(v6.into()),
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
    fn whole_family_and_single_address_prefixes_match_and_are_reported() {
        let mut ix = IdentityIndex::default();
        ix.add_network("0.0.0.0/0".parse().unwrap(), 0);
        ix.add_network("192.0.2.9/32".parse().unwrap(), 1);
        ix.add_network("::/0".parse().unwrap(), 2);
        ix.add_network("2001:db8::9/128".parse().unwrap(), 3);
        ix.add_network("2001:db8::/33".parse().unwrap(), 4);
        let found = |ip: &str| {
            let (org, net) = ix.by_ip(ip.parse().unwrap()).unwrap();
            (org, net.to_string())
        };
        assert_eq!(found("192.0.2.9"), (1, "192.0.2.9/32".into()));
        assert_eq!(found("192.0.2.8"), (0, "0.0.0.0/0".into()));
        assert_eq!(found("2001:db8::9"), (3, "2001:db8::9/128".into()));
        assert_eq!(found("2001:db8:7fff::1"), (4, "2001:db8::/33".into()));
        assert_eq!(found("2001:db8:8000::1"), (2, "::/0".into()));
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
