//! The open connections of one stream transport (TCP, DoT or DoH), shared by
//! every worker, and the accept loop the three transports have in common.
//!
//! Each connection is registered with its client and how useful it has been
//! (still in its handshake, idle since some time, or busy with queries), and
//! can be told to close. The table is bounded twice, and at a bound the new
//! connection is always admitted and a less productive one is shed instead
//! (closed at once, or with queries in flight once its answers are out, 1 s
//! at most):
//!
//! - Over the per-client cap, the client's own least productive connection.
//! - Over the global cap, the least productive of all: one that has not sent
//!   a query yet (a TLS handshake or a first message never finished; oldest
//!   first), then the one idle longest, and only when every connection is
//!   busy, the one whose last query started longest ago.
//!
//! So connections that only hold a slot (slowloris, half-open handshakes)
//! cannot lock out a client that asks something: an attacker who reconnects
//! sheds its own connections, never an established client's. The idle and
//! handshake timeouts still close what nobody needs.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::proxy::{Proxies, Refused};
use crate::config::Limits;
use crate::pipeline::Worker;
use crate::query::{ClientHints, Transport};
use crate::throttle::LogThrottle;

/// How often at most a connection closed for a missing or malformed PROXY
/// header is logged: a load balancer sending none sends none on any of its
/// connections.
const PROXY_REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
static PROXY_REFUSALS: LogThrottle = LogThrottle::new(PROXY_REFUSAL_LOG_EVERY);

/// Why a connection was shed, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// At the global cap: it had not sent a query yet.
    Handshake,
    /// At the global cap: it was idle (the one idle longest).
    Idle,
    /// At the global cap with every connection busy: its queries were
    /// cut short.
    Busy,
    /// Its client was at the per-client cap and opened another.
    PerClient,
}

impl ShedReason {
    pub const ALL: [ShedReason; 4] = [Self::Handshake, Self::Idle, Self::Busy, Self::PerClient];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::PerClient => "per_client",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The open connections of one transport, bounded in all and per client.
pub struct ConnectionTable {
    transport: Transport,
    max: usize,
    max_per_client: usize,
    client_prefix_v6: u8,
    /// Entries in the table, readable without the lock.
    open: AtomicUsize,
    table: Mutex<Table>,
    sheds: [AtomicU64; ShedReason::ALL.len()],
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Arc<State>>,
    per_client: HashMap<IpAddr, usize>,
}

impl ConnectionTable {
    /// A table for `transport` holding at most `max` connections, with the
    /// per-client bound of `limits`.
    pub fn new(transport: Transport, max: usize, limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            transport,
            max: max.max(1),
            max_per_client: limits.max_connections_per_client.max(1),
            client_prefix_v6: limits.connection_client_prefix_v6.min(128),
            open: AtomicUsize::new(0),
            table: Mutex::new(Table::default()),
            sheds: Default::default(),
        })
    }

    /// Registers a new connection from `ip`, shedding another first when a
    /// cap is reached (see the module documentation). Never refuses.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> OpenConnection {
        self.admit_from(ip, true)
    }

    /// [`Self::admit`] for a connection from a trusted proxy, whose client
    /// is known only once its PROXY header is read
    /// ([`OpenConnection::reassign`]): the proxy carries many clients, so
    /// its own address is held to the global cap only.
    pub fn admit_proxied(self: &Arc<Self>, proxy: IpAddr) -> OpenConnection {
        self.admit_from(proxy, false)
    }

    fn admit_from(self: &Arc<Self>, ip: IpAddr, per_client_cap: bool) -> OpenConnection {
        let client = client_key(ip, self.client_prefix_v6);
        let state = Arc::new(State::new(client));
        let mut table = self.lock();
        if let Some((victim, reason)) = self.victim(&table, client, per_client_cap) {
            self.shed(&mut table, victim, reason);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.entries.insert(id, state.clone());
        *table.per_client.entry(client).or_insert(0) += 1;
        self.open.store(table.entries.len(), Ordering::Relaxed);
        drop(table);
        OpenConnection {
            table: self.clone(),
            id,
            activity: Activity(state),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Past three quarters of the cap: idle connections get less time.
    pub fn under_pressure(&self) -> bool {
        self.open() * 4 >= self.max * 3
    }

    /// Connections shed so far for `reason`.
    pub fn shed_count(&self, reason: ShedReason) -> u64 {
        self.sheds[reason.index()].load(Ordering::Relaxed)
    }

    /// The connection to shed to make room for one more from `client`.
    fn victim(
        &self,
        table: &Table,
        client: IpAddr,
        per_client_cap: bool,
    ) -> Option<(u64, ShedReason)> {
        let of_client = table.per_client.get(&client).copied().unwrap_or(0);
        if per_client_cap && of_client >= self.max_per_client {
            let (id, _) = least_productive(table, |state| state.client() == client)?;
            return Some((id, ShedReason::PerClient));
        }
        if table.entries.len() < self.max {
            return None;
        }
        let (id, worth) = least_productive(table, |_| true)?;
        Some((id, worth.reason()))
    }

    fn shed(&self, table: &mut Table, id: u64, reason: ShedReason) {
        let Some(state) = table.remove(id) else {
            return;
        };
        state.shed();
        self.sheds[reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            transport = %self.transport,
            reason = reason.as_str(),
            client = %state.client(),
            "connection shed to admit a new one"
        );
    }

    /// Counts connection `id` against `ip`'s client from now on (a PROXY
    /// header named the real client behind a load balancer), shedding that
    /// client's least productive connection first if it is at its cap.
    fn reassign(&self, id: u64, ip: IpAddr) {
        let client = client_key(ip, self.client_prefix_v6);
        let mut table = self.lock();
        let Some(state) = table.entries.get(&id).cloned() else {
            // Shed meanwhile: it is closing.
            return;
        };
        let old = state.client();
        if old == client {
            return;
        }
        table.forget_client(old);
        let of_client = table.per_client.get(&client).copied().unwrap_or(0);
        if of_client >= self.max_per_client {
            // The connection itself still counts for `old`, so it is not a candidate.
            if let Some((victim, _)) = least_productive(&table, |s| s.client() == client) {
                self.shed(&mut table, victim, ShedReason::PerClient);
            }
        }
        *state.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
        *table.per_client.entry(client).or_insert(0) += 1;
        self.open.store(table.entries.len(), Ordering::Relaxed);
    }

    /// Removes a connection that ended (no-op if it was shed already).
    fn leave(&self, id: u64) {
        let mut table = self.lock();
        table.remove(id);
        self.open.store(table.entries.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<State>> {
        let state = self.entries.remove(&id)?;
        self.forget_client(state.client());
        Some(state)
    }

    /// One connection fewer for `client`.
    fn forget_client(&mut self, client: IpAddr) {
        if let Some(count) = self.per_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                // Only clients with a connection open are kept.
                self.per_client.remove(&client);
            }
        }
    }
}

/// The connection among those `eligible` that is least worth keeping.
/// A linear scan, done only at a cap: a few microseconds for a thousand.
fn least_productive(table: &Table, eligible: impl Fn(&State) -> bool) -> Option<(u64, Worth)> {
    table
        .entries
        .iter()
        .filter(|(_, state)| eligible(state))
        .map(|(&id, state)| (id, state.worth()))
        // Ties go to the connection admitted first.
        .min_by_key(|&(id, worth)| (worth, id))
}

/// How much a connection is worth keeping, least first: the variants in
/// order, then the older time first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Worth {
    /// No query yet; since when it is open.
    Handshake(Instant),
    /// No query in flight; when the last one started or ended.
    Idle(Instant),
    /// Queries in flight; when the last one started or ended.
    Busy(Instant),
}

impl Worth {
    fn reason(self) -> ShedReason {
        match self {
            Worth::Handshake(_) => ShedReason::Handshake,
            Worth::Idle(_) => ShedReason::Idle,
            Worth::Busy(_) => ShedReason::Busy,
        }
    }
}

/// The client a connection counts against: its address, or for IPv6 its
/// prefix (a host picks any address in its /64, and a site usually gets a
/// /56), so that one client cannot escape the cap by changing addresses.
fn client_key(ip: IpAddr, prefix_v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_v6))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// What the table knows of one connection, updated by the connection itself.
struct State {
    /// Changed only under the table's lock (by [`ConnectionTable::reassign`]).
    client: Mutex<IpAddr>,
    opened: Instant,
    in_flight: AtomicU32,
    /// Microseconds from `opened` to the last start or end of a query, plus
    /// one; 0 until the first query.
    last_us: AtomicU64,
    shed: AtomicBool,
    wake: Notify,
}

impl State {
    fn new(client: IpAddr) -> Self {
        Self {
            client: Mutex::new(client),
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_us: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn client(&self) -> IpAddr {
        *self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worth(&self) -> Worth {
        match self.last_active() {
            None => Worth::Handshake(self.opened),
            Some(last) if self.in_flight.load(Ordering::Relaxed) > 0 => Worth::Busy(last),
            Some(last) => Worth::Idle(last),
        }
    }

    fn last_active(&self) -> Option<Instant> {
        match self.last_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.opened + Duration::from_micros(us - 1)),
        }
    }

    fn touch(&self) {
        let us = self.opened.elapsed().as_micros() as u64 + 1;
        self.last_us.fetch_max(us, Ordering::Relaxed);
    }

    fn shed(&self) {
        self.shed.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    async fn wait_shed(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the check, so a shed in between still wakes us.
            notified.as_mut().enable();
            if self.shed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's place in its table, held for as long as it is open;
/// dropping it frees the place.
pub struct OpenConnection {
    table: Arc<ConnectionTable>,
    id: u64,
    activity: Activity,
}

impl OpenConnection {
    /// The connection's activity, to report queries with.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The table it belongs to.
    pub fn table(&self) -> &ConnectionTable {
        &self.table
    }

    /// Counts the connection against `ip` from now on instead of its peer
    /// (see [`super::proxy`]), within the per-client cap.
    pub fn reassign(&self, ip: IpAddr) {
        self.table.reassign(self.id, ip);
    }

    /// Resolves once the connection is shed to make room for another (at
    /// once if it was already): it must stop reading and close.
    pub async fn shed(&self) {
        self.activity.0.wait_shed().await;
    }

    /// The TLS handshake of a DoT or DoH connection: None when it fails, takes longer than
    /// `limit`, or the connection is shed meanwhile.
    pub async fn tls_handshake(
        &self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        limit: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        tokio::select! {
            done = timeout(limit, acceptor.accept(stream)) => done.ok()?.ok(),
            () = self.shed() => None,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.table.leave(self.id);
    }
}

/// What a connection reports of its queries (cheap to clone, for the tasks
/// that answer them).
#[derive(Clone)]
pub struct Activity(Arc<State>);

impl Activity {
    /// Marks a query in progress until the returned guard drops.
    pub fn begin_query(&self) -> QueryInProgress {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        self.0.touch();
        QueryInProgress(self.0.clone())
    }

    /// Queries in progress now.
    pub fn queries_in_flight(&self) -> u32 {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    /// When the last query started or ended; None before the first.
    pub fn last_active(&self) -> Option<Instant> {
        self.0.last_active()
    }
}

/// A query in progress on a connection; its drop marks the connection
/// active now.
pub struct QueryInProgress(Arc<State>);

impl Drop for QueryInProgress {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection accepted and admitted, handed to its transport.
pub struct Accepted {
    pub worker: Arc<Worker>,
    pub stream: TcpStream,
    /// The client by its address (the peer's, or the one its PROXY header gives) and by the
    /// table's transport.
    pub hints: ClientHints,
    /// Its place in the connection table, held while it is served.
    pub connection: OpenConnection,
}

/// Accepts connections on one worker's listener until the runtime stops,
/// each admitted to `table` and served by its own task running `serve`
/// (see [`Accepted`]); with `--proxy-protocol-from`, the client is the one
/// its PROXY header gives (see [`super::proxy`]).
pub async fn accept_loop<F, Fut>(
    worker: Arc<Worker>,
    listener: std::net::TcpListener,
    table: Arc<ConnectionTable>,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::from_std(listener)?;
    let proxies = Proxies::from_settings(&worker.shared().settings).map(Arc::new);
    let serve = Arc::new(serve);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Admitted by its peer's address first, so that a connection
        // that never finishes its PROXY header holds a slot the table can shed.
        let connection = match &proxies {
            Some(proxies) if proxies.trusts(peer.ip()) => table.admit_proxied(peer.ip()),
            _ => table.admit(peer.ip()),
        };
        // A graceful stop waits for this connection's answers.
        let inflight = worker.shared().drain.track();
        let Some(proxies) = proxies.clone() else {
            let served = serve(Accepted {
                worker: worker.clone(),
                stream,
                hints: ClientHints::from_peer(peer, table.transport),
                connection,
            });
            tokio::spawn(async move {
                served.await;
                drop(inflight);
            });
            continue;
        };
        let (serve, table, worker) = (serve.clone(), table.clone(), worker.clone());
        tokio::spawn(async move {
            let client = Client {
                worker,
                stream,
                peer,
                connection,
            };
            serve_proxied(client, proxies, table, serve).await;
            drop(inflight);
        });
    }
}

/// A connection from a trusted proxy, before its PROXY header is read.
struct Client {
    worker: Arc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    connection: OpenConnection,
}

/// Reads the PROXY header of a connection from a trusted peer, then serves
/// the client it names (or closes the connection, saying why).
async fn serve_proxied<F, Fut>(
    client: Client,
    proxies: Arc<Proxies>,
    table: Arc<ConnectionTable>,
    serve: Arc<F>,
) where
    F: Fn(Accepted) -> Fut,
    Fut: Future<Output = ()>,
{
    let Client {
        worker,
        mut stream,
        peer,
        connection,
    } = client;
    let named = tokio::select! {
        named = proxies.client(&mut stream, peer) => named,
        () = connection.shed() => return,
    };
    match named {
        Ok(named) => {
            connection.reassign(named.ip());
            serve(Accepted {
                worker,
                stream,
                hints: ClientHints::from_peer(named, table.transport),
                connection,
            })
            .await;
        }
        // Missing and malformed headers come only from trusted
        // peers: a misconfigured load balancer, whose operator
        // needs to hear of it, once in a while rather than for each of
        // its connections. An untrusted header or a dropped connection is
        // anyone's doing, not worth a warning.
        Err(refused @ (Refused::Missing | Refused::Malformed(_))) => {
            if let Some(held_back) = PROXY_REFUSALS.admit(Instant::now()) {
                tracing::warn!(
                    transport = %table.transport,
                    peer = %peer,
                    held_back,
                    "connection closed: {refused} (at most one such line per {} s; held_back \
                     counts the connections closed for this since the last)",
                    PROXY_REFUSAL_LOG_EVERY.as_secs()
                );
            }
        }
        Err(refused) => tracing::debug!(
            transport = %table.transport,
            peer = %peer,
            "connection closed: {refused}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, per_client: usize) -> Arc<ConnectionTable> {
        let limits = Limits {
            max_connections_per_client: per_client,
            ..Limits::default()
        };
        ConnectionTable::new(Transport::Tcp, max, &limits)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn is_shed(c: &OpenConnection) -> bool {
        c.activity.0.shed.load(Ordering::Acquire)
    }

    /// A connection from `client` with a query in progress until the guard is dropped.
    fn admit_busy(t: &Arc<ConnectionTable>, client: &str) -> (OpenConnection, QueryInProgress) {
        let connection = t.admit(ip(client));
        let query = connection.activity().begin_query();
        (connection, query)
    }

    /// Asserts that `shed` was shed (`why`), the first for `reason`, and `kept` were not.
    fn assert_shed(
        t: &ConnectionTable,
        reason: ShedReason,
        why: &str,
        shed: &OpenConnection,
        kept: &[&OpenConnection],
    ) {
        assert!(is_shed(shed), "{why}");
        assert!(kept.iter().all(|c| !is_shed(c)), "only the one {why}");
        assert_eq!(t.shed_count(reason), 1);
    }

    #[test]
    fn handshaking_goes_first_then_idle_longest_then_busy() {
        let t = table(3, 10);
        let (busy, _query) = admit_busy(&t, "192.0.2.1");
        let idle = t.admit(ip("192.0.2.2"));
        drop(idle.activity().begin_query());
        let silent = t.admit(ip("192.0.2.3"));
        let first = t.admit(ip("192.0.2.4"));
        let why = "the one that never asked goes first";
        assert_shed(&t, ShedReason::Handshake, why, &silent, &[&idle, &busy]);
        // `first` has not asked anything either, and is now the oldest such.
        let second = t.admit(ip("192.0.2.5"));
        assert!(is_shed(&first));
        drop(second);
        drop(first);
        assert_eq!(t.open(), 2);
        // With room again nobody is shed; at the cap the idle one goes.
        let third = t.admit(ip("192.0.2.6"));
        drop(third.activity().begin_query());
        let _fourth = t.admit(ip("192.0.2.7"));
        assert_shed(
            &t,
            ShedReason::Idle,
            "idle longest",
            &idle,
            &[&third, &busy],
        );
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn busy_only_when_nothing_else_is_left() {
        let t = table(2, 10);
        let (a, _qa) = admit_busy(&t, "192.0.2.1");
        let (b, _qb) = admit_busy(&t, "192.0.2.2");
        let _c = t.admit(ip("192.0.2.3"));
        let why = "the busy one whose last query is oldest";
        assert_shed(&t, ShedReason::Busy, why, &a, &[&b]);
    }

    #[test]
    fn per_client_cap_sheds_the_clients_own() {
        let t = table(100, 2);
        let other = t.admit(ip("192.0.2.9"));
        let own1 = t.admit(ip("198.51.100.1"));
        let own2 = t.admit(ip("198.51.100.1"));
        let _own3 = t.admit(ip("198.51.100.1"));
        let why = "the client's oldest";
        assert_shed(&t, ShedReason::PerClient, why, &own1, &[&own2, &other]);
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn a_proxied_connection_counts_for_its_real_client() {
        let t = table(100, 2);
        let proxy = ip("127.0.0.1");
        // Many connections from the proxy: its address alone is not capped.
        let held: Vec<_> = (0..5).map(|_| t.admit_proxied(proxy)).collect();
        assert!(held.iter().all(|c| !is_shed(c)));
        // Each is then counted for the client its header names.
        let clients = [
            "192.0.2.1",
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.1",
        ];
        for (connection, client) in held.iter().zip(clients) {
            connection.reassign(ip(client));
        }
        // The third of 192.0.2.1 shed that client's least productive one.
        assert!(is_shed(&held[0]));
        assert!(held[1..].iter().all(|c| !is_shed(c)));
        assert_eq!(t.shed_count(ShedReason::PerClient), 1);
        assert_eq!(t.open(), 4);
        // A direct connection from the client is counted with them.
        let direct = t.admit(ip("192.0.2.2"));
        let _again = t.admit(ip("192.0.2.2"));
        assert!(is_shed(&held[2]), "192.0.2.2's older connection");
        assert!(!is_shed(&direct));
        // Reassigning to the same client, or a shed connection, changes nothing.
        held[3].reassign(ip("192.0.2.3"));
        held[0].reassign(ip("192.0.2.9"));
        assert_eq!(t.open(), 5);
        drop(held);
        assert_eq!(t.open(), 2);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        assert_eq!(
            client_key(ip("2001:db8:1:2ff:aaaa::1"), 56),
            ip("2001:db8:1:200::")
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1"), 56), ip("192.0.2.1"));
        assert_eq!(client_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_key(ip("2001:db8::1"), 0), ip("::"));
        let t = table(100, 1);
        let first = t.admit(ip("2001:db8:0:1::1"));
        let _other_host_same_site = t.admit(ip("2001:db8:0:2::2"));
        assert!(is_shed(&first));
    }

    #[tokio::test]
    async fn shed_wakes_the_connection_even_if_it_waits_later() {
        let t = table(1, 10);
        let first = t.admit(ip("192.0.2.1"));
        let _second = t.admit(ip("192.0.2.2"));
        tokio::time::timeout(Duration::from_secs(5), first.shed())
            .await
            .expect("shed before waiting still counts");
        // Dropping the shed one does not free the newcomer's place.
        drop(first);
        assert_eq!(t.open(), 1);
    }
}
