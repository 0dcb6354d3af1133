//! Turns one received query into the packets the test authority sends back.
//! Pure functions: all state comes in through [`Settings`].

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::inspect::ede_option;
use super::zone::{signs, Zones};

/// Address carried by forged answers, so tests can assert it never leaks.
pub const FORGED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// AAAA counterpart of [`FORGED_V4`].
pub const FORGED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66);

/// UDP payload size we advertise in our OPT record.
const OUR_PAYLOAD: u16 = 1232;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The controls that shape an answer, read once per query.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Answer every query with this RCODE and no records.
    pub rcode: Option<ResponseCode>,
    /// Answer REFUSED to questions of this type.
    pub refused_type: Option<RecordType>,
    /// TC=1 on every answer, over TCP too.
    pub always_truncated: bool,
    /// RA=1 AA=0, as from a recursive resolver's cache.
    pub from_a_cache: bool,
    /// NXDOMAIN instead of NODATA.
    pub nxdomain_for_nodata: bool,
    pub forge: bool,
    pub forge_case: bool,
    pub lowercase: bool,
    /// Referrals lose the RRSIG of the DS RRset they carry.
    pub unsigned_referral_ds: bool,
    /// A DS question at a cut gets the referral, DS RRset in its authority.
    pub ds_by_referral: bool,
    pub udp_limit: Option<usize>,
    pub ede: Option<(u16, String)>,
}

/// Packets to send, in order. Empty means stay quiet (a response, or a
/// fragment too short to carry an ID).
pub fn respond(
    bytes: &[u8],
    query: Option<&Message>,
    zones: &Zones,
    settings: &Settings,
    transport: Transport,
) -> Vec<Vec<u8>> {
    let Some(query) = query else {
        return formerr_from_header(bytes).into_iter().collect();
    };
    if query.metadata.message_type == MessageType::Response {
        return Vec::new();
    }
    let lowercased;
    let query = if settings.lowercase {
        lowercased = lowercase_question(query);
        &lowercased
    } else {
        query
    };
    let mut packets = Vec::new();
    // Off-path spoofing is a UDP threat; on TCP it would need a hijacked stream.
    if settings.forge && transport == Transport::Udp {
        packets.extend(forgeries(query));
    }
    if settings.forge_case && transport == Transport::Udp {
        packets.extend(case_forgery(query));
    }
    let response = build_response(query, zones, settings);
    let limit = match transport {
        Transport::Udp => Some(udp_limit(query, settings)),
        Transport::Tcp => None,
    };
    packets.push(encode(response, limit));
    packets
}

/// RFC 1035 §4.1.1: unparsable queries still get FORMERR if the header made
/// it, so the client learns quickly instead of timing out.
fn formerr_from_header(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return None;
    }
    let mut header = bytes[..12].to_vec();
    header[2] = 0x80 | (bytes[2] & 0x79); // QR, keep OPCODE and RD
    header[3] = ResponseCode::FormErr.low();
    header[4..].fill(0);
    Some(header)
}

fn build_response(query: &Message, zones: &Zones, settings: &Settings) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.queries = query.queries.clone();
    response.edns = query.edns.as_ref().map(|e| response_edns(e, settings));
    match refusal(query, settings) {
        Some(rcode) => response.metadata.response_code = rcode,
        None => {
            let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
            fill(&mut response, zones, &looked_up(query, settings), dnssec_ok);
            if settings.unsigned_referral_ds && !response.metadata.authoritative {
                response.authorities.retain(|r| !signs(r, RecordType::DS));
            }
            response.metadata.truncation |= settings.always_truncated;
            let nodata = response.metadata.response_code == ResponseCode::NoError
                && response.metadata.authoritative
                && response.answers.is_empty();
            if settings.nxdomain_for_nodata && nodata {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            if settings.from_a_cache {
                response.metadata.recursion_available = true;
                response.metadata.authoritative = false;
            }
        }
    }
    response
}

/// The question the zone data is searched for: a DS question is searched as
/// A when the server answers DS questions with referrals, as servers of both
/// sides of a cut may (the question in the response stays the client's).
fn looked_up(query: &Message, settings: &Settings) -> Query {
    let mut question = query.queries[0].clone();
    if settings.ds_by_referral && question.query_type() == RecordType::DS {
        question.set_query_type(RecordType::A);
    }
    question
}

/// The rcode for queries we do not look up at all.
fn refusal(query: &Message, settings: &Settings) -> Option<ResponseCode> {
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Some(ResponseCode::BADVERS); // RFC 6891 §6.1.3
    }
    if query.metadata.op_code != OpCode::Query {
        return Some(ResponseCode::NotImp);
    }
    let [question] = query.queries.as_slice() else {
        return Some(ResponseCode::FormErr);
    };
    if question.query_class() != DNSClass::IN {
        return Some(ResponseCode::Refused);
    }
    if matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return Some(ResponseCode::Refused); // zone transfers are not offered
    }
    if settings.refused_type == Some(question.query_type()) {
        return Some(ResponseCode::Refused);
    }
    settings.rcode
}

fn fill(response: &mut Message, zones: &Zones, question: &Query, dnssec_ok: bool) {
    let answer = zones.answer_dnssec(question.name(), question.query_type(), dnssec_ok);
    response.metadata.authoritative = answer.authoritative;
    response.metadata.response_code = answer.rcode;
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;
}

/// RFC 6891 §7: an OPT in the query gets an OPT back, DO copied (RFC 3225).
fn response_edns(query_edns: &Edns, settings: &Settings) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(OUR_PAYLOAD)
        .set_dnssec_ok(query_edns.flags().dnssec_ok);
    if let Some((code, text)) = &settings.ede {
        edns.options_mut().insert(ede_option(*code, text));
    }
    edns
}

/// The client's payload (512 without EDNS) unless a test forces a limit.
fn udp_limit(query: &Message, settings: &Settings) -> usize {
    settings
        .udp_limit
        .unwrap_or_else(|| usize::from(query.max_payload()))
}

/// Serialises, falling back to an empty TC=1 answer when over `limit`.
fn encode(mut response: Message, limit: Option<usize>) -> Vec<u8> {
    let bytes = response.to_vec().expect("test authority response encodes");
    if limit.is_none_or(|max| bytes.len() <= max) {
        return bytes;
    }
    response.metadata.truncation = true;
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.to_vec().expect("truncated response encodes")
}

/// Two spoofing attempts a resolver must reject: the wrong ID with the right
/// question, then the right ID with a question it never asked.
fn forgeries(query: &Message) -> Vec<Vec<u8>> {
    let Some(question) = query.queries.first() else {
        return Vec::new();
    };
    let id = query.metadata.id;
    let other_name = question
        .name()
        .prepend_label("forged")
        .unwrap_or_else(|_| Name::from_ascii("forged.invalid.").expect("static name"));
    vec![
        forged(query, id ^ 0x5a5a, question.name()),
        forged(query, id, &other_name),
    ]
}

/// The right ID and question, but the name's letters in swapped case: what
/// a forger who guessed ID and port but not the 0x20 case would send.
fn case_forgery(query: &Message) -> Option<Vec<u8>> {
    let question = query.queries.first()?;
    let swapped: String = question
        .name()
        .to_ascii()
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => c,
        })
        .collect();
    let name = Name::from_ascii(&swapped).ok()?;
    Some(forged(query, query.metadata.id, &name))
}

/// The query with its question name in lower case.
fn lowercase_question(query: &Message) -> Message {
    let mut lowered = query.clone();
    for question in &mut lowered.queries {
        question.set_name(question.name().to_lowercase());
    }
    lowered
}

fn forged(query: &Message, id: u16, name: &Name) -> Vec<u8> {
    let qtype = query.queries[0].query_type();
    let mut message = Message::response(id, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = query.metadata.recursion_desired;
    message.add_query(Query::query(name.clone(), qtype));
    let data = match qtype {
        RecordType::AAAA => RData::AAAA(AAAA(FORGED_V6)),
        _ => RData::A(A(FORGED_V4)),
    };
    message.add_answer(Record::from_rdata(name.clone(), 300, data));
    message.edns = query
        .edns
        .as_ref()
        .map(|e| response_edns(e, &Settings::default()));
    message.to_vec().expect("forged response encodes")
}
