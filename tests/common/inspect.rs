//! Helpers to read answers in assertions, and the EDE encoding they share
//! with the test authority.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, Record, RecordType};

/// RFC 8914 Extended DNS Error option code. hickory 0.26 has no variant for
/// it, so it travels as `EdnsOption::Unknown(15, info_code_be ++ text)`.
pub const EDE_CODE: u16 = 15;

/// Builds an Extended DNS Error option.
pub fn ede_option(info_code: u16, text: &str) -> EdnsOption {
    let mut data = info_code.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    EdnsOption::Unknown(EDE_CODE, data)
}

/// The first Extended DNS Error in `message`, as (INFO-CODE, EXTRA-TEXT).
pub fn ede(message: &Message) -> Option<(u16, String)> {
    let option = message.edns.as_ref()?.option(EdnsCode::Unknown(EDE_CODE))?;
    match option {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            Some((code, String::from_utf8_lossy(&data[2..]).into_owned()))
        }
        _ => None,
    }
}

/// Asserts that `message` is a NOERROR response whose A records are `addrs`.
#[track_caller]
pub fn assert_a_answer(message: &Message, addrs: &[Ipv4Addr]) {
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(message), addrs);
}

/// Asserts that `message` holds `count` A records and none is [`FORGED_V4`],
/// the address a forging test authority slips in before its real answer;
/// `forgery` names what was slipped in.
///
/// [`FORGED_V4`]: super::FORGED_V4
#[track_caller]
pub fn assert_not_forged(message: &Message, count: usize, forgery: &str) {
    let addrs = a_records(message);
    assert!(
        !addrs.contains(&super::FORGED_V4),
        "{forgery} was accepted: {addrs:?}"
    );
    assert_eq!(addrs.len(), count, "{addrs:?}");
}

/// Asserts that `message` has rcode `want` and an Extended DNS Error with
/// INFO-CODE `info_code` (`what`: its name, for the message).
pub fn assert_rcode_ede(message: &Message, want: ResponseCode, info_code: u16, what: &str) {
    assert_eq!(rcode(message), want, "{message:?}");
    assert_eq!(
        ede(message).map(|(code, _)| code),
        Some(info_code),
        "EDE {info_code} {what}: {message:?}"
    );
}

/// The response code of an answer.
pub fn rcode(message: &Message) -> ResponseCode {
    message.metadata.response_code
}

/// IPv4 addresses in the answer section, in order.
pub fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// IPv6 addresses in the answer section, in order.
pub fn aaaa_records(message: &Message) -> Vec<Ipv6Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(aaaa) => Some(aaaa.0),
            _ => None,
        })
        .collect()
}

/// Smallest TTL over the answer and authority sections (what a cache would
/// use); `None` when both are empty.
pub fn min_ttl(message: &Message) -> Option<u32> {
    message
        .answers
        .iter()
        .chain(&message.authorities)
        .map(|r| r.ttl)
        .min()
}

/// The SOA record of a negative answer (RFC 2308), if present.
pub fn soa_in_authority(message: &Message) -> Option<&Record> {
    message
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
}

/// The owner name of the SOA in the authority section (of a negative answer,
/// RFC 2308), as text with the final dot; panics with the message without one.
pub fn soa_owner(message: &Message) -> String {
    let soa = soa_in_authority(message);
    let soa = soa.unwrap_or_else(|| panic!("no SOA in the authority section: {message:?}"));
    soa.name.to_ascii()
}

/// What a client reads of an answer, as text (one line per item), so that
/// two servers' answers compare as text and a difference shows as a diff:
/// the RCODE, the header flags, the question as sent (case included), the
/// answer records, a negative answer's authority records, and EDNS. TTLs
/// are left out (each server counts its own), and so are what each adds
/// of its own: a positive answer's authority and additional sections,
/// EDNS options (Extended DNS Errors, NSID, cookies).
pub fn reading(answer: Option<&[u8]>) -> String {
    let Some(bytes) = answer else {
        return "no answer".into();
    };
    let message = match Message::from_vec(bytes) {
        Ok(message) => message,
        Err(e) => return header_reading(bytes, &e.to_string()),
    };
    let m = &message.metadata;
    let mut lines = vec![format!(
        "rcode {:?} opcode {:?} qr {} aa {} tc {} rd {} ra {} ad {} cd {}",
        rcode(&message),
        m.op_code,
        m.message_type == MessageType::Response,
        m.authoritative,
        m.truncation,
        m.recursion_desired,
        m.recursion_available,
        m.authentic_data,
        m.checking_disabled,
    )];
    for q in &message.queries {
        lines.push(format!(
            "question {} {} {}",
            q.name(),
            q.query_type(),
            q.query_class()
        ));
    }
    let mut answers: Vec<String> = message.answers.iter().map(record).collect();
    answers.sort();
    lines.extend(answers.into_iter().map(|a| format!("answer {a}")));
    // A negative answer's authority section: its SOA (RFC 2308), by which a
    // client caches the denial, and for a DO client the proof of it.
    if message.answers.is_empty() {
        let mut authority: Vec<String> = message.authorities.iter().map(record).collect();
        authority.sort();
        lines.extend(authority.into_iter().map(|a| format!("authority {a}")));
    }
    lines.push(match &message.edns {
        None => "no edns".into(),
        Some(edns) => format!(
            "edns version {} do {}",
            edns.version(),
            edns.flags().dnssec_ok
        ),
    });
    lines.join("\n")
}

/// A record without its TTL, its owner in lower case, and the names in its
/// data too: a server that compresses them against the question gives them
/// the question's case, which means nothing (RFC 4343).
fn record(r: &Record) -> String {
    let data = r.data.to_string();
    let data = match r.record_type() {
        RecordType::NS
        | RecordType::CNAME
        | RecordType::PTR
        | RecordType::MX
        | RecordType::SOA
        | RecordType::SRV => data.to_lowercase(),
        _ => data,
    };
    format!(
        "{} {} {} {data}",
        r.name.to_lowercase(),
        r.dns_class,
        r.record_type(),
    )
}

/// What a client reads of an answer whose body does not parse (a FORMERR
/// that echoes the malformed query): its header's RCODE, and why the rest
/// is unreadable.
fn header_reading(bytes: &[u8], error: &str) -> String {
    match bytes.get(3) {
        Some(low) => format!(
            "rcode {:?} (the rest does not parse: {error})",
            ResponseCode::from(0, low & 0x0f)
        ),
        None => format!("unparsable answer: {error}"),
    }
}
