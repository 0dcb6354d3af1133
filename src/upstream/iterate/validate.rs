//! The validator's side of the iterator: DNSKEY and DS fetches from the
//! authorities (DS from the parent side of the cut, RFC 4035 §4.2), charged
//! to the client query's budget, and the verdict turned into an answer.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{Name, RecordType};

use super::assemble::Question;
use super::budget::Budget;
use super::infra::Delegation;
use super::Engine;
use crate::dnssec::{ede, Fetch, FetchError, FetchFuture, Security};
use crate::upstream::UpstreamError;

/// The validator's fetches for one client query.
pub(crate) struct Fetcher<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) budget: &'a Budget<'a>,
}

impl Fetch for Fetcher<'_> {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a> {
        if let Some(delegation) = self.referral_with_ds_records(name, rtype) {
            return Box::pin(std::future::ready(Ok(ds_answer(&delegation))));
        }
        self.ask(name, rtype)
    }

    fn refetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> Option<FetchFuture<'a>> {
        self.referral_with_ds_records(name, rtype)
            .map(|_| self.ask(name, rtype))
    }
}

impl Fetcher<'_> {
    fn ask<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a> {
        Box::pin(async move {
            self.engine
                .iterate(self.budget, name, rtype, 0, true)
                .await
                .map(|reply| reply.message)
                .map_err(|e| FetchError(format!("fetching {name} {rtype}: {e}")))
        })
    }

    /// For a DS fetch: the known delegation to `name` if its referral
    /// carried the DS RRset or the proof it has none (see `ParentSide`).
    fn referral_with_ds_records(&self, name: &Name, rtype: RecordType) -> Option<Arc<Delegation>> {
        if rtype != RecordType::DS {
            return None;
        }
        let delegation = self.engine.infra.delegation(name, Instant::now())?;
        delegation.parent_side.is_some().then_some(delegation)
    }
}

/// The answer a DS query to the parent would bring, from what its referral
/// to `delegation` carried, without the round trip.
fn ds_answer(delegation: &Delegation) -> Message {
    let mut message = Message::response(0, OpCode::Query);
    if let Some(kept) = &delegation.parent_side {
        message.answers = kept.ds.clone();
        message.authorities = kept.denial.clone();
    }
    message
}

/// What the validator said of an answer it let through.
pub(crate) struct Verdict {
    /// Secure: AD for clients that sent DO or AD.
    pub(crate) secure: bool,
    /// Insecure for a reason the client is told (EDE 27, RFC 9276).
    pub(crate) ede: Option<(u16, String)>,
}

/// [`verdict`] for a client's question. With CD=1 the client takes
/// responsibility for its own checking (RFC 4035 §3.2.2): a bogus or
/// unjudgeable answer is given to it as it came, without AD, and a secure
/// one with AD (§3.2.3: AD if and only if the resolver found it authentic),
/// as Unbound and BIND do.
pub(crate) fn verdict_for(q: &Question, security: Security) -> Result<Verdict, UpstreamError> {
    match verdict(security) {
        Err(_) if q.cd => Ok(Verdict {
            secure: false,
            ede: None,
        }),
        judged => judged,
    }
}

/// The verdict on an answer that may be given, or the error a bogus one is.
fn verdict(security: Security) -> Result<Verdict, UpstreamError> {
    let plain = |secure| Verdict { secure, ede: None };
    match security {
        Security::Secure => Ok(plain(true)),
        Security::Insecure => Ok(plain(false)),
        Security::InsecureUnsupported { ede, reason } => Ok(Verdict {
            secure: false,
            ede: Some((ede, reason)),
        }),
        Security::Bogus { ede, reason } if ede == ede::DNSKEY_MISSING => {
            Err(UpstreamError::DnskeyMissing(reason))
        }
        // The validator's own code (7 Signature Expired, 8 Not Yet Valid,
        // 10 RRSIGs Missing, 12 NSEC Missing, 6 otherwise), as forwarding
        // and Unbound tell it.
        Security::Bogus { ede, reason } => Err(UpstreamError::Dnssec { ede, reason }),
        // RFC 4035 §5.5 / the validator's contract: SERVFAIL, EDE 6.
        Security::Indeterminate { reason } => Err(UpstreamError::Bogus(reason)),
    }
}
