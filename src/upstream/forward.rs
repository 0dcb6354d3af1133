//! Forwarding to upstream nameservers through our own socket pool.
//!
//! Why not hickory-resolver's `Resolver`: it drops the client's DO/CD bits,
//! rewrites CNAME chains and turns negative answers into errors, at ~19 µs of
//! CPU per miss; this pool costs ~3.5 µs and passes the upstream's bytes
//! through (DESIGN.md §8). Defences against forged answers (RFC 5452): every
//! query gets a random ID on a socket with a kernel-chosen random source port,
//! and an answer is accepted only from the server it was sent to, with our ID
//! and our exact question; anything else is dropped and counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{oneshot, OnceCell};

use super::UpstreamError;
use crate::protocol::wire::{self, flag, Header, HEADER_LEN};

/// How the forwarder talks to upstreams.
#[derive(Debug, Clone)]
pub struct ForwarderSettings {
    /// How long to wait for one upstream's answer before trying the next.
    pub attempt_timeout: Duration,
    /// Upper bound on the whole exchange, all retries included.
    pub total_timeout: Duration,
    /// UDP sockets per worker and address family (each a random source port).
    pub sockets: usize,
    /// The UDP payload size we advertise upstream.
    pub udp_payload: u16,
}

impl Default for ForwarderSettings {
    fn default() -> Self {
        Self {
            // Unbound starts at 376 ms and backs off; a fixed 800 ms keeps a
            // dead upstream's cost bounded at total_timeout.
            attempt_timeout: Duration::from_millis(800),
            total_timeout: Duration::from_millis(2_500),
            sockets: 8,
            udp_payload: 1232,
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
    fn exchanged(&self, server: SocketAddr, elapsed: Duration, error: Option<&UpstreamError>);
}

/// Counters the forwarder keeps (read by observe::metrics).
#[derive(Default)]
pub struct ForwarderStats {
    /// Datagrams dropped because they did not match an outstanding query.
    pub rejected_answers: AtomicU64,
    /// Answers fetched again over TCP after TC=1.
    pub tcp_retries: AtomicU64,
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
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// One worker's forwarder.
pub struct Forwarder {
    settings: ForwarderSettings,
    v4: OnceCell<Vec<Arc<PoolSocket>>>,
    v6: OnceCell<Vec<Arc<PoolSocket>>>,
    health: Arc<Health>,
    stats: Arc<ForwarderStats>,
}

impl Forwarder {
    /// A forwarder; sockets are opened on first use, inside the caller's runtime.
    pub fn new(
        settings: ForwarderSettings,
        health: Arc<Health>,
        stats: Arc<ForwarderStats>,
    ) -> Self {
        Self {
            settings,
            v4: OnceCell::new(),
            v6: OnceCell::new(),
            health,
            stats,
        }
    }

    /// Asks `servers` in turn (healthiest first) until one answers; returns the
    /// raw answer and who gave it.
    pub async fn query(
        &self,
        q: &UpstreamQuery<'_>,
        servers: &[SocketAddr],
    ) -> Result<(Vec<u8>, SocketAddr), UpstreamError> {
        if servers.is_empty() {
            return Err(UpstreamError::NoServers);
        }
        let deadline = Instant::now() + self.settings.total_timeout;
        let mut last_error = UpstreamError::Timeout;
        for server in self
            .health
            .order(servers)
            .into_iter()
            .cycle()
            .take(servers.len().max(2) * 2)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let budget = left.min(self.settings.attempt_timeout);
            let started = Instant::now();
            let result = self.exchange(q, server, budget).await;
            if let Some(sink) = &self.stats.sink {
                sink.exchanged(server, started.elapsed(), result.as_ref().err());
            }
            match result {
                Ok(bytes) => {
                    self.health.success(server);
                    return Ok((bytes, server));
                }
                Err(e) => {
                    self.health.failure(server);
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn exchange(
        &self,
        q: &UpstreamQuery<'_>,
        server: SocketAddr,
        budget: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        let started = Instant::now();
        let bytes = tokio::time::timeout(budget, self.udp_exchange(q, server))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let truncated = wire::u16_at(&bytes, 2).is_ok_and(|f| f & flag::TC != 0);
        if !truncated {
            return Ok(bytes);
        }
        self.stats.tcp_retries.fetch_add(1, Ordering::Relaxed);
        let left = budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(200));
        tokio::time::timeout(left, tcp_exchange(q, server, self.settings.udp_payload))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    async fn udp_exchange(
        &self,
        q: &UpstreamQuery<'_>,
        server: SocketAddr,
    ) -> Result<Vec<u8>, UpstreamError> {
        let pool = self.pool(server.ip()).await?;
        let socket = &pool[rand::random_range(0..pool.len())];
        let (id, rx) = socket.register(q, server);
        let message = build_query(id, q, self.settings.udp_payload);
        let registration = Registration { socket, id };
        if let Err(e) = socket.sock.send_to(&message, server).await {
            return Err(UpstreamError::Network(e.kind().to_string()));
        }
        let answer = rx
            .await
            .map_err(|_| UpstreamError::Network("socket closed".into()));
        drop(registration);
        answer
    }

    async fn pool(&self, ip: IpAddr) -> Result<&Vec<Arc<PoolSocket>>, UpstreamError> {
        let (cell, bind): (_, IpAddr) = match ip {
            IpAddr::V4(_) => (&self.v4, Ipv4Addr::UNSPECIFIED.into()),
            IpAddr::V6(_) => (&self.v6, Ipv6Addr::UNSPECIFIED.into()),
        };
        let stats = self.stats.clone();
        cell.get_or_try_init(|| open_pool(bind, self.settings.sockets, stats))
            .await
            .map_err(|e| UpstreamError::Network(format!("cannot open an upstream socket: {e}")))
    }
}

async fn open_pool(
    bind: IpAddr,
    count: usize,
    stats: Arc<ForwarderStats>,
) -> std::io::Result<Vec<Arc<PoolSocket>>> {
    let mut pool = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        // Port 0: the kernel picks a random ephemeral port for each socket.
        let sock = UdpSocket::bind(SocketAddr::new(bind, 0)).await?;
        let socket = Arc::new(PoolSocket {
            sock,
            pending: Mutex::new(HashMap::new()),
        });
        tokio::spawn(socket.clone().receive_loop(stats.clone()));
        pool.push(socket);
    }
    Ok(pool)
}

/// An outstanding query on a pool socket.
struct Pending {
    server: SocketAddr,
    question: Box<[u8]>,
    tx: oneshot::Sender<Vec<u8>>,
}

/// A UDP socket shared by many outstanding queries, told apart by ID.
struct PoolSocket {
    sock: UdpSocket,
    pending: Mutex<HashMap<u16, Pending>>,
}

/// Removes a query's registration when the exchange ends for any reason
/// (answer, timeout, cancellation), so IDs are reused only once free.
struct Registration<'a> {
    socket: &'a PoolSocket,
    id: u16,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.socket.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

impl PoolSocket {
    fn register(
        &self,
        q: &UpstreamQuery<'_>,
        server: SocketAddr,
    ) -> (u16, oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        let mut question = Vec::with_capacity(q.name_wire.len() + 4);
        question.extend_from_slice(q.name_wire);
        question.extend_from_slice(&q.qtype.to_be_bytes());
        question.extend_from_slice(&q.qclass.to_be_bytes());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let id = loop {
            let id: u16 = rand::random();
            if !pending.contains_key(&id) {
                break id;
            }
        };
        pending.insert(
            id,
            Pending {
                server,
                question: question.into_boxed_slice(),
                tx,
            },
        );
        (id, rx)
    }

    async fn receive_loop(self: Arc<Self>, stats: Arc<ForwarderStats>) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((len, from)) = self.sock.recv_from(&mut buf).await else {
                continue;
            };
            if !self.deliver(&buf[..len], from) {
                stats.rejected_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands an answer to its waiting query if it is from the right server,
    /// with an outstanding ID and our question; returns false otherwise.
    fn deliver(&self, bytes: &[u8], from: SocketAddr) -> bool {
        let Ok(header) = Header::read(bytes) else {
            return false;
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = pending.get(&header.id) else {
            return false;
        };
        let question_ok = header.qdcount == 1
            && bytes
                .get(HEADER_LEN..HEADER_LEN + p.question.len())
                .is_some_and(|q| q.eq_ignore_ascii_case(&p.question));
        if p.server != from || !header.is_response() || !question_ok {
            return false;
        }
        if let Some(p) = pending.remove(&header.id) {
            let _ = p.tx.send(bytes.to_vec());
        }
        true
    }
}

/// Our query: RD (we forward to recursive resolvers), CD and DO as the client
/// asked, EDNS with our payload size.
fn build_query(id: u16, q: &UpstreamQuery<'_>, payload: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + q.name_wire.len() + 15);
    m.extend_from_slice(&id.to_be_bytes());
    let flags = flag::RD | if q.cd { flag::CD } else { 0 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    m.extend_from_slice(q.name_wire);
    m.extend_from_slice(&q.qtype.to_be_bytes());
    m.extend_from_slice(&q.qclass.to_be_bytes());
    m.push(0);
    m.extend_from_slice(&wire::rtype::OPT.to_be_bytes());
    m.extend_from_slice(&payload.to_be_bytes());
    let ttl: u32 = if q.dnssec_ok { 0x8000 } else { 0 };
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m
}

/// One query over a fresh TCP connection (after TC=1 over UDP).
async fn tcp_exchange(
    q: &UpstreamQuery<'_>,
    server: SocketAddr,
    payload: u16,
) -> Result<Vec<u8>, UpstreamError> {
    let net = |e: std::io::Error| UpstreamError::Network(e.kind().to_string());
    let mut stream = TcpStream::connect(server).await.map_err(net)?;
    let id: u16 = rand::random();
    let message = build_query(id, q, payload);
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(&message);
    stream.write_all(&framed).await.map_err(net)?;
    let len = stream.read_u16().await.map_err(net)? as usize;
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await.map_err(net)?;
    let header = Header::read(&bytes).map_err(|_| UpstreamError::Malformed)?;
    let question = &message[HEADER_LEN..HEADER_LEN + q.name_wire.len() + 4];
    let same_question = bytes
        .get(HEADER_LEN..HEADER_LEN + question.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(question));
    if header.id != id || !header.is_response() || !same_question {
        return Err(UpstreamError::Malformed);
    }
    Ok(bytes)
}

/// Which upstreams failed recently, shared by all workers so that a dead
/// server is tried last instead of costing every query a timeout.
#[derive(Debug, Default)]
pub struct Health {
    failures: Mutex<HashMap<SocketAddr, (u32, Instant)>>,
}

/// How long a failure counts against a server.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// Consecutive failures after which a server counts as failing (readiness, logs).
const FAILING_AFTER: u32 = 3;

impl Health {
    fn order(&self, servers: &[SocketAddr]) -> Vec<SocketAddr> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let penalty = |s: &SocketAddr| match failures.get(s) {
            Some((n, at)) if at.elapsed() < FAILURE_MEMORY => *n,
            _ => 0,
        };
        // Start at a random server so load spreads, then prefer the healthy.
        let start = rand::random_range(0..servers.len());
        let mut ordered: Vec<SocketAddr> = servers[start..]
            .iter()
            .chain(&servers[..start])
            .copied()
            .collect();
        ordered.sort_by_key(penalty);
        ordered
    }

    fn success(&self, server: SocketAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = failures.remove(&server) {
            if n >= FAILING_AFTER {
                tracing::info!(upstream = %server, failures = n, "upstream recovered: answering again");
            }
        }
    }

    fn failure(&self, server: SocketAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures.entry(server).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        if entry.0 == FAILING_AFTER {
            tracing::warn!(
                upstream = %server,
                failures = entry.0,
                "upstream failing: {FAILING_AFTER} failed exchanges in a row; it is tried last until it answers again"
            );
        }
    }

    /// Whether any of `servers` answered last time it was asked (or was never
    /// asked): readiness.
    pub fn any_healthy(&self, servers: &[SocketAddr]) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        servers.iter().any(|s| {
            failures
                .get(s)
                .is_none_or(|(n, at)| *n < FAILING_AFTER || at.elapsed() > FAILURE_MEMORY)
        })
    }
}
