//! Log lines about events that can repeat at the rate of queries or
//! connections (a misconfigured load balancer, a flapping peer): at most one
//! line per interval, and the line says how many it stands for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per `every`; the lines held back in between are
/// counted, and the next line that may go out reports them.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    last: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(Held {
                last: None,
                held_back: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)`, with the `n` lines
    /// held back since the last one (log them as a count), or `None`, and
    /// this one is counted instead.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut held = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !due(held.last, now, self.every) {
            held.held_back += 1;
            return None;
        }
        held.last = Some(now);
        Some(std::mem::take(&mut held.held_back))
    }
}

/// Whether a line may go out at `now`, the last having gone out at `last`
/// (None: never), at most one per `every`.
pub fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_those_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0), "the first goes out");
        let within: Vec<_> = (1..=9)
            .map(|s| throttle.admit(start + Duration::from_secs(s)))
            .collect();
        assert_eq!(within, [None; 9]);
        assert_eq!(throttle.admit(start + Duration::from_secs(10)), Some(9));
        assert_eq!(throttle.admit(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(25)), Some(1));
    }
}
