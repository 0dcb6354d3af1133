//! The value types that flow down the query's path.
//!
//! They live on the lowest floor so that every stage (protocol, policy, cache,
//! upstream, observe) can name them without importing a higher stage.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// How a query reached Picket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain DNS over UDP (RFC 1035).
    Udp,
    /// Plain DNS over TCP (RFC 7766).
    Tcp,
    /// DNS over HTTPS (RFC 8484).
    Doh,
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over QUIC (RFC 9250). DoH over HTTP/3 is [`Transport::Doh`]: the
    /// same requests and answers, only the HTTP version differs.
    Doq,
}

impl Transport {
    /// Every transport, for pre-creating metric handles.
    pub const ALL: [Transport; 5] = [Self::Udp, Self::Tcp, Self::Doh, Self::Dot, Self::Doq];

    /// The lower-case name used in policies (`dns.transport`), logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Doh => "doh",
            Self::Dot => "dot",
            Self::Doq => "doq",
        }
    }

    /// Whether the transport is a stream (no UDP size limit, no truncation).
    pub fn is_stream(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was done with a query, under the one name metrics (`action` label), the query log,
/// `picket explain` and `picket check` all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionLabel {
    /// Resolved with no rule deciding, or by a `resolve` rule.
    Resolve,
    /// Answered locally (CHAOS, the health name, AXFR refused).
    Local,
    /// Not a DNS query Picket could parse.
    Malformed,
    /// Outside the access list.
    Denied,
    /// Over the rate limit.
    RateLimited,
    /// Resolved because an `allow` rule said so.
    Allow,
    Block,
    Override,
    Refuse,
    Drop,
    Truncate,
    /// An `audit` rule (never decides a query; named for the rule tables).
    Audit,
    /// Too many queries in flight for the client.
    Overloaded,
}

impl ActionLabel {
    /// Every label, in metric-table order (`as usize` indexes it).
    pub const ALL: [ActionLabel; 13] = [
        Self::Resolve,
        Self::Local,
        Self::Malformed,
        Self::Denied,
        Self::RateLimited,
        Self::Allow,
        Self::Block,
        Self::Override,
        Self::Refuse,
        Self::Drop,
        Self::Truncate,
        Self::Audit,
        Self::Overloaded,
    ];

    /// The label's one spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Local => "local",
            Self::Malformed => "malformed",
            Self::Denied => "denied",
            Self::RateLimited => "ratelimited",
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Override => "override",
            Self::Refuse => "refuse",
            Self::Drop => "drop",
            Self::Truncate => "truncate",
            Self::Audit => "audit",
            Self::Overloaded => "overloaded",
        }
    }
}

impl fmt::Display for ActionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the listener knows about who sent a query, before any policy is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHints {
    /// The client's address (after any trusted proxy handling).
    pub ip: IpAddr,
    /// The client's port (0 where unknown); only dnstap records it.
    pub port: u16,
    /// The transport the query came over.
    pub transport: Transport,
    /// DoH path token: `/dns-query/{token}`.
    pub doh_token: Option<String>,
    /// DoT: first label of the TLS server name (SNI).
    pub dot_label: Option<String>,
}

impl ClientHints {
    /// Hints for a plain UDP/TCP client.
    pub fn plain(ip: IpAddr, transport: Transport) -> Self {
        Self {
            ip,
            port: 0,
            transport,
            doh_token: None,
            dot_label: None,
        }
    }

    /// Hints for a plain UDP/TCP/DoT client at `peer`.
    pub fn from_peer(peer: std::net::SocketAddr, transport: Transport) -> Self {
        Self {
            port: peer.port(),
            ..Self::plain(peer.ip(), transport)
        }
    }
}

/// Everything the policy may look at for one query (the request phase).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Query name, lower case, no trailing dot (`""` for the root).
    pub qname: &'a str,
    /// Query type number.
    pub qtype: u16,
    /// Query class number.
    pub qclass: u16,
    /// Client address.
    pub client_ip: IpAddr,
    /// Transport the query came over.
    pub transport: Transport,
    /// The DNSSEC OK bit of the query's EDNS record.
    pub dnssec_ok: bool,
}

impl<'a> Facts<'a> {
    /// An IN-class query for `qname` and `qtype`, without the DNSSEC OK bit,
    /// from the client `hints` describe (what `picket explain` and the fuzz
    /// targets ask about).
    pub fn question(qname: &'a str, qtype: u16, hints: &ClientHints) -> Self {
        Self {
            qname,
            qtype,
            qclass: 1,
            client_ip: hints.ip,
            transport: hints.transport,
            dnssec_ok: false,
        }
    }
}

/// Which upstreams answer a question: the server's own, or one of the
/// policy's named upstream groups (split DNS).
///
/// The cache keys answers by it, so two organizations that route one name
/// differently never share an answer; the pipeline's upstream stage reads it
/// to pick the servers. It lives here so that the cache can key by it without
/// knowing anything about fetching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum RouteId {
    /// The server's own upstreams (forwarding) or recursion from the root.
    #[default]
    Default,
    /// A named upstream group from the policy (`resolve` action).
    Group(Arc<str>),
}

impl RouteId {
    /// The route a `resolve` verdict names: its upstream group, if any.
    pub fn for_group(group: Option<Arc<str>>) -> Self {
        group.map_or(Self::Default, Self::Group)
    }
}
