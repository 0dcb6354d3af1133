//! Observability: receives each finished [`Outcome`] and nothing else from
//! the query path. Metrics ([`metrics`]), the query log ([`querylog`]) and
//! the dashboard's recorder ([`dashboard`]) are each optional and cost
//! nothing when off; the admin listener ([`admin`]) serves `/metrics`,
//! `/healthz`, `/readyz`, the dashboard page and its `/api/`.

pub mod admin;
pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod outcome;
mod page;
pub mod querylog;
pub mod sketch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use dashboard::{Dashboard, DashboardSettings};
pub use metrics::Metrics;
pub use outcome::{CacheStatus, Outcome};
pub use querylog::{ClientIpMode, LogTarget, QueryLog, QueryLogSettings};

use crate::upstream::{ExchangeSink, UpstreamError};

/// Where outcomes go. Cheap to call on the hot path.
#[derive(Debug, Default)]
pub struct Observer {
    metrics: Option<Arc<Metrics>>,
    log: Option<QueryLog>,
    dashboard: Option<Arc<Dashboard>>,
}

impl Observer {
    /// An observer with metrics (per-upstream series created for `upstreams`),
    /// a query log and/or the dashboard's recorder. Opens the log now, so a
    /// bad path fails at start.
    pub fn new(
        with_metrics: bool,
        upstreams: &[SocketAddr],
        query_log: Option<&QueryLogSettings>,
        dashboard: Option<&DashboardSettings>,
    ) -> std::io::Result<Self> {
        let metrics = with_metrics.then(|| Arc::new(Metrics::new(upstreams)));
        let log = query_log.map(QueryLog::open).transpose()?;
        if let (Some(metrics), Some(log)) = (&metrics, &log) {
            for (name, read) in log.counters() {
                metrics.counter_probe(name, &[], read);
            }
        }
        let dashboard = dashboard
            .map(|s| Dashboard::new(s.clone()).map(Arc::new))
            .transpose()?;
        Ok(Self {
            metrics,
            log,
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
    }

    /// The dashboard's recorder, when the admin listener serves the dashboard.
    pub fn dashboard(&self) -> Option<&Arc<Dashboard>> {
        self.dashboard.as_ref()
    }

    /// The metrics registry, when `--metrics` is on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The query log, when `--query-log` is on.
    pub fn query_log(&self) -> Option<&QueryLog> {
        self.log.as_ref()
    }

    /// Where the forwarder reports each upstream exchange (None without
    /// metrics and dashboard).
    pub fn exchange_sink(&self) -> Option<Arc<dyn ExchangeSink>> {
        match (&self.metrics, &self.dashboard) {
            (None, None) => None,
            (Some(m), None) => Some(m.clone()),
            (metrics, dashboard) => Some(Arc::new(Exchanges {
                metrics: metrics.clone(),
                dashboard: dashboard.clone(),
            })),
        }
    }

    /// Reopens the query-log file (SIGHUP, after logrotate).
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// Writes out the query log's last lines and stops its writer (at shutdown).
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }
}

/// Upstream exchanges go to the metrics' histogram and the dashboard's chart.
struct Exchanges {
    metrics: Option<Arc<Metrics>>,
    dashboard: Option<Arc<Dashboard>>,
}

impl ExchangeSink for Exchanges {
    fn exchanged(&self, server: SocketAddr, elapsed: Duration, error: Option<&UpstreamError>) {
        if let Some(m) = &self.metrics {
            m.exchanged(server, elapsed, error);
        }
        if let Some(d) = &self.dashboard {
            d.exchanged(server, elapsed, error);
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
