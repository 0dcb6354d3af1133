//! THE query path, top to bottom (the types between stages: docs/architecture.md):
//!
//! ```text
//! bytes ─▶ protocol::parse ─▶ admission (access list, rate limit)
//!   ─▶ local answers (AXFR, ANY, CHAOS, health) ─▶ policy::evaluate
//!   ─▶ block/override/refuse/drop: synthesize ───────────────────────────▶ bytes
//!   ─▶ cache (fresh hit) ─┬─▶ policy::evaluate_response (IPs, CNAMEs) ──▶ bytes
//!   ─▶ upstream (coalesced miss) ─▶ cache insert ─┘
//! every query ─▶ Outcome ─▶ observe
//! ```
//!
//! [`Worker::start`] is the synchronous front half: everything that can be
//! answered without waiting (malformed, blocked, cached) is answered there,
//! inline in the listener's loop. Only a miss becomes a [`PendingFetch`] that
//! [`Worker::finish`] resolves asynchronously.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use smallvec::SmallVec;
use tokio::sync::Semaphore;

use crate::admission::{ClientInflight, InflightSlot, RateDecision, RateLimiter};
use crate::blockpage::{self, BlockPage, Blocked};
use crate::cache::{Cache, CacheKey, Entry, Lookup};
use crate::config::Settings;
use crate::health::{Drain, InflightGuard, Readiness};
use crate::local;
use crate::observe::{CacheStatus, DashboardSettings, Observer, Outcome, Outputs};
use crate::policy::{
    self, Action, AnswerFacts, Identity, PolicyError, PolicySet, RequestPhase, Verdict,
};
use crate::protocol::build::empty_reply;
use crate::protocol::cookie::CookieSecrets;
use crate::protocol::parse::reject_oversized;
use crate::protocol::wire::{self, ede, flag, rcode};
use crate::protocol::{
    parse_query, Answer, AnswerError, EdnsInfo, EdnsOut, Rejection, Request, ResponseWriter,
};
use crate::query::{ActionLabel, ClientHints, Facts, RouteId};
use crate::rebinding;
use crate::synthesize::{self, Synthesized};
use crate::upstream::{
    validated, Coalescer, DnssecMode, Forwarder, ForwarderStats, Health, PoolLimits, Recursive,
    Role, StreamLimits, Unshared, Upstream, UpstreamError, UpstreamQuery, Validation,
};

/// TTL of answers served stale (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

/// How many queries of a batch ahead of the one being judged its cached answer is asked for:
/// far enough for the prefetched entry that points to it to have arrived, near enough for the
/// answer still to be in cache when its query is judged.
const ANSWER_PREFETCH_AHEAD: usize = 2;

/// Result of a fetch shared between coalesced queries (with the server that
/// answered; none when the answer was iterated from the root).
type Fetched = Result<(Arc<Entry>, Option<Upstream>), UpstreamError>;

/// State shared by every worker, built once at start.
pub struct Shared {
    pub settings: Settings,
    pub cache: Cache,
    pub inflight: Coalescer<CacheKey, Fetched>,
    pub upstream_permits: Semaphore,
    pub health: Arc<Health>,
    pub forwarder_stats: Arc<ForwarderStats>,
    /// Recursive mode's resolver (None when forwarding).
    pub recursor: Option<Recursive>,
    /// DNSSEC validation of forwarded answers (None with `--dnssec off`).
    pub validation: Option<Arc<Validation>>,
    pub observer: Observer,
    /// The policy in force; swapped whole on reload, never edited.
    pub policy: ArcSwap<PolicySet>,
    /// Policy reloads so far, by result.
    pub policy_reloads: PolicyReloads,
    /// `--policy-url`: the bundle in force and the poll counts (None without it).
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The last good downloads of `url` lists, read by every policy load.
    pub remote_lists: Arc<crate::policy::RemoteLists>,
    /// Held while a reload runs: SIGHUP and the file watcher never load two
    /// policies side by side (each may hold a 1M-domain table).
    reloading: std::sync::Mutex<()>,
    /// Per-client rate limiting (`--rate-limit`), off when None.
    pub rate_limiter: Option<RateLimiter>,
    /// Upstream fetches waiting per client address.
    pub client_inflight: Arc<ClientInflight>,
    /// Starting / ready / draining, for the health name and `/readyz`.
    pub readiness: Readiness,
    /// Listener close signal and in-flight count for a graceful stop.
    pub drain: Drain,
    /// The DNS name of the DoH/DoT certificate, the TargetName DDR
    /// advertises (`crate::ddr`); follows certificate reloads. None without
    /// a certificate, or one that names no host.
    tls_name: ArcSwapOption<String>,
    /// What server cookies are made and checked with (RFC 7873): random for each process,
    /// or a fleet's from `--cookie-secret-file`.
    cookie_secrets: ArcSwap<CookieSecrets>,
    /// The block page's addresses and the block-page answers given lately
    /// (`--block-page`; None: no block page is served).
    pub block_page: Option<Arc<BlockPage>>,
}

/// The validator's anchors: the `--trust-anchor` file or the root KSKs.
fn validator_settings(
    settings: &Settings,
) -> Result<crate::dnssec::ValidatorSettings, crate::dnssec::AnchorError> {
    let anchors = match &settings.trust_anchor {
        Some(text) => crate::dnssec::TrustAnchors::parse(text)?,
        None => crate::dnssec::TrustAnchors::builtin_root(),
    };
    Ok(crate::dnssec::ValidatorSettings {
        anchors,
        negative_anchors: settings.negative_trust_anchors.clone(),
    })
}

/// Registers the rule-hit series of a policy before it serves: its rules are exported from 0,
/// and no hit has to create a series.
fn register_rule_series(observer: &Observer, policy: &PolicySet) {
    if let Some(metrics) = observer.metrics() {
        metrics.register_rules(policy.rule_series());
    }
}

/// Why the shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The recursor could not start.
    #[error(transparent)]
    Recursor(#[from] crate::upstream::recursor::RecursorError),
    /// The cookie secret file could not be read.
    #[error("{0}")]
    CookieSecrets(String),
    /// The DNSSEC trust anchors could not be read.
    #[error("bad trust anchor: {0}")]
    Dnssec(crate::dnssec::AnchorError),
    /// The query log could not be opened, or the dnstap writer started.
    #[error(transparent)]
    QueryLog(#[from] std::io::Error),
}

impl Shared {
    /// Builds the shared state from settings and the loaded policy. The
    /// observer (metrics, query log) follows the settings; the forwarder
    /// reports its exchanges to the observer's metrics.
    pub fn new(
        settings: Settings,
        policy: PolicySet,
        fleet: Option<Arc<crate::fleet::Fleet>>,
        remote_lists: Arc<crate::policy::RemoteLists>,
    ) -> Result<Self, SharedError> {
        let recursor = match &settings.recursion {
            Some(r) => Some(Recursive::new(r, &settings.limits)?),
            None => None,
        };
        let validation = match settings.dnssec {
            DnssecMode::Validate => Some(Arc::new(Validation::new(
                validator_settings(&settings).map_err(SharedError::Dnssec)?,
                &settings.limits,
            ))),
            DnssecMode::Off => None,
        };
        let dashboard = (settings.metrics.is_some() && settings.dashboard).then(|| {
            let mut d = DashboardSettings::new(&settings.limits, settings.client_ip);
            d.exclude = settings.query_log.as_ref().and_then(|q| q.exclude.clone());
            d
        });
        let observer = Observer::new(Outputs {
            metrics: settings.metrics.is_some(),
            upstreams: &settings.upstreams,
            query_log: settings.query_log.as_ref(),
            dnstap: settings.dnstap.as_ref(),
            dashboard: dashboard.as_ref(),
        })?;
        register_rule_series(&observer, &policy);
        let cookie_secrets = match &settings.cookie_secret_file {
            Some(path) => CookieSecrets::read(path).map_err(SharedError::CookieSecrets)?,
            None => CookieSecrets::random(),
        };
        Ok(Self {
            policy: ArcSwap::from_pointee(policy),
            policy_reloads: PolicyReloads::default(),
            fleet,
            remote_lists,
            reloading: std::sync::Mutex::default(),
            cache: Cache::new(settings.cache.clone(), settings.clock.clone()),
            inflight: Coalescer::new(settings.limits.max_followers_per_fetch),
            upstream_permits: Semaphore::new(settings.limits.max_upstream_inflight),
            health: Arc::new(Health::default()),
            forwarder_stats: Arc::new(ForwarderStats::with_sink(observer.exchange_sink())),
            recursor,
            validation,
            observer,
            rate_limiter: settings.rate_limit.map(RateLimiter::new),
            client_inflight: Arc::new(ClientInflight::new(settings.limits.max_inflight_per_client)),
            readiness: Readiness::default(),
            drain: Drain::default(),
            tls_name: ArcSwapOption::empty(),
            cookie_secrets: ArcSwap::from_pointee(cookie_secrets),
            block_page: settings
                .block_page
                .as_ref()
                .map(|b| Arc::new(BlockPage::new(b, &settings.limits))),
            settings,
        })
    }

    /// Reads `--cookie-secret-file` again (SIGHUP) and swaps its secrets in; on an error the
    /// secrets in use stay. Ok(None) when there is no file (a random secret stays).
    pub fn reload_cookie_secrets(&self) -> Result<Option<usize>, String> {
        let Some(path) = &self.settings.cookie_secret_file else {
            return Ok(None);
        };
        let secrets = CookieSecrets::read(path)?;
        let count = secrets.len();
        self.cookie_secrets.store(Arc::new(secrets));
        Ok(Some(count))
    }

    /// Loads the policy again from its source and swaps it in whole. Queries
    /// in flight keep the policy they started with; on error the last good
    /// policy stays in force and the error says why.
    pub fn reload_policy(&self) -> Result<Reloaded, PolicyError> {
        self.reload_with(|previous| {
            let opts = crate::policy::LoadOptions {
                blocklists: &self.settings.blocklists,
                previous,
                remote: Some(&self.remote_lists),
            };
            match &self.fleet {
                // The bundle in force, loaded again; a new one comes only from its URL.
                Some(fleet) => fleet.reload(&opts),
                None => self.settings.policies.load_with(&opts),
            }
        })
    }

    /// Loads a policy with `load` (given the policy in force, to share its lists) and swaps it
    /// in whole, one load at a time; on error the policy in force stays.
    pub fn reload_with(
        &self,
        load: impl FnOnce(Option<&PolicySet>) -> Result<PolicySet, PolicyError>,
    ) -> Result<Reloaded, PolicyError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let began = std::time::Instant::now();
        // The policy in force lends its lists to the new one when none changed; held as an
        // `Arc` (not a guard) because loading can take a while.
        let current = self.policy.load_full();
        match load(Some(&current)) {
            Ok(policy) => {
                let reloaded = Reloaded {
                    version: policy.version(),
                    lists_reused: policy.shares_lists_with(&current),
                    took: began.elapsed(),
                };
                drop(current);
                register_rule_series(&self.observer, &policy);
                self.policy.store(Arc::new(policy));
                self.policy_reloads.ok.fetch_add(1, Ordering::Relaxed);
                self.policy_reloads.note(None);
                Ok(reloaded)
            }
            Err(e) => {
                self.policy_reloads.failed.fetch_add(1, Ordering::Relaxed);
                self.policy_reloads.note(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// Sets the certificate's name that DDR advertises (at start and on
    /// every certificate reload).
    pub fn set_tls_name(&self, name: Option<String>) {
        self.tls_name.store(name.map(Arc::new));
    }

    /// Whether some upstream answers (none failing 3 times in a row recently).
    pub fn upstream_ok(&self) -> bool {
        // Recursion has no fixed upstream to watch: its failures show per query.
        self.recursor.is_some() || self.health.any_healthy(&self.settings.upstreams)
    }

    /// Whether this node should receive traffic, or why not (`/readyz`, the
    /// health name).
    pub fn ready(&self) -> Result<(), crate::health::NotReady> {
        self.readiness.ready(self.upstream_ok())
    }
}

/// A reload that took effect.
#[derive(Debug, Clone, Copy)]
pub struct Reloaded {
    /// The new policy's version.
    pub version: u64,
    /// No list changed: the new policy shares the previous one's lists (none was read).
    pub lists_reused: bool,
    /// Loading and validating took this long.
    pub took: std::time::Duration,
}

/// Policy reloads by result.
#[derive(Debug, Default)]
pub struct PolicyReloads {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// The last reload: when, and the error if it failed (the dashboard shows it).
    last: std::sync::Mutex<Option<LastReload>>,
}

/// When the last reload ran, and why it failed if it did.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: std::time::SystemTime,
    pub error: Option<String>,
}

impl PolicyReloads {
    fn note(&self, error: Option<String>) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(LastReload {
            at: std::time::SystemTime::now(),
            error,
        });
    }

    /// The last reload, None before the first.
    pub fn last(&self) -> Option<LastReload> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What to do with a datagram or framed message.
pub enum Step {
    /// Send these bytes now.
    Reply(Vec<u8>),
    /// Send nothing: no datagram, no frame (a `drop` verdict, the rate
    /// limit, or a packet not worth answering).
    Drop,
    /// Needs an upstream answer: call [`Worker::finish`].
    Resolve(Box<PendingFetch>),
}

/// One datagram of a batch for [`Worker::start_batch`].
pub struct Incoming<'a> {
    /// What was read (only the start of an oversized datagram).
    pub bytes: &'a [u8],
    pub hints: ClientHints,
    /// Longer than any query Picket reads: malformed whatever its start says
    /// ([`Worker::start_oversized`]).
    pub oversized: bool,
}

/// How a query was handled from start to end, for transports that must say
/// why nothing was sent ([`Worker::handle`]; DoH maps each to an HTTP status).
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// A DNS message to send, whatever its RCODE.
    Reply(Vec<u8>),
    /// A readable query that was deliberately not answered (a `drop` verdict,
    /// in the request or the response phase).
    Dropped,
    /// Not a DNS query we could read: the header is missing or a response,
    /// or the query is malformed (UDP would get FORMERR, or nothing).
    Malformed,
}

/// A query waiting for an upstream answer, with everything the front half
/// learned about it.
pub struct PendingFetch {
    req: Request,
    /// The query as received, when the observer wants it (dnstap), else empty.
    wire: Box<[u8]>,
    hints: ClientHints,
    started: Instant,
    limit: usize,
    /// The policy the query was judged by (a reload meanwhile does not change it).
    policy: Arc<PolicySet>,
    identity: Identity,
    verdict: Verdict,
    /// What the request phase found, for the response phase.
    phase: RequestPhase,
    /// What to fetch: the question, or an override's CNAME target.
    key: CacheKey,
    /// An expired entry to fall back on if the upstream fails (RFC 8767).
    stale: Option<Arc<Entry>>,
    /// Keeps a graceful stop waiting until this query is answered.
    _inflight: InflightGuard,
    /// This client's claim on an in-flight slot.
    _client_slot: InflightSlot,
}

/// One query as the stages after the policy see it (borrowed from the front
/// half's locals or from a [`PendingFetch`]).
struct Judged<'a> {
    req: &'a Request,
    hints: &'a ClientHints,
    /// The query's bytes as received (empty in a [`PendingFetch`] when not kept).
    wire: &'a [u8],
    started: Instant,
    limit: usize,
    policy: &'a PolicySet,
    identity: Identity,
    verdict: &'a Verdict,
    phase: RequestPhase,
}

/// A message as it arrived: its bytes and when.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    wire: &'a [u8],
    started: Instant,
}

/// How an answer was obtained, for the outcome.
#[derive(Clone)]
struct Provenance {
    cache: CacheStatus,
    upstream: Option<Upstream>,
    /// Seconds the entry has aged, and the TTL cap to serve with.
    age: u32,
    cap: u32,
    /// An EDE we add (Stale Answer).
    ede: Option<u16>,
}

impl Provenance {
    /// Made up here: no cache, no upstream.
    fn synthesized() -> Self {
        Self {
            cache: CacheStatus::None,
            upstream: None,
            age: 0,
            cap: 0,
            ede: None,
        }
    }
}

/// One worker thread's handle on the pipeline: the shared state plus the
/// worker's own upstream sockets.
pub struct Worker {
    shared: Arc<Shared>,
    /// Shared with the fetches this worker starts, which outlive their query.
    forwarder: Arc<Forwarder>,
}

impl Worker {
    /// A worker; call inside the worker's runtime (upstream sockets open
    /// lazily there, and the task that releases their idle ports runs there).
    pub fn new(shared: Arc<Shared>) -> Self {
        let forwarder = Arc::new(
            Forwarder::new(
                shared.settings.forwarder.clone(),
                PoolLimits::per_worker(&shared.settings.limits, shared.settings.threads),
                shared.health.clone(),
                shared.forwarder_stats.clone(),
            )
            .with_stream_limits(StreamLimits::from_limits(&shared.settings.limits)),
        );
        tokio::spawn(Forwarder::keep_swept(Arc::downgrade(&forwarder)));
        Self { shared, forwarder }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether the client's identity is acceptable at all: false for a DoH
    /// path token that names no organization (the DoH listener answers 404,
    /// so as not to leak which policies exist).
    pub fn accepts(&self, hints: &ClientHints) -> bool {
        self.shared.policy.load().identify(hints) != Identity::UnknownToken
    }

    /// Answers a query completely, saying why when nothing is to be sent
    /// (DoH, which must answer every request with some HTTP status).
    pub async fn handle(&self, bytes: &[u8], hints: &ClientHints) -> Handled {
        let Ok(step) = self.parse_and_judge(bytes, hints, Instant::now()) else {
            return Handled::Malformed;
        };
        let reply = match step {
            Step::Reply(reply) => Some(reply),
            Step::Drop => None,
            Step::Resolve(pending) => self.finish(pending).await,
        };
        reply.map_or(Handled::Dropped, Handled::Reply)
    }

    /// The synchronous front half: parse, admission, local answers, policy,
    /// cache. Everything that needs no waiting is answered here.
    pub fn start(&self, bytes: &[u8], hints: &ClientHints) -> Step {
        self.parse_and_judge(bytes, hints, Instant::now())
            .unwrap_or_else(|malformed| malformed)
    }

    /// [`Self::start`] for each datagram of a batch (one `recvmmsg`), in order: `step` gets
    /// each one's index and step. The cache lines the batch's lookups will need are requested
    /// for every query before the first is judged (keys read from the datagrams alone), so that
    /// the memory fetches of a batch of hits overlap instead of each query waiting for its own
    /// in turn; each entry's answer is asked for a little before its query is judged.
    pub fn start_batch(&self, batch: &[Incoming<'_>], mut step: impl FnMut(usize, Step)) {
        let cache = &self.shared.cache;
        let keys = batch.iter().map(|d| match d.oversized {
            true => None,
            false => CacheKey::for_datagram(d.bytes),
        });
        let pending = cache.prefetch(keys);
        // The whole batch arrived before it was read: one clock reading serves for all.
        let started = Instant::now();
        for (i, d) in batch.iter().enumerate() {
            // A few queries ahead, when that query's entry has arrived: its answer.
            if let Some(&Some(at)) = pending.get(i + ANSWER_PREFETCH_AHEAD) {
                cache.prefetch_answer(at);
            }
            step(i, self.start_incoming(d, started));
        }
    }

    /// [`Self::start`] for one datagram read at `started`, or
    /// [`Self::start_oversized`] for one longer than any query Picket reads.
    pub fn start_incoming(&self, d: &Incoming<'_>, started: Instant) -> Step {
        match d.oversized {
            true => self.start_oversized(d.bytes, &d.hints),
            false => self
                .parse_and_judge(d.bytes, &d.hints, started)
                .unwrap_or_else(|malformed| malformed),
        }
    }

    /// [`Self::parse`], then [`Self::judge`] what it read; the error is the
    /// step for a message that is no readable query.
    #[inline]
    fn parse_and_judge(
        &self,
        bytes: &[u8],
        hints: &ClientHints,
        started: Instant,
    ) -> Result<Step, Step> {
        let (req, allowed) = self.parse(bytes, hints, started)?;
        let arrival = Arrival {
            wire: bytes,
            started,
        };
        Ok(self.judge(req, hints, allowed, arrival))
    }

    /// A datagram longer than any query Picket reads
    /// ([`MAX_UDP_QUERY`](crate::config::limits::MAX_UDP_QUERY)): only its
    /// start arrived, so it is malformed whatever that start says. Counted as
    /// malformed; answered FORMERR with the bare header when that header is a
    /// query's, else dropped (see [`reject_oversized`]).
    pub fn start_oversized(&self, start: &[u8], hints: &ClientHints) -> Step {
        let started = Instant::now();
        if !self.shared.settings.access.allows(hints.ip) {
            // Malformed packets from outside the access list get nothing, as in `parse`.
            return Step::Drop;
        }
        let arrival = Arrival {
            wire: start,
            started,
        };
        self.reject(reject_oversized(start), hints, arrival)
    }

    /// Reads the query and whether its client is on the access list; a
    /// message that is no readable query is answered (or not) as malformed,
    /// and the step says how.
    fn parse(
        &self,
        bytes: &[u8],
        hints: &ClientHints,
        started: Instant,
    ) -> Result<(Request, bool), Step> {
        let allowed = self.shared.settings.access.allows(hints.ip);
        match parse_query(bytes) {
            Ok(req) => Ok((req, allowed)),
            Err(_) if !allowed => Err(Step::Drop),
            Err(rejection) => Err(self.reject(
                rejection,
                hints,
                Arrival {
                    wire: bytes,
                    started,
                },
            )),
        }
    }

    /// Everything after parsing: admission, local answers, policy, cache.
    fn judge(
        &self,
        req: Request,
        hints: &ClientHints,
        allowed: bool,
        arrival: Arrival<'_>,
    ) -> Step {
        let started = arrival.started;
        let limit = self.response_limit(&req, hints);
        if let Some(step) = self.admit(&req, hints, allowed, limit) {
            self.observe_unadmitted(&req, hints, allowed, arrival, &step);
            return step;
        }
        let ready = || self.shared.ready();
        let tls_name = || self.shared.tls_name.load_full();
        if let Some(reply) = local::answer(
            &req,
            &self.shared.settings,
            local::Probes { ready, tls_name },
            self.edns_out(&req, hints.ip),
            limit,
        ) {
            self.observe_local(&req, hints, arrival, Some(&reply), ActionLabel::Local, None);
            return Step::Reply(reply);
        }
        let policy = self.shared.policy.load();
        let identity = policy.identify(hints);
        let question_key = CacheKey::for_request(&req);
        // A hit that the policy passed before needs no policy now (`remember_passed`).
        let passed = policy::hit_reuse_key(&policy, &identity).and_then(|memo| {
            let hit = self.shared.cache.fresh_in_front(&question_key, started);
            hit.filter(|(entry, _)| entry.passed_for(memo))
        });
        let (verdict, phase) = match passed {
            Some(_) => (Verdict::resolve(), RequestPhase::default()),
            None => policy::evaluate_with_phase(&policy, &identity, &facts(&req, hints)),
        };
        let judged = Judged {
            req: &req,
            hints,
            wire: arrival.wire,
            started,
            limit,
            policy: &policy,
            identity,
            verdict: &verdict,
            phase,
        };
        if let Some((entry, age)) = passed {
            return self.serve_hit(&judged, question_key, &entry, age, None);
        }
        let Some(key) = self.fetch_key(&judged, question_key) else {
            return self.synthesized(&judged, &verdict);
        };
        if let Some(step) = self.answer_here(&judged) {
            return step;
        }
        let stale = match self.shared.cache.get_at(&key, started) {
            Lookup::Fresh(entry, age) => return self.serve_fresh(&judged, key, &entry, age),
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        let Some(client_slot) = self.shared.client_inflight.claim(hints.ip) else {
            return self.client_overloaded(&judged);
        };
        // Only dnstap reads a pending query's bytes again: copied only for it.
        let wire = match self.shared.observer.wants_wire() {
            true => arrival.wire.into(),
            false => Box::default(),
        };
        Step::Resolve(Box::new(PendingFetch {
            wire,
            hints: hints.clone(),
            started,
            limit,
            policy: arc_swap::Guard::into_inner(policy),
            identity,
            verdict,
            phase,
            key,
            stale,
            req,
            _inflight: self.shared.drain.track(),
            _client_slot: client_slot,
        }))
    }

    /// Records a query the admission step answered itself: outside the
    /// access list (REFUSED with EDE 18) or rate limited.
    fn observe_unadmitted(
        &self,
        req: &Request,
        hints: &ClientHints,
        allowed: bool,
        arrival: Arrival<'_>,
        step: &Step,
    ) {
        let (action, code) = match allowed {
            false => (
                ActionLabel::Denied,
                req.edns.as_ref().map(|_| ede::PROHIBITED),
            ),
            true => (ActionLabel::RateLimited, None),
        };
        let reply = match step {
            Step::Reply(reply) => Some(reply.as_slice()),
            _ => None,
        };
        self.observe_local(req, hints, arrival, reply, action, code);
    }

    /// The answer to a query the policy lets through that needs no upstream:
    /// a name in a locally served zone, or ANY (RFC 8482's short answer);
    /// observed with the policy's verdict.
    fn answer_here(&self, judged: &Judged<'_>) -> Option<Step> {
        let req = judged.req;
        let edns = self.edns_out(req, judged.hints.ip);
        let zones = &self.shared.settings.local_zones;
        let reply = zones
            .answer(req, edns.as_ref(), judged.limit)
            .or_else(|| local::any_answer(req, edns, judged.limit))?;
        let verdict = judged.verdict;
        let none = Provenance::synthesized();
        self.observe(
            judged,
            Some(&reply),
            verdict.label(),
            verdict.rule.as_ref(),
            none,
        );
        Some(Step::Reply(reply))
    }

    /// A cache hit: screened by the response phase, answered. A hit that the
    /// policy passes as a whole is remembered in the entry, and the hits on it
    /// that follow skip the policy ([`policy::hit_reuse_key`]).
    fn serve_fresh(&self, judged: &Judged<'_>, key: CacheKey, entry: &Entry, age: u32) -> Step {
        let block = self.screen(judged, &entry.answer, Some(entry));
        if block.is_none() {
            remember_passed(judged, entry);
        }
        self.serve_hit(judged, key, entry, age, block)
    }

    /// A screened cache hit: refreshed ahead of expiry when popular, answered
    /// (or replaced by the `block` verdict the screen gave).
    fn serve_hit(
        &self,
        judged: &Judged<'_>,
        key: CacheKey,
        entry: &Entry,
        age: u32,
        block: Option<Verdict>,
    ) -> Step {
        if self.shared.cache.claim_prefetch(entry, age) {
            self.prefetch(key);
        }
        let served = Provenance {
            cache: CacheStatus::Hit,
            upstream: None,
            age,
            cap: entry.lifetime(),
            ede: None,
        };
        let reply = self.respond_screened(judged, &entry.answer, served, block);
        reply.map_or(Step::Drop, Step::Reply)
    }

    /// SERVFAIL with EDE 14 for a client that has too many queries in flight.
    fn client_overloaded(&self, judged: &Judged<'_>) -> Step {
        let text = "too many queries in flight for this client";
        let reply = self.error_reply(
            judged.req,
            judged.hints.ip,
            rcode::SERVFAIL as u16,
            Some((ede::NOT_READY, text)),
            judged.limit,
        );
        let served = Provenance {
            ede: Some(ede::NOT_READY),
            ..Provenance::synthesized()
        };
        self.observe(judged, Some(&reply), ActionLabel::Overloaded, None, served);
        Step::Reply(reply)
    }

    /// The asynchronous back half: a coalesced upstream fetch, then the
    /// answer (or a stale one, or SERVFAIL with the reason as an EDE). None
    /// when the response phase drops the answer: send nothing at all. The query stays in
    /// its box: a task's future holds the pointer, not the query's half kilobyte copied in.
    pub async fn finish(&self, p: Box<PendingFetch>) -> Option<Vec<u8>> {
        let shared = self
            .shared
            .inflight
            .run(&p.key, || self.detached_fetch(&p.key))
            .await;
        self.answer_fetched(&p, shared)
    }

    /// As [`Self::finish`], for a caller that is a task of its own which nothing
    /// aborts (the UDP listener's per-query task): when this query leads, the
    /// fetch runs here rather than in a second task (one task per miss, not two).
    pub async fn finish_in_task(&self, p: Box<PendingFetch>) -> Option<Vec<u8>> {
        let work = || Self::fetch(&self.shared, &self.forwarder, &p.key);
        let shared = self.shared.inflight.run_here(&p.key, work).await;
        self.answer_fetched(&p, shared)
    }

    /// The reply for a pending query once its fetch (or its share of one) ended.
    fn answer_fetched(
        &self,
        p: &PendingFetch,
        shared: Result<(Fetched, Role), Unshared>,
    ) -> Option<Vec<u8>> {
        let fetched = match shared {
            Ok((fetched, _)) => fetched,
            // No share of a fetch (too many wait on it, or it stopped): SERVFAIL
            // with EDE 14, or the stale answer.
            Err(unshared) => Err(unshared.into()),
        };
        let judged = Judged {
            req: &p.req,
            hints: &p.hints,
            wire: &p.wire,
            started: p.started,
            limit: p.limit,
            policy: &p.policy,
            identity: p.identity,
            verdict: &p.verdict,
            phase: p.phase,
        };
        match (fetched, &p.stale) {
            (Ok((entry, server)), _) => {
                let served = Provenance {
                    cache: CacheStatus::Miss,
                    upstream: server,
                    age: entry.age(self.shared.cache.clock().now()),
                    cap: entry.lifetime(),
                    ede: None,
                };
                self.respond(&judged, &entry.answer, served)
            }
            (Err(_), Some(stale)) => {
                let served = Provenance {
                    cache: CacheStatus::Stale,
                    upstream: None,
                    age: 0,
                    cap: STALE_TTL,
                    ede: Some(ede::STALE_ANSWER),
                };
                self.respond(&judged, &stale.answer, served)
            }
            (Err(e), None) => {
                let code = e.ede();
                let text = e.to_string();
                let ede = code.map(|code| (code, text.as_str()));
                let reply =
                    self.error_reply(&p.req, p.hints.ip, rcode::SERVFAIL as u16, ede, p.limit);
                let served = Provenance {
                    cache: CacheStatus::Miss,
                    upstream: None,
                    age: 0,
                    cap: 0,
                    ede: code,
                };
                self.observe(
                    &judged,
                    Some(&reply),
                    p.verdict.label(),
                    p.verdict.rule.as_ref(),
                    served,
                );
                Some(reply)
            }
        }
    }

    /// What to look up for a verdict that resolves: the question along the
    /// verdict's route, or an override's CNAME target. None when the verdict
    /// is answered on the spot.
    fn fetch_key(&self, q: &Judged<'_>, question_key: CacheKey) -> Option<CacheKey> {
        let req = q.req;
        match &q.verdict.action {
            Action::Resolve { group } => {
                Some(question_key.with_route(RouteId::for_group(group.clone())))
            }
            Action::Truncate if q.hints.transport.is_stream() => Some(question_key),
            Action::Override(over) => {
                let target = over.cname.as_deref()?;
                let mut name_wire = Vec::with_capacity(target.len() + 2);
                wire::push_name(&mut name_wire, &target.to_ascii_lowercase())?;
                Some(CacheKey::new(
                    &name_wire,
                    req.qtype,
                    req.qclass,
                    req.dnssec_ok(),
                    req.cd(),
                ))
            }
            _ => None,
        }
    }

    /// Refreshes a popular entry before it expires (prefetch, like Unbound's): one fetch in
    /// the background, shared with any miss for the same key meanwhile; its answer replaces the
    /// entry, so the hits that follow never see it expire. Nobody waits for it, and a failure
    /// leaves the entry to expire as it would have.
    fn prefetch(&self, key: CacheKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let work = self.detached_fetch(&key);
        runtime.spawn(Box::pin(async move {
            let _ = shared.inflight.run(&key, || work).await;
        }));
    }

    /// [`Self::fetch`] owning what it needs, so that it runs to the end even when
    /// the query that started it goes away (its followers still wait).
    fn detached_fetch(&self, key: &CacheKey) -> impl Future<Output = Fetched> + Send + 'static {
        let (shared, forwarder, key) = (self.shared.clone(), self.forwarder.clone(), key.clone());
        async move { Self::fetch(&shared, &forwarder, &key).await }
    }

    /// One upstream exchange along the key's route and a cache insert, under
    /// the global in-flight bound.
    async fn fetch(shared: &Shared, forwarder: &Forwarder, key: &CacheKey) -> Fetched {
        let _permit = shared
            .upstream_permits
            .try_acquire()
            .map_err(|_| UpstreamError::Overloaded)?;
        let query = UpstreamQuery {
            name_wire: key.name_wire(),
            qtype: key.qtype(),
            qclass: key.qclass(),
            dnssec_ok: key.dnssec_ok(),
            cd: key.cd(),
        };
        // Recursion is boxed: this future is moved whole into its task and
        // out again (tokio copies it), and unboxed it would be as large as
        // the iterator's (7% of a recursive miss's CPU went to those copies).
        // A forward's future is small (it boxes its encrypted, TCP and
        // validating ways itself), so it is not boxed: one allocation less.
        // The iterator's answer comes indexed already; forwarded bytes are
        // checked against the question and indexed here.
        let indexed = |bytes: Vec<u8>| {
            Answer::from_upstream(&bytes, key.name_wire(), key.qtype(), key.qclass()).map_err(|e| {
                match e {
                    AnswerError::CnameLoop(chain) => UpstreamError::Unusable(chain),
                    _ => UpstreamError::Malformed,
                }
            })
        };
        let (answer, server) = match (key.route(), &shared.recursor) {
            (RouteId::Default, Some(recursor)) => {
                let resolved = recursor.resolve(&query, forwarder.udp_pool());
                (Box::pin(resolved).await?, None)
            }
            (RouteId::Default, None) => {
                let (bytes, server) = validated::forward(
                    forwarder,
                    shared.validation.as_ref(),
                    &query,
                    &shared.settings.upstreams,
                )
                .await?;
                (indexed(bytes)?, Some(server))
            }
            (RouteId::Group(name), _) => {
                // The group as the current policy defines it (it may have been reloaded).
                let servers = shared.policy.load().upstream_group(name).map(|group| {
                    group
                        .iter()
                        .copied()
                        .map(Upstream::from)
                        .collect::<Vec<_>>()
                });
                let servers = servers.ok_or(UpstreamError::NoServers)?;
                let (bytes, server) =
                    validated::forward(forwarder, shared.validation.as_ref(), &query, &servers)
                        .await?;
                (indexed(bytes)?, Some(server))
            }
        };
        Ok((shared.cache.insert(key.clone(), Arc::new(answer)), server))
    }

    /// Serves an answer for a resolving verdict: screened by the response
    /// phase (answer addresses, CNAME cloaking) first, then patched from the
    /// stored bytes (or composed after an override's CNAME). None when the
    /// response phase drops the answer.
    fn respond(&self, q: &Judged<'_>, answer: &Answer, served: Provenance) -> Option<Vec<u8>> {
        let block = self.screen(q, answer, None);
        self.respond_screened(q, answer, served, block)
    }

    /// [`Self::respond`] once the response phase gave `block` (None: keep the answer).
    fn respond_screened(
        &self,
        q: &Judged<'_>,
        answer: &Answer,
        served: Provenance,
        block: Option<Verdict>,
    ) -> Option<Vec<u8>> {
        if let Some(block) = block {
            self.record_block_page(q, &block);
            let page = self.shared.block_page.as_deref();
            let reply = match synthesize::answer(
                q.req,
                &block,
                self.edns_out(q.req, q.hints.ip),
                q.limit,
                page,
            ) {
                Synthesized::Reply(r) => Some(r),
                Synthesized::Drop => None,
            };
            let served = Provenance {
                ede: synthesized_ede(q.req, &block),
                ..served
            };
            self.observe(
                q,
                reply.as_deref(),
                block.label(),
                block.rule.as_ref(),
                served,
            );
            return reply;
        }
        let reply = match &q.verdict.action {
            Action::Override(over) => {
                let target = over.cname.as_deref().unwrap_or_default();
                let edns = self.edns_out(q.req, q.hints.ip);
                let records = answer.answer_records();
                synthesize::cname_answer(
                    q.req,
                    over,
                    target,
                    answer.rcode,
                    &records,
                    edns.as_ref(),
                    q.limit,
                )
            }
            _ => self.serve(q, answer, &served),
        };
        self.observe(
            q,
            Some(&reply),
            q.verdict.label(),
            q.verdict.rule.as_ref(),
            served,
        );
        Some(reply)
    }

    /// The response phase: a verdict that replaces the answer, if any. With the cache
    /// `entry` the answer came from, a verdict that keeps it is remembered in the entry
    /// when it holds for every such query ([`policy::response_reuse_key`]), and not
    /// evaluated again on the hits that follow.
    fn screen(&self, q: &Judged<'_>, answer: &Answer, entry: Option<&Entry>) -> Option<Verdict> {
        if answer.addresses.is_empty() && answer.cnames.is_empty() {
            return None;
        }
        if q.policy.has_response_rules(&q.identity) {
            // The entry is the question's own only when the verdict resolves the question.
            let reuse = entry
                .filter(|_| matches!(q.verdict.action, Action::Resolve { .. }))
                .and_then(|e| {
                    let has_cnames = !answer.cnames.is_empty();
                    policy::response_reuse_key(q.policy, &q.identity, &q.phase, has_cnames)
                        .map(|key| (e, key))
                });
            let kept_before = reuse.is_some_and(|(e, key)| e.kept_for(key));
            if !kept_before {
                let verdict = self.evaluate_response(q, answer);
                if verdict.is_some() {
                    return verdict.filter(|v| !v.resolves());
                }
                if let Some((e, key)) = reuse {
                    e.mark_kept(key);
                }
            }
        }
        let explicitly_allowed = q.verdict.rule.is_some();
        if self.shared.settings.rebind_protection && !explicitly_allowed {
            return rebinding::screen(&q.req.qname, &answer.addresses);
        }
        None
    }

    /// [`policy::evaluate_response_after`] for this query and answer.
    fn evaluate_response(&self, q: &Judged<'_>, answer: &Answer) -> Option<Verdict> {
        let cnames: SmallVec<[&str; 4]> = answer.cnames.iter().map(String::as_str).collect();
        let seen = AnswerFacts {
            addresses: &answer.addresses,
            cnames: &cnames,
        };
        let facts = facts(q.req, q.hints);
        policy::evaluate_response_after(q.policy, &q.identity, &facts, &seen, &q.phase)
    }

    /// Answers a verdict that needs no upstream (block, override to
    /// addresses, refuse, drop, truncate).
    fn synthesized(&self, q: &Judged<'_>, verdict: &Verdict) -> Step {
        let none = Provenance {
            ede: synthesized_ede(q.req, verdict),
            ..Provenance::synthesized()
        };
        self.record_block_page(q, verdict);
        let page = self.shared.block_page.as_deref();
        match synthesize::answer(
            q.req,
            verdict,
            self.edns_out(q.req, q.hints.ip),
            q.limit,
            page,
        ) {
            Synthesized::Reply(reply) => {
                self.observe(
                    q,
                    Some(&reply),
                    verdict.label(),
                    verdict.rule.as_ref(),
                    none,
                );
                Step::Reply(reply)
            }
            Synthesized::Drop => {
                self.observe(q, None, verdict.label(), verdict.rule.as_ref(), none);
                Step::Drop
            }
        }
    }

    /// Remembers a block-page answer (client, name, rule), so that the page
    /// the browser then opens names this rule for this client.
    fn record_block_page(&self, q: &Judged<'_>, verdict: &Verdict) {
        let Some(page) = self.shared.block_page.as_deref() else {
            return;
        };
        if !blockpage::shows_page(verdict, q.req.qtype, Some(page)) {
            return;
        }
        if let Some(blocked) = Blocked::from_verdict(q.policy, &q.identity, verdict) {
            page.record(q.hints.ip, &q.req.qname, blocked);
        }
    }

    /// The access list and the rate limit. None: go on. Clients outside the
    /// access list get REFUSED with EDE 18 (Prohibited); over the rate limit,
    /// UDP queries are dropped or slipped (TC=1), while TCP is not limited
    /// because its source address is proven.
    fn admit(
        &self,
        req: &Request,
        hints: &ClientHints,
        allowed: bool,
        limit: usize,
    ) -> Option<Step> {
        if !allowed {
            let reply = self.error_reply(
                req,
                hints.ip,
                rcode::REFUSED as u16,
                Some((ede::PROHIBITED, "")),
                limit,
            );
            return Some(Step::Reply(reply));
        }
        let limiter = self.shared.rate_limiter.as_ref()?;
        if hints.transport.is_stream() {
            return None;
        }
        match limiter.check(hints.ip, Instant::now()) {
            RateDecision::Allow => None,
            // A valid server cookie proves the source address (protocol::cookie): answered.
            _ if self.cookie_proves_address(req, hints.ip) => None,
            RateDecision::Drop => Some(Step::Drop),
            RateDecision::Slip => {
                let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
                w.set_flags(flag::TC);
                Some(Step::Reply(
                    w.finish(self.edns_out(req, hints.ip).as_ref(), limit),
                ))
            }
        }
    }

    /// Whether `req` carries a server cookie this process made for `client` within the hour.
    fn cookie_proves_address(&self, req: &Request, client: IpAddr) -> bool {
        let cookies = req.edns.as_ref().and_then(|e| e.cookie.as_ref());
        cookies.is_some_and(|c| self.shared.cookie_secrets.load().verifies(c, client))
    }

    /// `answer` as the reply to `q`, aged and capped as `served` says, with
    /// the answer's own EDE and `served`'s.
    fn serve(&self, q: &Judged<'_>, answer: &Answer, served: &Provenance) -> Vec<u8> {
        let mut edns = self.edns_out(q.req, q.hints.ip);
        if let Some(e) = edns.as_mut() {
            if let Some((code, text)) = &answer.ede {
                e.ede.push((*code, text));
            }
            if let Some(code) = served.ede {
                e.ede.push((code, ""));
            }
        }
        answer.write_reply(q.req, served.age, served.cap, edns.as_ref(), q.limit)
    }

    fn error_reply(
        &self,
        req: &Request,
        client: IpAddr,
        code: u16,
        ede: Option<(u16, &str)>,
        limit: usize,
    ) -> Vec<u8> {
        let mut edns = self.edns_out(req, client);
        if let (Some(e), Some((info, text))) = (edns.as_mut(), ede) {
            e.ede.push((info, text));
        }
        ResponseWriter::new(req, code).finish(edns.as_ref(), limit)
    }

    /// The one place our OPT record is made: payload, DO echo, our NSID
    /// when the client asked for it (RFC 5001), and a server cookie for the
    /// client's (RFC 7873) made for its address.
    fn edns_out(&self, req: &Request, client: IpAddr) -> Option<EdnsOut<'_>> {
        req.edns.as_ref().map(|e| self.answering(e, client))
    }

    fn answering(&self, info: &EdnsInfo, client: IpAddr) -> EdnsOut<'_> {
        let settings = &self.shared.settings;
        let mut out = EdnsOut::answering(info, settings.limits.max_udp_payload);
        if info.nsid {
            out.nsid = settings.nsid.as_deref();
        }
        out.cookie = info
            .cookie
            .map(|c| self.shared.cookie_secrets.load().reply(c.client, client));
        out
    }

    fn response_limit(&self, req: &Request, hints: &ClientHints) -> usize {
        if hints.transport.is_stream() {
            u16::MAX as usize
        } else {
            req.udp_limit(self.shared.settings.limits.max_udp_payload)
        }
    }

    /// Answers a query that could not be parsed as a standard query.
    fn reject(&self, rejection: Rejection, hints: &ClientHints, arrival: Arrival<'_>) -> Step {
        let (reply, code) = match rejection {
            Rejection::Drop => (None, None),
            Rejection::Reply {
                header,
                question,
                edns,
                rcode,
            } => {
                // BADVERS: options of an unknown EDNS version are not ours to read.
                let edns = edns.map(|e| match rcode {
                    rcode::BADVERS => {
                        EdnsOut::answering(&e, self.shared.settings.limits.max_udp_payload)
                    }
                    _ => self.answering(&e, hints.ip),
                });
                (
                    Some(empty_reply(
                        &header,
                        question.as_deref(),
                        rcode,
                        edns.as_ref(),
                    )),
                    Some(rcode),
                )
            }
        };
        self.shared.observer.record(&Outcome {
            transport: hints.transport,
            client_ip: hints.ip,
            client_port: hints.port,
            query: arrival.wire,
            reply: reply.as_deref(),
            org: "",
            qname: "",
            qtype: 0,
            rcode: code,
            action: ActionLabel::Malformed,
            rule: None,
            audited: &[],
            cache: CacheStatus::None,
            upstream: None,
            ede: None,
            duration: arrival.started.elapsed(),
        });
        reply.map_or(Step::Drop, Step::Reply)
    }

    /// Observes a query answered (or dropped) before any policy: local
    /// answers, and the access list and rate limit.
    fn observe_local(
        &self,
        req: &Request,
        hints: &ClientHints,
        arrival: Arrival<'_>,
        reply: Option<&[u8]>,
        action: ActionLabel,
        ede: Option<u16>,
    ) {
        self.shared.observer.record(&Outcome {
            transport: hints.transport,
            client_ip: hints.ip,
            client_port: hints.port,
            query: arrival.wire,
            reply,
            org: "",
            qname: &req.qname,
            qtype: req.qtype,
            rcode: reply_rcode(reply),
            action,
            rule: None,
            audited: &[],
            cache: CacheStatus::None,
            upstream: None,
            ede,
            duration: arrival.started.elapsed(),
        });
    }

    fn observe(
        &self,
        q: &Judged<'_>,
        reply: Option<&[u8]>,
        action: ActionLabel,
        rule: Option<&policy::RuleRef>,
        served: Provenance,
    ) {
        if !self.shared.observer.records() {
            return;
        }
        let audited: SmallVec<[(&str, &str); 2]> = q
            .verdict
            .audited
            .iter()
            .map(|r| (&*r.key, &*r.name))
            .collect();
        self.shared.observer.record(&Outcome {
            transport: q.hints.transport,
            client_ip: q.hints.ip,
            client_port: q.hints.port,
            query: q.wire,
            reply,
            org: q.identity.org_id(q.policy),
            qname: &q.req.qname,
            qtype: q.req.qtype,
            rcode: reply_rcode(reply),
            action,
            rule: rule.map(|r| (&*r.key, &*r.name)),
            audited: &audited,
            cache: served.cache,
            upstream: served.upstream.as_ref(),
            ede: served.ede,
            duration: q.started.elapsed(),
        });
    }
}

/// Remembers in the `entry` that the policy passed this hit as a whole, when that holds for
/// every query of its key from the same organization: the verdict is the plain
/// [`Verdict::resolve`] (no rule decided or audited the query, so the rebinding screen, which
/// an explicit `allow` skips, ran too, and the entry is the question's own on the default
/// route), and no rule depends on who asked. `judge` serves the next such hit before the policy
/// and before `answer_here`: a question answered there (a local zone's name, ANY) never reaches
/// a hit, so no pass is remembered for it.
fn remember_passed(q: &Judged<'_>, entry: &Entry) {
    if *q.verdict != Verdict::resolve() {
        return;
    }
    if let Some(memo) = policy::hit_reuse_key(q.policy, &q.identity) {
        entry.mark_passed(memo);
    }
}

/// The request-phase facts of a query.
fn facts<'a>(req: &'a Request, hints: &ClientHints) -> Facts<'a> {
    Facts {
        qname: &req.qname,
        qtype: req.qtype,
        qclass: req.qclass,
        client_ip: hints.ip,
        transport: hints.transport,
        dnssec_ok: req.dnssec_ok(),
    }
}

/// The Extended DNS Error a synthesized answer carries (only with EDNS), for the outcome.
fn synthesized_ede(req: &Request, verdict: &Verdict) -> Option<u16> {
    req.edns.as_ref()?;
    match &verdict.action {
        Action::Block(block) => Some(block.ede),
        Action::Refuse => Some(ede::PROHIBITED),
        _ => None,
    }
}

/// The 4-bit RCODE of a reply we built (None when nothing was sent).
fn reply_rcode(reply: Option<&[u8]>) -> Option<u16> {
    reply.and_then(|r| r.get(3)).map(|b| u16::from(b & 0x0f))
}
