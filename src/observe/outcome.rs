//! The finished record of one query: what observability receives.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::query::Transport;

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
    /// Deciding rule id and name, if any.
    pub rule: Option<(&'a str, &'a str)>,
    pub cache: CacheStatus,
    /// Upstream that answered, when one was asked.
    pub upstream: Option<SocketAddr>,
    /// Extended DNS Error sent, if any.
    pub ede: Option<u16>,
    /// Time from receipt to response.
    pub duration: Duration,
}
