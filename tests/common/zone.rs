//! Zone data for the test [`Authority`](super::Authority): a small master-file
//! subset and the lookup rules of an authoritative server (RFC 1034 §4.3.2,
//! without wildcards or DNSSEC).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

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
        let Some(soa) = self.soa_for(qname) else {
            return Answer::empty(ResponseCode::Refused, false);
        };
        if let Some(ns) = self.delegation(qname, qtype, &soa.name) {
            return self.referral(ns);
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
        answer
    }

    /// One link of the CNAME chain. Adds what `name` contributes and returns
    /// the CNAME target when the chain continues inside our data.
    fn step(&self, name: &Name, qtype: RecordType, answer: &mut Answer) -> Option<Name> {
        let soa = self.soa_for(name)?;
        if self.delegation(name, qtype, &soa.name).is_some() {
            return None; // the target lives in a child zone: the resolver chases it
        }
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

    /// The SOA of the innermost zone containing `name`.
    fn soa_for(&self, name: &Name) -> Option<&Record> {
        self.records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
            .max_by_key(|r| r.name.num_labels())
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

/// Parses one line with hickory's zone parser. The root origin is what makes
/// the trailing dot optional.
fn parse_line(line: &str) -> Result<Record, String> {
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
