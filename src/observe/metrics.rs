//! Prometheus metrics (the list: docs/observability.md), one registry per server.
//!
//! The recorder is per server, not the process-global `metrics` recorder:
//! handles are registered straight on our own [`PrometheusRecorder`] and
//! rendered with its [`PrometheusHandle`]. So several servers in one process
//! (the integration tests) each count only their own queries and can be
//! asserted exactly, and nothing depends on installation order. The price is
//! that the `metrics::counter!` family of macros (which go to the global
//! recorder) must not be used for Picket's own metrics: code that needs to
//! report something gets a handle from [`Metrics`] or registers a probe.
//!
//! Hot path: one pre-resolved [`Counter`] per (transport, action, rcode),
//! looked up by array index, created on first use so that only combinations
//! that happened are exported (~18 ns per increment, no label hashing). The
//! cache counters are three pre-created handles. The upstream latency
//! histogram is recorded only on upstream exchanges (cache misses); its raw
//! samples are drained by [`Metrics::run_upkeep`] every second and at each
//! scrape. Gauges (cache entries and bytes, in-flight upstream queries, open
//! connections) and counters kept elsewhere as atomics (query-log drops,
//! forwarder rejects) are read by probes at scrape time, so the query path
//! does no extra work for them.
//!
//! Rule hits: every (organization, rule) series of a policy is registered when
//! the policy loads, before it serves ([`Metrics::register_rules`]), into an
//! immutable table that is swapped whole; a hit is two hash lookups of short
//! strings in it and an atomic add, whatever the number of series: no lock, no
//! copy. Series past [`MAX_RULE_SERIES`] share `rule="_other"` (one counter per
//! organization, created by its first hit).
//!
//! Labels are bounded: transports, actions and rcodes are fixed sets; upstream
//! labels come from the configuration; rule labels from the loaded policy
//! (and are capped at [`MAX_RULE_SERIES`]). Never a query name or a client IP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::outcome::{rcode_index, transport_index, CacheStatus, Outcome, RCODES};
use crate::query::{ActionLabel, Transport};
use crate::upstream::{ExchangeSink, Upstream, UpstreamError};

pub use crate::config::limits::MAX_RULE_SERIES;

/// Upstream latency buckets, seconds: loopback and LAN resolvers answer in
/// well under a millisecond, distant ones in tens, timeouts at 0.8 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upstream error kinds exported from the start for every configured upstream
/// (the forwarder produces only these; others are registered when seen).
const UPSTREAM_ERROR_KINDS: [&str; 3] = ["timeout", "network", "malformed"];

/// Metric names, in one place for the docs and the tests.
pub mod name {
    pub const QUERIES: &str = "picket_queries_total";
    pub const CACHE_LOOKUPS: &str = "picket_cache_lookups_total";
    pub const CACHE_ENTRIES: &str = "picket_cache_entries";
    pub const CACHE_BYTES: &str = "picket_cache_bytes";
    pub const UPSTREAM_QUERIES: &str = "picket_upstream_queries_total";
    pub const UPSTREAM_ERRORS: &str = "picket_upstream_errors_total";
    pub const UPSTREAM_LATENCY: &str = "picket_upstream_latency_seconds";
    pub const UPSTREAM_HEALTHY: &str = "picket_upstream_healthy";
    pub const UPSTREAM_INFLIGHT: &str = "picket_upstream_inflight";
    pub const UPSTREAM_REJECTED: &str = "picket_upstream_rejected_answers_total";
    pub const UPSTREAM_TCP_RETRIES: &str = "picket_upstream_tcp_retries_total";
    pub const UPSTREAM_DECLINED: &str = "picket_upstream_declined_total";
    pub const CONNECTIONS: &str = "picket_connections_open";
    pub const CONNECTIONS_SHED: &str = "picket_connections_shed_total";
    pub const POLICY_RELOADS: &str = "picket_policy_reloads_total";
    pub const POLICY_VERSION: &str = "picket_policy_version";
    pub const POLICY_BUNDLE_FETCH: &str = "picket_policy_bundle_fetch_total";
    pub const POLICY_BUNDLE_VERSION: &str = "picket_policy_bundle_version";
    pub const POLICY_BUNDLE_AGE: &str = "picket_policy_bundle_age_seconds";
    pub const LIST_FETCH: &str = "picket_list_fetch_total";
    pub const RULE_HITS: &str = "picket_rule_hits_total";
    pub const QUERYLOG_LINES: &str = "picket_querylog_lines_total";
    pub const QUERYLOG_DROPPED: &str = "picket_querylog_dropped_total";
    pub const QUERYLOG_ERRORS: &str = "picket_querylog_write_errors_total";
    pub const DNSTAP_FRAMES: &str = "picket_dnstap_frames_total";
    pub const DNSTAP_DROPPED: &str = "picket_dnstap_dropped_total";
    pub const DNSTAP_RECONNECTS: &str = "picket_dnstap_reconnects_total";
    pub const RECURSOR_QUERIES: &str = "picket_recursor_queries_total";
    pub const RECURSOR_EVENTS: &str = "picket_recursor_events_total";
    pub const BLOCK_PAGE_REQUESTS: &str = "picket_block_page_requests_total";
}

type Read<T> = Box<dyn Fn() -> T + Send + Sync>;

/// A value read at scrape time.
enum Probe {
    Gauge(Gauge, Read<f64>),
    Counter(Counter, Read<u64>),
}

/// The rule-hit series of one `org` label.
#[derive(Clone, Default)]
struct OrgRuleSeries {
    /// By rule key (`org/id`, or `id` for a global rule).
    by_rule: hashbrown::HashMap<Box<str>, Counter>,
    /// `rule="_other"`: hits of this organization's rules past the series cap, created on the
    /// first one (so it is only exported when the cap is reached).
    other: OnceLock<Counter>,
}

/// Every rule-hit series registered so far (by `org` label, `""` for none). Read by every
/// hit, never edited: a registration builds a new table and swaps it in.
#[derive(Clone, Default)]
struct RuleSeries {
    by_org: hashbrown::HashMap<Box<str>, OrgRuleSeries>,
    /// Series registered, `_other` not counted; at most [`MAX_RULE_SERIES`].
    count: usize,
}

/// One upstream server's handles.
struct UpstreamMetrics {
    upstream: Upstream,
    queries: Counter,
    latency: Histogram,
    errors: [Counter; UPSTREAM_ERROR_KINDS.len()],
    other_errors: Mutex<HashMap<&'static str, Counter>>,
}

/// One server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Indexed by (transport, action, rcode); created on first use.
    queries: Box<[OnceLock<Counter>]>,
    /// hit, miss, stale.
    cache: [Counter; 3],
    rules: ArcSwap<RuleSeries>,
    /// Serialises registrations (the query path never takes it once a policy is registered).
    rules_write: Mutex<()>,
    upstreams: ArcSwap<Vec<Arc<UpstreamMetrics>>>,
    upstreams_write: Mutex<()>,
    probes: Mutex<Vec<Probe>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect()
}

impl Metrics {
    /// A fresh registry with every fixed series created; `upstreams` get their
    /// per-upstream series up front (others are added when first used).
    pub fn new(upstreams: &[Upstream]) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(name::UPSTREAM_LATENCY.to_string()),
                &LATENCY_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let cache = ["hit", "miss", "stale"]
            .map(|r| counter_on(&recorder, name::CACHE_LOOKUPS, &[("result", r)]));
        let size = Transport::ALL.len() * ActionLabel::ALL.len() * RCODES.len();
        let metrics = Self {
            queries: (0..size).map(|_| OnceLock::new()).collect(),
            cache,
            rules: ArcSwap::from_pointee(RuleSeries::default()),
            rules_write: Mutex::new(()),
            upstreams: ArcSwap::from_pointee(Vec::new()),
            upstreams_write: Mutex::new(()),
            probes: Mutex::new(Vec::new()),
            recorder,
            handle,
        };
        for server in upstreams {
            metrics.upstream(server);
        }
        metrics
    }

    /// Counts one finished query. Hot path: a few array lookups and atomic adds.
    #[inline]
    pub fn record(&self, outcome: &Outcome<'_>) {
        let t = transport_index(outcome.transport);
        let a = outcome.action as usize;
        let r = rcode_index(outcome.rcode);
        let slot = &self.queries[(t * ActionLabel::ALL.len() + a) * RCODES.len() + r];
        slot.get_or_init(|| {
            self.counter(
                name::QUERIES,
                &[
                    ("transport", Transport::ALL[t].as_str()),
                    ("action", outcome.action.as_str()),
                    ("rcode", RCODES[r]),
                ],
            )
        })
        .increment(1);
        match outcome.cache {
            CacheStatus::Hit => self.cache[0].increment(1),
            CacheStatus::Miss => self.cache[1].increment(1),
            CacheStatus::Stale => self.cache[2].increment(1),
            CacheStatus::None => {}
        }
        if let Some((rule_key, _)) = outcome.rule {
            self.rule_hit(outcome.org, rule_key);
        }
        for (rule_key, _) in outcome.audited {
            self.rule_hit(outcome.org, rule_key);
        }
    }

    /// Counts a hit of the rule `rule_key` (`org/id`, or `id` for a global rule: see
    /// `RuleRef::key`) for the client's organization `org` (`""`: none). Constant cost, no
    /// lock: the series was registered with the policy (see [`register_rules`](Self::register_rules)).
    #[inline]
    pub fn rule_hit(&self, org: &str, rule_key: &str) {
        let table = self.rules.load();
        let Some(series) = table.by_org.get(org) else {
            return self.unregistered_hit(org, rule_key);
        };
        match series.by_rule.get(rule_key) {
            Some(counter) => counter.increment(1),
            None if table.count >= MAX_RULE_SERIES => self.other(series, org).increment(1),
            None => self.unregistered_hit(org, rule_key),
        }
    }

    /// Creates the rule-hit series of a policy: `(org, rule key)` pairs, where `org` is the
    /// client's organization the rule can decide for (`""`: none). Call it before the policy
    /// serves, so its series are exported from 0 and no hit has to register one. Series stay
    /// registered when a later policy drops the rule (Prometheus keeps them too), up to
    /// [`MAX_RULE_SERIES`] in all; past it a rule is counted under `rule="_other"`.
    pub fn register_rules<'a>(&self, series: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let _write = self.rules_write.lock().unwrap_or_else(|p| p.into_inner());
        let mut table = RuleSeries::clone(&self.rules.load());
        for (org, rule_key) in series {
            self.insert_rule(&mut table, org, rule_key);
        }
        self.rules.store(Arc::new(table));
    }

    /// A hit whose series was never registered (a caller that skipped
    /// [`register_rules`](Self::register_rules)): registers it, once per series while under
    /// the cap, once per organization past it.
    #[cold]
    fn unregistered_hit(&self, org: &str, rule_key: &str) {
        self.register_rules([(org, rule_key)]);
        let table = self.rules.load();
        if let Some(series) = table.by_org.get(org) {
            match series.by_rule.get(rule_key) {
                Some(counter) => counter.increment(1),
                None => self.other(series, org).increment(1),
            }
        }
    }

    /// The `_other` series of an organization.
    fn other<'s>(&self, series: &'s OrgRuleSeries, org: &str) -> &'s Counter {
        series.other.get_or_init(|| {
            self.counter(
                name::RULE_HITS,
                &[("org", org_label(org)), ("rule", "_other")],
            )
        })
    }

    fn insert_rule(&self, table: &mut RuleSeries, org: &str, rule_key: &str) {
        let full = table.count >= MAX_RULE_SERIES;
        let series = table.by_org.entry(org.into()).or_default();
        if full || series.by_rule.contains_key(rule_key) {
            return;
        }
        let counter = self.counter(
            name::RULE_HITS,
            &[("org", org_label(org)), ("rule", rule_key)],
        );
        series.by_rule.insert(rule_key.into(), counter);
        table.count += 1;
    }

    /// Registers a gauge read at each scrape (`read` must be cheap and must not block).
    pub fn gauge_probe(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let gauge = self
            .recorder
            .register_gauge(&Key::from_parts(name, self::labels(labels)), &metadata());
        gauge.set(read());
        self.probes().push(Probe::Gauge(gauge, Box::new(read)));
    }

    /// Registers a counter whose total is kept elsewhere (an atomic) and read at each scrape.
    pub fn counter_probe(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let counter = self.counter(name, labels);
        counter.absolute(read());
        self.probes().push(Probe::Counter(counter, Box::new(read)));
    }

    /// Reads every probe, then renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        for probe in self.probes().iter() {
            match probe {
                Probe::Gauge(gauge, read) => gauge.set(read()),
                Probe::Counter(counter, read) => counter.absolute(read()),
            }
        }
        self.handle.render()
    }

    /// Drains histogram samples into their buckets (bounds memory between scrapes).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn probes(&self) -> std::sync::MutexGuard<'_, Vec<Probe>> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        counter_on(&self.recorder, name, labels)
    }

    /// The handles of one upstream server, created on first use.
    fn upstream(&self, server: &Upstream) -> Arc<UpstreamMetrics> {
        if let Some(u) = self.upstreams.load().iter().find(|u| u.upstream == *server) {
            return u.clone();
        }
        let _write = self
            .upstreams_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.upstreams.load_full();
        if let Some(u) = current.iter().find(|u| u.upstream == *server) {
            return u.clone();
        }
        let label = server.to_string();
        let up = [("upstream", label.as_str())];
        let u = Arc::new(UpstreamMetrics {
            upstream: server.clone(),
            queries: self.counter(name::UPSTREAM_QUERIES, &up),
            latency: self.recorder.register_histogram(
                &Key::from_parts(name::UPSTREAM_LATENCY, labels(&up)),
                &metadata(),
            ),
            errors: UPSTREAM_ERROR_KINDS
                .map(|kind| self.counter(name::UPSTREAM_ERRORS, &[up[0], ("kind", kind)])),
            other_errors: Mutex::new(HashMap::new()),
        });
        let mut next = Vec::clone(&current);
        next.push(u.clone());
        self.upstreams.store(Arc::new(next));
        u
    }
}

impl ExchangeSink for Metrics {
    fn exchanged(&self, server: &Upstream, elapsed: Duration, error: Option<&UpstreamError>) {
        let u = self.upstream(server);
        u.queries.increment(1);
        let Some(error) = error else {
            u.latency.record(elapsed.as_secs_f64());
            return;
        };
        let kind = error.kind();
        if let Some(i) = UPSTREAM_ERROR_KINDS.iter().position(|k| *k == kind) {
            u.errors[i].increment(1);
            return;
        }
        let mut others = u.other_errors.lock().unwrap_or_else(|p| p.into_inner());
        others
            .entry(kind)
            .or_insert_with(|| {
                self.counter(
                    name::UPSTREAM_ERRORS,
                    &[("upstream", &u.upstream.to_string()), ("kind", kind)],
                )
            })
            .increment(1);
    }
}

/// The `org` label: the organization id, `none` for clients of no organization.
fn org_label(org: &str) -> &str {
    if org.is_empty() {
        "none"
    } else {
        org
    }
}

fn counter_on(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: &[(&'static str, &str)],
) -> Counter {
    recorder.register_counter(&Key::from_parts(name, self::labels(labels)), &metadata())
}

/// HELP lines: what each metric means, for whoever builds the dashboard.
fn describe(recorder: &PrometheusRecorder) {
    let counters: [(&'static str, &'static str); 21] = [
        (name::LIST_FETCH, "Downloads of url lists by result: updated, unchanged, not_modified, fetch_failed, too_large; a failure keeps the last good copy."),
        (name::POLICY_BUNDLE_FETCH, "--policy-url polls by result: applied, not_modified, unchanged, or why the bundle was refused (fetch_failed, too_large, bad_signature, malformed, rollback, load_failed); a refusal keeps the policy in force."),
        (name::QUERIES, "Queries answered (or dropped), by transport, policy action and response code."),
        (name::CACHE_LOOKUPS, "Answers by cache result: hit (fresh), miss (fetched upstream), stale (served expired, RFC 8767)."),
        (name::UPSTREAM_QUERIES, "Exchanges with each upstream server (every attempt, retries included)."),
        (name::UPSTREAM_ERRORS, "Failed upstream exchanges by server and kind (timeout, network, malformed)."),
        (name::UPSTREAM_REJECTED, "Upstream datagrams dropped because they matched no outstanding query (possible spoofing)."),
        (name::UPSTREAM_TCP_RETRIES, "Upstream answers fetched again over TCP after a truncated UDP answer."),
        (name::UPSTREAM_DECLINED, "Upstream answers that declined the question (SERVFAIL, REFUSED, NOTIMP, FORMERR); the next upstream was asked."),
        (name::CONNECTIONS_SHED, "Client connections closed at a connection cap to admit a new one, by transport and reason (handshake, idle, busy, per_client)."),
        (name::POLICY_RELOADS, "Policy reloads by result; a failure keeps the last good policy."),
        (name::RULE_HITS, "Queries decided (or, for audit rules, matched) by each policy rule, by organization and rule id."),
        (name::QUERYLOG_LINES, "Query-log lines written."),
        (name::QUERYLOG_DROPPED, "Query-log lines dropped because the writer fell behind (answers never wait for it)."),
        (name::QUERYLOG_ERRORS, "Query-log write or reopen errors."),
        (name::DNSTAP_FRAMES, "dnstap frames written to the collector."),
        (name::DNSTAP_DROPPED, "dnstap messages dropped: the queue was full or no collector was connected (answers never wait for it)."),
        (name::DNSTAP_RECONNECTS, "dnstap collector connections lost and reopened."),
        (name::RECURSOR_QUERIES, "Recursive mode: queries sent to authoritative servers."),
        (name::RECURSOR_EVENTS, "Recursive mode: queries over budget, TCP retries after TC=1, servers held down, failure-cache hits, KeyTrap scrubs, root primings (and failures), answers from cached NSEC records."),
        (name::BLOCK_PAGE_REQUESTS, "Block pages served, by scheme (http, https) and where the rule shown came from: answer (the block-page answer this client was given), policy (evaluated again), unknown (neither blocks the name)."),
    ];
    for (n, help) in counters {
        recorder.describe_counter(KeyName::from(n), None, SharedString::from(help));
    }
    let gauges: [(&'static str, &'static str); 8] = [
        (
            name::POLICY_BUNDLE_VERSION,
            "Signed version of the policy bundle in force (0: none yet).",
        ),
        (
            name::POLICY_BUNDLE_AGE,
            "Seconds since the policy bundle in force was signed.",
        ),
        (name::CACHE_ENTRIES, "Answers held in the cache."),
        (
            name::CACHE_BYTES,
            "Bytes held in the cache by the weigher's count (keys, answers, overhead).",
        ),
        (
            name::UPSTREAM_INFLIGHT,
            "Upstream fetches in flight across all workers.",
        ),
        (
            name::UPSTREAM_HEALTHY,
            "1 while the upstream answers, 0 after repeated failures.",
        ),
        (name::CONNECTIONS, "Open client connections by transport."),
        (name::POLICY_VERSION, "Version of the policy in force."),
    ];
    for (n, help) in gauges {
        recorder.describe_gauge(KeyName::from(n), None, SharedString::from(help));
    }
    recorder.describe_histogram(
        KeyName::from(name::UPSTREAM_LATENCY),
        None,
        SharedString::from(
            "Time for an upstream to answer one exchange, successful exchanges only.",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn outcome(
        transport: Transport,
        action: ActionLabel,
        rcode: Option<u16>,
        cache: CacheStatus,
    ) -> Outcome<'static> {
        Outcome {
            transport,
            client_ip: IpAddr::from([192, 0, 2, 9]),
            org: "",
            qname: "a.example",
            rcode,
            action,
            cache,
            duration: Duration::from_micros(5),
            ..Outcome::sample()
        }
    }

    #[test]
    fn counts_queries_cache_and_rules_per_registry() {
        let m = Metrics::new(&[]);
        let other = Metrics::new(&[]);
        m.record(&outcome(
            Transport::Udp,
            ActionLabel::Resolve,
            Some(0),
            CacheStatus::Hit,
        ));
        m.record(&outcome(
            Transport::Udp,
            ActionLabel::Resolve,
            Some(0),
            CacheStatus::Hit,
        ));
        m.record(&outcome(
            Transport::Tcp,
            ActionLabel::Malformed,
            None,
            CacheStatus::None,
        ));
        let mut blocked = outcome(
            Transport::Udp,
            ActionLabel::Block,
            Some(3),
            CacheStatus::None,
        );
        blocked.org = "acme";
        blocked.rule = Some(("r1", "ads"));
        blocked.audited = &[("r0", "watch")];
        m.record(&blocked);
        let text = m.render();
        assert!(
            text.contains(
                r#"picket_queries_total{transport="udp",action="resolve",rcode="NOERROR"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"picket_queries_total{transport="tcp",action="malformed",rcode="none"} 1"#
        ));
        assert!(text.contains(r#"picket_cache_lookups_total{result="hit"} 2"#));
        assert!(text.contains(r#"picket_rule_hits_total{org="acme",rule="r1"} 1"#));
        assert!(text.contains(r#"picket_rule_hits_total{org="acme",rule="r0"} 1"#));
        assert!(
            !other.render().contains("picket_queries_total{"),
            "registries are per server"
        );
    }

    #[test]
    fn upstream_exchanges_and_probes() {
        let plain: std::net::SocketAddr = "192.0.2.53:53".parse().unwrap();
        let server = &Upstream::from(plain);
        let m = Metrics::new(std::slice::from_ref(server));
        m.exchanged(server, Duration::from_micros(300), None);
        m.exchanged(
            server,
            Duration::from_millis(800),
            Some(&UpstreamError::Timeout),
        );
        m.exchanged(
            server,
            Duration::from_millis(1),
            Some(&UpstreamError::Overloaded),
        );
        let value = Arc::new(std::sync::atomic::AtomicU64::new(7));
        let v = value.clone();
        m.counter_probe(name::QUERYLOG_DROPPED, &[], move || {
            v.load(std::sync::atomic::Ordering::Relaxed)
        });
        value.store(9, std::sync::atomic::Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains(r#"picket_upstream_queries_total{upstream="192.0.2.53:53"} 3"#),
            "{text}"
        );
        assert!(text.contains(
            r#"picket_upstream_errors_total{upstream="192.0.2.53:53",kind="timeout"} 1"#
        ));
        assert!(text.contains(
            r#"picket_upstream_errors_total{upstream="192.0.2.53:53",kind="overloaded"} 1"#
        ));
        assert!(text.contains(
            r#"picket_upstream_errors_total{upstream="192.0.2.53:53",kind="network"} 0"#
        ));
        assert!(text.contains(
            r#"picket_upstream_latency_seconds_bucket{upstream="192.0.2.53:53",le="0.0005"} 1"#
        ));
        assert!(
            text.contains(r#"picket_upstream_latency_seconds_count{upstream="192.0.2.53:53"} 1"#)
        );
        assert!(text.contains("picket_querylog_dropped_total 9"));
    }

    fn rule_value(text: &str, org: &str, rule: &str) -> Option<u64> {
        let series = format!(r#"picket_rule_hits_total{{org="{org}",rule="{rule}"}} "#);
        let line = text.lines().find(|l| l.starts_with(&series))?;
        line[series.len()..].parse().ok()
    }

    #[test]
    fn registered_rules_export_zero_and_count_hits() {
        let m = Metrics::new(&[]);
        m.register_rules([
            ("", "block-ads"),
            ("acme", "acme/r1"),
            ("acme", "block-ads"),
        ]);
        let text = m.render();
        assert_eq!(rule_value(&text, "none", "block-ads"), Some(0), "{text}");
        assert_eq!(rule_value(&text, "acme", "acme/r1"), Some(0));
        m.rule_hit("acme", "block-ads");
        m.rule_hit("acme", "block-ads");
        m.rule_hit("", "block-ads");
        // Registering again (a reload) keeps the counts.
        m.register_rules([("", "block-ads"), ("acme", "block-ads")]);
        m.rule_hit("acme", "block-ads");
        let text = m.render();
        assert_eq!(rule_value(&text, "acme", "block-ads"), Some(3));
        assert_eq!(rule_value(&text, "none", "block-ads"), Some(1));
        assert_eq!(
            rule_value(&text, "acme", "_other"),
            None,
            "no _other below the cap"
        );
    }

    #[test]
    fn rule_series_are_capped() {
        let m = Metrics::new(&[]);
        let ids: Vec<String> = (0..MAX_RULE_SERIES + 5).map(|i| format!("r{i}")).collect();
        m.register_rules(ids.iter().map(|id| ("o", id.as_str())));
        m.rule_hit("o", "r3");
        m.rule_hit("o", &ids[MAX_RULE_SERIES + 2]);
        m.rule_hit("o", "r-late");
        m.rule_hit("p", "r-late");
        let text = m.render();
        assert_eq!(rule_value(&text, "o", "r3"), Some(1));
        assert_eq!(rule_value(&text, "o", &ids[MAX_RULE_SERIES - 1]), Some(0));
        assert_eq!(rule_value(&text, "o", "_other"), Some(2));
        assert_eq!(rule_value(&text, "p", "_other"), Some(1));
        assert_eq!(rule_value(&text, "o", &ids[MAX_RULE_SERIES]), None);
        assert_eq!(
            text.matches("picket_rule_hits_total{").count(),
            MAX_RULE_SERIES + 2,
            "the cap, and one _other per organization"
        );
    }
}
