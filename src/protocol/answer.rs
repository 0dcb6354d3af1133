//! An upstream answer, checked once and indexed so it can be served many times
//! from its wire bytes: on every serve only the ID, the question's case, the
//! flags and the TTLs are patched: a hit is never re-encoded, because
//! re-encoding costs more than the rest of serving it (docs/architecture.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smallvec::SmallVec;

use super::build::EdnsOut;
use super::parse::Request;
use super::verbatim;
use super::wire::{self, flag, rcode, rtype, Header, WireError, HEADER_LEN};

/// What kind of answer the upstream gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// NOERROR with records in the answer section.
    Positive,
    /// NXDOMAIN (RFC 2308 name error).
    NxDomain,
    /// NOERROR with an empty answer section (RFC 2308 NODATA).
    NoData,
    /// SERVFAIL, REFUSED or another error RCODE.
    Failure,
}

/// Why an upstream's bytes were not accepted as an answer to our question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("malformed response: {0:?}")]
    Malformed(WireError),
    #[error("response does not parse: {0}")]
    Unparsable(String),
    #[error("not a response")]
    NotAResponse,
    #[error("response is for another question")]
    WrongQuestion,
    /// The answer's CNAME chain comes back to a name it already passed, so it
    /// can never end in data. The text spells the chain out.
    #[error("CNAME loop: {0}")]
    CnameLoop(String),
}

impl From<WireError> for AnswerError {
    fn from(e: WireError) -> Self {
        Self::Malformed(e)
    }
}

// Inline room in an [`Answer`] for a small answer's bytes, TTL offsets and addresses. A cache
// hit reads all three: kept in the answer's own allocation they are one memory fetch (a few
// adjacent cache lines) instead of three pointers chased one after the other, which was most of
// a hit's user-space time on a large cache. Larger answers spill to the heap as before.
const INLINE_BYTES: usize = 128;
const INLINE_RECORDS: usize = 4;
const INLINE_ADDRESSES: usize = 2;

/// An upstream answer ready to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response without its OPT record, question as the upstream echoed it.
    bytes: SmallVec<[u8; INLINE_BYTES]>,
    /// Length of the question section (name + type + class).
    question_len: usize,
    /// Offsets of every record's TTL field.
    ttl_offsets: SmallVec<[u32; INLINE_RECORDS]>,
    /// Kind of answer.
    pub kind: AnswerKind,
    /// The RCODE (4 bits; extended RCODEs from upstream become SERVFAIL).
    pub rcode: u8,
    /// How long the answer stays fresh: the smallest TTL of its records, or the
    /// negative TTL from the SOA (RFC 2308 §5). 0 when it must not be cached.
    pub ttl: u32,
    /// Every A/AAAA address in the answer section (for response-phase rules).
    pub addresses: SmallVec<[IpAddr; INLINE_ADDRESSES]>,
    /// Every CNAME target in the answer section, lower case, no trailing dot.
    pub cnames: Vec<String>,
    /// The upstream's Extended DNS Error, passed through to clients.
    pub ede: Option<(u16, String)>,
}

impl Answer {
    /// Checks `bytes` as the upstream's answer to (`name_wire`, `qtype`,
    /// `qclass`) and indexes it. The name comparison ignores case.
    pub fn from_upstream(
        bytes: &[u8],
        name_wire: &[u8],
        qtype: u16,
        qclass: u16,
    ) -> Result<Answer, AnswerError> {
        let header = Header::read(bytes)?;
        // Only a QUERY response answers a query (hickory reads UPDATE
        // sections under other rules, so check before trusting its parse).
        if !header.is_response() || header.opcode() != 0 {
            return Err(AnswerError::NotAResponse);
        }
        if !question_matches(bytes, &header, name_wire, qtype, qclass) {
            return Err(AnswerError::WrongQuestion);
        }
        let question_len = name_wire.len() + 4;
        match Self::verbatim(bytes, &header, question_len, qtype) {
            Some(answer) => Ok(answer),
            None => Self::reencoded(bytes, name_wire),
        }
    }

    /// The answer stored as it came, minus its OPT, when [`verbatim::storable`]
    /// finds it canonical already and its CNAME chain does not loop (a loop
    /// is spelled out by [`Self::reencoded`]'s parse). None: re-encode it.
    fn verbatim(bytes: &[u8], header: &Header, question_len: usize, qtype: u16) -> Option<Answer> {
        let keep = verbatim::storable(bytes, header, question_len)?;
        // Straight into the answer's own storage: no copy in between.
        let mut stored = SmallVec::from_slice(&bytes[..keep.len]);
        stored[10..12].copy_from_slice(&keep.arcount.to_be_bytes());
        let answer = Self::indexed(stored, question_len, false, None).ok()?;
        let may_loop = !answer.cnames.is_empty() && !matches!(qtype, rtype::CNAME | rtype::ANY);
        if may_loop && cname_chain_loops(&answer.bytes).unwrap_or(true) {
            return None;
        }
        Some(answer)
    }

    /// The answer parsed and re-encoded through hickory-proto: what we store
    /// is then canonical (no pointers into the header we patch, no trailing
    /// bytes, names compressed only backwards), parses for every client, and
    /// carries no OPT or TSIG (hop-by-hop, RFC 6891 §6.1.1: never cached).
    fn reencoded(bytes: &[u8], name_wire: &[u8]) -> Result<Answer, AnswerError> {
        let message = hickory_proto::op::Message::from_vec(bytes)
            .map_err(|e| AnswerError::Unparsable(e.to_string()))?;
        Self::from_message(message, name_wire)
    }

    /// Indexes `message`, a response to (`name_wire`, ...) that Picket put
    /// together itself (the iterator's, whose question is the key's), as
    /// [`Self::from_upstream`] does with an upstream's once parsed: a CNAME
    /// loop refused, its EDE kept, its OPT dropped. Encoded once, here.
    pub fn from_message(
        mut message: hickory_proto::op::Message,
        name_wire: &[u8],
    ) -> Result<Answer, AnswerError> {
        if let Some(chain) = cname_loop(&message) {
            return Err(AnswerError::CnameLoop(chain));
        }
        let ede = message.edns.as_ref().and_then(upstream_ede);
        let extended_rcode = u16::from(message.metadata.response_code) > 0xf;
        if extended_rcode {
            message.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
        }
        message.edns = None;
        message.signature = None;
        let canonical = message
            .to_vec()
            .map_err(|e| AnswerError::Unparsable(e.to_string()))?;
        let question_len = name_wire.len() + 4;
        let stored = SmallVec::from_slice(&canonical);
        Ok(Self::indexed(stored, question_len, extended_rcode, ede)?)
    }

    /// Indexes stored bytes (canonical, without OPT) for serving.
    fn indexed(
        stored: SmallVec<[u8; INLINE_BYTES]>,
        question_len: usize,
        extended_rcode: bool,
        ede: Option<(u16, String)>,
    ) -> Result<Answer, WireError> {
        let header = Header::read(&stored)?;
        let records = header.ancount as usize + header.nscount as usize + header.arcount as usize;
        let mut index = Index::default();
        index.ttl_offsets.reserve_exact(records);
        wire::walk_records(&stored, |span| index.visit(&stored, span))?;
        let kind = if extended_rcode {
            AnswerKind::Failure
        } else {
            classify(&header, &index)
        };
        let ttl = match kind {
            AnswerKind::Positive => index.min_ttl.unwrap_or(0),
            AnswerKind::NxDomain | AnswerKind::NoData => index.negative_ttl.unwrap_or(0),
            AnswerKind::Failure => 0,
        };
        Ok(Answer {
            bytes: stored,
            question_len,
            ttl_offsets: index.ttl_offsets,
            kind,
            rcode: header.rcode(),
            ttl,
            addresses: index.addresses,
            cnames: index.cnames,
            ede,
        })
    }

    /// Bytes held, for the cache's weigher.
    pub fn weight(&self) -> usize {
        let spilled = |held: bool, bytes: usize| if held { bytes } else { 0 };
        // The lists grow as the index is built, so a spilled one may hold more than its length.
        spilled(self.bytes.spilled(), self.bytes.len())
            + spilled(self.ttl_offsets.spilled(), self.ttl_offsets.capacity() * 4)
            + self.cnames.iter().map(|c| c.len() + 24).sum::<usize>()
            + spilled(self.addresses.spilled(), self.addresses.capacity() * 17)
            + self.ede.as_ref().map_or(0, |(_, text)| text.len())
            + std::mem::size_of::<Self>()
    }

    /// Writes the response to `req`: ID and question case from the request,
    /// flags for a recursive answer, every TTL lowered by `age` seconds and capped at
    /// `ttl_cap`, the upstream's EDE kept, our OPT when the client sent one.
    /// Over `limit` bytes, the records are dropped and TC is set.
    pub fn write_reply(
        &self,
        req: &Request,
        age: u32,
        ttl_cap: u32,
        edns: Option<&EdnsOut>,
        limit: usize,
    ) -> Vec<u8> {
        let opt_len = edns.map_or(0, EdnsOut::len);
        let question_end = HEADER_LEN + self.question_len;
        let truncated = self.bytes.len() + opt_len > limit;
        let keep = if truncated {
            question_end
        } else {
            self.bytes.len()
        };
        let mut out = Vec::with_capacity(keep + opt_len);
        out.extend_from_slice(&self.bytes[..keep]);
        out[0..2].copy_from_slice(&req.id.to_be_bytes());
        if req.question.len() == self.question_len {
            out[HEADER_LEN..question_end].copy_from_slice(&req.question);
        }
        let upstream_flags = wire::u16_at(&self.bytes, 2).unwrap_or(0);
        let mut flags = flag::QR
            | flag::RA
            | (req.flags & (flag::OPCODE_MASK | flag::RD | flag::CD))
            | self.rcode as u16;
        // AD only for clients that can use it (RFC 6840 §5.8).
        if upstream_flags & flag::AD != 0 && (req.dnssec_ok() || req.flags & flag::AD != 0) {
            flags |= flag::AD;
        }
        if truncated {
            flags |= flag::TC;
            out[6..12].fill(0);
        } else {
            for &at in self.ttl_offsets.iter() {
                let at = at as usize;
                let original = wire::u32_at(&out, at).unwrap_or(0);
                let served = original.min(ttl_cap).saturating_sub(age);
                out[at..at + 4].copy_from_slice(&served.to_be_bytes());
            }
        }
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        if let Some(e) = edns {
            e.write(&mut out, self.rcode as u16, limit);
            let ar = wire::u16_at(&out, 10).unwrap_or(0) + 1;
            out[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        out
    }

    /// The answer-section records with owner names and CNAME targets written
    /// out uncompressed, so they can be placed in another message (used when
    /// an override CNAME is followed).
    pub fn answer_records(&self) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let _ = wire::walk_records(&self.bytes, |span| {
            if span.section == 0 {
                if let Some(r) = expand_record(&self.bytes, span) {
                    records.push(r);
                }
            }
            Ok(())
        });
        records
    }
}

/// Whether the response's one question is ours (name compared without case).
fn question_matches(
    bytes: &[u8],
    header: &Header,
    name_wire: &[u8],
    qtype: u16,
    qclass: u16,
) -> bool {
    if header.qdcount != 1 {
        return false;
    }
    let end = HEADER_LEN + name_wire.len();
    let Some(name) = bytes.get(HEADER_LEN..end) else {
        return false;
    };
    name.eq_ignore_ascii_case(name_wire)
        && wire::u16_at(bytes, end).ok() == Some(qtype)
        && wire::u16_at(bytes, end + 2).ok() == Some(qclass)
}

/// The CNAME chain from the question's name, spelled `a. → b. → a.`, when
/// it comes back to a name it already passed (`a → b → a`, `a → a`): such an
/// answer can never end in data, and Unbound and Knot answer SERVFAIL. CNAME
/// and ANY questions are answered by the first record, so they never loop.
fn cname_loop(message: &hickory_proto::op::Message) -> Option<String> {
    use hickory_proto::rr::{RData, RecordType};
    let question = message.queries.first()?;
    if matches!(question.query_type(), RecordType::CNAME | RecordType::ANY) {
        return None;
    }
    let mut chain = vec![question.name().clone()];
    loop {
        let current = chain.last()?;
        let target = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == *current => Some(target.0.clone()),
            _ => None,
        })?;
        // Each step adds a name not seen before, so this ends within the
        // answer's record count.
        let looped = chain.contains(&target);
        chain.push(target);
        if looped {
            let names: Vec<String> = chain.iter().map(ToString::to_string).collect();
            return Some(names.join(" → "));
        }
    }
}

/// Whether the answer section's CNAME chain from the question's name comes
/// back to a name it passed ([`cname_loop`] on the wire form; names
/// compared without case, as hickory-proto compares them).
fn cname_chain_loops(bytes: &[u8]) -> Result<bool, WireError> {
    let mut links: Vec<(String, String)> = Vec::new();
    wire::walk_records(bytes, |span| {
        if span.section == 0 && span.rtype == rtype::CNAME {
            let (owner, _) = wire::read_name_text(bytes, span.start)?;
            let (target, _) = wire::read_name_text(bytes, span.rdata_at)?;
            links.push((owner, target));
        }
        Ok(())
    })?;
    let (question, _) = wire::read_name_text(bytes, HEADER_LEN)?;
    let mut chain = vec![question];
    while let Some(current) = chain.last() {
        let Some((_, target)) = links.iter().find(|(owner, _)| owner == current) else {
            return Ok(false);
        };
        if chain.contains(target) {
            return Ok(true);
        }
        chain.push(target.clone());
    }
    Ok(false)
}

/// What one pass over the records learns. Its lists are the [`Answer`]'s own, moved into
/// it: an answer of a few records is indexed without allocating (a miss paid two allocations
/// here for lists copied at once).
#[derive(Default)]
struct Index {
    /// Offset of every record's TTL field, for patching on each serve.
    ttl_offsets: SmallVec<[u32; INLINE_RECORDS]>,
    min_ttl: Option<u32>,
    negative_ttl: Option<u32>,
    answers: u16,
    addresses: SmallVec<[IpAddr; INLINE_ADDRESSES]>,
    cnames: Vec<String>,
}

impl Index {
    fn visit(&mut self, bytes: &[u8], span: &wire::RecordSpan) -> Result<(), WireError> {
        self.ttl_offsets.push(span.ttl_at as u32);
        self.min_ttl = Some(self.min_ttl.map_or(span.ttl, |m| m.min(span.ttl)));
        match (span.section, span.rtype) {
            (0, t) => {
                self.answers += 1;
                self.note_answer(bytes, span, t)?;
            }
            (1, rtype::SOA) => {
                // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
                let minimum_at = span.end().checked_sub(4).ok_or(WireError::Truncated)?;
                let minimum = wire::u32_at(bytes, minimum_at)?;
                self.negative_ttl = Some(span.ttl.min(minimum));
            }
            _ => {}
        }
        Ok(())
    }

    fn note_answer(
        &mut self,
        bytes: &[u8],
        span: &wire::RecordSpan,
        t: u16,
    ) -> Result<(), WireError> {
        let rdata = &bytes[span.rdata_at..span.end()];
        match t {
            rtype::A if rdata.len() == 4 => {
                self.addresses.push(IpAddr::V4(Ipv4Addr::new(
                    rdata[0], rdata[1], rdata[2], rdata[3],
                )));
            }
            rtype::AAAA if rdata.len() == 16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(rdata);
                self.addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            rtype::CNAME => {
                let (target, _) = wire::read_name_text(bytes, span.rdata_at)?;
                self.cnames.push(target);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The upstream's Extended DNS Error (RFC 8914), passed through to clients.
fn upstream_ede(edns: &hickory_proto::op::Edns) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match edns.option(EdnsCode::Unknown(wire::edns_option::EDE))? {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => {
            let info = u16::from_be_bytes([data[0], data[1]]);
            Some((info, String::from_utf8_lossy(&data[2..]).into_owned()))
        }
        _ => None,
    }
}

fn classify(header: &Header, index: &Index) -> AnswerKind {
    match header.rcode() {
        rcode::NXDOMAIN => AnswerKind::NxDomain,
        rcode::NOERROR if index.answers == 0 => AnswerKind::NoData,
        rcode::NOERROR => AnswerKind::Positive,
        _ => AnswerKind::Failure,
    }
}

/// Re-encodes one record with its owner (and, for CNAME, its target) written
/// out in full. Other RDATA is copied as is, which is safe for the types that
/// follow a CNAME we synthesize (A, AAAA, CNAME) and any without names.
fn expand_record(bytes: &[u8], span: &wire::RecordSpan) -> Option<Vec<u8>> {
    let (owner, _) = wire::read_name_text(bytes, span.start).ok()?;
    let mut out = Vec::with_capacity(64);
    wire::push_name(&mut out, &unescape_for_wire(&owner))?;
    out.extend_from_slice(&span.rtype.to_be_bytes());
    out.extend_from_slice(&span.class.to_be_bytes());
    out.extend_from_slice(&span.ttl.to_be_bytes());
    if span.rtype == rtype::CNAME {
        let (target, _) = wire::read_name_text(bytes, span.rdata_at).ok()?;
        let mut rdata = Vec::new();
        wire::push_name(&mut rdata, &unescape_for_wire(&target))?;
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    } else if matches!(span.rtype, rtype::A | rtype::AAAA | rtype::TXT) {
        out.extend_from_slice(&span.rdlen.to_be_bytes());
        out.extend_from_slice(&bytes[span.rdata_at..span.end()]);
    } else {
        return None;
    }
    Some(out)
}

/// Names with escapes are rare in answers we follow; keep them out rather
/// than guess their wire form.
fn unescape_for_wire(name: &str) -> String {
    if name.contains('\\') {
        String::from("invalid.")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::build::{ResponseWriter, Section};
    use crate::protocol::parse::parse_query;

    fn query(name: &str) -> Request {
        let mut q = vec![0x55, 0x66, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        wire::push_name(&mut q, name).unwrap();
        q.extend_from_slice(&[0, 1, 0, 1]);
        parse_query(&q).unwrap()
    }

    fn upstream_reply(req: &Request, ttls: &[u32], with_opt: bool) -> Vec<u8> {
        let mut w = ResponseWriter::new(req, 0);
        for (i, ttl) in ttls.iter().enumerate() {
            w.address(
                Section::Answer,
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8)),
                *ttl,
            );
        }
        let edns = EdnsOut {
            payload: 1232,
            ede: vec![(15, "upstream says no")],
            ..Default::default()
        };
        let mut bytes = w.finish(with_opt.then_some(&edns), usize::MAX);
        bytes[2] |= 0x04; // AA from the authority
        bytes
    }

    #[test]
    fn indexes_and_serves_with_aged_ttls_and_client_case() {
        let stored = query("www.example.test");
        let bytes = upstream_reply(&stored, &[300, 120], true);
        let answer = Answer::from_upstream(&bytes, &stored.name_wire, 1, 1).unwrap();
        assert_eq!(answer.kind, AnswerKind::Positive);
        assert_eq!(answer.ttl, 120);
        assert_eq!(answer.addresses.len(), 2);
        assert_eq!(answer.ede, Some((15, "upstream says no".into())));

        let client = query("WWW.Example.TEST");
        let out = answer.write_reply(&client, 100, 200, None, 512);
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(msg.metadata.id, 0x5566);
        assert!(!msg.metadata.authoritative);
        assert!(
            msg.edns.is_none(),
            "the upstream OPT must not leak to a non-EDNS client"
        );
        assert_eq!(msg.queries[0].name().to_string(), "WWW.Example.TEST.");
        let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![100, 20]);
    }

    /// An answer larger than an [`Answer`] holds inline (bytes, records, addresses) is served
    /// the same way: every TTL aged, every address indexed.
    #[test]
    fn a_large_answer_is_indexed_and_served_like_a_small_one() {
        let stored = query("many.example.test");
        let ttls: Vec<u32> = (0..12).map(|i| 300 + i).collect();
        let bytes = upstream_reply(&stored, &ttls, false);
        let answer = Answer::from_upstream(&bytes, &stored.name_wire, 1, 1).unwrap();
        assert!(answer.bytes.spilled() && answer.ttl_offsets.spilled());
        assert_eq!(answer.addresses.len(), 12);
        // The weigher counts what the spilled lists hold, not only what they use.
        let held = answer.bytes.len() + answer.ttl_offsets.capacity() * 4;
        let held = held + answer.addresses.capacity() * 17 + std::mem::size_of::<Answer>();
        assert!(answer.weight() >= held, "{} < {held}", answer.weight());
        assert_eq!(
            answer.addresses[11],
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))
        );
        let out = answer.write_reply(&query("Many.Example.Test"), 100, 305, None, 4096);
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        let served: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        let want: Vec<u32> = ttls.iter().map(|t| t.min(&305) - 100).collect();
        assert_eq!(served, want);
        assert_eq!(msg.queries[0].name().to_string(), "Many.Example.Test.");
    }

    #[test]
    fn refuses_wrong_question_and_queries() {
        let stored = query("a.test");
        let bytes = upstream_reply(&stored, &[60], false);
        let other = query("b.test");
        assert_eq!(
            Answer::from_upstream(&bytes, &other.name_wire, 1, 1),
            Err(AnswerError::WrongQuestion)
        );
        assert_eq!(
            Answer::from_upstream(&bytes, &stored.name_wire, 28, 1),
            Err(AnswerError::WrongQuestion)
        );
        let mut not_response = bytes.clone();
        not_response[2] &= 0x7f;
        assert_eq!(
            Answer::from_upstream(&not_response, &stored.name_wire, 1, 1),
            Err(AnswerError::NotAResponse)
        );
    }

    #[test]
    fn negative_ttl_from_soa_minimum() {
        let req = query("nope.test");
        let mut w = ResponseWriter::new(&req, 3);
        w.record_at(
            Section::Authority,
            "test",
            rtype::SOA,
            900,
            &crate::protocol::build::synthetic_soa_rdata(45),
        );
        let bytes = w.finish(None, usize::MAX);
        let answer = Answer::from_upstream(&bytes, &req.name_wire, 1, 1).unwrap();
        assert_eq!(answer.kind, AnswerKind::NxDomain);
        assert_eq!(answer.ttl, 45);
    }

    /// An upstream's answer to `name` A as hickory-proto encodes it (names
    /// compressed), with `answers` and an OPT without options.
    fn encoded(name: &str, answers: &[(&str, hickory_proto::rr::RData)]) -> (Request, Vec<u8>) {
        use hickory_proto::op::{Edns, Message, MessageType, Query};
        use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
        let req = query(name);
        let zone = Name::from_ascii("example.test.").unwrap();
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        for (owner, data) in answers {
            let owner = Name::from_ascii(owner).unwrap();
            m.add_answer(Record::from_rdata(owner, 300, data.clone()));
        }
        let ns = Name::from_ascii("ns1.example.test.").unwrap();
        m.add_authority(Record::from_rdata(
            zone,
            900,
            RData::NS(rdata::NS(ns.clone())),
        ));
        let glue = RData::A(rdata::A::new(192, 0, 2, 53));
        m.add_additional(Record::from_rdata(ns, 900, glue));
        m.edns = Some(Edns::new());
        (req, m.to_vec().unwrap())
    }

    #[test]
    fn stored_as_it_came_it_serves_what_the_reencoded_answer_serves() {
        use hickory_proto::rr::{rdata, Name, RData};
        let cdn = Name::from_ascii("edge.cdn.example.test.").unwrap();
        let cases = [
            encoded(
                "www.example.test",
                &[("www.example.test.", RData::A(rdata::A::new(192, 0, 2, 7)))],
            ),
            encoded(
                "www.example.test",
                &[
                    ("www.example.test.", RData::CNAME(rdata::CNAME(cdn.clone()))),
                    (
                        "edge.cdn.example.test.",
                        RData::A(rdata::A::new(192, 0, 2, 8)),
                    ),
                ],
            ),
        ];
        for (req, bytes) in cases {
            let header = Header::read(&bytes).unwrap();
            let kept = Answer::verbatim(&bytes, &header, req.question.len(), 1);
            let kept = kept.expect("a canonical answer is stored as it came");
            let name_wire = &req.question[..req.question.len() - 4];
            let reencoded = Answer::reencoded(&bytes, name_wire).unwrap();
            let served = |a: &Answer| {
                let reply = a.write_reply(&req, 10, 600, None, 4096);
                let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
                (m.metadata, m.answers, m.authorities, m.additionals, m.edns)
            };
            assert_eq!(served(&kept), served(&reencoded));
            assert_eq!(
                (
                    kept.kind,
                    kept.rcode,
                    kept.ttl,
                    &kept.addresses,
                    &kept.cnames,
                    &kept.ede
                ),
                (
                    reencoded.kind,
                    reencoded.rcode,
                    reencoded.ttl,
                    &reencoded.addresses,
                    &reencoded.cnames,
                    &reencoded.ede
                )
            );
            assert_eq!(
                kept.ttl_offsets.len(),
                3 + usize::from(!kept.cnames.is_empty())
            );
            assert_eq!(
                Answer::from_upstream(&bytes, &req.name_wire, 1, 1),
                Ok(kept)
            );
        }
    }

    /// The answer to `www.example.test A` (ID 0x1234): an A record, and in the authority
    /// section an NS for example.test with TTL bytes `ns_ttl` whose target, at offset 62, is
    /// `target` as written.
    fn with_ns_target(ns_ttl: [u8; 4], target: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 1, 0, 0];
        bytes.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        bytes.extend_from_slice(&[0xc0, 16, 0, 2, 0, 1]);
        bytes.extend_from_slice(&ns_ttl);
        bytes.extend_from_slice(&(target.len() as u16).to_be_bytes());
        assert_eq!(bytes.len(), 62);
        bytes.extend_from_slice(target);
        bytes
    }

    #[test]
    fn a_name_pointing_into_itself_is_neither_stored_as_it_came_nor_served() {
        // `www.example.test A` (ID 0x1234): an A record, and in the authority section an NS
        // for example.test whose target, at offset 62, is a label `\0x` and then a pointer to
        // that label's second byte: before the pointer, but inside the name that holds it.
        // Nothing else reads an authority record's RDATA, so only the check for storing it as
        // it came stands between it and the clients. The fuzz seed `ns-target-pointing-into-itself`.
        let bytes = with_ns_target([0, 0, 1, 44], &[2, 0, b'x', 0xc0, 63]);
        let req = query("www.example.test");
        let header = Header::read(&bytes).unwrap();
        assert_eq!(
            Answer::verbatim(&bytes, &header, req.question.len(), 1),
            None
        );
        assert!(
            hickory_proto::op::Message::from_vec(&bytes).is_err(),
            "a client cannot read it"
        );
        assert!(Answer::from_upstream(&bytes, &req.name_wire, 1, 1).is_err());
    }

    #[test]
    fn a_name_read_from_a_ttl_field_is_reencoded_and_served_readable() {
        // Found by the `upstream_answer` fuzz target: the NS target at offset 62 is a label
        // `\0x` and then a pointer to offset 59, the last byte of its own record's TTL
        // (0x2c000100), a root label as the upstream sent it. Served as it came, the TTL
        // counted down made that byte a label length, and the answer unreadable.
        let bytes = with_ns_target([0x2c, 0, 1, 0], &[2, 0, b'x', 0xc0, 59]);
        let req = query("www.example.test");
        let header = Header::read(&bytes).unwrap();
        assert_eq!(
            Answer::verbatim(&bytes, &header, req.question.len(), 1),
            None
        );
        let answer = Answer::from_upstream(&bytes, &req.name_wire, 1, 1).unwrap();
        for age in [0, 5, 300] {
            let out = answer.write_reply(&req, age, 300, None, 65535);
            let served = hickory_proto::op::Message::from_vec(&out).expect("readable");
            assert_eq!(served.authorities.len(), 1);
        }
    }

    #[test]
    fn a_cname_loop_is_refused_whichever_way_the_answer_is_stored() {
        use hickory_proto::rr::{rdata, Name, RData};
        let cname = |to: &str| RData::CNAME(rdata::CNAME(Name::from_ascii(to).unwrap()));
        let (req, bytes) = encoded(
            "a.example.test",
            &[
                ("a.example.test.", cname("B.example.test.")),
                ("b.example.test.", cname("a.example.test.")),
            ],
        );
        let header = Header::read(&bytes).unwrap();
        assert_eq!(
            Answer::verbatim(&bytes, &header, req.question.len(), 1),
            None
        );
        assert_eq!(
            Answer::from_upstream(&bytes, &req.name_wire, 1, 1),
            Err(AnswerError::CnameLoop(
                "a.example.test. → B.example.test. → a.example.test.".into()
            ))
        );
    }
}
