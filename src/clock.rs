//! A monotonic clock that tests can move forward.
//!
//! The cache ages TTLs with it. Tests of TTL aging and expiry advance it
//! instead of sleeping, so they are exact and fast; in production it is the
//! system's monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monotonic time, optionally shifted forward by tests.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    shift_nanos: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that tests can advance with [`Clock::advance`].
    pub fn manual() -> Self {
        Self {
            shift_nanos: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Now.
    #[inline]
    pub fn now(&self) -> Instant {
        self.at(Instant::now())
    }

    /// This clock's reading for `instant`, a reading of the system's monotonic clock
    /// ([`Instant::now`]): a caller that read it already saves a second read.
    #[inline]
    pub fn at(&self, instant: Instant) -> Instant {
        match &self.shift_nanos {
            None => instant,
            Some(shift) => instant + Duration::from_nanos(shift.load(Ordering::Relaxed)),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(shift) = &self.shift_nanos {
            shift.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}
