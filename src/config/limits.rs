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
    /// Open TCP/DoT connections per listener. Over it, new connections wait
    /// in the kernel backlog. Default from Unbound's `incoming-num-tcp` (10 per
    /// thread) scaled for a laptop-to-edge range; NSD's `-n` is 100.
    pub tcp_max_connections: usize,
    /// Idle time after which a TCP connection is closed (RFC 7766 §6.2.3
    /// suggests seconds; Unbound's `tcp-idle-timeout` is 30 s).
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_udp_payload: 1232,
            tcp_max_connections: 1024,
            tcp_idle_timeout: Duration::from_secs(30),
            tcp_idle_timeout_pressure: Duration::from_secs(2),
            tcp_max_pipelined: 128,
            max_upstream_inflight: 4096,
        }
    }
}
