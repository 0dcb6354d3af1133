//! Which upstreams failed recently, shared by all workers so that a dead
//! server is tried last instead of costing every query a timeout; and what
//! the log says about it.
//!
//! A server counts as failing after [`FAILING_AFTER`] failed exchanges in a
//! row and as answering again at its next answer. Both changes are logged,
//! but at most one line per server per [`HEALTH_LOG_INTERVAL`]: a server that
//! fails some queries and answers others (an overloaded one timing out, one
//! that refuses a single name) changes state many times a second, and one
//! line per change would bury the log. A line that follows a quiet spell
//! counts the changes it did not log, and the server's state at the end of a
//! spell is always logged once the interval has passed and it is asked again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::spec::Upstream;

/// How long a failure counts against a server.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// Consecutive failures after which a server counts as failing (readiness, logs).
const FAILING_AFTER: u32 = 3;
/// At most one health line per server this often; the changes in between
/// are counted in the next line.
pub const HEALTH_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long a server that does not preserve the case of query names is
/// asked without 0x20 before it is tried with it again: Unbound keeps what
/// it learns about a server (`infra-host-ttl`) this long. Each retry costs
/// one attempt timeout, for the queries sent to it during that attempt.
pub const CASE_FALLBACK_HOLD: Duration = Duration::from_secs(900);

#[derive(Debug, Default)]
pub struct Health {
    tally: Mutex<Tally>,
    /// Servers that answered a 0x20 query only in another case, and when.
    case_not_preserved: Mutex<HashMap<SocketAddr, Instant>>,
}

/// Failures in a row per server, and what the log last said about them.
#[derive(Debug, Default)]
struct Tally {
    /// Consecutive failures per server, and when the last one was.
    failures: HashMap<Upstream, (u32, Instant)>,
    /// Per server that has changed state at least once.
    reports: HashMap<Upstream, Report>,
    /// How many servers the log last called failing: while any is, an
    /// answer from a healthy server is checked against the reports too.
    logged_failing: usize,
}

/// What the log last said about one server.
#[derive(Debug, Default)]
struct Report {
    logged_failing: bool,
    /// When the last line about the server was logged.
    logged_at: Option<Instant>,
    /// Changes between failing and answering since that line.
    changes: u32,
}

/// A line for the log about one server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthLine {
    Failing {
        failures: u32,
        unlogged_changes: u32,
    },
    Recovered {
        unlogged_changes: u32,
    },
}

impl Health {
    /// `servers`, healthiest first (held inline: one allocation less per miss).
    pub fn order(&self, servers: &[Upstream]) -> SmallVec<[Upstream; 4]> {
        let tally = self.tally();
        let penalty = |s: &Upstream| match tally.failures.get(s) {
            Some((n, at)) if at.elapsed() < FAILURE_MEMORY => *n,
            _ => 0,
        };
        // Start at a random server so load spreads, then prefer the healthy.
        let start = rand::random_range(0..servers.len());
        let mut ordered: SmallVec<[Upstream; 4]> = servers[start..]
            .iter()
            .chain(&servers[..start])
            .cloned()
            .collect();
        ordered.sort_by_key(penalty);
        ordered
    }

    pub fn success(&self, server: &Upstream) {
        let mut tally = self.tally();
        if tally.failures.is_empty() && tally.logged_failing == 0 {
            return; // the common case: no hashing of the server, no clock read
        }
        if let Some(line) = tally.answered(server, Instant::now()) {
            line.log(server);
        }
    }

    pub fn failure(&self, server: &Upstream) {
        let line = self.tally().failed(server, Instant::now());
        if let Some(line) = line {
            line.log(server);
        }
    }

    /// Whether any of `servers` answered last time it was asked (or was never
    /// asked): readiness.
    pub fn any_healthy(&self, servers: &[Upstream]) -> bool {
        let tally = self.tally();
        servers.iter().any(|s| {
            tally
                .failures
                .get(s)
                .is_none_or(|(n, at)| *n < FAILING_AFTER || at.elapsed() > FAILURE_MEMORY)
        })
    }

    /// Whether `server` may be asked with 0x20 (it has not been seen to
    /// answer in another case within [`CASE_FALLBACK_HOLD`]).
    pub fn preserves_case(&self, server: SocketAddr) -> bool {
        let lost = self
            .case_not_preserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lost.get(&server)
            .is_none_or(|at| at.elapsed() >= CASE_FALLBACK_HOLD)
    }

    /// `server` answered a 0x20 query only in another case: it is asked in
    /// lower case from now on, for [`CASE_FALLBACK_HOLD`].
    pub fn case_not_preserved(&self, server: SocketAddr) {
        let mut lost = self
            .case_not_preserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lost.retain(|_, at| at.elapsed() < CASE_FALLBACK_HOLD);
        if lost.insert(server, Instant::now()).is_none() {
            tracing::warn!(
                upstream = %server,
                hold_s = CASE_FALLBACK_HOLD.as_secs(),
                "upstream answers in another case than it is asked: it does not preserve case, \
                 so it is asked without 0x20 (case randomization) for a while; \
                 upstream recursive resolvers normally preserve case, check what sits in between"
            );
        }
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Tally {
    /// `server` answered at `now`: the line to log, if any.
    fn answered(&mut self, server: &Upstream, now: Instant) -> Option<HealthLine> {
        let failures = self.failures.remove(server).map_or(0, |(n, _)| n);
        let report = self.reports.get_mut(server)?;
        if failures >= FAILING_AFTER {
            report.changes += 1;
        }
        if !report.logged_failing || !report.may_log(now) {
            return None;
        }
        let line = HealthLine::Recovered {
            unlogged_changes: report.changes - 1,
        };
        report.logged(false, now);
        self.logged_failing -= 1;
        Some(line)
    }

    /// An exchange with `server` failed at `now`: the line to log, if any.
    fn failed(&mut self, server: &Upstream, now: Instant) -> Option<HealthLine> {
        let entry = self.failures.entry(server.clone()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let failures = entry.0;
        if failures < FAILING_AFTER {
            return None;
        }
        let report = self.reports.entry(server.clone()).or_default();
        if failures == FAILING_AFTER {
            report.changes += 1;
        }
        if report.logged_failing || !report.may_log(now) {
            return None;
        }
        let line = HealthLine::Failing {
            failures,
            unlogged_changes: report.changes - 1,
        };
        report.logged(true, now);
        self.logged_failing += 1;
        Some(line)
    }
}

impl Report {
    fn may_log(&self, now: Instant) -> bool {
        crate::throttle::due(self.logged_at, now, HEALTH_LOG_INTERVAL)
    }

    fn logged(&mut self, failing: bool, now: Instant) {
        self.logged_failing = failing;
        self.logged_at = Some(now);
        self.changes = 0;
    }
}

impl HealthLine {
    fn log(self, server: &Upstream) {
        let interval_s = HEALTH_LOG_INTERVAL.as_secs();
        match self {
            HealthLine::Failing {
                failures,
                unlogged_changes,
            } => tracing::warn!(
                upstream = %server,
                failures,
                unlogged_changes,
                "upstream failing: {failures} failed exchanges in a row; it is tried last until \
                 it answers again (at most one health line per upstream per {interval_s} s; \
                 unlogged_changes counts the changes in between)"
            ),
            HealthLine::Recovered { unlogged_changes } => tracing::info!(
                upstream = %server,
                unlogged_changes,
                "upstream recovered: answering again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Upstream {
        "127.0.0.1:53".parse().unwrap()
    }

    /// `fails` failed exchanges then one answer, at `now`: the lines logged.
    fn flap(tally: &mut Tally, fails: u32, now: Instant) -> Vec<HealthLine> {
        let mut lines: Vec<HealthLine> = (0..fails)
            .filter_map(|_| tally.failed(&server(), now))
            .collect();
        lines.extend(tally.answered(&server(), now));
        lines
    }

    #[test]
    fn a_server_failing_then_answering_is_logged_once_each_way() {
        let mut tally = Tally::default();
        let start = Instant::now();
        assert_eq!(flap(&mut tally, FAILING_AFTER - 1, start), []);
        let later = start + HEALTH_LOG_INTERVAL;
        assert_eq!(
            flap(&mut tally, FAILING_AFTER + 2, later),
            [
                HealthLine::Failing {
                    failures: FAILING_AFTER,
                    unlogged_changes: 0
                },
                // Answering within the interval is logged when it has passed.
            ]
        );
        assert_eq!(tally.logged_failing, 1);
        let after = later + HEALTH_LOG_INTERVAL;
        assert_eq!(
            tally.answered(&server(), after),
            Some(HealthLine::Recovered {
                unlogged_changes: 0
            })
        );
        assert_eq!(tally.logged_failing, 0);
        assert_eq!(tally.answered(&server(), after), None);
    }

    #[test]
    fn a_flapping_server_logs_one_line_per_interval_with_the_changes_it_skipped() {
        let mut tally = Tally::default();
        let start = Instant::now();
        let mut lines = Vec::new();
        // 100 flaps within one interval: one line, the first change.
        for i in 0..100u32 {
            let now = start + HEALTH_LOG_INTERVAL * i / 101;
            lines.extend(flap(&mut tally, FAILING_AFTER, now));
        }
        assert_eq!(
            lines,
            [HealthLine::Failing {
                failures: FAILING_AFTER,
                unlogged_changes: 0
            }]
        );
        // The server ended the spell answering, while the log says failing:
        // its next answer after the interval says so, counting the 198
        // changes before it that were not logged (99 failures, 99 recoveries).
        let after = start + HEALTH_LOG_INTERVAL;
        assert_eq!(
            tally.answered(&server(), after),
            Some(HealthLine::Recovered {
                unlogged_changes: 198
            })
        );
        // A spell that ends failing is logged by the next failure after the
        // interval, counting the two changes of the spell.
        let next = after + HEALTH_LOG_INTERVAL;
        assert_eq!(flap(&mut tally, FAILING_AFTER, after), []);
        assert_eq!(
            (0..FAILING_AFTER)
                .filter_map(|_| tally.failed(&server(), next))
                .collect::<Vec<_>>(),
            [HealthLine::Failing {
                failures: FAILING_AFTER,
                unlogged_changes: 2
            }]
        );
    }
}
