//! DNSSEC signing for test zones, in process (ECDSAP256SHA256 with ring,
//! through hickory-proto): a key per zone, its DNSKEY and DS lines, and an
//! RRSIG for every authoritative RRset, in the text [`Zones::parse`] reads.
//! An NSEC chain (RFC 4034 §4) proves negative answers.
//!
//! [`Zones::parse`]: super::zone::Zones::parse

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{SigInput, DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::authority::parse_name;
use super::zone::parse_line;

/// Signatures are valid from an hour ago to a week ahead, unless a test
/// asks for another window ([`ZoneKey::with_validity`]).
const VALIDITY: (i64, i64) = (-3_600, 7 * 86_400);

/// A zone's key: a key-signing key (flags 257), which signs everything
/// unless a zone-signing key (flags 256) is given to [`ZoneKey::sign_with`].
pub struct ZoneKey {
    zone: Name,
    key: EcdsaSigningKey,
    dnskey: DNSKEY,
    /// Inception and expiration of its signatures, seconds from now.
    validity: (i64, i64),
}

impl ZoneKey {
    /// A fresh key-signing key for `zone`.
    pub fn generate(zone: &str) -> ZoneKey {
        Self::with_flags(zone, 257)
    }

    /// A fresh zone-signing key for `zone` (no DS points at it).
    pub fn generate_zsk(zone: &str) -> ZoneKey {
        Self::with_flags(zone, 256)
    }

    fn with_flags(zone: &str, flags: u16) -> ZoneKey {
        let algorithm = Algorithm::ECDSAP256SHA256;
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(algorithm).expect("generate a P-256 key");
        let key = EcdsaSigningKey::from_pkcs8(&pkcs8, algorithm).expect("load the P-256 key");
        let public = key.to_public_key().expect("its public key");
        ZoneKey {
            zone: parse_name(zone),
            key,
            dnskey: DNSKEY::with_flags(flags, public),
            validity: VALIDITY,
        }
    }

    /// This key with signatures valid from `inception` to `expiration`,
    /// seconds relative to now (e.g. `(-864_000, -86_400)`: expired).
    pub fn with_validity(mut self, inception: i64, expiration: i64) -> ZoneKey {
        self.validity = (inception, expiration);
        self
    }

    /// The zone's DNSKEY RRset holds `next` too (a KSK rollover, RFC 6781
    /// §4.1.2) and both sign it; `self` signs everything else.
    pub fn sign_rollover(&self, next: &ZoneKey, zone_text: &str) -> String {
        let with_next = format!("{}\n{zone_text}", next.dnskey_line());
        let signed = self.sign(&with_next);
        let mut dnskeys: Vec<Record> = signed
            .lines()
            .map(|l| parse_line(l).expect("signed line parses"))
            .filter(|r| r.record_type() == RecordType::DNSKEY)
            .collect();
        dnskeys.sort();
        let refs: Vec<&Record> = dnskeys.iter().collect();
        let extra = next.rrsig_line(&self.zone, RecordType::DNSKEY, &refs);
        format!("{signed}\n{extra}")
    }

    /// `zone 3600 IN DNSKEY 257 3 13 <key>`.
    pub fn dnskey_line(&self) -> String {
        format!("{} 3600 IN DNSKEY {}", self.zone, self.dnskey)
    }

    /// `zone 3600 IN DS <tag> 13 2 <sha-256>`: for the parent zone, or as a
    /// trust anchor.
    pub fn ds_line(&self) -> String {
        let digest = self
            .dnskey
            .to_digest(&self.zone, DigestType::SHA256)
            .expect("DS digest");
        let ds = DS::new(
            self.key_tag(),
            Algorithm::ECDSAP256SHA256,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        );
        format!("{} 3600 IN DS {ds}", self.zone)
    }

    /// A signed NSEC3 chain (RFC 5155, SHA-1, salt `ab`) over `names`
    /// with their types, as records: the NSEC3 and its RRSIG for each.
    /// With `opt_out`, every NSEC3 has the opt-out flag, so unsigned
    /// delegations left out of `names` fall in opt-out spans.
    pub fn nsec3_chain(
        &self,
        names: &[(&str, &[RecordType])],
        iterations: u16,
        opt_out: bool,
    ) -> Vec<Record> {
        use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC3};
        use hickory_proto::dnssec::Nsec3HashAlgorithm;
        let salt = vec![0xab];
        let mut hashed: Vec<(Vec<u8>, Vec<RecordType>)> = names
            .iter()
            .map(|(name, types)| {
                let digest = Nsec3HashAlgorithm::SHA1
                    .hash(&salt, &parse_name(name), iterations)
                    .expect("NSEC3 hash");
                let mut types = types.to_vec();
                types.push(RecordType::RRSIG);
                (digest.as_ref().to_vec(), types)
            })
            .collect();
        hashed.sort();
        let mut out = Vec::new();
        for (i, (hash, types)) in hashed.iter().enumerate() {
            let next = hashed[(i + 1) % hashed.len()].0.clone();
            let owner = parse_name(&format!("{}.{}", base32hex(hash), self.zone));
            let rdata = NSEC3::new(
                Nsec3HashAlgorithm::SHA1,
                opt_out,
                iterations,
                salt.clone(),
                next,
                types.clone(),
            );
            let record =
                Record::from_rdata(owner.clone(), 60, RData::DNSSEC(DNSSECRData::NSEC3(rdata)));
            let sig = self.rrsig_line(&owner, RecordType::NSEC3, &[&record]);
            out.push(record);
            out.push(parse_line(&sig).expect("our RRSIG line parses"));
        }
        out
    }

    fn key_tag(&self) -> u16 {
        self.dnskey.calculate_key_tag().expect("key tag")
    }

    /// `zone_text` with this key's DNSKEY added and an RRSIG for every RRset
    /// the zone is authoritative for (not the NS and glue of delegations).
    pub fn sign(&self, zone_text: &str) -> String {
        self.sign_with(None, zone_text)
    }

    /// [`ZoneKey::sign`], with `zsk` (when given) in the DNSKEY RRset and
    /// signing every RRset but that one, as most signed zones are run.
    pub fn sign_with(&self, zsk: Option<&ZoneKey>, zone_text: &str) -> String {
        let mut records: Vec<Record> = zone_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(|l| parse_line(l).unwrap_or_else(|e| panic!("bad zone line {l:?}: {e}")))
            .collect();
        records.push(parse_line(&self.dnskey_line()).expect("our DNSKEY line parses"));
        if let Some(zsk) = zsk {
            records.push(parse_line(&zsk.dnskey_line()).expect("the ZSK's DNSKEY line parses"));
        }
        let cuts: Vec<Name> = records
            .iter()
            .filter(|r| r.record_type() == RecordType::NS && r.name != self.zone)
            .map(|r| r.name.clone())
            .collect();
        // DS and NSEC at a cut are the parent's data, signed by the parent
        // (RFC 4035 §2.2): the NSEC is what proves an insecure delegation.
        let authoritative = |r: &Record| {
            let below_cut = cuts.iter().any(|cut| cut.zone_of(&r.name));
            let parent_side = matches!(r.record_type(), RecordType::DS | RecordType::NSEC);
            !below_cut || (parent_side && cuts.contains(&r.name))
        };
        let nsecs = nsec_chain(&self.zone, &records, |r| {
            authoritative(r) || cuts.contains(&r.name)
        });
        records.extend(nsecs);
        let mut sets: Vec<(Name, RecordType)> = Vec::new();
        for r in records.iter().filter(|r| authoritative(r)) {
            let key = (r.name.clone(), r.record_type());
            if !sets.contains(&key) {
                sets.push(key);
            }
        }
        let mut out: Vec<String> = records.iter().map(line_of).collect();
        for (name, rtype) in sets {
            let rrset: Vec<&Record> = records
                .iter()
                .filter(|r| r.name == name && r.record_type() == rtype)
                .collect();
            let signer = match zsk {
                Some(zsk) if rtype != RecordType::DNSKEY => zsk,
                _ => self,
            };
            out.push(signer.rrsig_line(&name, rtype, &rrset));
        }
        out.join("\n")
    }

    fn rrsig_line(&self, name: &Name, rtype: RecordType, rrset: &[&Record]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let (inception, expiration) = (
            (now + self.validity.0) as u32,
            (now + self.validity.1) as u32,
        );
        let ttl = rrset[0].ttl;
        let input = SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: name.num_labels(),
            original_ttl: ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: self.key_tag(),
            signer_name: self.zone.clone(),
        };
        let tbs = TBS::from_input(name, DNSClass::IN, &input, rrset.iter().copied())
            .expect("to-be-signed data");
        let signature = self.key.sign(&tbs).expect("sign");
        format!(
            "{name} {ttl} IN RRSIG {rtype} 13 {} {ttl} {} {} {} {} {}",
            input.num_labels,
            expiration,
            inception,
            input.key_tag,
            self.zone,
            base64::engine::general_purpose::STANDARD.encode(signature)
        )
    }
}

/// NSEC records linking every name that `counts` in canonical order, the
/// last back to the apex, each listing its types plus RRSIG and NSEC.
fn nsec_chain(apex: &Name, records: &[Record], counts: impl Fn(&Record) -> bool) -> Vec<Record> {
    let mut names: Vec<Name> = records
        .iter()
        .filter(|r| counts(r))
        .map(|r| r.name.to_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let ttl = records
        .iter()
        .find_map(|r| match &r.data {
            hickory_proto::rr::RData::SOA(soa) => Some(soa.minimum),
            _ => None,
        })
        .unwrap_or(60);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let next = names.get(i + 1).unwrap_or(apex).clone();
            let mut types: Vec<RecordType> = records
                .iter()
                .filter(|r| r.name.to_lowercase() == *name)
                .map(Record::record_type)
                .collect();
            types.extend([RecordType::RRSIG, RecordType::NSEC]);
            types.sort_by_key(|t| u16::from(*t));
            types.dedup();
            let types: Vec<String> = types.iter().map(ToString::to_string).collect();
            let line = format!("{name} {ttl} IN NSEC {next} {}", types.join(" "));
            parse_line(&line).unwrap_or_else(|e| panic!("NSEC line {line:?}: {e}"))
        })
        .collect()
}

/// RFC 4648 base32hex in lower case, no padding (NSEC3 owner labels).
fn base32hex(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A record as a zone line the test authority reads back.
fn line_of(record: &Record) -> String {
    if let Some(target) = super::zone::dname_target(record) {
        return format!("{} {} IN DNAME {target}", record.name, record.ttl);
    }
    format!(
        "{} {} IN {} {}",
        record.name,
        record.ttl,
        record.record_type(),
        record.data
    )
}
