//! Aggressive use of validated NSEC records (RFC 8198), as Unbound's
//! `aggressive-nsec: yes`: the NSEC records (with their RRSIGs) and the SOA
//! of every negative answer that validated as secure are kept per zone, and
//! a later question whose name falls in a kept NSEC gap (or whose type a
//! kept NSEC's bitmap lacks) is answered NXDOMAIN or NODATA from them,
//! without asking the zone's servers. Only secure answers feed it, so an
//! unsigned or insecure zone never uses it. NSEC3 is not kept (hashing every
//! question would cost what the query saves).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use moka::sync::Cache;

use super::assemble::rrsigs_over;
use crate::config::limits::{RECURSION_AGGRESSIVE_NSEC_PER_ZONE, RECURSION_MAX_DELEGATION_TTL};
use crate::dnssec::Validator;

/// Per zone apex: its SOA and its NSEC records seen so far.
pub(crate) struct NsecCache {
    zones: Cache<Name, Arc<Mutex<ZoneNsecs>>>,
}

struct ZoneNsecs {
    /// The SOA and its RRSIGs: the negative TTL (RFC 2308) of a synthesized answer.
    soa: Vec<Record>,
    soa_expires: Instant,
    /// By owner, in canonical order: the NSEC and its RRSIGs.
    spans: BTreeMap<Name, Span>,
}

struct Span {
    records: Vec<Record>,
    expires: Instant,
}

/// A negative answer made from cached NSEC records.
pub(crate) struct Synthesized {
    pub(crate) rcode: ResponseCode,
    /// SOA, NSEC records and their RRSIGs, TTLs counted down.
    pub(crate) authorities: Vec<Record>,
}

impl NsecCache {
    /// Holds the NSEC records of at most `zones` zones.
    pub(crate) fn new(zones: u64) -> Self {
        Self {
            zones: Cache::builder()
                .max_capacity(zones)
                .time_to_idle(RECURSION_MAX_DELEGATION_TTL)
                .build(),
        }
    }

    /// Keeps the signed NSEC records and SOA of `response`, a negative
    /// answer the validator judged secure.
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
        let spans: Vec<(Name, Span)> = response
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::NSEC && zone.zone_of(&r.name))
            .filter_map(|nsec| {
                let sigs = rrsigs_over(&response.authorities, &nsec.name, RecordType::NSEC);
                if sigs.is_empty() {
                    return None;
                }
                // RFC 9077: an NSEC lives no longer than the negative TTL.
                let ttl = nsec.ttl.min(negative_ttl);
                let mut records = vec![nsec.clone()];
                records.extend(sigs);
                let expires = now + Duration::from_secs(u64::from(ttl));
                Some((nsec.name.to_lowercase(), Span { records, expires }))
            })
            .collect();
        if spans.is_empty() {
            return;
        }
        let mut soa_records = vec![soa.clone()];
        soa_records.extend(rrsigs_over(
            &response.authorities,
            &soa.name,
            RecordType::SOA,
        ));
        let soa_expires = now + Duration::from_secs(u64::from(negative_ttl));
        let entry = self.zones.get_with(zone, || {
            Arc::new(Mutex::new(ZoneNsecs {
                soa: Vec::new(),
                soa_expires: now,
                spans: BTreeMap::new(),
            }))
        });
        let mut zone = entry.lock().unwrap_or_else(|e| e.into_inner());
        zone.soa = soa_records;
        zone.soa_expires = soa_expires;
        for (owner, span) in spans {
            zone.make_room(now);
            zone.spans.insert(owner, span);
        }
    }

    /// NXDOMAIN or NODATA for `name`/`qtype` when the NSEC records kept for
    /// its zone prove it (RFC 8198 §5.1–5.2).
    pub(crate) fn answer(
        &self,
        validator: &Validator,
        name: &Name,
        qtype: RecordType,
    ) -> Option<Synthesized> {
        let name = name.to_lowercase();
        let (apex, entry) = (0..=name.num_labels())
            .rev()
            .map(|labels| name.trim_to(usize::from(labels)))
            .find_map(|apex| self.zones.get(&apex).map(|entry| (apex, entry)))?;
        let zone = entry.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if zone.soa_expires <= now || zone.soa.is_empty() {
            return None;
        }
        let exact = zone.spans.get(&name).filter(|s| s.expires > now);
        let (rcode, spans) = match exact {
            // The name exists: NODATA if its NSEC lacks the type.
            Some(span) => (ResponseCode::NoError, vec![span]),
            None => (
                ResponseCode::NXDomain,
                zone.nxdomain_spans(&name, &apex, now),
            ),
        };
        let records: Vec<Record> = spans.iter().flat_map(|s| s.records.clone()).collect();
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

impl ZoneNsecs {
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

    /// Drops expired spans when the zone is full, then (still full) the
    /// first, so one zone never holds more than the cap.
    fn make_room(&mut self, now: Instant) {
        if self.spans.len() < RECURSION_AGGRESSIVE_NSEC_PER_ZONE {
            return;
        }
        self.spans.retain(|_, s| s.expires > now);
        if self.spans.len() >= RECURSION_AGGRESSIVE_NSEC_PER_ZONE {
            self.spans.pop_first();
        }
    }
}
