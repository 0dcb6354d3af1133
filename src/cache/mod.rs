//! The one shared answer cache (docs/architecture.md, "The cache").
//!
//! Shared by every organization and transport: policy is applied on every
//! answer served, never baked into what is stored. Keys are the lower-cased
//! name, type, class, the DO/CD bits (they change what an upstream returns)
//! and the route (a split DNS group answers a name differently); values are
//! upstream answers indexed for serving from their wire bytes. Freshness is
//! judged here against [`Clock`], so a stale entry can still be found
//! (serve-stale, RFC 8767); moka evicts an entry once its stale window has
//! passed too, and keeps the total under a byte budget.

mod front;
mod stored;

/// A key's place in this thread's front, from [`Cache::prefetch`].
pub use front::Pending as PendingLookup;
/// Most bytes each worker thread's front holds beyond the byte budget.
pub use front::MAX_BYTES as FRONT_MAX_BYTES;

use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as MokaCache;
use moka::Expiry;

use crate::clock::Clock;
use crate::config::limits::{PREFETCH_MIN_LIFETIME, PREFETCH_WINDOW_DIVISOR};
use crate::huge_pages;
use crate::protocol::{wire, Answer, AnswerKind, Request};
use crate::query::RouteId;

/// What [`Cache::prefetch`] started, one per key, in the keys' order (a UDP batch of 32
/// held inline).
pub type Prefetched = smallvec::SmallVec<[Option<PendingLookup>; 32]>;

/// Cache limits and TTL policy.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Byte budget for keys and answers.
    pub max_bytes: u64,
    /// Lower bound on how long an answer is kept (RFC 8767 §4 allows raising).
    pub min_ttl: u32,
    /// Upper bound on how long an answer is kept and on the TTLs served.
    pub max_ttl: u32,
    /// Upper bound for negative answers (RFC 2308 §5 suggests 1-3 hours max).
    pub max_negative_ttl: u32,
    /// How long upstream failures (SERVFAIL, REFUSED) are remembered (RFC 9520 §3.2: at least 1 s).
    pub failure_ttl: u32,
    /// How long past expiry an answer may still be served stale (0 = never).
    pub stale_window: u32,
    /// Refresh an entry in the background when a hit comes in the last tenth of its
    /// lifetime, so popular names never expire (`--no-prefetch` turns it off).
    pub prefetch: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            failure_ttl: 1,
            stale_window: 0,
            prefetch: true,
        }
    }
}

/// Wire bytes of a name held inside its [`CacheKey`] (longer names go to the heap): most
/// names asked are shorter, so a lookup's key costs no allocation, and the front's key
/// comparison reads the name from the entry's own memory instead of a pointer away.
const INLINE_NAME: usize = 40;

/// What makes two queries share an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The parts' hash, computed once: a miss's key is hashed by the front,
    /// moka and the coalescer, seven times in all. Compared first, so
    /// keys that differ mostly differ here.
    hash: u64,
    name: smallvec::SmallVec<[u8; INLINE_NAME]>,
    qtype: u16,
    qclass: u16,
    /// Bit 0: DO, bit 1: CD.
    bits: u8,
    /// Which upstreams answer it (split DNS routes differ).
    route: RouteId,
}

impl CacheKey {
    /// The key for a request.
    pub fn for_request(req: &Request) -> Self {
        Self::new(
            &req.name_wire,
            req.qtype,
            req.qclass,
            req.dnssec_ok(),
            req.cd(),
        )
    }

    /// The key [`Self::for_request`] gives the query in `datagram`, read without building the
    /// request or allocating (a batch's lookups are prefetched with it before its queries are
    /// read in full); None when the datagram holds no question to read.
    pub fn for_datagram(datagram: &[u8]) -> Option<Self> {
        let header = wire::Header::read(datagram).ok()?;
        let mut name = smallvec::SmallVec::new();
        let end = wire::read_question_name_wire(datagram, wire::HEADER_LEN, &mut name).ok()?;
        let qtype = wire::u16_at(datagram, end).ok()?;
        let qclass = wire::u16_at(datagram, end + 2).ok()?;
        let dnssec_ok = crate::protocol::parse::dnssec_ok_at(datagram, &header, end + 4)?;
        let cd = header.flags & wire::flag::CD != 0;
        let mut key = Self {
            hash: 0,
            name,
            qtype,
            qclass,
            bits: u8::from(dnssec_ok) | (u8::from(cd) << 1),
            route: RouteId::Default,
        };
        key.hash = key.parts_hash();
        Some(key)
    }

    /// The same question answered through `route`.
    pub fn with_route(mut self, route: RouteId) -> Self {
        if self.route != route {
            self.route = route;
            self.hash = self.parts_hash();
        }
        self
    }

    /// Which upstreams answer it.
    pub fn route(&self) -> &RouteId {
        &self.route
    }

    /// A key from its parts (`name_wire` in lower case).
    pub fn new(name_wire: &[u8], qtype: u16, qclass: u16, dnssec_ok: bool, cd: bool) -> Self {
        let mut key = Self {
            hash: 0,
            name: smallvec::SmallVec::from_slice(name_wire),
            qtype,
            qclass,
            bits: u8::from(dnssec_ok) | (u8::from(cd) << 1),
            route: RouteId::Default,
        };
        key.hash = key.parts_hash();
        key
    }

    /// The hash of everything but `hash`, with a seed drawn once per process
    /// (foldhash, as hashbrown's default), so names cannot be chosen to collide.
    fn parts_hash(&self) -> u64 {
        static SEED: std::sync::LazyLock<hashbrown::DefaultHashBuilder> =
            std::sync::LazyLock::new(Default::default);
        let parts = (
            &self.name[..],
            self.qtype,
            self.qclass,
            self.bits,
            &self.route,
        );
        SEED.hash_one(parts)
    }

    /// The lower-case wire name.
    pub fn name_wire(&self) -> &[u8] {
        &self.name
    }

    pub fn qtype(&self) -> u16 {
        self.qtype
    }

    pub fn qclass(&self) -> u16 {
        self.qclass
    }

    pub fn dnssec_ok(&self) -> bool {
        self.bits & 1 != 0
    }

    pub fn cd(&self) -> bool {
        self.bits & 2 != 0
    }
}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A stored answer and when it was stored.
#[derive(Debug)]
pub struct Entry {
    pub answer: Arc<Answer>,
    /// The key it is stored under, for the per-thread front to check.
    key: CacheKey,
    stored: Instant,
    /// Seconds the entry is fresh (the answer's TTL after clamping).
    lifetime: u32,
    /// Seconds moka keeps it (lifetime + stale window).
    retention: u32,
    /// A background refresh (prefetch) was started for it: one per entry.
    prefetching: AtomicBool,
    /// The last key under which the response phase kept this answer
    /// (`policy::response_reuse_key`), 0 for none: a hit with the same key skips the phase.
    kept_for: AtomicU64,
    /// The last key under which the whole policy passed a hit on this entry
    /// (`policy::hit_reuse_key`), 0 for none: a hit with the same key skips the policy.
    passed_for: AtomicU64,
}

impl Entry {
    /// Whole seconds since the entry was stored.
    pub fn age(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.stored)
            .as_secs()
            .min(u32::MAX as u64) as u32
    }

    /// Seconds the entry is fresh.
    pub fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// Whether the response phase kept this answer under `key` before.
    pub fn kept_for(&self, key: NonZeroU64) -> bool {
        self.kept_for.load(Ordering::Relaxed) == key.get()
    }

    /// Remembers that the response phase kept this answer under `key`.
    pub fn mark_kept(&self, key: NonZeroU64) {
        self.kept_for.store(key.get(), Ordering::Relaxed);
    }

    /// Whether the policy passed a hit on this entry under `key` before.
    pub fn passed_for(&self, key: NonZeroU64) -> bool {
        self.passed_for.load(Ordering::Relaxed) == key.get()
    }

    /// Remembers that the policy passed a hit on this entry under `key`. Stored only when it
    /// changes: every worker reads the entry, and a write on each hit would take its cache line
    /// from all of them.
    pub fn mark_passed(&self, key: NonZeroU64) {
        if !self.passed_for(key) {
            self.passed_for.store(key.get(), Ordering::Relaxed);
        }
    }

    /// Seconds left before the entry expires (0 when stale).
    pub fn remaining(&self, now: Instant) -> u32 {
        self.lifetime.saturating_sub(self.age(now))
    }
}

/// The result of a lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A fresh entry and its age in seconds.
    Fresh(Arc<Entry>, u32),
    /// An expired entry still inside the stale window.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// moka's table of the entries.
type Table = MokaCache<CacheKey, Arc<Entry>, hashbrown::DefaultHashBuilder>;

/// The shared cache.
pub struct Cache {
    inner: Table,
    /// Which keys `inner` may hold: a name never stored is a miss without a probe of it.
    stored: Arc<stored::StoredKeys>,
    /// Tells this cache's entries apart in the per-thread front.
    id: u64,
    settings: CacheSettings,
    clock: Clock,
}

struct Retention;

impl Expiry<CacheKey, Arc<Entry>> for Retention {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(entry.retention.into()))
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_secs(entry.retention.into()))
    }
}

/// Fixed cost of an entry beyond its bytes: moka's own bookkeeping measured
/// at ~520 B per entry, plus our `Entry` (the weigher adds the name twice,
/// which more than covers the one name moka's key and the entry share).
const ENTRY_OVERHEAD: usize = 600;

/// Weighed bytes per entry that moka's table is sized for at start: an address answer
/// to a name of 20-odd bytes weighs 650-800 B by [`weight`].
const SIZING_ENTRY_WEIGHT: u64 = 768;

/// Most entries the table is sized for at start (its slots cost 8 B each, two per entry).
const MAX_INITIAL_ENTRIES: u64 = 4 << 20;

/// The entries to size moka's hash table for at start, from the byte budget. moka's
/// table probes linearly and grows only at 70 % load: a look-up of a name that is not
/// there then walks about five occupied slots, each a pointer to a bucket and its key
/// elsewhere in memory, two cache misses each. While a table grows from empty that was
/// a quarter of a forwarded miss's CPU; sized up front it walks one or two slots and
/// never rehashes while the cache fills. moka rounds each of its 64 segments up to a
/// power of two: the default 256 MiB budget gets 1 Mi slots (8 MiB, allocated at
/// start), a third full when the budget is spent on entries of this weight.
fn initial_entries(max_bytes: u64) -> usize {
    (max_bytes / SIZING_ENTRY_WEIGHT).min(MAX_INITIAL_ENTRIES) as usize
}

/// Refills `stored` from the keys `inner` holds now.
fn refill_stored_keys(inner: &Table, stored: &stored::StoredKeys) {
    let before = stored.fill();
    stored.rebuild(inner.iter().map(|(key, _)| key.hash));
    let (after, (rebuilds, _)) = (stored.fill(), stored.rebuilds());
    tracing::debug!(
        ?before,
        ?after,
        rebuilds,
        "rebuilt the bits of the keys the cache holds"
    );
}

/// What an entry counts against the byte budget.
fn weight(key: &CacheKey, entry: &Entry) -> u32 {
    (2 * key.name.len() + entry.answer.weight() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
}

impl Cache {
    /// A cache with these settings, aging TTLs by `clock`.
    pub fn new(settings: CacheSettings, clock: Clock) -> Self {
        let ((inner, stored), advised) = huge_pages::backing(|| {
            let table = Self::table(&settings);
            let stored = stored::StoredKeys::for_budget(settings.max_bytes, ENTRY_OVERHEAD as u64);
            (table, stored)
        });
        tracing::debug!(
            huge_page_bytes = advised,
            "asked for huge pages under the cache's table"
        );
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            inner,
            stored,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            settings,
            clock,
        }
    }

    /// moka's table, sized for the byte budget at start ([`initial_entries`]).
    fn table(settings: &CacheSettings) -> Table {
        MokaCache::builder()
            .max_capacity(settings.max_bytes)
            .initial_capacity(initial_entries(settings.max_bytes))
            .weigher(|k: &CacheKey, e: &Arc<Entry>| weight(k, e))
            .expire_after(Retention)
            // foldhash instead of SipHash: seeded randomly per process like
            // SipHash (so query names cannot be chosen to collide), and about
            // three times cheaper on short keys.
            .build_with_hasher(hashbrown::DefaultHashBuilder::default())
    }

    /// The clock TTLs are aged by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The settings in force.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Looks `key` up.
    pub fn get(&self, key: &CacheKey) -> Lookup {
        self.get_at(key, Instant::now())
    }

    /// [`Self::get`] for a caller that read the system's monotonic clock a moment ago
    /// (`Instant::now()`, `read`): entries are aged by that reading.
    pub fn get_at(&self, key: &CacheKey, read: Instant) -> Lookup {
        let now = self.clock.at(read);
        if let Some(entry) = front::get(self.id, key) {
            let age = entry.age(now);
            if age < entry.lifetime {
                return Lookup::Fresh(entry, age);
            }
        }
        if !self.stored.may_hold(key.hash) {
            return Lookup::Miss;
        }
        let Some(entry) = self.inner.get(key) else {
            return Lookup::Miss;
        };
        let age = entry.age(now);
        if age < entry.lifetime {
            front::put(self.id, &entry);
        }
        if age < entry.lifetime {
            Lookup::Fresh(entry, age)
        } else if age < entry.retention {
            Lookup::Stale(entry)
        } else {
            Lookup::Miss
        }
    }

    /// A fresh entry for `key` in this thread's front, and its age, without looking in the
    /// shared table: for a caller that would rather do other work first than pay for a miss.
    pub fn fresh_in_front(&self, key: &CacheKey, read: Instant) -> Option<(Arc<Entry>, u32)> {
        let entry = front::get(self.id, key)?;
        let age = entry.age(self.clock.at(read));
        (age < entry.lifetime).then_some((entry, age))
    }

    /// Starts loading what a lookup of each of `keys` will read from this thread's front (its
    /// bucket, then the entry there), without waiting: a batch of queries that calls this
    /// before looking any of them up has their memory fetches overlap, where each lookup
    /// otherwise waits for two in turn (most of a hit's user-space time on a large cache).
    /// Returns, for each of `keys` in order (None: no key), what [`Self::prefetch_answer`]
    /// takes later. A hint only: a key that is not there, or another key later, changes
    /// nothing.
    pub fn prefetch(&self, keys: impl Iterator<Item = Option<CacheKey>>) -> Prefetched {
        let mut pending = Prefetched::new();
        pending.extend(keys.map(|key| key.map(|key| front::prefetch_bucket(self.id, &key))));
        pending
            .iter()
            .flatten()
            .copied()
            .for_each(front::prefetch_entry);
        pending
    }

    /// Starts loading the answer of a key [`Self::prefetch`] started, a little before that
    /// key's query is judged (its entry has arrived by then).
    pub fn prefetch_answer(&self, at: PendingLookup) {
        front::prefetch_answer(at);
    }

    /// Whether a hit on `entry` at `age` (fresh) should refresh it in the background: prefetch
    /// is on, the hit is in the last tenth of the entry's lifetime, the entry lives long enough
    /// for that to mean something, and no refresh was started for it yet (this claims it).
    pub fn claim_prefetch(&self, entry: &Entry, age: u32) -> bool {
        let lifetime = entry.lifetime;
        self.settings.prefetch
            && lifetime >= PREFETCH_MIN_LIFETIME
            && age >= lifetime - lifetime / PREFETCH_WINDOW_DIVISOR
            && entry.answer.kind != AnswerKind::Failure
            && !entry.prefetching.swap(true, Ordering::Relaxed)
    }

    /// Stores an answer; returns the entry to serve. An answer that must not be
    /// cached (TTL 0) is returned without being stored.
    pub fn insert(&self, key: CacheKey, answer: Arc<Answer>) -> Arc<Entry> {
        let lifetime = self.lifetime_of(&answer);
        let stale = if answer.kind == AnswerKind::Failure {
            0
        } else {
            self.settings.stale_window
        };
        let entry = Arc::new(Entry {
            answer,
            key: key.clone(),
            stored: self.clock.now(),
            lifetime,
            retention: lifetime.saturating_add(stale),
            prefetching: AtomicBool::new(false),
            kept_for: AtomicU64::new(0),
            passed_for: AtomicU64::new(0),
        });
        if entry.retention > 0 {
            let hash = key.hash;
            self.inner.insert(key, entry.clone());
            let noted = self.stored.note(hash);
            // A refresh (prefetch, or a stale entry fetched again) replaces the old entry
            // in this thread's front at once; a key stored for the first time is in no
            // front, and its bucket there is not worth a cache miss to check.
            if !noted.first && entry.lifetime > 0 {
                front::refresh(self.id, &entry);
            }
            if noted.rebuild {
                self.refill_stored_keys_in_background();
            }
        }
        entry
    }

    /// Rebuilds the bits of the keys held from moka's keys, on a thread of its own (a
    /// walk of the whole table), or here if no thread can be started.
    fn refill_stored_keys_in_background(&self) {
        let (inner, stored) = (self.inner.clone(), self.stored.clone());
        let spawned = std::thread::Builder::new()
            .name("picket-cache-keys".into())
            .spawn(move || refill_stored_keys(&inner, &stored));
        if spawned.is_err() {
            refill_stored_keys(&self.inner, &self.stored);
        }
    }

    fn lifetime_of(&self, answer: &Answer) -> u32 {
        let s = &self.settings;
        match answer.kind {
            AnswerKind::Positive => answer.ttl.clamp(s.min_ttl, s.max_ttl.max(s.min_ttl)),
            // Negative answers without an SOA have ttl 0: not cached (RFC 2308 §5).
            AnswerKind::NxDomain | AnswerKind::NoData if answer.ttl == 0 => 0,
            AnswerKind::NxDomain | AnswerKind::NoData => answer
                .ttl
                .clamp(s.min_ttl, s.max_negative_ttl.max(s.min_ttl)),
            AnswerKind::Failure => s.failure_ttl,
        }
    }

    /// Entries held (approximate until moka's pending work runs).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Bytes held by the weigher's count.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Runs moka's deferred maintenance (eviction, counts); for tests and metrics.
    pub fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_query, wire, ResponseWriter, Section};

    pub(super) fn request(name: &str) -> Request {
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        wire::push_name(&mut q, name).unwrap();
        q.extend_from_slice(&[0, 1, 0, 1]);
        parse_query(&q).unwrap()
    }

    pub(super) fn answer(req: &Request, ttl: u32) -> Arc<Answer> {
        let mut w = ResponseWriter::new(req, 0);
        w.address(Section::Answer, "192.0.2.7".parse().unwrap(), ttl);
        let bytes = w.finish(None, usize::MAX);
        Arc::new(Answer::from_upstream(&bytes, &req.name_wire, 1, 1).unwrap())
    }

    #[test]
    fn fresh_then_stale_then_gone() {
        let clock = Clock::manual();
        let settings = CacheSettings {
            stale_window: 30,
            ..Default::default()
        };
        let cache = Cache::new(settings, clock.clone());
        let req = request("a.test");
        let key = CacheKey::for_request(&req);
        cache.insert(key.clone(), answer(&req, 10));
        assert!(matches!(cache.get(&key), Lookup::Fresh(_, 0)));
        clock.advance(Duration::from_secs(4));
        assert!(matches!(cache.get(&key), Lookup::Fresh(_, 4)));
        clock.advance(Duration::from_secs(6));
        assert!(matches!(cache.get(&key), Lookup::Stale(_)));
        clock.advance(Duration::from_secs(30));
        assert!(matches!(cache.get(&key), Lookup::Miss));
    }

    #[test]
    fn keys_that_differ_only_by_route_are_separate_entries() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let req = request("split.test");
        let default_route = CacheKey::for_request(&req);
        let corp = default_route
            .clone()
            .with_route(RouteId::Group("corp".into()));
        let lab = default_route
            .clone()
            .with_route(RouteId::Group("lab".into()));
        assert_ne!(default_route, corp);
        assert_ne!(corp, lab);
        cache.insert(corp.clone(), answer(&req, 300));
        assert!(matches!(cache.get(&corp), Lookup::Fresh(..)));
        assert!(matches!(cache.get(&default_route), Lookup::Miss));
        assert!(matches!(cache.get(&lab), Lookup::Miss));
    }

    /// Names longer than a key holds inline are stored on the heap and found the same way, and
    /// two names that share their first bytes are different keys.
    #[test]
    fn long_names_are_keys_as_short_ones_are() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let long = format!("{}.example.test", "a".repeat(60));
        let longer = format!("{}b.example.test", "a".repeat(60));
        let (req, other) = (request(&long), request(&longer));
        let key = CacheKey::for_request(&req);
        assert!(key.name_wire().len() > INLINE_NAME);
        assert_eq!(key.name_wire(), &req.name_wire[..]);
        cache.insert(key.clone(), answer(&req, 300));
        assert!(matches!(cache.get(&key), Lookup::Fresh(..)));
        assert!(matches!(
            cache.get(&CacheKey::for_request(&other)),
            Lookup::Miss
        ));
    }

    /// The key read from a datagram without parsing it is the parsed request's key, whatever
    /// the name's case, the CD bit and an OPT record with or without DO.
    #[test]
    fn a_datagram_gives_the_key_of_its_parsed_request() {
        for (name, cd, opt) in [
            ("www.Example.TEST", false, None),
            ("a.b.c.test", true, Some(0x8000u16)),
            ("x.test", false, Some(0)),
        ] {
            let mut q = vec![0, 7, 1, if cd { 0x10 } else { 0 }, 0, 1, 0, 0, 0, 0, 0, 0];
            wire::push_name(&mut q, name).unwrap();
            q.extend_from_slice(&[0, 28, 0, 1]);
            if let Some(flags) = opt {
                q[11] = 1;
                q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0]);
                q.extend_from_slice(&flags.to_be_bytes());
                q.extend_from_slice(&[0, 0]);
            }
            let parsed = CacheKey::for_request(&crate::protocol::parse_query(&q).unwrap());
            assert_eq!(CacheKey::for_datagram(&q), Some(parsed), "{name}");
        }
        assert_eq!(CacheKey::for_datagram(&[0, 7, 1, 0]), None);
    }

    #[test]
    fn ttl_clamps_apply() {
        let settings = CacheSettings {
            min_ttl: 60,
            max_ttl: 600,
            ..Default::default()
        };
        let cache = Cache::new(settings, Clock::manual());
        let req = request("b.test");
        assert_eq!(
            cache
                .insert(CacheKey::for_request(&req), answer(&req, 5))
                .lifetime(),
            60
        );
        assert_eq!(
            cache
                .insert(CacheKey::for_request(&req), answer(&req, 9999))
                .lifetime(),
            600
        );
    }

    /// A cache of default settings but for its byte budget.
    fn with_byte_budget(max_bytes: u64) -> Cache {
        let settings = CacheSettings {
            max_bytes,
            ..Default::default()
        };
        Cache::new(settings, Clock::manual())
    }

    /// Answers still in memory anywhere in the process, of those in `held`.
    fn alive(held: &[std::sync::Weak<Answer>]) -> usize {
        held.iter().filter(|a| a.strong_count() > 0).count()
    }

    #[test]
    fn answers_evicted_by_the_byte_budget_are_freed_though_the_front_served_them() {
        let cache = with_byte_budget(100_000);
        let (mut held, mut lightest) = (Vec::new(), u32::MAX);
        for i in 0..2_000 {
            let req = request(&format!("n{i}.test"));
            let key = CacheKey::for_request(&req);
            let answer = answer(&req, 300);
            held.push(Arc::downgrade(&answer));
            let entry = cache.insert(key.clone(), answer);
            lightest = lightest.min(weight(&key, &entry));
            drop(entry);
            // Served once, so this thread's front has it.
            cache.get(&key);
        }
        // moka works through its pending evictions in batches, and a busy machine can leave
        // more of them queued than a few rounds clear: run rounds until the budget holds (or
        // give up after many, which is the failure).
        let within_budget = |alive: usize| alive as u64 * u64::from(lightest) <= 100_000;
        for _ in 0..300 {
            cache.run_pending_tasks();
            if within_budget(alive(&held)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let alive = alive(&held);
        assert!(
            within_budget(alive),
            "{alive} answers of at least {lightest} B are alive, over the 100,000 B budget"
        );
    }

    #[test]
    fn the_front_stops_serving_an_entry_the_cache_dropped() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let req = request("gone.test");
        let key = CacheKey::for_request(&req);
        let answer = answer(&req, 300);
        let held = Arc::downgrade(&answer);
        cache.insert(key.clone(), answer);
        assert!(matches!(cache.get(&key), Lookup::Fresh(..)));
        cache.inner.invalidate(&key);
        // moka drops a removed value once its maintenance has run, which can take more than
        // one round when its internal queues are busy; until then the front may still reach it.
        for _ in 0..300 {
            cache.run_pending_tasks();
            if held.strong_count() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(held.strong_count(), 0, "the answer is freed");
        assert!(matches!(cache.get(&key), Lookup::Miss));
    }

    #[test]
    fn byte_budget_bounds_the_cache() {
        let cache = with_byte_budget(100_000);
        for i in 0..2_000 {
            let req = request(&format!("n{i}.test"));
            cache.insert(CacheKey::for_request(&req), answer(&req, 300));
        }
        cache.run_pending_tasks();
        assert!(
            cache.weighted_bytes() <= 100_000,
            "{}",
            cache.weighted_bytes()
        );
        assert!(cache.entry_count() < 2_000);
    }

    /// The keys `cache`'s table holds, and how many of the others its bits call held.
    fn held_and_ghosts<'k>(cache: &Cache, keys: &'k [CacheKey]) -> (Vec<&'k CacheKey>, usize) {
        let (held, gone): (Vec<&CacheKey>, Vec<&CacheKey>) =
            keys.iter().partition(|k| cache.inner.contains_key(*k));
        let ghosts = gone
            .iter()
            .filter(|k| cache.stored.may_hold(k.hash))
            .count();
        (held, ghosts)
    }

    /// How many of `keys` a look-up on a thread of its own (no front) misses.
    fn missed_from_another_thread(cache: &Cache, keys: &[&CacheKey]) -> usize {
        std::thread::scope(|s| {
            s.spawn(|| {
                keys.iter()
                    .filter(|k| matches!(cache.get(k), Lookup::Miss))
                    .count()
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn every_key_moka_holds_is_found_after_the_stored_key_bits_are_rebuilt() {
        let cache = with_byte_budget(1 << 20);
        let keys: Vec<CacheKey> = (0..8_000)
            .map(|i| {
                let req = request(&format!("n{i}.test"));
                cache.insert(CacheKey::for_request(&req), answer(&req, 300));
                CacheKey::for_request(&req)
            })
            .collect();
        // 8,000 keys set more than half of a 1 MiB budget's 8,192 bits: the inserts
        // started a rebuild on a thread of its own, and went on while it ran.
        let deadline = Instant::now() + Duration::from_secs(20);
        while cache.stored.rebuilds().0 == 0 || cache.stored.rebuilds().1 {
            assert!(Instant::now() < deadline, "no rebuild of the bits finished");
            std::thread::sleep(Duration::from_millis(5));
        }
        cache.run_pending_tasks();
        let (held, ghosts_before) = held_and_ghosts(&cache, &keys);
        assert!(
            held.len() > 500 && held.len() < 4_000,
            "{} held",
            held.len()
        );
        let lost = missed_from_another_thread(&cache, &held);
        assert_eq!(lost, 0, "{lost} of {} held keys were missed", held.len());

        // A rebuild now, with nothing pending eviction, leaves few evicted keys' bits.
        refill_stored_keys(&cache.inner, &cache.stored);
        let (held_after, ghosts) = held_and_ghosts(&cache, &keys);
        assert_eq!(held_after.len(), held.len());
        assert_eq!(missed_from_another_thread(&cache, &held), 0);
        let evicted = keys.len() - held.len();
        assert!(
            ghosts * 4 < evicted && ghosts < ghosts_before,
            "{ghosts} of {evicted} evicted keys looked held (before the rebuild: {ghosts_before})"
        );
    }
}
