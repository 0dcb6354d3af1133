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

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, StreamExt};
use hickory_proto::dnssec::rdata::{DNSSECRData, DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, Proof, PublicKeyBuf, TrustAnchors};
use hickory_proto::op::{
    DnsRequest, DnsResponse, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
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
use tokio::sync::OnceCell;

use super::{UpstreamError, UpstreamQuery};
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
    /// Validating recursor, built on first use (DS anchors need priming).
    validating: OnceCell<Recursor<Guarded>>,
    /// Non-validating recursor (DNSSEC records requested): `--dnssec off`,
    /// CD=1 queries and trust-anchor priming.
    plain: Recursor<Guarded>,
    dnssec: DnssecMode,
    anchors: AnchorFile,
    options: RecursorOptions,
    provider: Guarded,
    roots: Vec<IpAddr>,
    failures: Mutex<HashMap<FailKey, Failure>>,
    limits: Limits,
    stats: Arc<RecursorStats>,
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
        let anchors = match &settings.trust_anchor {
            Some(text) => parse_trust_anchors(text)?,
            None => AnchorFile::default(),
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
            ns_cache_size: 1_024,
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
                validating: OnceCell::new(),
                plain,
                dnssec: settings.dnssec,
                anchors,
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
        let recursor = if validate {
            self.validating().await?
        } else {
            &self.plain
        };
        let budget = Arc::new(Budget::new(self.limits.recursion_max_queries));
        let query = Query::query(q.name.clone(), q.qtype);
        let work = BUDGET.scope(
            Arc::clone(&budget),
            recursor.resolve(query, Instant::now(), q.dnssec_ok),
        );
        let outcome = tokio::time::timeout(self.limits.recursion_timeout, work).await;
        if budget.exceeded.load(Ordering::Relaxed) {
            self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::Resolution(format!(
                "more than {} upstream queries needed",
                self.limits.recursion_max_queries
            )));
        }
        let reply = match outcome {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Ok(message)) => Reply::from_message(message),
            Ok(Err(error)) => Reply::from_error(error)?,
        };
        reply.into_wire(&q, validate, &self.limits)
    }

    /// The validating recursor, built on first use: DS trust anchors are
    /// turned into the DNSKEYs they match by asking for them (priming).
    async fn validating(&self) -> Result<&Recursor<Guarded>, UpstreamError> {
        self.validating
            .get_or_try_init(|| async {
                let mut anchors = if self.anchors.dnskeys.is_empty() && self.anchors.ds.is_empty() {
                    TrustAnchors::default()
                } else {
                    TrustAnchors::empty()
                };
                for (name, key) in &self.anchors.dnskeys {
                    anchors.insert_with_name(key.public_key(), LowerName::from(name));
                }
                self.prime_ds_anchors(&mut anchors).await?;
                let mut config = DnssecConfig::default();
                config.trust_anchor = Some(Arc::new(anchors));
                config.validation_cache_size =
                    Some(self.limits.recursion_infra_cache_entries as usize);
                Recursor::new(
                    &self.roots,
                    DnssecPolicy::ValidateWithStaticKey(config),
                    None,
                    self.options.clone(),
                    self.provider.clone(),
                )
                .map_err(|e| UpstreamError::Resolution(format!("cannot build the validator: {e}")))
            })
            .await
    }

    async fn prime_ds_anchors(&self, anchors: &mut TrustAnchors) -> Result<(), UpstreamError> {
        let mut zones: Vec<&Name> = self.anchors.ds.iter().map(|(n, _)| n).collect();
        zones.dedup();
        for zone in zones {
            let query = Query::query(zone.clone(), RecordType::DNSKEY);
            let budget = Arc::new(Budget::new(self.limits.recursion_max_queries));
            let work = BUDGET.scope(budget, self.plain.resolve(query, Instant::now(), true));
            let message = tokio::time::timeout(self.limits.recursion_timeout, work)
                .await
                .map_err(|_| UpstreamError::Timeout)?
                .map_err(|e| {
                    UpstreamError::Resolution(format!("trust anchor priming for {zone}: {e}"))
                })?;
            let mut found = false;
            for record in &message.answers {
                let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &record.data else {
                    continue;
                };
                let matches = self
                    .anchors
                    .ds
                    .iter()
                    .any(|(n, ds)| n == zone && ds.covers(zone, key).unwrap_or(false));
                if matches {
                    anchors.insert_with_name(key.public_key(), LowerName::from(zone));
                    found = true;
                }
            }
            if !found {
                return Err(UpstreamError::Bogus(format!(
                    "no DNSKEY of {zone} matches the DS trust anchor"
                )));
            }
        }
        Ok(())
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

/// How long a question that failed `strikes` times in a row stays failed:
/// the base (at least 1 s, RFC 9520), doubled per strike, capped.
fn failure_ttl(limits: &Limits, strikes: u32) -> Duration {
    let base = limits.recursion_failure_ttl.max(Duration::from_secs(1));
    base.saturating_mul(1u32 << strikes.min(16))
        .min(limits.recursion_failure_ttl_max.max(base))
}

/// What the recursor said, before it becomes wire bytes.
struct Reply {
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

    /// The response to `q`: only records on the question's CNAME chain are
    /// kept (anything else is discarded), DNSSEC records only for DO clients,
    /// AD when every kept record was validated secure.
    fn into_wire(
        self,
        q: &Question,
        validated: bool,
        limits: &Limits,
    ) -> Result<Vec<u8>, UpstreamError> {
        let is_dnssec_type = |t: RecordType| t.is_dnssec() && t != q.qtype;
        if validated {
            let bogus = self
                .answers
                .iter()
                .chain(self.authorities.iter())
                .filter(|r| !r.record_type().is_rrsig())
                .any(|r| matches!(r.proof, Proof::Bogus));
            if bogus {
                return Err(UpstreamError::Bogus("an RRset failed validation".into()));
            }
        }
        // Walk the chain from the question: owners must match it.
        let mut chain = vec![q.name.clone()];
        let mut cnames = 0usize;
        loop {
            let current = chain.last().expect("chain starts with the question");
            let next = self.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if r.name == *current && q.qtype != RecordType::CNAME => {
                    Some(target.0.clone())
                }
                _ => None,
            });
            let Some(next) = next else { break };
            if chain.contains(&next) {
                return Err(UpstreamError::Resolution("CNAME loop".into()));
            }
            cnames += 1;
            if cnames > limits.recursion_max_cname_chain {
                return Err(UpstreamError::Resolution(format!(
                    "CNAME chain longer than {}",
                    limits.recursion_max_cname_chain
                )));
            }
            chain.push(next);
        }
        let on_chain = |r: &Record| chain.contains(&r.name);
        let wanted = |r: &Record| {
            let t = r.record_type();
            if t == RecordType::RRSIG {
                if !q.dnssec_ok {
                    return false;
                }
                return match &r.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                        let covered = sig.input().type_covered;
                        covered == q.qtype || covered == RecordType::CNAME
                    }
                    _ => false,
                };
            }
            t == q.qtype
                || t == RecordType::CNAME
                || (q.qtype == RecordType::ANY && !is_dnssec_type(t))
        };
        let mut answers: Vec<Record> = Vec::new();
        for record in self
            .answers
            .into_iter()
            .filter(|r| on_chain(r) && wanted(r))
        {
            if !answers.contains(&record) {
                answers.push(record);
            }
        }
        let negative = answers.iter().all(|r| r.record_type() == RecordType::CNAME)
            && !matches!(q.qtype, RecordType::CNAME);
        let authorities: Vec<Record> = if negative {
            self.authorities
                .into_iter()
                .filter(|r| match r.record_type() {
                    RecordType::SOA => true,
                    RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => q.dnssec_ok,
                    _ => false,
                })
                .collect()
        } else {
            Vec::new()
        };
        let rcode = match self.rcode {
            ResponseCode::NXDomain if answers.is_empty() || negative => ResponseCode::NXDomain,
            ResponseCode::NoError | ResponseCode::NXDomain => ResponseCode::NoError,
            other => {
                return Err(UpstreamError::Resolution(format!(
                    "the authoritative servers answered {other}"
                )))
            }
        };
        let secure = |records: &[Record]| {
            records
                .iter()
                .filter(|r| !r.record_type().is_rrsig())
                .all(|r| r.proof == Proof::Secure)
        };
        let authentic = validated
            && (!answers.is_empty() || !authorities.is_empty())
            && secure(&answers)
            && (!negative || secure(&authorities));
        let mut message = Message::response(0, OpCode::Query);
        message.metadata.message_type = MessageType::Response;
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.metadata.authentic_data = authentic;
        message.metadata.response_code = rcode;
        message.add_query(Query::query(q.name.clone(), q.qtype));
        message.add_answers(answers);
        message.add_authorities(authorities);
        message
            .to_vec()
            .map_err(|e| UpstreamError::Resolution(format!("cannot encode the answer: {e}")))
    }
}

tokio::task_local! {
    /// The upstream-query budget of the client query being resolved.
    static BUDGET: Arc<Budget>;
}

/// Upstream queries one client query may still cause.
struct Budget {
    sent: AtomicUsize,
    max: usize,
    exceeded: AtomicBool,
}

impl Budget {
    fn new(max: usize) -> Self {
        Self {
            sent: AtomicUsize::new(0),
            max,
            exceeded: AtomicBool::new(false),
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
        let within_budget = BUDGET.try_with(|b| b.charge()).unwrap_or(true);
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
