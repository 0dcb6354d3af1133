//! Recursive mode's settings and the files it reads: root hints, trust
//! anchors, and the counters it keeps. The iterator itself, which resolves
//! from the root down, is [`super::iterate`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hickory_proto::rr::Name;
use hickory_proto::serialize::txt::{ParseError, Parser};
use ipnet::IpNet;

pub use super::iterate::Recursive;
use crate::config::Limits;
use crate::dnssec::{AnchorError, TrustAnchors};

/// The IANA root hints (named.root format), used unless `--root-hints` is given.
pub const IANA_ROOT_HINTS: &str = include_str!("root.hints");

/// Whether answers are DNSSEC-validated in recursive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnssecMode {
    /// Validate (RFC 4035): AD on secure answers, SERVFAIL (EDE 6) on bogus ones.
    Validate,
    /// Ask for DNSSEC records (so DO clients get them) but validate nothing.
    Off,
}

/// How recursion runs.
#[derive(Debug, Clone)]
pub struct RecursorSettings {
    /// Addresses of the root servers (port 53, unless `nameserver_ports` says otherwise).
    pub root_hints: Vec<IpAddr>,
    /// Validation on or off.
    pub dnssec: DnssecMode,
    /// Trust anchors as zone-file text (DS or DNSKEY records, like Unbound's
    /// `trust-anchor-file`); `None`: the built-in root KSKs (20326, 38696).
    pub trust_anchor: Option<String>,
    /// Negative trust anchors (RFC 7646): names at or under these zones are
    /// not validated (insecure), like Unbound's `domain-insecure`.
    pub negative_anchors: Vec<Name>,
    /// Randomise the case of query names on UDP and require it echoed (0x20).
    pub case_randomization: bool,
    /// Show each server only one label more than the zone it serves (RFC 9156); off
    /// (`--no-qname-minimisation`), every server is asked the whole name, as test suites
    /// written before RFC 7816 expect (Deckard's `query-minimization: off`).
    pub qname_minimisation: bool,
    /// Never send queries to these networks. Default: [`default_deny_servers`]
    /// (loopback, RFC 1918, link-local, documentation, ...); labs empty it
    /// (`--allow-private-nameservers`).
    pub deny_servers: Vec<IpNet>,
    /// Labs and tests: queries to these nameserver addresses go to this port
    /// instead of 53 (a fake hierarchy on loopback cannot bind port 53
    /// without root).
    pub nameserver_ports: HashMap<IpAddr, u16>,
}

impl Default for RecursorSettings {
    fn default() -> Self {
        Self {
            root_hints: parse_root_hints(IANA_ROOT_HINTS).expect("built-in root hints parse"),
            dnssec: DnssecMode::Validate,
            trust_anchor: None,
            negative_anchors: Vec::new(),
            case_randomization: false,
            qname_minimisation: true,
            deny_servers: default_deny_servers(),
            nameserver_ports: HashMap::new(),
        }
    }
}

/// Networks an authoritative server on the Internet never has: a referral
/// to one is a misconfiguration or an attempt to reach the resolver's own
/// network (RFC 6890 special-purpose registries; the same list as
/// hickory's recursor and Unbound's `do-not-query-address` defaults plus
/// private ranges).
pub fn default_deny_servers() -> Vec<IpNet> {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|n| n.parse().expect("built-in network parses"))
    .collect()
}

/// Why the recursor could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecursorError {
    #[error("no root hints: give --root-hints a file with A/AAAA records")]
    NoRootHints,
    #[error("bad trust anchor (--trust-anchor): {0}")]
    TrustAnchor(AnchorError),
}

/// Why a root hints file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RootHintsError {
    #[error("{0}")]
    Syntax(ParseError),
    #[error("no A or AAAA record for any root server")]
    NoAddress,
}

/// Why a trust-anchor file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustAnchorFileError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] AnchorError),
}

/// The A/AAAA addresses of a root hints file (zone-file format, like named.root).
pub fn parse_root_hints(text: &str) -> Result<Vec<IpAddr>, RootHintsError> {
    let (_, sets) = Parser::new(text, None, Some(Name::root()))
        .parse()
        .map_err(RootHintsError::Syntax)?;
    let mut ips: Vec<IpAddr> = sets
        .values()
        .flat_map(|set| set.records_without_rrsigs())
        .filter_map(|r| r.data.ip_addr())
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(RootHintsError::NoAddress);
    }
    Ok(ips)
}

/// Checks a trust-anchor file, for `picket serve` to fail early on a bad one.
pub fn check_trust_anchor(path: &Path) -> Result<String, TrustAnchorFileError> {
    let text = std::fs::read_to_string(path)?;
    TrustAnchors::parse(&text)?;
    Ok(text)
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct RecursorStats {
    /// Queries sent to authoritative servers.
    pub sent: AtomicU64,
    /// Client queries stopped by the query budget.
    pub over_budget: AtomicU64,
    /// Queries not sent because the server was held down after timeouts.
    pub held_down: AtomicU64,
    /// Answers served from the failure cache.
    pub failure_cache_hits: AtomicU64,
    /// Answers fetched again over TCP after TC=1.
    pub tcp: AtomicU64,
    /// Upstream responses from which RRSIGs or DNSKEYs were dropped (KeyTrap).
    pub scrubbed: AtomicU64,
    /// Root primings (RFC 8109) that gave the root's servers.
    pub primings: AtomicU64,
    /// Root primings that failed: the hints were used instead.
    pub priming_failures: AtomicU64,
    /// Negative answers made from cached, validated NSEC records (RFC 8198)
    /// without asking the zone's servers.
    pub aggressive_nsec: AtomicU64,
    /// Resolutions asked again, other servers first, after an answer was
    /// found bogus.
    pub bogus_retries: AtomicU64,
}

/// How long a question that failed `strikes` times in a row stays failed:
/// the base (at least 1 s, RFC 9520), doubled per strike, capped.
pub(crate) fn failure_ttl(limits: &Limits, strikes: u32) -> Duration {
    let base = limits.recursion_failure_ttl.max(Duration::from_secs(1));
    base.saturating_mul(1u32 << strikes.min(16))
        .min(limits.recursion_failure_ttl_max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_root_hints_have_all_thirteen_servers() {
        let ips = parse_root_hints(IANA_ROOT_HINTS).unwrap();
        assert_eq!(ips.iter().filter(|ip| ip.is_ipv4()).count(), 13);
        assert_eq!(ips.iter().filter(|ip| ip.is_ipv6()).count(), 13);
        assert!(ips.contains(&"198.41.0.4".parse().unwrap()));
    }

    #[test]
    fn root_hints_without_addresses_are_refused() {
        assert!(parse_root_hints(". 3600 NS a.root.test.").is_err());
    }

    #[test]
    fn failure_backoff_doubles_up_to_the_cap() {
        let limits = Limits::default();
        assert_eq!(failure_ttl(&limits, 0), Duration::from_secs(5));
        assert_eq!(failure_ttl(&limits, 1), Duration::from_secs(10));
        assert_eq!(failure_ttl(&limits, 10), Duration::from_secs(300));
    }
}
