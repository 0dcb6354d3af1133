//! Recursion from the root hints (`picket serve --recursive`), with the
//! iterator of hickory-resolver's `recursor` feature.
//!
//! What Picket adds around it, and why (each bound is in `config/limits.rs`):
//! - **Wire bytes out.** The recursor returns a `Message` (negative answers as
//!   errors); [`Recursive::resolve`] turns either into a response that
//!   `Answer::from_upstream` accepts, so recursion results go to Picket's one
//!   shared cache like forwarded ones. Negative answers carry the SOA in the
//!   authority section (RFC 2308), and NSEC/RRSIGs only for DO clients.
//! - **A budget per client query.** Every query hickory sends goes through
//!   [`Guarded`], a `ConnectionProvider` wrapper that charges it to the client
//!   query's budget (a task-local), DNSSEC key fetches included
//!   (NXNSAttack), and that applies a per-attempt timeout.
//! - **Failure caching (RFC 9520).** hickory caches only negative answers, so
//!   a failing question is cached here with exponential backoff, and a server
//!   address that keeps timing out is held down, so a silent delegation costs
//!   one timeout, not one per query.
//! - **KeyTrap.** [`Guarded`] drops RRSIGs beyond a few per RRset and DNSKEYs
//!   beyond a few per key tag before hickory validates anything.
//! - **Isolation.** Recursion runs on its own runtime, so a slow validation
//!   never stalls a listener thread that is serving cached answers.
//! - **CD=1** goes to a second, non-validating recursor: data unvalidated.
//! - **Trust anchors per zone.** Each name is validated by a recursor that
//!   trusts its closest enclosing anchor only ([`Anchor`]): islands of
//!   security work, names under no anchor are insecure, and a stale anchor
//!   fails its own zone only.
//! - **CNAME chains in order.** [`Assembled`] puts the answer together
//!   from the question down the chain, keeping the CNAMEs of a chain that
//!   ends in NODATA or NXDOMAIN (hickory returns those as bare errors), and
//!   turning loops into SERVFAIL.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, StreamExt};
use hickory_proto::dnssec::rdata::{DNSSECRData, SigInput, DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, Proof, PublicKeyBuf, TrustAnchors, Verifier};
use hickory_proto::op::{
    DnsRequest, DnsResponse, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use hickory_proto::serialize::txt::Parser;
use hickory_resolver::config::ConnectionConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsExchange;
use hickory_resolver::net::{DnsError, DnsHandle, NetError};
use hickory_resolver::recursor::{
    DnssecConfig, DnssecPolicy, Recursor, RecursorError, RecursorOptions,
};
use hickory_resolver::{ConnectionProvider, PoolContext};
use ipnet::IpNet;

use super::{UpstreamError, UpstreamQuery};
use crate::config::limits::RECURSION_NS_POOLS;
use crate::config::Limits;

/// The IANA root hints (named.root format), used unless `--root-hints` is given.
pub const IANA_ROOT_HINTS: &str = include_str!("root.hints");

/// Whether answers are DNSSEC-validated in recursive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnssecMode {
    /// Validate (RFC 4035): AD on secure answers, SERVFAIL (EDE 6) on bogus ones.
    Validate,
    /// Ask for DNSSEC records (so DO clients get them) but validate nothing.
    Off,
}

/// How recursion runs.
#[derive(Debug, Clone)]
pub struct RecursorSettings {
    /// Addresses of the root servers (port 53, unless `nameserver_ports` says otherwise).
    pub root_hints: Vec<IpAddr>,
    /// Validation on or off.
    pub dnssec: DnssecMode,
    /// Trust anchors as zone-file text (DS or DNSKEY records, like Unbound's
    /// `trust-anchor-file`); `None`: the built-in root KSKs (20326, 38696).
    pub trust_anchor: Option<String>,
    /// Randomise the case of query names on UDP and require it echoed (0x20).
    pub case_randomization: bool,
    /// Never send queries to these networks. Default: hickory's list
    /// (loopback, RFC 1918, link-local, documentation, ...); labs empty it.
    pub deny_servers: Vec<IpNet>,
    /// Threads of the recursion runtime.
    pub threads: usize,
    /// Labs and tests: queries to these nameserver addresses go to this port
    /// instead of 53 (hickory's recursor only speaks to port 53, which a
    /// fake hierarchy on loopback cannot bind without root).
    pub nameserver_ports: HashMap<IpAddr, u16>,
}

impl Default for RecursorSettings {
    fn default() -> Self {
        Self {
            root_hints: parse_root_hints(IANA_ROOT_HINTS).expect("built-in root hints parse"),
            dnssec: DnssecMode::Validate,
            trust_anchor: None,
            case_randomization: false,
            deny_servers: RecursorOptions::default().deny_server,
            threads: 1,
            nameserver_ports: HashMap::new(),
        }
    }
}

/// The A/AAAA addresses of a root hints file (zone-file format, like named.root).
pub fn parse_root_hints(text: &str) -> Result<Vec<IpAddr>, String> {
    let (_, sets) = Parser::new(text, None, Some(Name::root()))
        .parse()
        .map_err(|e| e.to_string())?;
    let mut ips: Vec<IpAddr> = sets
        .values()
        .flat_map(|set| set.records_without_rrsigs())
        .filter_map(|r| r.data.ip_addr())
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err("no A or AAAA record for any root server".into());
    }
    Ok(ips)
}

/// Trust anchors read from zone-file text: DNSKEYs are trusted as they are;
/// DS records are turned into the DNSKEYs they match on first use (priming).
#[derive(Debug, Clone, Default)]
struct AnchorFile {
    dnskeys: Vec<(Name, DNSKEY)>,
    ds: Vec<(Name, DS)>,
}

/// Reads DS and DNSKEY lines (`owner [TTL] [IN] DS|DNSKEY rdata`, `;`
/// comments, as in Unbound's trust-anchor-file and ldns' .ds/.key files).
/// hickory's zone parser refuses DNSKEY lines, so they are read here.
fn parse_trust_anchors(text: &str) -> Result<AnchorFile, String> {
    let mut anchors = AnchorFile::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
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
        let bad = |what: String| format!("line {}: {what}", number + 1);
        let owner = fields
            .first()
            .filter(|_| at > 0)
            .ok_or_else(|| bad("no owner".into()))?;
        let mut name = Name::from_ascii(owner).map_err(|e| bad(e.to_string()))?;
        name.set_fqdn(true);
        let rdata = &fields[at + 1..];
        let int = |i: usize| -> Result<u32, String> {
            rdata
                .get(i)
                .ok_or_else(|| bad("too few fields".into()))?
                .parse::<u32>()
                .map_err(|e| bad(e.to_string()))
        };
        if fields[at].eq_ignore_ascii_case("DS") {
            let digest = hex(&rdata.get(3..).unwrap_or_default().concat())
                .ok_or_else(|| bad("the digest is not hex".into()))?;
            let ds = DS::new(
                int(0)? as u16,
                Algorithm::from_u8(int(1)? as u8),
                DigestType::from(int(2)? as u8),
                digest,
            );
            anchors.ds.push((name, ds));
        } else {
            use base64::Engine;
            let key = base64::engine::general_purpose::STANDARD
                .decode(rdata.get(3..).unwrap_or_default().concat())
                .map_err(|e| bad(e.to_string()))?;
            let algorithm = Algorithm::from_u8(int(2)? as u8);
            let dnskey = DNSKEY::with_flags(int(0)? as u16, PublicKeyBuf::new(key, algorithm));
            anchors.dnskeys.push((name, dnskey));
        }
    }
    if anchors.dnskeys.is_empty() && anchors.ds.is_empty() {
        return Err("no DS or DNSKEY record".into());
    }
    Ok(anchors)
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

/// Checks a trust-anchor file, for `picket serve` to fail early on a bad one.
pub fn check_trust_anchor(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_trust_anchors(&text)?;
    Ok(text)
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct RecursorStats {
    /// Queries sent to authoritative servers.
    pub sent: AtomicU64,
    /// Client queries stopped by the query budget.
    pub over_budget: AtomicU64,
    /// Queries not sent because the server was held down after timeouts.
    pub held_down: AtomicU64,
    /// Answers served from the failure cache.
    pub failure_cache_hits: AtomicU64,
    /// Upstream responses from which RRSIGs or DNSKEYs were dropped (KeyTrap).
    pub scrubbed: AtomicU64,
}

/// The recursive resolver shared by all workers.
pub struct Recursive {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

struct Inner {
    /// Non-validating recursor (DNSSEC records requested): `--dnssec off`,
    /// CD=1 queries, names under no trust anchor, and trust-anchor priming.
    plain: Arc<Recursor<Guarded>>,
    /// The trust anchors in validate mode, one per zone (none with
    /// `--dnssec off`), each with its own validating recursor.
    anchors: Vec<Anchor>,
    dnssec: DnssecMode,
    options: RecursorOptions,
    provider: Guarded,
    roots: Vec<IpAddr>,
    failures: Mutex<HashMap<FailKey, Failure>>,
    limits: Limits,
    stats: Arc<RecursorStats>,
}

/// One trust anchor's zone and the validating recursor that trusts it.
///
/// Why one recursor per anchor: hickory's validator (`DnssecDnsHandle`)
/// only knows chains of trust from the root down. When the root is not an
/// anchor, a name outside every anchored zone is walked up to the root in
/// search of DS records and judged bogus, not insecure; and a DNSKEY RRset
/// that is not all anchors is checked against the parent's DS records, which
/// an island of security under an unsigned parent does not have. So each
/// name is validated by a recursor that trusts only its closest enclosing
/// anchor (as Unbound does, RFC 4035 §4.3), primed with the whole DNSKEY
/// RRset the anchor signs; names under no anchor are resolved without
/// validation (insecure: answered, no AD). An anchor that cannot be primed
/// fails its own zone only (SERVFAIL), never the others (RFC 4033 §3).
struct Anchor {
    zone: Name,
    /// The built-in root KSKs (no `--trust-anchor` given).
    builtin: bool,
    dnskeys: Vec<DNSKEY>,
    ds: Vec<DS>,
    state: tokio::sync::Mutex<AnchorState>,
}

enum AnchorState {
    Unprimed,
    Ready(Arc<Recursor<Guarded>>),
    /// Priming failed; tried again after `until`, backing off like the
    /// failure cache.
    Failed {
        error: UpstreamError,
        until: Instant,
        strikes: u32,
    },
}

impl Anchor {
    fn new(zone: Name, builtin: bool, dnskeys: Vec<DNSKEY>, ds: Vec<DS>) -> Self {
        Self {
            zone,
            builtin,
            dnskeys,
            ds,
            state: tokio::sync::Mutex::new(AnchorState::Unprimed),
        }
    }

    /// One anchor per zone of the file; the built-in root KSKs without one.
    fn all(file: Option<&AnchorFile>) -> Vec<Anchor> {
        let Some(file) = file else {
            return vec![Anchor::new(Name::root(), true, Vec::new(), Vec::new())];
        };
        let mut zones: Vec<Name> = file.dnskeys.iter().map(|(n, _)| n.clone()).collect();
        zones.extend(file.ds.iter().map(|(n, _)| n.clone()));
        zones.sort();
        zones.dedup();
        zones
            .into_iter()
            .map(|zone| {
                let of_zone = |n: &Name| *n == zone;
                let dnskeys = file.dnskeys.iter().filter(|(n, _)| of_zone(n));
                let ds = file.ds.iter().filter(|(n, _)| of_zone(n));
                let dnskeys = dnskeys.map(|(_, k)| k.clone()).collect();
                let ds = ds.map(|(_, d)| d.clone()).collect();
                Anchor::new(zone.clone(), false, dnskeys, ds)
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FailKey {
    name: Vec<u8>,
    qtype: u16,
    cd: bool,
}

#[derive(Debug, Clone)]
struct Failure {
    error: UpstreamError,
    until: Instant,
    strikes: u32,
}

/// Entries the failure cache holds at most; past it the expired ones go first,
/// then everything (it is a cache: losing it costs only upstream queries).
const MAX_FAILURES: usize = 65_536;

impl Recursive {
    /// Builds the recursor and its runtime. Nothing is sent until the first query.
    pub fn new(settings: &RecursorSettings, limits: &Limits) -> Result<Self, String> {
        if settings.root_hints.is_empty() {
            return Err("no root hints".into());
        }
        let file = match &settings.trust_anchor {
            Some(text) => Some(parse_trust_anchors(text)?),
            None => None,
        };
        let anchors = match settings.dnssec {
            DnssecMode::Validate => Anchor::all(file.as_ref()),
            DnssecMode::Off => Vec::new(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("picket-recursor")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the recursion runtime: {e}"))?;
        let stats = Arc::new(RecursorStats::default());
        let provider = Guarded {
            inner: TokioRuntimeProvider::default(),
            state: Arc::new(GuardState {
                servers: Mutex::new(HashMap::new()),
                ports: settings.nameserver_ports.clone(),
                attempt_timeout: limits.recursion_attempt_timeout,
                timeouts_before_holddown: limits.recursion_server_timeouts.max(1),
                holddown_max: limits.recursion_failure_ttl_max,
                max_rrsigs: limits.recursion_max_rrsigs_per_rrset,
                max_keys_per_tag: limits.recursion_max_keys_per_tag,
                stats: stats.clone(),
            }),
        };
        let options = RecursorOptions {
            ns_cache_size: RECURSION_NS_POOLS,
            response_cache_size: limits.recursion_infra_cache_entries,
            recursion_limit: limits.recursion_max_depth,
            ns_recursion_limit: limits.recursion_max_depth,
            deny_server: settings.deny_servers.clone(),
            case_randomization: settings.case_randomization,
            ..RecursorOptions::default()
        };
        let plain = {
            let _entered = runtime.enter();
            Recursor::new(
                &settings.root_hints,
                DnssecPolicy::ValidationDisabled,
                None,
                options.clone(),
                provider.clone(),
            )
            .map_err(|e| e.to_string())?
        };
        Ok(Self {
            runtime: Some(runtime),
            inner: Arc::new(Inner {
                plain: Arc::new(plain),
                anchors,
                dnssec: settings.dnssec,
                options,
                provider,
                roots: settings.root_hints.clone(),
                failures: Mutex::new(HashMap::new()),
                limits: limits.clone(),
                stats,
            }),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &RecursorStats {
        &self.inner.stats
    }

    /// Resolves `query` from the root down and returns a response's wire
    /// bytes (QR=1, RA=1, AD when validated secure, the question as asked).
    pub async fn resolve(&self, query: &UpstreamQuery<'_>) -> Result<Vec<u8>, UpstreamError> {
        let key = FailKey {
            name: query.name_wire.to_vec(),
            qtype: query.qtype,
            cd: query.cd,
        };
        if let Some(error) = self.inner.cached_failure(&key) {
            self.inner
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
        let inner = Arc::clone(&self.inner);
        let runtime = self.runtime.as_ref().ok_or(UpstreamError::NoServers)?;
        let result = runtime
            .spawn(async move { inner.resolve(question).await })
            .await
            .unwrap_or_else(|e| Err(UpstreamError::Resolution(format!("recursion task: {e}"))));
        match &result {
            Ok(_) => self.inner.forget_failure(&key),
            Err(error) => self.inner.remember_failure(key, error.clone()),
        }
        result
    }
}

impl Drop for Recursive {
    fn drop(&mut self) {
        // May run inside a worker's runtime, where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The question, owned, for the recursion task.
struct Question {
    name: Name,
    qtype: RecordType,
    dnssec_ok: bool,
    cd: bool,
}

impl Inner {
    async fn resolve(&self, q: Question) -> Result<Vec<u8>, UpstreamError> {
        let validate = self.dnssec == DnssecMode::Validate && !q.cd;
        let budget = Arc::new(Budget::new(self.limits.recursion_max_queries));
        let work = BUDGET.scope(Arc::clone(&budget), self.assemble(&q, validate));
        let outcome = tokio::time::timeout(self.limits.recursion_timeout, work).await;
        if budget.exceeded.load(Ordering::Relaxed) {
            self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::Resolution(format!(
                "more than {} upstream queries needed",
                self.limits.recursion_max_queries
            )));
        }
        let assembled = outcome.map_err(|_| UpstreamError::Timeout)??;
        assembled.into_wire(&q, validate)
    }

    /// Follows the question's CNAME chain to its end. Each stretch is
    /// resolved by the recursor of its first name's closest trust anchor
    /// (see [`Anchor`]); its links are kept while their targets stay under
    /// that anchor, and the chain is resolved again from the first target
    /// under another anchor (or none). So a chain that leaves a signed zone
    /// for an unsigned one, or enters an island, is judged by each name's
    /// own anchor, and AD needs every stretch secure. Left out: DNAME
    /// (hickory synthesises no CNAME from it), and a chain whose first link
    /// cannot be fetched on its own after hickory failed further down: then
    /// the first name's failure or negative answer is returned.
    async fn assemble(&self, q: &Question, validate: bool) -> Result<Assembled, UpstreamError> {
        let mut assembled = Assembled::new(&q.name);
        loop {
            let name = assembled.last_name().clone();
            let anchor = validate.then(|| self.closest_anchor(&name)).flatten();
            let recursor = match anchor {
                Some(anchor) => self.validator(anchor).await?,
                None => Arc::clone(&self.plain),
            };
            let stretch = self.stretch(&recursor, &name, q).await?;
            let zone = anchor.map(|a| &a.zone);
            let stays = |target: &Name| !validate || self.anchor_zone(target) == zone;
            if assembled.extend(stretch, zone.is_some(), stays, &self.limits)? {
                return Ok(assembled);
            }
        }
    }

    /// The anchor whose zone is the closest enclosing one of `name`.
    fn closest_anchor(&self, name: &Name) -> Option<&Anchor> {
        self.anchors
            .iter()
            .filter(|a| a.zone.zone_of(name))
            .max_by_key(|a| a.zone.num_labels())
    }

    fn anchor_zone(&self, name: &Name) -> Option<&Name> {
        self.closest_anchor(name).map(|a| &a.zone)
    }

    /// What `recursor` says about `name`: the CNAME links it followed and
    /// how the chain ended. A negative or bogus ending reached through a
    /// CNAME comes back from hickory without the chain, so then the first
    /// link is asked for on its own and the rest resolved from its target.
    async fn stretch(
        &self,
        recursor: &Recursor<Guarded>,
        name: &Name,
        q: &Question,
    ) -> Result<Stretch, UpstreamError> {
        let query = Query::query(name.clone(), q.qtype);
        let error = match recursor.resolve(query, Instant::now(), q.dnssec_ok).await {
            Ok(message) => return Stretch::from_reply(Reply::from_message(message), name, q),
            Err(error) => error,
        };
        let ended = Reply::from_error(error);
        // A loop across zones makes hickory fail on its depth limit.
        let chain_possible = matches!(
            &ended,
            Ok(_) | Err(UpstreamError::Bogus(_) | UpstreamError::Resolution(_))
        ) && !matches!(q.qtype, RecordType::CNAME | RecordType::ANY)
            && BUDGET.try_with(|b| b.may_have_cname(name)).unwrap_or(true);
        if chain_possible {
            if let Some(link) = self.probe_cname(recursor, name, q).await {
                return Ok(Stretch {
                    links: vec![link],
                    end: None,
                });
            }
        }
        Stretch::from_reply(ended?, name, q)
    }

    /// `name`'s CNAME record, asked for by itself.
    async fn probe_cname(
        &self,
        recursor: &Recursor<Guarded>,
        name: &Name,
        q: &Question,
    ) -> Option<Link> {
        let query = Query::query(name.clone(), RecordType::CNAME);
        let message = recursor
            .resolve(query, Instant::now(), q.dnssec_ok)
            .await
            .ok()?;
        Reply::from_message(message).link_at(name, q.dnssec_ok)
    }

    /// The validating recursor of `anchor`, primed and built on first use
    /// and kept; a priming failure is kept too, and retried with backoff.
    async fn validator(&self, anchor: &Anchor) -> Result<Arc<Recursor<Guarded>>, UpstreamError> {
        let mut state = anchor.state.lock().await;
        let strikes = match &*state {
            AnchorState::Ready(recursor) => return Ok(Arc::clone(recursor)),
            AnchorState::Failed { error, until, .. } if Instant::now() < *until => {
                return Err(error.clone())
            }
            AnchorState::Failed { strikes, .. } => strikes.saturating_add(1),
            AnchorState::Unprimed => 0,
        };
        match self.build_validator(anchor).await {
            Ok(recursor) => {
                let recursor = Arc::new(recursor);
                *state = AnchorState::Ready(Arc::clone(&recursor));
                Ok(recursor)
            }
            Err(error) => {
                let retry = failure_ttl(&self.limits, strikes);
                tracing::warn!(
                    zone = %anchor.zone,
                    error = %error,
                    retry_secs = retry.as_secs(),
                    "trust anchor not usable: names under it get SERVFAIL until it is; \
                     check --trust-anchor against the zone's DNSKEY records"
                );
                *state = AnchorState::Failed {
                    error: error.clone(),
                    until: Instant::now() + retry,
                    strikes,
                };
                Err(error)
            }
        }
    }

    async fn build_validator(&self, anchor: &Anchor) -> Result<Recursor<Guarded>, UpstreamError> {
        let trusted = if anchor.builtin {
            TrustAnchors::default()
        } else {
            let mut trusted = TrustAnchors::empty();
            for key in self.prime(anchor).await? {
                trusted.insert_with_name(key.public_key(), LowerName::from(&anchor.zone));
            }
            if trusted.is_empty() {
                // hickory refuses a set without a root key (its `is_empty`
                // counts root keys only): an island gets one that matches
                // no DNSKEY, so nothing but the island's own keys is trusted.
                trusted.insert(&PublicKeyBuf::new(vec![0; 64], Algorithm::ECDSAP256SHA256));
            }
            trusted
        };
        let mut config = DnssecConfig::default();
        config.trust_anchor = Some(Arc::new(trusted));
        config.validation_cache_size = Some(self.limits.recursion_infra_cache_entries as usize);
        Recursor::new(
            &self.roots,
            DnssecPolicy::ValidateWithStaticKey(config),
            None,
            self.options.clone(),
            self.provider.clone(),
        )
        .map_err(|e| {
            UpstreamError::Resolution(format!(
                "cannot build the validator for {}: {e}",
                anchor.zone
            ))
        })
    }

    /// The keys to trust for `anchor`'s zone (priming, RFC 4035 §5): its
    /// DNSKEYs as given, the zone's DNSKEYs its DS records match, and every
    /// other key of the zone's DNSKEY RRset when one of those signs it (so
    /// data signed by a zone-signing key validates in an island too).
    async fn prime(&self, anchor: &Anchor) -> Result<Vec<DNSKEY>, UpstreamError> {
        let zone = &anchor.zone;
        let query = Query::query(zone.clone(), RecordType::DNSKEY);
        let message = match self.plain.resolve(query, Instant::now(), true).await {
            Ok(message) => message,
            // DNSKEY anchors stand on their own; hickory fetches the rest.
            Err(_) if anchor.ds.is_empty() => return Ok(anchor.dnskeys.clone()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                return Err(UpstreamError::DnskeyMissing(format!(
                    "trust anchor for {zone}: the zone has no DNSKEY records \
                     (unsigned now? update the --trust-anchor file)"
                )))
            }
            Err(e) if e.is_timeout() => return Err(UpstreamError::Timeout),
            Err(e) => {
                return Err(UpstreamError::Resolution(format!(
                    "trust anchor priming for {zone}: cannot fetch its DNSKEY records: {e}"
                )))
            }
        };
        let keys: Vec<&Record> = message
            .answers
            .iter()
            .filter(|r| r.name == *zone && r.record_type() == RecordType::DNSKEY)
            .collect();
        let mut trusted = anchor.dnskeys.clone();
        for key in keys.iter().filter_map(|r| as_dnskey(r)) {
            if anchor
                .ds
                .iter()
                .any(|ds| ds.covers(zone, key).unwrap_or(false))
            {
                trusted.push(key.clone());
            }
        }
        if trusted.is_empty() {
            return Err(UpstreamError::DnskeyMissing(format!(
                "trust anchor for {zone}: none of its {} DNSKEY records matches the DS anchor \
                 (a stale anchor? update the --trust-anchor file)",
                keys.len()
            )));
        }
        if signs_dnskey_rrset(zone, &message.answers, &keys, &trusted) {
            trusted.extend(keys.iter().filter_map(|r| as_dnskey(r)).cloned());
        } else if !anchor.ds.is_empty() {
            return Err(UpstreamError::Bogus(format!(
                "trust anchor for {zone}: its DNSKEY RRset is not signed by the anchored key"
            )));
        }
        Ok(trusted)
    }

    fn cached_failure(&self, key: &FailKey) -> Option<UpstreamError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(key)
            .filter(|f| f.until > Instant::now())
            .map(|f| f.error.clone())
    }

    fn forget_failure(&self, key: &FailKey) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }

    /// RFC 9520 §3.2: cache the failure, backing off exponentially while the
    /// same question keeps failing.
    fn remember_failure(&self, key: FailKey, error: UpstreamError) {
        if matches!(error, UpstreamError::Overloaded) {
            return; // our own load, not the question's fault
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_FAILURES {
            failures.retain(|_, f| f.until > now);
            if failures.len() >= MAX_FAILURES {
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

fn as_dnskey(record: &Record) -> Option<&DNSKEY> {
    match &record.data {
        RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key),
        _ => None,
    }
}

/// Whether a current RRSIG over `zone`'s DNSKEY RRset (`keys`) verifies
/// with one of `trusted`. At most a few RRSIGs and keys: the response was
/// scrubbed by [`Guarded`] (KeyTrap).
fn signs_dnskey_rrset(
    zone: &Name,
    answers: &[Record],
    keys: &[&Record],
    trusted: &[DNSKEY],
) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let sigs = answers.iter().filter_map(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig))
            if r.name == *zone && sig.input().type_covered == RecordType::DNSKEY =>
        {
            Some(sig)
        }
        _ => None,
    });
    sigs.filter(|sig| signature_is_current(sig.input(), now))
        .any(|sig| {
            trusted.iter().any(|key| {
                key.calculate_key_tag().ok() == Some(sig.input().key_tag)
                    && key
                        .verify_rrsig(zone, DNSClass::IN, sig, keys.iter().copied())
                        .is_ok()
            })
        })
}

/// RFC 4034 §3.1.5: inception ≤ now ≤ expiration, in serial number
/// arithmetic (RFC 1982), as the fields wrap in 2106.
fn signature_is_current(input: &SigInput, now: u32) -> bool {
    let started = now.wrapping_sub(input.sig_inception.get()) as i32 >= 0;
    let unexpired = input.sig_expiration.get().wrapping_sub(now) as i32 >= 0;
    started && unexpired
}

/// How long a question that failed `strikes` times in a row stays failed:
/// the base (at least 1 s, RFC 9520), doubled per strike, capped.
fn failure_ttl(limits: &Limits, strikes: u32) -> Duration {
    let base = limits.recursion_failure_ttl.max(Duration::from_secs(1));
    base.saturating_mul(1u32 << strikes.min(16))
        .min(limits.recursion_failure_ttl_max.max(base))
}

/// What the recursor said, before it becomes part of an answer.
struct Reply {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

/// One CNAME of the chain: the record (and its RRSIGs for DO clients) and
/// the name it points to.
struct Link {
    target: Name,
    records: Vec<Record>,
}

/// What one recursor resolution gave: the CNAME links in chain order, and
/// how the last name ended (`None`: the chain goes on from the last link's
/// target, to be resolved next).
struct Stretch {
    links: Vec<Link>,
    end: Option<Ending>,
}

/// The end of the chain: the RRset asked for (positive), or the rcode and
/// the final zone's SOA, with NSEC proofs for DO clients (RFC 2308, and RFC
/// 6604: after a CNAME the rcode is the last name's).
struct Ending {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

impl Reply {
    fn from_message(message: Message) -> Self {
        Self {
            rcode: message.metadata.response_code,
            answers: message.answers,
            authorities: message.authorities,
        }
    }

    /// The CNAME owned by `owner`, with its RRSIGs for a DO client.
    fn link_at(&self, owner: &Name, dnssec_ok: bool) -> Option<Link> {
        let (record, target) = self.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == *owner => Some((r, target.0.clone())),
            _ => None,
        })?;
        let mut records = vec![record.clone()];
        records.extend(self.signatures(owner, RecordType::CNAME, dnssec_ok));
        Some(Link { target, records })
    }

    /// RRSIGs over `owner`'s `covered` RRset, none unless the client set DO.
    fn signatures(&self, owner: &Name, covered: RecordType, dnssec_ok: bool) -> Vec<Record> {
        if !dnssec_ok {
            return Vec::new();
        }
        self.answers
            .iter()
            .filter(|r| r.name == *owner)
            .filter(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered == covered,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// How the chain ends at `owner`: its records of the asked type (each
    /// once, then their RRSIGs), or a negative answer with the SOA.
    fn ending_at(&self, owner: &Name, q: &Question) -> Result<Ending, UpstreamError> {
        let wanted = |t: RecordType| {
            t == q.qtype || (q.qtype == RecordType::ANY && !t.is_dnssec() && t != RecordType::OPT)
        };
        let mut answers: Vec<Record> = Vec::new();
        for record in self.answers.iter().filter(|r| r.name == *owner) {
            if wanted(record.record_type()) && !answers.contains(record) {
                answers.push(record.clone());
            }
        }
        let mut types: Vec<RecordType> = answers.iter().map(Record::record_type).collect();
        types.dedup();
        for covered in types {
            answers.extend(self.signatures(owner, covered, q.dnssec_ok));
        }
        let positive = !answers.is_empty();
        let rcode = match self.rcode {
            ResponseCode::NXDomain if !positive => ResponseCode::NXDomain,
            ResponseCode::NoError | ResponseCode::NXDomain => ResponseCode::NoError,
            other => {
                return Err(UpstreamError::Resolution(format!(
                    "the authoritative servers answered {other}"
                )))
            }
        };
        let authorities = if positive {
            Vec::new()
        } else {
            self.negative_authorities(q.dnssec_ok)
        };
        Ok(Ending {
            rcode,
            answers,
            authorities,
        })
    }

    /// RFC 2308: the SOA; RFC 4035 §3.1.3: NSEC proofs and RRSIGs for DO.
    fn negative_authorities(&self, dnssec_ok: bool) -> Vec<Record> {
        self.authorities
            .iter()
            .filter(|r| match r.record_type() {
                RecordType::SOA => true,
                RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => dnssec_ok,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Negative answers arrive as errors; everything else is a failure.
    fn from_error(error: RecursorError) -> Result<Self, UpstreamError> {
        let negative = |nx: bool, soa: Option<Record>, auth: Option<&[Record]>| {
            let mut authorities: Vec<Record> = auth.map(<[Record]>::to_vec).unwrap_or_default();
            if let Some(soa) = soa {
                if !authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA)
                {
                    authorities.push(soa);
                }
            }
            Reply {
                rcode: if nx {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                },
                answers: Vec::new(),
                authorities,
            }
        };
        match error {
            RecursorError::Negative(data) => {
                let nx = data.is_nx_domain();
                let soa = data.soa.map(|s| s.into_record_of_rdata());
                Ok(negative(nx, soa, data.authorities.as_deref()))
            }
            RecursorError::Net(NetError::Dns(DnsError::NoRecordsFound(no))) if no.ns.is_none() => {
                let nx = no.response_code == ResponseCode::NXDomain;
                let soa = no.soa.map(|s| s.into_record_of_rdata());
                Ok(negative(nx, soa, no.authorities.as_deref()))
            }
            RecursorError::Net(NetError::Dns(DnsError::Nsec {
                response, proof, ..
            })) => match proof {
                Proof::Insecure => {
                    let message = response.into_message();
                    let nx = message.metadata.response_code == ResponseCode::NXDomain;
                    Ok(negative(nx, None, Some(&message.authorities)))
                }
                proof => Err(UpstreamError::Bogus(format!(
                    "denial of existence is {proof}"
                ))),
            },
            RecursorError::Net(NetError::Dns(DnsError::DnssecBogus)) => {
                Err(UpstreamError::Bogus("validation failed".into()))
            }
            RecursorError::Net(NetError::Timeout) | RecursorError::Timeout => {
                Err(UpstreamError::Timeout)
            }
            RecursorError::Net(NetError::Dns(DnsError::ResponseCode(code))) => Err(
                UpstreamError::Resolution(format!("the authoritative servers answered {code}")),
            ),
            RecursorError::ForwardNS(_) => Err(UpstreamError::Resolution(
                "lame delegation: the servers referred us elsewhere".into(),
            )),
            RecursorError::RecursionLimitExceeded { count } => Err(UpstreamError::Resolution(
                format!("recursion depth limit reached ({count})"),
            )),
            RecursorError::MaxRecordLimitExceeded { count, record_type } => Err(
                UpstreamError::Resolution(format!("too many {record_type} records ({count})")),
            ),
            other => {
                let text = other.to_string();
                if text.contains("timed out") {
                    Err(UpstreamError::Timeout)
                } else {
                    Err(UpstreamError::Resolution(text))
                }
            }
        }
    }
}

impl Stretch {
    /// Walks the CNAME chain in `reply` from `name` (each CNAME's owner is
    /// the previous target, whatever order the records came in), then takes
    /// the ending at the last name. A loop stops the walk; [`Assembled`]
    /// reports it.
    fn from_reply(reply: Reply, name: &Name, q: &Question) -> Result<Stretch, UpstreamError> {
        let mut links: Vec<Link> = Vec::new();
        let mut owner = name.clone();
        if !matches!(q.qtype, RecordType::CNAME | RecordType::ANY) {
            while let Some(link) = reply.link_at(&owner, q.dnssec_ok) {
                let looped = *name == link.target || links.iter().any(|l| l.target == link.target);
                owner = link.target.clone();
                links.push(link);
                if looped {
                    break;
                }
            }
        }
        let end = Some(reply.ending_at(&owner, q)?);
        Ok(Stretch { links, end })
    }
}

/// The answer as it is put together, stretch by stretch.
struct Assembled {
    /// The names passed, the question's first.
    chain: Vec<Name>,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    rcode: ResponseCode,
    /// Every record so far was validated secure.
    secure: bool,
}

impl Assembled {
    fn new(qname: &Name) -> Self {
        Self {
            chain: vec![qname.clone()],
            answers: Vec::new(),
            authorities: Vec::new(),
            rcode: ResponseCode::NoError,
            secure: true,
        }
    }

    fn last_name(&self) -> &Name {
        self.chain
            .last()
            .expect("the chain starts with the question")
    }

    /// Adds `stretch`'s links while their targets `stay` under the same
    /// trust anchor, then its ending. True when the answer is complete;
    /// false when the chain goes on from the last name.
    fn extend(
        &mut self,
        stretch: Stretch,
        validated: bool,
        stays: impl Fn(&Name) -> bool,
        limits: &Limits,
    ) -> Result<bool, UpstreamError> {
        for link in stretch.links {
            let leaves = !stays(&link.target);
            self.push_link(link, validated, limits)?;
            if leaves {
                return Ok(false);
            }
        }
        let Some(end) = stretch.end else {
            return Ok(false);
        };
        self.judge(&end.answers, validated)?;
        self.judge(&end.authorities, validated)?;
        self.answers.extend(end.answers);
        self.authorities = end.authorities;
        self.rcode = end.rcode;
        Ok(true)
    }

    fn push_link(
        &mut self,
        link: Link,
        validated: bool,
        limits: &Limits,
    ) -> Result<(), UpstreamError> {
        if self.chain.contains(&link.target) {
            let mut names: Vec<String> = self.chain.iter().map(ToString::to_string).collect();
            names.push(link.target.to_string());
            return Err(UpstreamError::Unusable(format!(
                "CNAME loop: {}",
                names.join(" → ")
            )));
        }
        // The chain holds the question plus one name per link.
        if self.chain.len() > limits.recursion_max_cname_chain {
            return Err(UpstreamError::Resolution(format!(
                "CNAME chain longer than {}",
                limits.recursion_max_cname_chain
            )));
        }
        self.judge(&link.records, validated)?;
        self.answers.extend(link.records);
        self.chain.push(link.target);
        Ok(())
    }

    /// RFC 4035 §5.5: a bogus record fails the answer; anything not proven
    /// secure (or not validated at all) clears AD.
    fn judge(&mut self, records: &[Record], validated: bool) -> Result<(), UpstreamError> {
        let data = records.iter().filter(|r| !r.record_type().is_rrsig());
        if !validated {
            self.secure &= records.is_empty();
            return Ok(());
        }
        for record in data {
            match record.proof {
                Proof::Secure => {}
                Proof::Bogus => {
                    return Err(UpstreamError::Bogus(format!(
                        "{} {} failed validation",
                        record.name,
                        record.record_type()
                    )))
                }
                _ => self.secure = false,
            }
        }
        Ok(())
    }

    /// The response: QR=1, RA=1, the question as asked, AD when validated
    /// and every record was secure.
    fn into_wire(self, q: &Question, validate: bool) -> Result<Vec<u8>, UpstreamError> {
        let has_records = !self.answers.is_empty() || !self.authorities.is_empty();
        let mut message = Message::response(0, OpCode::Query);
        message.metadata.message_type = MessageType::Response;
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.metadata.authentic_data = validate && self.secure && has_records;
        message.metadata.response_code = self.rcode;
        message.add_query(Query::query(q.name.clone(), q.qtype));
        message.add_answers(self.answers);
        message.add_authorities(self.authorities);
        message
            .to_vec()
            .map_err(|e| UpstreamError::Resolution(format!("cannot encode the answer: {e}")))
    }
}

tokio::task_local! {
    /// The upstream-query budget of the client query being resolved.
    static BUDGET: Arc<Budget>;
}

/// Upstream queries one client query may still cause, and what their
/// answers said about CNAMEs.
struct Budget {
    sent: AtomicUsize,
    max: usize,
    exceeded: AtomicBool,
    journal: Mutex<Journal>,
}

/// Names this client query's upstream answers spoke for (at most one per
/// query sent, so bounded by the budget), lower case (0x20).
#[derive(Default)]
struct Journal {
    answered: HashSet<Name>,
    cname_owners: HashSet<Name>,
}

impl Budget {
    fn new(max: usize) -> Self {
        Self {
            sent: AtomicUsize::new(0),
            max,
            exceeded: AtomicBool::new(false),
            journal: Mutex::new(Journal::default()),
        }
    }

    fn charge(&self) -> bool {
        let ok = self
            .sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !ok {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// Notes whether the answer's question name owns a CNAME.
    fn note(&self, response: &DnsResponse) {
        let Some(question) = response.queries.first() else {
            return;
        };
        let asked = question.name().to_lowercase();
        let has_cname = response
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME && r.name.to_lowercase() == asked);
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if has_cname {
            journal.cname_owners.insert(asked.clone());
        }
        journal.answered.insert(asked);
    }

    /// Whether `name` may own a CNAME: an authoritative answer for it said
    /// so, or none was seen (hickory answered from its own cache).
    fn may_have_cname(&self, name: &Name) -> bool {
        let name = name.to_lowercase();
        let journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        journal.cname_owners.contains(&name) || !journal.answered.contains(&name)
    }
}

/// hickory's Tokio connection provider with Picket's guards on every query:
/// budget, per-attempt timeout, server hold-down, KeyTrap scrubbing.
#[derive(Clone)]
struct Guarded {
    inner: TokioRuntimeProvider,
    state: Arc<GuardState>,
}

struct GuardState {
    servers: Mutex<HashMap<IpAddr, ServerHealth>>,
    /// Ports other than 53 for some nameserver addresses (labs, tests).
    ports: HashMap<IpAddr, u16>,
    attempt_timeout: Duration,
    timeouts_before_holddown: u32,
    holddown_max: Duration,
    max_rrsigs: usize,
    max_keys_per_tag: usize,
    stats: Arc<RecursorStats>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ServerHealth {
    timeouts: u32,
    holddowns: u32,
    until: Option<Instant>,
}

/// First hold-down of a server that keeps timing out; doubles each time.
const HOLDDOWN_BASE: Duration = Duration::from_secs(5);

impl GuardState {
    fn held_down(&self, ip: IpAddr) -> bool {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers
            .get(&ip)
            .and_then(|h| h.until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn timed_out(&self, ip: IpAddr) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if servers.len() > 100_000 {
            servers.clear();
        }
        let health = servers.entry(ip).or_default();
        health.timeouts += 1;
        if health.timeouts >= self.timeouts_before_holddown {
            let hold = HOLDDOWN_BASE
                .saturating_mul(1u32 << health.holddowns.min(16))
                .min(self.holddown_max.max(HOLDDOWN_BASE));
            health.until = Some(Instant::now() + hold);
            health.holddowns = health.holddowns.saturating_add(1);
            // After the hold-down one probe decides: a timeout holds it again.
            health.timeouts = self.timeouts_before_holddown - 1;
        }
    }

    fn answered(&self, ip: IpAddr) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.remove(&ip);
    }

    /// KeyTrap bound: at most `max_rrsigs` RRSIGs per (owner, type covered)
    /// and `max_keys_per_tag` DNSKEYs per (owner, key tag). A response within
    /// bounds is passed on untouched.
    fn scrub(&self, response: DnsResponse) -> Result<DnsResponse, NetError> {
        if !self.needs_scrub(&response) {
            return Ok(response);
        }
        self.stats.scrubbed.fetch_add(1, Ordering::Relaxed);
        let mut message = response.into_message();
        for section in [
            &mut message.answers,
            &mut message.authorities,
            &mut message.additionals,
        ] {
            let mut sigs: HashMap<(Name, RecordType), usize> = HashMap::new();
            let mut keys: HashMap<(Name, u16), usize> = HashMap::new();
            section.retain(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                    let n = sigs
                        .entry((r.name.clone(), sig.input().type_covered))
                        .or_default();
                    *n += 1;
                    *n <= self.max_rrsigs
                }
                RData::DNSSEC(DNSSECRData::DNSKEY(key)) => {
                    let tag = key.calculate_key_tag().unwrap_or(0);
                    let n = keys.entry((r.name.clone(), tag)).or_default();
                    *n += 1;
                    *n <= self.max_keys_per_tag
                }
                _ => true,
            });
        }
        DnsResponse::from_message(message).map_err(NetError::from)
    }

    fn needs_scrub(&self, response: &DnsResponse) -> bool {
        let mut sigs: HashMap<(&Name, RecordType), usize> = HashMap::new();
        let mut keys: HashMap<(&Name, u16), usize> = HashMap::new();
        for r in response.all_sections() {
            match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                    let n = sigs.entry((&r.name, sig.input().type_covered)).or_default();
                    *n += 1;
                    if *n > self.max_rrsigs {
                        return true;
                    }
                }
                RData::DNSSEC(DNSSECRData::DNSKEY(key)) => {
                    let tag = key.calculate_key_tag().unwrap_or(0);
                    let n = keys.entry((&r.name, tag)).or_default();
                    *n += 1;
                    if *n > self.max_keys_per_tag {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

type ConnFuture = Pin<Box<dyn Future<Output = Result<GuardedConn, NetError>> + Send + 'static>>;

impl ConnectionProvider for Guarded {
    type Conn = GuardedConn;
    type FutureConn = ConnFuture;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        let mut config = config.clone();
        if let Some(&port) = self.state.ports.get(&ip) {
            config.port = port;
        }
        let connecting = self.inner.new_connection(ip, &config, cx)?;
        let state = Arc::clone(&self.state);
        Ok(Box::pin(async move {
            Ok(GuardedConn {
                inner: connecting.await?,
                ip,
                state,
            })
        }))
    }

    fn runtime_provider(&self) -> &Self::RuntimeProvider {
        &self.inner
    }
}

/// One connection to an authoritative server, guarded.
#[derive(Clone)]
struct GuardedConn {
    inner: DnsExchange<TokioRuntimeProvider>,
    ip: IpAddr,
    state: Arc<GuardState>,
}

impl DnsHandle for GuardedConn {
    type Response = BoxStream<'static, Result<DnsResponse, NetError>>;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Self::Response {
        let budget = BUDGET.try_with(Arc::clone).ok();
        let within_budget = budget.as_ref().is_none_or(|b| b.charge());
        if !within_budget {
            return stream::once(async { Err(NetError::from("per-query upstream budget spent")) })
                .boxed();
        }
        if self.state.held_down(self.ip) {
            self.state.stats.held_down.fetch_add(1, Ordering::Relaxed);
            return stream::once(async { Err(NetError::Timeout) }).boxed();
        }
        self.state.stats.sent.fetch_add(1, Ordering::Relaxed);
        let mut responses = self.inner.send(request);
        let state = Arc::clone(&self.state);
        let ip = self.ip;
        stream::once(async move {
            match tokio::time::timeout(state.attempt_timeout, responses.next()).await {
                Err(_) | Ok(Some(Err(NetError::Timeout))) => {
                    state.timed_out(ip);
                    Err(NetError::Timeout)
                }
                Ok(None) => Err(NetError::from("connection closed without an answer")),
                Ok(Some(Err(e))) => Err(e),
                Ok(Some(Ok(response))) => {
                    state.answered(ip);
                    if let Some(budget) = &budget {
                        budget.note(&response);
                    }
                    state.scrub(response)
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_root_hints_have_all_thirteen_servers() {
        let ips = parse_root_hints(IANA_ROOT_HINTS).unwrap();
        assert_eq!(ips.iter().filter(|ip| ip.is_ipv4()).count(), 13);
        assert_eq!(ips.iter().filter(|ip| ip.is_ipv6()).count(), 13);
        assert!(ips.contains(&"198.41.0.4".parse().unwrap()));
    }

    #[test]
    fn root_hints_without_addresses_are_refused() {
        assert!(parse_root_hints(". 3600 NS a.root.test.").is_err());
    }

    #[test]
    fn trust_anchor_files_take_ds_and_dnskey() {
        let ds = ". 3600 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";
        let anchors = parse_trust_anchors(ds).unwrap();
        assert_eq!(anchors.ds.len(), 1);
        assert_eq!(anchors.ds[0].1.key_tag(), 20326);
        // An ldns .key file: no TTL, a trailing comment.
        let key = ".\tIN\tDNSKEY\t257 3 13 6PpyEejQWyRmaCRB/O/tLqr30fZmYWIicTQ4oBTpXiXXYm0kzl2A8iL0LxYv05BzC8tv0eUuhbYjlx1n/hIAtw== ;{id = 18080 (ksk)}";
        let anchors = parse_trust_anchors(key).unwrap();
        assert_eq!(anchors.dnskeys.len(), 1);
        assert!(anchors.dnskeys[0].0.is_root());
        assert!(parse_trust_anchors("example. 60 IN A 192.0.2.1").is_err());
    }

    #[test]
    fn failure_backoff_doubles_up_to_the_cap() {
        let limits = Limits::default();
        assert_eq!(failure_ttl(&limits, 0), Duration::from_secs(5));
        assert_eq!(failure_ttl(&limits, 1), Duration::from_secs(10));
        assert_eq!(failure_ttl(&limits, 10), Duration::from_secs(300));
    }
}
