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
//! - the iterator's queries ([`Port::Authority`]) take no slot: each takes
//!   a socket the worker keeps connected to that server, picked at random
//!   among its idle ones, or else connects one of the worker's spare
//!   disconnected sockets, which binds a random port (`UdpPool::lease_authority`);
//!   a port serves one server for at most `recursion_port_max_uses` answered
//!   queries and `recursion_port_max_age`, is released after any query left
//!   unanswered, and whatever reached it while idle is read and dropped
//!   before it is used again (`Pooled::drain`);
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
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::DefaultHashBuilder;
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockRef, Socket, Type};
use tokio::io::Interest;

use super::forward::ForwarderStats;
use super::UpstreamError;
use crate::config::limits::{UPSTREAM_POOL_DRAWS, UPSTREAM_POOL_SWEEP_SLICE};
use crate::config::Limits;
use crate::reactor::{self, forget_readiness};

/// The bounds of one worker's pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Answered queries per authority port ([`Limits::recursion_port_max_uses`]).
    pub authority_max_uses: u32,
    /// Age of an authority port after which it is released ([`Limits::recursion_port_max_age`]).
    pub authority_max_age: Duration,
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
            authority_max_uses: limits.recursion_port_max_uses.max(1),
            authority_max_age: limits.recursion_port_max_age,
        }
    }
}

/// Whether a query may reuse the port its drawn socket has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// Reused within the pool's bounds (the forwarder: one server, many queries).
    Reuse,
    /// Kept for one authoritative server within the tighter bounds of
    /// [`PoolLimits::authority_max_uses`] and [`PoolLimits::authority_max_age`],
    /// no slot drawn (the iterator: many servers, and authorities are where
    /// forgers aim): a random one of the sockets connected to the server
    /// and idle, else a spare one connected now on a port the kernel draws.
    Authority,
}

/// One worker's pooled upstream UDP sockets.
pub struct UdpPool {
    table: Mutex<Table>,
    limits: PoolLimits,
    stats: Arc<ForwarderStats>,
}

struct Table {
    slots: Box<[Slot]>,
    /// Disconnected sockets (no port bound) for [`Port::Authority`] leases.
    spare: Vec<Pooled>,
    /// Idle sockets connected to an authoritative server, by server, for
    /// its next [`Port::Authority`] lease (a server's list may be empty
    /// until the sweep removes it).
    authorities: HashMap<SocketAddr, Vec<Pooled>, DefaultHashBuilder>,
    /// Sockets in `authorities`: with `spare`, at most `slots` are kept.
    kept: usize,
}

enum Slot {
    Empty,
    Leased,
    Idle(Pooled),
}

/// A pooled socket.
struct Pooled {
    socket: reactor::Udp,
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
                authorities: HashMap::default(),
                kept: 0,
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
        if port == Port::Authority {
            return self.lease_authority(server, in_use);
        }
        let (slot, held) = self.draw();
        let mut lease = Lease {
            pool: self,
            slot,
            pooled: None,
            authority: false,
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

    /// A [`Port::Authority`] lease: one of the sockets kept connected to
    /// `server`, drawn at random; else a spare socket (or a new one)
    /// connected now, on a port the kernel draws at random for it. A kept
    /// port's age is the sweep's to bound (no clock read per query). No slot is drawn: the spares are taken last in, first
    /// out, and a worker holds about as many sockets as it has queries in
    /// flight rather than one for each slot its draws reach.
    fn lease_authority(
        &self,
        server: SocketAddr,
        in_use: InUse,
    ) -> Result<Lease<'_>, UpstreamError> {
        let (kept, spare) = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            match table.take_kept(server) {
                Some(kept) => (Some(kept), None),
                None => (None, table.take_spare(server.is_ipv6())),
            }
        };
        let pooled = match (kept, spare) {
            (Some(kept), _) => {
                kept.drain();
                kept
            }
            (None, Some(mut pooled)) => {
                pooled.redraw(server).map_err(network_error)?;
                pooled
            }
            (None, None) => Pooled::open(server).map_err(network_error)?,
        };
        Ok(Lease {
            pool: self,
            slot: None,
            pooled: Some(pooled),
            authority: true,
            _in_use: in_use,
        })
    }

    /// Keeps an answered authority socket connected for its server's next
    /// query while its port has uses left; else hands it back for its
    /// lease to release the port. (Its age is bounded by the sweep.)
    fn keep(&self, mut pooled: Pooled) -> Option<Pooled> {
        pooled.uses += 1;
        let server = pooled.peer?;
        if pooled.uses >= self.limits.authority_max_uses {
            return Some(pooled);
        }
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.spare.len() + table.kept < self.limits.slots {
            table.kept += 1;
            table.authorities.entry(server).or_default().push(pooled);
        }
        None // kept, or closed (which releases its port) at the bound
    }

    /// Keeps a disconnected socket for the next [`Port::Authority`] lease
    /// (closed instead when `slots` are kept already).
    fn put_spare(&self, pooled: Pooled) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.spare.len() + table.kept < self.limits.slots {
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
        {
            let authority_drawn_before = Instant::now()
                .checked_sub(self.limits.authority_max_age)
                .unwrap_or_else(Instant::now);
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            table.sweep_kept(authority_drawn_before, self.limits.slots);
        }
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
    /// One of the sockets kept connected to `server`, drawn at random: a
    /// forger who learnt their ports must still guess which one.
    fn take_kept(&mut self, server: SocketAddr) -> Option<Pooled> {
        let kept = self.authorities.get_mut(&server)?;
        if kept.is_empty() {
            return None;
        }
        let pooled = kept.swap_remove(rand::random_range(0..kept.len()));
        self.kept -= 1;
        Some(pooled)
    }

    /// A spare socket of the family asked, the one put back last.
    fn take_spare(&mut self, v6: bool) -> Option<Pooled> {
        let at = self.spare.iter().rposition(|p| p.v6 == v6)?;
        Some(self.spare.swap_remove(at))
    }

    /// Releases the ports of the kept authority sockets drawn before
    /// `drawn_before` (they become spares, within `max` sockets in all;
    /// closed past it or when the disconnect fails), and forgets servers
    /// with none kept.
    fn sweep_kept(&mut self, drawn_before: Instant, max: usize) {
        let mut released = Vec::new();
        for kept in self.authorities.values_mut() {
            let (young, old): (Vec<_>, Vec<_>) = std::mem::take(kept)
                .into_iter()
                .partition(|pooled| pooled.drawn >= drawn_before);
            self.kept -= old.len();
            *kept = young;
            released.extend(old);
        }
        self.authorities.retain(|_, kept| !kept.is_empty());
        for mut pooled in released {
            if self.spare.len() + self.kept < max && pooled.disconnect().is_ok() {
                self.spare.push(pooled);
            }
        }
    }

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
            socket: reactor::register(socket.into())?,
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
        // An ICMP error for the last peer that came after its query gave up
        // (port unreachable: nothing listens there) waits on the socket
        // until a send or a read takes it. Left there, it fails the next
        // server's exchange instead ("unreachable"), so it is taken here,
        // with the peer it belongs to.
        let _ = self.socket.get_ref().take_error();
        SockRef::from(self.socket.get_ref()).connect(&server.into())?;
        self.peer = Some(server);
        self.uses = 0;
        self.drawn = Instant::now();
        Ok(())
    }

    /// Reads and drops the datagrams that reached a kept socket while it
    /// was idle (a late duplicate, or a forger's answers sent ahead for
    /// the next query), so that only what arrives while a query waits is
    /// weighed, as on a port drawn for it. No system call unless the
    /// reactor saw a datagram arrive since the last answer (`ask` forgets
    /// the readiness the answer left).
    fn drain(&self) {
        DATAGRAM.with_borrow_mut(|buf| while try_recv(&self.socket, buf).is_ok() {});
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
        SockRef::from(self.socket.get_ref()).connect(&unspecified)
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
    /// A [`Port::Authority`] lease: answered, the socket is kept connected
    /// for the server's next query ([`UdpPool::keep`]); else it goes back
    /// to the spares, disconnected.
    authority: bool,
    _in_use: InUse,
}

impl Lease<'_> {
    fn socket(&self) -> &reactor::Udp {
        &self
            .pooled
            .as_ref()
            .expect("a lease holds its socket")
            .socket
    }

    /// The query took its answer on this socket.
    pub(crate) fn answered(mut self) {
        if self.authority {
            // What `keep` hands back is dropped below: its port released.
            self.pooled = self.pooled.take().and_then(|p| self.pool.keep(p));
            return;
        }
        if let (Some(slot), Some(mut pooled)) = (self.slot.take(), self.pooled.take()) {
            pooled.uses += 1;
            self.pool.put_back(slot, Some(pooled));
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.authority {
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

/// Reads one datagram into `buf` if the reactor saw one arrive (no system
/// call otherwise), as `tokio::net::UdpSocket::try_recv` does.
fn try_recv(socket: &reactor::Udp, buf: &mut [u8]) -> io::Result<usize> {
    socket.try_io(Interest::READABLE, |socket| socket.recv(buf))
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
    // A UDP socket is writable unless its send buffer is full, which a
    // query on a socket of its own does not fill: send at once, with no
    // readiness asked of the reactor (tokio's `try_send` refused until the
    // reactor had reported a new socket writable: the first query on each
    // new socket waited for a turn of the event loop before it went out).
    reactor::send(socket, || socket.get_ref().send(query))
        .await
        .map_err(Unanswered::Network)?;
    let answer = async {
        loop {
            // ERROR too: an ICMP error for the exchange (port unreachable:
            // nothing listens there) fails it at once, and the next server
            // is asked without waiting out the attempt. It only wakes this
            // wait, not `readable()`. A forger needs the port for it, as
            // for an answer.
            let ready = socket
                .ready(Interest::READABLE | Interest::ERROR)
                .await?
                .ready();
            if ready.is_error() {
                if let Some(error) = socket.get_ref().take_error()? {
                    return Err(error);
                }
                // Taken already (a send took it): stop waking on it.
                forget_readiness(socket, Interest::ERROR);
            }
            if !ready.is_readable() {
                continue;
            }
            let taken = DATAGRAM.with_borrow_mut(|buf| match try_recv(socket, buf) {
                Ok(len) => Ok(take(&buf[..len])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            })?;
            if let Some(answer) = taken {
                // Forget the readiness (no system call): whatever else is
                // queued came within this wait and meets the next query's
                // checks; readiness from here on means a datagram came
                // after the answer, which `Pooled::drain` then drops.
                forget_readiness(socket, Interest::READABLE);
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
            authority_max_uses: 8,
            authority_max_age: Duration::from_secs(3600),
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
        drawn_again_every_two(&ports(&seen));
        assert_eq!(stats.open_sockets.load(Ordering::Relaxed), 0);
    }

    /// Five queries' ports where a port serves two answered queries: the
    /// first port twice, a second one twice, a third one.
    fn drawn_again_every_two(ports: &[u16]) {
        assert_eq!(ports.len(), 5, "one attempt each: {ports:?}");
        assert_eq!(ports[0], ports[1], "reused once answered: {ports:?}");
        assert_ne!(ports[1], ports[2], "drawn again after 2 uses: {ports:?}");
        assert_eq!(ports[2], ports[3], "{ports:?}");
        assert_ne!(ports[3], ports[4], "{ports:?}");
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

    /// A loopback address whose port nothing listens on (bound, then let go).
    fn closed_port() -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    }

    /// A server whose port is closed answers with ICMP port unreachable:
    /// the exchange fails with it at once, not at its deadline.
    #[tokio::test]
    async fn a_closed_port_fails_the_exchange_at_once() {
        let closed_addr = closed_port();
        let (forwarder, _) = forwarder(32);
        let lease = forwarder
            .udp_pool()
            .lease(closed_addr, Port::Reuse)
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let lost = ask(&lease, b"\x12\x34 not even a query", deadline, |_| Some(())).await;
        assert!(
            matches!(&lost, Err(Unanswered::Network(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{lost:?}"
        );
    }

    /// An ICMP error that comes after the exchange gave up waits on the
    /// socket. The next server asked on that socket is asked and answered:
    /// the error is not its own.
    #[tokio::test]
    async fn a_closed_ports_refusal_does_not_fail_the_next_server_on_the_socket() {
        let closed_addr = closed_port();
        let (addr, seen) = server(Arc::default()).await;
        let (forwarder, _) = forwarder(32);
        let lease = forwarder
            .udp_pool()
            .lease(closed_addr, Port::Reuse)
            .unwrap();
        // Sent with nobody waiting for an answer: the refusal stays.
        SockRef::from(lease.socket())
            .send(b"\x12\x34 not even a query")
            .unwrap();
        drop(lease);
        // The slot's socket again (the pool has one), for the live server.
        let lease = forwarder.udp_pool().lease(addr, Port::Reuse).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let answer = ask(&lease, b"\x56\x78\x01\x00\x00\x00", deadline, |a| {
            Some(a.to_vec())
        })
        .await;
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    /// A pool of `slots` slots, alone (no forwarder), whose authority
    /// ports serve `authority_uses` answers each, and its counters.
    fn pool_with(slots: usize, authority_uses: u32) -> (UdpPool, Arc<ForwarderStats>) {
        let stats = Arc::new(ForwarderStats::default());
        let limits = PoolLimits {
            slots,
            max_in_use: 16,
            max_uses: 32,
            max_age: Duration::from_secs(3600),
            authority_max_uses: authority_uses,
            authority_max_age: Duration::from_secs(3600),
        };
        (UdpPool::new(limits, stats.clone()), stats)
    }

    fn pool(slots: usize) -> (UdpPool, Arc<ForwarderStats>) {
        pool_with(slots, 8)
    }

    /// One query with ID `id` (and no question) on a lease of `pool`,
    /// answered: the answer's RCODE.
    async fn exchange(pool: &UdpPool, server: SocketAddr, port: Port, id: u16) -> u8 {
        let lease = pool.lease(server, port).expect("a socket");
        let mut query = vec![0; 12];
        query[..2].copy_from_slice(&id.to_be_bytes());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let ours = |d: &[u8]| (d[..2] == id.to_be_bytes()).then_some(d[3] & 0x0f);
        let rcode = ask(&lease, &query, deadline, ours).await.expect("answered");
        lease.answered();
        rcode
    }

    #[tokio::test]
    async fn an_authority_port_serves_its_uses_then_is_drawn_again() {
        let (addr, seen) = server(Arc::default()).await;
        let (pool, stats) = pool_with(1, 2);
        for id in 0..5u16 {
            exchange(&pool, addr, Port::Authority, id).await;
        }
        drawn_again_every_two(&ports(&seen));
        assert_eq!(stats.open_sockets.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_authority_port_serves_its_own_server_only() {
        let (one, seen_one) = server(Arc::default()).await;
        let (two, seen_two) = server(Arc::default()).await;
        let (pool, _) = pool(4096);
        for (id, server) in [one, two, one, two].into_iter().enumerate() {
            exchange(&pool, server, Port::Authority, id as u16).await;
        }
        let (one, two) = (ports(&seen_one), ports(&seen_two));
        assert_eq!(one[0], one[1], "kept for the same server: {one:?}");
        assert_eq!(two[0], two[1], "{two:?}");
        assert_ne!(one[0], two[0], "never lent to another server");
    }

    #[tokio::test]
    async fn an_authority_query_left_unanswered_releases_its_port() {
        let silent = Arc::new(AtomicBool::new(true));
        let (addr, seen) = server(silent.clone()).await;
        let (pool, _) = pool(1);
        let lease = pool.lease(addr, Port::Authority).expect("a socket");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let lost = ask(&lease, &[0; 12], deadline, |_| Some(())).await;
        assert!(matches!(lost, Err(Unanswered::Timeout)), "{lost:?}");
        drop(lease);
        silent.store(false, Ordering::SeqCst);
        exchange(&pool, addr, Port::Authority, 1).await;
        let ports = ports(&seen);
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert_ne!(ports[0], ports[1], "not kept after no answer: {ports:?}");
    }

    #[tokio::test]
    async fn what_reached_a_kept_port_while_idle_is_not_taken_for_the_next_query() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (pool, _) = pool(1);
        let (server, pool) = (&server, &pool);
        // The server answers each query with its header, QR set and RCODE
        // `rcode`; the client takes any datagram with its ID.
        let exchange = |rcode: u8| async move {
            let lease = pool.lease(addr, Port::Authority).expect("a socket");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let ours = |d: &[u8]| (d[..2] == [0, 7]).then_some(d[3] & 0x0f);
            let answer = async {
                let mut buf = [0; 512];
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                buf[2] |= 0x80;
                buf[3] = rcode;
                server.send_to(&buf[..len], from).await.unwrap();
                from
            };
            let query = [0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let (taken, from) = tokio::join!(ask(&lease, &query, deadline, ours), answer);
            lease.answered();
            (taken.expect("answered"), from)
        };
        let (first, client) = exchange(0).await;
        assert_eq!(first, 0);
        // Between queries, a datagram the next query would take (its ID,
        // as a forger's guess sent ahead would have), REFUSED.
        server
            .send_to(&[0, 7, 0x80, 5, 0, 0, 0, 0, 0, 0, 0, 0], client)
            .await
            .unwrap();
        // Idle long enough for the worker's reactor to see it arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (second, again) = exchange(0).await;
        assert_eq!(again, client, "the port was kept");
        assert_eq!(second, 0, "the query's own answer, not what came before it");
    }

    /// The local ports of the pool's idle sockets, slot by slot (0: the
    /// socket holds no port).
    fn idle_ports(pool: &UdpPool) -> Vec<u16> {
        let table = pool.table.lock().unwrap();
        let idle = table.slots.iter().filter_map(|slot| match slot {
            Slot::Idle(pooled) => Some(pooled.socket.get_ref().local_addr().unwrap().port()),
            _ => None,
        });
        idle.collect()
    }

    /// The local ports of the sockets kept for authoritative servers.
    fn kept_ports(pool: &UdpPool) -> Vec<u16> {
        let table = pool.table.lock().unwrap();
        let kept = table.authorities.values().flatten();
        kept.map(|pooled| pooled.socket.get_ref().local_addr().unwrap().port())
            .collect()
    }

    #[tokio::test]
    async fn the_sweep_releases_idle_ports_past_their_age_and_no_other() {
        for port in [Port::Reuse, Port::Authority] {
            let (addr, seen) = server(Arc::default()).await;
            let (mut pool, _) = pool(1);
            // A slot's idle socket (0: its port released), or a kept one.
            let held = |pool: &UdpPool| match port {
                Port::Reuse => idle_ports(pool),
                Port::Authority => kept_ports(pool),
            };
            exchange(&pool, addr, port, 1).await;
            let drawn = ports(&seen)[0];
            assert_eq!(held(&pool), [drawn], "{port:?}: kept for the next query");
            pool.sweep().await;
            assert_eq!(held(&pool), [drawn], "{port:?}: younger than its age: kept");
            pool.limits.max_age = Duration::ZERO;
            pool.limits.authority_max_age = Duration::ZERO;
            pool.sweep().await;
            let released = held(&pool).iter().all(|p| *p == 0);
            assert!(released, "{port:?}: past its age, the port is released");
            if port == Port::Authority {
                let spare = pool.table.lock().unwrap().spare.len();
                assert_eq!(spare, 1, "the socket stays, disconnected");
                pool.limits.authority_max_age = Duration::from_secs(3600);
            }
            // The socket binds a new port for its next query.
            exchange(&pool, addr, port, 2).await;
            let ports = ports(&seen);
            assert_ne!(ports[1], drawn, "{port:?}: {ports:?}");
        }
    }

    #[tokio::test]
    async fn authority_ports_come_from_kept_and_spare_sockets_not_one_socket_per_slot() {
        use std::os::fd::AsRawFd;
        let (addr, _) = server(Arc::default()).await;
        let (other, _) = server(Arc::default()).await;
        let (pool, stats) = pool(4096);
        let fd = |lease: &Lease| lease.socket().as_raw_fd();
        let (first, second) = (
            pool.lease(addr, Port::Authority),
            pool.lease(other, Port::Authority),
        );
        let (first, second) = (first.expect("a socket"), second.expect("a socket"));
        let fds = [fd(&first), fd(&second)];
        assert_ne!(fds[0], fds[1], "one socket per query in flight");
        drop(first);
        second.answered();
        // Sequential queries to either server, none answered: only the two
        // sockets serve them (the one kept for `other`, the spare).
        for server in [addr, other, addr, other, addr] {
            let lease = pool.lease(server, Port::Authority).expect("a socket");
            assert!(fds.contains(&fd(&lease)), "{fds:?}: {}", fd(&lease));
            let local = lease.socket().get_ref().local_addr().unwrap();
            assert_ne!(local.port(), 0, "connected, so bound");
        }
        assert_eq!(stats.open_sockets.load(Ordering::Relaxed), 0);
    }
}
