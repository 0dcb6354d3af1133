//! The guards of one client query: how many upstream queries it may cause
//! (NXNSAttack), and how deep its resolution may go; and the worker's
//! sockets its queries go out on.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use smallvec::SmallVec;

use crate::upstream::{UdpPool, UpstreamError};

/// Upstream queries one client query may still cause. Shared by the
/// resolution of the name, its glueless nameservers, its CNAME targets and
/// the validator's key fetches, so they all draw from one budget.
pub(crate) struct Budget<'s> {
    sent: AtomicUsize,
    max: usize,
    exceeded: AtomicBool,
    max_depth: usize,
    /// The UDP sockets of the worker resolving the query.
    sockets: &'s UdpPool,
    /// The servers that answered in this attempt, and the strikes of those
    /// that answered in attempts found bogus (see `Engine::resolve`).
    servers: Mutex<Servers>,
}

#[derive(Default)]
struct Servers {
    answered: SmallVec<[IpAddr; 8]>,
    /// Servers that answered during attempts found bogus, with how many.
    strikes: SmallVec<[(IpAddr, u8); 8]>,
}

impl Servers {
    fn strikes(&self, ip: &IpAddr) -> u8 {
        self.strikes
            .iter()
            .find(|(s, _)| s == ip)
            .map_or(0, |(_, n)| *n)
    }
}

impl<'s> Budget<'s> {
    pub(crate) fn new(max: usize, max_depth: u8, sockets: &'s UdpPool) -> Self {
        Self {
            sent: AtomicUsize::new(0),
            max,
            exceeded: AtomicBool::new(false),
            max_depth: usize::from(max_depth),
            sockets,
            servers: Mutex::default(),
        }
    }

    /// Notes that server `ip` answered one of this query's questions.
    pub(crate) fn answered(&self, ip: IpAddr) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if !servers.answered.contains(&ip) {
            servers.answered.push(ip);
        }
    }

    /// After an answer found bogus: every server that answered during the
    /// attempt gets a strike, and the next attempt asks, in each zone, the
    /// servers with the fewest (Unbound's validator blacklists the servers
    /// of bogus data, then asks again). False when no server answered: a
    /// new attempt would judge the same data.
    pub(crate) fn strike_the_servers_that_answered(&self) -> bool {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let answered = std::mem::take(&mut servers.answered);
        for ip in &answered {
            match servers.strikes.iter_mut().find(|(s, _)| s == ip) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => servers.strikes.push((*ip, 1)),
            }
        }
        !answered.is_empty()
    }

    /// Whether every one of `candidates` has a strike (see
    /// [`Budget::strike_the_servers_that_answered`]).
    pub(crate) fn all_struck<T>(&self, candidates: &[(IpAddr, T)]) -> bool {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        !servers.strikes.is_empty() && candidates.iter().all(|(ip, _)| servers.strikes(ip) > 0)
    }

    /// Keeps the candidates with the fewest strikes.
    pub(crate) fn keep_the_least_struck<T>(&self, candidates: &mut SmallVec<[(IpAddr, T); 8]>) {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if servers.strikes.is_empty() {
            return;
        }
        let Some(fewest) = candidates.iter().map(|(ip, _)| servers.strikes(ip)).min() else {
            return;
        };
        candidates.retain(|(ip, _)| servers.strikes(ip) == fewest);
    }

    /// Where the query's upstream queries go out.
    pub(crate) fn sockets(&self) -> &'s UdpPool {
        self.sockets
    }

    /// Takes one query from the budget, or says the budget is spent.
    pub(crate) fn charge(&self) -> Result<(), UpstreamError> {
        let ok = self
            .sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if ok {
            Ok(())
        } else {
            self.exceeded.store(true, Ordering::Relaxed);
            Err(self.spent())
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// The error a client gets when its budget ran out.
    pub(crate) fn spent(&self) -> UpstreamError {
        UpstreamError::Resolution(format!(
            "more than {} upstream queries needed (limit recursion_max_queries)",
            self.max
        ))
    }

    /// Fails once `depth` (zone cuts descended, minimisation steps, glueless
    /// names and CNAME restarts on this path) passes the limit.
    pub(crate) fn check_depth(&self, depth: usize) -> Result<(), UpstreamError> {
        if depth > self.max_depth {
            Err(UpstreamError::Resolution(format!(
                "recursion depth limit reached ({} steps; limit recursion_max_depth)",
                self.max_depth
            )))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::upstream::PoolLimits;

    fn sockets() -> UdpPool {
        UdpPool::new(
            PoolLimits::per_worker(&Limits::default(), 1),
            Default::default(),
        )
    }

    #[test]
    fn the_budget_refuses_the_query_past_its_maximum() {
        let sockets = sockets();
        let budget = Budget::new(2, 24, &sockets);
        assert!(budget.charge().is_ok());
        assert!(budget.charge().is_ok());
        assert!(!budget.exceeded());
        assert!(budget.charge().is_err());
        assert!(budget.exceeded());
    }

    #[test]
    fn depth_past_the_limit_fails() {
        let sockets = sockets();
        let budget = Budget::new(50, 3, &sockets);
        assert!(budget.check_depth(3).is_ok());
        assert!(budget.check_depth(4).is_err());
    }
}
