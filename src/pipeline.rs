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

use crate::cache::{Cache, CacheKey, Entry, Lookup};
use crate::config::Settings;
use crate::observe::{CacheStatus, Observer, Outcome};
use crate::protocol::build::{empty_reply, txt_rdata};
use crate::protocol::wire::{ede, rcode, rtype};
use crate::protocol::{parse_query, Answer, EdnsOut, Rejection, Request, ResponseWriter, Section};
use crate::query::ClientHints;
use crate::upstream::{
    Coalescer, Forwarder, ForwarderStats, Health, Recursive, Route, UpstreamError, UpstreamQuery,
};

/// Class IN.
const CLASS_IN: u16 = 1;
/// TTL of the RFC 8482 answer to ANY.
const ANY_TTL: u32 = 3600;
/// TTL of answers served stale (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

/// Result of a fetch shared between coalesced queries (with the server that
/// answered; none when the answer was iterated from the root).
type Fetched = Result<(Arc<Entry>, Option<SocketAddr>), UpstreamError>;

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
    pub observer: Observer,
}

impl Shared {
    /// Builds the shared state from settings.
    pub fn new(settings: Settings) -> Result<Self, String> {
        let recursor = match &settings.recursion {
            Some(r) => Some(Recursive::new(r, &settings.limits)?),
            None => None,
        };
        Ok(Self {
            cache: Cache::new(settings.cache.clone(), settings.clock.clone()),
            inflight: Coalescer::default(),
            upstream_permits: Semaphore::new(settings.limits.max_upstream_inflight),
            health: Arc::new(Health::default()),
            forwarder_stats: Arc::new(ForwarderStats::default()),
            recursor,
            observer: Observer::default(),
            settings,
        })
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
        let req = match parse_query(bytes) {
            Ok(req) => req,
            Err(rejection) => return self.reject(rejection, hints, started),
        };
        let limit = self.response_limit(&req, hints);
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
                    server,
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
        let (bytes, server) = match (key.route(), &self.shared.recursor) {
            (Route::Default, Some(recursor)) => (recursor.resolve(&query).await?, None),
            (Route::Default, None) => {
                let (bytes, server) = self
                    .forwarder
                    .query(&query, &self.shared.settings.upstreams)
                    .await?;
                (bytes, Some(server))
            }
            (Route::Group(_), _) => return Err(UpstreamError::NoServers),
        };
        let answer = Answer::from_upstream(&bytes, key.name_wire(), key.qtype(), key.qclass())
            .map_err(|_| UpstreamError::Malformed)?;
        Ok((
            self.shared.cache.insert(key.clone(), Arc::new(answer)),
            server,
        ))
    }

    /// Answers that never leave this process: zone transfers are refused
    /// (we are not an authority), non-IN classes refused, and ANY gets the
    /// minimal RFC 8482 answer, which also removes it as an amplifier.
    fn local_answer(&self, req: &Request, limit: usize) -> Option<Vec<u8>> {
        if matches!(req.qtype, rtype::AXFR | rtype::IXFR) || req.qclass != CLASS_IN {
            return Some(self.error_reply(req, rcode::REFUSED as u16, None, limit));
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

    fn edns_out(&self, req: &Request) -> Option<EdnsOut<'static>> {
        req.edns
            .as_ref()
            .map(|e| EdnsOut::answering(e, self.shared.settings.limits.max_udp_payload))
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
                let edns = edns
                    .map(|e| EdnsOut::answering(&e, self.shared.settings.limits.max_udp_payload));
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
