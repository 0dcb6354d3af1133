//! Aggressive use of validated NSEC and NSEC3 records (RFC 8198), as
//! Unbound's `aggressive-nsec: yes`: the NSEC or NSEC3 records (with their
//! RRSIGs) and the SOA of every negative answer that validated as secure
//! are kept per zone, and a later question whose name they prove absent
//! (or whose type they prove missing) is answered NXDOMAIN or NODATA from
//! them, without asking the zone's servers. Only secure answers feed it, so
//! an unsigned or insecure zone never uses it.
//!
//! NSEC3 (RFC 8198 §5.2 with RFC 5155 §8): the records are kept by owner
//! hash, and a question is hashed for its closest-encloser proof: the name,
//! then its ancestors up to the one a kept NSEC3 matches, the next closer
//! name and the wildcard. Those hashes are charged to the same NSEC3 hash
//! budget a validation has (CVE-2023-50868), records over the RFC 9276
//! iteration cap are never kept, and a next closer name in an opt-out span
//! is never denied (an unsigned delegation may exist there, RFC 5155 §6).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC3};
use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use moka::sync::Cache;

use super::assemble::rrsigs_over;
use super::infra::ENTRY_OVERHEAD;
use crate::config::limits::{RECURSION_AGGRESSIVE_NSEC_PER_ZONE, RECURSION_MAX_DELEGATION_TTL};
use crate::config::Limits;
use crate::dnssec::{nsec3_owner_hash, Budget, Validator};

/// Per zone apex: its SOA and its NSEC or NSEC3 records seen so far,
/// all zones together bounded in bytes.
pub(crate) struct NsecCache {
    zones: Cache<Name, Arc<ZoneEntry>>,
    /// Whether any zone's records were ever kept: until then (an unsigned
    /// tree, or one validated only insecure) a question looks up nothing,
    /// which was 4% of a new name's CPU (one lookup per label).
    learnt: AtomicBool,
    /// The NSEC3 iteration cap and hash budget (RFC 9276, CVE-2023-50868).
    limits: Limits,
}

/// One zone's records, and what they weigh for the byte bound (read by
/// moka's weigher, which must not take the lock).
struct ZoneEntry {
    bytes: AtomicU32,
    nsecs: Mutex<ZoneNsecs>,
}

struct ZoneNsecs {
    /// The SOA and its RRSIGs: the negative TTL (RFC 2308) of a synthesized answer.
    soa: Vec<Record>,
    soa_expires: Instant,
    /// By owner, in canonical order: the NSEC and its RRSIGs.
    spans: BTreeMap<Name, Span>,
    nsec3: Nsec3Spans,
}

/// A zone's NSEC3 records, all made with one parameter set (RFC 5155 §8.2).
#[derive(Default)]
struct Nsec3Spans {
    salt: Vec<u8>,
    iterations: u16,
    /// By owner hash, in hash order: the NSEC3 and its RRSIGs.
    by_hash: BTreeMap<Vec<u8>, Span>,
}

struct Span {
    records: Vec<Record>,
    expires: Instant,
    /// An estimate of the memory it holds, erring high.
    bytes: usize,
}

/// What a kept record holds: the struct, its owner name on the heap, and
/// for its RDATA a signature, a next name or hash, and a type bitmap.
fn record_bytes(record: &Record) -> usize {
    size_of::<Record>() + 2 * record.name.len() + 160
}

/// A negative answer made from cached NSEC or NSEC3 records.
pub(crate) struct Synthesized {
    pub(crate) rcode: ResponseCode,
    /// SOA, NSEC or NSEC3 records and their RRSIGs, TTLs counted down.
    pub(crate) authorities: Vec<Record>,
}

impl NsecCache {
    /// Holds NSEC and NSEC3 records of about `bytes` in all; the least
    /// recently used zone goes first.
    pub(crate) fn new(bytes: u64, limits: &Limits) -> Self {
        Self {
            zones: Cache::builder()
                .max_capacity(bytes)
                .weigher(|_: &Name, zone: &Arc<ZoneEntry>| zone.bytes.load(Ordering::Relaxed))
                .time_to_idle(RECURSION_MAX_DELEGATION_TTL)
                .build(),
            learnt: AtomicBool::new(false),
            limits: limits.clone(),
        }
    }

    /// Keeps the signed NSEC or NSEC3 records and SOA of `response`, a
    /// negative answer the validator judged secure.
    pub(crate) fn learn(&self, response: &Message) {
        let Some(soa) = response
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
        else {
            return;
        };
        let zone = soa.name.to_lowercase();
        let negative_ttl = match &soa.data {
            RData::SOA(data) => soa.ttl.min(data.minimum),
            _ => soa.ttl,
        };
        let now = Instant::now();
        let signed = |rtype| signed_spans(&response.authorities, &zone, rtype, negative_ttl, now);
        let spans: Vec<(Name, Span)> = signed(RecordType::NSEC)
            .map(|span| (span.records[0].name.to_lowercase(), span))
            .collect();
        let nsec3s: Vec<Span> = signed(RecordType::NSEC3)
            .filter(|span| nsec3_of(span).is_some_and(|n| self.usable_nsec3(n)))
            .collect();
        if spans.is_empty() && nsec3s.is_empty() {
            return;
        }
        let mut soa_records = vec![soa.clone()];
        soa_records.extend(rrsigs_over(
            &response.authorities,
            &soa.name,
            RecordType::SOA,
        ));
        let entry = self.zones.get_with(zone.clone(), || {
            Arc::new(ZoneEntry {
                bytes: AtomicU32::new(0),
                nsecs: Mutex::new(ZoneNsecs {
                    soa: Vec::new(),
                    soa_expires: now,
                    spans: BTreeMap::new(),
                    nsec3: Nsec3Spans::default(),
                }),
            })
        });
        let mut kept = entry.nsecs.lock().unwrap_or_else(|e| e.into_inner());
        kept.soa = soa_records;
        kept.soa_expires = now + Duration::from_secs(u64::from(negative_ttl));
        for (owner, span) in spans {
            make_room(&mut kept.spans, now);
            kept.spans.insert(owner, span);
        }
        for span in nsec3s {
            kept.nsec3.insert(&zone, span, now);
        }
        let bytes = kept.bytes();
        drop(kept);
        // Inserted again to be weighed again: the byte bound follows growth.
        entry.bytes.store(bytes, Ordering::Relaxed);
        self.zones.insert(zone, entry);
        self.learnt.store(true, Ordering::Relaxed);
    }

    /// SHA-1 (the only NSEC3 hash there is) within the iteration cap:
    /// anything else could only ever prove "insecure", never an answer.
    fn usable_nsec3(&self, nsec3: &NSEC3) -> bool {
        nsec3.hash_algorithm() == Nsec3HashAlgorithm::SHA1
            && nsec3.iterations() <= self.limits.dnssec_max_nsec3_iterations
    }

    /// NXDOMAIN or NODATA for `name`/`qtype` when the NSEC or NSEC3 records
    /// kept for its zone prove it (RFC 8198 §5.1–5.2).
    pub(crate) fn answer(
        &self,
        validator: &Validator,
        name: &Name,
        qtype: RecordType,
    ) -> Option<Synthesized> {
        if !self.learnt.load(Ordering::Relaxed) {
            return None;
        }
        let name = name.to_lowercase();
        let (apex, entry) = (0..=name.num_labels())
            .rev()
            .map(|labels| name.trim_to(usize::from(labels)))
            .find_map(|apex| self.zones.get(&apex).map(|entry| (apex, entry)))?;
        let zone = entry.nsecs.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if zone.soa_expires <= now || zone.soa.is_empty() {
            return None;
        }
        let (rcode, spans) = if zone.spans.is_empty() {
            let mut hasher = Hasher::new(&zone.nsec3, &self.limits);
            zone.nsec3.proof(&name, &apex, now, &mut hasher)?
        } else {
            zone.nsec_proof(&name, &apex, now)
        };
        let records: Vec<Record> = spans.iter().flat_map(|s| s.records.clone()).collect();
        // The validator's own proof over exactly the records the client gets.
        let qtype = (rcode == ResponseCode::NoError).then_some(qtype);
        if !validator.cached_denial(&name, qtype, &apex, &records) {
            return None;
        }
        let expires = spans
            .iter()
            .map(|s| s.expires)
            .fold(zone.soa_expires, Instant::min);
        let ttl = expires.saturating_duration_since(now).as_secs() as u32;
        let mut authorities: Vec<Record> = zone.soa.iter().chain(&records).cloned().collect();
        for record in &mut authorities {
            record.ttl = record.ttl.min(ttl);
        }
        Some(Synthesized { rcode, authorities })
    }
}

/// The `rtype` records of `zone` in `authorities` that carry RRSIGs, each
/// with them, to live no longer than the negative TTL (RFC 9077).
fn signed_spans<'a>(
    authorities: &'a [Record],
    zone: &'a Name,
    rtype: RecordType,
    negative_ttl: u32,
    now: Instant,
) -> impl Iterator<Item = Span> + 'a {
    authorities
        .iter()
        .filter(move |r| r.record_type() == rtype && zone.zone_of(&r.name))
        .filter_map(move |record| {
            let sigs = rrsigs_over(authorities, &record.name, rtype);
            if sigs.is_empty() {
                return None;
            }
            let ttl = record.ttl.min(negative_ttl);
            let mut records = vec![record.clone()];
            records.extend(sigs);
            let expires = now + Duration::from_secs(u64::from(ttl));
            let bytes = records.iter().map(record_bytes).sum();
            Some(Span {
                records,
                expires,
                bytes,
            })
        })
}

fn nsec3_of(span: &Span) -> Option<&NSEC3> {
    match &span.records[0].data {
        RData::DNSSEC(DNSSECRData::NSEC3(n)) => Some(n),
        _ => None,
    }
}

/// Drops expired spans when a map is full, then (still full) the first,
/// so one zone never holds more than the cap.
fn make_room<K: Ord>(spans: &mut BTreeMap<K, Span>, now: Instant) {
    if spans.len() < RECURSION_AGGRESSIVE_NSEC_PER_ZONE {
        return;
    }
    spans.retain(|_, s| s.expires > now);
    if spans.len() >= RECURSION_AGGRESSIVE_NSEC_PER_ZONE {
        spans.pop_first();
    }
}

impl ZoneNsecs {
    /// What the zone's entry weighs: its records, the map entries they sit
    /// in, and moka's bookkeeping.
    fn bytes(&self) -> u32 {
        let soa: usize = self.soa.iter().map(record_bytes).sum();
        let nsec: usize = self
            .spans
            .iter()
            .map(|(owner, span)| size_of::<(Name, Span)>() + owner.len() + span.bytes)
            .sum();
        let nsec3: usize = self
            .nsec3
            .by_hash
            .iter()
            .map(|(hash, span)| size_of::<(Vec<u8>, Span)>() + hash.len() + span.bytes)
            .sum();
        let total = ENTRY_OVERHEAD + size_of::<ZoneEntry>() + soa + nsec + nsec3;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// NODATA from the name's own NSEC, else NXDOMAIN from the spans
    /// [`ZoneNsecs::nxdomain_spans`] picks.
    fn nsec_proof(&self, name: &Name, apex: &Name, now: Instant) -> (ResponseCode, Vec<&Span>) {
        match self.spans.get(name).filter(|s| s.expires > now) {
            // The name exists: NODATA if its NSEC lacks the type.
            Some(span) => (ResponseCode::NoError, vec![span]),
            None => (ResponseCode::NXDomain, self.nxdomain_spans(name, apex, now)),
        }
    }

    /// The spans an NXDOMAIN proof for `name` needs: the one covering it,
    /// and those covering or matching the wildcard of each of its
    /// ancestors down to the apex (the closest encloser is one of them).
    fn nxdomain_spans(&self, name: &Name, apex: &Name, now: Instant) -> Vec<&Span> {
        let mut wanted: Vec<Name> = vec![name.clone()];
        for labels in usize::from(apex.num_labels())..usize::from(name.num_labels()) {
            if let Ok(wildcard) = name.trim_to(labels).prepend_label("*") {
                wanted.push(wildcard);
            }
        }
        let mut owners: Vec<&Name> = Vec::new();
        for target in &wanted {
            // The span whose owner is the closest before (or at) the target;
            // before the apex's: the zone's last, which wraps.
            let found = self
                .spans
                .range(..=target.clone())
                .next_back()
                .or_else(|| self.spans.iter().next_back());
            if let Some((owner, span)) = found {
                if span.expires > now && !owners.contains(&owner) {
                    owners.push(owner);
                }
            }
        }
        owners.iter().filter_map(|o| self.spans.get(*o)).collect()
    }
}

/// Hashes names with a zone's NSEC3 parameters, charged to the NSEC3 hash
/// budget of one validation (CVE-2023-50868: a long name must not cost a
/// hash per label without end).
struct Hasher<'a> {
    salt: &'a [u8],
    iterations: u16,
    budget: Budget,
}

impl<'a> Hasher<'a> {
    fn new(spans: &'a Nsec3Spans, limits: &Limits) -> Self {
        Self {
            salt: &spans.salt,
            iterations: spans.iterations,
            budget: Budget::new(limits),
        }
    }

    /// None once the budget is spent: the question goes upstream.
    fn hash(&mut self, name: &Name) -> Option<Vec<u8>> {
        self.budget.nsec3_hash().ok()?;
        Nsec3HashAlgorithm::SHA1
            .hash(self.salt, name, self.iterations)
            .ok()
            .map(|digest| digest.as_ref().to_vec())
    }
}

impl Nsec3Spans {
    /// Keeps one NSEC3 of `zone`. Records made with other parameters than
    /// those kept replace them all: the zone was re-salted.
    fn insert(&mut self, zone: &Name, span: Span, now: Instant) {
        let Some(nsec3) = nsec3_of(&span) else {
            return;
        };
        let owner = &span.records[0].name;
        if owner.base_name() != *zone {
            return; // an NSEC3 of a zone below, or no NSEC3 owner at all
        }
        let Some(hash) = nsec3_owner_hash(owner) else {
            return;
        };
        if nsec3.salt() != self.salt.as_slice() || nsec3.iterations() != self.iterations {
            self.by_hash.clear();
            self.salt = nsec3.salt().to_vec();
            self.iterations = nsec3.iterations();
        }
        make_room(&mut self.by_hash, now);
        self.by_hash.insert(hash, span);
    }

    fn matching(&self, hash: &[u8], now: Instant) -> Option<&Span> {
        self.by_hash.get(hash).filter(|s| s.expires > now)
    }

    /// The kept NSEC3 whose owner hash is the closest before `hash` (before
    /// the first: the last, which wraps). The validator checks it covers.
    fn covering(&self, hash: &[u8], now: Instant) -> Option<&Span> {
        self.by_hash
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(hash)))
            .next_back()
            .or_else(|| self.by_hash.iter().next_back())
            .map(|(_, span)| span)
            .filter(|s| s.expires > now)
    }

    /// The spans of an NSEC3 denial for `name` (RFC 5155 §8.4-8.7): the
    /// NSEC3 matching it (NODATA), or the closest-encloser proof with the
    /// wildcard's cover (NXDOMAIN) or match (NODATA through a wildcard).
    /// None when a span is missing, the budget runs out, or the next closer
    /// name falls in an opt-out span.
    fn proof<'s>(
        &'s self,
        name: &Name,
        apex: &Name,
        now: Instant,
        hasher: &mut Hasher<'_>,
    ) -> Option<(ResponseCode, Vec<&'s Span>)> {
        if self.by_hash.is_empty() {
            return None;
        }
        if let Some(span) = self.matching(&hasher.hash(name)?, now) {
            return Some((ResponseCode::NoError, vec![span]));
        }
        let top = usize::from(apex.num_labels());
        for labels in (top..usize::from(name.num_labels())).rev() {
            let candidate = name.trim_to(labels);
            let Some(encloser) = self.matching(&hasher.hash(&candidate)?, now) else {
                continue;
            };
            let next_closer = name.trim_to(labels + 1);
            let cover = self.covering(&hasher.hash(&next_closer)?, now)?;
            if nsec3_of(cover).is_none_or(NSEC3::opt_out) {
                return None;
            }
            let wildcard = candidate.prepend_label("*").ok()?;
            let wildcard_hash = hasher.hash(&wildcard)?;
            let (rcode, third) = match self.matching(&wildcard_hash, now) {
                Some(matched) => (ResponseCode::NoError, matched),
                None => (ResponseCode::NXDomain, self.covering(&wildcard_hash, now)?),
            };
            let mut spans = vec![encloser, cover];
            if !spans.iter().any(|s| std::ptr::eq(*s, third)) {
                spans.push(third);
            }
            return Some((rcode, spans));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::rdata::{SigInput, NSEC, RRSIG};
    use hickory_proto::dnssec::Algorithm;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::SerialNumber;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// An RRSIG over `record` (its signature is never checked here: only
    /// answers the validator judged secure reach `learn`).
    fn rrsig_of(record: &Record, zone: &Name) -> Record {
        let input = SigInput {
            type_covered: record.record_type(),
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: record.name.num_labels(),
            original_ttl: record.ttl,
            sig_expiration: SerialNumber::new(u32::MAX),
            sig_inception: SerialNumber::new(0),
            key_tag: 1,
            signer_name: zone.clone(),
        };
        let sig = RRSIG::from_sig(input, vec![7; 64]);
        Record::from_rdata(
            record.name.clone(),
            record.ttl,
            RData::DNSSEC(DNSSECRData::RRSIG(sig)),
        )
    }

    /// An NXDOMAIN of `zone` carrying its SOA and `spans` signed NSEC records.
    fn negative_answer(zone: &Name, spans: usize) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 7200, 900, 86_400, 300);
        let mut records = vec![Record::from_rdata(zone.clone(), 300, RData::SOA(soa))];
        for i in 0..spans {
            let owner = name(&format!("name-{i:04}.{zone}"));
            let next = name(&format!("name-{:04}.{zone}", i + 1));
            let nsec = NSEC::new(next, [RecordType::A, RecordType::RRSIG, RecordType::NSEC]);
            records.push(Record::from_rdata(
                owner,
                300,
                RData::DNSSEC(DNSSECRData::NSEC(nsec)),
            ));
        }
        let sigs: Vec<Record> = records.iter().map(|r| rrsig_of(r, zone)).collect();
        m.authorities = records.into_iter().chain(sigs).collect();
        m
    }

    #[test]
    fn the_byte_bound_holds_however_many_zones_are_learned() {
        let budget = 256 << 10;
        let cache = NsecCache::new(budget, &Limits::default());
        let zones = 200;
        for z in 0..zones {
            cache.learn(&negative_answer(&name(&format!("zone-{z}.test.")), 30));
        }
        cache.zones.run_pending_tasks();
        assert!(
            cache.zones.weighted_size() <= budget,
            "{} bytes",
            cache.zones.weighted_size()
        );
        // Each zone above weighs over 10 KiB (30 NSEC and their RRSIGs),
        // so fewer than 25 fit: a bound by zones would keep all 200.
        let kept = cache.zones.entry_count();
        assert!(kept > 0 && kept < 25, "{kept} zones kept");
    }
}
