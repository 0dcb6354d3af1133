//! Observability: receives each finished [`Outcome`] and nothing else from
//! the query path. Metrics ([`metrics`]), the query log ([`querylog`]) and
//! dnstap ([`dnstap`]) and the dashboard's recorder ([`dashboard`]) are
//! each optional and cost nothing when off; the admin listener ([`admin`])
//! serves `/metrics`, `/healthz`, `/readyz`, the dashboard page and its `/api/`.

pub mod admin;
pub mod api;
pub mod dashboard;
pub mod dnstap;
pub mod metrics;
pub mod outcome;
mod page;
pub use page::sha256_source;
pub mod querylog;
pub mod sketch;
mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use dashboard::{Dashboard, DashboardSettings};
pub use dnstap::{Dnstap, DnstapSettings, DnstapTarget};
pub use metrics::Metrics;
pub use outcome::{CacheStatus, Outcome};
pub use querylog::{ClientIpMode, LogTarget, QueryLog, QueryLogSettings};

use crate::upstream::{ExchangeSink, Upstream, UpstreamError};

/// Where outcomes go. Cheap to call on the hot path.
#[derive(Debug, Default)]
pub struct Observer {
    metrics: Option<Arc<Metrics>>,
    log: Option<QueryLog>,
    dnstap: Option<Arc<Dnstap>>,
    dashboard: Option<Arc<Dashboard>>,
}

/// What an [`Observer`] writes, from the settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outputs<'a> {
    /// `--metrics`: per-upstream series are created for `upstreams`.
    pub metrics: bool,
    pub upstreams: &'a [Upstream],
    pub query_log: Option<&'a QueryLogSettings>,
    pub dnstap: Option<&'a DnstapSettings>,
    /// The dashboard's recorder (with the admin listener only).
    pub dashboard: Option<&'a DashboardSettings>,
}

impl Observer {
    /// An observer writing `outputs`. Opens the query log now, so a bad path
    /// fails at start; dnstap connects on its own thread, so a collector
    /// that is not up yet delays nothing.
    pub fn new(outputs: Outputs<'_>) -> std::io::Result<Self> {
        let metrics = outputs
            .metrics
            .then(|| Arc::new(Metrics::new(outputs.upstreams)));
        let log = outputs.query_log.map(QueryLog::open).transpose()?;
        let dnstap = outputs.dnstap.map(Dnstap::start).transpose()?.map(Arc::new);
        if let Some(metrics) = &metrics {
            let log_counters = log.iter().flat_map(QueryLog::counters);
            for (name, read) in log_counters.chain(dnstap.iter().flat_map(|d| d.counters())) {
                metrics.counter_probe(name, &[], read);
            }
        }
        let dashboard = outputs
            .dashboard
            .map(|s| Dashboard::new(s.clone()).map(Arc::new))
            .transpose()?;
        Ok(Self {
            metrics,
            log,
            dnstap,
            dashboard,
        })
    }

    /// Records one finished query.
    #[inline]
    pub fn record(&self, outcome: &Outcome<'_>) {
        if let Some(metrics) = &self.metrics {
            metrics.record(outcome);
        }
        if let Some(log) = &self.log {
            log.record(outcome);
        }
        if let Some(dashboard) = &self.dashboard {
            dashboard.record(outcome);
        }
        if let Some(dnstap) = &self.dnstap {
            if !outcome.query.is_empty() {
                let client = SocketAddr::new(outcome.client_ip, outcome.client_port);
                let reply = outcome.reply;
                dnstap.client(
                    outcome.transport,
                    client,
                    outcome.query,
                    reply,
                    outcome.duration,
                );
            }
        }
    }

    /// Whether anything records outcomes (metrics, query log, dashboard, dnstap): without,
    /// the query path does not build them (nor read the clock for their duration).
    #[inline]
    pub fn records(&self) -> bool {
        self.metrics.is_some()
            || self.log.is_some()
            || self.dashboard.is_some()
            || self.dnstap.is_some()
    }

    /// Whether outcomes must carry the query's and the reply's wire bytes
    /// (dnstap): the query path keeps a copy of a pending query's bytes only then.
    #[inline]
    pub fn wants_wire(&self) -> bool {
        self.dnstap.is_some()
    }

    /// The dashboard's recorder, when the admin listener serves the dashboard.
    pub fn dashboard(&self) -> Option<&Arc<Dashboard>> {
        self.dashboard.as_ref()
    }

    /// The metrics registry, when `--metrics` is on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The dnstap output, when `--dnstap` is on.
    pub fn dnstap(&self) -> Option<&Dnstap> {
        self.dnstap.as_deref()
    }

    /// The query log, when `--query-log` is on.
    pub fn query_log(&self) -> Option<&QueryLog> {
        self.log.as_ref()
    }

    /// Where the forwarder reports each upstream exchange (None without
    /// metrics, the dashboard or upstream dnstap).
    pub fn exchange_sink(&self) -> Option<Arc<dyn ExchangeSink>> {
        let dnstap = self.dnstap.clone().filter(|d| d.wants_upstream());
        match (&self.metrics, &self.dashboard, dnstap) {
            (None, None, None) => None,
            (Some(m), None, None) => Some(m.clone() as Arc<dyn ExchangeSink>),
            (metrics, dashboard, dnstap) => Some(Arc::new(Exchanges {
                metrics: metrics.clone(),
                dashboard: dashboard.clone(),
                dnstap,
            })),
        }
    }

    /// Reopens the query-log file (SIGHUP, after logrotate).
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// Writes out the query log's last lines and the last dnstap messages,
    /// and stops their writers (at shutdown).
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
        if let Some(dnstap) = &self.dnstap {
            dnstap.close(DNSTAP_CLOSE_WAIT);
        }
    }
}

/// How long a stop waits for dnstap's last messages to reach the collector.
const DNSTAP_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Upstream exchanges to the metrics, the dashboard's chart and dnstap.
struct Exchanges {
    metrics: Option<Arc<Metrics>>,
    dashboard: Option<Arc<Dashboard>>,
    dnstap: Option<Arc<Dnstap>>,
}

impl ExchangeSink for Exchanges {
    fn exchanged(&self, server: &Upstream, elapsed: Duration, error: Option<&UpstreamError>) {
        if let Some(m) = &self.metrics {
            m.exchanged(server, elapsed, error);
        }
        if let Some(d) = &self.dashboard {
            d.exchanged(server, elapsed, error);
        }
    }

    fn wants_messages(&self) -> bool {
        self.dnstap.is_some()
    }

    fn message(
        &self,
        server: SocketAddr,
        tcp: bool,
        sent_at: SystemTime,
        query: &[u8],
        response: Option<&[u8]>,
    ) {
        if let Some(d) = &self.dnstap {
            d.upstream(false, tcp, server, sent_at, query, response);
        }
    }
}

/// hickory's crates log at WARN for events that are routine for a resolver
/// (every NXDOMAIN or NODATA an authoritative server sends is a "lookup
/// error"): at Picket's level that is a line per query, 83 MB in 30 s under
/// load. They are held at ERROR unless the filter names a hickory crate
/// itself (`RUST_LOG=info,hickory_resolver=debug` still works).
pub fn quiet_dependencies(filter: &str) -> String {
    if filter.contains("hickory") {
        return filter.to_string();
    }
    format!("{filter},hickory_resolver=error,hickory_net=error,hickory_proto=error")
}

/// Structured process logs on stderr, level from `--log-level` / `RUST_LOG`.
pub fn init_tracing(filter: &str, json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(quiet_dependencies(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet_dependencies("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON lines for log shippers; colours only for a person at a terminal.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::quiet_dependencies;

    #[test]
    fn hickory_is_held_at_error_unless_the_filter_names_it() {
        let quiet = quiet_dependencies("info");
        assert!(quiet.starts_with("info,"), "{quiet}");
        assert!(quiet.contains("hickory_resolver=error"), "{quiet}");
        let filter = tracing_subscriber::EnvFilter::try_new(&quiet);
        assert!(filter.is_ok(), "{quiet}");
        assert_eq!(
            quiet_dependencies("info,hickory_resolver=debug"),
            "info,hickory_resolver=debug"
        );
    }
}
