//! The client's answer, put together from the authoritative responses:
//! the CNAME chain (DNAMEs with the CNAMEs they synthesize among them) in
//! chain order across zones, then the data asked for or the negative
//! answer (rcode and SOA of the last name's zone).

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::resolve::Reply;
use crate::config::Limits;
use crate::dnssec::{self, dname};
use crate::protocol::answer::{Answer, AnswerError};
use crate::upstream::validated::attach_ede;
use crate::upstream::UpstreamError;

/// The client's question, owned by the resolution task.
pub(crate) struct Question {
    pub(crate) name: Name,
    pub(crate) qtype: RecordType,
    pub(crate) dnssec_ok: bool,
    pub(crate) cd: bool,
}

/// One CNAME of the chain: the record (and its RRSIGs for DO clients) and
/// the name it points to.
pub(crate) struct Link {
    target: Name,
    records: Vec<Record>,
}

/// What one zone's response gave: the CNAME links within its bailiwick in
/// chain order, and how the last name ended (`None`: the chain leaves the
/// zone, and goes on from the last target).
pub(crate) struct Stretch {
    links: Vec<Link>,
    /// When the chain goes on: the response's NSEC and NSEC3 records with
    /// their RRSIGs (DO), which prove its links that are wildcard
    /// expansions (RFC 4035 §5.3.4); the ending carries its own.
    proofs: Vec<Record>,
    end: Option<Ending>,
}

/// The end of the chain: the RRset asked for, or the rcode and the final
/// zone's SOA with NSEC proofs for DO clients (RFC 2308; RFC 6604: after a
/// CNAME the rcode is the last name's).
pub(crate) struct Ending {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

impl Stretch {
    /// Walks the chain in `reply` from `name` (each CNAME's owner the
    /// previous target, whatever order the records came in) while it stays
    /// in the zone that answered: a record about a name outside it is not
    /// that zone's to give (bailiwick), so the chain goes on from there with
    /// a new iteration.
    pub(crate) fn from_reply(reply: &Reply, name: &Name, q: &Question) -> Stretch {
        let message = &reply.message;
        let mut links: Vec<Link> = Vec::new();
        let mut owner = name.clone();
        // A CNAME question is answered by the CNAME at the name, not
        // followed; a DNAME above the name is, for every type (RFC 6672
        // §3.1: the name is replaced and the lookup starts again), so a
        // CNAME question under a DNAME is answered at the new name.
        let follow_cnames = !matches!(q.qtype, RecordType::CNAME | RecordType::ANY);
        if q.qtype != RecordType::ANY {
            loop {
                let link = match dname_link(reply, &owner, q.dnssec_ok) {
                    Some(Ok(link)) => link,
                    Some(Err(too_long)) => {
                        return Stretch {
                            links,
                            proofs: Vec::new(),
                            end: Some(too_long),
                        }
                    }
                    None if follow_cnames => match link_at(message, &owner, q.dnssec_ok) {
                        Some(link) => link,
                        None => break,
                    },
                    None => break,
                };
                let looped = *name == link.target || links.iter().any(|l| l.target == link.target);
                owner = link.target.clone();
                links.push(link);
                if looped {
                    break;
                }
                if !reply.zone.zone_of(&owner) {
                    let proofs = denial_proofs(message, q.dnssec_ok);
                    return Stretch {
                        links,
                        proofs,
                        end: None,
                    };
                }
            }
        }
        let end = ending_at(message, &reply.zone, &owner, q, !links.is_empty());
        let proofs = match end {
            Some(_) => Vec::new(),
            None => denial_proofs(message, q.dnssec_ok),
        };
        Stretch { links, proofs, end }
    }
}

/// The NSEC and NSEC3 records of `message`'s authority section with the
/// RRSIGs over them, none unless DO: in a positive answer, the proof that a
/// wildcard-expanded name does not exist itself (RFC 4035 §3.1.3.3), which
/// the validator needs and a DO client gets, as from Unbound.
fn denial_proofs(message: &Message, dnssec_ok: bool) -> Vec<Record> {
    if !dnssec_ok {
        return Vec::new();
    }
    with_rrsigs(&message.authorities, &[RecordType::NSEC, RecordType::NSEC3])
        .cloned()
        .collect()
}

/// The records among `records` of one of `types`, and the RRSIGs over them.
pub(crate) fn with_rrsigs<'a>(
    records: &'a [Record],
    types: &'a [RecordType],
) -> impl Iterator<Item = &'a Record> + 'a {
    records.iter().filter(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => types.contains(&sig.input().type_covered),
        _ => types.contains(&r.record_type()),
    })
}

/// The DNAME of the answering zone above `owner` (RFC 6672), as a link:
/// the DNAME with its RRSIGs for a DO client, then the CNAME it
/// synthesizes for `owner`, made here from the DNAME (TTL the DNAME's,
/// §3.4) rather than taken from the server, so a CNAME that disagrees
/// with its DNAME is never followed. `Err`: the new name would be too
/// long, and the answer is YXDOMAIN with the DNAME (§2.2).
fn dname_link(reply: &Reply, owner: &Name, dnssec_ok: bool) -> Option<Result<Link, Ending>> {
    let message = &reply.message;
    let (record, target) = message
        .answers
        .iter()
        .filter(|r| r.name != *owner && r.name.zone_of(owner) && reply.zone.zone_of(&r.name))
        .filter_map(|r| Some((r, dname::target(r)?)))
        .max_by_key(|(r, _)| r.name.num_labels())?;
    let mut records = vec![record.clone()];
    records.extend(signatures(
        message,
        &record.name,
        RecordType::DNAME,
        dnssec_ok,
    ));
    let synthesized = match dname::substitute(owner, &record.name, &target) {
        Ok(name) => name,
        Err(_) => {
            return Some(Err(Ending {
                rcode: ResponseCode::YXDomain,
                answers: records,
                authorities: Vec::new(),
            }))
        }
    };
    let cname = RData::CNAME(CNAME(synthesized.clone()));
    records.push(Record::from_rdata(owner.clone(), record.ttl, cname));
    Some(Ok(Link {
        target: synthesized,
        records,
    }))
}

/// The CNAME owned by `owner`, with its RRSIGs for a DO client.
fn link_at(message: &Message, owner: &Name, dnssec_ok: bool) -> Option<Link> {
    let (record, target) = cname_at(&message.answers, owner)?;
    let mut records = vec![record.clone()];
    records.extend(signatures(message, owner, RecordType::CNAME, dnssec_ok));
    Some(Link { target, records })
}

/// The CNAME owned by `owner` among `answers`, and its target.
pub(crate) fn cname_at<'m>(answers: &'m [Record], owner: &Name) -> Option<(&'m Record, Name)> {
    answers.iter().find_map(|r| match &r.data {
        RData::CNAME(target) if r.name == *owner => Some((r, target.0.clone())),
        _ => None,
    })
}

/// RRSIGs over `owner`'s `covered` RRset, none unless the client set DO.
fn signatures(
    message: &Message,
    owner: &Name,
    covered: RecordType,
    dnssec_ok: bool,
) -> Vec<Record> {
    if !dnssec_ok {
        return Vec::new();
    }
    rrsigs_over(&message.answers, owner, covered)
}

/// The RRSIGs among `records` over `owner`'s `covered` RRset.
pub(crate) fn rrsigs_over(records: &[Record], owner: &Name, covered: RecordType) -> Vec<Record> {
    records
        .iter()
        .filter(|r| r.name == *owner)
        .filter(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered == covered,
            _ => false,
        })
        .cloned()
        .collect()
}

/// How the chain ends at `owner`: its records of the asked type (each once,
/// then their RRSIGs), or a negative answer with the SOA. `None` when the
/// chain reached `owner` through CNAMEs and the response says nothing
/// about it (a cut below the zone): it is asked on its own.
fn ending_at(
    message: &Message,
    zone: &Name,
    owner: &Name,
    q: &Question,
    after_cname: bool,
) -> Option<Ending> {
    let wanted = |t: RecordType| {
        t == q.qtype || (q.qtype == RecordType::ANY && !t.is_dnssec() && t != RecordType::OPT)
    };
    let mut answers: Vec<Record> = Vec::new();
    for record in message.answers.iter().filter(|r| r.name == *owner) {
        if wanted(record.record_type()) && !answers.contains(record) {
            answers.push(record.clone());
        }
    }
    let mut types: Vec<RecordType> = answers.iter().map(Record::record_type).collect();
    types.dedup();
    for covered in types {
        answers.extend(signatures(message, owner, covered, q.dnssec_ok));
    }
    if !answers.is_empty() {
        return Some(Ending {
            rcode: ResponseCode::NoError,
            answers,
            authorities: denial_proofs(message, q.dnssec_ok),
        });
    }
    let soa_covers = message.authorities.iter().any(|r| {
        r.record_type() == RecordType::SOA && r.name.zone_of(owner) && zone.zone_of(&r.name)
    });
    if after_cname && !soa_covers {
        return None;
    }
    // A signed zone's negative answer for a CNAME's (or DNAME's) target,
    // to be validated: the target is asked on its own, as Unbound does. The
    // proof that came with the chain may be for the name asked rather than
    // for the target (NSD after a DNAME sends the wildcard's NSEC alone);
    // the target's own answer carries its proof. An unsigned zone's (no
    // RRSIG) costs no query more.
    if after_cname && q.dnssec_ok && is_signed(message) {
        return None;
    }
    let rcode = match message.metadata.response_code {
        ResponseCode::NXDomain => ResponseCode::NXDomain,
        _ => ResponseCode::NoError,
    };
    let authorities = message
        .authorities
        .iter()
        .filter(|r| match r.record_type() {
            RecordType::SOA => true,
            t if dnssec::is_dnssec_record_type(t) => q.dnssec_ok,
            _ => false,
        })
        .cloned()
        .collect();
    Some(Ending {
        rcode,
        answers: Vec::new(),
        authorities,
    })
}

/// Whether `message`'s authority section is signed (holds an RRSIG).
fn is_signed(message: &Message) -> bool {
    message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG)
}

/// The answer as it is put together, stretch by stretch.
pub(crate) struct Assembled {
    /// The names passed, the question's first.
    chain: Vec<Name>,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// Denial records of the stretches before the last ([`Stretch::proofs`]).
    proofs: Vec<Record>,
    rcode: ResponseCode,
}

impl Assembled {
    pub(crate) fn new(qname: &Name) -> Self {
        Self {
            chain: vec![qname.clone()],
            answers: Vec::new(),
            authorities: Vec::new(),
            proofs: Vec::new(),
            rcode: ResponseCode::NoError,
        }
    }

    /// A negative answer (NXDOMAIN or NODATA) for `qname` with `authorities`.
    pub(crate) fn negative(qname: &Name, rcode: ResponseCode, authorities: Vec<Record>) -> Self {
        Self {
            authorities,
            rcode,
            ..Self::new(qname)
        }
    }

    pub(crate) fn last_name(&self) -> &Name {
        self.chain
            .last()
            .expect("the chain starts with the question")
    }

    /// CNAMEs followed so far.
    pub(crate) fn links(&self) -> usize {
        self.chain.len() - 1
    }

    /// Adds `stretch`'s links, then its ending. True when the answer is
    /// complete; false when the chain goes on from the last name.
    pub(crate) fn extend(
        &mut self,
        stretch: Stretch,
        limits: &Limits,
    ) -> Result<bool, UpstreamError> {
        for link in stretch.links {
            self.push_link(link, limits)?;
        }
        self.proofs.extend(stretch.proofs);
        let Some(end) = stretch.end else {
            return Ok(false);
        };
        self.answers.extend(end.answers);
        self.authorities = end.authorities;
        for record in std::mem::take(&mut self.proofs) {
            if !self.authorities.contains(&record) {
                self.authorities.push(record);
            }
        }
        self.rcode = end.rcode;
        Ok(true)
    }

    fn push_link(&mut self, link: Link, limits: &Limits) -> Result<(), UpstreamError> {
        if self.chain.contains(&link.target) {
            let mut names: Vec<String> = self.chain.iter().map(ToString::to_string).collect();
            names.push(link.target.to_string());
            return Err(UpstreamError::Unusable(format!(
                "CNAME loop: {}",
                names.join(" → ")
            )));
        }
        // The chain holds the question plus one name per link.
        if self.chain.len() > limits.recursion_max_cname_chain {
            return Err(UpstreamError::Resolution(format!(
                "CNAME chain longer than {} (limit recursion_max_cname_chain)",
                limits.recursion_max_cname_chain
            )));
        }
        self.answers.extend(link.records);
        self.chain.push(link.target);
        Ok(())
    }

    /// The response, its records moved in: QR=1, RA=1, the question as
    /// asked, AD clear (see [`finish`]). One message serves the validator
    /// and the client, so the records are neither cloned nor emitted twice.
    pub(crate) fn into_message(self, q: &Question) -> Message {
        let mut message = Message::response(0, OpCode::Query);
        message.metadata.message_type = MessageType::Response;
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.metadata.response_code = self.rcode;
        message.add_query(Query::query(q.name.clone(), q.qtype));
        message.answers = self.answers;
        message.authorities = self.authorities;
        message
    }
}

/// The client's answer from `message` (made by [`Assembled::into_message`]
/// for `name_wire`, the question as the cache key holds it): RRSIG, NSEC
/// and NSEC3 records dropped for a client without DO
/// ([`dnssec::strip_for_client_without_do`]), AD
/// when `secure` and something is left to vouch for, `ede` attached; then
/// indexed for the cache straight from the message (no wire form to parse
/// again).
pub(crate) fn finish(
    mut message: Message,
    q: &Question,
    name_wire: &[u8],
    secure: bool,
    ede: Option<(u16, String)>,
) -> Result<Answer, UpstreamError> {
    if !q.dnssec_ok {
        dnssec::strip_for_client_without_do(&mut message);
    }
    let has_records = !message.answers.is_empty() || !message.authorities.is_empty();
    message.metadata.authentic_data = secure && has_records;
    if let Some((code, text)) = &ede {
        attach_ede(&mut message, *code, text);
    }
    Answer::from_message(message, name_wire).map_err(|e| match e {
        AnswerError::CnameLoop(chain) => UpstreamError::Unusable(chain),
        e => UpstreamError::Resolution(format!("cannot encode the answer: {e}")),
    })
}
