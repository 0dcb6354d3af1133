//! Getting answers from elsewhere: forwarding to upstream nameservers, or
//! recursion from the root. This stage never sees listener types: it takes a
//! question and returns an answer's wire bytes.

pub mod coalesce;
pub mod forward;
pub mod health;
pub mod iterate;
pub mod recursor;
pub mod sockets;
pub mod spec;
pub mod transport;
pub mod validated;

use std::net::SocketAddr;
use std::path::Path;

pub use coalesce::{Coalescer, Role, Unshared};
pub use forward::{ExchangeSink, Forwarder, ForwarderSettings, ForwarderStats, UpstreamQuery};
pub use health::Health;
pub use recursor::{DnssecMode, Recursive, RecursorSettings};
pub use sockets::{PoolLimits, UdpPool};
pub use spec::{Upstream, UpstreamSpec};
pub use transport::{read_ca_file, CaFileError, StreamLimits};
pub use validated::Validation;

use crate::protocol::wire::ede;

/// Why no upstream answer could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream answered in time")]
    Timeout,
    #[error("network error talking to the upstream: {0}")]
    Network(String),
    #[error("the upstream's answer was malformed or for another question")]
    Malformed,
    #[error("no upstream servers are configured")]
    NoServers,
    #[error("too many upstream queries in flight")]
    Overloaded,
    /// No share of the fetch in flight for this question: too many queries
    /// wait on it already, or it stopped without a result.
    #[error("{0}")]
    Unshared(#[from] Unshared),
    /// Recursion found no usable answer (lame or failing servers, a limit).
    #[error("resolution failed: {0}")]
    Resolution(String),
    /// DNSSEC validation failed (RFC 4035 §5.5: SERVFAIL).
    #[error("DNSSEC validation failed: {0}")]
    Bogus(String),
    /// A trust anchor's zone has no DNSKEY matching the anchor (RFC 4035
    /// §5: its data is bogus; a stale anchor, or a key rollover gone wrong).
    #[error("DNSSEC validation failed: {0}")]
    DnskeyMissing(String),
    /// Picket's own validator judged a forwarded answer bogus: SERVFAIL
    /// with the validator's Extended DNS Error (RFC 8914: 6, 7, 8, 9, 10...).
    #[error("DNSSEC validation failed: {reason}")]
    Dnssec { ede: u16, reason: String },
    /// The answer cannot be used as it stands, e.g. a CNAME loop.
    #[error("unusable answer: {0}")]
    Unusable(String),
    /// Every upstream declined the question, the last one with `rcode`
    /// (REFUSED, NOTIMP, FORMERR; a SERVFAIL is passed on as it came).
    #[error("upstream {server} answered {rcode}")]
    Rejected { server: String, rcode: &'static str },
}

impl UpstreamError {
    /// The Extended DNS Error (RFC 8914) a client is told, if one fits.
    /// A CNAME loop has none: RFC 8914 names no code for it, and Unbound and
    /// Knot send a bare SERVFAIL.
    pub fn ede(&self) -> Option<u16> {
        match self {
            // RFC 8914 §4.23: "could not reach any of the authoritative
            // name servers (or they potentially refused to reply)".
            Self::Timeout | Self::NoServers | Self::Resolution(_) | Self::Rejected { .. } => {
                Some(ede::NO_REACHABLE_AUTHORITY)
            }
            Self::Network(_) | Self::Malformed => Some(ede::NETWORK_ERROR),
            Self::Overloaded | Self::Unshared(_) => Some(ede::NOT_READY),
            Self::Bogus(_) => Some(ede::DNSSEC_BOGUS),
            Self::DnskeyMissing(_) => Some(ede::DNSKEY_MISSING),
            Self::Dnssec { ede, .. } => Some(*ede),
            Self::Unusable(_) => None,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Network(_) => "network",
            Self::Malformed => "malformed",
            Self::NoServers => "no_servers",
            Self::Overloaded => "overloaded",
            Self::Unshared(Unshared::TooManyWaiting) => "too_many_waiting",
            Self::Unshared(Unshared::Abandoned) => "abandoned",
            Self::Resolution(_) => "resolution",
            Self::Bogus(_) | Self::DnskeyMissing(_) | Self::Dnssec { .. } => "bogus",
            Self::Unusable(_) => "unusable",
            Self::Rejected { .. } => "declined",
        }
    }
}

/// The nameservers of a resolv.conf file (hickory-resolver parses it), minus
/// any address in `exclude` (our own listeners: never forward to ourselves).
pub fn servers_from_resolv_conf(
    path: &Path,
    exclude: &[SocketAddr],
) -> std::io::Result<Vec<SocketAddr>> {
    let data = std::fs::read(path)?;
    let (config, _) = hickory_resolver::system_conf::parse_resolv_conf(data)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut servers: Vec<SocketAddr> = Vec::new();
    for ns in config.name_servers() {
        let port = ns.connections.first().map_or(53, |c| c.port);
        let addr = SocketAddr::new(ns.ip, port);
        let is_self = exclude
            .iter()
            .any(|l| l.port() == addr.port() && (l.ip() == addr.ip() || l.ip().is_unspecified()));
        if !is_self && !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_servers_exclude_ourselves() {
        let dir = crate::testing::fresh_dir("resolv");
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            "# test\nnameserver 127.0.0.1\nnameserver 192.0.2.53\nsearch x.test\n",
        )
        .unwrap();
        let me: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let servers = servers_from_resolv_conf(&path, &[me]).unwrap();
        assert_eq!(servers, vec!["192.0.2.53:53".parse().unwrap()]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
