//! Picket's own DNSSEC validator (RFC 4033-4035, 5155, 6840, 9276), used
//! by forwarding (`upstream::validated`) and by the iterator.
//!
//! A floor of its own beside `protocol`: it imports hickory-proto and
//! `config` only, never `upstream`, `pipeline` or `policy`, so both the
//! forwarder and the iterator can call it.
//!
//! # How to use it (iterator and forwarder alike)
//!
//! 1. Build one [`Validator`] at start-up from [`ValidatorSettings`]
//!    ([`TrustAnchors::builtin_root`] or [`TrustAnchors::parse`] of the
//!    `--trust-anchor` file, plus the `--negative-trust-anchor` zones) and
//!    share it between workers in an `Arc`: its caches of validated DNSKEY
//!    and DS RRsets are what make the chain of trust cost nothing per query.
//! 2. Implement [`Fetch`]: given a name and `DNSKEY` or `DS`, return the
//!    response to that question asked with DO=1 (the iterator: from the
//!    zone's authorities, for DS from the parent's; the forwarder: from its
//!    upstream with DO=1 CD=1). A DS that does not exist must come back with
//!    its NSEC/NSEC3 denial in the authority section, as servers send it.
//! 3. For every complete response you are about to cache (asked with DO=1,
//!    all CNAMEs of a chain in the answer section, the denial proof in the
//!    authority section), call [`Validator::validate`]; store the
//!    [`Security`] with the answer so it is never judged twice.
//! 4. `Secure`: set AD for clients that sent DO or AD, and keep the answer
//!    no longer than its signatures allow ([`secure_ttl_cap`],
//!    [`cap_ttls`]). `Insecure`: answer
//!    without AD; `InsecureUnsupported { ede, .. }` likewise, with that
//!    Extended DNS Error attached. `Bogus { ede, .. }`: SERVFAIL with that Extended DNS Error
//!    (RFC 8914), cached briefly as a failure. `Indeterminate`: the
//!    validator could not fetch what it needed (the upstream failed);
//!    SERVFAIL, EDE 6 is the closest code, and do not cache it for long.
//!
//! Names at or under a negative trust anchor, and names under no anchor,
//! are `Insecure` without any fetch.

mod anchors;
mod budget;
mod chain;
mod denial;
pub mod dname;
mod sentinel;
mod short_rsa;

use std::future::Future;
use std::pin::Pin;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub use anchors::{AnchorError, TrustAnchors};
pub use budget::Budget;

/// What a validator is configured with.
#[derive(Debug, Clone)]
pub struct ValidatorSettings {
    /// The trust anchors, one or more zones (islands of security).
    pub anchors: TrustAnchors,
    /// Negative trust anchors (RFC 7646): names at or under them are not
    /// validated, as Unbound's `domain-insecure`.
    pub negative_anchors: Vec<Name>,
}

/// The verdict on a response (RFC 4033 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Every RRset and denial proof validated up to a trust anchor.
    Secure,
    /// Provably unsigned (an insecure delegation, no anchor above the name,
    /// a negative trust anchor, an unsupported algorithm or digest).
    Insecure,
    /// Insecure because the zone uses something this validator declines to
    /// check (RFC 9276 §3.2: NSEC3 iterations over the cap): answered
    /// without AD, with Extended DNS Error `ede` (27) saying why, as Unbound
    /// and BIND do.
    InsecureUnsupported { ede: u16, reason: String },
    /// Should validate and does not: SERVFAIL with Extended DNS Error `ede`.
    Bogus { ede: u16, reason: String },
    /// What validation needed could not be fetched.
    Indeterminate { reason: String },
}

/// A failed [`Fetch`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// The future a [`Fetch`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Message, FetchError>> + Send + 'a>>;

/// How the validator gets DNSKEY and DS RRsets with their RRSIGs (and, for a
/// DS that does not exist, the NSEC/NSEC3 proof): the iterator asks the
/// zone's (for DS: the parent's) authorities with DO=1; the forwarder asks
/// its upstream with DO=1 CD=1.
pub trait Fetch: Send + Sync {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a>;

    /// The same RRset asked of the authorities themselves, when `fetch`
    /// answers it from records kept (the iterator: a DS RRset from the
    /// parent's referral); None when `fetch` asks them anyway.
    fn refetch<'a>(&'a self, _name: &'a Name, _rtype: RecordType) -> Option<FetchFuture<'a>> {
        None
    }
}

pub use chain::{cap_ttls, Validator};

/// [`chain::secure_ttl_cap`] from now: the seconds a `Secure` response may
/// be kept, by its RRSIGs' original TTLs and expiry (RFC 4035 §5.3.3).
pub fn secure_ttl_cap(response: &Message) -> Option<u32> {
    chain::secure_ttl_cap(response, chain::unix_now())
}

/// RRSIG, NSEC and NSEC3: the records a client without DO is not given
/// (RFC 4035 §3.2.1), but for the answer it asked for
/// ([`strip_for_client_without_do`]).
pub fn is_dnssec_record_type(t: RecordType) -> bool {
    matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
}

/// The RRSIG, NSEC and NSEC3 records of `message` a client without DO is
/// not given (RFC 4035 §3.2.1): all of them, but in the answer section those
/// of the type it asked for (RFC 3225 §3) owned by a name the answer is
/// about, the question's or a CNAME's target; a DNAME's RRSIG above them is
/// not what was asked. Removes them; true when there were any.
pub fn strip_for_client_without_do(message: &mut Message) -> bool {
    let is_dnssec = |r: &Record| is_dnssec_record_type(r.record_type());
    let sections = || {
        (message.answers.iter())
            .chain(&message.authorities)
            .chain(&message.additionals)
    };
    // Most answers (every insecure one) carry none: nothing to rebuild.
    let Some(question) = message
        .queries
        .first()
        .filter(|_| sections().any(is_dnssec))
    else {
        return false;
    };
    let asked = question.query_type();
    let mut names: Vec<Name> = vec![question.name().clone()];
    names.extend(message.answers.iter().filter_map(|r| match &r.data {
        RData::CNAME(target) => Some(target.0.clone()),
        _ => None,
    }));
    let before = message.answers.len() + message.authorities.len() + message.additionals.len();
    message
        .answers
        .retain(|r| !is_dnssec(r) || (r.record_type() == asked && names.contains(&r.name)));
    message.authorities.retain(|r| !is_dnssec(r));
    message.additionals.retain(|r| !is_dnssec(r));
    before != message.answers.len() + message.authorities.len() + message.additionals.len()
}

pub(crate) use denial::nsec3_owner_hash;
pub use denial::nxdomain_for_an_empty_non_terminal;

/// Extended DNS Error codes (RFC 8914): the validator's are in the one table of them all.
pub use crate::protocol::wire::ede;

#[cfg(test)]
mod tests;
