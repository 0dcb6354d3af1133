//! What the built-in dashboard (`/` on the admin listener) and its `/api/`
//! endpoints show: counters over the last hour, top-N lists, the last
//! queries and upstream latency.
//!
//! Hot path ([`Dashboard::record`]): the same [`Outcome`] the metrics and the
//! query log get is counted and copied, compactly, into this worker thread's
//! own pending batch (an uncontended mutex, as the query log's buffer): a few
//! additions, a clock read (as the query log's) and a copy of the name; no
//! allocation once the batch has grown, no shared atomic. Everything costly (the top-N sketches,
//! the ring of recent queries, the per-slot series) happens off the hot path,
//! when [`Dashboard::collect`] takes every thread's batch: every
//! [`COLLECT_EVERY`] on the admin thread, and before each `/api` answer (so
//! an answer counts every query answered before it was asked for).
//!
//! Bounds (`src/config/limits.rs`): a batch holds at most
//! `Limits::dashboard_pending_per_worker` queries (past it the query is still
//! counted, but not listed: counts stay exact, top-N and recent lists become
//! a sample, and the number skipped is reported); [`HISTORY_SLOTS`] slots of
//! [`SLOT`] each; `Limits::dashboard_top_keys` counters per list per window;
//! `Limits::dashboard_recent_queries` recent queries; latency for at most
//! `Limits::dashboard_upstreams` upstream servers.
//!
//! Privacy: clients are shown as the query log writes them (`--log-client-ip`:
//! truncated by default, hidden with `none`), and names the query log
//! excludes (`--log-exclude`) are counted but never listed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::outcome::{action_index, CacheStatus, Outcome, ACTIONS};
use super::querylog::{ClientIpMode, Exclusions, Rfc3339};
use super::sketch::{merge, SpaceSaving};
use super::slots::{lock, Local, ThreadSlots};
use crate::config::limits::{HISTORY_SLOTS, SLOT, TOP_WINDOW, TOP_WINDOWS};
use crate::config::Limits;
use crate::protocol::wire::rcode;
use crate::query::Transport;
use crate::upstream::{ExchangeSink, Upstream, UpstreamError};

/// How often the admin thread takes the workers' batches: short enough that
/// a batch stays small (and in cache), long enough to cost nothing.
pub const COLLECT_EVERY: Duration = Duration::from_millis(250);

/// Actions that refuse the client an answer by policy: the "blocked" share.
fn is_blocked(action: usize) -> bool {
    matches!(ACTIONS[action], "block" | "refuse" | "drop")
}

/// Latency buckets: 4 per doubling from 25 µs (bucket 0 is below 25 µs), so
/// a quantile is read to within 19 %; the last one ends past 26 s, beyond
/// any upstream timeout.
const LATENCY_BUCKETS: usize = 81;
const LATENCY_BASE_US: f64 = 25.0;

fn latency_bucket(elapsed: Duration) -> usize {
    let us = elapsed.as_secs_f64() * 1e6;
    if us < LATENCY_BASE_US {
        return 0;
    }
    let b = (4.0 * (us / LATENCY_BASE_US).log2()).floor() as usize + 1;
    b.min(LATENCY_BUCKETS - 1)
}

/// Upper end of bucket `b`, in milliseconds.
fn bucket_upper_ms(b: usize) -> f64 {
    LATENCY_BASE_US * 2f64.powf(b as f64 / 4.0) / 1000.0
}

/// What the dashboard needs from the settings.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// How clients are shown (`--log-client-ip`).
    pub client_ip: ClientIpMode,
    /// Names never listed (`--log-exclude`).
    pub exclude: Option<std::path::PathBuf>,
    pub recent_queries: usize,
    pub top_keys: usize,
    pub pending_per_worker: usize,
    pub upstreams: usize,
}

impl DashboardSettings {
    /// The bounds of `limits`, clients shown as `client_ip`.
    pub fn new(limits: &Limits, client_ip: ClientIpMode) -> Self {
        Self {
            client_ip,
            exclude: None,
            recent_queries: limits.dashboard_recent_queries,
            top_keys: limits.dashboard_top_keys,
            pending_per_worker: limits.dashboard_pending_per_worker,
            upstreams: limits.dashboard_upstreams,
        }
    }
}

/// Query counts, by action and by cache result.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    by_action: [u64; ACTIONS.len()],
    hits: u64,
    misses: u64,
    stale: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        for (a, b) in self.by_action.iter_mut().zip(other.by_action) {
            *a += b;
        }
        self.hits += other.hits;
        self.misses += other.misses;
        self.stale += other.stale;
    }

    fn queries(&self) -> u64 {
        self.by_action.iter().sum()
    }

    fn blocked(&self) -> u64 {
        (0..ACTIONS.len())
            .filter(|&a| is_blocked(a))
            .map(|a| self.by_action[a])
            .sum()
    }

    fn lookups(&self) -> u64 {
        self.hits + self.misses + self.stale
    }
}

/// One query as the hot path copies it; its strings live in the batch's
/// `text` (name, organization, deciding rule, then each audited rule with a
/// two-byte length before it).
#[derive(Debug, Clone)]
struct Record {
    /// When it was answered: the recent queries of several workers are put
    /// in order by it.
    at: SystemTime,
    start: u32,
    name_len: u16,
    org_len: u16,
    rule_len: u16,
    audited_len: u16,
    has_rule: bool,
    qtype: u16,
    rcode: Option<u16>,
    ede: Option<u16>,
    action: u8,
    cache: CacheStatus,
    transport: Transport,
    client: Option<IpAddr>,
    upstream: Option<Upstream>,
    duration_us: u32,
}

/// One worker thread's queries since the last collection.
#[derive(Debug, Default)]
struct Pending {
    counts: Counts,
    records: Vec<Record>,
    text: Vec<u8>,
    /// Queries counted but not listed: the batch was full.
    skipped: u64,
}

impl Pending {
    fn clear(&mut self) {
        self.counts = Counts::default();
        self.records.clear();
        self.text.clear();
        self.skipped = 0;
    }
}

thread_local! {
    /// This thread's batch for each live dashboard.
    static SLOTS: Local<Pending> = const { RefCell::new(Vec::new()) };
}

/// Longest string kept per field: names are at most 253 bytes; organization
/// and rule ids come from the policy and are short, but are cut here so that
/// the lengths always fit.
const MAX_FIELD: usize = 1024;

fn push_field(text: &mut Vec<u8>, s: &str) -> u16 {
    let bytes = &s.as_bytes()[..s.len().min(MAX_FIELD)];
    text.extend_from_slice(bytes);
    bytes.len() as u16
}

/// Counters of one slot of [`SLOT`].
#[derive(Debug, Default, Clone, Copy)]
struct SlotCounts {
    id: u64,
    counts: Counts,
}

/// The top-N sketches of one window of [`TOP_WINDOW`].
#[derive(Debug, Clone)]
struct Window {
    id: u64,
    names: SpaceSaving<String>,
    blocked: SpaceSaving<String>,
    rules: SpaceSaving<String>,
    clients: SpaceSaving<IpAddr>,
    orgs: SpaceSaving<String>,
}

impl Window {
    fn new(id: u64, k: usize) -> Self {
        Self {
            id,
            names: SpaceSaving::new(k),
            blocked: SpaceSaving::new(k),
            rules: SpaceSaving::new(k),
            clients: SpaceSaving::new(k),
            orgs: SpaceSaving::new(k),
        }
    }
}

/// The top-N lists, by the name `/api/top?list=` takes.
pub const TOP_LISTS: [&str; 5] = ["names", "blocked", "rules", "clients", "orgs"];

/// A query as `/api/recent` shows it.
#[derive(Debug, Clone)]
pub struct Recent {
    at: SystemTime,
    transport: Transport,
    client: Option<IpAddr>,
    org: Box<str>,
    qname: Box<str>,
    qtype: u16,
    rcode: Option<u16>,
    action: &'static str,
    rule: Option<Box<str>>,
    cache: CacheStatus,
    upstream: Option<Upstream>,
    duration_us: u32,
    ede: Option<u16>,
}

impl Recent {
    fn json(&self) -> Value {
        let mut qtype = Vec::new();
        super::querylog::push_qtype(&mut qtype, self.qtype);
        json!({
            "time": Rfc3339(self.at).to_string(),
            "transport": self.transport.as_str(),
            "client": self.client.map(|c| c.to_string()),
            "org": (!self.org.is_empty()).then_some(&*self.org),
            "qname": &*self.qname,
            "qtype": String::from_utf8_lossy(&qtype),
            "rcode": self.rcode.map(rcode_label),
            "action": self.action,
            "rule": self.rule.as_deref(),
            "cache": self.cache.as_str(),
            "upstream": self.upstream.as_ref().map(|u| u.to_string()),
            "duration_us": self.duration_us,
            "ede": self.ede,
        })
    }
}

fn rcode_label(code: u16) -> String {
    match rcode::name(code) {
        "OTHER" => format!("RCODE{code}"),
        name => name.to_string(),
    }
}

/// What `/api/recent` filters on: every given field must match.
#[derive(Debug, Default, Clone)]
pub struct RecentFilter {
    /// Part of the name (case-insensitive).
    pub name: Option<String>,
    /// Start of the client address as shown (e.g. `192.0.2.` or a full address).
    pub client: Option<String>,
    /// An action label, exactly.
    pub action: Option<String>,
    /// Part of the deciding rule's key.
    pub rule: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl RecentFilter {
    fn matches(&self, r: &Recent) -> bool {
        if let Some(name) = &self.name {
            if !r.qname.contains(name.as_str()) {
                return false;
            }
        }
        if let Some(client) = &self.client {
            match r.client {
                Some(ip) if ip.to_string().starts_with(client.as_str()) => {}
                _ => return false,
            }
        }
        if let Some(action) = &self.action {
            if r.action != action {
                return false;
            }
        }
        if let Some(rule) = &self.rule {
            match &r.rule {
                Some(key) if key.contains(rule.as_str()) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Everything aggregated, behind one lock taken by collections and API calls.
#[derive(Debug)]
struct State {
    totals: Counts,
    skipped: u64,
    slots: Vec<SlotCounts>,
    windows: Vec<Window>,
    recent: VecDeque<Recent>,
    /// The batch handed back to the next thread collected (keeps its capacity).
    spare: Pending,
}

/// Where one collection files what it takes: the history slot and top-N
/// window of this moment, and how much of it is kept.
struct Collection {
    slot_id: u64,
    window_id: u64,
    top_keys: usize,
    recent_queries: usize,
}

/// One record's strings, cut out of its batch's text.
struct RecordText<'a> {
    name: &'a str,
    org: &'a str,
    rule: &'a str,
    /// The audited rules: each a little-endian u16 length and its bytes.
    audited: &'a [u8],
}

impl<'a> RecordText<'a> {
    fn of(batch: &'a Pending, r: &Record) -> Self {
        let text = &batch.text[r.start as usize..];
        let (name, text) = split_str(text, r.name_len);
        let (org, text) = split_str(text, r.org_len);
        let (rule, audited) = split_str(text, r.rule_len);
        Self {
            name,
            org,
            rule,
            audited: &audited[..audited.len().min(usize::from(r.audited_len))],
        }
    }

    fn recent(&self, r: &Record) -> Recent {
        Recent {
            at: r.at,
            transport: r.transport,
            client: r.client,
            org: self.org.into(),
            qname: self.name.into(),
            qtype: r.qtype,
            rcode: r.rcode,
            action: ACTIONS[usize::from(r.action)],
            rule: r.has_rule.then(|| self.rule.into()),
            cache: r.cache,
            upstream: r.upstream.clone(),
            duration_us: r.duration_us,
            ede: r.ede,
        }
    }
}

impl Window {
    /// Counts one query in each top-N sketch it belongs to.
    fn count(&mut self, r: &Record, text: &RecordText) {
        self.names.add(text.name, 1);
        if is_blocked(r.action.into()) {
            self.blocked.add(text.name, 1);
        }
        if r.has_rule {
            self.rules.add(text.rule, 1);
        }
        let mut audited = text.audited;
        while audited.len() >= 2 {
            let len = u16::from_le_bytes([audited[0], audited[1]]);
            let (key, rest) = split_str(&audited[2..], len);
            self.rules.add(key, 1);
            audited = rest;
        }
        if let Some(client) = r.client {
            self.clients.add(&client, 1);
        }
        if !text.org.is_empty() {
            self.orgs.add(text.org, 1);
        }
    }
}

impl State {
    /// Adds the batch in `spare` to the totals, the history slot and the
    /// top-N window; its newest records go to `newest`.
    fn fold_spare(&mut self, at: &Collection, newest: &mut Vec<Recent>) {
        let batch = &self.spare;
        self.totals.add(&batch.counts);
        self.skipped += batch.skipped;
        let ring = &mut self.slots[(at.slot_id % HISTORY_SLOTS as u64) as usize];
        if ring.id != at.slot_id {
            *ring = SlotCounts {
                id: at.slot_id,
                counts: Counts::default(),
            };
        }
        ring.counts.add(&batch.counts);
        let window = &mut self.windows[(at.window_id % TOP_WINDOWS as u64) as usize];
        if window.id != at.window_id {
            *window = Window::new(at.window_id, at.top_keys);
        }
        // Only the newest records can stay in the ring.
        let keep_from = batch.records.len().saturating_sub(at.recent_queries);
        for (i, r) in batch.records.iter().enumerate() {
            let text = RecordText::of(batch, r);
            window.count(r, &text);
            if i >= keep_from && at.recent_queries > 0 {
                newest.push(text.recent(r));
            }
        }
    }

    /// Puts the newest queries of one collection into the ring of `cap`.
    fn keep_recent(&mut self, mut newest: Vec<Recent>, cap: usize) {
        // Stable: one worker's queries keep their order whatever the clock did.
        newest.sort_by_key(|r| r.at);
        let skip = newest.len().saturating_sub(cap);
        for r in newest.into_iter().skip(skip) {
            // Batches are taken one after the other while workers answer, so a
            // query can arrive a collection after a newer one of another
            // worker: it goes in at its place in time (nearly always the end).
            let at = self.recent.partition_point(|x| x.at <= r.at);
            if at == 0 && self.recent.len() >= cap {
                continue;
            }
            self.recent.insert(at, r);
            if self.recent.len() > cap {
                self.recent.pop_front();
            }
        }
    }
}

/// Upstream latency per slot, per server.
#[derive(Debug, Default)]
struct Latency {
    servers: Vec<Upstream>,
    /// Exchanges and failures per server, since start.
    exchanges: Vec<(u64, u64)>,
    /// Exchanges with servers past the bound: counted, not charted.
    untracked: u64,
    slots: Vec<LatencySlot>,
}

#[derive(Debug, Default, Clone)]
struct LatencySlot {
    id: u64,
    /// Per server (by index in `servers`), a histogram.
    per_server: Vec<Vec<u32>>,
}

/// The dashboard's recorder and its aggregates, one per server.
pub struct Dashboard {
    registry: Arc<ThreadSlots<Pending>>,
    settings: DashboardSettings,
    exclude: Exclusions,
    started: Instant,
    state: Mutex<State>,
    latency: Mutex<Latency>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard with nothing recorded; reads the exclusion list now so a
    /// bad path fails at start.
    pub fn new(settings: DashboardSettings) -> std::io::Result<Self> {
        let exclude = match &settings.exclude {
            Some(path) => Exclusions::load(path)?,
            None => Exclusions::default(),
        };
        let k = settings.top_keys.max(1);
        Ok(Self {
            registry: Arc::default(),
            exclude,
            started: Instant::now(),
            state: Mutex::new(State {
                totals: Counts::default(),
                skipped: 0,
                slots: vec![SlotCounts::default(); HISTORY_SLOTS],
                windows: (0..TOP_WINDOWS).map(|_| Window::new(u64::MAX, k)).collect(),
                recent: VecDeque::with_capacity(settings.recent_queries + 1),
                spare: Pending::default(),
            }),
            latency: Mutex::new(Latency {
                slots: vec![LatencySlot::default(); HISTORY_SLOTS],
                ..Latency::default()
            }),
            settings,
        })
    }

    /// Records one finished query on this thread's batch. Hot path.
    #[inline]
    pub fn record(&self, o: &Outcome<'_>) {
        self.registry.with(&SLOTS, |p| {
            let action = action_index(o.action);
            p.counts.by_action[action] += 1;
            match o.cache {
                CacheStatus::Hit => p.counts.hits += 1,
                CacheStatus::Miss => p.counts.misses += 1,
                CacheStatus::Stale => p.counts.stale += 1,
                CacheStatus::None => {}
            }
            if p.records.len() >= self.settings.pending_per_worker {
                p.skipped += 1;
                return;
            }
            if self.exclude.covers(o.qname) {
                return;
            }
            let start = p.text.len() as u32;
            let name_len = push_field(&mut p.text, o.qname);
            let org_len = push_field(&mut p.text, o.org);
            let rule_len = o.rule.map_or(0, |(key, _)| push_field(&mut p.text, key));
            let mut audited_len = 0u16;
            for (key, _) in o.audited.iter().take(16) {
                let before = p.text.len();
                p.text.extend_from_slice(&[0, 0]);
                let len = push_field(&mut p.text, key);
                p.text[before..before + 2].copy_from_slice(&len.to_le_bytes());
                audited_len = audited_len.saturating_add(len + 2);
            }
            p.records.push(Record {
                at: SystemTime::now(),
                start,
                name_len,
                org_len,
                rule_len,
                audited_len,
                has_rule: o.rule.is_some(),
                qtype: o.qtype,
                rcode: o.rcode,
                ede: o.ede,
                action: action as u8,
                cache: o.cache,
                transport: o.transport,
                client: self.settings.client_ip.apply(o.client_ip),
                upstream: o.upstream.cloned(),
                duration_us: o.duration.as_micros().min(u32::MAX as u128) as u32,
            });
        });
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Takes every thread's batch into the aggregates. Off the hot path: the
    /// admin thread, every [`COLLECT_EVERY`] and before each `/api` answer.
    pub fn collect(&self) {
        let slots = self.registry.all();
        let elapsed = self.elapsed();
        let at = Collection {
            slot_id: elapsed.as_secs() / SLOT.as_secs(),
            window_id: elapsed.as_secs() / TOP_WINDOW.as_secs(),
            top_keys: self.settings.top_keys.max(1),
            recent_queries: self.settings.recent_queries,
        };
        // The newest queries of every batch, put in order before they join the ring.
        let mut newest: Vec<Recent> = Vec::new();
        let mut state = lock(&self.state);
        for slot in &slots {
            std::mem::swap(&mut *lock(slot), &mut state.spare);
            state.fold_spare(&at, &mut newest);
            state.spare.clear();
        }
        state.keep_recent(newest, at.recent_queries);
        // Forget the batches of threads that are gone (only the registry
        // holds them once this copy of the list is dropped); they were just
        // emptied, and their thread cannot fill them again.
        drop(state);
        drop(slots);
        self.registry.forget_gone(|_| false);
    }

    /// Counters, series and latency, as `/api/stats` shows them.
    pub fn stats(&self) -> Value {
        self.collect();
        let elapsed = self.elapsed();
        let slot_secs = SLOT.as_secs();
        let current = elapsed.as_secs() / slot_secs;
        let first = current.saturating_sub(HISTORY_SLOTS as u64 - 1);
        // Seconds covered by slot `id` (the current one is still filling).
        let covered = |id: u64| -> f64 {
            if id == current {
                (elapsed.as_secs_f64() - (id * slot_secs) as f64).max(1.0)
            } else {
                slot_secs as f64
            }
        };
        let state = lock(&self.state);
        let at = |id: u64| -> Counts {
            let s = &state.slots[(id % HISTORY_SLOTS as u64) as usize];
            if s.id == id {
                s.counts
            } else {
                Counts::default()
            }
        };
        let mut qps = Vec::new();
        let mut blocked = Vec::new();
        let mut hit_ratio = Vec::new();
        let mut last_minute = Counts::default();
        let mut minute_secs = 0.0;
        for id in first..=current {
            let c = at(id);
            let secs = covered(id);
            qps.push(round2(c.queries() as f64 / secs));
            blocked.push(round2(c.blocked() as f64 / secs));
            hit_ratio.push(ratio(c.hits, c.lookups()));
            if id + 6 > current {
                last_minute.add(&c);
                minute_secs += secs;
            }
        }
        let t = state.totals;
        let by_action: serde_json::Map<String, Value> = ACTIONS
            .iter()
            .zip(t.by_action)
            .filter(|(_, n)| *n > 0)
            .map(|(a, n)| (a.to_string(), n.into()))
            .collect();
        let totals = json!({
            "queries": t.queries(),
            "blocked": t.blocked(),
            "cache_hits": t.hits,
            "cache_misses": t.misses,
            "cache_stale": t.stale,
            "by_action": by_action,
        });
        let skipped = state.skipped;
        drop(state);
        json!({
            "totals": totals,
            "last_minute": {
                "qps": round2(last_minute.queries() as f64 / minute_secs.max(1.0)),
                "blocked_share": ratio(last_minute.blocked(), last_minute.queries()),
                "cache_hit_ratio": ratio(last_minute.hits, last_minute.lookups()),
            },
            "blocked_share": ratio(t.blocked(), t.queries()),
            "cache_hit_ratio": ratio(t.hits, t.lookups()),
            "series": {
                "slot_seconds": slot_secs,
                "slots": qps.len(),
                "qps": qps,
                "blocked_qps": blocked,
                "cache_hit_ratio": hit_ratio,
            },
            "upstreams": self.latency_json(first, current),
            "not_listed": skipped,
            "client_ip": client_ip_label(self.settings.client_ip),
        })
    }

    fn latency_json(&self, first: u64, current: u64) -> Value {
        let latency = lock(&self.latency);
        let mut out = Vec::new();
        for (i, server) in latency.servers.iter().enumerate() {
            let mut hour = vec![0u64; LATENCY_BUCKETS];
            let (mut p50, mut p99) = (Vec::new(), Vec::new());
            for id in first..=current {
                let slot = &latency.slots[(id % HISTORY_SLOTS as u64) as usize];
                match slot.per_server.get(i).filter(|_| slot.id == id) {
                    Some(h) if h.iter().any(|&n| n > 0) => {
                        for (sum, &n) in hour.iter_mut().zip(h) {
                            *sum += u64::from(n);
                        }
                        p50.push(quantile(h.iter().map(|&n| u64::from(n)), 0.5));
                        p99.push(quantile(h.iter().map(|&n| u64::from(n)), 0.99));
                    }
                    _ => {
                        p50.push(None);
                        p99.push(None);
                    }
                }
            }
            let (exchanges, failures) = latency.exchanges[i];
            out.push(json!({
                "upstream": server.to_string(),
                "exchanges": exchanges,
                "failures": failures,
                "p50_ms": quantile(hour.iter().copied(), 0.5),
                "p99_ms": quantile(hour.iter().copied(), 0.99),
                "series": { "p50_ms": p50, "p99_ms": p99 },
            }));
        }
        json!({ "servers": out, "untracked_exchanges": latency.untracked })
    }

    /// The `n` heaviest keys of each list (or of `only`) over the last hour.
    pub fn top(&self, n: usize, only: Option<&str>) -> Value {
        self.collect();
        let current = self.elapsed().as_secs() / TOP_WINDOW.as_secs();
        let state = lock(&self.state);
        let live: Vec<&Window> = state
            .windows
            .iter()
            .filter(|w| w.id != u64::MAX && w.id + TOP_WINDOWS as u64 > current)
            .collect();
        let mut lists = serde_json::Map::new();
        let hidden = self.settings.client_ip == ClientIpMode::None;
        for list in TOP_LISTS {
            if only.is_some_and(|o| o != list) {
                continue;
            }
            let value = match list {
                "names" => top_json(live.iter().map(|w| &w.names), n, |k| k.to_string()),
                "blocked" => top_json(live.iter().map(|w| &w.blocked), n, |k| k.to_string()),
                "rules" => top_json(live.iter().map(|w| &w.rules), n, |k| k.to_string()),
                "clients" => top_json(live.iter().map(|w| &w.clients), n, |k| k.to_string()),
                _ => top_json(live.iter().map(|w| &w.orgs), n, |k| k.to_string()),
            };
            lists.insert(list.to_string(), value);
        }
        json!({
            "window_seconds": TOP_WINDOW.as_secs() * TOP_WINDOWS as u64,
            "capacity": self.settings.top_keys,
            "clients_hidden": hidden,
            "client_ip": client_ip_label(self.settings.client_ip),
            "lists": lists,
        })
    }

    /// The newest queries that pass `filter`, newest first.
    pub fn recent(&self, filter: &RecentFilter) -> Value {
        self.collect();
        let state = lock(&self.state);
        let held = state.recent.len();
        let queries: Vec<Value> = state
            .recent
            .iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(filter.limit)
            .map(Recent::json)
            .collect();
        json!({
            "capacity": self.settings.recent_queries,
            "held": held,
            "client_ip": client_ip_label(self.settings.client_ip),
            "queries": queries,
        })
    }

    /// The bound on `/api/recent?limit=` and `/api/top?n=`.
    pub fn recent_capacity(&self) -> usize {
        self.settings.recent_queries
    }

    pub fn top_capacity(&self) -> usize {
        self.settings.top_keys
    }
}

impl ExchangeSink for Dashboard {
    /// One upstream exchange (misses only: off the hot path of hits).
    fn exchanged(&self, server: &Upstream, elapsed: Duration, error: Option<&UpstreamError>) {
        let slot_id = self.elapsed().as_secs() / SLOT.as_secs();
        let mut latency = lock(&self.latency);
        let latency = &mut *latency;
        let index = match latency.servers.iter().position(|s| s == server) {
            Some(i) => i,
            None if latency.servers.len() < self.settings.upstreams => {
                latency.servers.push(server.clone());
                latency.exchanges.push((0, 0));
                latency.servers.len() - 1
            }
            None => {
                latency.untracked += 1;
                return;
            }
        };
        latency.exchanges[index].0 += 1;
        if error.is_some() {
            latency.exchanges[index].1 += 1;
            return;
        }
        let slot = &mut latency.slots[(slot_id % HISTORY_SLOTS as u64) as usize];
        if slot.id != slot_id {
            slot.id = slot_id;
            slot.per_server.clear();
        }
        if slot.per_server.len() <= index {
            slot.per_server.resize(index + 1, Vec::new());
        }
        let h = &mut slot.per_server[index];
        if h.is_empty() {
            h.resize(LATENCY_BUCKETS, 0);
        }
        let b = latency_bucket(elapsed);
        h[b] = h[b].saturating_add(1);
    }
}

fn split_str(text: &[u8], len: u16) -> (&str, &[u8]) {
    let len = usize::from(len).min(text.len());
    let (head, rest) = text.split_at(len);
    // Cut at MAX_FIELD, a key may end mid-character: show what is whole.
    let s = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    (s, rest)
}

fn top_json<'a, K: std::hash::Hash + Eq + Clone + 'a>(
    parts: impl Iterator<Item = &'a SpaceSaving<K>>,
    n: usize,
    show: impl Fn(&K) -> String,
) -> Value {
    let merged = merge(parts, n);
    let entries: Vec<Value> = merged
        .entries
        .iter()
        .map(|c| json!({ "key": show(&c.key), "count": c.count, "error": c.error }))
        .collect();
    json!({ "total": merged.total, "floor": merged.floor, "entries": entries })
}

/// The `q` quantile of a histogram, as its bucket's upper end in ms.
fn quantile(buckets: impl Iterator<Item = u64> + Clone, q: f64) -> Option<f64> {
    let total: u64 = buckets.clone().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, n) in buckets.enumerate() {
        seen += n;
        if seen >= rank {
            return Some(round3(bucket_upper_ms(b)));
        }
    }
    None
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn client_ip_label(mode: ClientIpMode) -> &'static str {
    match mode {
        ClientIpMode::None => "none",
        ClientIpMode::Truncate => "truncate",
        ClientIpMode::Full => "full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ActionLabel;

    fn settings(client_ip: ClientIpMode) -> DashboardSettings {
        let mut s = DashboardSettings::new(&Limits::default(), client_ip);
        s.recent_queries = 5;
        s.top_keys = 8;
        s.pending_per_worker = 100;
        s
    }

    fn outcome(qname: &'static str, action: &'static str) -> Outcome<'static> {
        let action = *ActionLabel::ALL
            .iter()
            .find(|a| a.as_str() == action)
            .expect("an action label");
        Outcome {
            qname,
            action,
            ..Outcome::sample()
        }
    }

    #[test]
    fn counts_lists_and_bounds_the_ring() {
        let d = Dashboard::new(settings(ClientIpMode::Truncate)).unwrap();
        for _ in 0..3 {
            d.record(&outcome("www.example.test", "resolve"));
        }
        let mut blocked = outcome("ads.example.test", "block");
        blocked.rule = Some(("acme/no-ads", "No ads"));
        blocked.audited = &[("watch", "Watch")];
        blocked.cache = CacheStatus::None;
        d.record(&blocked);
        let mut miss = outcome("mail.example.test", "resolve");
        miss.cache = CacheStatus::Miss;
        for _ in 0..4 {
            d.record(&miss);
        }
        let stats = d.stats();
        assert_eq!(stats["totals"]["queries"], 8);
        assert_eq!(stats["totals"]["blocked"], 1);
        assert_eq!(stats["totals"]["cache_hits"], 3);
        assert_eq!(stats["totals"]["cache_misses"], 4);
        assert_eq!(stats["cache_hit_ratio"], 0.4286);
        let top = d.top(3, None);
        assert_eq!(
            top["lists"]["blocked"]["entries"][0]["key"],
            "ads.example.test"
        );
        assert_eq!(
            top["lists"]["names"]["entries"][0]["key"],
            "mail.example.test"
        );
        assert_eq!(top["lists"]["clients"]["entries"][0]["key"], "198.51.100.0");
        let rules: Vec<&str> = top["lists"]["rules"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        assert!(
            rules.contains(&"acme/no-ads") && rules.contains(&"watch"),
            "{rules:?}"
        );
        let recent = d.recent(&RecentFilter {
            limit: 100,
            ..RecentFilter::default()
        });
        assert_eq!(
            recent["queries"].as_array().unwrap().len(),
            5,
            "bounded ring"
        );
        let blocked_only = RecentFilter {
            action: Some("block".into()),
            limit: 100,
            ..RecentFilter::default()
        };
        let found = d.recent(&blocked_only);
        assert_eq!(found["queries"].as_array().unwrap().len(), 1);
        assert_eq!(found["queries"][0]["qname"], "ads.example.test");
        assert_eq!(found["queries"][0]["rule"], "acme/no-ads");
        assert_eq!(found["queries"][0]["client"], "198.51.100.0");
        for _ in 0..5 {
            d.record(&outcome("www.example.test", "resolve"));
        }
        let gone = d.recent(&blocked_only);
        assert_eq!(gone["queries"].as_array().unwrap().len(), 0, "evicted");
        assert_eq!(d.stats()["totals"]["blocked"], 1, "still counted");
    }

    #[test]
    fn batches_of_many_threads_are_all_counted_and_then_forgotten() {
        let d = Arc::new(Dashboard::new(settings(ClientIpMode::Full)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        d.record(&outcome("www.example.test", "resolve"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(d.registry.len(), 4);
        assert_eq!(d.stats()["totals"]["queries"], 200);
        assert!(d.registry.len() == 0, "slots of finished threads are kept");
        let top = d.top(1, Some("clients"));
        assert_eq!(
            top["lists"]["clients"]["entries"][0]["key"],
            "198.51.100.77"
        );
        assert_eq!(top["lists"]["clients"]["entries"][0]["count"], 200);
    }

    #[test]
    fn a_full_batch_still_counts_and_says_what_it_did_not_list() {
        let mut s = settings(ClientIpMode::None);
        s.pending_per_worker = 2;
        let d = Dashboard::new(s).unwrap();
        for _ in 0..5 {
            d.record(&outcome("www.example.test", "resolve"));
        }
        let stats = d.stats();
        assert_eq!(stats["totals"]["queries"], 5);
        assert_eq!(stats["not_listed"], 3);
        let recent = d.recent(&RecentFilter {
            limit: 10,
            ..RecentFilter::default()
        });
        assert_eq!(recent["queries"][0]["client"], Value::Null, "hidden");
        assert_eq!(
            d.top(5, Some("clients"))["lists"]["clients"]["entries"],
            json!([])
        );
    }

    #[test]
    fn latency_quantiles_per_upstream() {
        let d = Dashboard::new(settings(ClientIpMode::Truncate)).unwrap();
        let server: Upstream = "192.0.2.53:53".parse().unwrap();
        for _ in 0..98 {
            d.exchanged(&server, Duration::from_micros(400), None);
        }
        for _ in 0..2 {
            d.exchanged(&server, Duration::from_millis(90), None);
        }
        d.exchanged(
            &server,
            Duration::from_millis(800),
            Some(&UpstreamError::Timeout),
        );
        let stats = d.stats();
        let up = &stats["upstreams"]["servers"][0];
        assert_eq!(up["upstream"], "192.0.2.53:53");
        assert_eq!(up["exchanges"], 101);
        assert_eq!(up["failures"], 1);
        let p50 = up["p50_ms"].as_f64().unwrap();
        let p99 = up["p99_ms"].as_f64().unwrap();
        assert!((0.4..0.48).contains(&p50), "{p50}");
        assert!((90.0..108.0).contains(&p99), "{p99}");
    }

    #[test]
    fn latency_buckets_are_ordered_and_cover_the_timeouts() {
        assert_eq!(latency_bucket(Duration::from_micros(10)), 0);
        let mut last = 0;
        for us in [30u64, 100, 1_000, 10_000, 100_000, 1_000_000, 5_000_000] {
            let b = latency_bucket(Duration::from_micros(us));
            assert!(b > last, "{us}");
            assert!(bucket_upper_ms(b) >= us as f64 / 1000.0, "{us}");
            assert!(
                bucket_upper_ms(b) <= us as f64 / 1000.0 * 1.19 + 1e-9,
                "{us}"
            );
            last = b;
        }
        assert!(latency_bucket(Duration::from_secs(5)) < LATENCY_BUCKETS - 1);
    }
}
