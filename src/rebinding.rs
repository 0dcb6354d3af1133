//! DNS rebinding protection (`--rebind-protection`): a public name whose
//! answer holds a private or special-use address is blocked, so a web page
//! cannot turn a victim's browser against the victim's own network. Names
//! under private zones, and names a policy rule explicitly allows or routes,
//! keep their answers. (A policy can do the same with a `dns.response.ip`
//! rule, as the example global policy does; this flag is for running
//! without one.)

use std::net::IpAddr;

use crate::policy::{Action, BlockAnswer, BlockMode, Verdict, EDE_FILTERED};

/// Zones whose names may legitimately resolve to private addresses
/// (RFC 6761, RFC 8375, RFC 6762, ICANN's `.internal`).
const PRIVATE_ZONES: &[&str] = &["localhost", "local", "lan", "home.arpa", "internal", "arpa"];

/// TTL of the block.
const BLOCK_TTL: u32 = 60;

/// The block for an answer to `qname` that rebinds, if it does.
pub fn screen(qname: &str, addresses: &[IpAddr]) -> Option<Verdict> {
    // Addresses first: nearly every answer has only public ones, and those
    // few integer tests are cheaper than the zone suffixes compared on every hit.
    if !addresses.iter().any(|a| is_private(*a)) || in_private_zone(qname) {
        return None;
    }
    Some(Verdict {
        action: Action::Block(BlockAnswer::plain(
            BlockMode::NxDomain,
            BLOCK_TTL,
            EDE_FILTERED,
        )),
        rule: None,
        audited: Vec::new(),
    })
}

fn in_private_zone(qname: &str) -> bool {
    PRIVATE_ZONES.iter().any(|zone| {
        qname == *zone
            || qname
                .strip_suffix(zone)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// Addresses no public name should resolve to: loopback, private (RFC 1918,
/// RFC 4193), shared (RFC 6598), link-local, unspecified, multicast-free
/// special ranges, and IPv4-mapped forms of them.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || first & 0xfe00 == 0xfc00
                    || first & 0xffc0 == 0xfe80
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_for_public_names_are_blocked() {
        let private: IpAddr = "192.168.1.1".parse().unwrap();
        let public: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(screen("evil.example.com", &[public, private]).is_some());
        assert!(screen("evil.example.com", &[public]).is_none());
        assert!(screen("printer.home.arpa", &[private]).is_none());
        assert!(screen("nas.lan", &[private]).is_none());
        assert!(
            screen("plan", &[private]).is_some(),
            "a suffix match needs a label boundary"
        );
        for p in [
            "10.1.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in ["8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
    }
}
