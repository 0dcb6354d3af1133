//! Trust anchors: per zone, the DS and DNSKEY records a chain of trust
//! starts from (RFC 4035 §4.3, RFC 7958).

use std::collections::BTreeMap;

use base64::Engine;
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf};
use hickory_proto::rr::Name;

/// The root zone's key-signing keys, 20326 (2017) and 38696 (2024), as
/// published by IANA (https://data.iana.org/root-anchors/root-anchors.xml);
/// the same bytes hickory-proto ships. A unit test checks their key tags
/// and DS digests against IANA's.
const ROOT_KSK_20326: &[u8] = include_bytes!("roots/20326.rsa");
const ROOT_KSK_38696: &[u8] = include_bytes!("roots/38696.rsa");

/// One zone's anchors: a DNSKEY of the zone matches if it is one of `dnskeys`
/// or one of `ds` covers it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ZoneAnchor {
    pub(crate) dnskeys: Vec<DNSKEY>,
    pub(crate) ds: Vec<DS>,
}

/// Per-zone DS and DNSKEY records (islands of security: more than one zone).
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    zones: BTreeMap<Name, ZoneAnchor>,
}

impl TrustAnchors {
    /// The IANA root KSKs 20326 and 38696.
    pub fn builtin_root() -> Self {
        let mut anchors = Self::default();
        for key in [ROOT_KSK_20326, ROOT_KSK_38696] {
            let dnskey = DNSKEY::with_flags(
                0x0101,
                PublicKeyBuf::new(key.to_vec(), Algorithm::RSASHA256),
            );
            anchors
                .zones
                .entry(Name::root())
                .or_default()
                .dnskeys
                .push(dnskey);
        }
        anchors
    }

    /// Reads DS and DNSKEY lines (`owner [TTL] [IN] DS|DNSKEY rdata`, `;`
    /// comments, other lines ignored), as Unbound's `trust-anchor-file` and
    /// ldns' `.ds`/`.key` files hold them. hickory's zone parser refuses
    /// DNSKEY lines, so they are read here.
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let mut anchors = Self::default();
        for (number, line) in records(text) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The type follows the owner, an optional TTL and an optional class.
            let Some(at) = fields
                .iter()
                .skip(1)
                .position(|f| f.parse::<u32>().is_err() && !f.eq_ignore_ascii_case("IN"))
                .map(|i| i + 1)
                .filter(|&i| {
                    fields[i].eq_ignore_ascii_case("DS") || fields[i].eq_ignore_ascii_case("DNSKEY")
                })
            else {
                continue;
            };
            let bad = |reason: String| AnchorError::Line {
                line: number,
                reason,
            };
            let mut name = Name::from_ascii(fields[0]).map_err(|e| bad(e.to_string()))?;
            name.set_fqdn(true);
            let name = name.to_lowercase();
            let rdata = &fields[at + 1..];
            let int = |i: usize, max: u32| -> Result<u32, AnchorError> {
                let field = rdata.get(i).ok_or_else(|| bad("too few fields".into()))?;
                field
                    .parse::<u32>()
                    .ok()
                    .filter(|v| *v <= max)
                    .ok_or_else(|| bad(format!("{field:?} is not a number up to {max}")))
            };
            // RFC 4034 §5.3 and §2.2: the algorithm as a number or as its mnemonic.
            let algorithm = |i: usize| -> Result<Algorithm, AnchorError> {
                let field = rdata.get(i).ok_or_else(|| bad("too few fields".into()))?;
                algorithm_from_text(field).ok_or_else(|| {
                    bad(format!(
                        "{field:?} is not a DNSSEC algorithm (a number up to 255, or a mnemonic such as RSASHA256 or ECDSAP256SHA256)"
                    ))
                })
            };
            let zone = anchors.zones.entry(name).or_default();
            if fields[at].eq_ignore_ascii_case("DS") {
                let digest = hex(&rdata.get(3..).unwrap_or_default().concat())
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| bad("the DS digest is not hex".into()))?;
                zone.ds.push(DS::new(
                    int(0, 65535)? as u16,
                    algorithm(1)?,
                    DigestType::from(int(2, 255)? as u8),
                    digest,
                ));
            } else {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(rdata.get(3..).unwrap_or_default().concat())
                    .map_err(|e| bad(format!("the DNSKEY public key is not base64: {e}")))?;
                zone.dnskeys.push(DNSKEY::with_flags(
                    int(0, 65535)? as u16,
                    PublicKeyBuf::new(key, algorithm(2)?),
                ));
            }
        }
        if anchors.zones.is_empty() {
            return Err(AnchorError::Empty);
        }
        Ok(anchors)
    }

    /// The zones that have an anchor.
    pub fn zones(&self) -> Vec<Name> {
        self.zones.keys().cloned().collect()
    }

    /// The key tags of the root's anchors (its DNSKEYs and the keys its DS
    /// records name), which the root key sentinel asks about (RFC 8509).
    pub(crate) fn root_key_tags(&self) -> Vec<u16> {
        let Some(root) = self.zones.get(&Name::root()) else {
            return Vec::new();
        };
        let keys = root
            .dnskeys
            .iter()
            .filter_map(|k| k.calculate_key_tag().ok());
        keys.chain(root.ds.iter().map(|ds| ds.key_tag())).collect()
    }

    /// Whether `zone` (lower case) has an anchor of its own.
    pub(crate) fn is_anchor(&self, zone: &Name) -> bool {
        self.zones.contains_key(zone)
    }

    /// The anchor of the closest zone enclosing `name` (lower case).
    pub(crate) fn closest(&self, name: &Name) -> Option<(&Name, &ZoneAnchor)> {
        self.zones
            .iter()
            .filter(|(zone, _)| zone.zone_of(name))
            .max_by_key(|(zone, _)| zone.num_labels())
    }
}

/// Why a trust-anchor text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// A DS or DNSKEY line that cannot be read.
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    /// No DS or DNSKEY line at all.
    #[error("no DS or DNSKEY record (expected lines like `example. IN DS 12345 13 2 <hex>`)")]
    Empty,
}

/// The records of a zone-file text with their first line's number: `;`
/// comments cut, and a record spread over lines in parentheses (RFC 1035
/// §5.1, as ldns and BIND write long DNSKEYs) joined into one.
fn records(text: &str) -> Vec<(usize, String)> {
    let mut records = Vec::new();
    let mut open: Option<(usize, String)> = None;
    let clean = |(number, record): (usize, String)| {
        (number, record.replace(['(', ')'], " ").trim().to_string())
    };
    for (index, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("");
        let (number, mut record) = open.take().unwrap_or((index + 1, String::new()));
        record.push(' ');
        record.push_str(line);
        if record.matches('(').count() > record.matches(')').count() {
            open = Some((number, record));
        } else {
            records.push(clean((number, record)));
        }
    }
    // An unclosed parenthesis at the end: the record as far as it goes.
    records.extend(open.map(clean));
    records
}

/// A DNSSEC algorithm field: its number, or its mnemonic from IANA's
/// registry (RFC 4034 Appendix A.1, RFC 5155, 5702, 6605, 8080).
fn algorithm_from_text(field: &str) -> Option<Algorithm> {
    if let Ok(number) = field.parse::<u8>() {
        return Some(Algorithm::from_u8(number));
    }
    let number = match field.to_ascii_uppercase().as_str() {
        "RSAMD5" => 1,
        "DH" => 2,
        "DSA" => 3,
        "RSASHA1" => 5,
        "DSA-NSEC3-SHA1" => 6,
        "RSASHA1-NSEC3-SHA1" => 7,
        "RSASHA256" => 8,
        "RSASHA512" => 10,
        "ECC-GOST" => 12,
        "ECDSAP256SHA256" => 13,
        "ECDSAP384SHA384" => 14,
        "ED25519" => 15,
        "ED448" => 16,
        _ => return None,
    };
    Some(Algorithm::from_u8(number))
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_root_keys_are_the_iana_ksks() {
        let anchors = TrustAnchors::builtin_root();
        let (zone, anchor) = anchors
            .closest(&Name::from_ascii("example.com.").unwrap())
            .unwrap();
        assert!(zone.is_root());
        let root = Name::root();
        let tags: Vec<u16> = anchor
            .dnskeys
            .iter()
            .map(|k| k.calculate_key_tag().unwrap())
            .collect();
        assert_eq!(tags, vec![20326, 38696]);
        // The SHA-256 DS digests IANA publishes in root-anchors.xml.
        let digests = [
            "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
        ];
        for (key, digest) in anchor.dnskeys.iter().zip(digests) {
            let ds = key.to_digest(&root, DigestType::SHA256).unwrap();
            assert_eq!(ds.as_ref(), hex(digest).unwrap().as_slice());
            assert!(key.is_key_signing_key());
        }
    }

    #[test]
    fn parse_reads_ds_and_dnskey_lines_per_zone() {
        let text = "; islands\n\
            secure.example. 3600 IN DS 12345 13 2 0A0B0C0D\n\
            other.example. IN DNSKEY 257 3 13 AAECAw==\n\
            $TTL 60\n";
        let anchors = TrustAnchors::parse(text).unwrap();
        let zones: Vec<String> = anchors.zones().iter().map(|z| z.to_string()).collect();
        assert_eq!(zones, vec!["other.example.", "secure.example."]);
        let name = Name::from_ascii("a.b.secure.example.").unwrap();
        let (zone, anchor) = anchors.closest(&name).unwrap();
        assert_eq!(zone.to_string(), "secure.example.");
        assert_eq!(anchor.ds[0].key_tag(), 12345);
        assert!(anchors
            .closest(&Name::from_ascii("example.").unwrap())
            .is_none());
    }

    #[test]
    fn parse_reads_algorithm_mnemonics_and_records_in_parentheses() {
        let text = "a.example. 3600 IN DS 30899 RSASHA1 1 (\n\
            \t0A0B ; first half\n\
            \t0C0D )\n\
            b.example. IN DNSKEY 257 3 ecdsap256sha256 ( AAEC\n Aw== )\n\
            c.example. IN DS 1 13 2 0A0B\n";
        let anchors = TrustAnchors::parse(text).unwrap();
        let a = &anchors.zones[&Name::from_ascii("a.example.").unwrap()].ds[0];
        assert_eq!(
            (a.key_tag(), a.algorithm(), a.digest()),
            (30899, Algorithm::from_u8(5), &[0x0a, 0x0b, 0x0c, 0x0d][..])
        );
        let b = &anchors.zones[&Name::from_ascii("b.example.").unwrap()].dnskeys[0];
        let key = b.public_key();
        assert_eq!(
            hickory_proto::dnssec::PublicKey::algorithm(key),
            Algorithm::ECDSAP256SHA256
        );
        assert_eq!(
            hickory_proto::dnssec::PublicKey::public_bytes(key),
            &[0, 1, 2, 3][..]
        );
        assert_eq!(anchors.zones().len(), 3);
        // An error in a record over several lines names its first line.
        let e = TrustAnchors::parse("; x\nx. IN DS 1 RSA-FOO 2 (\n 00 )\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("RSA-FOO"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_line_and_the_field() {
        let e = TrustAnchors::parse("x. IN DS 1 13 2 zz\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("hex"), "{e}");
        let e = TrustAnchors::parse("x. IN DS 99999 13 2 00\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("99999"), "{e}");
        let e = TrustAnchors::parse("x. IN A 192.0.2.1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no DS or DNSKEY"), "{e}");
    }
}
