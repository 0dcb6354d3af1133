//! The upstream UDP sockets of one worker, for the forwarder and the
//! iterator alike: a pool of connected sockets drawn at random per query,
//! one exchange on a leased socket, and the count of sockets in use.
//!
//! Why a pool: a socket opened for each query and closed after it
//! (`socket`, `connect`, its epoll registration and removal, `close`) was a
//! fifth of a forwarded miss's CPU (benches/README.md, "Where the cycles
//! go"). RFC 5452 §9.2 asks for source ports an off-path forger cannot
//! predict, which a large pool re-drawn per query gives too (Unbound's
//! `outgoing-range`). How this one keeps them unpredictable:
//!
//! - each worker has a table of slots ([`PoolLimits::per_worker`]); a query
//!   draws a slot uniformly at random, again while the drawn one is leased
//!   to another query (up to [`UPSTREAM_POOL_DRAWS`] times), then takes a
//!   socket of its own that is closed after it;
//! - a socket is leased to one query at a time, so nothing is demultiplexed:
//!   what the socket receives is for that query or is dropped (after the ID,
//!   question and 0x20 checks, which late answers of an earlier query on the
//!   same socket fail too);
//! - an empty slot gets a new socket connected to the server: Linux binds it
//!   to a random free ephemeral port (`Pooled::open`);
//! - a port is drawn again after `upstream_socket_max_uses` answered queries,
//!   after `upstream_socket_max_age`, for another server, and after any
//!   query that got no answer (its late answer then finds the port closed):
//!   the socket is disconnected, which releases a port the kernel bound for
//!   it, and connected anew, which binds another random one
//!   (`Pooled::redraw`): two system calls instead of a socket's life; an
//!   idle socket's port is released within a second of its age (the
//!   worker's sweep, `UdpPool::sweep`);
//! - the pool fills to thousands of sockets, so the process's descriptor
//!   table is sized for them at start (`app::reserve_descriptor_table`):
//!   growing it under load stalled the worker for milliseconds per doubling;
//! - the iterator's queries ([`Port::Fresh`]) take no slot: each connects
//!   one of the worker's spare sockets, which binds a random port for that
//!   query alone, and disconnects it afterwards (`UdpPool::lease_spare`);
//! - a socket stays connected while pooled, so the kernel delivers to it only
//!   datagrams from the server's address and port; anything else gets the
//!   same ICMP answer as a closed port, and a scan from elsewhere learns
//!   nothing.
//!
//! A forger who learnt every pooled port (SAD DNS spoofs the server's
//! address and reads the kernel's ICMP rate limit) must still hit the slot
//! the query drew: 16 bits of ID, log2(slots) of port, and one bit per
//! letter of the name (0x20) per forged answer; a fresh port per query gave
//! log2(28,232) = 14.8 bits of port instead of 12 (4096 slots).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockRef, Socket, Type};
use tokio::net::UdpSocket;

use super::forward::ForwarderStats;
use super::UpstreamError;
use crate::config::limits::{UPSTREAM_POOL_DRAWS, UPSTREAM_POOL_SWEEP_SLICE};
use crate::config::Limits;

/// The bounds of one worker's pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Slots in this worker's table.
    pub slots: usize,
    /// Upstream sockets in use at once, all workers together
    /// ([`Limits::max_upstream_sockets`]).
    pub max_in_use: usize,
    /// Answered queries per port ([`Limits::upstream_socket_max_uses`]).
    pub max_uses: u32,
    /// Age of a port after which it is drawn again ([`Limits::upstream_socket_max_age`]).
    pub max_age: Duration,
}

impl PoolLimits {
    /// One worker's share of `limits` when `workers` share them.
    pub fn per_worker(limits: &Limits, workers: usize) -> Self {
        let total = limits.upstream_udp_pool.min(limits.max_upstream_sockets);
        Self {
            slots: (total / workers.max(1)).max(1),
            max_in_use: limits.max_upstream_sockets,
            max_uses: limits.upstream_socket_max_uses.max(1),
            max_age: limits.upstream_socket_max_age,
        }
    }
}

/// Whether a query may reuse the port its drawn socket has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// Reused within the pool's bounds (the forwarder: one server, many queries).
    Reuse,
    /// Bound afresh by the kernel for this query, on one of the worker's
    /// spare disconnected sockets, no slot drawn (the iterator: a new
    /// server nearly every query, and authorities are where forgers aim).
    Fresh,
}

/// One worker's pooled upstream UDP sockets.
pub struct UdpPool {
    table: Mutex<Table>,
    limits: PoolLimits,
    stats: Arc<ForwarderStats>,
}

struct Table {
    slots: Box<[Slot]>,
    /// Disconnected sockets (no port bound) for [`Port::Fresh`] leases,
    /// at most `slots` of them.
    spare: Vec<Pooled>,
}

enum Slot {
    Empty,
    Leased,
    Idle(Pooled),
}

/// A pooled socket.
struct Pooled {
    socket: UdpSocket,
    v6: bool,
    /// The server it is connected to; None: disconnected, no port bound.
    peer: Option<SocketAddr>,
    /// Queries answered on its current port.
    uses: u32,
    /// When its current port was drawn.
    drawn: Instant,
}

impl UdpPool {
    /// An empty pool; sockets open on first use (inside the worker's runtime).
    pub fn new(limits: PoolLimits, stats: Arc<ForwarderStats>) -> Self {
        let slots = (0..limits.slots).map(|_| Slot::Empty).collect();
        Self {
            table: Mutex::new(Table {
                slots,
                spare: Vec::new(),
            }),
            limits,
            stats,
        }
    }

    /// A socket connected to `server` for one query, from a slot drawn at
    /// random (see the module's notes). Overloaded at the bound on sockets
    /// in use; Network when no socket can be had.
    pub(crate) fn lease(&self, server: SocketAddr, port: Port) -> Result<Lease<'_>, UpstreamError> {
        let in_use = InUse::within(&self.stats, self.limits.max_in_use)?;
        if port == Port::Fresh {
            return self.lease_spare(server, in_use);
        }
        let (slot, held) = self.draw();
        let mut lease = Lease {
            pool: self,
            slot,
            pooled: None,
            spare: false,
            _in_use: in_use,
        };
        let pooled = match held {
            Some(mut pooled) if pooled.v6 == server.is_ipv6() => {
                if !self.reusable(&pooled, server) {
                    pooled.redraw(server).map_err(network_error)?;
                }
                pooled
            }
            // Another address family (or nothing yet): a socket of its own.
            _ => Pooled::open(server).map_err(network_error)?,
        };
        lease.pooled = Some(pooled);
        Ok(lease)
    }

    /// A [`Port::Fresh`] lease: a spare socket (or a new one) connected to
    /// `server` now. The port is the kernel's random bind at this connect,
    /// so which socket carries the query adds nothing to guess, and no slot
    /// is drawn: the spares are taken last in, first out, and a worker
    /// holds about as many sockets as it has queries in flight rather than
    /// opening one for each slot its draws reach.
    fn lease_spare(&self, server: SocketAddr, in_use: InUse) -> Result<Lease<'_>, UpstreamError> {
        let spare = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            let family = table.spare.iter().rposition(|p| p.v6 == server.is_ipv6());
            family.map(|at| table.spare.swap_remove(at))
        };
        let pooled = match spare {
            Some(mut pooled) => {
                pooled.redraw(server).map_err(network_error)?;
                pooled
            }
            None => Pooled::open(server).map_err(network_error)?,
        };
        Ok(Lease {
            pool: self,
            slot: None,
            pooled: Some(pooled),
            spare: true,
            _in_use: in_use,
        })
    }

    /// Keeps a disconnected socket for the next [`Port::Fresh`] lease
    /// (closed instead when `slots` are kept already).
    fn put_spare(&self, pooled: Pooled) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.spare.len() < self.limits.slots {
            table.spare.push(pooled);
        }
    }

    /// Draws a slot and marks it leased, with the socket it held; (None,
    /// None) when every draw was busy.
    fn draw(&self) -> (Option<usize>, Option<Pooled>) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..UPSTREAM_POOL_DRAWS {
            let index = rand::random_range(0..table.slots.len());
            match std::mem::replace(&mut table.slots[index], Slot::Leased) {
                Slot::Leased => continue,
                Slot::Empty => return (Some(index), None),
                Slot::Idle(pooled) => return (Some(index), Some(pooled)),
            }
        }
        (None, None)
    }

    fn reusable(&self, pooled: &Pooled, server: SocketAddr) -> bool {
        pooled.peer == Some(server)
            && pooled.uses < self.limits.max_uses
            && pooled.drawn.elapsed() < self.limits.max_age
    }

    /// Releases the port of every idle socket past its age, so that idle
    /// ports do not stay open for a scan to find. The worker runs it every
    /// [`crate::config::limits::UPSTREAM_POOL_SWEEP_EVERY`]
    /// ([`super::Forwarder::keep_swept`]), so no query pays for it; the
    /// table is swept [`UPSTREAM_POOL_SWEEP_SLICE`] slots at a time, letting
    /// the worker's other tasks run in between, so that many ports aging
    /// together do not hold up its queries.
    pub async fn sweep(&self) {
        let drawn_before = Instant::now()
            .checked_sub(self.limits.max_age)
            .unwrap_or_else(Instant::now);
        for start in (0..self.limits.slots).step_by(UPSTREAM_POOL_SWEEP_SLICE) {
            let end = (start + UPSTREAM_POOL_SWEEP_SLICE).min(self.limits.slots);
            {
                let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
                table.sweep(start..end, drawn_before);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Puts a lease's socket back in its slot (None: the slot is emptied).
    fn put_back(&self, slot: usize, pooled: Option<Pooled>) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.slots[slot] = pooled.map_or(Slot::Empty, Slot::Idle);
    }
}

impl Table {
    /// Releases the ports of the idle sockets in `slots` drawn before
    /// `drawn_before`; a socket that fails to disconnect is closed.
    fn sweep(&mut self, slots: std::ops::Range<usize>, drawn_before: Instant) {
        for slot in &mut self.slots[slots] {
            if let Slot::Idle(pooled) = slot {
                if pooled.peer.is_some()
                    && pooled.drawn < drawn_before
                    && pooled.disconnect().is_err()
                {
                    *slot = Slot::Empty;
                }
            }
        }
    }
}

impl Pooled {
    /// A new UDP socket connected to `server`.
    ///
    /// Connecting an unbound UDP socket binds it to port 0 first, and Linux
    /// picks a random port for every such bind: `udp_lib_get_port` starts
    /// from a fresh `get_random_u32()` offset into `ip_local_port_range`
    /// (32768–60999, 28,232 ports, by default) and takes the first free port
    /// from there in odd-multiple strides. So each socket gets its own
    /// unpredictable source port with no port-drawing loop of ours, and no
    /// port serves two sockets at once.
    fn open(server: SocketAddr) -> io::Result<Self> {
        let kind = Type::DGRAM.nonblocking().cloexec();
        let socket = Socket::new(Domain::for_address(server), kind, Some(Protocol::UDP))?;
        socket.connect(&server.into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            v6: server.is_ipv6(),
            peer: Some(server),
            uses: 0,
            drawn: Instant::now(),
        })
    }

    /// Connects the socket to `server` on a new random port. The port must
    /// be released first: a connected socket keeps its port and its source
    /// address, which another server may need to be different.
    fn redraw(&mut self, server: SocketAddr) -> io::Result<()> {
        if self.peer.is_some() {
            self.disconnect()?;
        }
        SockRef::from(&self.socket).connect(&server.into())?;
        self.peer = Some(server);
        self.uses = 0;
        self.drawn = Instant::now();
        Ok(())
    }

    /// `connect(AF_UNSPEC)`: Linux's `__udp_disconnect` unhashes a port the
    /// kernel bound on its own (no `bind` of ours), so the port is closed
    /// from here on and the next `connect` binds a new random one.
    fn disconnect(&mut self) -> io::Result<()> {
        self.peer = None;
        // SAFETY: an all-zero storage is a valid `sockaddr` of family
        // AF_UNSPEC (0); its length is that of the storage.
        let unspecified = unsafe {
            let storage = SockAddrStorage::zeroed();
            let len = storage.size_of();
            SockAddr::new(storage, len)
        };
        SockRef::from(&self.socket).connect(&unspecified)
    }
}

/// A socket leased to one query. [`Lease::answered`] returns it to its
/// slot as it is (for [`Port::Reuse`]); dropped otherwise (no answer, an
/// error, the query given up), its port is released first, so a late
/// answer finds it closed.
pub(crate) struct Lease<'p> {
    pool: &'p UdpPool,
    /// None: every draw was busy, the socket is this query's alone.
    slot: Option<usize>,
    pooled: Option<Pooled>,
    /// A [`Port::Fresh`] lease: the socket goes back to the spares,
    /// disconnected, answered or not (its port never serves another query).
    spare: bool,
    _in_use: InUse,
}

impl Lease<'_> {
    fn socket(&self) -> &UdpSocket {
        &self
            .pooled
            .as_ref()
            .expect("a lease holds its socket")
            .socket
    }

    /// The query took its answer on this socket.
    pub(crate) fn answered(mut self) {
        if self.spare {
            return; // dropped: the port is released until the next lease
        }
        if let (Some(slot), Some(mut pooled)) = (self.slot.take(), self.pooled.take()) {
            pooled.uses += 1;
            self.pool.put_back(slot, Some(pooled));
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.spare {
            if let Some(mut pooled) = self.pooled.take() {
                if pooled.disconnect().is_ok() {
                    self.pool.put_spare(pooled);
                }
            }
            return;
        }
        let Some(slot) = self.slot else {
            return; // a one-off socket: closed with the lease
        };
        let pooled = self
            .pooled
            .take()
            .and_then(|mut pooled| pooled.disconnect().is_ok().then_some(pooled));
        self.pool.put_back(slot, pooled);
    }
}

/// One upstream socket in use, counted in [`ForwarderStats::open_sockets`]
/// until dropped.
pub(crate) struct InUse(Arc<ForwarderStats>);

impl InUse {
    /// Counts one more socket in use, whatever the count.
    pub(crate) fn count(stats: &Arc<ForwarderStats>) -> Self {
        stats.open_sockets.fetch_add(1, Ordering::AcqRel);
        Self(stats.clone())
    }

    /// Counts one more socket in use, or fails as Overloaded at `max`:
    /// sockets are never shared to make room.
    pub(crate) fn within(stats: &Arc<ForwarderStats>, max: usize) -> Result<Self, UpstreamError> {
        if stats.open_sockets.fetch_add(1, Ordering::AcqRel) >= max {
            stats.open_sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(UpstreamError::Overloaded);
        }
        Ok(Self(stats.clone()))
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn network_error(e: io::Error) -> UpstreamError {
    UpstreamError::Network(e.kind().to_string())
}

/// Why [`ask`] came back without an answer.
#[derive(Debug)]
pub(crate) enum Unanswered {
    Timeout,
    Network(io::Error),
}

thread_local! {
    /// Room for the largest datagram, reused by every query of the thread
    /// (allocating and zeroing 64 KiB per query was a tenth of a miss's CPU
    /// in the recursion bench): answers are copied out at their own length.
    static DATAGRAM: RefCell<Box<[u8]>> = RefCell::new(vec![0; 65_535].into_boxed_slice());
}

/// Sends `query` on the leased socket, then reads datagrams until `take`
/// accepts one (it sees each, and returns what it makes of ours) or
/// `deadline` passes.
pub(crate) async fn ask<T>(
    lease: &Lease<'_>,
    query: &[u8],
    deadline: tokio::time::Instant,
    mut take: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, Unanswered> {
    let socket = lease.socket();
    // A pooled socket is writable already: no wait for its readiness.
    match socket.try_send(query) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            socket.send(query).await.map_err(Unanswered::Network)?;
        }
        sent => {
            sent.map_err(Unanswered::Network)?;
        }
    }
    let answer = async {
        loop {
            socket.readable().await?;
            let taken = DATAGRAM.with_borrow_mut(|buf| match socket.try_recv(buf) {
                Ok(len) => Ok(take(&buf[..len])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            })?;
            if let Some(answer) = taken {
                return Ok::<T, io::Error>(answer);
            }
        }
    };
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(Unanswered::Network(e)),
        Err(_) => Err(Unanswered::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::upstream::{Forwarder, ForwarderSettings, Health, Upstream, UpstreamQuery};

    const NAME: &[u8] = b"\x03www\x07example\x04test\x00";
    const QUERY: UpstreamQuery<'static> = UpstreamQuery {
        name_wire: NAME,
        qtype: 1,
        qclass: 1,
        dnssec_ok: false,
        cd: false,
    };

    /// What the test server saw: the source and ID of each query.
    type Seen = Arc<Mutex<Vec<(SocketAddr, u16)>>>;

    /// A server on loopback that answers each query with its own header and
    /// question (QR set). After its first answer it sends a second, late
    /// copy of it marked REFUSED, a valid answer to that first query only;
    /// while `silent` is set it answers nothing.
    async fn server(silent: Arc<AtomicBool>) -> (SocketAddr, Seen) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Seen::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 2048];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let first = {
                    let mut log = log.lock().unwrap();
                    log.push((from, id));
                    log.len() == 1
                };
                if silent.load(Ordering::SeqCst) {
                    continue;
                }
                let mut answer = buf[..len].to_vec();
                answer[2] |= 0x80;
                socket.send_to(&answer, from).await.unwrap();
                if first {
                    answer[3] = (answer[3] & 0xf0) | 5;
                    socket.send_to(&answer, from).await.unwrap();
                }
            }
        });
        (addr, seen)
    }

    /// A forwarder whose pool has one slot, so every query draws it, and
    /// its counters.
    fn forwarder(max_uses: u32) -> (Forwarder, Arc<ForwarderStats>) {
        let settings = ForwarderSettings {
            attempt_timeout: Duration::from_millis(300),
            total_timeout: Duration::from_secs(5),
            // Only the ID tells a late answer to the same question apart.
            case_randomization: false,
            ..ForwarderSettings::default()
        };
        let limits = PoolLimits {
            slots: 1,
            max_in_use: 16,
            max_uses,
            max_age: Duration::from_secs(3600),
        };
        let stats = Arc::new(ForwarderStats::default());
        let health = Arc::new(Health::default());
        (
            Forwarder::new(settings, limits, health, stats.clone()),
            stats,
        )
    }

    fn ports(seen: &Seen) -> Vec<u16> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(from, _)| from.port())
            .collect()
    }

    #[tokio::test]
    async fn a_pooled_port_serves_its_uses_then_is_drawn_again() {
        let (addr, seen) = server(Arc::default()).await;
        let (forwarder, stats) = forwarder(2);
        let servers = [Upstream::from(addr)];
        for _ in 0..5 {
            forwarder.query(&QUERY, &servers).await.expect("answered");
        }
        let ports = ports(&seen);
        assert_eq!(ports.len(), 5, "one attempt each: {ports:?}");
        assert_eq!(ports[0], ports[1], "reused once answered: {ports:?}");
        assert_ne!(ports[1], ports[2], "drawn again after 2 uses: {ports:?}");
        assert_eq!(ports[2], ports[3], "{ports:?}");
        assert_ne!(ports[3], ports[4], "{ports:?}");
        assert_eq!(stats.open_sockets.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_late_answer_to_the_last_query_on_a_reused_socket_is_not_taken() {
        let (addr, seen) = server(Arc::default()).await;
        let (forwarder, stats) = forwarder(32);
        let servers = [Upstream::from(addr)];
        let (first, _) = forwarder.query(&QUERY, &servers).await.expect("answered");
        assert_eq!(first[3] & 0x0f, 0, "the first answer, NOERROR");
        // The same question again, on the same socket, where the late
        // REFUSED copy of the first answer waits: only the ID differs.
        let (second, _) = forwarder.query(&QUERY, &servers).await.expect("answered");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, seen[1].0, "the socket was reused");
        assert_ne!(seen[0].1, seen[1].1, "a new ID");
        assert_eq!(u16::from_be_bytes([second[0], second[1]]), seen[1].1);
        assert_eq!(second[3] & 0x0f, 0, "not the late REFUSED copy");
        let rejected = stats.rejected_answers.load(Ordering::Relaxed);
        assert_eq!(rejected, 1, "the late copy was read and dropped");
    }

    #[tokio::test]
    async fn a_query_left_unanswered_releases_its_port() {
        let silent = Arc::new(AtomicBool::new(true));
        let (addr, seen) = server(silent.clone()).await;
        let (forwarder, _) = forwarder(32);
        let servers = [Upstream::from(addr)];
        let lost = forwarder.query(&QUERY, &servers[..]);
        let lost = tokio::time::timeout(Duration::from_millis(400), lost).await;
        assert!(lost.is_err(), "no answer while the server is silent");
        silent.store(false, Ordering::SeqCst);
        forwarder.query(&QUERY, &servers).await.expect("answered");
        let ports = ports(&seen);
        assert!(ports.len() >= 2, "{ports:?}");
        let last = ports[ports.len() - 1];
        assert!(
            ports[..ports.len() - 1].iter().all(|p| *p != last),
            "the port of an unanswered query is not used again: {ports:?}"
        );
    }

    /// A pool of `slots` slots, alone (no forwarder), and its counters.
    fn pool(slots: usize) -> (UdpPool, Arc<ForwarderStats>) {
        let stats = Arc::new(ForwarderStats::default());
        let limits = PoolLimits {
            slots,
            max_in_use: 16,
            max_uses: 32,
            max_age: Duration::from_secs(3600),
        };
        (UdpPool::new(limits, stats.clone()), stats)
    }

    /// One query with ID `id` (and no question) on a lease of `pool`, answered.
    async fn exchange(pool: &UdpPool, server: SocketAddr, port: Port, id: u16) {
        let lease = pool.lease(server, port).expect("a socket");
        let mut query = vec![0; 12];
        query[..2].copy_from_slice(&id.to_be_bytes());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let ours = |d: &[u8]| (d[..2] == id.to_be_bytes()).then_some(());
        ask(&lease, &query, deadline, ours).await.expect("answered");
        lease.answered();
    }

    #[tokio::test]
    async fn the_iterator_gets_a_fresh_port_per_query() {
        let (addr, seen) = server(Arc::default()).await;
        let (pool, _) = pool(1);
        for id in 0..3u16 {
            exchange(&pool, addr, Port::Fresh, id).await;
        }
        let ports = ports(&seen);
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2], "{ports:?}");
    }

    /// The local ports of the pool's idle sockets, slot by slot (0: the
    /// socket holds no port).
    fn idle_ports(pool: &UdpPool) -> Vec<u16> {
        let table = pool.table.lock().unwrap();
        let idle = table.slots.iter().filter_map(|slot| match slot {
            Slot::Idle(pooled) => Some(pooled.socket.local_addr().unwrap().port()),
            _ => None,
        });
        idle.collect()
    }

    #[tokio::test]
    async fn the_sweep_releases_idle_ports_past_their_age_and_no_other() {
        let (addr, seen) = server(Arc::default()).await;
        let (mut pool, _) = pool(1);
        exchange(&pool, addr, Port::Reuse, 1).await;
        let drawn = ports(&seen)[0];
        assert_eq!(idle_ports(&pool), [drawn], "kept for the next query");
        pool.sweep().await;
        assert_eq!(idle_ports(&pool), [drawn], "younger than max_age: kept");
        pool.limits.max_age = Duration::ZERO;
        pool.sweep().await;
        assert_eq!(idle_ports(&pool), [0], "past max_age: the port is released");
        // The slot's socket binds a new port for its next query.
        exchange(&pool, addr, Port::Reuse, 2).await;
        let ports = ports(&seen);
        assert_ne!(ports[1], drawn, "{ports:?}");
    }

    #[tokio::test]
    async fn fresh_ports_come_from_spare_sockets_not_one_socket_per_slot() {
        use std::os::fd::AsRawFd;
        let (addr, _) = server(Arc::default()).await;
        let (other, _) = server(Arc::default()).await;
        let (pool, stats) = pool(4096);
        let fd = |lease: &Lease| lease.socket().as_raw_fd();
        let (first, second) = (
            pool.lease(addr, Port::Fresh),
            pool.lease(other, Port::Fresh),
        );
        let (first, second) = (first.expect("a socket"), second.expect("a socket"));
        let fds = [fd(&first), fd(&second)];
        assert_ne!(fds[0], fds[1], "one socket per query in flight");
        drop(first);
        second.answered();
        // Sequential queries to either server: only the two sockets serve
        // them, each on a port bound afresh (asserted above).
        for server in [addr, other, addr, other, addr] {
            let lease = pool.lease(server, Port::Fresh).expect("a socket");
            assert!(fds.contains(&fd(&lease)), "{fds:?}: {}", fd(&lease));
            let local = lease.socket().local_addr().unwrap();
            assert_ne!(local.port(), 0, "connected, so bound");
        }
        assert_eq!(stats.open_sockets.load(Ordering::Relaxed), 0);
    }
}
