//! The finished record of one query: what observability receives.

use std::net::IpAddr;
use std::time::Duration;

use crate::query::{ActionLabel, Transport};
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
    /// The client's port (0 where the transport does not say).
    pub client_port: u16,
    /// The query's wire bytes as received (empty when not kept: only dnstap
    /// reads them, see `Observer::wants_wire`).
    pub query: &'a [u8],
    /// The reply's wire bytes as sent (None: nothing was sent).
    pub reply: Option<&'a [u8]>,
    /// Organization id (`""` when none).
    pub org: &'a str,
    /// Lower-case name, no trailing dot (`""` when the query had none).
    pub qname: &'a str,
    pub qtype: u16,
    /// Extended RCODE sent (None when the query was dropped).
    pub rcode: Option<u16>,
    /// What was done (`resolve`, `allow`, `block`, ...; `malformed` for rejected packets).
    pub action: ActionLabel,
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

/// RCODE labels in metric-table order: `none` means no answer was sent
/// (dropped); codes without a mnemonic here are `OTHER`.
pub const RCODES: [&str; 9] = [
    "none", "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];

/// Every action label's spelling, in [`ActionLabel::ALL`] order (tables indexed by
/// `label as usize`, and the values `/api/recent` accepts).
pub const ACTIONS: [&str; ActionLabel::ALL.len()] = {
    let mut out = [""; ActionLabel::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = ActionLabel::ALL[i].as_str();
        i += 1;
    }
    out
};

/// Index of `action` in [`ACTIONS`] and [`ActionLabel::ALL`].
#[inline]
pub fn action_index(action: ActionLabel) -> usize {
    action as usize
}

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
        Transport::Doq => 4,
    }
}

#[cfg(test)]
impl Outcome<'static> {
    /// An A query over UDP from 198.51.100.77 for organization `acme`, resolved from the
    /// cache: the observers' tests change the fields they are about.
    pub(crate) fn sample() -> Self {
        Outcome {
            transport: Transport::Udp,
            client_ip: IpAddr::from([198, 51, 100, 77]),
            client_port: 0,
            query: &[],
            reply: None,
            org: "acme",
            qname: "www.example.test",
            qtype: 1,
            rcode: Some(0),
            action: ActionLabel::Resolve,
            rule: None,
            audited: &[],
            cache: CacheStatus::Hit,
            upstream: None,
            ede: None,
            duration: Duration::from_micros(40),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_agree_with_their_indexes() {
        for (i, a) in ActionLabel::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i, "{a}");
        }
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
