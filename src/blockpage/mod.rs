//! The block page (`--block-page`, `--block-page-tls`): a rule with `"block_page": true` answers
//! A/AAAA queries with the block page's addresses, and the browser that follows them gets a
//! small page saying what was blocked, by which rule, for which organization, and why.
//!
//! - This file: the state the pipeline and the page share ([`BlockPage`]): the addresses
//!   answers carry, the answers given lately (so the page names the rule that answered *that*
//!   client), and the request counters. It sits beside `policy`: the pipeline records into it.
//! - `page.rs`: the HTML, its translations and the choice of language (`Accept-Language`).
//! - `server.rs`: the HTTP and HTTPS listener, on a thread of its own like the admin listener.

mod page;
mod server;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use page::{choose_language, render, Language, View, LANGUAGES};
pub use server::{spawn, Listeners};

use crate::config::{BlockPageSettings, Limits};
use crate::policy::{Action, Identity, PolicySet, Verdict};
use crate::protocol::wire::rtype;

/// What the page shows about one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The rule's id (`org/id` for an organization's rule, as EDE and the query log spell it).
    pub rule: Box<str>,
    /// The rule's name.
    pub rule_name: Box<str>,
    /// The client's organization: its name, else its id; empty for none.
    pub org: Box<str>,
    /// The rule's `block_reason`.
    pub reason: Option<Box<str>>,
    /// When the block was decided.
    pub at: jiff::Timestamp,
}

impl Blocked {
    /// What a block verdict for a client of `identity` shows; None for a verdict that is no
    /// rule's block.
    pub fn from_verdict(
        policy: &PolicySet,
        identity: &Identity,
        verdict: &Verdict,
    ) -> Option<Self> {
        let (Action::Block(block), Some(rule)) = (&verdict.action, &verdict.rule) else {
            return None;
        };
        let org = identity
            .org_name(policy)
            .unwrap_or_else(|| identity.org_id(policy));
        Some(Self {
            rule: rule.key.as_ref().into(),
            rule_name: rule.name.as_ref().into(),
            org: org.into(),
            reason: block.reason.clone(),
            at: jiff::Timestamp::now(),
        })
    }
}

/// Where the page found what it shows, as the `source` label of
/// `picket_block_page_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The block-page answer this client was given for this name.
    Answer,
    /// No such answer remembered: the policy, evaluated again for the name and client.
    Policy,
    /// Neither blocks this name for this client (a stale DNS cache, another resolver, a
    /// visit by address): the page says only that the name was blocked.
    Unknown,
}

impl Source {
    pub const ALL: [Source; 3] = [Self::Answer, Self::Policy, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Policy => "policy",
            Self::Unknown => "unknown",
        }
    }
}

/// The `scheme` label of `picket_block_page_requests_total`.
pub const SCHEMES: [&str; 2] = ["http", "https"];

/// The block page's shared state: built once at start when a block page is served.
pub struct BlockPage {
    addresses: Vec<IpAddr>,
    /// Block-page answers by (client address, name), bounded in entries and age
    /// (`Limits::block_page_recent`, `block_page_recent_ttl`).
    recent: moka::sync::Cache<(IpAddr, Box<str>), Arc<Blocked>>,
    /// Requests by scheme and source ([`SCHEMES`] × [`Source::ALL`]).
    requests: [[AtomicU64; 3]; 2],
}

impl BlockPage {
    pub fn new(settings: &BlockPageSettings, limits: &Limits) -> Self {
        Self {
            addresses: settings.addresses.clone(),
            recent: moka::sync::Cache::builder()
                .max_capacity(limits.block_page_recent)
                .time_to_live(limits.block_page_recent_ttl)
                .build(),
            requests: Default::default(),
        }
    }

    /// The addresses A/AAAA answers of `"block_page": true` rules carry.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Remembers that `client` was sent to the block page for `name` (lower case, no trailing
    /// dot) because of `blocked`.
    pub fn record(&self, client: IpAddr, name: &str, blocked: Blocked) {
        self.recent.insert((client, name.into()), Arc::new(blocked));
    }

    /// The block-page answer `client` was given for `name`, if still remembered.
    pub fn recent(&self, client: IpAddr, name: &str) -> Option<Arc<Blocked>> {
        self.recent.get(&(client, name.into()))
    }

    /// Counts one page served.
    pub fn count(&self, https: bool, source: Source) {
        self.requests[usize::from(https)][source as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Pages served so far over `scheme` ([`SCHEMES`]) from `source`.
    pub fn requests(&self, scheme: &str, source: Source) -> u64 {
        let https = usize::from(scheme == SCHEMES[1]);
        self.requests[https][source as usize].load(Ordering::Relaxed)
    }
}

/// Whether a query of type `qtype` that `verdict` blocks is answered with the block page's
/// addresses: the rule asks for it (`"block_page": true`), a block page is served, and the query
/// is for an address. Other types keep the rule's `mode`.
pub fn shows_page(verdict: &Verdict, qtype: u16, page: Option<&BlockPage>) -> bool {
    let asks = matches!(&verdict.action, Action::Block(b) if b.block_page);
    asks && page.is_some() && matches!(qtype, rtype::A | rtype::AAAA)
}
