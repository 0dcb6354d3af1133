//! What the iterator knows about each authoritative server address, and how
//! it picks one: smoothed RTT (RFC 6298), the timeout that follows from it,
//! and the hold-down of servers that keep timing out (RFC 9520 §3.1).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::limits::{
    RECURSION_HOLDDOWN_BASE as HOLDDOWN_BASE, RECURSION_MIN_ATTEMPT_TIMEOUT, RECURSION_RTT_BAND,
    RECURSION_UNKNOWN_RTT,
};

/// One server address's record.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerFacts {
    /// Smoothed RTT and its variation (RFC 6298 §2), once measured.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Timeouts in a row.
    timeouts: u32,
    /// Hold-downs in a row, for the backoff.
    holddowns: u32,
    /// Not asked until then.
    held_until: Option<Instant>,
    /// Answered a query with EDNS by FORMERR: asked without it.
    pub(crate) no_edns: bool,
    /// Answered a 0x20 query in another case: asked in lower case.
    pub(crate) no_case: bool,
}

impl ServerFacts {
    /// RFC 6298 §2.2–2.3: the first sample sets SRTT and RTTVAR, later ones
    /// move them by 1/8 and 1/4.
    pub(crate) fn answered(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        self.timeouts = 0;
        self.holddowns = 0;
        self.held_until = None;
    }

    /// A timeout: the RTT estimate doubles (RFC 6298 §5.5 backs off the
    /// RTO), and after `before_holddown` in a row of `full` waits (the
    /// longest wait, or an unreachable address) the server is held down.
    /// A short wait that ran out only backs off: a server that answers in
    /// a millisecond gets a 50 ms wait, and a busy moment of its own or of
    /// ours must not take it out of service (Unbound too gives up on a
    /// server only once its timeout has backed off to the top).
    pub(crate) fn timed_out(
        &mut self,
        waited: Duration,
        full: bool,
        before_holddown: u32,
        holddown_max: Duration,
        now: Instant,
    ) {
        self.srtt = Some(self.srtt.unwrap_or(waited).max(waited) * 2);
        if !full {
            return;
        }
        self.timeouts += 1;
        if self.timeouts >= before_holddown.max(1) {
            let hold = HOLDDOWN_BASE
                .saturating_mul(1u32 << self.holddowns.min(16))
                .min(holddown_max.max(HOLDDOWN_BASE));
            self.held_until = Some(now + hold);
            self.holddowns = self.holddowns.saturating_add(1);
            // After the hold-down one probe decides: a timeout holds it again.
            self.timeouts = before_holddown.max(1) - 1;
        }
    }

    pub(crate) fn held_down(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|until| now < until)
    }

    /// The RTT used to rank servers: measured, or Unbound's guess for a
    /// server never asked.
    pub(crate) fn rank(&self) -> Duration {
        self.srtt.unwrap_or(RECURSION_UNKNOWN_RTT)
    }

    /// RFC 6298 §2.3: RTO = SRTT + 4·RTTVAR, within the floor and `max`; a
    /// server never measured gets `max`.
    pub(crate) fn timeout(&self, max: Duration) -> Duration {
        match self.srtt {
            None => max,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(
                RECURSION_MIN_ATTEMPT_TIMEOUT,
                max.max(RECURSION_MIN_ATTEMPT_TIMEOUT),
            ),
        }
    }
}

/// Picks among `candidates` (address, rank): at random among those within
/// [`RECURSION_RTT_BAND`] of the best, as Unbound does, so the fast servers
/// get nearly every query and a recovered one is noticed again.
pub(crate) fn choose(candidates: &[(IpAddr, Duration)]) -> Option<IpAddr> {
    let best = candidates.iter().map(|(_, rtt)| *rtt).min()?;
    let band = || {
        candidates
            .iter()
            .filter(|(_, rtt)| *rtt <= best + RECURSION_RTT_BAND)
            .map(|(ip, _)| *ip)
    };
    // Counted, then walked again: no list built per query.
    let pick = rand::random_range(0..band().count());
    band().nth(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rtt_is_smoothed_as_rfc_6298_says() {
        let mut facts = ServerFacts::default();
        facts.answered(ms(100));
        assert_eq!(facts.rank(), ms(100));
        assert_eq!(facts.timeout(ms(1000)), ms(300));
        facts.answered(ms(20));
        assert_eq!(facts.rank(), ms(90));
        assert_eq!(facts.timeout(ms(150)), ms(150), "capped");
    }

    #[test]
    fn timeouts_hold_a_server_down_and_an_answer_lifts_it() {
        let now = Instant::now();
        let mut facts = ServerFacts::default();
        facts.timed_out(ms(300), true, 2, Duration::from_secs(300), now);
        assert!(!facts.held_down(now));
        facts.timed_out(ms(300), true, 2, Duration::from_secs(300), now);
        assert!(facts.held_down(now));
        assert!(!facts.held_down(now + HOLDDOWN_BASE));
        facts.answered(ms(10));
        assert!(!facts.held_down(now));
    }

    #[test]
    fn short_waits_that_run_out_back_off_without_a_holddown() {
        let now = Instant::now();
        let max = ms(1000);
        let mut facts = ServerFacts::default();
        facts.answered(Duration::from_micros(200));
        let mut waits = Vec::new();
        while waits.len() < 20 {
            let wait = facts.timeout(max);
            waits.push(wait);
            facts.timed_out(wait, wait >= max, 2, Duration::from_secs(300), now);
            if facts.held_down(now) {
                break;
            }
        }
        // 50, 100, 200, 400, 800 ms, then the longest wait twice.
        assert_eq!(waits.first(), Some(&RECURSION_MIN_ATTEMPT_TIMEOUT));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits.iter().filter(|w| **w >= max).count(), 2, "{waits:?}");
        assert!(facts.held_down(now));
    }

    #[test]
    fn the_choice_stays_within_the_band() {
        let fast: IpAddr = [192, 0, 2, 1].into();
        let slow: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..100 {
            let pick = choose(&[(slow, ms(900)), (fast, ms(5))]);
            assert_eq!(pick, Some(fast));
        }
        assert_eq!(choose(&[]), None);
    }
}
