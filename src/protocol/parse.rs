//! Raw query bytes → [`Request`], staged like hickory-server: reject what can be
//! rejected from the header alone before reading further.

use super::cookie;
use super::wire::{self, flag, rcode, rtype, Header, WireError, HEADER_LEN};

/// The EDNS (RFC 6891) facts of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsInfo {
    /// The client's UDP payload size (at least 512).
    pub payload: u16,
    /// EDNS version; only 0 is known.
    pub version: u8,
    /// DNSSEC OK.
    pub dnssec_ok: bool,
    /// The client asked for our NSID (RFC 5001).
    pub nsid: bool,
    /// The query was padded (RFC 7830), so the response must be too.
    pub padding: bool,
    /// The query's first COOKIE option (RFC 7873).
    pub cookie: Option<cookie::Cookies>,
}

/// A parsed query: what every later stage needs, nothing borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The DNS ID, echoed in the response.
    pub id: u16,
    /// The header flags word as sent.
    pub flags: u16,
    /// The question exactly as sent (name in the client's case, type, class).
    pub question: Vec<u8>,
    /// The query name in lower-case wire form (cache key).
    pub name_wire: Vec<u8>,
    /// The query name, lower case, presentation form, no trailing dot.
    pub qname: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The query's OPT record, if any.
    pub edns: Option<EdnsInfo>,
}

impl Request {
    /// Recursion Desired.
    pub fn rd(&self) -> bool {
        self.flags & flag::RD != 0
    }

    /// Checking Disabled (RFC 4035).
    pub fn cd(&self) -> bool {
        self.flags & flag::CD != 0
    }

    /// The DNSSEC OK bit.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// Largest UDP response the client accepts (512 without EDNS), capped at
    /// our own limit (`server_max`).
    pub fn udp_limit(&self, server_max: u16) -> usize {
        let client = self.edns.map_or(512, |e| e.payload.max(512));
        client.min(server_max.max(512)) as usize
    }
}

/// Why a query is not answered normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not worth an answer: too short to have a header, or a response
    /// (answering responses would make us a reflector).
    Drop,
    /// Answer with this RCODE, echoing what could be read.
    Reply {
        header: Header,
        /// The question, when it could be read.
        question: Option<Vec<u8>>,
        /// The query's EDNS record, when it could be read.
        edns: Option<EdnsInfo>,
        /// Extended RCODE (FORMERR, NOTIMP, BADVERS, ...).
        rcode: u16,
    },
}

/// Parses a query. Everything that is not a plain standard query becomes a
/// [`Rejection`] that says how to answer.
pub fn parse_query(bytes: &[u8]) -> Result<Request, Rejection> {
    let header = Header::read(bytes).map_err(|_| Rejection::Drop)?;
    if header.is_response() {
        return Err(Rejection::Drop);
    }
    let reject = |rcode, question: Option<&[u8]>, edns| Rejection::Reply {
        header,
        question: question.map(<[u8]>::to_vec),
        edns,
        rcode,
    };
    if header.qdcount != 1 {
        // Without a question, the records start right after the header: a
        // readable OPT there gets ours back (RFC 6891 §7), as Unbound does.
        let edns = match header.qdcount {
            0 => read_edns(bytes, &header, HEADER_LEN).ok().flatten(),
            _ => None,
        };
        // An opcode we do not implement is NOTIMP however many questions
        // come with it (RFC 1035 §4.1.1), as Unbound answers: EDNS compliance
        // testers send an unknown opcode with no question and expect NOTIMP.
        let rcode = match header.opcode() {
            0 => rcode::FORMERR,
            _ => rcode::NOTIMP,
        };
        return Err(reject(rcode as u16, None, edns));
    }
    // Room for most names up front: growing byte by byte from empty cost two reallocations.
    let mut qname = String::with_capacity(32);
    let mut name_wire = Vec::with_capacity(32);
    let name_end = wire::read_question_name(bytes, HEADER_LEN, &mut qname, &mut name_wire)
        .map_err(|_| reject(rcode::FORMERR as u16, None, None))?;
    let (qtype, qclass) = match (
        wire::u16_at(bytes, name_end),
        wire::u16_at(bytes, name_end + 2),
    ) {
        (Ok(t), Ok(c)) => (t, c),
        _ => return Err(reject(rcode::FORMERR as u16, None, None)),
    };
    let question = &bytes[HEADER_LEN..name_end + 4];
    let edns = read_edns(bytes, &header, name_end + 4)
        .map_err(|_| reject(rcode::FORMERR as u16, Some(question), None))?;
    if header.opcode() != 0 {
        return Err(reject(rcode::NOTIMP as u16, Some(question), edns));
    }
    if let Some(e) = edns {
        if e.version != 0 {
            return Err(reject(rcode::BADVERS, Some(question), edns));
        }
    }
    if rtype::is_never_asked(qtype) {
        return Err(reject(rcode::FORMERR as u16, Some(question), edns));
    }
    Ok(Request {
        id: header.id,
        flags: header.flags,
        question: question.to_vec(),
        name_wire,
        qname,
        qtype,
        qclass,
        edns,
    })
}

/// How to answer a datagram of which only the start was read (it was longer
/// than any query we read). Its records cannot be trusted to end where the
/// counts say, so only the header is used: RFC 1035 §4.1.1 FORMERR ("unable
/// to interpret the query") with the ID and flags echoed and no question,
/// the same answer as for QDCOUNT≠1. The answer is 12 bytes (plus nothing:
/// no OPT either, as the client's OPT was never read, RFC 6891 §7), so a
/// forged source gains no amplification. A response (QR=1) or a start too
/// short for a header is dropped, as always.
pub fn reject_oversized(start: &[u8]) -> Rejection {
    match Header::read(start) {
        Ok(header) if !header.is_response() => Rejection::Reply {
            header,
            question: None,
            edns: None,
            rcode: rcode::FORMERR as u16,
        },
        _ => Rejection::Drop,
    }
}

/// Whether the query in `bytes`, whose question ends at `question_end`, sets the DO bit in its
/// OPT record: the one part of a cache key outside the header and the question, read without
/// the rest of [`parse_query`]'s work. None when its records cannot be read.
pub fn dnssec_ok_at(bytes: &[u8], header: &Header, question_end: usize) -> Option<bool> {
    let edns = read_edns(bytes, header, question_end).ok()?;
    Some(edns.is_some_and(|e| e.dnssec_ok))
}

/// Finds the OPT record among the records after the question. More than one
/// OPT, or an OPT not owned by the root, is a FORMERR (RFC 6891 §6.1.1).
fn read_edns(bytes: &[u8], header: &Header, mut pos: usize) -> Result<Option<EdnsInfo>, WireError> {
    let mut found = None;
    let counts = [header.ancount, header.nscount, header.arcount];
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let span = wire::read_record_span(bytes, pos, section as u8)?;
            if span.rtype == rtype::OPT {
                if found.is_some() || section != 2 || bytes[span.start] != 0 {
                    return Err(WireError::BadName);
                }
                found = Some(edns_from_span(bytes, &span)?);
            }
            pos = span.end();
        }
    }
    Ok(found)
}

fn edns_from_span(bytes: &[u8], span: &wire::RecordSpan) -> Result<EdnsInfo, WireError> {
    let mut info = EdnsInfo {
        payload: span.class.max(512),
        version: (span.ttl >> 16) as u8,
        dnssec_ok: span.ttl & 0x8000 != 0,
        nsid: false,
        padding: false,
        cookie: None,
    };
    let mut pos = span.rdata_at;
    let end = span.end();
    while pos < end {
        let code = wire::u16_at(bytes, pos)?;
        let len = wire::u16_at(bytes, pos + 2)? as usize;
        if pos + 4 + len > end {
            return Err(WireError::Truncated);
        }
        match code {
            wire::edns_option::NSID => info.nsid = true,
            wire::edns_option::PADDING => info.padding = true,
            // Of several COOKIE options only the first counts, the others are ignored
            // (RFC 7873 §5.2); a malformed first one makes the query a FORMERR (§5.2.2).
            wire::edns_option::COOKIE if info.cookie.is_none() => {
                if !cookie::valid_len(len) {
                    return Err(WireError::BadOption);
                }
                let option = &bytes[pos + 4..pos + 4 + len];
                let (client, server) = option.split_at(cookie::CLIENT_LEN);
                info.cookie = Some(cookie::Cookies {
                    client: client.try_into().expect("a client cookie's length"),
                    server: server.try_into().ok(),
                });
            }
            _ => {}
        }
        pos += 4 + len;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<(u16, u32)>) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        wire::push_name(&mut q, name).unwrap();
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if let Some((payload, ttl)) = edns {
            q[11] = 1;
            q.push(0);
            q.extend_from_slice(&rtype::OPT.to_be_bytes());
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&ttl.to_be_bytes());
            q.extend_from_slice(&[0, 0]);
        }
        q
    }

    /// `query(name, A, EDNS)` with these options (code, data) in its OPT record.
    fn query_with_options(options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut q = query("a.test", 1, Some((1232, 0)));
        let rdata: Vec<u8> = options
            .iter()
            .flat_map(|(code, data)| {
                let head = [code.to_be_bytes(), (data.len() as u16).to_be_bytes()].concat();
                [head, data.to_vec()].concat()
            })
            .collect();
        let rdlen_at = q.len() - 2;
        q[rdlen_at..].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        q.extend_from_slice(&rdata);
        q
    }

    #[test]
    fn cookies_first_one_read_malformed_ones_formerr() {
        let cookie = |bytes: &[u8]| {
            parse_query(bytes).map(|r| r.edns.and_then(|e| e.cookie).map(|c| c.client))
        };
        let server_cookie =
            |bytes: &[u8]| parse_query(bytes).map(|r| r.edns.and_then(|e| e.cookie?.server));
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let with_server = [client.as_slice(), &[9; 16]].concat();
        assert_eq!(
            cookie(&query_with_options(&[(10, &client)])),
            Ok(Some(client))
        );
        assert_eq!(
            server_cookie(&query_with_options(&[(10, &client)])),
            Ok(None)
        );
        assert_eq!(
            cookie(&query_with_options(&[(10, &with_server)])),
            Ok(Some(client))
        );
        assert_eq!(
            server_cookie(&query_with_options(&[(10, &with_server)])),
            Ok(Some([9; 16])),
            "a server cookie of our length is kept for checking"
        );
        let with_other_length = [client.as_slice(), &[9; 24]].concat();
        assert_eq!(
            server_cookie(&query_with_options(&[(10, &with_other_length)])),
            Ok(None),
            "one of another length cannot be ours"
        );
        let second = [8u8; 8];
        let two = query_with_options(&[(3, &[]), (10, &client), (10, &second)]);
        assert_eq!(
            cookie(&two),
            Ok(Some(client)),
            "the first COOKIE is the one answered"
        );
        let then_bad = query_with_options(&[(10, &client), (10, &[1; 5])]);
        assert_eq!(
            cookie(&then_bad),
            Ok(Some(client)),
            "later COOKIEs are ignored"
        );
        assert_eq!(cookie(&query("a.test", 1, Some((1232, 0)))), Ok(None));
        for len in [0, 7, 9, 15, 41] {
            match parse_query(&query_with_options(&[(10, &vec![1; len])])) {
                Err(Rejection::Reply { rcode, .. }) => assert_eq!(rcode, rcode::FORMERR as u16),
                other => panic!("a COOKIE of {len} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn parses_plain_query_with_edns() {
        let r = parse_query(&query("WwW.Example.com", 1, Some((1232, 0x8000)))).unwrap();
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.qname, "www.example.com");
        assert_eq!(&r.question[..4], b"\x03WwW");
        assert!(r.rd() && r.dnssec_ok());
        assert_eq!(r.udp_limit(1232), 1232);
        assert_eq!(r.udp_limit(4096), 1232);
    }

    #[test]
    fn rejections() {
        assert_eq!(parse_query(&[0; 5]), Err(Rejection::Drop));
        let mut resp = query("a.test", 1, None);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp), Err(Rejection::Drop));
        let rcode_of = |b: &[u8]| match parse_query(b) {
            Err(Rejection::Reply { rcode, .. }) => rcode,
            other => panic!("expected a reply, got {other:?}"),
        };
        let mut two = query("a.test", 1, None);
        two[5] = 2;
        assert_eq!(rcode_of(&two), rcode::FORMERR as u16);
        let mut notify = query("a.test", 1, None);
        notify[2] = 0x20;
        assert_eq!(rcode_of(&notify), rcode::NOTIMP as u16);
        // An unknown opcode without a question (ISC's EDNS compliance "opcode" test).
        let opcode_15_header_only = [0, 7, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(rcode_of(&opcode_15_header_only), rcode::NOTIMP as u16);
        assert_eq!(
            rcode_of(&query("a.test", 1, Some((1232, 0x0001_0000)))),
            rcode::BADVERS
        );
        let cut = query("a.test", 1, None);
        assert_eq!(rcode_of(&cut[..cut.len() - 1]), rcode::FORMERR as u16);
        // No question but an OPT: FORMERR with our OPT (RFC 6891 §7); two questions: no OPT read.
        let mut bare = vec![0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        bare.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        match parse_query(&bare) {
            Err(Rejection::Reply { rcode, edns, .. }) => {
                assert_eq!(rcode, rcode::FORMERR as u16);
                assert_eq!(edns.map(|e| e.payload), Some(1232));
            }
            other => panic!("expected FORMERR, got {other:?}"),
        }
        // OPT, TKEY, TSIG, MAILB, MAILA and the other meta-types are never asked.
        for qtype in [41, 128, 249, 250, 253, 254] {
            assert_eq!(
                rcode_of(&query("a.test", qtype, None)),
                rcode::FORMERR as u16,
                "{qtype}"
            );
        }
        // Zone transfers, ANY and private-use types are queries.
        for qtype in [1, 127, 251, 252, 255, 65280] {
            assert!(
                parse_query(&query("a.test", qtype, None)).is_ok(),
                "{qtype}"
            );
        }
    }

    #[test]
    fn oversized_datagrams_are_malformed_whatever_their_start() {
        let valid = query("a.test", 1, Some((1232, 0)));
        match reject_oversized(&valid) {
            Rejection::Reply {
                header,
                question,
                edns,
                rcode,
            } => {
                assert_eq!(header.id, 0x1234);
                assert_eq!((question, edns), (None, None));
                assert_eq!(rcode, rcode::FORMERR as u16);
            }
            Rejection::Drop => panic!("a query's header gets FORMERR"),
        }
        let mut response = valid.clone();
        response[2] |= 0x80;
        assert_eq!(reject_oversized(&response), Rejection::Drop);
        assert_eq!(reject_oversized(&valid[..5]), Rejection::Drop);
    }
}
