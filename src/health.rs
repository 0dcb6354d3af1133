//! Whether this node should receive traffic ([`Readiness`]) and the state of
//! a graceful stop ([`Drain`]).
//!
//! An edge node behind anycast is taken out of rotation by withdrawing its
//! route; the health check that does it (BIRD's check script, a load
//! balancer, `/readyz`) asks [`Readiness::ready`]. On SIGTERM the node turns
//! not ready at once, keeps answering for a grace period while the route is
//! withdrawn, then closes its listeners ([`Drain::close`]) and waits for the
//! queries already accepted ([`Drain::track`]) before the workers stop.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Why a node should not receive traffic: a short stable word for logs,
/// EDE text and `/readyz` bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// A stop was asked for.
    #[error("draining")]
    Draining,
    /// Not every listener is served yet.
    #[error("starting")]
    Starting,
    /// `--policy-url` with no bundle yet.
    #[error("no policy")]
    NoPolicy,
    /// No upstream is answering.
    #[error("no upstream")]
    NoUpstream,
}

impl NotReady {
    /// The word, as [`std::fmt::Display`] writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Starting => "starting",
            Self::NoPolicy => "no policy",
            Self::NoUpstream => "no upstream",
        }
    }
}

/// Readiness of the whole server: starting → ready → draining.
#[derive(Debug)]
pub struct Readiness {
    starting: AtomicBool,
    draining: AtomicBool,
    /// `--policy-url` with no bundle yet: serving the built-in default would answer queries
    /// the operator's policy blocks.
    policy_missing: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            starting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            policy_missing: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Every listener is served: traffic may come (unless draining).
    pub fn set_started(&self) {
        self.starting.store(false, Ordering::Release);
    }

    /// A stop was asked for: report not ready from now on, for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the node still waits for its first policy (`--policy-url`).
    pub fn set_policy_missing(&self, missing: bool) {
        self.policy_missing.store(missing, Ordering::Release);
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ok when this node should receive traffic; otherwise why not.
    /// `upstream_ok`: whether some upstream is answering
    /// ([`crate::pipeline::Shared::upstream_ok`]).
    pub fn ready(&self, upstream_ok: bool) -> Result<(), NotReady> {
        if self.is_draining() {
            Err(NotReady::Draining)
        } else if self.starting.load(Ordering::Acquire) {
            Err(NotReady::Starting)
        } else if self.policy_missing.load(Ordering::Acquire) {
            Err(NotReady::NoPolicy)
        } else if !upstream_ok {
            Err(NotReady::NoUpstream)
        } else {
            Ok(())
        }
    }
}

/// The stop side of a drain: a signal that listeners stop accepting, and a
/// count of work accepted before it (queries waiting for an upstream, open
/// stream connections) that must finish before the workers stop.
#[derive(Debug)]
pub struct Drain {
    closing: watch::Sender<bool>,
    inflight: Arc<Inflight>,
}

#[derive(Debug, Default)]
struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts as in flight until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<Inflight>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            closing: watch::channel(false).0,
            inflight: Arc::default(),
        }
    }
}

impl Drain {
    /// Listeners stop accepting new queries and connections; stream
    /// connections stop reading and close once their answers are written.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once [`close`](Self::close) is called (at once if it was).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Marks one piece of work in flight until the guard drops.
    pub fn track(&self) -> InflightGuard {
        self.inflight.count.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.inflight.clone())
    }

    /// Work in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight or `limit` passes; returns what is
    /// still in flight (0 when everything finished).
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let waiting = async {
            loop {
                let notified = self.inflight.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inflight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, waiting).await;
        self.inflight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reasons() {
        let r = Readiness::default();
        assert_eq!(r.ready(true), Err(NotReady::Starting));
        r.set_started();
        assert_eq!(r.ready(true), Ok(()));
        assert_eq!(r.ready(false), Err(NotReady::NoUpstream));
        r.set_draining();
        assert_eq!(r.ready(true), Err(NotReady::Draining));
        assert!(r.is_draining());
    }

    #[tokio::test]
    async fn drain_waits_for_guards() {
        let drain = Drain::default();
        let closed = drain.closed();
        assert!(!drain.is_closing());
        drain.close();
        closed.await;
        assert!(drain.is_closing());
        let guard = drain.track();
        assert_eq!(drain.wait_idle(Duration::from_millis(20)).await, 1);
        let waiting = drain.wait_idle(Duration::from_secs(5));
        tokio::pin!(waiting);
        tokio::select! {
            _ = &mut waiting => panic!("idle with a guard alive"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        drop(guard);
        assert_eq!(waiting.await, 0);
    }
}
