//! Observability: receives each finished [`Outcome`] and nothing else.

pub mod outcome;

pub use outcome::{CacheStatus, Outcome};

/// Where outcomes go. Cheap to call on the hot path.
#[derive(Default)]
pub struct Observer {}

impl Observer {
    /// Records one finished query.
    #[inline]
    pub fn record(&self, outcome: &Outcome<'_>) {
        let _ = outcome;
    }
}

/// Structured process logs on stderr, level from `--log-level` / `RUST_LOG`.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
