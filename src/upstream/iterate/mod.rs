//! Picket's iterator: recursion from the root hints (`picket serve
//! --recursive`), on hickory-proto messages.
//!
//! - [`resolve`]: the iteration from the closest known zone cut, QNAME
//!   minimisation (RFC 9156, relaxed), server choice, glueless nameservers.
//! - [`exchange`]: one query to one server (RFC 5452: a fresh port and ID;
//!   0x20; EDNS; TCP after TC=1).
//! - [`infra`]: the infrastructure cache all workers share (delegations,
//!   nameserver addresses, server facts, lameness).
//! - [`servers`]: smoothed RTT, adaptive timeouts, hold-down.
//! - [`assemble`]: CNAME chains in order across zones, the final response.
//! - [`budget`]: the per-client-query guards.
//! - [`aggressive`]: negative answers from cached, validated NSEC and NSEC3 records
//!   (RFC 8198).
//! - [`prime`]: root priming (RFC 8109), the hints only used to find the
//!   root's NS set.
//!
//! Final answers, positive and negative (RFC 2308), go to Picket's one
//! shared cache like forwarded ones; failures are cached here (RFC 9520),
//! with exponential backoff. A resolution runs on the listener worker that
//! took the query, as a forwarded miss does: it only waits on sockets and
//! timers, and handing it to another runtime cost every miss two thread
//! wake-ups (most of the kernel time in the recursion bench's profile).

mod aggressive;
mod assemble;
mod budget;
mod exchange;
mod infra;
mod prime;
mod resolve;
mod servers;
mod validate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use ipnet::IpNet;

use self::aggressive::NsecCache;
use self::assemble::{Assembled, Question, Stretch};
use self::budget::Budget;
use self::infra::Infra;
use super::recursor::{failure_ttl, DnssecMode, RecursorError, RecursorSettings, RecursorStats};
use super::{UdpPool, UpstreamError, UpstreamQuery};
use crate::config::limits::{
    RECURSION_AGGRESSIVE_NSEC_BYTES, RECURSION_BOGUS_RETRIES, RECURSION_MAX_FAILURES,
};
use crate::config::Limits;
use crate::dnssec::{self, Security, TrustAnchors, Validator, ValidatorSettings};
use crate::protocol::answer::Answer;

/// The recursive resolver shared by all workers.
pub struct Recursive {
    engine: Engine,
}

/// Everything a resolution reads, shared by all of them.
pub(crate) struct Engine {
    roots: Vec<IpAddr>,
    ports: HashMap<IpAddr, u16>,
    deny: Vec<IpNet>,
    case_randomization: bool,
    /// RFC 9156 ([`RecursorSettings::qname_minimisation`]).
    qname_minimisation: bool,
    /// `--dnssec validate`: judges every answer (of a CD=1 query only for AD).
    validator: Option<Validator>,
    limits: Limits,
    infra: Infra,
    stats: Arc<RecursorStats>,
    failures: Mutex<HashMap<FailKey, Failure>>,
    /// When root priming may be tried next (None: never tried).
    next_priming: Mutex<Option<Instant>>,
    /// Validated NSEC and NSEC3 records per zone (RFC 8198).
    nsecs: NsecCache,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FailKey {
    name: Vec<u8>,
    qtype: u16,
    cd: bool,
}

impl FailKey {
    fn of(query: &UpstreamQuery<'_>) -> Self {
        Self {
            name: query.name_wire.to_vec(),
            qtype: query.qtype,
            cd: query.cd,
        }
    }
}

#[derive(Debug, Clone)]
struct Failure {
    error: UpstreamError,
    until: Instant,
    strikes: u32,
}

impl Recursive {
    /// Builds the iterator. Nothing is sent until the first query.
    pub fn new(settings: &RecursorSettings, limits: &Limits) -> Result<Self, RecursorError> {
        if settings.root_hints.is_empty() {
            return Err(RecursorError::NoRootHints);
        }
        let validator = match settings.dnssec {
            DnssecMode::Off => None,
            DnssecMode::Validate => {
                let anchors = match &settings.trust_anchor {
                    Some(text) => TrustAnchors::parse(text).map_err(RecursorError::TrustAnchor)?,
                    None => TrustAnchors::builtin_root(),
                };
                let validator_settings = ValidatorSettings {
                    anchors,
                    negative_anchors: settings.negative_anchors.clone(),
                };
                Some(Validator::new(validator_settings, limits))
            }
        };
        let engine = Engine {
            roots: settings.root_hints.clone(),
            ports: settings.nameserver_ports.clone(),
            deny: settings.deny_servers.clone(),
            case_randomization: settings.case_randomization,
            qname_minimisation: settings.qname_minimisation,
            validator,
            limits: limits.clone(),
            infra: Infra::new(limits.recursion_infra_cache_bytes),
            stats: Arc::new(RecursorStats::default()),
            failures: Mutex::new(HashMap::new()),
            next_priming: Mutex::new(None),
            nsecs: NsecCache::new(RECURSION_AGGRESSIVE_NSEC_BYTES, limits),
        };
        Ok(Self { engine })
    }

    /// Counters.
    pub fn stats(&self) -> &RecursorStats {
        &self.engine.stats
    }

    /// Resolves `query` from the root down and returns the response (QR=1,
    /// RA=1, the question as asked) ready for the cache, sending from
    /// `sockets` (the worker's).
    pub async fn resolve(
        &self,
        query: &UpstreamQuery<'_>,
        sockets: &UdpPool,
    ) -> Result<Answer, UpstreamError> {
        if let Some(error) = self.engine.cached_failure(query) {
            self.engine
                .stats
                .failure_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        let name = Name::from_bytes(query.name_wire).map_err(|_| UpstreamError::Malformed)?;
        let question = Question {
            name,
            qtype: RecordType::from(query.qtype),
            dnssec_ok: query.dnssec_ok,
            cd: query.cd,
        };
        let result = self
            .engine
            .resolve(question, query.name_wire, sockets)
            .await;
        match &result {
            Ok(_) => self.engine.forget_failure(query),
            Err(error) => self
                .engine
                .remember_failure(FailKey::of(query), error.clone()),
        }
        result
    }
}

impl Engine {
    async fn resolve(
        &self,
        q: Question,
        name_wire: &[u8],
        sockets: &UdpPool,
    ) -> Result<Answer, UpstreamError> {
        let budget = Budget::new(
            self.limits.recursion_max_queries,
            self.limits.recursion_max_depth,
            sockets,
        );
        // CD=1 is validated too, but only to set AD: see `verdict_for`.
        let validator = self.validator.as_ref();
        // The validator needs the RRSIGs and denial proofs, whoever asked.
        let assembly = Question {
            dnssec_ok: q.dnssec_ok || validator.is_some(),
            name: q.name.clone(),
            qtype: q.qtype,
            cd: q.cd,
        };
        let work = async {
            if let Some(synthesized) = self.aggressive_answer(&q) {
                return Ok((synthesized.into_message(&q), true, None));
            }
            let Some(validator) = validator else {
                let response = self.assemble(&budget, &assembly).await?.into_message(&q);
                return Ok((response, false, None));
            };
            let fetch = validate::Fetcher {
                engine: self,
                budget: &budget,
            };
            let mut retries = RECURSION_BOGUS_RETRIES;
            let (mut response, security) = loop {
                let mut response = self.assemble(&budget, &assembly).await?.into_message(&q);
                dnssec::nxdomain_for_an_empty_non_terminal(&mut response);
                let security = validator.validate(&response, &fetch).await;
                // Bogus data may be one server's (a stale or broken copy of
                // the zone): ask again, other servers first, as Unbound
                // does (Deckard's black_data, black_dnskey, black_ds,
                // black_prime). A CD=1 client gets the data as it is.
                let again = matches!(security, Security::Bogus { .. })
                    && !q.cd
                    && retries > 0
                    && budget.strike_the_servers_that_answered();
                if !again {
                    break (response, security);
                }
                retries -= 1;
                self.stats.bogus_retries.fetch_add(1, Ordering::Relaxed);
                validator.forget_bogus_verdicts_above(&response);
            };
            let verdict = validate::verdict_for(&q, security)?;
            if verdict.secure && !q.cd {
                if let Some(reason) = validator.root_key_sentinel(&response) {
                    return Err(UpstreamError::Dnssec { ede: 0, reason });
                }
            }
            if verdict.secure {
                // RFC 4035 §5.3.3: not kept past its signatures, nor are
                // its NSEC records in the aggressive cache.
                if let Some(cap) = dnssec::secure_ttl_cap(&response) {
                    dnssec::cap_ttls(&mut response, cap);
                }
                self.nsecs.learn(&response);
            }
            Ok::<_, UpstreamError>((response, verdict.secure, verdict.ede))
        };
        let outcome = tokio::time::timeout(self.limits.recursion_timeout, work).await;
        if budget.exceeded() {
            self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
            return Err(budget.spent());
        }
        let (response, secure, ede) = outcome.map_err(|_| UpstreamError::Timeout)??;
        assemble::finish(response, &q, name_wire, secure, ede)
    }

    /// RFC 8198: the negative answer cached NSEC records prove, for a
    /// question the validator judges (CD=0). DS is left to the parent's
    /// servers, where it lives; ANY has no NODATA.
    fn aggressive_answer(&self, q: &Question) -> Option<Assembled> {
        let validator = self.validator.as_ref().filter(|_| !q.cd)?;
        if matches!(q.qtype, RecordType::DS | RecordType::ANY) {
            return None;
        }
        let found = self.nsecs.answer(validator, &q.name, q.qtype)?;
        self.stats.aggressive_nsec.fetch_add(1, Ordering::Relaxed);
        Some(Assembled::negative(&q.name, found.rcode, found.authorities))
    }

    /// Follows the question's CNAME chain to its end, one zone's response
    /// at a time.
    async fn assemble(
        &self,
        budget: &Budget<'_>,
        q: &Question,
    ) -> Result<Assembled, UpstreamError> {
        let dnssec_ok = q.dnssec_ok;
        let mut assembled = Assembled::new(&q.name);
        loop {
            let name = assembled.last_name().clone();
            // Not boxed (`iterate` is, for the recursion through glueless
            // lookups): this future lives in the resolution's own box.
            let reply = self
                .iterate_from(budget, &name, q.qtype, assembled.links(), dnssec_ok)
                .await?;
            let stretch = Stretch::from_reply(&reply, &name, q);
            if assembled.extend(stretch, &self.limits)? {
                return Ok(assembled);
            }
        }
    }

    /// KeyTrap (CVE-2023-50387): at most `recursion_max_rrsigs_per_rrset`
    /// RRSIGs per (owner, type covered) and `recursion_max_keys_per_tag`
    /// DNSKEYs per (owner, key tag) are kept before anything is validated.
    fn scrub(&self, mut message: Message) -> Message {
        let max_sigs = self.limits.recursion_max_rrsigs_per_rrset;
        let max_keys = self.limits.recursion_max_keys_per_tag;
        let mut scrubbed = false;
        for section in [
            &mut message.answers,
            &mut message.authorities,
            &mut message.additionals,
        ] {
            if !section.iter().any(|r| r.record_type().is_dnssec()) {
                continue;
            }
            let mut sigs: HashMap<(Name, RecordType), usize> = HashMap::new();
            let mut keys: HashMap<(Name, u16), usize> = HashMap::new();
            let before = section.len();
            section.retain(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                    let n = sigs
                        .entry((r.name.clone(), sig.input().type_covered))
                        .or_default();
                    *n += 1;
                    *n <= max_sigs
                }
                RData::DNSSEC(DNSSECRData::DNSKEY(key)) => {
                    let tag = key.calculate_key_tag().unwrap_or(0);
                    let n = keys.entry((r.name.clone(), tag)).or_default();
                    *n += 1;
                    *n <= max_keys
                }
                _ => true,
            });
            scrubbed |= section.len() != before;
        }
        if scrubbed {
            self.stats.scrubbed.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    /// The failure cached for `query`, if unexpired. No key is built (a
    /// copy of the name, hashed) while nothing failed.
    fn cached_failure(&self, query: &UpstreamQuery<'_>) -> Option<UpstreamError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.is_empty() {
            return None;
        }
        failures
            .get(&FailKey::of(query))
            .filter(|f| f.until > Instant::now())
            .map(|f| f.error.clone())
    }

    fn forget_failure(&self, query: &UpstreamQuery<'_>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !failures.is_empty() {
            failures.remove(&FailKey::of(query));
        }
    }

    /// RFC 9520 §3.2: cache the failure, backing off exponentially while the
    /// same question keeps failing.
    fn remember_failure(&self, key: FailKey, error: UpstreamError) {
        if matches!(error, UpstreamError::Overloaded) {
            return; // our own load, not the question's fault
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= RECURSION_MAX_FAILURES {
            failures.retain(|_, f| f.until > now);
            if failures.len() >= RECURSION_MAX_FAILURES {
                failures.clear();
            }
        }
        // Failing again within one more hold time of the last one counts as
        // consecutive: the hold time doubles.
        let strikes = failures
            .get(&key)
            .filter(|f| now < f.until + failure_ttl(&self.limits, f.strikes))
            .map_or(0, |f| f.strikes.saturating_add(1));
        let until = now + failure_ttl(&self.limits, strikes);
        failures.insert(
            key,
            Failure {
                error,
                until,
                strikes,
            },
        );
    }
}
