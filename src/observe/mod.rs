//! Observability: receives each finished [`Outcome`] and nothing else from
//! the query path. Metrics ([`metrics`]) and the query log ([`querylog`]) are
//! both optional and cost nothing when off; the admin listener ([`admin`])
//! serves `/metrics`, `/healthz` and `/readyz`.

pub mod admin;
pub mod metrics;
pub mod outcome;
pub mod querylog;

use std::sync::Arc;

pub use metrics::Metrics;
pub use outcome::{CacheStatus, Outcome};
pub use querylog::{ClientIpMode, LogTarget, QueryLog, QueryLogSettings};

use crate::upstream::{ExchangeSink, Upstream};

/// Where outcomes go. Cheap to call on the hot path.
#[derive(Debug, Default)]
pub struct Observer {
    metrics: Option<Arc<Metrics>>,
    log: Option<QueryLog>,
}

impl Observer {
    /// An observer with metrics (per-upstream series created for `upstreams`)
    /// and/or a query log. Opens the log now, so a bad path fails at start.
    pub fn new(
        with_metrics: bool,
        upstreams: &[Upstream],
        query_log: Option<&QueryLogSettings>,
    ) -> std::io::Result<Self> {
        let metrics = with_metrics.then(|| Arc::new(Metrics::new(upstreams)));
        let log = query_log.map(QueryLog::open).transpose()?;
        if let (Some(metrics), Some(log)) = (&metrics, &log) {
            for (name, read) in log.counters() {
                metrics.counter_probe(name, &[], read);
            }
        }
        Ok(Self { metrics, log })
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
    }

    /// The metrics registry, when `--metrics` is on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The query log, when `--query-log` is on.
    pub fn query_log(&self) -> Option<&QueryLog> {
        self.log.as_ref()
    }

    /// Where the forwarder reports each upstream exchange (None without metrics).
    pub fn exchange_sink(&self) -> Option<Arc<dyn ExchangeSink>> {
        self.metrics.clone().map(|m| m as Arc<dyn ExchangeSink>)
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
