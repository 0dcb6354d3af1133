//! Answers made up on the spot from a policy verdict: blocks, overrides,
//! refusals and forced truncation (the actions of policies/README.md).
//!
//! Every block carries an Extended DNS Error (RFC 8914: 15 Blocked or 17
//! Filtered) naming the rule, so `dig` shows why a name did not resolve.
//! Negative blocks carry an SOA so stub resolvers cache them (RFC 2308) for the
//! rule's short TTL, not for a day.

use std::net::IpAddr;

use crate::blockpage::{self, BlockPage};
use crate::policy::{Action, BlockMode, OverrideAnswer, Verdict};
use crate::protocol::build::synthetic_soa_rdata;
use crate::protocol::wire::{flag, rcode, rtype};
use crate::protocol::{EdnsOut, Request, ResponseWriter, Section};

/// A synthesized answer: bytes to send, or nothing (the `drop` action).
pub enum Synthesized {
    Reply(Vec<u8>),
    Drop,
}

/// The answer for a verdict that does not resolve. `edns` is our OPT for
/// this client (None when the query had none); `limit` the size limit;
/// `page` the block page when one is served (`"block_page": true` rules
/// then answer A/AAAA with its addresses, see [`blockpage::shows_page`]).
pub fn answer(
    req: &Request,
    verdict: &Verdict,
    edns: Option<EdnsOut<'_>>,
    limit: usize,
    page: Option<&BlockPage>,
) -> Synthesized {
    let text = verdict.ede_text().unwrap_or_default();
    let reply = match &verdict.action {
        Action::Block(block) => {
            let edns = edns.map(|e| e.with_ede(block.ede, &text));
            match page.filter(|_| blockpage::shows_page(verdict, req.qtype, page)) {
                Some(page) => {
                    address_answer(req, page.addresses(), block.ttl, edns.as_ref(), limit)
                }
                None => block_answer(req, &block.mode, block.ttl, edns.as_ref(), limit),
            }
        }
        Action::Override(over) => {
            address_answer(req, &over.addresses, over.ttl, edns.as_ref(), limit)
        }
        Action::Refuse => {
            let edns = edns.map(|e| e.with_ede(crate::protocol::wire::ede::PROHIBITED, &text));
            ResponseWriter::new(req, rcode::REFUSED as u16).finish(edns.as_ref(), limit)
        }
        Action::Truncate => {
            let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
            w.set_flags(flag::TC);
            w.finish(edns.as_ref(), limit)
        }
        Action::Drop => return Synthesized::Drop,
        Action::Resolve { .. } => {
            ResponseWriter::new(req, rcode::SERVFAIL as u16).finish(edns.as_ref(), limit)
        }
    };
    Synthesized::Reply(reply)
}

fn block_answer(
    req: &Request,
    mode: &BlockMode,
    ttl: u32,
    edns: Option<&EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    match mode {
        BlockMode::NxDomain => negative(req, rcode::NXDOMAIN, ttl, edns, limit),
        BlockMode::NoData => negative(req, rcode::NOERROR, ttl, edns, limit),
        BlockMode::Refused => ResponseWriter::new(req, rcode::REFUSED as u16).finish(edns, limit),
        BlockMode::Null => {
            let unspecified = [IpAddr::from([0u8; 4]), IpAddr::from([0u8; 16])];
            address_answer(req, &unspecified, ttl, edns, limit)
        }
        BlockMode::Addresses(addrs) => address_answer(req, addrs, ttl, edns, limit),
    }
}

/// NXDOMAIN or NODATA with our SOA (negative TTL = the rule's TTL).
fn negative(
    req: &Request,
    code: u8,
    ttl: u32,
    edns: Option<&EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    let mut w = ResponseWriter::new(req, code as u16);
    w.record_at_question(
        Section::Authority,
        rtype::SOA,
        ttl,
        &synthetic_soa_rdata(ttl),
    );
    w.finish(edns, limit)
}

/// A/AAAA records of the query's family from `addrs`; NODATA (with SOA) when
/// there are none of that family or the query is for another type.
fn address_answer(
    req: &Request,
    addrs: &[IpAddr],
    ttl: u32,
    edns: Option<&EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    let matching: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|a| {
            matches!(
                (req.qtype, a),
                (rtype::A, IpAddr::V4(_)) | (rtype::AAAA, IpAddr::V6(_))
            )
        })
        .collect();
    if matching.is_empty() {
        return negative(req, rcode::NOERROR, ttl, edns, limit);
    }
    let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
    for addr in matching {
        w.address(Section::Answer, addr, ttl);
    }
    w.finish(edns, limit)
}

/// An override to a CNAME: the CNAME record, then the target's answer
/// records (already expanded, from [`crate::protocol::Answer::answer_records`]),
/// with the target's RCODE (NXDOMAIN if the target does not exist).
pub fn cname_answer(
    req: &Request,
    over: &OverrideAnswer,
    target: &str,
    target_rcode: u8,
    target_records: &[Vec<u8>],
    edns: Option<&EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    let mut w = ResponseWriter::new(req, target_rcode as u16);
    let mut rdata = Vec::with_capacity(target.len() + 2);
    if crate::protocol::wire::push_name(&mut rdata, target).is_none() {
        return ResponseWriter::new(req, rcode::SERVFAIL as u16).finish(edns, limit);
    }
    w.record_at_question(Section::Answer, rtype::CNAME, over.ttl, &rdata);
    for record in target_records {
        w.raw_record(Section::Answer, record);
    }
    w.finish(edns, limit)
}
