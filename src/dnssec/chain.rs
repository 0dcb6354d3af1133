//! The validator: chains of trust from the anchors, top-down (RFC 4035 §5).
//!
//! To judge an RRset signed by zone Z, the validator walks from Z's closest
//! trust anchor down to Z one label at a time, asking for the DS RRset of
//! each name on the way: a signed DS makes the name a secure zone cut (its
//! DNSKEY RRset is fetched and must be signed by a key the DS matches); a
//! proven absence of DS with the NS bit set is an insecure delegation
//! (everything below is Insecure); a proven absence without it is no cut.
//! Each name's state is cached with its TTL, so a warm chain costs no fetch
//! and no signature check, only a few cache lookups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::rdata::{DNSSECRData, DNSKEY, DS, RRSIG};
use hickory_proto::dnssec::{PublicKey, Verifier, TBS};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::anchors::ZoneAnchor;
use super::budget::{Budget, Exhausted};
use super::denial::{self, DsAbsence, Proof};
use super::short_rsa;
use super::{dname, ede, Fetch, FetchError, Security, ValidatorSettings};
use crate::config::Limits;

/// Why an RRset or a chain did not validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub(crate) ede: u16,
    pub(crate) reason: String,
    /// The work budget of this one call ran out: says nothing about the
    /// zone, so it is never cached as the zone's state (else an answer
    /// that burns the budget first could get a victim zone marked bogus).
    pub(crate) budget: bool,
}

impl Fail {
    pub(crate) fn new(ede: u16, reason: impl Into<String>) -> Self {
        Self {
            ede,
            reason: reason.into(),
            budget: false,
        }
    }
}

impl From<Exhausted> for Fail {
    fn from(e: Exhausted) -> Self {
        Fail {
            budget: true,
            ..Fail::new(ede::DNSSEC_BOGUS, e.0)
        }
    }
}

/// What is known about one name on the way down from an anchor.
#[derive(Debug, Clone)]
enum NodeState {
    /// A secure zone (an anchor or a cut with a validated DS): its
    /// validated DNSKEY RRset.
    Secure(Arc<Vec<DNSKEY>>),
    /// Provably insecure from here down.
    Insecure(String),
    /// Insecure from here down because the zone uses what RFC 9276 lets a
    /// validator decline (NSEC3 iterations over the cap); the EDE says so.
    Unsupported(Fail),
    /// Should be secure and is not.
    Bogus(Fail),
    /// Not a zone cut: the zone above goes on.
    NotCut,
}

#[derive(Debug)]
struct Cached {
    state: NodeState,
    expires: Instant,
}

/// Where a walk down from the anchor ends.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    Secure { name: Name, keys: Arc<Vec<DNSKEY>> },
    Insecure(String),
    Unsupported(Fail),
    Bogus(Fail),
    Indeterminate(String),
}

/// Validates responses; one per process, shared by every worker in an `Arc`.
pub struct Validator {
    settings: ValidatorSettings,
    limits: Limits,
    /// Per name: its state as a zone cut (validated keys, insecure, bogus,
    /// no cut). Bounded by entries (`Limits::dnssec_key_cache_entries`).
    nodes: moka::sync::Cache<Name, Arc<Cached>>,
    /// Names whose state is being fetched now: concurrent validations of
    /// many new names in one cold zone fetch its DS and DNSKEY once, the
    /// others wait for that and read the cache. Entries live only while
    /// a fetch runs, so this is bounded by the validations in flight.
    pending: std::sync::Mutex<HashMap<Name, Arc<tokio::sync::Mutex<()>>>>,
}

/// One validation fetching a name's state (see `Validator::fetching`).
struct Fetching<'v> {
    validator: &'v Validator,
    name: Name,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        let mut pending = self
            .validator
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The last one out removes the entry (the map's, this one's and
        // the lock the guard holds are the only other references).
        if Arc::strong_count(&self.lock) <= 3 {
            pending.remove(&self.name);
        }
    }
}

/// The state of one `validate` call.
pub(crate) struct Ctx<'a> {
    pub(crate) fetch: &'a dyn Fetch,
    pub(crate) budget: Budget,
    pub(crate) now: u32,
}

/// An RRset the chain of trust needs that could not be fetched: the verdict is indeterminate.
#[derive(Debug, thiserror::Error)]
#[error("cannot fetch the {rtype} records of {name}: {error}")]
struct Unfetched {
    name: Name,
    rtype: RecordType,
    error: FetchError,
}

impl Ctx<'_> {
    /// `name`'s `rtype` RRset (with its signatures) for the chain of trust.
    async fn fetch_rrset(&self, name: &Name, rtype: RecordType) -> Result<Message, Unfetched> {
        self.fetch
            .fetch(name, rtype)
            .await
            .map_err(Unfetched::of(name, rtype))
    }

    /// [`Fetch::refetch`]: the RRset asked of the authorities themselves,
    /// if [`Ctx::fetch_rrset`] answered it from records kept.
    async fn refetch_rrset(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> Option<Result<Message, Unfetched>> {
        let again = self.fetch.refetch(name, rtype)?;
        Some(again.await.map_err(Unfetched::of(name, rtype)))
    }
}

impl Unfetched {
    fn of(name: &Name, rtype: RecordType) -> impl FnOnce(FetchError) -> Unfetched + '_ {
        move |error| Unfetched {
            name: name.clone(),
            rtype,
            error,
        }
    }
}

/// Whether the NSEC or NSEC3 RRset at `owner` is from a zone below `zone`:
/// an NSEC3 is its zone's by its owner (hash label, then the zone's name,
/// RFC 5155 §3); an NSEC by the signer of its RRSIG.
fn from_a_zone_below(zone: &Name, owner: &Name, rtype: RecordType, authority: &Sets) -> bool {
    let owner_zone = match rtype {
        RecordType::NSEC3 => Some(owner.base_name()),
        _ => authority.signer(owner, rtype),
    };
    owner_zone.is_some_and(|z| z != *zone && zone.zone_of(&z))
}

/// Whether `ds` names `key` of `owner`: its algorithm, key tag and digest
/// all match (RFC 4034 §5.1, RFC 4035 §5.2). hickory's `DS::covers`
/// compares the digest only: a DS whose algorithm or tag is wrong (a
/// mistyped trust anchor) would still pass.
fn ds_names(ds: &DS, owner: &Name, key: &DNSKEY) -> bool {
    ds.algorithm() == key.algorithm()
        && key.calculate_key_tag().is_ok_and(|tag| tag == ds.key_tag())
        && ds.covers(owner, key).unwrap_or(false)
}

/// RRsets of one section: (owner, type) → records, in order of appearance,
/// and (owner, covered type) → RRSIGs.
#[derive(Default)]
pub(crate) struct Sets {
    pub(crate) order: Vec<(Name, RecordType)>,
    pub(crate) records: HashMap<(Name, RecordType), Vec<Record>>,
    pub(crate) sigs: HashMap<(Name, RecordType), Vec<RRSIG>>,
}

impl Sets {
    pub(crate) fn of(records: &[Record]) -> Self {
        let mut sets = Sets::default();
        for r in records {
            let name = r.name.to_lowercase();
            if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data {
                sets.sigs
                    .entry((name, sig.input().type_covered))
                    .or_default()
                    .push(sig.clone());
                continue;
            }
            let key = (name, r.record_type());
            if !sets.records.contains_key(&key) {
                sets.order.push(key.clone());
            }
            sets.records.entry(key).or_default().push(r.clone());
        }
        sets
    }

    pub(crate) fn sigs(&self, name: &Name, rtype: RecordType) -> &[RRSIG] {
        self.sigs
            .get(&(name.clone(), rtype))
            .map_or(&[], Vec::as_slice)
    }

    /// The zone that signed `name`/`rtype` according to its RRSIGs, if any.
    pub(crate) fn signer(&self, name: &Name, rtype: RecordType) -> Option<Name> {
        self.sigs(name, rtype)
            .first()
            .map(|s| s.input().signer_name.to_lowercase())
    }
}

/// Whether the CNAME RRset `records` at `name` is the one a DNAME of
/// `dnames` (owner, target) synthesizes (RFC 6672 §2.2).
fn synthesized_from(name: &Name, records: &[Record], dnames: &[(Name, Name)]) -> bool {
    let [record] = records else {
        return false;
    };
    let RData::CNAME(cname) = &record.data else {
        return false;
    };
    dnames
        .iter()
        .any(|(owner, target)| dname::substitute(name, owner, target).is_ok_and(|t| t == cname.0))
}

/// The fetcher of a judgement that needs none (cached NSEC records).
struct NoFetch;

impl Fetch for NoFetch {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> super::FetchFuture<'a> {
        Box::pin(async move {
            Err(super::FetchError(format!(
                "{name} {rtype}: no fetch while judging cached NSEC records"
            )))
        })
    }
}

/// Combines verdicts: any Bogus wins, then Indeterminate, then Insecure.
fn worse(a: Security, b: Security) -> Security {
    fn rank(s: &Security) -> u8 {
        match s {
            Security::Secure => 0,
            Security::Insecure => 1,
            // Told to the client (EDE 27): kept over a plain Insecure.
            Security::InsecureUnsupported { .. } => 2,
            Security::Indeterminate { .. } => 3,
            Security::Bogus { .. } => 4,
        }
    }
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

/// Insecure, with the EDE of what the validator declined to check.
fn unsupported(fail: Fail) -> Security {
    Security::InsecureUnsupported {
        ede: fail.ede,
        reason: fail.reason,
    }
}

fn bogus(fail: Fail) -> Security {
    Security::Bogus {
        ede: fail.ede,
        reason: fail.reason,
    }
}

impl Validator {
    pub fn new(settings: ValidatorSettings, limits: &Limits) -> Self {
        Self {
            settings,
            limits: limits.clone(),
            nodes: moka::sync::Cache::builder()
                .max_capacity(limits.dnssec_key_cache_entries)
                .time_to_live(limits.dnssec_key_cache_max_ttl)
                .build(),
            pending: std::sync::Mutex::default(),
        }
    }

    /// RFC 8509: why the secure `response` is SERVFAIL, when its question's
    /// leftmost label is a root key sentinel that names a key the root's
    /// anchors hold (`not-ta`) or do not hold (`is-ta`). For answers judged
    /// secure, to clients that did not set CD (the sentinel reports what
    /// this resolver validates with).
    pub fn root_key_sentinel(&self, response: &Message) -> Option<String> {
        let question = response.queries.first()?;
        let sentinel = super::sentinel::Sentinel::of(question.name(), question.query_type())?;
        sentinel.refusal(&self.settings.anchors.root_key_tags())
    }

    /// Waits until no other validation is fetching `name`'s state; the
    /// guard makes this one the fetcher until it is dropped.
    async fn fetching(&self, name: &Name) -> Fetching<'_> {
        let lock = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.entry(name.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        Fetching {
            validator: self,
            name: name.clone(),
            lock,
            _guard: guard,
        }
    }

    /// Judges a whole response: every RRset of the answer section (a CNAME
    /// chain may cross zones, each RRset judged by its own signer), or for
    /// NXDOMAIN/NODATA the denial proof (NSEC or NSEC3) in the authority
    /// section. The caller sets AD only on Secure, answers SERVFAIL with the
    /// EDE on Bogus, passes Insecure through without AD.
    pub async fn validate(&self, response: &Message, fetch: &dyn Fetch) -> Security {
        let mut ctx = Ctx {
            fetch,
            budget: Budget::new(&self.limits),
            now: unix_now(),
        };
        self.validate_with(response, &mut ctx).await
    }

    pub(crate) async fn validate_with(&self, response: &Message, ctx: &mut Ctx<'_>) -> Security {
        let Some(question) = response.queries.first() else {
            return bogus(Fail::new(ede::DNSSEC_BOGUS, "the response has no question"));
        };
        let qname = question.name().to_lowercase();
        let qtype = question.query_type();
        // RRSIGs are not signed themselves (RFC 4035 §2.2): an answer to a
        // question for them holds nothing a validator can check. It is
        // given as it came, without AD, as Unbound gives it. An NXDOMAIN is
        // judged as any other (its CNAMEs and DNAMEs, then the proof): the
        // name does not exist whatever was asked.
        let denied = response.metadata.response_code == ResponseCode::NXDomain;
        if qtype == RecordType::RRSIG && !denied && !response.answers.is_empty() {
            return Security::Insecure;
        }
        if let Some(verdict) = self.unanchored(&qname, qtype, response) {
            return verdict;
        }
        let answers = Sets::of(&response.answers);
        let authority = Sets::of(&response.authorities);
        let mut verdict = Security::Secure;
        let dnames: Vec<(Name, Name)> = answers
            .order
            .iter()
            .filter(|(_, t)| *t == RecordType::DNAME)
            .filter_map(|key| {
                let target = dname::target(answers.records[key].first()?)?;
                Some((key.0.clone(), target))
            })
            .collect();
        for (name, rtype) in &answers.order {
            let records = &answers.records[&(name.clone(), *rtype)];
            let sigs = answers.sigs(name, *rtype);
            // A CNAME synthesized from a DNAME is unsigned (RFC 6672 §5.3.1);
            // the DNAME it comes from is judged instead, and the CNAME must
            // say exactly what the DNAME does (else it is forged).
            if *rtype == RecordType::CNAME
                && sigs.is_empty()
                && synthesized_from(name, records, &dnames)
            {
                continue;
            }
            let judged = self
                .judge_rrset(name, *rtype, records, sigs, &authority, ctx)
                .await;
            verdict = worse(verdict, judged);
            if matches!(verdict, Security::Bogus { .. }) {
                return verdict;
            }
        }
        // The end of the CNAME chain, whose absence or lack of data needs a
        // proof. A CNAME question ends at its CNAME: that is the answer, and
        // one a DNAME synthesizes is vouched for by the DNAME. But an
        // NXDOMAIN after a DNAME is the new name's (RFC 6672 §3.1, RFC 6604),
        // and is judged there. (A NODATA there is not asked of an upstream's
        // answer: Unbound, asked with CD=1, gives the DNAME and its CNAME
        // alone, and the CNAME asked for is vouched for.)
        let mut last = qname.clone();
        for _ in 0..answers.order.len() {
            let Some(records) = answers.records.get(&(last.clone(), RecordType::CNAME)) else {
                break;
            };
            let RData::CNAME(target) = &records[0].data else {
                break;
            };
            if qtype == RecordType::CNAME && !(denied && synthesized_from(&last, records, &dnames))
            {
                break;
            }
            last = target.0.to_lowercase();
        }
        let nodata = response.response_code == ResponseCode::NoError
            && qtype != RecordType::ANY
            && !answers.records.contains_key(&(last.clone(), qtype));
        let negative = match response.response_code {
            ResponseCode::NXDomain => Some(None),
            _ if nodata => Some(Some(qtype)),
            // YXDOMAIN: the DNAME whose new name would be too long (RFC 6672
            // §2.2) is the answer, judged above like any RRset.
            ResponseCode::NoError | ResponseCode::YXDomain => None,
            // SERVFAIL, REFUSED...: nothing to validate, and nothing secure.
            rcode => {
                return Security::Indeterminate {
                    reason: format!("the response is {rcode}: nothing to validate"),
                }
            }
        };
        if let Some(qtype) = negative {
            let judged = self.judge_denial(&last, qtype, &authority, ctx).await;
            verdict = worse(verdict, judged);
        }
        verdict
    }

    /// RFC 8198: whether `nsecs`, NSEC records of `zone` validated when they
    /// came, prove that `name` does not exist (`qtype` None) or has no
    /// `qtype`. Nothing is fetched and no signature checked again.
    pub fn cached_denial(
        &self,
        name: &Name,
        qtype: Option<RecordType>,
        zone: &Name,
        nsecs: &[Record],
    ) -> bool {
        if self.negative_anchor(name) {
            return false;
        }
        let mut ctx = Ctx {
            fetch: &NoFetch,
            budget: Budget::new(&self.limits),
            now: unix_now(),
        };
        let proof = denial::absence(name, qtype, zone, nsecs, &mut ctx);
        matches!(proof, Ok(Proof::Proven))
    }

    /// The verdict when no trust anchor is above any name it would judge
    /// (the question, each answer's owner, each CNAME's target): every
    /// RRset and every denial is then insecure, seen without sorting the
    /// sections into RRsets (most of a validation's cost for an unsigned
    /// tree). None when an anchor is above one of them, or for an empty
    /// NOERROR answer to ANY, which the full walk judges.
    fn unanchored(&self, qname: &Name, qtype: RecordType, response: &Message) -> Option<Security> {
        let anchors = &self.settings.anchors;
        let anchored = |name: &Name| anchors.closest(name).is_some();
        if anchored(qname)
            || response
                .answers
                .iter()
                .any(|r| anchored(&r.name) || matches!(&r.data, RData::CNAME(c) if anchored(&c.0)))
        {
            return None;
        }
        match response.response_code {
            ResponseCode::NoError if qtype == RecordType::ANY && response.answers.is_empty() => {
                None
            }
            ResponseCode::NoError | ResponseCode::NXDomain => Some(Security::Insecure),
            rcode => Some(Security::Indeterminate {
                reason: format!("the response is {rcode}: nothing to validate"),
            }),
        }
    }

    /// Whether `zone` itself has a trust anchor.
    pub(crate) fn anchored_at(&self, zone: &Name) -> bool {
        self.settings.anchors.is_anchor(zone)
    }

    /// Whether `name` is at or under a negative trust anchor (not validated).
    pub(crate) fn negative_anchor(&self, name: &Name) -> bool {
        self.settings
            .negative_anchors
            .iter()
            .any(|nta| nta.zone_of(name))
    }

    /// One RRset of the answer section.
    async fn judge_rrset(
        &self,
        name: &Name,
        rtype: RecordType,
        records: &[Record],
        sigs: &[RRSIG],
        authority: &Sets,
        ctx: &mut Ctx<'_>,
    ) -> Security {
        if self.negative_anchor(name) {
            return Security::Insecure;
        }
        if self.settings.anchors.closest(name).is_none() {
            return Security::Insecure;
        }
        // A DS RRset belongs to the parent side of the cut.
        let owner_zone_limit = if rtype == RecordType::DS && !name.is_root() {
            name.base_name()
        } else {
            name.clone()
        };
        let signer = sigs
            .iter()
            .map(|s| s.input().signer_name.to_lowercase())
            .find(|s| s.zone_of(&owner_zone_limit));
        let Some(signer) = signer else {
            // Unsigned (or signed by no zone above it): fine only below an
            // insecure delegation.
            return match self.zone_of(&owner_zone_limit, ctx).await {
                Zone::Secure { name: zone, .. } => bogus(Fail::new(
                    ede::RRSIGS_MISSING,
                    format!("{name} {rtype} has no RRSIG from its zone {zone}, which is signed"),
                )),
                Zone::Insecure(why) => {
                    tracing::trace!(%name, %rtype, %why, "DNSSEC: unsigned and insecure");
                    Security::Insecure
                }
                Zone::Unsupported(fail) => unsupported(fail),
                Zone::Bogus(fail) => bogus(fail),
                Zone::Indeterminate(reason) => Security::Indeterminate { reason },
            };
        };
        let keys = match self.zone_of(&signer, ctx).await {
            Zone::Secure { name: zone, keys } if zone == signer => keys,
            Zone::Secure { name: zone, .. } => {
                return bogus(Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!("{name} {rtype} is signed by {signer}, which is not a zone (the zone is {zone})"),
                ))
            }
            Zone::Insecure(_) => return Security::Insecure,
            Zone::Unsupported(fail) => return unsupported(fail),
            Zone::Bogus(fail) => return bogus(fail),
            Zone::Indeterminate(reason) => return Security::Indeterminate { reason },
        };
        let valid = match verify_rrset(name, rtype, records, sigs, &signer, &keys, ctx) {
            Ok(valid) => valid,
            Err(fail) => return bogus(fail),
        };
        // A wildcard expansion (RFC 4035 §5.3.4): the exact name must not exist.
        if usize::from(valid.labels) < usize::from(name.num_labels()) {
            // A DNAME is never synthesized from a wildcard (RFC 6672 §3.3,
            // RFC 4592 §4.4); one signed as if it were is forged or broken
            // (Unbound: "inappropriate DNAME", val_dnamewc).
            if rtype == RecordType::DNAME {
                return bogus(Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!(
                        "{name} DNAME is signed as a wildcard expansion, which a DNAME never is"
                    ),
                ));
            }
            let proof = self
                .verified_denial(&signer, &keys, authority, ctx)
                .and_then(|nsecs| denial::wildcard_expansion(name, valid.labels, &nsecs, ctx));
            return match proof {
                Ok(Proof::Proven) => Security::Secure,
                Ok(Proof::Insecure(_)) => Security::Insecure,
                Ok(Proof::Unsupported(fail)) => unsupported(fail),
                Ok(Proof::NotProven(reason)) => bogus(Fail::new(
                    ede::NSEC_MISSING,
                    format!("{name} {rtype} is a wildcard expansion without proof that {name} does not exist: {reason}"),
                )),
                Err(fail) => bogus(fail),
            };
        }
        Security::Secure
    }

    /// The NSEC/NSEC3 RRsets of `authority` from `zone`, each verified with
    /// `keys` (and the zone's SOA verified beside them). Those of a zone below it (a CNAME chain may cross into a
    /// child whose denial sits beside this one: Unbound's val_nsec3_cname_sub)
    /// are that zone's to judge, not bogus here.
    fn verified_denial(
        &self,
        zone: &Name,
        keys: &[DNSKEY],
        authority: &Sets,
        ctx: &mut Ctx<'_>,
    ) -> Result<Vec<Record>, Fail> {
        let mut out = Vec::new();
        for (name, rtype) in &authority.order {
            // The zone's SOA, which a negative answer carries, is judged too
            // (its RRSIG must verify, as every RRset of the zone's); only the
            // proofs are returned.
            let proof = matches!(rtype, RecordType::NSEC | RecordType::NSEC3);
            let soa = *rtype == RecordType::SOA && name == zone;
            if !(proof || soa)
                || !zone.zone_of(name)
                || from_a_zone_below(zone, name, *rtype, authority)
            {
                continue;
            }
            let records = &authority.records[&(name.clone(), *rtype)];
            verify_rrset(
                name,
                *rtype,
                records,
                authority.sigs(name, *rtype),
                zone,
                keys,
                ctx,
            )?;
            if proof {
                out.extend(records.iter().cloned());
            }
        }
        Ok(out)
    }

    /// NXDOMAIN (`qtype` None) or NODATA for `name`.
    async fn judge_denial(
        &self,
        name: &Name,
        qtype: Option<RecordType>,
        authority: &Sets,
        ctx: &mut Ctx<'_>,
    ) -> Security {
        if self.negative_anchor(name) || self.settings.anchors.closest(name).is_none() {
            return Security::Insecure;
        }
        let parent_side = qtype == Some(RecordType::DS) && !name.is_root();
        let owner_zone_limit = if parent_side {
            name.base_name()
        } else {
            name.clone()
        };
        // The signer of the proof: the zone that holds the name.
        let signer = authority
            .order
            .iter()
            .filter(|(_, t)| matches!(t, RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA))
            .filter_map(|(n, t)| authority.signer(n, *t))
            .find(|s| s.zone_of(&owner_zone_limit));
        let zone = match &signer {
            Some(signer) => self.zone_of(signer, ctx).await,
            None => self.zone_of(&owner_zone_limit, ctx).await,
        };
        let (zone, keys) = match zone {
            Zone::Secure { name: zone, keys } => (zone, keys),
            Zone::Insecure(_) => return Security::Insecure,
            Zone::Unsupported(fail) => return unsupported(fail),
            Zone::Bogus(fail) => return bogus(fail),
            Zone::Indeterminate(reason) => return Security::Indeterminate { reason },
        };
        if signer.as_ref() != Some(&zone) {
            let what = match qtype {
                None => "NXDOMAIN".to_string(),
                Some(t) => format!("NODATA for {t}"),
            };
            return bogus(Fail::new(
                ede::NSEC_MISSING,
                format!(
                    "{what} at {name} without a signed NSEC or NSEC3 proof from its zone {zone}"
                ),
            ));
        }
        let nsecs = match self.verified_denial(&zone, &keys, authority, ctx) {
            Ok(nsecs) => nsecs,
            Err(fail) => return bogus(fail),
        };
        let proof = denial::absence(name, qtype, &zone, &nsecs, ctx);
        match proof {
            Ok(Proof::Proven) => Security::Secure,
            Ok(Proof::Insecure(_)) => Security::Insecure,
            Ok(Proof::Unsupported(fail)) => unsupported(fail),
            Ok(Proof::NotProven(reason)) => bogus(Fail::new(ede::NSEC_MISSING, reason)),
            Err(fail) => bogus(fail),
        }
    }

    /// `name`'s state from the cache, else from `work`, remembered. One validation at a time
    /// runs `work` for a name; the others wait for it and then find the state cached.
    async fn state_of(
        &self,
        name: &Name,
        work: impl std::future::Future<Output = Result<(NodeState, u32), Unfetched>>,
    ) -> Result<NodeState, Unfetched> {
        if let Some(state) = self.cached(name) {
            return Ok(state);
        }
        let _fetching = self.fetching(name).await;
        if let Some(state) = self.cached(name) {
            return Ok(state);
        }
        let (state, ttl) = work.await?;
        Ok(self.remember(name, state, ttl))
    }

    /// Walks down from the closest anchor of `name` to `name`, and says in
    /// which zone `name` is and whether it is secure.
    pub(crate) async fn zone_of(&self, name: &Name, ctx: &mut Ctx<'_>) -> Zone {
        if self.negative_anchor(name) {
            return Zone::Insecure(format!("{name} is under a negative trust anchor"));
        }
        let Some((anchor_zone, anchor)) = self.settings.anchors.closest(name) else {
            return Zone::Insecure(format!("no trust anchor above {name}"));
        };
        let anchor_zone = anchor_zone.clone();
        let work = self.anchor_state(&anchor_zone, anchor, ctx);
        let state = match self.state_of(&anchor_zone, work).await {
            Ok(state) => state,
            Err(unfetched) => return Zone::Indeterminate(unfetched.to_string()),
        };
        let mut zone = anchor_zone.clone();
        let mut keys = match state {
            NodeState::Secure(keys) => keys,
            NodeState::Insecure(reason) => return Zone::Insecure(reason),
            NodeState::Unsupported(fail) => return Zone::Unsupported(fail),
            NodeState::Bogus(fail) => return Zone::Bogus(fail),
            // An anchor's zone is always a zone; should a walk from another
            // anchor ever have stored "no cut" under its name, ask again.
            NodeState::NotCut => {
                self.nodes.invalidate(&anchor_zone);
                return Zone::Indeterminate(format!("{anchor_zone}: state not known yet"));
            }
        };
        for labels in usize::from(anchor_zone.num_labels()) + 1..=usize::from(name.num_labels()) {
            let here = name.trim_to(labels);
            if self.negative_anchor(&here) {
                return Zone::Insecure(format!("{here} is under a negative trust anchor"));
            }
            let work = self.cut_state(&here, &zone, &keys, ctx);
            let state = match self.state_of(&here, work).await {
                Ok(state) => state,
                Err(unfetched) => return Zone::Indeterminate(unfetched.to_string()),
            };
            match state {
                NodeState::Secure(k) => {
                    zone = here;
                    keys = k;
                }
                NodeState::Insecure(reason) => return Zone::Insecure(reason),
                NodeState::Unsupported(fail) => return Zone::Unsupported(fail),
                NodeState::Bogus(fail) => return Zone::Bogus(fail),
                NodeState::NotCut => {}
            }
        }
        Zone::Secure { name: zone, keys }
    }

    /// Forgets the bogus verdicts cached for the zones at and above the
    /// question's name and the answer's owners, so that the next attempt,
    /// made of other servers' data, is judged anew (the resolver's retry
    /// after a bogus answer).
    pub(crate) fn forget_bogus_verdicts_above(&self, response: &Message) {
        let question = response.queries.iter().map(|q| q.name());
        let owners = response.answers.iter().map(|r| &r.name);
        for name in question.chain(owners) {
            for labels in 0..=usize::from(name.num_labels()) {
                let here = name.trim_to(labels).to_lowercase();
                if matches!(self.cached(&here), Some(NodeState::Bogus(_))) {
                    self.nodes.invalidate(&here);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn cached_state(&self, name: &Name) -> Option<String> {
        self.cached(name).map(|s| format!("{s:?}"))
    }

    fn cached(&self, name: &Name) -> Option<NodeState> {
        let entry = self.nodes.get(name)?;
        if entry.expires <= Instant::now() {
            self.nodes.invalidate(name);
            return None;
        }
        Some(entry.state.clone())
    }

    /// Caches `state` for `ttl` seconds (verdicts other than Secure for
    /// `dnssec_verdict_ttl` at most) and returns it.
    fn remember(&self, name: &Name, state: NodeState, ttl: u32) -> NodeState {
        let mut life =
            Duration::from_secs(u64::from(ttl)).min(self.limits.dnssec_key_cache_max_ttl);
        if !matches!(state, NodeState::Secure(_)) {
            life = life.min(self.limits.dnssec_verdict_ttl);
        }
        let per_call = matches!(&state, NodeState::Bogus(fail) if fail.budget);
        if !life.is_zero() && !per_call {
            self.nodes.insert(
                name.clone(),
                Arc::new(Cached {
                    state: state.clone(),
                    expires: Instant::now() + life,
                }),
            );
        }
        state
    }

    /// The trust anchor's zone: its DNSKEY RRset, signed by a key the
    /// anchor names (RFC 4035 §5, priming). Err: nothing could be fetched.
    async fn anchor_state(
        &self,
        zone: &Name,
        anchor: &ZoneAnchor,
        ctx: &mut Ctx<'_>,
    ) -> Result<(NodeState, u32), Unfetched> {
        let verdict_ttl = self.limits.dnssec_verdict_ttl.as_secs() as u32;
        let usable_ds: Vec<&DS> = anchor
            .ds
            .iter()
            .filter(|ds| ds.algorithm().is_supported() && ds.digest_type().is_supported())
            .collect();
        let usable_keys: Vec<&DNSKEY> = anchor
            .dnskeys
            .iter()
            .filter(|k| k.algorithm().is_supported())
            .collect();
        if usable_ds.is_empty() && usable_keys.is_empty() {
            // RFC 4035 §5.2 applied to anchors: nothing we can check.
            return Ok((
                NodeState::Insecure(format!(
                    "the trust anchor for {zone} uses only unsupported algorithms or digests"
                )),
                verdict_ttl,
            ));
        }
        let response = ctx.fetch_rrset(zone, RecordType::DNSKEY).await?;
        let trusted = |key: &DNSKEY| {
            usable_keys
                .iter()
                .any(|a| a.public_key() == key.public_key() && a.algorithm() == key.algorithm())
                || usable_ds.iter().any(|ds| ds_names(ds, zone, key))
        };
        Ok(
            match dnskey_rrset(zone, &response, trusted, "the trust anchor", ctx) {
                Ok((keys, ttl)) => (NodeState::Secure(keys), ttl),
                Err(fail) => (NodeState::Bogus(fail), verdict_ttl),
            },
        )
    }

    /// What `here` is, one label below `zone` (secure, keys `keys`): a
    /// secure cut, an insecure delegation, or no cut (RFC 4035 §5.2).
    async fn cut_state(
        &self,
        here: &Name,
        zone: &Name,
        keys: &[DNSKEY],
        ctx: &mut Ctx<'_>,
    ) -> Result<(NodeState, u32), Unfetched> {
        let response = ctx.fetch_rrset(here, RecordType::DS).await?;
        let judged = self.judge_cut(here, zone, keys, &response, ctx).await?;
        // A DS RRset (or its absence) taken from a referral that does not
        // hold up is asked of the parent once more: a server may put less in
        // a referral than in an answer, and Unbound asks too.
        if matches!(judged.0, NodeState::Bogus(_)) {
            if let Some(again) = ctx.refetch_rrset(here, RecordType::DS).await {
                return self.judge_cut(here, zone, keys, &again?, ctx).await;
            }
        }
        Ok(judged)
    }

    /// What `response` to a DS query for `here` says of the cut there,
    /// `zone` being the secure zone above it with `keys`.
    async fn judge_cut(
        &self,
        here: &Name,
        zone: &Name,
        keys: &[DNSKEY],
        response: &Message,
        ctx: &mut Ctx<'_>,
    ) -> Result<(NodeState, u32), Unfetched> {
        let verdict_ttl = self.limits.dnssec_verdict_ttl.as_secs() as u32;
        let answers = Sets::of(&response.answers);
        let bogus_for = |fail: Fail| Ok((NodeState::Bogus(fail), verdict_ttl));
        if let Some(ds_records) = answers.records.get(&(here.clone(), RecordType::DS)) {
            let sigs = answers.sigs(here, RecordType::DS);
            let valid = match verify_rrset(here, RecordType::DS, ds_records, sigs, zone, keys, ctx)
            {
                Ok(valid) => valid,
                Err(fail) => return bogus_for(fail),
            };
            let usable: Vec<DS> = ds_records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::DNSSEC(DNSSECRData::DS(ds)) => Some(ds.clone()),
                    _ => None,
                })
                .filter(|ds| ds.algorithm().is_supported() && ds.digest_type().is_supported())
                .collect();
            if usable.is_empty() {
                // RFC 4035 §5.2: no DS we can use makes the zone insecure.
                return Ok((
                    NodeState::Insecure(format!(
                        "every DS of {here} uses an unsupported algorithm or digest type"
                    )),
                    valid.ttl,
                ));
            }
            let response = ctx.fetch_rrset(here, RecordType::DNSKEY).await?;
            let trusted = |key: &DNSKEY| usable.iter().any(|ds| ds_names(ds, here, key));
            return Ok(
                match dnskey_rrset(here, &response, trusted, "its DS", ctx) {
                    Ok((keys, ttl)) => (NodeState::Secure(keys), ttl.min(valid.ttl)),
                    Err(fail) => (NodeState::Bogus(fail), verdict_ttl),
                },
            );
        }
        if answers
            .order
            .iter()
            .any(|(n, t)| n == here && *t == RecordType::CNAME)
        {
            // A CNAME owner is never a cut (RFC 1034 §3.6.2); if it hides one,
            // the data below fails against this zone's keys: bogus, not insecure.
            return Ok((NodeState::NotCut, verdict_ttl));
        }
        let authority = Sets::of(&response.authorities);
        let nsecs = match self.verified_denial(zone, keys, &authority, ctx) {
            Ok(nsecs) => nsecs,
            Err(fail) => return bogus_for(fail),
        };
        match denial::ds_absence(here, zone, &nsecs, ctx) {
            Ok(DsAbsence::InsecureDelegation(reason)) => {
                Ok((NodeState::Insecure(reason), verdict_ttl))
            }
            Ok(DsAbsence::Unsupported(fail)) => Ok((NodeState::Unsupported(fail), verdict_ttl)),
            Ok(DsAbsence::NotCut) => Ok((NodeState::NotCut, verdict_ttl)),
            Ok(DsAbsence::NotProven(reason)) => bogus_for(Fail::new(
                ede::NSEC_MISSING,
                format!(
                    "no DS for {here} and no valid proof from {zone} that it has none: {reason}"
                ),
            )),
            Err(fail) => bogus_for(fail),
        }
    }
}

/// The DNSKEY RRset of `zone` from `response`, validated: signed by a key
/// `trusted` accepts. Its keys (zone keys, not revoked) and TTL.
fn dnskey_rrset(
    zone: &Name,
    response: &Message,
    trusted: impl Fn(&DNSKEY) -> bool,
    what: &str,
    ctx: &mut Ctx<'_>,
) -> Result<(Arc<Vec<DNSKEY>>, u32), Fail> {
    let answers = Sets::of(&response.answers);
    let records = answers
        .records
        .get(&(zone.clone(), RecordType::DNSKEY))
        .cloned()
        .unwrap_or_default();
    let keys: Vec<DNSKEY> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
            _ => None,
        })
        .filter(|k| k.zone_key() && !k.revoke())
        .collect();
    if keys.is_empty() {
        return Err(Fail::new(
            ede::DNSKEY_MISSING,
            format!("{zone} has no DNSKEY records, but {what} says it is signed"),
        ));
    }
    let entry: Vec<DNSKEY> = keys.iter().filter(|k| trusted(k)).cloned().collect();
    if entry.is_empty() {
        return Err(Fail::new(
            ede::DNSKEY_MISSING,
            format!(
                "none of the {} DNSKEY records of {zone} matches {what} \
                 (a stale trust anchor or a key rollover gone wrong)",
                keys.len()
            ),
        ));
    }
    let sigs = answers.sigs(zone, RecordType::DNSKEY);
    let valid = verify_rrset(zone, RecordType::DNSKEY, &records, sigs, zone, &entry, ctx)?;
    Ok((Arc::new(keys), valid.ttl))
}

/// What a successful verification tells.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Valid {
    /// Seconds the RRset may be trusted (TTL, original TTL, expiration).
    pub(crate) ttl: u32,
    /// The RRSIG's label count (below the owner's: a wildcard expansion).
    pub(crate) labels: u8,
}

/// Verifies `records` (one RRset) with one of `sigs` made by `zone` with one
/// of `keys`, within the budgets (RFC 4035 §5.3).
pub(crate) fn verify_rrset(
    name: &Name,
    rtype: RecordType,
    records: &[Record],
    sigs: &[RRSIG],
    zone: &Name,
    keys: &[DNSKEY],
    ctx: &mut Ctx<'_>,
) -> Result<Valid, Fail> {
    if sigs.is_empty() {
        return Err(Fail::new(
            ede::RRSIGS_MISSING,
            format!("{name} {rtype} has no RRSIG (its zone {zone} is signed)"),
        ));
    }
    let mut failure: Option<Fail> = None;
    let mut unsupported = 0;
    let note = |fail: Fail, failure: &mut Option<Fail>| {
        // The most telling failure is kept: a time window or a bad
        // signature over "no key", which says less.
        if failure.as_ref().is_none_or(|f| f.ede == ede::DNSSEC_BOGUS) {
            *failure = Some(fail);
        }
    };
    for (tried, sig) in sigs.iter().enumerate() {
        if tried >= ctx.budget.rrsigs_per_rrset {
            note(
                Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!(
                        "{name} {rtype}: more than {} RRSIGs, the rest not tried \
                         (limit dnssec_max_rrsigs_per_rrset; KeyTrap, CVE-2023-50387)",
                        ctx.budget.rrsigs_per_rrset
                    ),
                ),
                &mut failure,
            );
            break;
        }
        let input = sig.input();
        if input.signer_name != *zone {
            continue;
        }
        if !input.algorithm.is_supported() {
            unsupported += 1;
            continue;
        }
        if input.num_labels > name.num_labels() {
            note(
                Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!("{name} {rtype}: an RRSIG claims more labels than the name has"),
                ),
                &mut failure,
            );
            continue;
        }
        let (inception, expiration) = (input.sig_inception.get(), input.sig_expiration.get());
        if serial_lt(ctx.now, inception) {
            note(
                Fail::new(
                    ede::SIGNATURE_NOT_YET_VALID,
                    format!("{name} {rtype}: the RRSIG of {zone} (key {}) is not valid before {inception}", input.key_tag),
                ),
                &mut failure,
            );
            continue;
        }
        if serial_lt(expiration, ctx.now) {
            note(
                Fail::new(
                    ede::SIGNATURE_EXPIRED,
                    format!(
                        "{name} {rtype}: the RRSIG of {zone} (key {}) expired at {expiration}",
                        input.key_tag
                    ),
                ),
                &mut failure,
            );
            continue;
        }
        let candidates = keys.iter().filter(|k| {
            k.algorithm() == input.algorithm && k.calculate_key_tag().ok() == Some(input.key_tag)
        });
        let mut any_key = false;
        for (n, key) in candidates.enumerate() {
            if n >= ctx.budget.keys_per_tag {
                note(
                    Fail::new(
                        ede::DNSSEC_BOGUS,
                        format!(
                            "{name} {rtype}: more than {} DNSKEYs of {zone} share key tag {}, the rest not tried \
                             (limit dnssec_max_keys_per_tag; KeyTrap, CVE-2023-50387)",
                            ctx.budget.keys_per_tag, input.key_tag
                        ),
                    ),
                    &mut failure,
                );
                break;
            }
            any_key = true;
            ctx.budget.verification()?;
            if verifies(key, name, sig, records) {
                let ttl = records
                    .iter()
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(0)
                    .min(input.original_ttl)
                    .min(expiration.wrapping_sub(ctx.now));
                return Ok(Valid {
                    ttl,
                    labels: input.num_labels,
                });
            }
            note(
                Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!(
                        "{name} {rtype}: the RRSIG by {zone} key {} does not verify",
                        input.key_tag
                    ),
                ),
                &mut failure,
            );
        }
        if !any_key && failure.is_none() {
            failure = Some(Fail::new(
                ede::DNSSEC_BOGUS,
                format!(
                    "{name} {rtype}: no DNSKEY of {zone} with key tag {} signs it",
                    input.key_tag
                ),
            ));
        }
    }
    if let Some(fail) = failure {
        return Err(fail);
    }
    if unsupported > 0 {
        return Err(Fail::new(
            ede::DNSSEC_BOGUS,
            format!("{name} {rtype}: signed only with algorithms Picket cannot verify, though its zone {zone} uses one it can"),
        ));
    }
    Err(Fail::new(
        ede::RRSIGS_MISSING,
        format!("{name} {rtype} has no RRSIG by its zone {zone}"),
    ))
}

/// Whether `key` made `sig` over `records`: hickory-proto's verification, or for an RSA key
/// shorter than it verifies, [`short_rsa`]'s.
fn verifies(key: &DNSKEY, name: &Name, sig: &RRSIG, records: &[Record]) -> bool {
    if key
        .verify_rrsig(name, DNSClass::IN, sig, records.iter())
        .is_ok()
    {
        return true;
    }
    let public_key = key.public_key().public_bytes();
    let Some(digest) = short_rsa::Digest::of_algorithm(u8::from(key.algorithm())) else {
        return false;
    };
    if !short_rsa::is_short(public_key) {
        return false;
    }
    let signed = TBS::from_input(name, DNSClass::IN, sig.input(), records.iter());
    signed.is_ok_and(|signed| short_rsa::verify(digest, public_key, signed.as_ref(), sig.sig()))
}

/// RFC 1982 serial number order, as RFC 4034 §3.1.5 asks for signature times.
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// RFC 4035 §5.3.3: a validated RRset is kept no longer than its RRSIG's
/// original TTL, nor past the RRSIG's expiry. The least of those over the
/// RRSIGs of `response`'s answer and authority sections, from `now` (one
/// bound for the whole response: it is cached as one entry, at its lowest
/// TTL). RRSIGs that expired already validated nothing, and are passed
/// over. None without an RRSIG.
pub fn secure_ttl_cap(response: &Message, now: u32) -> Option<u32> {
    response
        .answers
        .iter()
        .chain(&response.authorities)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input()),
            _ => None,
        })
        .filter(|input| serial_lt(now, input.sig_expiration.get()))
        .map(|input| {
            let left = input.sig_expiration.get().wrapping_sub(now);
            left.min(input.original_ttl)
        })
        .min()
}

/// Lowers every record's TTL in `response` to at most `cap` (the OPT
/// record is not among them); whether one was lowered.
pub fn cap_ttls(response: &mut Message, cap: u32) -> bool {
    let mut lowered = false;
    for record in response
        .answers
        .iter_mut()
        .chain(&mut response.authorities)
        .chain(&mut response.additionals)
    {
        if record.ttl > cap {
            record.ttl = cap;
            lowered = true;
        }
    }
    lowered
}

pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
