//! Every resource bound in one place, with where its default comes from, so a
//! reader can audit how Picket sheds load by reading constants.

use std::time::Duration;

/// Resource bounds. At each bound Picket sheds load in the documented way and
/// counts it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest UDP response we send (DNS Flag Day 2020: 1232 avoids IP
    /// fragmentation on nearly every path). Larger answers get TC=1.
    pub max_udp_payload: u16,
    /// Open TCP connections, all workers together (DoT and DoH have their
    /// own caps). At the cap a new connection is still admitted and the
    /// least productive open one is shed instead: one that has not sent a
    /// query yet (oldest first), else the one idle longest, and one with
    /// queries in flight only when all are busy (`src/listener/conns.rs`).
    /// Unbound and NSD refuse the newcomer instead, so half-open
    /// connections lock clients out until their timers fire. Default from
    /// Unbound's `incoming-num-tcp` (10 per thread) scaled for a
    /// laptop-to-edge range; NSD's `-n` is 100.
    pub tcp_max_connections: usize,
    /// Open connections one client may hold on each stream transport (TCP,
    /// DoT and DoH counted apart). A client at the cap that opens another
    /// sheds its own least productive connection, never someone else's, so
    /// it needs many addresses to fill the global cap. An eighth of the
    /// global cap: room for an office NAT where every phone keeps a DoT
    /// connection open (Android's Private DNS does), and a connection shed
    /// there is one of that client's own that it reopens when it needs it.
    /// PowerDNS `max-tcp-per-client` and dnsdist
    /// `setMaxTCPConnectionsPerClient` have no limit by default.
    pub max_connections_per_client: usize,
    /// IPv6 clients are counted per prefix of this length for
    /// `max_connections_per_client` (IPv4 per address): a host may use any
    /// address of its /64 and a site is usually delegated a /56 (RIPE-690),
    /// so /56 is one household or office, as one IPv4 address behind NAT
    /// is. Same grouping as the rate limiter (`src/admission.rs`).
    pub connection_client_prefix_v6: u8,
    /// Idle time after which a TCP, DoT or DoH connection is closed (RFC 7766
    /// §6.2.3 suggests seconds; Unbound's `tcp-idle-timeout` is 30 s).
    pub tcp_idle_timeout: Duration,
    /// Idle time used instead once connections pass 3/4 of the cap, so that
    /// idle clients make room (Unbound shortens likewise under pressure).
    pub tcp_idle_timeout_pressure: Duration,
    /// Queries one TCP connection may have outstanding (RFC 7766 §6.2.1.1
    /// pipelining); further reads wait. Unbound: `max-reuse-tcp-queries` 200.
    pub tcp_max_pipelined: usize,
    /// Upstream queries in flight across all workers. Over it, a miss gets
    /// SERVFAIL with EDE 14 (Not Ready). Unbound: `num-queries-per-thread` 1024.
    pub max_upstream_inflight: usize,
    /// Upstream sockets in use by queries at once, UDP and TCP, forwarding
    /// and recursion, all workers together. Each UDP query leases a socket
    /// of its own from its worker's pool (`upstream_udp_pool`; RFC 5452
    /// §9.2) for the exchange, never shared with another query; over the
    /// bound, a miss gets SERVFAIL with EDE 14 (Not Ready) rather than
    /// share one. Unbound's `outgoing-range` 4096. Each query holds one
    /// socket at a time under `max_upstream_inflight`, so this binds only
    /// if that is raised. Idle pooled sockets are not in use; with them
    /// the process holds at most this plus `upstream_udp_pool` upstream
    /// sockets, which must stay below its open-file limit (Picket raises
    /// the soft `ulimit -n` to the hard one at start; docs/deployment.md
    /// sets 65536).
    pub max_upstream_sockets: usize,
    /// Pooled upstream UDP sockets, all workers together (each worker a
    /// table of its share, at most `max_upstream_sockets` in all). A query
    /// draws a slot at random, so an off-path forger who knew every pooled
    /// port would still have to guess which one: log2(slots per worker)
    /// bits on top of the 16-bit ID and 0x20 (README "Forged answers").
    /// 4096 as Unbound's `outgoing-range`, the number of ports it draws
    /// from at once; a fresh port per query drew from the kernel's 28,232.
    pub upstream_udp_pool: usize,
    /// Answered queries a pooled socket serves on one source port before
    /// the port is drawn again (the socket disconnected and connected
    /// anew, so the kernel binds another random port). A fresh port costs
    /// two connect() calls; 32 uses make it ~1/32 of a query's socket cost
    /// while a port found by a scan (SAD DNS) serves few queries.
    pub upstream_socket_max_uses: u32,
    /// Age after which a pooled socket's port is drawn again however few
    /// queries it served, so idle ports do not stay open for a scan to find.
    pub upstream_socket_max_age: Duration,
    /// Recursive mode: answered queries one authoritative server's port
    /// serves before it is released and the kernel draws another. The
    /// iterator's socket for a server stays connected to it after an answer
    /// (README "Forged answers"): a fresh port per query cost two connect()
    /// calls, a tenth of a new name's CPU in the recursion bench; 8 uses
    /// make that an eighth while a port learnt by a scan (SAD DNS) serves at
    /// most 7 more queries (fewer once idle `recursion_port_max_age`).
    pub recursion_port_max_uses: u32,
    /// Recursive mode: age after which an authoritative server's port is
    /// released however few queries it served (the worker's sweep releases
    /// idle ones within a second of it): a fifth of the forwarder's
    /// `upstream_socket_max_age`, since each authority port serves one
    /// server's queries only and the table it is drawn from is small.
    pub recursion_port_max_age: Duration,
    /// DoT connections one worker keeps open to one upstream. Queries are
    /// pipelined on them (RFC 7766 §6.2.1.1), so one is enough until it
    /// holds `upstream_stream_pipelined` queries; a second takes the
    /// overflow. Unbound: `outgoing-num-tcp` 10 per thread for all servers
    /// together. At the bound, with every connection full, a miss gets
    /// SERVFAIL with EDE 14. (DoH and DoQ keep one connection per upstream
    /// and multiplex on it, within the server's stream limit.)
    pub upstream_stream_connections: usize,
    /// Queries outstanding on one upstream DoT connection before another
    /// is opened. 100, the smallest stream limit RFC 9113 §6.5.2 asks HTTP/2
    /// servers to allow, so DoT and DoH upstreams see the same concurrency;
    /// Unbound's listeners take 200 per connection (`max-reuse-tcp-queries`).
    pub upstream_stream_pipelined: usize,
    /// An upstream DoT/DoH/DoQ connection with nothing outstanding this long
    /// is closed. Unbound's own listeners close idle clients at 30 s
    /// (`tcp-idle-timeout`), so a connection kept longer would mostly be
    /// closed under us; RFC 7858 §3.4 asks clients to reuse connections
    /// and close them when idle.
    pub upstream_stream_idle_timeout: Duration,
    /// After a failed connection attempt (TCP, TLS or QUIC handshake) to an
    /// encrypted upstream, no new attempt is made for this long, doubling on
    /// each further failure up to `upstream_reconnect_backoff_max`; queries
    /// meanwhile fail over to the other upstreams at once. The maximum is
    /// how long `Health` remembers a failure (30 s), so a dead upstream is
    /// retried about once per failure memory; the minimum is Unbound's
    /// first UDP retransmission timeout (376 ms), rounded down.
    pub upstream_reconnect_backoff_min: Duration,
    pub upstream_reconnect_backoff_max: Duration,
    /// Upstream fetches one client address may have waiting at once, so one
    /// client cannot take the whole global bound. Over it, a miss gets
    /// SERVFAIL with EDE 14 (Not Ready). A quarter of the global bound:
    /// like Knot Resolver's per-client request limits, generous enough for a
    /// NAT gateway of a small office.
    pub max_inflight_per_client: u32,
    /// Queries that may wait on one upstream fetch besides the one that
    /// started it (identical misses are coalesced, so a slow name gathers
    /// them). Past it a query gets SERVFAIL with EDE 14 (Not Ready) at once,
    /// or the stale answer under `--stale-window`. A waiting query holds
    /// about 1 KiB (its parsed request and task), so one name holds at most
    /// ~1 MiB. 1024 lets a name asked 1,000 times a second wait a whole
    /// second for its upstream without a refusal, and matches the
    /// per-client bound, so one client alone never meets this one first.
    /// BIND turns away past `clients-per-query` 10, auto-tuned up to
    /// `max-clients-per-query` 100; Unbound bounds only its whole mesh.
    pub max_followers_per_fetch: usize,
    /// Recursive mode: the deepest a resolution may go, counting each zone
    /// cut descended (one QNAME-minimisation step each), plus one per
    /// glueless nameserver name chased and per CNAME followed across zones.
    /// 24, hickory's recursor default `recursion_limit`; Unbound stops a
    /// run-away descent at `MAX_REFERRAL_COUNT` 130 referrals, Knot at `KR_ITER_LIMIT` 100 iterations. Over it: SERVFAIL.
    pub recursion_max_depth: u8,
    /// Recursive mode: most CNAME (or DNAME-synthesised CNAME) records one
    /// answer may chain through. Unbound `max-query-restarts` 11, Knot
    /// `KR_CNAME_CHAIN_LIMIT` 13. Links delivered in one response count as
    /// much as links fetched one by one. Over it: SERVFAIL.
    pub recursion_max_cname_chain: usize,
    /// Recursive mode: upstream queries one client query may cause, DNSSEC
    /// key and DS fetches included (NXNSAttack, CVE-2020-12662). PowerDNS
    /// `max-qperq` 50 (the NXNS patch); Unbound `max-sent-count` 32 per
    /// query state and `max-global-quota` 200 in all. Every query sent on
    /// the client's behalf counts: glueless nameserver lookups, TCP retries
    /// and DNSSEC key fetches too. Over it: SERVFAIL.
    pub recursion_max_queries: usize,
    /// Recursive mode: how long one client query may take in all before it
    /// gets SERVFAIL (EDE 22). PowerDNS `max-total-msec` 7000, Knot
    /// `KR_RESOLVE_TIME_LIMIT` 10 s; shorter here because stub resolvers
    /// give up after 5 s (glibc) and retry.
    pub recursion_timeout: Duration,
    /// Recursive mode: the longest wait for one authoritative server before
    /// trying the next, and the wait for a server never measured. Once a
    /// server has answered, its wait is its RTO (RFC 6298: smoothed RTT plus
    /// four deviations, at least [`RECURSION_MIN_ATTEMPT_TIMEOUT`]), capped
    /// by this. hickory waits 5 s; Unbound starts at 376 ms and backs off to
    /// 120 s; BIND at 800 ms.
    pub recursion_attempt_timeout: Duration,
    /// Recursive mode: a failed resolution (SERVFAIL, timeout, lame, bogus)
    /// is answered from a failure cache for this long first, doubling on each
    /// consecutive failure of the same question up to
    /// [`recursion_failure_ttl_max`](Self::recursion_failure_ttl_max).
    /// RFC 9520 §3.2: at least 1 s, with backoff; Unbound caches SERVFAIL
    /// for 5 s (`serve-expired-client-timeout` aside), BIND `servfail-ttl` 1 s.
    pub recursion_failure_ttl: Duration,
    /// Recursive mode: how long after a failed root priming (RFC 8109) the
    /// next resolution tries again; meanwhile the root hints are used.
    /// Unbound retries priming with the next query that needs the root.
    pub recursion_priming_retry: Duration,
    /// Recursive mode: cap of the failure cache's backoff. RFC 9520 §3.2:
    /// "SHOULD NOT be longer than five minutes".
    pub recursion_failure_ttl_max: Duration,
    /// Recursive mode: after this many consecutive timeouts an authoritative
    /// server's address is not queried at all for a hold-down (5 s, doubling
    /// up to 5 min), so a silent delegation costs one timeout, not one per
    /// query (RFC 9520 §3.1; Unbound's infra cache does the same with
    /// `infra-host-ttl`).
    pub recursion_server_timeouts: u32,
    /// Recursive mode: RRSIGs kept per RRset of an upstream response; the
    /// rest are dropped before validation (KeyTrap, CVE-2023-50387).
    /// hickory tries at most 9 per RRset, but any number on a DNSKEY RRset;
    /// Unbound 1.19.1 caps signature work likewise (8).
    pub recursion_max_rrsigs_per_rrset: usize,
    /// Recursive mode: DNSKEYs kept per key tag in an upstream response
    /// (KeyTrap's colliding key tags). hickory keeps 2 per tag when it uses
    /// keys but none when it validates the DNSKEY RRset itself.
    pub recursion_max_keys_per_tag: usize,
    /// Recursive mode: bytes of the iterator's infrastructure cache, shared
    /// by every worker, outside `--cache-size`: delegations (zone →
    /// nameserver names and addresses) get half, nameserver-name addresses
    /// a quarter, per-server facts (RTT, timeouts, hold-down) and lame
    /// (server, zone) pairs an eighth each. Each entry is weighed by an
    /// estimate of its names and addresses plus moka's ~540 B of
    /// bookkeeping: a delegation with two names and glue is ~900 B, so
    /// 16 MiB holds ~9,000 delegations, ~15,000 nameserver names and
    /// ~3,500 servers. Unbound: `infra-cache-numhosts` 10,000 hosts
    /// (~4 MB) plus the delegations in its 4 MB `rrset-cache`.
    pub recursion_infra_cache_bytes: u64,
    /// Open DoH connections, all workers together; at the cap the least
    /// productive is shed, as for TCP. Same default as `tcp_max_connections`
    /// (Unbound counts DoH and DoT against its `incoming-num-tcp` too), kept
    /// separate so that one transport cannot starve the others.
    pub doh_max_connections: usize,
    /// Open DoT connections, all workers together (see `doh_max_connections`).
    pub dot_max_connections: usize,
    /// Time a client has to complete the TLS handshake, counted from accept,
    /// while it holds a connection slot. TLS 1.3 needs one round trip and 1.2
    /// two, so 5 s covers a 600 ms satellite path several times over; hickory's
    /// `tcp_request_timeout` is 5 s as well.
    pub tls_handshake_timeout: Duration,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS for DoH: Unbound's
    /// `http-max-streams` default, and the floor RFC 9113 §6.5.2 recommends.
    pub doh_max_streams: u32,
    /// Largest request head (HTTP/1.1 request line and headers; HTTP/2
    /// SETTINGS_MAX_HEADER_LIST_SIZE). hyper's HTTP/2 default, and twice
    /// nginx's `large_client_header_buffers` line of 8k; a GET `?dns=` query
    /// of a full-size name with EDNS is well under 1 KiB.
    pub doh_max_header_bytes: usize,
    /// Time a DoH POST body has to arrive once its request head is in: the
    /// slow-body defence (a DNS query is one packet; nginx's
    /// `client_body_timeout` is 60 s between reads). A slow head is not a
    /// request yet, so the connection's idle timeout ends it (the TCP ones:
    /// `tcp_idle_timeout`, or `tcp_idle_timeout_pressure` near the cap).
    pub doh_body_timeout: Duration,
    /// Longest PROXY protocol v2 header read from a trusted proxy
    /// (`--proxy-protocol-from`), address block and TLVs included; a longer
    /// one closes the connection as soon as its length field is read. The
    /// addresses take at most 232 bytes (AF_UNIX); HAProxy's TLVs (ALPN,
    /// authority, unique ID, SSL details) and AWS NLB's (VPC endpoint ID)
    /// add some hundreds. 4 KiB holds all of that with room, and is nginx's
    /// bound (`NGX_PROXY_PROTOCOL_MAX_HEADER`, 4096).
    pub proxy_header_max_bytes: usize,
    /// Time a connection has, from accept, to deliver its whole PROXY
    /// header when its peer is a trusted proxy (else it is closed); and how
    /// long an untrusted peer's first bytes are watched for a header before
    /// it is served as it is. A proxy writes the header at once with its
    /// connect, so this only bounds a stuck or hostile peer's hold on a
    /// connection slot; the same as `tls_handshake_timeout`, the other
    /// bound on a connection that has not asked anything yet. nginx's
    /// stream `proxy_protocol_timeout` is 30 s; shorter here because a slot
    /// held without a query is what the connection table sheds first anyway.
    pub proxy_header_timeout: Duration,
    /// DNSSEC: signature verifications one `Validator::validate` call may
    /// make, the whole chain of trust included (KeyTrap, CVE-2023-50387:
    /// colliding key tags times many RRSIGs made one answer cost hours of
    /// CPU). A cold chain root → TLD → zone costs about 3 DNSKEY + 2 DS +
    /// the answer and its proofs (~10); 32 leaves room for a CNAME chain
    /// across a few zones. Past it the answer is bogus (EDE 6). BIND 9.18.24
    /// caps validations per fetch at 16 (`max-validations-per-fetch`) and
    /// Unbound 1.19.1 suspends after 8 at once.
    pub dnssec_max_verifications: u32,
    /// DNSSEC: DNSKEYs tried for one RRSIG (keys with the RRSIG's key tag
    /// and algorithm). Honest zones have one, two during a rollover with a
    /// tag collision at worst; KeyTrap uses hundreds. 4 allows a collision
    /// during a rollover with room to spare (hickory's validator keeps 2).
    pub dnssec_max_keys_per_tag: usize,
    /// DNSSEC: RRSIGs tried per RRset (one per algorithm and key in a
    /// rollover: 2-4 in practice). Unbound 1.19.1 caps signature work at 8;
    /// so does Picket. RRSIGs past it are not tried.
    pub dnssec_max_rrsigs_per_rrset: usize,
    /// DNSSEC: NSEC3 hash computations per `validate` call (CVE-2023-50868:
    /// closest-encloser proofs of long names hash every ancestor). A proof
    /// for a name of n labels below the zone needs n + 2; 64 covers names
    /// far deeper than any real one. Past it the answer is bogus (EDE 6).
    /// Unbound 1.19.1 suspends after 8 hash calculations and then goes on;
    /// Picket stops instead, as Knot Resolver does with its limit.
    pub dnssec_max_nsec3_hashes: u32,
    /// DNSSEC: NSEC3 iterations above which a denial is treated as insecure
    /// (RFC 9276 §3.2, EDE 27). BIND 9.18 and Knot Resolver 5.7 use 50;
    /// Unbound 1.21 uses 150. Picket follows the stricter pair.
    pub dnssec_max_nsec3_iterations: u16,
    /// DNSSEC: zones whose validated DNSKEY set, or proven insecure or bogus
    /// state, the validator keeps (each entry a few hundred bytes, so the
    /// default is ~5 MB at most). Entries live for their RRsets' TTL (at
    /// most `dnssec_key_cache_max_ttl`); insecure and bogus verdicts for
    /// `dnssec_verdict_ttl`. Unbound's `key-cache-size` is 4 MB.
    pub dnssec_key_cache_entries: u64,
    /// DNSSEC: longest a validated key set is trusted without fetching it
    /// again, whatever its TTL says (Unbound's `cache-max-ttl` is 1 day).
    pub dnssec_key_cache_max_ttl: Duration,
    /// DNSSEC: how long "zone Z is insecure" or "zone Z is bogus" is kept
    /// (Unbound keeps bogus key entries `val-bogus-ttl`, 60 s).
    pub dnssec_verdict_ttl: Duration,
    /// Open DoQ connections (all QUIC listeners together); at the cap the
    /// least productive is shed, as for TCP (DoH over HTTP/3 counts against
    /// `doh_max_connections`, with DoH over HTTP/2). Same default as
    /// `dot_max_connections`, the transport DoQ replaces; a QUIC connection
    /// holds no file descriptor, but its state (about 10 KiB in quinn plus
    /// buffers) is what the cap bounds.
    pub doq_max_connections: usize,
    /// Bidirectional streams (queries) a DoQ client may have open at once on
    /// one connection (QUIC's MAX_STREAMS; RFC 9250 §5.5 asks for at least
    /// 100 so clients are not held back). Same as `doh_max_streams`.
    pub doq_max_streams: u32,
    /// Idle time after which a DoQ or DoH3 connection is closed (QUIC's
    /// max_idle_timeout, RFC 9000 §10.1, announced to the client). Same as
    /// `tcp_idle_timeout`: RFC 9250 §5.5 asks servers to close idle
    /// connections like RFC 7766 TCP ones.
    pub quic_idle_timeout: Duration,
    /// Time a DoQ stream has to deliver its query and FIN once opened: the
    /// slow-body defence of `doh_body_timeout`, with its default. Past it
    /// the stream is reset with DOQ_REQUEST_CANCELLED.
    pub doq_stream_timeout: Duration,
    /// Largest policy bundle accepted (`--policy-url`, `picket bundle verify`, `picket check`),
    /// checked before the signature so a hostile server cannot make a node hold more. A bundle
    /// carries its list files: a 1M-domain list is about 25 MB of text, so 256 MiB holds a
    /// policy with several such lists; larger feeds belong in list URLs of their own. The whole
    /// bundle is held in memory while it is verified and loaded.
    pub max_bundle_bytes: u64,
    /// Largest list download (`"url"` lists), counted while it arrives: past it the download
    /// is cut off and the old list kept. Same reasoning as `max_bundle_bytes` for one list: the
    /// largest public blocklists (OISD big, HaGeZi ultimate) are under 100 MB.
    pub max_list_download_bytes: u64,
    /// Time to connect and finish the TLS handshake with a bundle or list server. curl's
    /// `--connect-timeout` in most scripts is 10 s; a CDN answers in well under one.
    pub fetch_connect_timeout: Duration,
    /// Time a whole bundle or list download may take, connection included: 256 MiB at
    /// 20 Mbit/s is about 100 s, so 120 s; past it the download counts as failed and the last
    /// good copy keeps serving.
    pub fetch_timeout: Duration,
    /// Shortest `--policy-interval` and list `"refresh"`: once a second per node, so a typo
    /// (`"refresh": "1"`) cannot make a fleet hammer a server, while tests can still watch a
    /// node pick up a change in seconds. ETag requests answered 304 cost the server little.
    pub min_fetch_interval: Duration,
    /// Queries the dashboard's "recent queries" ring holds (`/api/recent`),
    /// the oldest dropped first. The query log keeps everything; this is for
    /// a glance at what just happened: 1,000 is a few seconds of a busy
    /// node and minutes of a home network, the order of Pi-hole's and AdGuard
    /// Home's default pages, at about 300 bytes each (~300 KB).
    pub dashboard_recent_queries: usize,
    /// Space-Saving counters per top-N list (names, blocked names, rules,
    /// clients, organizations) per window of `TOP_WINDOW`: any key above
    /// 1/256 of a window's queries is guaranteed to be listed, which is
    /// deeper than any top-N a page shows (Pi-hole shows 10 and lets you
    /// ask for 100). About 100 bytes each: 5 lists × 6 windows × 256 ≈ 770 KB
    /// at most.
    pub dashboard_top_keys: usize,
    /// Queries one worker thread hands the dashboard between two collections
    /// (every 250 ms). Past it a query is still counted, but not listed in
    /// the top-N lists and recent ring until the next collection (the API
    /// says how many were not). 16,384 per 250 ms is 65,000 q/s per worker
    /// listed in full, about a worker's capacity on a forwarded-miss mix,
    /// at ~80 bytes per query (~1.3 MB per worker at most); past that, the
    /// lists are a sample, which is what they estimate anyway.
    pub dashboard_pending_per_worker: usize,
    /// Upstream servers whose latency the dashboard charts (the first ones
    /// to answer); exchanges with more are counted as untracked. resolv.conf
    /// names at most 3 (glibc MAXNS), a forwarding setup rarely more than a
    /// handful; 16 leaves room for policy upstream groups. Each costs a
    /// histogram of 81 buckets per slot it was used in (~120 KB per hour).
    pub dashboard_upstreams: usize,
    /// Block-page answers remembered by (client address, name), so the page
    /// can name the rule that answered that client (`src/blockpage/mod.rs`).
    /// At the bound the least recently used are evicted (moka), and a page
    /// for a forgotten answer evaluates the policy again instead. A browser
    /// opens the page within a second of its lookup; 16,384 is minutes of
    /// block-page answers on a busy node, at about 200 bytes each (~3 MB).
    pub block_page_recent: u64,
    /// How long a remembered block-page answer is trusted: the rule's block
    /// TTL is seconds, so a browser that asks later resolved again (or used
    /// its own cache, and the policy fallback answers it). Ten minutes keeps
    /// entries across a browser's DNS cache (Chromium: 1 minute; Firefox: 1
    /// minute by default, up to the TTL) with room to spare.
    pub block_page_recent_ttl: Duration,
    /// Block-page connections served at once, HTTP and HTTPS together; more
    /// wait in the kernel's backlog. One request per connection (no
    /// keep-alive) and the header timeout below bound how long each holds
    /// its place, so slow clients (slowloris) delay others by at most that.
    pub block_page_max_connections: usize,
    /// A block-page client must finish its TLS handshake (HTTPS) and send its
    /// request head within this time: nginx's `client_header_timeout` is 60 s,
    /// a browser sends its head at once, so 5 s as for the admin listener.
    pub block_page_header_timeout: Duration,
    /// Largest request head a block-page client may send (hyper's smallest
    /// buffer, 8 KiB: Apache's `LimitRequestFieldSize` is 8190 bytes per
    /// field). A longer head is refused (431) and the connection closed.
    pub block_page_max_header_bytes: usize,
}

/// Slots a query draws from its worker's upstream UDP pool while the drawn
/// ones are busy with other queries, before it takes a socket of its own
/// (opened and closed for it, as before the pool). With a quarter of the
/// slots busy, 4 draws find a free one 99.6% of the time.
pub const UPSTREAM_POOL_DRAWS: usize = 4;

/// How often a worker releases the ports of its pooled upstream sockets
/// idle past `upstream_socket_max_age` (so an idle port stays open at most
/// this much longer than the age).
pub const UPSTREAM_POOL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Slots of the upstream pool swept at once before the worker's other
/// tasks run: a disconnect is a system call of a microsecond or two, so a
/// slice of ports that aged together holds queries up well under a
/// millisecond.
pub const UPSTREAM_POOL_SWEEP_SLICE: usize = 256;

/// Heap blocks of this size or more get a mapping of their own, returned to the system when
/// freed (glibc's `M_MMAP_THRESHOLD`, set once at start: `crate::reload::map_large_blocks_apart`).
/// glibc's own threshold starts at 128 KiB but rises to the size of every mapped block freed (up
/// to 32 MiB), so from the second rebuild of a list on, the new table (16 MiB for 1M domains) was
/// carved from a malloc arena, which keeps the pages of the table it replaces: a reload of a
/// rewritten 1M-domain list file then peaked at 1.54-1.55x steady RSS in two release runs of
/// three (`benches/reload_rss.sh`). 1 MiB is far above what answering a query allocates (a
/// message is at most 64 KiB), so only list tables and other bulk buffers pay the `mmap` call.
/// glibc's malloc is Rust's allocator unless the binary is built with `--features mimalloc`.
pub const MAP_APART_BYTES: usize = 1 << 20;

/// Jitter of the bundle and list poll intervals, as a fraction either side of the interval: a
/// fleet restarted at once spreads its polls out instead of hitting the server in step.
/// ±10% is what Kubernetes' `wait.Jitter` and most CDN-polling agents use.
pub const FETCH_JITTER: f64 = 0.1;

/// Length of one slot of the dashboard's history: counters and latency are
/// kept per slot. 10 s is Grafana's usual finest step for an hour-long
/// panel, and 360 points fit a phone-width chart.
pub const SLOT: Duration = Duration::from_secs(10);

/// Slots of history the dashboard keeps (an hour of [`SLOT`]s): the charts
/// cover the last hour, as the issue asks; older slots are overwritten.
pub const HISTORY_SLOTS: usize = 360;

/// The dashboard's top-N lists are kept per window of this length and the
/// last [`TOP_WINDOWS`] windows are merged when asked, so a list shows about
/// the last hour (between 50 and 60 minutes), not everything since start.
pub const TOP_WINDOW: Duration = Duration::from_secs(600);

/// Windows of [`TOP_WINDOW`] merged into a top-N list (an hour).
pub const TOP_WINDOWS: usize = 6;

/// Glueless nameserver names the iterator chases per delegation, always the
/// first ones in the referral's order, so a referral to 100 address-less
/// nameservers costs at most 5 name resolutions however often it is met
/// (NXNSAttack, CVE-2020-12662). hickory's recursor `MAX_GLUELESS_FOLLOW`,
/// Unbound `MAX_TARGET_NX` 5; PowerDNS `max-ns-address-qperq` 10. Tested in
/// `tests/recursion.rs`; [`Limits::recursion_max_queries`] caps the total.
pub const RECURSION_GLUELESS_NS_FOLLOWED: usize = 5;

/// Glueless nameserver names resolved at once for one delegation: two
/// gives a second chance when the first name is slow or dead, without
/// spending the query budget on names that are not needed. Unbound
/// fetches targets one by one (`target-fetch-policy` "3 2 1 0 0").
pub const RECURSION_GLUELESS_PARALLEL: usize = 2;

/// QNAME-minimisation steps (RFC 9156) one resolution takes below a zone cut
/// before it sends the full name: a name with many labels under one zone
/// would otherwise cost one query per label. Unbound's `MAX_MINIMISE_COUNT`
/// 10; RFC 9156 §2.3 suggests 10 as `MAX_MINIMISE_COUNT` too.
pub const RECURSION_QNAME_MIN_STEPS: usize = 10;

/// Servers whose smoothed RTT is within this of the best one's are chosen
/// among at random, so a server that got faster is found again (exploration);
/// slower ones are asked only when the others fail. Unbound's `RTT_BAND` 400 ms.
pub const RECURSION_RTT_BAND: Duration = Duration::from_millis(400);

/// RTT assumed for a server never asked: Unbound's `UNKNOWN_SERVER_NICENESS`
/// 376 ms, so a new server is within the band of a known fast one and gets
/// tried, but not before one known to answer in under 0 ms.
pub const RECURSION_UNKNOWN_RTT: Duration = Duration::from_millis(376);

/// Least per-attempt timeout however fast a server has been (RFC 6298 §2.4
/// rounds the RTO up to 1 s for TCP; DNS over UDP on a LAN is far faster, and
/// Unbound's `RTT_MIN_TIMEOUT` is 50 ms).
pub const RECURSION_MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(50);

/// How long a server that answered a zone's question lamely (REFUSED,
/// SERVFAIL, an upward referral) is not asked about that zone again.
/// Unbound's `infra-lame-ttl` 900 s; shorter here, since a misconfigured
/// server is often fixed within minutes of being noticed.
pub const RECURSION_LAME_TTL: Duration = Duration::from_secs(300);

/// Longest a delegation (NS set and addresses) is kept, whatever its TTL:
/// Unbound's `cache-max-ttl` 1 day; RFC 8767 §4 suggests capping TTLs at 7 days.
pub const RECURSION_MAX_DELEGATION_TTL: Duration = Duration::from_secs(86_400);

/// Facts about servers (RTT, timeouts, hold-downs) are forgotten after this
/// long unused, so a server is measured again: Unbound's `infra-host-ttl` 900 s.
pub const RECURSION_SERVER_FACTS_TTL: Duration = Duration::from_secs(900);

/// First hold-down of an authoritative server that keeps timing out; it
/// doubles with each hold-down in a row up to `recursion_failure_ttl_max`.
/// RFC 9520 §3.1 asks for a backoff; Unbound probes a timed-out host again
/// after a few seconds too (its `infra-host-ttl` keeps the record 900 s).
pub const RECURSION_HOLDDOWN_BASE: Duration = Duration::from_secs(5);

/// EDNS payload the iterator advertises to authoritative servers: DNS Flag
/// Day 2020's 1232 bytes, which avoids IP fragmentation on nearly every
/// path (fragments are what off-path forgers inject into); larger answers
/// come with TC=1 and are fetched over TCP.
pub const RECURSION_EDNS_PAYLOAD: u16 = 1232;

/// NSEC records kept per zone for aggressive negative answers (RFC 8198),
/// and as many NSEC3 records (by owner hash); past it the expired ones go,
/// then the first in canonical (or hash) order. At
/// ~300 bytes a record with its RRSIG, ~300 KB per zone at most; the zones
/// kept are bounded by `RECURSION_AGGRESSIVE_NSEC_BYTES`.
pub const RECURSION_AGGRESSIVE_NSEC_PER_ZONE: usize = 1024;

/// Bytes of validated NSEC and NSEC3 records kept for aggressive use (RFC 8198), all zones
/// together (each zone's entry weighed by its records, erring high); the least recently used
/// zone goes first. Outside `--cache-size`, like the infrastructure cache: part of the constant
/// README's recursive section adds to the cache budget for Picket's RSS.
pub const RECURSION_AGGRESSIVE_NSEC_BYTES: u64 = 8 << 20;

/// Times a recursive resolution whose answer was found bogus is asked again,
/// the servers that gave it left to the last resort (Unbound's
/// `val-max-restart` is 5; each attempt draws from the same query budget).
pub const RECURSION_BOGUS_RETRIES: usize = 2;

/// Questions the recursion failure cache (RFC 9520) holds at most; past it
/// the expired ones go first, then everything (losing it costs only
/// upstream queries). At ~100 bytes an entry, ~6.5 MB at most.
pub const RECURSION_MAX_FAILURES: usize = 65_536;

/// Longest UDP query read: a datagram past it is malformed, counted and
/// answered FORMERR (header only) or dropped, never served from its first
/// bytes. A query is a header, one question and an OPT record with a few
/// options (cookies, ECS, padding to 128-byte blocks per RFC 8467): a few
/// hundred bytes. 4096 is the EDNS buffer size of older resolvers (BIND,
/// Unbound before DNS Flag Day 2020), so no client sends more expecting to
/// be read; Unbound and Knot read UDP queries into buffers of about this size.
pub const MAX_UDP_QUERY: usize = 4096;

/// Prefetch: a hit in the last [`PREFETCH_WINDOW_DIVISOR`]th of an entry's lifetime refreshes
/// it in the background (like Unbound's `prefetch`, which uses the last 10 %).
pub const PREFETCH_WINDOW_DIVISOR: u32 = 10;

/// Prefetch: entries fresh for less than this many seconds are not refreshed early (their
/// last tenth is under a second, and a name that short-lived is refetched on a miss anyway).
pub const PREFETCH_MIN_LIFETIME: u32 = 10;

/// Least randomness, in bits, a DoH path token or DoT server name label may have, as
/// estimated by `policy::token::estimate_bits`; a policy with a weaker one does not load.
/// They are bearer identifiers (whoever presents one gets its organization's policy), so they
/// must not be guessable online: at 2^64, an attacker trying a million tokens a second
/// against one server needs about 290,000 years on average (2^63 / 10^6 s). `picket token`
/// makes 129-bit ones.
pub const MIN_TOKEN_BITS: f64 = 64.0;

/// Unidirectional streams a DoH3 client may have open at once: HTTP/3 needs
/// three (its control stream and the two QPACK ones, RFC 9114 §6.2 and
/// RFC 9204 §4.2); one more leaves room for a reserved "grease" stream
/// (RFC 9114 §6.2.3) without which a client that sends one would wait.
/// DoH needs no server push and Picket opens none toward the client.
pub const H3_UNI_STREAMS: u32 = 4;

/// `picket_rule_hits_total` series registered at most over the process's life (rules of every
/// policy loaded, by organization label); hits of later rules share `rule="_other"`. Prometheus
/// handles a few million series per server; 20,000 keeps one Picket's share of a scrape small
/// (~1.5 MB of text) while covering every rule of a large deployment. The exporter never drops a
/// series, so the bound also caps its memory across reloads that rename rules.
pub const MAX_RULE_SERIES: usize = 20_000;

/// dnstap messages waiting for the writer thread at most (`--dnstap`), the
/// default of `--dnstap-queue`; past it messages are dropped and counted,
/// answers never wait. 64 Ki messages of ~200 bytes: ~13 MiB at the worst,
/// a few seconds of a busy node while a collector reconnects. Unbound's
/// `dnstap` output queue is of the same order (its fstrm I/O thread
/// default queue holds 512 entries per thread).
pub const DNSTAP_QUEUE: usize = 65_536;
/// The writer flushes buffered frames at least this often while messages
/// keep arriving (and at once when the queue runs dry), so a collector sees
/// a quiet server's last queries within this time.
pub const DNSTAP_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Connect, handshake and write timeout towards the dnstap collector: a
/// stuck collector costs dropped messages, never a stuck writer forever.
pub const DNSTAP_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection backoff towards a dnstap collector that is down: first
/// retry after the minimum, doubling to the maximum (fstrm's reference
/// writer retries every second; a longer cap spares a collector that is
/// restarting under a fleet's reconnects).
pub const DNSTAP_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const DNSTAP_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A dnstap session that ends sooner than this after its handshake was a
/// failed attempt: the next waits out the backoff (which a longer session
/// resets).
pub const DNSTAP_STABLE_SESSION: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_udp_payload: 1232,
            tcp_max_connections: 1024,
            max_connections_per_client: 128,
            connection_client_prefix_v6: 56,
            tcp_idle_timeout: Duration::from_secs(30),
            tcp_idle_timeout_pressure: Duration::from_secs(2),
            tcp_max_pipelined: 128,
            max_upstream_inflight: 4096,
            max_upstream_sockets: 4096,
            upstream_udp_pool: 4096,
            upstream_socket_max_uses: 32,
            upstream_socket_max_age: Duration::from_secs(10),
            recursion_port_max_uses: 8,
            recursion_port_max_age: Duration::from_secs(2),
            upstream_stream_connections: 2,
            upstream_stream_pipelined: 100,
            upstream_stream_idle_timeout: Duration::from_secs(30),
            upstream_reconnect_backoff_min: Duration::from_millis(250),
            upstream_reconnect_backoff_max: Duration::from_secs(30),
            max_inflight_per_client: 1024,
            max_followers_per_fetch: 1024,
            recursion_max_depth: 24,
            recursion_max_cname_chain: 11,
            recursion_max_queries: 50,
            recursion_timeout: Duration::from_secs(4),
            recursion_attempt_timeout: Duration::from_millis(1000),
            recursion_failure_ttl: Duration::from_secs(5),
            recursion_failure_ttl_max: Duration::from_secs(300),
            recursion_priming_retry: Duration::from_secs(5),
            recursion_server_timeouts: 2,
            recursion_max_rrsigs_per_rrset: 8,
            recursion_max_keys_per_tag: 2,
            recursion_infra_cache_bytes: 16 << 20,
            doh_max_connections: 1024,
            dot_max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(5),
            doh_max_streams: 100,
            doh_max_header_bytes: 16 << 10,
            doh_body_timeout: Duration::from_secs(5),
            proxy_header_max_bytes: 4096,
            proxy_header_timeout: Duration::from_secs(5),
            dnssec_max_verifications: 32,
            dnssec_max_keys_per_tag: 4,
            dnssec_max_rrsigs_per_rrset: 8,
            dnssec_max_nsec3_hashes: 64,
            dnssec_max_nsec3_iterations: 50,
            dnssec_key_cache_entries: 16_384,
            dnssec_key_cache_max_ttl: Duration::from_secs(86_400),
            dnssec_verdict_ttl: Duration::from_secs(60),
            doq_max_connections: 1024,
            doq_max_streams: 100,
            quic_idle_timeout: Duration::from_secs(30),
            doq_stream_timeout: Duration::from_secs(5),
            max_bundle_bytes: 256 << 20,
            max_list_download_bytes: 256 << 20,
            fetch_connect_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(120),
            min_fetch_interval: Duration::from_secs(1),
            dashboard_recent_queries: 1_000,
            dashboard_top_keys: 256,
            dashboard_pending_per_worker: 16_384,
            dashboard_upstreams: 16,
            block_page_recent: 16_384,
            block_page_recent_ttl: Duration::from_secs(600),
            block_page_max_connections: 256,
            block_page_header_timeout: Duration::from_secs(5),
            block_page_max_header_bytes: 8 << 10,
        }
    }
}
