//! Who may ask, and how fast: the access list (`--allow-from`) and per-client
//! rate limiting. Both are checked right after parsing, before any policy,
//! cache or upstream work, and both key on the transport's source address,
//! never on anything the client says about itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnet::IpNet;

/// The networks allowed by default: loopback and private ranges, so that a
/// fresh install is not an open resolver (Unbound's default likewise allows
/// only localhost). Anything else must be allowed with `--allow-from`.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// The networks that may use the resolver.
#[derive(Debug, Clone)]
pub struct AccessList {
    nets: Vec<IpNet>,
}

impl Default for AccessList {
    fn default() -> Self {
        Self::new(
            DEFAULT_ALLOWED
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        )
    }
}

impl AccessList {
    /// Allows exactly `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` may ask (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The networks allowed.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Per-client rate limiting settings (`--rate-limit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitSettings {
    /// Queries per second allowed per /24 (IPv4) or /56 (IPv6).
    pub qps: u32,
    /// Queries allowed in a burst above the rate.
    pub burst: u32,
    /// Over the limit, every `slip`-th query gets an empty TC=1 answer (so a
    /// real client whose address is spoofed can retry over TCP) and the rest
    /// are dropped; 0 drops them all. Unbound's and Knot's RRL default to 2.
    pub slip: u32,
}

/// What to do with a query from the rate limiter's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allow,
    /// Answer with TC=1 and no records.
    Slip,
    Drop,
}

/// Prefixes tracked per shard before idle ones are forgotten.
const PREFIXES_PER_SHARD: usize = 4096;
const SHARDS: usize = 16;

/// Token buckets per client prefix, in a bounded, sharded table.
pub struct RateLimiter {
    settings: RateLimitSettings,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
    limited: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    over: u32,
}

impl RateLimiter {
    /// A limiter with these settings.
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            limited: AtomicU64::new(0),
        }
    }

    /// Charges one query to `ip`'s prefix.
    pub fn check(&self, ip: IpAddr, now: Instant) -> RateDecision {
        let key = prefix_key(canonical(ip));
        let shard = &self.shards[(key as usize ^ (key >> 32) as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PREFIXES_PER_SHARD && !buckets.contains_key(&key) {
            forget_idle(&mut buckets, now, self.settings);
        }
        let capacity = f64::from(self.settings.qps.saturating_add(self.settings.burst).max(1));
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            last: now,
            over: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(self.settings.qps)).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return RateDecision::Allow;
        }
        self.limited.fetch_add(1, Ordering::Relaxed);
        bucket.over = bucket.over.wrapping_add(1);
        let slip = self.settings.slip;
        if slip > 0 && bucket.over % slip == 0 {
            RateDecision::Slip
        } else {
            RateDecision::Drop
        }
    }

    /// Queries limited so far (dropped or slipped).
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

/// Forgets buckets that have refilled (their client has been quiet), and if
/// that is not enough, the oldest half: the table stays bounded under a flood
/// of spoofed sources.
fn forget_idle(buckets: &mut HashMap<u64, Bucket>, now: Instant, s: RateLimitSettings) {
    let refill_secs = f64::from(s.qps.saturating_add(s.burst).max(1)) / f64::from(s.qps.max(1));
    buckets.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < refill_secs);
    if buckets.len() >= PREFIXES_PER_SHARD {
        let mut ages: Vec<Instant> = buckets.values().map(|b| b.last).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 2];
        buckets.retain(|_, b| b.last > cutoff);
    }
}

/// The client's /24 (IPv4) or /56 (IPv6), as a map key.
fn prefix_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (u128::from(v6) >> 72) as u64 | (1 << 63),
    }
}

/// Upstream fetches each client address may have waiting at once, so that
/// one client cannot take every slot of the global bound
/// (`max_upstream_inflight`) while others wait.
pub struct ClientInflight {
    limit: u32,
    /// foldhash, seeded per process like SipHash but cheaper: every miss
    /// claims and releases a slot.
    shards: Vec<Mutex<HashMap<IpAddr, u32, hashbrown::DefaultHashBuilder>>>,
    refused: AtomicU64,
}

/// A client's claim on one in-flight slot; released on drop.
pub struct InflightSlot {
    owner: Arc<ClientInflight>,
    ip: IpAddr,
}

impl ClientInflight {
    /// At most `limit` per client address.
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            refused: AtomicU64::new(0),
        }
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32, hashbrown::DefaultHashBuilder>> {
        let key = prefix_key(canonical(ip));
        &self.shards[(key as usize ^ (key >> 32) as usize) % SHARDS]
    }

    /// Claims a slot for `ip`, or None when it already has `limit` waiting.
    pub fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<InflightSlot> {
        let mut counts = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *count += 1;
        Some(InflightSlot {
            owner: self.clone(),
            ip,
        })
    }

    /// Queries refused so far because their client had too many waiting.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .shard(self.ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // The table only holds clients with something in flight.
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn default_access_list_is_not_an_open_resolver() {
        let acl = AccessList::default();
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(acl.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["8.8.8.8", "192.0.2.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!acl.allows(no.parse().unwrap()), "{no}");
        }
    }

    /// A limiter of `qps` per /24 (or /56) with no burst, slipping every `slip`th refused query.
    fn limiter(qps: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(RateLimitSettings {
            qps,
            burst: 0,
            slip,
        })
    }

    #[test]
    fn buckets_limit_per_prefix_and_refill() {
        let limiter = limiter(10, 2);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let same_24: IpAddr = "10.0.0.200".parse().unwrap();
        let other: IpAddr = "10.0.1.1".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(limiter.check(a, t0), RateDecision::Allow);
        }
        assert_eq!(
            limiter.check(same_24, t0),
            RateDecision::Drop,
            "same /24 shares the bucket"
        );
        assert_eq!(
            limiter.check(a, t0),
            RateDecision::Slip,
            "every 2nd limited query slips"
        );
        assert_eq!(
            limiter.check(other, t0),
            RateDecision::Allow,
            "another /24 is not limited"
        );
        assert_eq!(
            limiter.check(a, t0 + Duration::from_millis(200)),
            RateDecision::Allow
        );
        assert_eq!(limiter.limited(), 2);
    }

    #[test]
    fn in_flight_slots_per_client_are_bounded_and_released() {
        let inflight = Arc::new(ClientInflight::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = inflight.claim(a).unwrap();
        let _second = inflight.claim(a).unwrap();
        assert!(
            inflight.claim(a).is_none(),
            "a third for the same client is refused"
        );
        assert!(
            inflight.claim(b).is_some(),
            "another client is not affected"
        );
        drop(first);
        assert!(
            inflight.claim(a).is_some(),
            "a finished query frees its slot"
        );
        assert_eq!(inflight.refused(), 1);
    }

    #[test]
    fn table_stays_bounded_under_spoofed_floods() {
        let limiter = limiter(1, 0);
        let t0 = Instant::now();
        for i in 0..200_000u32 {
            limiter.check(IpAddr::from((i << 8).to_be_bytes()), t0);
        }
        let held: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS * PREFIXES_PER_SHARD, "{held}");
    }
}
