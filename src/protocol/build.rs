//! Building responses: synthesized answers (blocks, overrides, errors) and the
//! OPT record every EDNS client gets back.

use std::net::IpAddr;

use super::cookie;
use super::parse::{EdnsInfo, Request};
use super::wire::{self, flag, rtype, Header, HEADER_LEN};

/// Our advertised UDP payload size (DNS Flag Day 2020).
pub const DEFAULT_UDP_PAYLOAD: u16 = 1232;

/// Class IN (RFC 1035).
const CLASS_IN: u16 = 1;

/// Responses to padded queries are padded to a multiple of this many bytes
/// (RFC 8467 §4.1, "Block-Length Padding"; Unbound's `pad-responses-block-size`).
pub const RESPONSE_PADDING_BLOCK: usize = 468;

/// Compression pointer to the question name at offset 12.
const QUESTION_NAME_POINTER: [u8; 2] = [0xc0, 0x0c];

/// The OPT record Picket sends back to a client that sent one.
#[derive(Debug, Clone, Default)]
pub struct EdnsOut<'a> {
    /// Our UDP payload size.
    pub payload: u16,
    /// Echo of the client's DO bit.
    pub dnssec_ok: bool,
    /// Extended DNS Errors (RFC 8914): info code and EXTRA-TEXT.
    pub ede: Vec<(u16, &'a str)>,
    /// Our NSID (RFC 5001), when the client asked for it.
    pub nsid: Option<&'a [u8]>,
    /// Pad the response (the query was padded: RFC 7830 §4 says we must).
    pub pad: bool,
    /// The COOKIE option answering the client's (RFC 7873): its cookie and ours.
    pub cookie: Option<cookie::Reply>,
}

impl<'a> EdnsOut<'a> {
    /// The OPT record answering `info`, without options.
    pub fn answering(info: &EdnsInfo, payload: u16) -> Self {
        Self {
            payload,
            dnssec_ok: info.dnssec_ok,
            ede: Vec::new(),
            nsid: None,
            pad: info.padding,
            cookie: None,
        }
    }

    /// Adds an Extended DNS Error.
    pub fn with_ede(mut self, code: u16, text: &'a str) -> Self {
        self.ede.push((code, text));
        self
    }

    /// Appends the OPT record to the message in `out`; `ext_rcode` is the
    /// full extended RCODE. When padding, the message grows to the next
    /// multiple of [`RESPONSE_PADDING_BLOCK`], or to `limit` if that is nearer.
    pub fn write(&self, out: &mut Vec<u8>, ext_rcode: u16, limit: usize) {
        out.push(0); // root owner
        out.extend_from_slice(&rtype::OPT.to_be_bytes());
        out.extend_from_slice(&self.payload.max(512).to_be_bytes());
        let do_bit: u32 = if self.dnssec_ok { 0x8000 } else { 0 };
        let ttl = (((ext_rcode >> 4) as u32 & 0xff) << 24) | do_bit;
        out.extend_from_slice(&ttl.to_be_bytes());
        let rdlen_at = out.len();
        out.extend_from_slice(&[0, 0]);
        for (code, text) in &self.ede {
            // EXTRA-TEXT is bounded so an option can never overflow its length field.
            let text = &text.as_bytes()[..text.len().min(512)];
            push_option(out, wire::edns_option::EDE, &[&code.to_be_bytes(), text]);
        }
        if let Some(nsid) = self.nsid {
            push_option(out, wire::edns_option::NSID, &[nsid]);
        }
        if let Some(cookie) = &self.cookie {
            push_option(out, wire::edns_option::COOKIE, &[cookie]);
        }
        if self.pad {
            push_padding(out, RESPONSE_PADDING_BLOCK, limit);
        }
        let rdlen = (out.len() - rdlen_at - 2) as u16;
        out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }

    /// Size of the OPT record [`write`](Self::write) appends.
    pub fn len(&self) -> usize {
        let ede: usize = self.ede.iter().map(|(_, t)| 6 + t.len().min(512)).sum();
        let cookie = self.cookie.map_or(0, |c| 4 + c.len());
        11 + ede + self.nsid.map_or(0, |n| 4 + n.len()) + cookie
    }

    /// Always false: an OPT record has at least its fixed part.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Appends a Padding option (RFC 7830) that brings the message in `out` to
/// the next multiple of `block` bytes, or to `limit` if that is nearer; none
/// when even the option's header does not fit. Returns the option's length
/// (header included), for a caller that keeps the OPT's RDLENGTH itself.
pub fn push_padding(out: &mut Vec<u8>, block: usize, limit: usize) -> usize {
    let with_header = out.len() + 4;
    let Some(room) = limit.checked_sub(with_header) else {
        return 0;
    };
    let to_block = (block - with_header % block) % block;
    let pad = to_block.min(room);
    out.extend_from_slice(&wire::edns_option::PADDING.to_be_bytes());
    out.extend_from_slice(&(pad as u16).to_be_bytes());
    out.resize(out.len() + pad, 0);
    4 + pad
}

fn push_option(out: &mut Vec<u8>, code: u16, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The flags word of a response to a query with flags `query_flags`:
/// QR=1, opcode/RD/CD echoed, RA=1 (we recurse), and the given RCODE.
pub fn response_flags(query_flags: u16, rcode: u16) -> u16 {
    flag::QR | (query_flags & (flag::OPCODE_MASK | flag::RD | flag::CD)) | flag::RA | (rcode & 0xf)
}

/// Writes a response record by record: header and question first, then
/// answer, authority and additional records in that order.
pub struct ResponseWriter {
    buf: Vec<u8>,
    counts: [u16; 3],
    rcode: u16,
}

/// Which section a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl ResponseWriter {
    /// Starts a response to `req` with the given (extended) RCODE.
    pub fn new(req: &Request, rcode: u16) -> Self {
        Self::with_header(req.id, req.flags, Some(&req.question), rcode)
    }

    /// Starts a response from raw header fields (for rejected queries).
    pub fn with_header(id: u16, query_flags: u16, question: Option<&[u8]>, rcode: u16) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&response_flags(query_flags, rcode).to_be_bytes());
        let qd: u16 = question.is_some().into();
        buf.extend_from_slice(&qd.to_be_bytes());
        buf.extend_from_slice(&[0; 6]);
        if let Some(q) = question {
            buf.extend_from_slice(q);
        }
        Self {
            buf,
            counts: [0; 3],
            rcode,
        }
    }

    /// Adds a record owned by the question name.
    pub fn record_at_question(&mut self, section: Section, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.record_at_question_in(section, rtype, CLASS_IN, ttl, rdata);
    }

    /// Adds a record of class `class` (CHAOS answers) owned by the question name.
    pub fn record_at_question_in(
        &mut self,
        section: Section,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) {
        self.buf.extend_from_slice(&QUESTION_NAME_POINTER);
        self.finish_record(section, rtype, class, ttl, rdata);
    }

    /// Adds a record owned by `owner` (presentation form). Returns false (and
    /// adds nothing) when the name is invalid.
    pub fn record_at(
        &mut self,
        section: Section,
        owner: &str,
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> bool {
        if wire::push_name(&mut self.buf, owner).is_none() {
            return false;
        }
        self.finish_record(section, rtype, CLASS_IN, ttl, rdata);
        true
    }

    /// Adds an already-encoded record (owner name through RDATA).
    pub fn raw_record(&mut self, section: Section, record: &[u8]) {
        self.buf.extend_from_slice(record);
        self.counts[section as usize] += 1;
    }

    fn finish_record(&mut self, section: Section, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.counts[section as usize] += 1;
    }

    /// Adds an A or AAAA record for `addr` owned by the question name.
    pub fn address(&mut self, section: Section, addr: IpAddr, ttl: u32) {
        match addr {
            IpAddr::V4(v4) => self.record_at_question(section, rtype::A, ttl, &v4.octets()),
            IpAddr::V6(v6) => self.record_at_question(section, rtype::AAAA, ttl, &v6.octets()),
        }
    }

    /// Sets extra header flag bits (AA, AD, TC).
    pub fn set_flags(&mut self, bits: u16) {
        let flags = wire::u16_at(&self.buf, 2).unwrap_or(0) | bits;
        self.buf[2..4].copy_from_slice(&flags.to_be_bytes());
    }

    /// Finishes the message, appending the OPT record when `edns` is given.
    /// Over `limit` bytes, the records are dropped and TC is set (RFC 1035
    /// §4.2.1, RFC 2181 §9), keeping the question and the OPT record.
    pub fn finish(mut self, edns: Option<&EdnsOut>, limit: usize) -> Vec<u8> {
        let opt_len = edns.map_or(0, EdnsOut::len);
        if self.buf.len() + opt_len > limit {
            let question_end = question_end(&self.buf);
            self.buf.truncate(question_end);
            self.counts = [0; 3];
            self.set_flags(flag::TC);
        }
        for (i, count) in self.counts.iter().enumerate() {
            let at = 6 + 2 * i;
            self.buf[at..at + 2].copy_from_slice(&count.to_be_bytes());
        }
        if let Some(e) = edns {
            e.write(&mut self.buf, self.rcode, limit);
            self.buf[10..12].copy_from_slice(&(self.counts[2] + 1).to_be_bytes());
        }
        self.buf
    }
}

/// End of the question section of a message we built (one question or none).
fn question_end(buf: &[u8]) -> usize {
    let qd = wire::u16_at(buf, 4).unwrap_or(0);
    if qd == 0 {
        return HEADER_LEN;
    }
    wire::skip_name(buf, HEADER_LEN).map_or(buf.len(), |p| (p + 4).min(buf.len()))
}

/// A response with no records: errors, NODATA without SOA, REFUSED.
pub fn empty_reply(
    header: &Header,
    question: Option<&[u8]>,
    rcode: u16,
    edns: Option<&EdnsOut>,
) -> Vec<u8> {
    ResponseWriter::with_header(header.id, header.flags, question, rcode).finish(edns, usize::MAX)
}

/// RDATA of a synthesized SOA for negative answers we make up ourselves:
/// `picket.invalid. blocked.picket.invalid. 1 3600 600 86400 <minimum>`.
pub fn synthetic_soa_rdata(minimum: u32) -> Vec<u8> {
    let mut rdata = Vec::with_capacity(64);
    let _ = wire::push_name(&mut rdata, "picket.invalid.");
    let _ = wire::push_name(&mut rdata, "blocked.picket.invalid.");
    for v in [1u32, 3600, 600, 86400, minimum] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    rdata
}

/// RDATA of a TXT record holding `text` (split into 255-byte strings).
pub fn txt_rdata(text: &[u8]) -> Vec<u8> {
    let mut rdata = Vec::with_capacity(text.len() + 2);
    if text.is_empty() {
        rdata.push(0);
    }
    for chunk in text.chunks(255) {
        rdata.push(chunk.len() as u8);
        rdata.extend_from_slice(chunk);
    }
    rdata
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse::parse_query;
    use hickory_proto::op::Message;

    fn request(edns: bool) -> Request {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        wire::push_name(&mut q, "Blocked.Example").unwrap();
        q.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            q[11] = 1;
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        }
        parse_query(&q).unwrap()
    }

    /// A query for `Blocked.Example` A whose OPT carries a Padding option.
    fn padded_request() -> Request {
        let mut q = request(false);
        let mut bytes = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&q.question);
        bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 8]);
        bytes.extend_from_slice(&[0, 12, 0, 4, 0, 0, 0, 0]);
        q = parse_query(&bytes).unwrap();
        assert!(q.edns.unwrap().padding);
        q
    }

    fn padding_len(bytes: &[u8]) -> Option<usize> {
        let msg = Message::from_vec(bytes).unwrap();
        let edns = msg.edns?;
        edns.options()
            .as_ref()
            .iter()
            .find(|(code, _)| u16::from(*code) == 12)
            .map(|(_, option)| usize::from(option.len()))
    }

    #[test]
    fn responses_to_padded_queries_are_padded_to_the_block_within_the_limit() {
        let req = padded_request();
        let edns = EdnsOut::answering(req.edns.as_ref().unwrap(), 1232);
        let mut w = ResponseWriter::new(&req, 0);
        w.address(Section::Answer, [192, 0, 2, 1].into(), 60);
        let padded = w.finish(Some(&edns), usize::from(u16::MAX));
        assert_eq!(padded.len() % RESPONSE_PADDING_BLOCK, 0);
        assert!(padding_len(&padded).is_some());
        // A limit under the block: padded up to the limit, never past it.
        let mut w = ResponseWriter::new(&req, 0);
        w.address(Section::Answer, [192, 0, 2, 1].into(), 60);
        assert_eq!(w.finish(Some(&edns), 300).len(), 300);
        // An unpadded query gets no padding.
        let plain = request(true);
        let edns = EdnsOut::answering(plain.edns.as_ref().unwrap(), 1232);
        let bytes = ResponseWriter::new(&plain, 0).finish(Some(&edns), usize::from(u16::MAX));
        assert_eq!(padding_len(&bytes), None);
        assert!(bytes.len() < RESPONSE_PADDING_BLOCK);
    }

    #[test]
    fn block_answer_parses_with_hickory_and_carries_ede() {
        let req = request(true);
        let mut w = ResponseWriter::new(&req, 3);
        w.record_at_question(Section::Authority, rtype::SOA, 60, &synthetic_soa_rdata(60));
        let edns = EdnsOut::answering(req.edns.as_ref().unwrap(), 1232).with_ede(15, "rule r1");
        let bytes = w.finish(Some(&edns), 1232);
        let msg = Message::from_vec(&bytes).unwrap();
        assert_eq!(msg.metadata.id, 0xabcd);
        assert_eq!(
            msg.metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );
        assert!(msg.metadata.recursion_available);
        assert_eq!(msg.queries[0].name().to_string(), "Blocked.Example.");
        assert_eq!(msg.authorities.len(), 1);
        let e = msg.edns.unwrap();
        assert!(e.flags().dnssec_ok);
    }

    #[test]
    fn overflow_truncates_to_question_and_opt() {
        let req = request(false);
        let mut w = ResponseWriter::new(&req, 0);
        for _ in 0..40 {
            w.address(Section::Answer, "192.0.2.1".parse().unwrap(), 60);
        }
        let bytes = w.finish(None, 512);
        let msg = Message::from_vec(&bytes).unwrap();
        assert!(msg.metadata.truncation);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.queries.len(), 1);
    }
}
