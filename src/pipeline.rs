//! THE query path, top to bottom (DESIGN.md §1):
//!
//! ```text
//! bytes ─▶ protocol::parse ─▶ local answers (AXFR, ANY, CHAOS) ─▶ policy
//!   ─▶ cache (fresh hit: answer now) ─▶ upstream (coalesced miss) ─▶ cache insert
//!   ─▶ protocol::build ─▶ bytes;   Outcome ─▶ observe
//! ```
//!
//! [`Worker::start`] is the synchronous front half: everything that can be
//! answered without waiting (malformed, blocked, cached) is answered there,
//! inline in the listener's loop. Only a miss becomes a [`Pending`] that
//! [`Worker::finish`] resolves asynchronously.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::admission::{AccessList, RateDecision, RateLimiter};
use crate::cache::{Cache, CacheKey, Entry, Lookup};
use crate::config::Settings;
use crate::health::{Drain, InflightGuard, Readiness};
use crate::observe::{CacheStatus, Observer, Outcome};
use crate::protocol::build::{empty_reply, txt_rdata};
use crate::protocol::wire::{ede, flag, rcode, rtype};
use crate::protocol::{
    parse_query, Answer, EdnsInfo, EdnsOut, Rejection, Request, ResponseWriter, Section,
};
use crate::query::ClientHints;
use crate::upstream::{
    Coalescer, Forwarder, ForwarderStats, Health, Route, UpstreamError, UpstreamQuery,
};

/// Class IN.
const CLASS_IN: u16 = 1;
/// Class CHAOS (RFC 1035 §3.2.4): server identity and version queries.
const CLASS_CH: u16 = 3;
/// TTL of local identity and health answers: never cached downstream.
const LOCAL_TTL: u32 = 0;
/// TTL of the RFC 8482 answer to ANY.
const ANY_TTL: u32 = 3600;
/// TTL of answers served stale (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

/// Result of a fetch shared between coalesced queries.
type Fetched = Result<(Arc<Entry>, SocketAddr), UpstreamError>;

/// State shared by every worker, built once at start.
pub struct Shared {
    pub settings: Settings,
    pub cache: Cache,
    pub inflight: Coalescer<CacheKey, Fetched>,
    pub upstream_permits: Semaphore,
    pub health: Arc<Health>,
    pub forwarder_stats: Arc<ForwarderStats>,
    pub observer: Observer,
    /// Who may ask (`--allow-from`).
    pub access: AccessList,
    /// Per-client rate limiting (`--rate-limit`), off when None.
    pub rate_limiter: Option<RateLimiter>,
    /// Starting / ready / draining, for the health name and `/readyz`.
    pub readiness: Readiness,
    /// Listener close signal and in-flight count for a graceful stop.
    pub drain: Drain,
}

impl Shared {
    /// Builds the shared state from settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            cache: Cache::new(settings.cache.clone(), settings.clock.clone()),
            inflight: Coalescer::default(),
            upstream_permits: Semaphore::new(settings.limits.max_upstream_inflight),
            health: Arc::new(Health::default()),
            forwarder_stats: Arc::new(ForwarderStats::default()),
            observer: Observer::default(),
            access: settings.access.clone(),
            rate_limiter: settings.rate_limit.map(RateLimiter::new),
            readiness: Readiness::default(),
            drain: Drain::default(),
            settings,
        }
    }

    /// Whether some upstream answers (none failing 3 times in a row recently).
    pub fn upstream_ok(&self) -> bool {
        self.health.any_healthy(&self.settings.upstreams)
    }

    /// Whether this node should receive traffic, or why not (`/readyz`, the
    /// health name).
    pub fn ready(&self) -> Result<(), &'static str> {
        self.readiness.ready(self.upstream_ok())
    }
}

/// What to do with a datagram or framed message.
pub enum Step {
    /// Send these bytes now.
    Reply(Vec<u8>),
    /// Send nothing.
    Drop,
    /// Needs an upstream answer: call [`Worker::finish`].
    Resolve(Box<Pending>),
}

/// A query waiting for an upstream answer.
pub struct Pending {
    req: Request,
    key: CacheKey,
    hints: ClientHints,
    started: Instant,
    limit: usize,
    stale: Option<Arc<Entry>>,
    /// Keeps a graceful stop waiting until this query is answered.
    _inflight: InflightGuard,
}

/// One worker thread's handle on the pipeline: the shared state plus the
/// worker's own upstream sockets.
pub struct Worker {
    shared: Arc<Shared>,
    forwarder: Forwarder,
}

impl Worker {
    /// A worker; call inside the worker's runtime (upstream sockets open lazily there).
    pub fn new(shared: Arc<Shared>) -> Self {
        let forwarder = Forwarder::new(
            shared.settings.forwarder.clone(),
            shared.health.clone(),
            shared.forwarder_stats.clone(),
        );
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
        let _ = hints;
        true
    }

    /// Answers a query completely (stream transports and tests).
    pub async fn handle(&self, bytes: &[u8], hints: &ClientHints) -> Option<Vec<u8>> {
        match self.start(bytes, hints) {
            Step::Reply(r) => Some(r),
            Step::Drop => None,
            Step::Resolve(p) => Some(self.finish(*p).await),
        }
    }

    /// The synchronous front half: parse, local answers, policy, cache.
    pub fn start(&self, bytes: &[u8], hints: &ClientHints) -> Step {
        let started = Instant::now();
        let allowed = self.shared.access.allows(hints.ip);
        let req = match parse_query(bytes) {
            Ok(req) => req,
            Err(_) if !allowed => return Step::Drop,
            Err(rejection) => return self.reject(rejection, hints, started),
        };
        let limit = self.response_limit(&req, hints);
        if let Some(reply) = self.admit(&req, hints, allowed, limit) {
            return reply;
        }
        if let Some(reply) = self.local_answer(&req, limit) {
            self.observe(
                &req,
                hints,
                started,
                &reply,
                "local",
                CacheStatus::None,
                None,
                None,
            );
            return Step::Reply(reply);
        }
        let key = CacheKey::for_request(&req);
        let stale = match self.shared.cache.get(&key) {
            Lookup::Fresh(entry, age) => {
                let reply = self.serve(&req, &entry.answer, age, entry.lifetime(), limit, None);
                self.observe(
                    &req,
                    hints,
                    started,
                    &reply,
                    "resolve",
                    CacheStatus::Hit,
                    None,
                    None,
                );
                return Step::Reply(reply);
            }
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        Step::Resolve(Box::new(Pending {
            req,
            key,
            hints: hints.clone(),
            started,
            limit,
            stale,
            _inflight: self.shared.drain.track(),
        }))
    }

    /// The asynchronous back half: a coalesced upstream fetch, then the answer
    /// (or a stale one, or SERVFAIL with the reason as an EDE).
    pub async fn finish(&self, p: Pending) -> Vec<u8> {
        let (fetched, _) = self
            .shared
            .inflight
            .run(&p.key, || self.fetch(&p.key))
            .await;
        let fetched = match fetched {
            Some(f) => f,
            // The query we were waiting on was cancelled: fetch ourselves.
            None => self.fetch(&p.key).await,
        };
        match (fetched, &p.stale) {
            (Ok((entry, server)), _) => {
                let age = entry.age(self.shared.cache.clock().now());
                let reply = self.serve(&p.req, &entry.answer, age, entry.lifetime(), p.limit, None);
                self.observe(
                    &p.req,
                    &p.hints,
                    p.started,
                    &reply,
                    "resolve",
                    CacheStatus::Miss,
                    Some(server),
                    None,
                );
                reply
            }
            (Err(_), Some(stale)) => {
                let reply = self.serve(
                    &p.req,
                    &stale.answer,
                    0,
                    STALE_TTL,
                    p.limit,
                    Some(ede::STALE_ANSWER),
                );
                let code = Some(ede::STALE_ANSWER);
                self.observe(
                    &p.req,
                    &p.hints,
                    p.started,
                    &reply,
                    "resolve",
                    CacheStatus::Stale,
                    None,
                    code,
                );
                reply
            }
            (Err(e), None) => {
                let code = e.ede();
                let text = e.to_string();
                let reply =
                    self.error_reply(&p.req, rcode::SERVFAIL as u16, Some((code, &text)), p.limit);
                self.observe(
                    &p.req,
                    &p.hints,
                    p.started,
                    &reply,
                    "resolve",
                    CacheStatus::Miss,
                    None,
                    Some(code),
                );
                reply
            }
        }
    }

    /// One upstream exchange along the key's route and a cache insert, under
    /// the global in-flight bound.
    async fn fetch(&self, key: &CacheKey) -> Fetched {
        let _permit = self
            .shared
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
        let (bytes, server) = match key.route() {
            Route::Default => {
                self.forwarder
                    .query(&query, &self.shared.settings.upstreams)
                    .await?
            }
            Route::Group(_) => return Err(UpstreamError::NoServers),
        };
        let answer = Answer::from_upstream(&bytes, key.name_wire(), key.qtype(), key.qclass())
            .map_err(|_| UpstreamError::Malformed)?;
        Ok((
            self.shared.cache.insert(key.clone(), Arc::new(answer)),
            server,
        ))
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
            RateDecision::Drop => Some(Step::Drop),
            RateDecision::Slip => {
                let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
                w.set_flags(flag::TC);
                Some(Step::Reply(w.finish(self.edns_out(req).as_ref(), limit)))
            }
        }
    }

    /// Answers that never leave this process: zone transfers are refused
    /// (we are not an authority), CHAOS identity queries answered, other
    /// non-IN classes refused, the health name answered, and ANY gets the
    /// minimal RFC 8482 answer, which also removes it as an amplifier.
    fn local_answer(&self, req: &Request, limit: usize) -> Option<Vec<u8>> {
        if matches!(req.qtype, rtype::AXFR | rtype::IXFR) {
            return Some(self.error_reply(req, rcode::REFUSED as u16, None, limit));
        }
        if req.qclass != CLASS_IN {
            return Some(self.chaos_answer(req, limit));
        }
        if self.shared.settings.health_name.as_deref() == Some(req.qname.as_str()) {
            return Some(self.health_answer(req, limit));
        }
        if req.qtype == rtype::ANY {
            let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
            let mut hinfo = txt_rdata(b"RFC8482");
            hinfo.push(0);
            w.record_at_question(Section::Answer, rtype::HINFO, ANY_TTL, &hinfo);
            return Some(w.finish(self.edns_out(req).as_ref(), limit));
        }
        None
    }

    /// CHAOS TXT (as BIND, NSD, Unbound): `id.server.` and `hostname.bind.`
    /// give our identity (the NSID), `version.bind.` and `version.server.`
    /// the configured version text. Anything else, any other class, and
    /// whatever is turned off, is REFUSED.
    fn chaos_answer(&self, req: &Request, limit: usize) -> Vec<u8> {
        let settings = &self.shared.settings;
        let text: Option<&[u8]> = match (req.qclass, req.qname.as_str()) {
            (CLASS_CH, "id.server" | "hostname.bind") => settings.nsid.as_deref(),
            (CLASS_CH, "version.bind" | "version.server") => {
                settings.version_text.as_deref().map(str::as_bytes)
            }
            _ => None,
        };
        let Some(text) = text else {
            return self.error_reply(req, rcode::REFUSED as u16, None, limit);
        };
        let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
        w.set_flags(flag::AA);
        if matches!(req.qtype, rtype::TXT | rtype::ANY) {
            w.record_at_question_in(
                Section::Answer,
                rtype::TXT,
                CLASS_CH,
                LOCAL_TTL,
                &txt_rdata(text),
            );
        }
        w.finish(self.edns_out(req).as_ref(), limit)
    }

    /// The health name: A 127.0.0.1 and TXT "ok" (other types: no data)
    /// while ready; SERVFAIL with EDE 14 (Not Ready) and the reason while
    /// starting, draining or without a working upstream.
    fn health_answer(&self, req: &Request, limit: usize) -> Vec<u8> {
        if let Err(why) = self.shared.ready() {
            return self.error_reply(
                req,
                rcode::SERVFAIL as u16,
                Some((ede::NOT_READY, why)),
                limit,
            );
        }
        let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
        w.set_flags(flag::AA);
        match req.qtype {
            rtype::A => w.address(Section::Answer, [127, 0, 0, 1].into(), LOCAL_TTL),
            rtype::TXT => {
                w.record_at_question(Section::Answer, rtype::TXT, LOCAL_TTL, &txt_rdata(b"ok"))
            }
            _ => {}
        }
        w.finish(self.edns_out(req).as_ref(), limit)
    }

    fn serve(
        &self,
        req: &Request,
        answer: &Answer,
        age: u32,
        cap: u32,
        limit: usize,
        extra_ede: Option<u16>,
    ) -> Vec<u8> {
        let mut edns = self.edns_out(req);
        if let Some(e) = edns.as_mut() {
            if let Some((code, text)) = &answer.ede {
                e.ede.push((*code, text));
            }
            if let Some(code) = extra_ede {
                e.ede.push((code, ""));
            }
        }
        answer.write_reply(req, age, cap, edns.as_ref(), limit)
    }

    fn error_reply(
        &self,
        req: &Request,
        code: u16,
        ede: Option<(u16, &str)>,
        limit: usize,
    ) -> Vec<u8> {
        let mut edns = self.edns_out(req);
        if let (Some(e), Some((info, text))) = (edns.as_mut(), ede) {
            e.ede.push((info, text));
        }
        ResponseWriter::new(req, code).finish(edns.as_ref(), limit)
    }

    /// The one place our OPT record is made: payload, DO echo, and our NSID
    /// when the client asked for it (RFC 5001).
    fn edns_out(&self, req: &Request) -> Option<EdnsOut<'_>> {
        req.edns.as_ref().map(|e| self.answering(e))
    }

    fn answering(&self, info: &EdnsInfo) -> EdnsOut<'_> {
        let settings = &self.shared.settings;
        let mut out = EdnsOut::answering(info, settings.limits.max_udp_payload);
        if info.nsid {
            out.nsid = settings.nsid.as_deref();
        }
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
    fn reject(&self, rejection: Rejection, hints: &ClientHints, started: Instant) -> Step {
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
                    _ => self.answering(&e),
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
            org: "",
            qname: "",
            qtype: 0,
            rcode: code,
            action: "malformed",
            rule: None,
            cache: CacheStatus::None,
            upstream: None,
            ede: None,
            duration: started.elapsed(),
        });
        reply.map_or(Step::Drop, Step::Reply)
    }

    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        req: &Request,
        hints: &ClientHints,
        started: Instant,
        reply: &[u8],
        action: &'static str,
        cache: CacheStatus,
        upstream: Option<SocketAddr>,
        ede: Option<u16>,
    ) {
        let code = reply.get(3).map(|b| (b & 0x0f) as u16);
        self.shared.observer.record(&Outcome {
            transport: hints.transport,
            client_ip: hints.ip,
            org: "",
            qname: &req.qname,
            qtype: req.qtype,
            rcode: code,
            action,
            rule: None,
            cache,
            upstream,
            ede,
            duration: started.elapsed(),
        });
    }
}
