//! [`Authority`]: an in-process authoritative DNS server that tests start,
//! steer and inspect while it runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::sync::oneshot;

use super::respond::{respond, Settings, Transport};
use super::server;
use super::zone::Zones;

/// An authoritative server on `127.0.0.1:<port>` (UDP and TCP) serving the
/// zones given to [`Authority::start`]. It runs on its own thread and tokio
/// runtime, so the test's runtime (paused clock or not) never drives it.
/// Dropping it stops the server.
pub struct Authority {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// State shared between the test thread and the server thread.
pub(super) struct Shared {
    zones: Mutex<Zones>,
    silent: AtomicBool,
    rcode: Mutex<Option<ResponseCode>>,
    refused_type: Mutex<Option<RecordType>>,
    always_truncated: AtomicBool,
    from_a_cache: AtomicBool,
    nxdomain_for_nodata: AtomicBool,
    forge: AtomicBool,
    forge_case: AtomicBool,
    lowercase: AtomicBool,
    unsigned_referral_ds: AtomicBool,
    ds_by_referral: AtomicBool,
    delay: Mutex<Duration>,
    delay_for: Mutex<HashMap<String, Duration>>,
    udp_limit: Mutex<Option<usize>>,
    ede: Mutex<Option<(u16, String)>>,
    total: AtomicUsize,
    udp: AtomicUsize,
    tcp: AtomicUsize,
    by_name: Mutex<HashMap<String, usize>>,
    received: Mutex<Vec<Message>>,
    udp_sources: Mutex<Vec<SocketAddr>>,
}

/// What the server sends for one query, after `delay`.
pub(super) struct Reply {
    pub delay: Duration,
    pub packets: Vec<Vec<u8>>,
}

impl Authority {
    /// Starts serving `zone` (see [`Zones::parse`] for the format).
    /// Panics on a malformed zone, naming the line.
    pub fn start(zone: &str) -> Authority {
        Self::start_at([127, 0, 0, 1].into(), zone)
    }

    /// Like [`Authority::start`] on another loopback address (any of
    /// 127.0.0.0/8), so a fake hierarchy gives each server its own address,
    /// on a free port: no root needed.
    pub fn start_at(ip: IpAddr, zone: &str) -> Authority {
        let (udp, tcp) = bind_same_port(ip);
        Self::serve(udp, tcp, zone)
    }

    /// Like [`Authority::start`] but on a fixed address, e.g. `127.0.0.10:53`
    /// (port 53 needs root). Panics if the address is taken.
    pub fn start_on(addr: SocketAddr, zone: &str) -> Authority {
        let udp = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind UDP {addr}: {e}"));
        let tcp = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind TCP {addr}: {e}"));
        Self::serve(udp, tcp, zone)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, zone: &str) -> Authority {
        let zones = Zones::parse(zone).unwrap_or_else(|e| panic!("bad test zone: {e}"));
        let addr = udp.local_addr().expect("UDP socket has an address");
        let shared = Arc::new(Shared::new(zones));
        let (shutdown, thread) = server::spawn(Arc::clone(&shared), udp, tcp);
        Authority {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The address serving both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state its encrypted fronts (`encrypted.rs`) answer from.
    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Every message received (UDP datagrams and TCP frames), parsable or not.
    pub fn queries(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Messages received over UDP.
    pub fn udp_queries(&self) -> usize {
        self.shared.udp.load(Ordering::SeqCst)
    }

    /// Messages received over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.shared.tcp.load(Ordering::SeqCst)
    }

    /// Queries whose question name is `name` (case-insensitive, dot optional).
    pub fn queries_for(&self, name: &str) -> usize {
        let key = name_key(&parse_name(name));
        lock(&self.shared.by_name).get(&key).copied().unwrap_or(0)
    }

    /// Every parsable query received, in arrival order, as sent by the client.
    pub fn received(&self) -> Vec<Message> {
        lock(&self.shared.received).clone()
    }

    /// The source address and port of every UDP datagram received, in
    /// arrival order: how a forwarder spreads its queries over ports.
    pub fn udp_sources(&self) -> Vec<SocketAddr> {
        lock(&self.shared.udp_sources).clone()
    }

    /// The most recent parsable query, e.g. to check what a forwarder sent.
    pub fn last_query(&self) -> Option<Message> {
        lock(&self.shared.received).last().cloned()
    }

    /// Zeroes all counters and forgets received queries.
    pub fn reset_counts(&self) {
        for counter in [&self.shared.total, &self.shared.udp, &self.shared.tcp] {
            counter.store(0, Ordering::SeqCst);
        }
        lock(&self.shared.by_name).clear();
        lock(&self.shared.received).clear();
        lock(&self.shared.udp_sources).clear();
    }

    /// Receive and count queries but never answer.
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
    }

    /// Answer every query after `delay`; other queries are not held up.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// Answer queries for `name` after `delay` instead of the global delay,
    /// e.g. to make pipelined TCP answers come back out of order.
    pub fn set_delay_for(&self, name: &str, delay: Duration) {
        let key = name_key(&parse_name(name));
        lock(&self.shared.delay_for).insert(key, delay);
    }

    /// Use `limit` instead of the client's UDP size when deciding TC=1, whatever
    /// its EDNS says: a small limit forces truncation, a large one mimics a
    /// server that ignores the client's size. `None` restores the client's
    /// size (512 without EDNS).
    pub fn set_udp_limit(&self, limit: Option<usize>) {
        *lock(&self.shared.udp_limit) = limit;
    }

    /// Answer SERVFAIL to every query.
    pub fn set_servfail(&self, servfail: bool) {
        self.set_rcode(servfail.then_some(ResponseCode::ServFail));
    }

    /// Answer every query with `rcode` (question echoed, no records), e.g.
    /// FORMERR; `None` answers from the zones again.
    pub fn set_rcode(&self, rcode: Option<ResponseCode>) {
        *lock(&self.shared.rcode) = rcode;
    }

    /// Answer REFUSED to every question of type `rtype` (and from the
    /// zones otherwise), like a server, or the load balancer in front of
    /// it, that botches AAAA but serves A.
    pub fn set_refused_type(&self, rtype: Option<RecordType>) {
        *lock(&self.shared.refused_type) = rtype;
    }

    /// Set TC=1 on every answer, over TCP too (records still in it), as a
    /// broken server might.
    pub fn set_always_truncated(&self, truncated: bool) {
        self.shared
            .always_truncated
            .store(truncated, Ordering::SeqCst);
    }

    /// Answer as a recursive resolver answers from its cache: RA=1, AA=0.
    pub fn set_answers_from_a_cache(&self, cache: bool) {
        self.shared.from_a_cache.store(cache, Ordering::SeqCst);
    }

    /// Answer NXDOMAIN where the answer is NODATA (the proof left as it
    /// is), as old servers did for empty non-terminals.
    pub fn set_nxdomain_for_nodata(&self, nxdomain: bool) {
        self.shared
            .nxdomain_for_nodata
            .store(nxdomain, Ordering::SeqCst);
    }

    /// Before each UDP answer, send a forged one with a wrong ID and one with
    /// the right ID but another question (both carry [`FORGED_V4`]/[`FORGED_V6`]).
    ///
    /// [`FORGED_V4`]: super::FORGED_V4
    /// [`FORGED_V6`]: super::FORGED_V6
    pub fn set_forge(&self, forge: bool) {
        self.shared.forge.store(forge, Ordering::SeqCst);
    }

    /// Before each UDP answer, send a forged one with the right ID and the
    /// right question in swapped case (carrying [`FORGED_V4`]/[`FORGED_V6`]):
    /// what an off-path forger who guessed ID and port but not the 0x20
    /// case would send.
    ///
    /// [`FORGED_V4`]: super::FORGED_V4
    /// [`FORGED_V6`]: super::FORGED_V6
    pub fn set_forge_case(&self, forge: bool) {
        self.shared.forge_case.store(forge, Ordering::SeqCst);
    }

    /// Answer with the question (and every name copied from it) in lower
    /// case, like a server that does not preserve the case it is asked in.
    pub fn set_lowercase_answers(&self, lowercase: bool) {
        self.shared.lowercase.store(lowercase, Ordering::SeqCst);
    }

    /// Send referrals with the child's DS RRset but without its RRSIG, as a
    /// server that trims what it adds to referrals might; a DS query still
    /// gets the RRset signed.
    pub fn set_unsigned_referral_ds(&self, unsigned: bool) {
        self.shared
            .unsigned_referral_ds
            .store(unsigned, Ordering::SeqCst);
    }

    /// Answer a DS question for a delegated name with the referral to it
    /// (NS, and the DS RRset in the authority section), not with the DS
    /// RRset as an answer (Unbound's iter_ds_referral).
    pub fn set_ds_by_referral(&self, referral: bool) {
        self.shared.ds_by_referral.store(referral, Ordering::SeqCst);
    }

    /// Replace all zone data. Panics on a malformed zone.
    pub fn set_records(&self, zone: &str) {
        let zones = Zones::parse(zone).unwrap_or_else(|e| panic!("bad test zone: {e}"));
        *lock(&self.shared.zones) = zones;
    }

    /// Attach an Extended DNS Error (INFO-CODE, EXTRA-TEXT) to every answer
    /// whose query carried EDNS (an OPT may only answer an OPT).
    pub fn set_ede(&self, ede: Option<(u16, String)>) {
        *lock(&self.shared.ede) = ede;
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        if thread.join().is_err() && !std::thread::panicking() {
            panic!("test authority thread panicked");
        }
    }
}

impl Shared {
    fn new(zones: Zones) -> Self {
        Self {
            zones: Mutex::new(zones),
            silent: AtomicBool::new(false),
            rcode: Mutex::new(None),
            refused_type: Mutex::new(None),
            always_truncated: AtomicBool::new(false),
            from_a_cache: AtomicBool::new(false),
            nxdomain_for_nodata: AtomicBool::new(false),
            forge: AtomicBool::new(false),
            forge_case: AtomicBool::new(false),
            lowercase: AtomicBool::new(false),
            unsigned_referral_ds: AtomicBool::new(false),
            ds_by_referral: AtomicBool::new(false),
            delay: Mutex::new(Duration::ZERO),
            delay_for: Mutex::new(HashMap::new()),
            udp_limit: Mutex::new(None),
            ede: Mutex::new(None),
            total: AtomicUsize::new(0),
            udp: AtomicUsize::new(0),
            tcp: AtomicUsize::new(0),
            by_name: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
            udp_sources: Mutex::new(Vec::new()),
        }
    }

    /// Notes where a UDP datagram came from.
    pub(super) fn on_udp_source(&self, peer: SocketAddr) {
        lock(&self.udp_sources).push(peer);
    }

    /// Counts `bytes` and decides the reply; `None` means send nothing.
    pub(super) fn on_query(&self, bytes: &[u8], transport: Transport) -> Option<Reply> {
        let query = Message::from_vec(bytes).ok();
        self.count(query.as_ref(), transport);
        if self.silent.load(Ordering::SeqCst) {
            return None;
        }
        let settings = self.settings();
        let packets = respond(
            bytes,
            query.as_ref(),
            &lock(&self.zones),
            &settings,
            transport,
        );
        let delay = self.delay_of(query.as_ref());
        (!packets.is_empty()).then_some(Reply { delay, packets })
    }

    fn count(&self, query: Option<&Message>, transport: Transport) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let per_transport = match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
        };
        per_transport.fetch_add(1, Ordering::SeqCst);
        let Some(query) = query else { return };
        if let Some(question) = query.queries.first() {
            *lock(&self.by_name)
                .entry(name_key(question.name()))
                .or_default() += 1;
        }
        lock(&self.received).push(query.clone());
    }

    fn settings(&self) -> Settings {
        Settings {
            rcode: *lock(&self.rcode),
            refused_type: *lock(&self.refused_type),
            always_truncated: self.always_truncated.load(Ordering::SeqCst),
            from_a_cache: self.from_a_cache.load(Ordering::SeqCst),
            nxdomain_for_nodata: self.nxdomain_for_nodata.load(Ordering::SeqCst),
            forge: self.forge.load(Ordering::SeqCst),
            forge_case: self.forge_case.load(Ordering::SeqCst),
            lowercase: self.lowercase.load(Ordering::SeqCst),
            unsigned_referral_ds: self.unsigned_referral_ds.load(Ordering::SeqCst),
            ds_by_referral: self.ds_by_referral.load(Ordering::SeqCst),
            udp_limit: *lock(&self.udp_limit),
            ede: lock(&self.ede).clone(),
        }
    }

    fn delay_of(&self, query: Option<&Message>) -> Duration {
        let per_name = query
            .and_then(|q| q.queries.first())
            .and_then(|q| lock(&self.delay_for).get(&name_key(q.name())).copied());
        per_name.unwrap_or_else(|| *lock(&self.delay))
    }
}

/// Binds UDP on a free port, then TCP on the same port; retries when another
/// process already holds that TCP port.
fn bind_same_port(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind UDP on {ip}: {e}"));
        let port = udp.local_addr().expect("UDP address").port();
        if let Ok(tcp) = TcpListener::bind((ip, port)) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

/// Parses a test-supplied name as absolute, keeping its case (the UTF-8
/// parser would lowercase it, and tests may want mixed case on the wire).
pub(super) fn parse_name(name: &str) -> Name {
    let mut parsed = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// Counter key: lowercase, absolute, ASCII.
fn name_key(name: &Name) -> String {
    name.to_lowercase().to_ascii()
}

/// A panicking test must not turn every later lock into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
