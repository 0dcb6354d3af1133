//! Byte-level DNS helpers for the hot path: header fields, names, record walking.
//!
//! hickory-proto's full `Message` parse costs ~310 ns and its OPT decoding most
//! of that; a query only needs its header, its one question and
//! the OPT record, so those are read here by hand. Everything in this module is
//! pure and bounds-checked: it is the fuzz surface.

use std::fmt::Write as _;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// Response codes used by Picket.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended RCODE 16 (RFC 6891): the upper 8 bits go in the OPT record.
    pub const BADVERS: u16 = 16;

    /// Mnemonic for logs and metric labels (bounded set).
    pub fn name(code: u16) -> &'static str {
        match code {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            16 => "BADVERS",
            _ => "OTHER",
        }
    }
}

/// Record types that the hot path needs to recognise.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const RRSIG: u16 = 46;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
    pub const HINFO: u16 = 13;

    /// A type no resolver can be asked for: OPT, TKEY and TSIG live only in
    /// a message's additional section, MAILA and MAILB are obsolete (RFC
    /// 6895 §3.1), and 128-248 are meta-types none of which are queries.
    /// Unbound answers these FORMERR, and so do we rather than send them on.
    pub fn is_never_asked(qtype: u16) -> bool {
        matches!(qtype, OPT | 128..=250 | 253 | 254)
    }
}

/// Header flag bits (the 16-bit word after the ID).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const RCODE_MASK: u16 = 0x000f;
}

/// EDNS option codes.
pub mod edns_option {
    pub const NSID: u16 = 3;
    pub const COOKIE: u16 = 10;
    pub const PADDING: u16 = 12;
    pub const EDE: u16 = 15;
}

/// Extended DNS Error info codes (RFC 8914 §4) Picket gives, the validator's among them.
pub mod ede {
    pub const UNSUPPORTED_DNSKEY_ALGORITHM: u16 = 1;
    pub const UNSUPPORTED_DS_DIGEST: u16 = 2;
    pub const STALE_ANSWER: u16 = 3;
    pub const DNSSEC_BOGUS: u16 = 6;
    pub const SIGNATURE_EXPIRED: u16 = 7;
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    pub const DNSKEY_MISSING: u16 = 9;
    pub const RRSIGS_MISSING: u16 = 10;
    pub const NSEC_MISSING: u16 = 12;
    pub const NOT_READY: u16 = 14;
    pub const BLOCKED: u16 = 15;
    pub const FILTERED: u16 = 17;
    pub const PROHIBITED: u16 = 18;
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    pub const NETWORK_ERROR: u16 = 23;
    pub const UNSUPPORTED_NSEC3_ITERATIONS: u16 = 27;
}

/// Why bytes could not be read as DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ended inside a field.
    Truncated,
    /// A label longer than 63 bytes, a name longer than 255, or a reserved label type.
    BadName,
    /// A compression pointer where none is allowed, or one that loops.
    BadPointer,
    /// An EDNS option whose length its kind does not allow (a COOKIE of 5 bytes).
    BadOption,
}

/// Reads a big-endian u16 at `pos`.
#[inline]
pub fn u16_at(buf: &[u8], pos: usize) -> Result<u16, WireError> {
    match buf.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

/// Reads a big-endian u32 at `pos`.
#[inline]
pub fn u32_at(buf: &[u8], pos: usize) -> Result<u32, WireError> {
    match buf.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// Reads the header from the first 12 bytes.
    pub fn read(buf: &[u8]) -> Result<Header, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Header {
            id: u16_at(buf, 0)?,
            flags: u16_at(buf, 2)?,
            qdcount: u16_at(buf, 4)?,
            ancount: u16_at(buf, 6)?,
            nscount: u16_at(buf, 8)?,
            arcount: u16_at(buf, 10)?,
        })
    }

    /// The opcode (RFC 1035 §4.1.1).
    pub fn opcode(&self) -> u8 {
        ((self.flags & flag::OPCODE_MASK) >> 11) as u8
    }

    /// The 4-bit RCODE of the header.
    pub fn rcode(&self) -> u8 {
        (self.flags & flag::RCODE_MASK) as u8
    }

    /// Whether the QR bit marks this as a response.
    pub fn is_response(&self) -> bool {
        self.flags & flag::QR != 0
    }
}

/// Reads an uncompressed name starting at `pos`, appending its lower-case
/// presentation form (no trailing dot, `""` for the root) to `text` and its
/// lower-case wire form to `wire`. Returns the position after the name.
///
/// Compression pointers are refused: a query's question is the first name in
/// the message, so a pointer there can only be hostile.
pub fn read_question_name(
    buf: &[u8],
    pos: usize,
    text: &mut String,
    wire: &mut Vec<u8>,
) -> Result<usize, WireError> {
    walk_name::<POINTERS_REFUSED>(buf, pos, |label| {
        if !text.is_empty() {
            text.push('.');
        }
        wire.push(label.len() as u8);
        for &b in label {
            let lower = b.to_ascii_lowercase();
            wire.push(lower);
            push_presentation_byte(text, lower);
        }
    })
    .inspect(|_| wire.push(0))
}

/// The lower-case wire form of the question name at `pos` (as [`read_question_name`] reads
/// it, without its presentation form), appended to `wire`; returns where the name ends.
pub fn read_question_name_wire(
    buf: &[u8],
    pos: usize,
    wire: &mut impl Extend<u8>,
) -> Result<usize, WireError> {
    walk_name::<POINTERS_REFUSED>(buf, pos, |label| {
        wire.extend([label.len() as u8]);
        wire.extend(label.iter().map(u8::to_ascii_lowercase));
    })
    .inspect(|_| wire.extend([0]))
}

/// [`walk_name`]'s choice for compression pointers: followed in the names of records, or
/// refused in a query's question, the first name of its message, which has nothing before
/// it to point to.
const POINTERS_FOLLOWED: bool = true;
const POINTERS_REFUSED: bool = false;

/// Appends one label byte in presentation form: printable ASCII as is, `.` and
/// `\` escaped, everything else as `\DDD` (RFC 4343), so that two different wire
/// names never share a text form.
fn push_presentation_byte(text: &mut String, b: u8) {
    match b {
        b'.' | b'\\' => {
            text.push('\\');
            text.push(b as char);
        }
        0x21..=0x7e => text.push(b as char),
        _ => {
            let _ = write!(text, "\\{b:03}");
        }
    }
}

/// Skips a (possibly compressed) name at `pos`; returns the position after it. Its pointers
/// are followed, so a name that a client could not read is refused here (see [`walk_name`]).
pub fn skip_name(buf: &[u8], pos: usize) -> Result<usize, WireError> {
    walk_name::<POINTERS_FOLLOWED>(buf, pos, |_| {})
}

/// Reads a (possibly compressed) name at `pos` as lower-case presentation text.
/// Returns the text and the position after the name in the original stream.
pub fn read_name_text(buf: &[u8], pos: usize) -> Result<(String, usize), WireError> {
    let mut text = String::new();
    let after = walk_name::<POINTERS_FOLLOWED>(buf, pos, |label| {
        if !text.is_empty() {
            text.push('.');
        }
        for &b in label {
            push_presentation_byte(&mut text, b.to_ascii_lowercase());
        }
    })?;
    Ok((text, after))
}

/// Walks the name at `pos` in the message `buf`, following its compression pointers, and
/// hands each label to `label`; returns the position after the name in the original stream.
/// A pointer must go to a place before the part of the name that holds it: RFC 1035
/// §4.1.4's "prior occurrence", which clients check (hickory refuses anything else), and
/// which rules out loops. A name that points into itself would be served to clients that
/// cannot read it. Nor may it point into the header, where no name is, and which Picket
/// rewrites in what it serves. The name's length counts its root label, as the
/// [`MAX_NAME_LEN`] of RFC 1035 §2.3.4 does. With [`POINTERS_REFUSED`], any pointer is
/// refused (and the walk compiles to a plain loop over the labels).
fn walk_name<const FOLLOW_POINTERS: bool>(
    buf: &[u8],
    pos: usize,
    mut label: impl FnMut(&[u8]),
) -> Result<usize, WireError> {
    let mut cursor = pos;
    let mut part_start = pos;
    // After a pointer, what is read from its target must end before the
    // part that held the pointer: labels that run into it overlap another
    // name's bytes, which hickory (`LabelOverlapsWithOther`) and so the
    // clients built on it refuse.
    let mut limit = usize::MAX;
    let mut end = None;
    let mut jumps = 0;
    let mut total = 1usize;
    loop {
        if cursor >= limit {
            return Err(WireError::BadPointer);
        }
        let len = *buf.get(cursor).ok_or(WireError::Truncated)? as usize;
        if len == 0 {
            return Ok(end.unwrap_or(cursor + 1));
        }
        if len & 0xc0 == 0xc0 {
            if !FOLLOW_POINTERS {
                return Err(WireError::BadPointer);
            }
            let target = (u16_at(buf, cursor)? & 0x3fff) as usize;
            end.get_or_insert(cursor + 2);
            jumps += 1;
            if target >= part_start || target < HEADER_LEN || jumps > 64 {
                return Err(WireError::BadPointer);
            }
            cursor = target;
            limit = part_start;
            part_start = target;
            continue;
        }
        if len > 63 {
            return Err(WireError::BadName);
        }
        total += len + 1;
        if total > MAX_NAME_LEN {
            return Err(WireError::BadName);
        }
        label(
            buf.get(cursor + 1..cursor + 1 + len)
                .ok_or(WireError::Truncated)?,
        );
        cursor += 1 + len;
    }
}

/// One resource record's position in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Offset of the owner name.
    pub start: usize,
    pub rtype: u16,
    pub class: u16,
    /// Offset of the 4-byte TTL field.
    pub ttl_at: usize,
    pub ttl: u32,
    /// Offset of the RDATA.
    pub rdata_at: usize,
    pub rdlen: u16,
    /// Which section: 0 answer, 1 authority, 2 additional.
    pub section: u8,
}

impl RecordSpan {
    /// Offset just past this record.
    pub fn end(&self) -> usize {
        self.rdata_at + self.rdlen as usize
    }
}

/// Skips the question section; returns the offset of the first record.
pub fn skip_questions(buf: &[u8], header: &Header) -> Result<usize, WireError> {
    let mut pos = HEADER_LEN;
    for _ in 0..header.qdcount {
        pos = skip_name(buf, pos)? + 4;
        if pos > buf.len() {
            return Err(WireError::Truncated);
        }
    }
    Ok(pos)
}

/// Walks every record of a message, calling `visit` for each. Stops at the
/// first malformed record.
pub fn walk_records(
    buf: &[u8],
    mut visit: impl FnMut(&RecordSpan) -> Result<(), WireError>,
) -> Result<usize, WireError> {
    let header = Header::read(buf)?;
    let mut pos = skip_questions(buf, &header)?;
    let sections = [header.ancount, header.nscount, header.arcount];
    for (section, &count) in sections.iter().enumerate() {
        for _ in 0..count {
            let span = read_record_span(buf, pos, section as u8)?;
            visit(&span)?;
            pos = span.end();
        }
    }
    Ok(pos)
}

/// Reads the fixed part of the record at `pos`.
pub fn read_record_span(buf: &[u8], pos: usize, section: u8) -> Result<RecordSpan, WireError> {
    let after_name = skip_name(buf, pos)?;
    let rtype = u16_at(buf, after_name)?;
    let class = u16_at(buf, after_name + 2)?;
    let ttl = u32_at(buf, after_name + 4)?;
    let rdlen = u16_at(buf, after_name + 8)?;
    let rdata_at = after_name + 10;
    if rdata_at + rdlen as usize > buf.len() {
        return Err(WireError::Truncated);
    }
    Ok(RecordSpan {
        start: pos,
        rtype,
        class,
        ttl_at: after_name + 4,
        ttl,
        rdata_at,
        rdlen,
        section,
    })
}

/// Appends `name` (presentation form, with or without the trailing dot) in wire
/// form. Returns `None` when it is not a valid name.
pub fn push_name(out: &mut Vec<u8>, name: &str) -> Option<()> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                out.truncate(start);
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > MAX_NAME_LEN {
        out.truncate(start);
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        push_name(&mut v, name).unwrap();
        v
    }

    #[test]
    fn question_name_is_lowered_and_escaped() {
        let mut buf = wire("WWW.Example.COM");
        buf.extend_from_slice(&[0, 1, 0, 1]);
        let (mut text, mut lower) = (String::new(), Vec::new());
        let end = read_question_name(&buf, 0, &mut text, &mut lower).unwrap();
        assert_eq!(text, "www.example.com");
        assert_eq!(lower, wire("www.example.com"));
        assert_eq!(end, buf.len() - 4);

        let odd = [3, b'a', b'.', 0xff, 0];
        let (mut text, mut lower) = (String::new(), Vec::new());
        read_question_name(&odd, 0, &mut text, &mut lower).unwrap();
        assert_eq!(text, "a\\.\\255");
    }

    #[test]
    fn question_name_rejects_pointers_long_labels_and_long_names() {
        let mut t = String::new();
        let mut w = Vec::new();
        assert_eq!(
            read_question_name(&[0xc0, 0x0c], 0, &mut t, &mut w),
            Err(WireError::BadPointer)
        );
        // Even one to a prior name, which a record's name may use: not in a question.
        let mut prior = vec![0; HEADER_LEN];
        prior.extend(wire("example.com"));
        let www = prior.len();
        prior.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, HEADER_LEN as u8]);
        assert_eq!(skip_name(&prior, www), Ok(prior.len()));
        assert_eq!(
            read_question_name(&prior, www, &mut t, &mut w),
            Err(WireError::BadPointer)
        );
        assert_eq!(
            read_question_name_wire(&prior, www, &mut w),
            Err(WireError::BadPointer)
        );
        assert_eq!(
            read_question_name(&[64], 0, &mut t, &mut w),
            Err(WireError::BadName)
        );
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(
            read_question_name(&long, 0, &mut t, &mut w),
            Err(WireError::BadName)
        );
        assert_eq!(
            read_question_name(&[3, b'a'], 0, &mut t, &mut w),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn compressed_names_read_and_loops_refused() {
        // A header, "example.com" after it, then "www" + a pointer to "example.com".
        let mut buf = vec![0; HEADER_LEN];
        buf.extend(wire("example.com"));
        let www = buf.len();
        buf.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, HEADER_LEN as u8]);
        let (text, end) = read_name_text(&buf, www).unwrap();
        assert_eq!(text, "www.example.com");
        assert_eq!(end, buf.len());
        assert_eq!(skip_name(&buf, www).unwrap(), buf.len());
        // A pointer to itself.
        let mut itself = buf.clone();
        itself.extend_from_slice(&[0xc0, buf.len() as u8]);
        assert_eq!(
            read_name_text(&itself, buf.len()),
            Err(WireError::BadPointer)
        );
        // A pointer into the header (whose bytes here would read as the root name).
        let mut header = buf.clone();
        header.extend_from_slice(&[1, b'a', 0xc0, 0x00]);
        assert_eq!(skip_name(&header, buf.len()), Err(WireError::BadPointer));
        // A pointer back into the name that holds it ("www" + a pointer to its own "w"s:
        // before the pointer, but no prior occurrence), read or skipped: clients refuse it.
        let mut inside = buf.clone();
        inside.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, buf.len() as u8 + 1]);
        assert_eq!(
            read_name_text(&inside, buf.len()),
            Err(WireError::BadPointer)
        );
        assert_eq!(skip_name(&inside, buf.len()), Err(WireError::BadPointer));
        // Nor may a name reached by a pointer point into itself.
        let mut chained = buf.clone();
        let hop = chained.len();
        chained.extend_from_slice(&[1, b'a', 0xc0, hop as u8 + 1, 0xc0, hop as u8]);
        assert_eq!(skip_name(&chained, hop + 4), Err(WireError::BadPointer));
        // A pointer to a prior name whose labels run on into the name holding the pointer
        // (a label claiming one byte more than "abc": the holder's own length byte), and end
        // at a zero inside it. Every byte read is before the pointer, but the labels overlap
        // another name's bytes; hickory refuses it (found by the upstream_answer fuzz target).
        let mut overlap = vec![0; HEADER_LEN];
        overlap.extend_from_slice(&[4, b'a', b'b', b'c']);
        let holder = overlap.len();
        overlap.extend_from_slice(&[2, 0, b'x', 0xc0, HEADER_LEN as u8]);
        assert_eq!(skip_name(&overlap, holder), Err(WireError::BadPointer));
        assert_eq!(read_name_text(&overlap, holder), Err(WireError::BadPointer));
        let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&overlap);
        decoder.read_slice(holder).unwrap();
        assert!(
            <hickory_proto::rr::Name as hickory_proto::serialize::binary::BinDecodable>::read(
                &mut decoder
            )
            .is_err()
        );
    }

    #[test]
    fn a_name_read_from_a_message_is_at_most_255_bytes_with_its_root_label() {
        let name = |last: usize| {
            let mut buf = vec![0; HEADER_LEN];
            for _ in 0..3 {
                buf.push(63);
                buf.extend([b'a'; 63]);
            }
            buf.push(last as u8);
            buf.extend(std::iter::repeat_n(b'b', last));
            buf.push(0);
            buf
        };
        // 3 × 64 + (1 + 61) + 1 = 255 bytes.
        let longest = name(61);
        assert_eq!(skip_name(&longest, HEADER_LEN), Ok(longest.len()));
        assert_eq!(
            read_name_text(&longest, HEADER_LEN).unwrap().1,
            longest.len()
        );
        let over = name(62);
        assert_eq!(skip_name(&over, HEADER_LEN), Err(WireError::BadName));
    }

    #[test]
    fn push_name_refuses_bad_names() {
        let mut v = Vec::new();
        assert!(push_name(&mut v, "a..b").is_none());
        assert!(push_name(&mut v, &"a".repeat(64)).is_none());
        assert!(v.is_empty());
        assert_eq!(wire("."), vec![0]);
        assert_eq!(wire("a.b."), vec![1, b'a', 1, b'b', 0]);
    }
}
