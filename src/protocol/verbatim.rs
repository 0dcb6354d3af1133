//! Whether an upstream answer can be stored as it came, without a parse and
//! re-encode through hickory-proto ([`super::answer`]).
//!
//! Re-encoding makes what the cache stores canonical (names compressed only
//! backwards and never into the header we patch, no trailing bytes, no OPT
//! or TSIG, every record parseable by any client), at the price of a full
//! parse into owned records and an encode per forwarded miss. Most answers
//! are canonical already: the records every cache miss sees (A, AAAA, CNAME,
//! NS, PTR, MX, SOA) with well-formed names, and an OPT without options at
//! the end. For those the bytes are kept as they are, minus the OPT. Anything
//! else (another record type, an EDNS option, an extended RCODE, a forward
//! pointer, trailing bytes, a suspect CNAME chain) takes the re-encoding path,
//! which accepts and rejects exactly as before.

use super::wire::{self, rtype, Header, HEADER_LEN};

/// What to store of an answer that qualifies: its first `len` bytes (the
/// trailing OPT cut off) with ARCOUNT set to `arcount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verbatim {
    pub len: usize,
    pub arcount: u16,
}

/// Class IN: the only class whose records are checked here.
const IN: u16 = 1;
/// MX (RFC 1035 §3.3.9) and PTR (§3.3.12): names in RDATA, like CNAME and NS.
const MX: u16 = 15;
const PTR: u16 = 12;

/// `bytes` (a response whose one question, `question_len` bytes long, is
/// checked already) when every record after the question is one this module
/// knows to be well formed; None sends the answer down the re-encoding path.
pub(super) fn storable(bytes: &[u8], header: &Header, question_len: usize) -> Option<Verbatim> {
    let mut pos = HEADER_LEN + question_len;
    let records = header.ancount as usize + header.nscount as usize;
    let mut ttls = Ttls {
        records_at: pos,
        at: smallvec::SmallVec::new(),
    };
    for _ in 0..records {
        pos = checked_record(bytes, pos, &mut ttls)?;
    }
    let mut arcount = header.arcount;
    let mut kept_len = pos;
    for i in 0..header.arcount {
        let span = wire::read_record_span(bytes, pos, 2).ok()?;
        if span.rtype == rtype::OPT {
            // Only as the last record, and only a plain one: options (EDE),
            // an extended RCODE or another EDNS version need the full parse.
            let last = i + 1 == header.arcount;
            let plain = span.start + 1 == span.ttl_at - 4 && span.ttl >> 16 == 0 && span.rdlen == 0;
            if !(last && plain) {
                return None;
            }
            arcount -= 1;
            pos = span.end();
            break;
        }
        pos = checked_record(bytes, pos, &mut ttls)?;
        kept_len = pos;
    }
    (pos == bytes.len()).then_some(Verbatim {
        len: kept_len,
        arcount,
    })
}

/// Where the records start (after the question), and the offsets of the TTL
/// fields of those checked so far.
struct Ttls {
    records_at: usize,
    at: smallvec::SmallVec<[usize; 16]>,
}

impl Ttls {
    /// Whether bytes `from..=last` overlap a TTL field.
    fn overlap(&self, from: usize, last: usize) -> bool {
        self.at.iter().any(|&t| from <= t + 3 && t <= last)
    }
}

/// The end of the IN-class record at `pos` when its owner and its RDATA are
/// well formed for its type; None for any other record. Its TTL's offset
/// joins `ttls`.
fn checked_record(bytes: &[u8], pos: usize, ttls: &mut Ttls) -> Option<usize> {
    let owner_end = checked_name(bytes, pos, ttls)?;
    let span = wire::read_record_span(bytes, pos, 0).ok()?;
    if span.class != IN || span.rdata_at != owner_end + 10 {
        return None;
    }
    ttls.at.push(span.ttl_at);
    let (at, end) = (span.rdata_at, span.end());
    let fits = match span.rtype {
        rtype::A => span.rdlen == 4,
        rtype::AAAA => span.rdlen == 16,
        rtype::CNAME | rtype::NS | PTR => checked_name(bytes, at, ttls) == Some(end),
        MX => span.rdlen > 2 && checked_name(bytes, at + 2, ttls) == Some(end),
        rtype::SOA => {
            let rname = checked_name(bytes, at, ttls)?;
            checked_name(bytes, rname, ttls).map(|serial| serial + 20) == Some(end)
        }
        _ => false,
    };
    fits.then_some(end)
}

/// The end of the name at `pos` in the stream, when its labels are plain
/// (at most 63 bytes, 255 in all) and each pointer goes to a prior
/// occurrence after the header (the one name reader, [`wire::skip_name`]),
/// and no byte a pointer leads to lies in a TTL field: Picket rewrites those
/// in what it serves, so a name read from one would change under the client
/// (`skip_name` only asks that a pointer go backwards).
fn checked_name(bytes: &[u8], pos: usize, ttls: &Ttls) -> Option<usize> {
    let end = wire::skip_name(bytes, pos).ok()?;
    // The name's own labels are its record's bytes, before any pointer.
    let mut cursor = pos;
    let mut jumped = false;
    loop {
        // In bounds and ending: `skip_name` walked the same bytes.
        let len = usize::from(bytes[cursor]);
        if len & 0xc0 == 0xc0 {
            if jumped && ttls.overlap(cursor, cursor + 1) {
                return None;
            }
            cursor = (len & 0x3f) << 8 | usize::from(bytes[cursor + 1]);
            // Into the question (most pointers go to its name): nothing
            // from there on can reach a record, since pointers go backwards.
            if cursor < ttls.records_at {
                return Some(end);
            }
            jumped = true;
            continue;
        }
        if jumped && ttls.overlap(cursor, cursor + len) {
            return None;
        }
        if len == 0 {
            return Some(end);
        }
        cursor += 1 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `www.example.test A` with the records given as
    /// (owner, type, rdata), owners and names in RDATA written out.
    fn response(records: &[(u16, &[u8], u16, &[u8])], additional: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        let answers = records.len() as u16 - additional;
        m.extend_from_slice(&answers.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&additional.to_be_bytes());
        m.extend_from_slice(QNAME);
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (class, owner, t, rdata) in records {
            m.extend_from_slice(owner);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&class.to_be_bytes());
            m.extend_from_slice(&300u32.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    const QNAME: &[u8] = b"\x03www\x07example\x04test\x00";
    /// A pointer to the question's name.
    const TO_QNAME: &[u8] = &[0xc0, 12];

    fn check(bytes: &[u8]) -> Option<Verbatim> {
        storable(bytes, &Header::read(bytes).unwrap(), QNAME.len() + 4)
    }

    #[test]
    fn plain_records_and_a_trailing_opt_are_kept_as_they_are() {
        let opt: (u16, &[u8], u16, &[u8]) = (1232, b"\x00", rtype::OPT, b"");
        let bytes = response(&[(IN, TO_QNAME, rtype::A, &[192, 0, 2, 1]), opt], 1);
        let opt_len = 11;
        assert_eq!(
            check(&bytes),
            Some(Verbatim {
                len: bytes.len() - opt_len,
                arcount: 0
            })
        );
        let cname = b"\x03cdn\x07example\x00";
        let chain = response(
            &[
                (IN, TO_QNAME, rtype::CNAME, cname),
                (IN, &[0xc0, 46], rtype::AAAA, &[0; 16]),
            ],
            0,
        );
        assert_eq!(chain[46], 3, "the pointer goes to the CNAME's target");
        assert_eq!(check(&chain).map(|v| v.len), Some(chain.len()));
    }

    #[test]
    fn anything_unusual_goes_to_the_full_parse() {
        let a = (IN, TO_QNAME, rtype::A, &[192, 0, 2, 1][..]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "short A",
                response(&[(IN, TO_QNAME, rtype::A, &[1, 2, 3])], 0),
            ),
            (
                "class CH",
                response(&[(3, TO_QNAME, rtype::A, &[1, 2, 3, 4])], 0),
            ),
            ("TXT", response(&[(IN, TO_QNAME, rtype::TXT, b"\x02hi")], 0)),
            (
                "pointer into the header",
                response(&[(IN, &[0xc0, 2], rtype::A, &[1, 2, 3, 4])], 0),
            ),
            (
                "forward pointer",
                response(&[(IN, &[0xc0, 60], rtype::A, &[1, 2, 3, 4])], 0),
            ),
            (
                // The target (at 46) is a label "\0x", then a pointer to that label's
                // second byte, the root: before the pointer, but inside its own name,
                // which no client reads.
                "CNAME target pointing into itself",
                response(&[(IN, TO_QNAME, rtype::CNAME, &[2, 0, b'x', 0xc0, 47])], 0),
            ),
            (
                // The NS name (at 46) is a label "\0x", then a pointer to the second
                // byte of its own record's TTL (at 40: 0, 0, 1, 44), a root label as
                // stored; the TTL Picket serves is its own, and so would be the name.
                "name in a TTL field",
                response(&[(IN, TO_QNAME, rtype::NS, &[2, 0, b'x', 0xc0, 41])], 0),
            ),
            (
                "CNAME with slack",
                response(&[(IN, TO_QNAME, rtype::CNAME, b"\x01a\x00\x00")], 0),
            ),
            (
                "OPT with an option",
                response(&[a, (1232, b"\x00", rtype::OPT, &[0, 15, 0, 2, 0, 3])], 1),
            ),
            (
                "OPT not last",
                response(&[a, (1232, b"\x00", rtype::OPT, b""), a], 2),
            ),
            ("trailing bytes", [response(&[a], 0), vec![0]].concat()),
        ];
        for (what, bytes) in cases {
            assert_eq!(check(&bytes), None, "{what}");
        }
        let mut extended_rcode = response(&[a, (1232, b"\x00", rtype::OPT, b"")], 1);
        let ttl_at = extended_rcode.len() - 6;
        extended_rcode[ttl_at] = 1;
        assert_eq!(check(&extended_rcode), None, "extended RCODE");
    }
}
