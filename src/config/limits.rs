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
    /// Upstream sockets the forwarder holds open at once, UDP and TCP, all
    /// workers together. Every forwarded UDP query gets a socket of its own,
    /// with a fresh random source port (RFC 5452 §9.2), closed after the
    /// exchange; over the bound, a miss gets SERVFAIL with EDE 14 (Not Ready)
    /// rather than share a socket. Unbound's `outgoing-range` 4096. Each
    /// query holds one socket at a time under `max_upstream_inflight`, so
    /// this binds only if that is raised. Both should stay well below the
    /// process's open-file limit (`ulimit -n`; docs/deployment.md sets 65536).
    pub max_upstream_sockets: usize,
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
    /// cut descended (one QNAME-minimisation step each), each glueless
    /// nameserver name chased and each CNAME followed. Passed to hickory's
    /// recursor as `ns_recursion_limit` and `recursion_limit`, whose default
    /// it is (24); Unbound stops a run-away descent at `MAX_REFERRAL_COUNT`
    /// 130 referrals, Knot at `KR_ITER_LIMIT` 100 iterations. Over it: SERVFAIL.
    pub recursion_max_depth: u8,
    /// Recursive mode: most CNAME (or DNAME-synthesised CNAME) records one
    /// answer may chain through. Unbound `max-query-restarts` 11, Knot
    /// `KR_CNAME_CHAIN_LIMIT` 13. hickory's own bound is its depth limit plus
    /// a fixed 64 CNAME lookups, and a chain delivered in one response is not
    /// counted at all, so Picket checks every answer. Over it: SERVFAIL.
    pub recursion_max_cname_chain: usize,
    /// Recursive mode: upstream queries one client query may cause, DNSSEC
    /// key and DS fetches included (NXNSAttack, CVE-2020-12662). PowerDNS
    /// `max-qperq` 50 (the NXNS patch); Unbound `max-sent-count` 32 per
    /// query state and `max-global-quota` 200 in all. hickory counts 200 per
    /// resolution but starts afresh for each DNSSEC fetch, so Picket counts
    /// every query it sends on the client's behalf. Over it: SERVFAIL.
    pub recursion_max_queries: usize,
    /// Recursive mode: how long one client query may take in all before it
    /// gets SERVFAIL (EDE 22). PowerDNS `max-total-msec` 7000, Knot
    /// `KR_RESOLVE_TIME_LIMIT` 10 s; shorter here because stub resolvers
    /// give up after 5 s (glibc) and retry.
    pub recursion_timeout: Duration,
    /// Recursive mode: how long to wait for one authoritative server before
    /// trying the next (hickory waits 5 s). Unbound starts at 376 ms and
    /// backs off; BIND at 800 ms.
    pub recursion_attempt_timeout: Duration,
    /// Recursive mode: a failed resolution (SERVFAIL, timeout, lame, bogus)
    /// is answered from a failure cache for this long first, doubling on each
    /// consecutive failure of the same question up to
    /// [`recursion_failure_ttl_max`](Self::recursion_failure_ttl_max).
    /// RFC 9520 §3.2: at least 1 s, with backoff; Unbound caches SERVFAIL
    /// for 5 s (`serve-expired-client-timeout` aside), BIND `servfail-ttl` 1 s.
    pub recursion_failure_ttl: Duration,
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
    /// Recursive mode: entries in each of hickory's own caches: the response
    /// cache of every recursor (delegation queries, nameserver addresses,
    /// DNSKEY/DS sets, intermediate answers) and, per validating recursor,
    /// its validated-answer and validation caches. They count entries, not
    /// bytes, and sit outside `--cache-size`: a report of 735 MB RSS with a
    /// 256 MiB budget and 16,384 entries each (3 message caches) puts an
    /// entry at ~10 KB under load, so 2,048 bounds them at ~20 MB per cache:
    /// ~60 MB with validation (plain + root validator), ~40 MB more per
    /// further trust-anchor zone. Final answers live in Picket's cache, so a
    /// smaller bound costs only repeated delegation and key queries.
    pub recursion_infra_cache_entries: u64,
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
}

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

/// Recursive mode: nameserver pools (one per zone cut) and connections
/// hickory's recursor keeps per recursor (its `ns_cache_size`; its default).
pub const RECURSION_NS_POOLS: usize = 1_024;

/// Glueless nameserver names hickory's recursor chases per delegation (its
/// `MAX_GLUELESS_FOLLOW`, not configurable): a referral to 100 address-less
/// nameservers costs at most 5 name resolutions (NXNSAttack). PowerDNS
/// `max-ns-address-qperq` 10, Unbound `MAX_TARGET_NX` 5. Tested in
/// `tests/recursion.rs`; [`Limits::recursion_max_queries`] caps the total.
pub const RECURSION_GLUELESS_NS_FOLLOWED: usize = 5;

/// Longest UDP query read: a datagram past it is malformed, counted and
/// answered FORMERR (header only) or dropped, never served from its first
/// bytes. A query is a header, one question and an OPT record with a few
/// options (cookies, ECS, padding to 128-byte blocks per RFC 8467): a few
/// hundred bytes. 4096 is the EDNS buffer size of older resolvers (BIND,
/// Unbound before DNS Flag Day 2020), so no client sends more expecting to
/// be read; Unbound and Knot read UDP queries into buffers of about this size.
pub const MAX_UDP_QUERY: usize = 4096;

/// Least randomness, in bits, a DoH path token or DoT server name label may have, as
/// estimated by `policy::token::estimate_bits`; a policy with a weaker one does not load.
/// They are bearer identifiers (whoever presents one gets its organization's policy), so they
/// must not be guessable online: at 2^64, an attacker trying a million tokens a second
/// against one server needs about 290,000 years on average (2^63 / 10^6 s). `picket token`
/// makes 129-bit ones.
pub const MIN_TOKEN_BITS: f64 = 64.0;

/// `picket_rule_hits_total` series registered at most over the process's life (rules of every
/// policy loaded, by organization label); hits of later rules share `rule="_other"`. Prometheus
/// handles a few million series per server; 20,000 keeps one Picket's share of a scrape small
/// (~1.5 MB of text) while covering every rule of a large deployment. The exporter never drops a
/// series, so the bound also caps its memory across reloads that rename rules.
pub const MAX_RULE_SERIES: usize = 20_000;

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
            max_inflight_per_client: 1024,
            max_followers_per_fetch: 1024,
            recursion_max_depth: 24,
            recursion_max_cname_chain: 11,
            recursion_max_queries: 50,
            recursion_timeout: Duration::from_secs(4),
            recursion_attempt_timeout: Duration::from_millis(1000),
            recursion_failure_ttl: Duration::from_secs(5),
            recursion_failure_ttl_max: Duration::from_secs(300),
            recursion_server_timeouts: 2,
            recursion_max_rrsigs_per_rrset: 8,
            recursion_max_keys_per_tag: 2,
            recursion_infra_cache_entries: 2_048,
            doh_max_connections: 1024,
            dot_max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(5),
            doh_max_streams: 100,
            doh_max_header_bytes: 16 << 10,
            doh_body_timeout: Duration::from_secs(5),
            dashboard_recent_queries: 1_000,
            dashboard_top_keys: 256,
            dashboard_pending_per_worker: 16_384,
            dashboard_upstreams: 16,
        }
    }
}
