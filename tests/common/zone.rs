//! Zone data for the test [`Authority`](super::Authority): a small master-file
//! subset and the lookup rules of an authoritative server (RFC 1034 §4.3.2,
//! wildcards as RFC 4592 §3.3.1 without NSEC proofs for them). Pre-signed zones (RRSIG, NSEC, DNSKEY, DS lines, e.g.
//! from `ldns-signzone`) are served as a DNSSEC-aware server would for DO=1
//! queries (RFC 4035 §3.1): RRSIGs with each RRset, DS or an NSEC proving
//! its absence with referrals, NSEC proofs with negative answers.

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::ResponseCode;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// The apex of example.test and its www name, as several tests' zones begin:
/// SOA (negative TTL min(3600, 60) = 60), NS ns1 (A 192.0.2.53), CAA, and www
/// with A 192.0.2.1 and 192.0.2.2 and AAAA 2001:db8::1.
pub const EXAMPLE_TEST_APEX: &str = r#"
example.test.        3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.        3600 IN NS  ns1.example.test.
example.test.         300 IN CAA 0 issue "ca.example.net"
ns1.example.test.    3600 IN A   192.0.2.53
www.example.test.     300 IN A   192.0.2.1
www.example.test.     300 IN A   192.0.2.2
www.example.test.     300 IN AAAA 2001:db8::1
"#;

/// Bound on CNAME hops, so that a loop in the test data cannot hang the server.
const MAX_CHAIN: usize = 16;

/// All records served by one authority. Each SOA record starts a zone.
#[derive(Clone, Debug, Default)]
pub struct Zones {
    records: Vec<Record>,
}

/// The result of a lookup, before it becomes a DNS message.
#[derive(Debug)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    fn empty(rcode: ResponseCode, authoritative: bool) -> Self {
        Self {
            rcode,
            authoritative,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl Zones {
    /// Parses one record per line: `owner TTL [IN] TYPE RDATA`, `;` comments.
    /// Names are absolute whether or not they end with a dot.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut records = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            let record =
                parse_line(line).map_err(|e| format!("zone line {}: {e}: {line}", index + 1))?;
            records.push(record);
        }
        let zones = Self { records };
        zones.check_all_inside_a_zone()?;
        Ok(zones)
    }

    /// The apex of the first zone (the owner of the first SOA record).
    pub fn apex(&self) -> Option<Name> {
        self.records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name.clone())
    }

    /// A record no SOA covers could never be served; that is a typo in a test.
    fn check_all_inside_a_zone(&self) -> Result<(), String> {
        match self
            .records
            .iter()
            .find(|r| self.soa_for(&r.name).is_none())
        {
            Some(r) => Err(format!(
                "{} is outside every zone (no SOA above it)",
                r.name
            )),
            None => Ok(()),
        }
    }

    /// Answers `qname`/`qtype` as the authority for the innermost enclosing zone.
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        self.answer_dnssec(qname, qtype, false)
    }

    /// [`Zones::answer`], adding DNSSEC records when `dnssec_ok` (DO=1) and
    /// the zone holds any.
    pub fn answer_dnssec(&self, qname: &Name, qtype: RecordType, dnssec_ok: bool) -> Answer {
        let Some(soa) = self.soa_for(qname) else {
            return Answer::empty(ResponseCode::Refused, false);
        };
        if let Some(ns) = self.delegation(qname, qtype, &soa.name) {
            let cut = ns[0].name.clone();
            let mut answer = self.referral(ns);
            if dnssec_ok {
                self.sign_referral(&cut, &mut answer);
            }
            return answer;
        }
        let mut answer = Answer::empty(ResponseCode::NoError, true);
        let mut seen = vec![qname.clone()];
        let mut name = qname.clone();
        while let Some(target) = self.step(&name, qtype, &mut answer) {
            if seen.contains(&target) || seen.len() >= MAX_CHAIN {
                break;
            }
            seen.push(target.clone());
            name = target;
        }
        // Additional section processing (RFC 1034 §4.3.2 step 6): the
        // addresses of the nameservers an NS answer names, e.g. for `. NS`.
        let glue: Vec<Record> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(self.addresses_of(&ns.0)),
                _ => None,
            })
            .flatten()
            .collect();
        answer.additionals.extend(glue);
        if dnssec_ok {
            self.sign_answer(&name, &mut answer);
        }
        answer
    }

    /// RRSIGs of `owner`'s `covered` RRset, spelled as `owner`.
    fn rrsigs(&self, owner: &Name, covered: RecordType) -> Vec<Record> {
        self.records
            .iter()
            .filter(|r| r.name == *owner && signs(r, covered))
            .map(|r| owned_as(r, owner))
            .collect()
    }

    fn of_type(&self, owner: &Name, rtype: RecordType) -> Vec<Record> {
        self.records
            .iter()
            .filter(|r| r.name == *owner && r.record_type() == rtype)
            .cloned()
            .collect()
    }

    /// DS (signed) at a secure cut, or the NSEC proving there is none.
    fn sign_referral(&self, cut: &Name, answer: &mut Answer) {
        let ds = self.of_type(cut, RecordType::DS);
        let proof = if ds.is_empty() {
            self.of_type(cut, RecordType::NSEC)
        } else {
            ds
        };
        let types: Vec<RecordType> = proof.iter().map(Record::record_type).collect();
        answer.authorities.extend(proof);
        if let Some(t) = types.first() {
            answer.authorities.extend(self.rrsigs(cut, *t));
        }
    }

    /// RRSIGs for every RRset of the answer and authority sections, and the
    /// NSEC records of a negative answer (RFC 4035 §3.1.3).
    fn sign_answer(&self, last: &Name, answer: &mut Answer) {
        // (owner, type, in the answer section?)
        let mut sets: Vec<(Name, RecordType, bool)> = Vec::new();
        let answer_sets = answer.answers.iter().map(|r| (r, true));
        let authority_sets = answer.authorities.iter().map(|r| (r, false));
        for (r, in_answer) in answer_sets.chain(authority_sets) {
            let key = (r.name.clone(), r.record_type(), in_answer);
            if !sets.contains(&key) {
                sets.push(key);
            }
        }
        let negative_soa = answer
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name.clone());
        let mut extra_auth = Vec::new();
        if let Some(apex) = negative_soa {
            let mut nsecs = Vec::new();
            if answer.rcode == ResponseCode::NXDomain {
                nsecs.extend(self.covering_nsec(last));
                let encloser = (0..=last.num_labels())
                    .rev()
                    .map(|n| last.trim_to(n as usize))
                    .find(|n| apex.zone_of(n) && self.exists(n))
                    .unwrap_or_else(|| apex.clone());
                if let Ok(wildcard) = encloser.prepend_label("*") {
                    nsecs.extend(self.covering_nsec(&wildcard));
                }
            } else {
                nsecs.extend(self.of_type(last, RecordType::NSEC));
                if nsecs.is_empty() {
                    // An empty non-terminal has no NSEC of its own: the one
                    // covering it proves it (RFC 4035 §3.1.3.2).
                    nsecs.extend(self.covering_nsec(last));
                }
            }
            for nsec in nsecs {
                if !extra_auth.contains(&nsec) {
                    extra_auth.push(nsec);
                }
            }
            let nsec_names: Vec<Name> = extra_auth.iter().map(|r| r.name.clone()).collect();
            for name in nsec_names {
                let key = (name, RecordType::NSEC, false);
                if !sets.contains(&key) {
                    sets.push(key);
                }
            }
        }
        answer.authorities.extend(extra_auth);
        for (owner, rtype, in_answer) in sets {
            let sigs = self.rrsigs(&owner, rtype);
            if in_answer {
                answer.answers.extend(sigs);
            } else {
                answer.authorities.extend(sigs);
            }
        }
    }

    /// The NSEC whose owner precedes `name` and whose next name follows it
    /// (canonical order, RFC 4034 §6.1), wrapping at the zone's end.
    fn covering_nsec(&self, name: &Name) -> Option<Record> {
        let apex = &self.soa_for(name)?.name;
        self.records
            .iter()
            .filter(|r| apex.zone_of(&r.name))
            .find(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::NSEC(nsec)) => {
                    let next = nsec.next_domain_name();
                    let owner = &r.name;
                    // The last NSEC of a zone points back to the apex.
                    owner < name && (name < next || next <= owner)
                }
                _ => false,
            })
            .cloned()
    }

    /// One link of the CNAME chain. Adds what `name` contributes and returns
    /// the CNAME target when the chain continues inside our data.
    fn step(&self, name: &Name, qtype: RecordType, answer: &mut Answer) -> Option<Name> {
        let soa = self.soa_for(name)?;
        if self.delegation(name, qtype, &soa.name).is_some() {
            return None; // the target lives in a child zone: the resolver chases it
        }
        if let Some(dname) = self.dname_above(name, &soa.name) {
            return synthesize_from_dname(dname, name, answer);
        }
        let wildcard;
        let name = if self.exists(name) {
            name
        } else if let Some(source) = self.wildcard_for(name, &soa.name) {
            // RFC 4592: the records of `*.<closest encloser>`, owned by `name`.
            wildcard = source;
            let synthesised: Vec<Record> = self
                .records
                .iter()
                .filter(|r| r.name == wildcard)
                .filter(|r| {
                    qtype == RecordType::ANY
                        || r.record_type() == qtype
                        || r.record_type() == RecordType::CNAME
                })
                .map(|r| owned_as(r, name))
                .collect();
            if synthesised.is_empty() {
                answer.authorities.push(negative_soa(soa));
                return None;
            }
            let target = synthesised.iter().find_map(cname_target);
            let direct = synthesised.iter().any(|r| r.record_type() == qtype);
            answer.answers.extend(synthesised);
            return if direct { None } else { target };
        } else {
            name
        };
        if !self.exists(name) {
            answer.rcode = ResponseCode::NXDomain; // RFC 6604: rcode of the last name
            answer.authorities.push(negative_soa(soa));
            return None;
        }
        let here: Vec<&Record> = self.records.iter().filter(|r| r.name == *name).collect();
        let wanted = |r: &&&Record| qtype == RecordType::ANY || r.record_type() == qtype;
        let matching: Vec<Record> = here
            .iter()
            .filter(wanted)
            .map(|r| owned_as(r, name))
            .collect();
        if !matching.is_empty() {
            answer.answers.extend(matching);
            return None;
        }
        if let Some(cname) = here.iter().find(|r| r.record_type() == RecordType::CNAME) {
            answer.answers.push(owned_as(cname, name));
            return cname_target(cname);
        }
        answer.authorities.push(negative_soa(soa)); // NODATA
        None
    }

    /// The DNAME at the closest ancestor of `name` (the apex included, not
    /// `name` itself) within the zone at `apex` (RFC 6672 §3.2).
    fn dname_above(&self, name: &Name, apex: &Name) -> Option<&Record> {
        let top = usize::from(apex.num_labels());
        (top..usize::from(name.num_labels()))
            .rev()
            .map(|labels| name.trim_to(labels))
            .find_map(|owner| {
                self.records
                    .iter()
                    .find(|r| r.name == owner && r.record_type() == RecordType::DNAME)
            })
    }

    /// The SOA of the innermost zone containing `name`.
    fn soa_for(&self, name: &Name) -> Option<&Record> {
        self.records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
            .max_by_key(|r| r.name.num_labels())
    }

    /// The wildcard `*.<closest encloser>` that covers a `name` that does
    /// not exist, if the zone at `apex` has one (RFC 4592 §3.3.1).
    fn wildcard_for(&self, name: &Name, apex: &Name) -> Option<Name> {
        let mut encloser = name.base_name();
        while apex.zone_of(&encloser) {
            if self.exists(&encloser) {
                let wildcard = encloser.prepend_label("*").ok()?;
                return self
                    .records
                    .iter()
                    .any(|r| r.name == wildcard)
                    .then_some(wildcard);
            }
            if encloser.is_root() {
                break;
            }
            encloser = encloser.base_name();
        }
        None
    }

    /// A name exists if it owns records or is an empty non-terminal.
    fn exists(&self, name: &Name) -> bool {
        self.records.iter().any(|r| name.zone_of(&r.name))
    }

    /// NS records of the topmost zone cut between the apex and `name`. DS is
    /// answered by the parent, so a cut exactly at `name` does not count for it.
    fn delegation(&self, name: &Name, qtype: RecordType, apex: &Name) -> Option<Vec<&Record>> {
        let first = usize::from(apex.num_labels()) + 1;
        let last =
            usize::from(name.num_labels()).saturating_sub(usize::from(qtype == RecordType::DS));
        (first..=last).find_map(|labels| {
            let cut = name.trim_to(labels);
            let ns: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| r.record_type() == RecordType::NS && r.name == cut)
                .collect();
            (!ns.is_empty()).then_some(ns)
        })
    }

    /// A non-authoritative referral with whatever glue we hold.
    fn referral(&self, ns: Vec<&Record>) -> Answer {
        let mut answer = Answer::empty(ResponseCode::NoError, false);
        for record in ns {
            if let RData::NS(target) = &record.data {
                answer.additionals.extend(self.addresses_of(&target.0));
            }
            answer.authorities.push(record.clone());
        }
        answer
    }

    fn addresses_of(&self, name: &Name) -> Vec<Record> {
        let is_address = |r: &&Record| matches!(r.record_type(), RecordType::A | RecordType::AAAA);
        self.records
            .iter()
            .filter(|r| r.name == *name)
            .filter(is_address)
            .cloned()
            .collect()
    }
}

/// Whether `record` is an RRSIG over a `covered` RRset.
pub(super) fn signs(record: &Record, covered: RecordType) -> bool {
    match &record.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered == covered,
        _ => false,
    }
}

/// Parses one line with hickory's zone parser. The root origin is what makes
/// the trailing dot optional. RRSIG lines, which that parser refuses (it
/// only signs zones itself), are read here.
pub(super) fn parse_line(line: &str) -> Result<Record, String> {
    let fields: Vec<&str> = line
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // The type follows the owner, the TTL and the class.
    let at = fields
        .iter()
        .skip(1)
        .position(|f| f.parse::<u32>().is_err() && !f.eq_ignore_ascii_case("IN"))
        .map_or(0, |i| i + 1);
    match fields.get(at) {
        Some(t) if t.eq_ignore_ascii_case("RRSIG") => {
            return parse_rrsig(&fields[..at], &fields[at + 1..])
        }
        Some(t) if t.eq_ignore_ascii_case("DNSKEY") => {
            return parse_dnskey(&fields[..at], &fields[at + 1..])
        }
        Some(t) if t.eq_ignore_ascii_case("NSEC") => {
            return parse_nsec(&fields[..at], &fields[at + 1..])
        }
        Some(t) if t.eq_ignore_ascii_case("DNAME") => {
            return parse_dname(&fields[..at], &fields[at + 1..])
        }
        _ => {}
    }
    let parser = Parser::new(line, None, Some(Name::root()));
    let (_, sets) = parser.parse().map_err(|e| e.to_string())?;
    let mut records = sets
        .values()
        .flat_map(|set| set.records_without_rrsigs().cloned());
    match (records.next(), records.next()) {
        (Some(record), None) => Ok(record),
        _ => Err("expected exactly one record".to_string()),
    }
}

/// A copy of `record` whose owner is spelled like the name that was asked,
/// as real servers do by compressing against the question.
fn owned_as(record: &Record, name: &Name) -> Record {
    let mut record = record.clone();
    record.name = name.clone();
    record
}

/// RFC 6672 §3.2: the DNAME, the CNAME it synthesizes for `name` (its
/// TTL), and the new name to go on with; YXDOMAIN when that name would be
/// too long.
fn synthesize_from_dname(dname: &Record, name: &Name, answer: &mut Answer) -> Option<Name> {
    use hickory_proto::rr::rdata::CNAME;
    answer.answers.push(dname.clone());
    let target = dname_target(dname)?;
    let keep = usize::from(name.num_labels() - dname.name.num_labels());
    let new_name =
        Name::from_labels(name.iter().take(keep)).and_then(|prefix| prefix.append_domain(&target));
    let Ok(new_name) = new_name else {
        answer.rcode = ResponseCode::YXDomain;
        return None;
    };
    let cname = RData::CNAME(CNAME(new_name.clone()));
    answer
        .answers
        .push(Record::from_rdata(name.clone(), dname.ttl, cname));
    Some(new_name)
}

fn cname_target(record: &Record) -> Option<Name> {
    match &record.data {
        RData::CNAME(target) => Some(target.0.clone()),
        _ => None,
    }
}

/// RFC 2308 §3: the negative TTL is the smaller of the SOA TTL and MINIMUM.
fn negative_soa(soa: &Record) -> Record {
    let mut record = soa.clone();
    if let RData::SOA(data) = &soa.data {
        record.ttl = record.ttl.min(data.minimum);
    }
    record
}

/// `owner TTL [IN] RRSIG covered algorithm labels original-ttl expiration
/// inception key-tag signer signature...` (RFC 4034 §3.2).
fn parse_rrsig(head: &[&str], rdata: &[&str]) -> Result<Record, String> {
    use base64::Engine;
    use hickory_proto::dnssec::rdata::{SigInput, RRSIG};
    use hickory_proto::dnssec::Algorithm;
    use hickory_proto::rr::SerialNumber;
    let [owner, ttl, ..] = head else {
        return Err("RRSIG needs an owner and a TTL".into());
    };
    if rdata.len() < 9 {
        return Err("RRSIG needs 9 fields".into());
    }
    let number = |s: &str| s.parse::<u32>().map_err(|e| format!("{s}: {e}"));
    let name = |s: &str| {
        let mut n = Name::from_ascii(s).map_err(|e| e.to_string())?;
        n.set_fqdn(true);
        Ok::<Name, String>(n)
    };
    let input = SigInput {
        type_covered: RecordType::from_str(rdata[0]).map_err(|e| e.to_string())?,
        algorithm: Algorithm::from_u8(number(rdata[1])? as u8),
        num_labels: number(rdata[2])? as u8,
        original_ttl: number(rdata[3])?,
        sig_expiration: SerialNumber::new(rrsig_time(rdata[4])?),
        sig_inception: SerialNumber::new(rrsig_time(rdata[5])?),
        key_tag: number(rdata[6])? as u16,
        signer_name: name(rdata[7])?,
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(rdata[8..].concat())
        .map_err(|e| e.to_string())?;
    let data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, signature)));
    Ok(Record::from_rdata(name(owner)?, number(ttl)?, data))
}

/// `owner TTL [IN] DNSKEY flags protocol algorithm key...` (RFC 4034 §2.2),
/// which hickory's zone parser also refuses.
fn parse_dnskey(head: &[&str], rdata: &[&str]) -> Result<Record, String> {
    use base64::Engine;
    use hickory_proto::dnssec::rdata::DNSKEY;
    use hickory_proto::dnssec::{Algorithm, PublicKeyBuf};
    let [owner, ttl, ..] = head else {
        return Err("DNSKEY needs an owner and a TTL".into());
    };
    if rdata.len() < 4 {
        return Err("DNSKEY needs 4 fields".into());
    }
    let flags: u16 = rdata[0].parse().map_err(|e| format!("{e}"))?;
    let algorithm = Algorithm::from_u8(rdata[2].parse().map_err(|e| format!("{e}"))?);
    let key = base64::engine::general_purpose::STANDARD
        .decode(rdata[3..].concat())
        .map_err(|e| e.to_string())?;
    let data = DNSKEY::with_flags(flags, PublicKeyBuf::new(key, algorithm));
    let mut name = Name::from_ascii(owner).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    let ttl = ttl.parse().map_err(|e| format!("{e}"))?;
    Ok(Record::from_rdata(
        name,
        ttl,
        RData::DNSSEC(DNSSECRData::DNSKEY(data)),
    ))
}

/// `owner TTL [IN] NSEC next types...` (RFC 4034 §4.2), refused by
/// hickory's zone parser like RRSIG and DNSKEY.
fn parse_nsec(head: &[&str], rdata: &[&str]) -> Result<Record, String> {
    use hickory_proto::dnssec::rdata::NSEC;
    let [owner, ttl, ..] = head else {
        return Err("NSEC needs an owner and a TTL".into());
    };
    let name = |s: &str| {
        let mut n = Name::from_ascii(s).map_err(|e| e.to_string())?;
        n.set_fqdn(true);
        Ok::<Name, String>(n)
    };
    let next = name(rdata.first().ok_or("NSEC needs a next name")?)?;
    let types = rdata[1..]
        .iter()
        .map(|t| RecordType::from_str(t).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = ttl.parse().map_err(|e| format!("{e}"))?;
    let data = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types)));
    Ok(Record::from_rdata(name(owner)?, ttl, data))
}

/// `owner TTL [IN] DNAME target` (RFC 6672), which hickory carries as
/// unknown RDATA: the target's uncompressed wire form.
fn parse_dname(head: &[&str], rdata: &[&str]) -> Result<Record, String> {
    let ([owner, ttl, ..], [target]) = (head, rdata) else {
        return Err("DNAME needs an owner, a TTL and one target".into());
    };
    let name = |s: &str| {
        let mut n = Name::from_ascii(s).map_err(|e| e.to_string())?;
        n.set_fqdn(true);
        Ok::<Name, String>(n)
    };
    let ttl = ttl.parse().map_err(|e| format!("{e}"))?;
    Ok(dname_record(name(owner)?, ttl, &name(target)?))
}

/// A DNAME record from `owner` to `target`.
pub(super) fn dname_record(owner: Name, ttl: u32, target: &Name) -> Record {
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::serialize::binary::BinEncodable;
    let wire = target.to_lowercase().to_bytes().expect("a name encodes");
    let data = RData::Unknown {
        code: RecordType::DNAME,
        rdata: NULL::with(wire),
    };
    Record::from_rdata(owner, ttl, data)
}

/// The target of a DNAME record made by [`dname_record`] (or read off the wire).
pub(super) fn dname_target(record: &Record) -> Option<Name> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    match &record.data {
        RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
            Name::read(&mut BinDecoder::new(&rdata.anything)).ok()
        }
        _ => None,
    }
}

/// `YYYYMMDDHHmmSS` (UTC) or plain seconds to seconds since the epoch.
fn rrsig_time(text: &str) -> Result<u32, String> {
    if text.len() != 14 {
        return text.parse().map_err(|e| format!("{text}: {e}"));
    }
    let part = |a: usize, b: usize| {
        text[a..b]
            .parse::<i64>()
            .map_err(|e| format!("{text}: {e}"))
    };
    let (y, m, d) = (part(0, 4)?, part(4, 6)?, part(6, 8)?);
    let (hh, mm, ss) = (part(8, 10)?, part(10, 12)?, part(12, 14)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) as u32)
}
