//! Forwarding to upstream nameservers.
//!
//! Why not hickory-resolver's `Resolver`: it drops the client's DO/CD bits,
//! rewrites CNAME chains and turns negative answers into errors, at ~19 µs of
//! CPU per miss; this forwarder passes the upstream's bytes through (see
//! benches/README.md for its cost per miss).
//!
//! Defences against forged answers (RFC 5452, draft-vixie-dnsext-dns0x20):
//! every UDP query goes out on a socket leased to it alone, drawn at random
//! from the worker's pool of connected sockets ([`super::sockets`]), with a
//! random ID and the letters of its name in random case (0x20). The kernel
//! delivers to a connected socket only what comes from the server's address
//! and port; of that, an answer is accepted only with our ID and our exact
//! question, case included. Anything else is dropped and counted. A server that answers in
//! another case than it was asked (it does not preserve case) is asked in
//! lower case for [`super::health::CASE_FALLBACK_HOLD`].
//!
//! Encrypted upstreams (DoT, DoH, DoQ) go through [`super::transport`]; the
//! failover, health and metrics around each attempt are the same.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::health::Health;
use super::sockets::{self, network_error, InUse, PoolLimits, Port, UdpPool, Unanswered};
use super::spec::Upstream;
use super::transport::{StreamLimits, Transports};
use super::UpstreamError;
use crate::config::limits::UPSTREAM_POOL_SWEEP_EVERY;
use crate::protocol::build::push_padding;
use crate::protocol::wire::{self, flag, Header, HEADER_LEN};

/// How the forwarder talks to upstreams.
#[derive(Debug, Clone)]
pub struct ForwarderSettings {
    /// How long to wait for one upstream's answer before trying the next.
    pub attempt_timeout: Duration,
    /// Upper bound on the whole exchange, all retries included.
    pub total_timeout: Duration,
    /// The UDP payload size we advertise upstream.
    pub udp_payload: u16,
    /// 0x20: send query names over UDP in random case and accept only
    /// answers in the same case, for servers that preserve case.
    pub case_randomization: bool,
    /// Roots trusted for encrypted upstreams on top of webpki-roots
    /// (`--ca-file`).
    pub ca_roots: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
}

impl Default for ForwarderSettings {
    fn default() -> Self {
        Self {
            // Unbound starts at 376 ms and backs off; a fixed 800 ms keeps a
            // dead upstream's cost bounded at total_timeout.
            attempt_timeout: Duration::from_millis(800),
            total_timeout: Duration::from_millis(2_500),
            udp_payload: 1232,
            case_randomization: true,
            ca_roots: Vec::new(),
        }
    }
}

/// The question we ask upstream (the cache key's parts).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamQuery<'a> {
    /// Lower-case wire name.
    pub name_wire: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub dnssec_ok: bool,
    pub cd: bool,
}

/// Told about every exchange with one upstream server (one attempt of a
/// query): observe::metrics implements it. Called only on cache misses.
pub trait ExchangeSink: Send + Sync {
    /// `server` answered after `elapsed`, or failed with `error`.
    fn exchanged(&self, server: &Upstream, elapsed: Duration, error: Option<&UpstreamError>);

    /// Whether [`ExchangeSink::message`] wants the messages (dnstap with
    /// `--dnstap-upstream`); the forwarder copies nothing otherwise.
    fn wants_messages(&self) -> bool {
        false
    }

    /// The query sent to `server` at `sent_at`, verbatim, and the answer
    /// received, verbatim (None: none came).
    fn message(
        &self,
        _server: SocketAddr,
        _tcp: bool,
        _sent_at: std::time::SystemTime,
        _query: &[u8],
        _response: Option<&[u8]>,
    ) {
    }
}

/// Counters the forwarder keeps (read by observe::metrics), shared by all
/// workers.
#[derive(Default)]
pub struct ForwarderStats {
    /// Datagrams dropped because they did not match an outstanding query.
    pub rejected_answers: AtomicU64,
    /// Answers fetched again over TCP after TC=1.
    pub tcp_retries: AtomicU64,
    /// Answers that declined the question (SERVFAIL, REFUSED, NOTIMP,
    /// FORMERR), after which the next server was asked.
    pub declined: AtomicU64,
    /// Upstream sockets (UDP and TCP) in use by queries now, all workers
    /// together (idle pooled sockets are not counted).
    pub open_sockets: AtomicUsize,
    /// Where per-exchange results go, if anywhere.
    pub sink: Option<Arc<dyn ExchangeSink>>,
}

impl ForwarderStats {
    /// Counters that also report each exchange to `sink`.
    pub fn with_sink(sink: Option<Arc<dyn ExchangeSink>>) -> Self {
        Self {
            sink,
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for ForwarderStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwarderStats")
            .field("rejected_answers", &self.rejected_answers)
            .field("tcp_retries", &self.tcp_retries)
            .field("declined", &self.declined)
            .field("open_sockets", &self.open_sockets)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// One worker's forwarder.
pub struct Forwarder {
    settings: ForwarderSettings,
    /// Bound on `stats.open_sockets` ([`crate::config::Limits::max_upstream_sockets`]).
    max_sockets: usize,
    /// The worker's UDP sockets, for its recursive resolutions too.
    udp: UdpPool,
    health: Arc<Health>,
    stats: Arc<ForwarderStats>,
    /// Connections to encrypted upstreams, opened on first use.
    transports: Transports,
}

impl Forwarder {
    /// A forwarder with a pool of UDP sockets within `sockets`, whose
    /// sockets in use are counted in `stats` together with every other
    /// forwarder sharing it.
    pub fn new(
        settings: ForwarderSettings,
        sockets: PoolLimits,
        health: Arc<Health>,
        stats: Arc<ForwarderStats>,
    ) -> Self {
        let transports = Transports::new(
            settings.ca_roots.clone(),
            StreamLimits::default(),
            stats.clone(),
        );
        Self {
            settings,
            max_sockets: sockets.max_in_use,
            udp: UdpPool::new(sockets, stats.clone()),
            health,
            stats,
            transports,
        }
    }

    /// The worker's pool of upstream UDP sockets.
    pub fn udp_pool(&self) -> &UdpPool {
        &self.udp
    }

    /// Releases the pool's idle ports past their age ([`UdpPool::sweep`])
    /// every [`UPSTREAM_POOL_SWEEP_EVERY`] until the forwarder is gone; the
    /// worker runs it as a task of its own, so no query pays for it.
    pub async fn keep_swept(forwarder: Weak<Forwarder>) {
        let mut tick = tokio::time::interval(UPSTREAM_POOL_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is at once: nothing has aged yet
        loop {
            tick.tick().await;
            let Some(forwarder) = forwarder.upgrade() else {
                return;
            };
            forwarder.udp.sweep().await;
        }
    }

    /// Bounds for connections to encrypted upstreams (default: [`StreamLimits::default`]).
    pub fn with_stream_limits(mut self, limits: StreamLimits) -> Self {
        self.transports.set_limits(limits);
        self
    }

    /// Asks `servers` in turn (healthiest first) until one answers; returns the
    /// raw answer and who gave it.
    ///
    /// An answer that declines the question (SERVFAIL, REFUSED, NOTIMP or
    /// FORMERR: [`Rejection`]) sends it to the next server, as Unbound does
    /// with its forwarders: one upstream that refuses us (its access list) or
    /// fails a name must not decide the answer while another can give it. A
    /// server that declined is not asked again for this question. When every
    /// server declined, a SERVFAIL is passed on as it came (its Extended DNS
    /// Error says why, and it is cached for the short failure TTL); a refusal
    /// is not: the client would read it as Picket refusing it, so it becomes
    /// [`UpstreamError::Rejected`] (SERVFAIL, or a stale answer if one is held).
    pub async fn query(
        &self,
        q: &UpstreamQuery<'_>,
        servers: &[Upstream],
    ) -> Result<(Vec<u8>, Upstream), UpstreamError> {
        if servers.is_empty() {
            return Err(UpstreamError::NoServers);
        }
        // The clock is read once per attempt: at its start (the last one's end).
        let mut now = Instant::now();
        let deadline = now + self.settings.total_timeout;
        let mut last_error = UpstreamError::Timeout;
        let mut servfail: Option<(Vec<u8>, Upstream)> = None;
        let ordered = self.health.order(servers);
        let mut declined: SmallVec<[bool; 4]> = smallvec::smallvec![false; ordered.len()];
        let attempts = servers.len().max(2) * 2;
        for (index, server) in ordered.iter().enumerate().cycle().take(attempts) {
            if declined[index] {
                if declined.iter().all(|&d| d) {
                    break;
                }
                continue;
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                break;
            }
            let budget = left.min(self.settings.attempt_timeout);
            let started = now;
            let result = self.exchange(q, server, started, budget).await;
            if matches!(result, Err(UpstreamError::Overloaded)) {
                // Our own bound, not the server's fault: nothing was sent.
                return Err(UpstreamError::Overloaded);
            }
            if let Some(sink) = &self.stats.sink {
                sink.exchanged(server, started.elapsed(), result.as_ref().err());
            }
            match result.map(|bytes| (Rejection::of(&bytes), bytes)) {
                Ok((None, bytes)) => {
                    self.health.success(server);
                    return Ok((bytes, server.clone()));
                }
                Ok((Some(rejection), bytes)) => {
                    declined[index] = true;
                    self.stats.declined.fetch_add(1, Ordering::Relaxed);
                    if rejection.is_server_fault() {
                        self.health.failure(server);
                    }
                    last_error = UpstreamError::Rejected {
                        server: server.to_string(),
                        rcode: rejection.name(),
                    };
                    if rejection == Rejection::ServFail && servfail.is_none() {
                        servfail = Some((bytes, server.clone()));
                    }
                }
                Err(e) => {
                    self.health.failure(server);
                    last_error = e;
                }
            }
            now = Instant::now();
        }
        servfail.ok_or(last_error)
    }

    async fn exchange(
        &self,
        q: &UpstreamQuery<'_>,
        upstream: &Upstream,
        started: Instant,
        budget: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        // The encrypted and the TCP exchanges are boxed: their futures are
        // kilobytes (TLS, HTTP/2, QUIC), and unboxed they would make every
        // UDP exchange's future as large, copied whole at each move.
        let Some(server) = upstream.plain() else {
            let exchange = self
                .transports
                .exchange(q, upstream, self.settings.udp_payload);
            return Box::pin(tokio::time::timeout(budget, exchange))
                .await
                .map_err(|_| UpstreamError::Timeout)?;
        };
        let bytes = self.udp_exchange(q, server, started + budget).await?;
        let truncated = wire::u16_at(&bytes, 2).is_ok_and(|f| f & flag::TC != 0);
        if !truncated {
            return Ok(bytes);
        }
        self.stats.tcp_retries.fetch_add(1, Ordering::Relaxed);
        let left = budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(200));
        let _in_use = InUse::within(&self.stats, self.max_sockets)?;
        let exchange = tcp_exchange(q, server, self.settings.udp_payload, &self.stats);
        Box::pin(tokio::time::timeout(left, exchange))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    /// One query over UDP on a pooled socket, answered by `deadline`.
    /// The answer comes back with the question in `q`'s (lower) case, as if
    /// it had been asked that way.
    async fn udp_exchange(
        &self,
        q: &UpstreamQuery<'_>,
        server: SocketAddr,
        deadline: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
        let lease = self.udp.lease(server, Port::Reuse)?;
        let case = if self.settings.case_randomization && self.health.preserves_case(server) {
            Case::Random
        } else {
            Case::AsIs
        };
        let sent = SentQuery::new(q, case, self.settings.udp_payload);
        let sent_at = tap_time(&self.stats);
        let mut other_case_seen = false;
        let take = |datagram: &[u8]| {
            let check = sent.check(datagram);
            if check == Check::Ours {
                return Some(datagram.to_vec());
            }
            other_case_seen |= check == Check::OtherCase;
            self.stats.rejected_answers.fetch_add(1, Ordering::Relaxed);
            None
        };
        let answer = sockets::ask(&lease, &sent.message, deadline.into(), take).await;
        let tap =
            |response: Option<&[u8]>| tap(&self.stats, server, false, sent_at, &sent, response);
        match answer {
            Ok(mut bytes) => {
                lease.answered();
                tap(Some(&bytes));
                bytes[HEADER_LEN..HEADER_LEN + q.name_wire.len()].copy_from_slice(q.name_wire);
                Ok(bytes)
            }
            Err(Unanswered::Network(e)) => {
                tap(None);
                Err(network_error(e))
            }
            Err(Unanswered::Timeout) => {
                tap(None);
                // Only an answer in another case came: no forger races a
                // whole attempt, the server does not preserve case.
                if other_case_seen {
                    self.health.case_not_preserved(server);
                }
                Err(UpstreamError::Timeout)
            }
        }
    }
}

/// How the query name's letters are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// 0x20: each letter upper or lower case at random; the answer must
    /// repeat it exactly.
    Random,
    /// As the cache key has it (lower case); the answer's case is not checked.
    AsIs,
}

/// What an incoming datagram is to the query we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Ours,
    /// Our ID and question but another case: a forger who did not know our
    /// case, or a server that does not preserve it.
    OtherCase,
    NotOurs,
}

/// A query as sent, to check answers against.
pub(crate) struct SentQuery {
    pub(crate) id: u16,
    pub(crate) message: Vec<u8>,
    name_len: usize,
    case: Case,
}

impl SentQuery {
    /// A query with a fresh random ID, and `case` applied to its name.
    fn new(q: &UpstreamQuery<'_>, case: Case, payload: u16) -> Self {
        Self::with_id(rand::random(), q, case, payload)
    }

    /// A query with ID `id` (0 for DoH and DoQ, RFC 8484 §4.1, RFC 9250 §4.2.1).
    pub(crate) fn with_id(id: u16, q: &UpstreamQuery<'_>, case: Case, payload: u16) -> Self {
        Self::build(id, q, true, case, Some(payload))
    }

    /// A query over an encrypted transport (DoT, DoH, DoQ) with ID `id`, its
    /// OPT padded so the message is a multiple of [`QUERY_PADDING_BLOCK`]
    /// bytes (RFC 8467 §4.1): its length no longer tells an observer of the
    /// encrypted stream which name was asked.
    pub(crate) fn encrypted(id: u16, q: &UpstreamQuery<'_>, payload: u16) -> Self {
        let mut sent = Self::with_id(id, q, Case::AsIs, payload);
        pad_query(&mut sent.message);
        sent
    }

    /// The iterator's query to an authoritative server: a fresh random ID,
    /// RD=0, EDNS with `payload` unless None (a server that refused it).
    pub(crate) fn iterative(q: &UpstreamQuery<'_>, case: Case, payload: Option<u16>) -> Self {
        Self::build(rand::random(), q, false, case, payload)
    }

    fn build(id: u16, q: &UpstreamQuery<'_>, rd: bool, case: Case, payload: Option<u16>) -> Self {
        let mut message = build_query(id, q, rd, payload);
        let name_len = q.name_wire.len();
        if case == Case::Random {
            randomize_case(&mut message[HEADER_LEN..HEADER_LEN + name_len]);
        }
        SentQuery {
            id,
            message,
            name_len,
            case,
        }
    }

    pub(crate) fn check(&self, answer: &[u8]) -> Check {
        let Ok(header) = Header::read(answer) else {
            return Check::NotOurs;
        };
        if header.id != self.id || !header.is_response() || header.qdcount != 1 {
            return Check::NotOurs;
        }
        let question = HEADER_LEN..HEADER_LEN + self.name_len + 4;
        let (Some(theirs), ours) = (answer.get(question.clone()), &self.message[question]) else {
            return Check::NotOurs;
        };
        let (their_name, their_type_class) = theirs.split_at(self.name_len);
        let (our_name, our_type_class) = ours.split_at(self.name_len);
        if their_type_class != our_type_class || !their_name.eq_ignore_ascii_case(our_name) {
            Check::NotOurs
        } else if self.case == Case::Random && their_name != our_name {
            Check::OtherCase
        } else {
            Check::Ours
        }
    }
}

/// An upstream answer that declines the question: the next server is asked
/// ([`Forwarder::query`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    /// The server could not answer this name (its own failure, or DNSSEC).
    ServFail,
    /// The server will not answer us: its access list, or it only serves
    /// its own zones.
    Refused,
    /// The server does not do what we asked (NOTIMP) or cannot read our
    /// query (FORMERR).
    Unable(u8),
}

impl Rejection {
    /// Whether the answer in `bytes` declines the question (its RCODE).
    fn of(bytes: &[u8]) -> Option<Self> {
        let code = (wire::u16_at(bytes, 2).ok()? & 0x000f) as u8;
        match code {
            wire::rcode::SERVFAIL => Some(Self::ServFail),
            wire::rcode::REFUSED => Some(Self::Refused),
            wire::rcode::NOTIMP | wire::rcode::FORMERR => Some(Self::Unable(code)),
            _ => None,
        }
    }

    /// Whether it says something of the server rather than of the name, so
    /// that the server is tried last for a while ([`Health`]). A SERVFAIL does
    /// not: any client can pick a name that fails, and a good upstream must not
    /// be ranked down for it.
    fn is_server_fault(self) -> bool {
        self != Self::ServFail
    }

    fn name(self) -> &'static str {
        match self {
            Self::ServFail => "SERVFAIL",
            Self::Refused => "REFUSED",
            Self::Unable(code) => wire::rcode::name(u16::from(code)),
        }
    }
}

/// 0x20 (draft-vixie-dnsext-dns0x20): sets each letter of a name, in wire
/// format or as text, to upper or lower case at random. Length bytes
/// (< 64) are never letters, so a wire name's structure is untouched.
pub(crate) fn randomize_case(name: &mut [u8]) {
    let mut bits: u64 = 0;
    let mut bits_left = 0;
    for letter in name.iter_mut().filter(|b| b.is_ascii_alphabetic()) {
        if bits_left == 0 {
            bits = rand::random();
            bits_left = 64;
        }
        if bits & 1 == 1 {
            letter.make_ascii_uppercase();
        } else {
            letter.make_ascii_lowercase();
        }
        bits >>= 1;
        bits_left -= 1;
    }
}

/// Our query: RD when forwarding to recursive resolvers (`rd`), CD and DO as
/// the client asked, EDNS with our payload size (none when `payload` is None).
fn build_query(id: u16, q: &UpstreamQuery<'_>, rd: bool, payload: Option<u16>) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + q.name_wire.len() + 15);
    m.extend_from_slice(&id.to_be_bytes());
    let flags = (if rd { flag::RD } else { 0 }) | (if q.cd { flag::CD } else { 0 });
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(payload.is_some())]);
    m.extend_from_slice(q.name_wire);
    m.extend_from_slice(&q.qtype.to_be_bytes());
    m.extend_from_slice(&q.qclass.to_be_bytes());
    let Some(payload) = payload else {
        return m;
    };
    m.push(0);
    m.extend_from_slice(&wire::rtype::OPT.to_be_bytes());
    m.extend_from_slice(&payload.to_be_bytes());
    let ttl: u32 = if q.dnssec_ok { 0x8000 } else { 0 };
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m
}

/// Queries to encrypted upstreams are padded to a multiple of this many bytes
/// (RFC 8467 §4.1, "Block-Length Padding"; Unbound's `pad-queries-block-size`).
pub(crate) const QUERY_PADDING_BLOCK: usize = 128;

/// Appends a Padding option (RFC 7830) to the OPT record that ends `message`
/// (as [`build_query`] writes it, no options yet) up to the next block.
fn pad_query(message: &mut Vec<u8>) {
    let rdlen_at = message.len() - 2;
    let rdlen = push_padding(message, QUERY_PADDING_BLOCK, usize::MAX) as u16;
    message[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// One query over a fresh TCP connection (after TC=1 over UDP). No 0x20: an
/// off-path forger cannot inject into the stream without its sequence numbers.
async fn tcp_exchange(
    q: &UpstreamQuery<'_>,
    server: SocketAddr,
    payload: u16,
    stats: &ForwarderStats,
) -> Result<Vec<u8>, UpstreamError> {
    let mut stream = TcpStream::connect(server).await.map_err(network_error)?;
    let sent = SentQuery::new(q, Case::AsIs, payload);
    let mut framed = Vec::with_capacity(sent.message.len() + 2);
    framed.extend_from_slice(&(sent.message.len() as u16).to_be_bytes());
    framed.extend_from_slice(&sent.message);
    let sent_at = tap_time(stats);
    stream.write_all(&framed).await.map_err(network_error)?;
    let received = read_tcp_answer(&mut stream).await;
    tap(
        stats,
        server,
        true,
        sent_at,
        &sent,
        received.as_deref().ok(),
    );
    let bytes = received?;
    if sent.check(&bytes) != Check::Ours {
        return Err(UpstreamError::Malformed);
    }
    Ok(bytes)
}

async fn read_tcp_answer(stream: &mut TcpStream) -> Result<Vec<u8>, UpstreamError> {
    let len = stream.read_u16().await.map_err(network_error)? as usize;
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await.map_err(network_error)?;
    Ok(bytes)
}

/// When a query went out, for the sink that wants messages (dnstap); the
/// clock is not read for nobody.
fn tap_time(stats: &ForwarderStats) -> SystemTime {
    match &stats.sink {
        Some(sink) if sink.wants_messages() => SystemTime::now(),
        _ => SystemTime::UNIX_EPOCH,
    }
}

/// Hands one exchange's messages, verbatim, to the sink that wants them
/// (dnstap); costs a branch otherwise.
fn tap(
    stats: &ForwarderStats,
    server: SocketAddr,
    tcp: bool,
    sent_at: SystemTime,
    sent: &SentQuery,
    response: Option<&[u8]>,
) {
    if let Some(sink) = stats.sink.as_ref().filter(|s| s.wants_messages()) {
        sink.message(server, tcp, sent_at, &sent.message, response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &[u8] = b"\x03www\x07example\x04test\x00";

    fn query(qtype: u16) -> UpstreamQuery<'static> {
        UpstreamQuery {
            name_wire: NAME,
            qtype,
            qclass: 1,
            dnssec_ok: false,
            cd: false,
        }
    }

    /// The answer a server would send to `sent`: its header and question
    /// with QR set, and `name` in place of the question name.
    fn answer_to(sent: &SentQuery, name: &[u8]) -> Vec<u8> {
        let mut answer = sent.message[..HEADER_LEN + NAME.len() + 4].to_vec();
        answer[2] |= 0x80;
        answer[10..12].copy_from_slice(&[0, 0]);
        answer[HEADER_LEN..HEADER_LEN + NAME.len()].copy_from_slice(name);
        answer
    }

    #[test]
    fn random_case_changes_only_the_case_of_letters() {
        let mut name = NAME.to_vec();
        randomize_case(&mut name);
        assert!(name.eq_ignore_ascii_case(NAME));
        assert_eq!(name.len(), NAME.len());
        assert_eq!((name[0], name[4], name[12], name[17]), (3, 7, 4, 0));
    }

    #[test]
    fn with_0x20_only_the_exact_case_is_ours() {
        let sent = SentQuery::new(&query(1), Case::Random, 1232);
        let ours = sent.message[HEADER_LEN..HEADER_LEN + NAME.len()].to_vec();
        assert_eq!(sent.check(&answer_to(&sent, &ours)), Check::Ours);
        let swapped: Vec<u8> = ours
            .iter()
            .map(|b| match b {
                b'a'..=b'z' => b.to_ascii_uppercase(),
                _ => b.to_ascii_lowercase(),
            })
            .collect();
        assert_eq!(sent.check(&answer_to(&sent, &swapped)), Check::OtherCase);
        let mut other_id = answer_to(&sent, &ours);
        other_id[0] ^= 0xff;
        assert_eq!(sent.check(&other_id), Check::NotOurs);
        assert_eq!(sent.check(&answer_to(&sent, NAME)[..20]), Check::NotOurs);
    }

    #[test]
    fn encrypted_queries_are_padded_to_the_block_and_still_read_as_the_query() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::RecordType;
        for name in [
            &b"\x01a\x00"[..],
            NAME,
            &[&b"\x3f"[..], &[b'x'; 63], b"\x00"].concat(),
        ] {
            let q = UpstreamQuery {
                name_wire: name,
                ..query(1)
            };
            let sent = SentQuery::encrypted(7, &q, 1232);
            assert_eq!(sent.message.len() % QUERY_PADDING_BLOCK, 0);
            let read = Message::from_vec(&sent.message).unwrap();
            assert_eq!(read.metadata.id, 7);
            assert_eq!(read.queries[0].query_type(), RecordType::A);
            assert_eq!(read.edns.unwrap().options().as_ref().len(), 1);
        }
        let sent = SentQuery::encrypted(7, &query(1), 1232);
        assert_eq!(sent.check(&answer_to(&sent, NAME)), Check::Ours);
    }

    #[test]
    fn without_0x20_any_case_is_ours_but_not_another_type() {
        // qtype 0x0041 ('A') against 0x0061 ('a'): bytes that differ only in
        // ASCII case, which a case-blind compare of the question would pass.
        let sent = SentQuery::new(&query(0x41), Case::AsIs, 1232);
        assert_eq!(
            sent.check(&answer_to(&sent, b"\x03WWW\x07example\x04TEST\x00")),
            Check::Ours
        );
        let mut other_type = answer_to(&sent, NAME);
        other_type[HEADER_LEN + NAME.len() + 1] = 0x61;
        assert_eq!(sent.check(&other_type), Check::NotOurs);
    }

    /// The iterator's query, read back by hickory: RD clear, the question,
    /// EDNS with DO as asked, or no OPT record at all for a server that
    /// refused EDNS.
    #[test]
    fn an_iterative_query_asks_without_recursion_and_with_or_without_edns() {
        use hickory_proto::op::Message;
        let signed = UpstreamQuery {
            dnssec_ok: true,
            ..query(1)
        };
        let sent = SentQuery::iterative(&signed, Case::Random, Some(1232));
        let read = Message::from_vec(&sent.message).expect("a well-formed query");
        assert_eq!(read.metadata.id, sent.id);
        assert!(!read.metadata.recursion_desired && !read.metadata.checking_disabled);
        assert_eq!(read.queries.len(), 1);
        assert!(read.queries[0]
            .name()
            .to_ascii()
            .eq_ignore_ascii_case("www.example.test."));
        let edns = read.edns.as_ref().expect("an OPT record");
        assert_eq!((edns.max_payload(), edns.flags().dnssec_ok), (1232, true));
        let bare = SentQuery::iterative(&query(1), Case::AsIs, None);
        let read = Message::from_vec(&bare.message).expect("a well-formed query");
        assert!(read.edns.is_none() && read.additionals.is_empty());
        assert_eq!(read.queries[0].name().to_ascii(), "www.example.test.");
    }
}
