//! The finished record of one query: what observability receives.

use std::net::IpAddr;
use std::time::Duration;

use crate::query::Transport;
use crate::upstream::Upstream;

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from a fresh cache entry.
    Hit,
    /// Fetched upstream (by this query or one it shared with).
    Miss,
    /// Served from an expired entry because the upstream failed (RFC 8767).
    Stale,
    /// Not a cacheable question: synthesized, refused or malformed.
    None,
}

impl CacheStatus {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::None => "none",
        }
    }
}

/// One query, finished. Borrowed, so that recording it costs nothing when
/// no query log is written.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub transport: Transport,
    pub client_ip: IpAddr,
    /// Organization id (`""` when none).
    pub org: &'a str,
    /// Lower-case name, no trailing dot (`""` when the query had none).
    pub qname: &'a str,
    pub qtype: u16,
    /// Extended RCODE sent (None when the query was dropped).
    pub rcode: Option<u16>,
    /// Policy action label (`resolve`, `allow`, `block`, ...; `malformed` for rejected packets).
    pub action: &'static str,
    /// Deciding rule key (`org/id`, or `id` for a global rule) and name, if any.
    pub rule: Option<(&'a str, &'a str)>,
    /// `audit` rules that matched (key, name): recorded, no action taken.
    pub audited: &'a [(&'a str, &'a str)],
    pub cache: CacheStatus,
    /// Upstream that answered, when one was asked.
    pub upstream: Option<&'a Upstream>,
    /// Extended DNS Error sent, if any.
    pub ede: Option<u16>,
    /// Time from receipt to response.
    pub duration: Duration,
}

/// Every action label the pipeline and the policy emit, in metric-table order.
/// Anything else is counted as `other` (the set stays bounded whatever a
/// future caller passes).
pub const ACTIONS: [&str; 14] = [
    "resolve",
    "local",
    "malformed",
    "denied",
    "ratelimited",
    "allow",
    "block",
    "override",
    "refuse",
    "drop",
    "truncate",
    "audit",
    "overloaded",
    "other",
];

/// Index of `action` in [`ACTIONS`].
#[inline]
pub fn action_index(action: &str) -> usize {
    match action {
        "resolve" => 0,
        "local" => 1,
        "malformed" => 2,
        "denied" => 3,
        "ratelimited" => 4,
        "allow" => 5,
        "block" => 6,
        "override" => 7,
        "refuse" => 8,
        "drop" => 9,
        "truncate" => 10,
        "audit" => 11,
        "overloaded" => 12,
        _ => 13,
    }
}

/// RCODE labels in metric-table order: `none` means no answer was sent
/// (dropped); codes without a mnemonic here are `OTHER`.
pub const RCODES: [&str; 9] = [
    "none", "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];

/// Index of `rcode` in [`RCODES`].
#[inline]
pub fn rcode_index(rcode: Option<u16>) -> usize {
    match rcode {
        None => 0,
        Some(c @ 0..=5) => c as usize + 1,
        Some(16) => 7,
        Some(_) => 8,
    }
}

/// Index of a transport in [`Transport::ALL`].
#[inline]
pub fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Doh => 2,
        Transport::Dot => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_agree_with_their_indexes() {
        for (i, a) in ACTIONS.iter().enumerate() {
            assert_eq!(action_index(a), i, "{a}");
        }
        assert_eq!(ACTIONS[action_index("something new")], "other");
        for code in [0u16, 1, 2, 3, 4, 5, 16] {
            assert_eq!(
                RCODES[rcode_index(Some(code))],
                crate::protocol::wire::rcode::name(code)
            );
        }
        assert_eq!(RCODES[rcode_index(Some(9))], "OTHER");
        assert_eq!(RCODES[rcode_index(None)], "none");
        for (i, t) in Transport::ALL.iter().enumerate() {
            assert_eq!(transport_index(*t), i);
        }
    }
}
