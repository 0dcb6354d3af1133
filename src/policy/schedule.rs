//! When a rule takes part in evaluation: a weekly schedule in a time zone
//! (the shape of Cloudflare Gateway's rule schedules) and an expiry instant.
//!
//! ```json
//! "schedule": {"time_zone": "Europe/Lisbon", "mon": "09:00-12:30,13:30-17:00", "fri": "09:00-17:00"},
//! "expires_at": "2027-01-31T18:00:00Z"
//! ```
//!
//! A scheduled rule is active inside its ranges of local time on the days
//! named (a day not named has none), and never after `expires_at`. Time-zone
//! arithmetic never runs per query: [`RuleClock`] keeps the rule's state
//! with the instant it next changes, and only a query at or after that
//! instant works out the next one (DST included, with jiff's copy of the
//! IANA database).

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// Minutes in a day; a range may end at `24:00`.
const DAY_MINUTES: u16 = 24 * 60;

/// A rule's schedule as written in a policy file (and by `picket import`: see its `Serialize`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleJson {
    /// IANA time zone; UTC when absent (Gateway infers it from the client's
    /// location, which Picket does not know).
    #[serde(default, alias = "timezone")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub mon: Option<String>,
    #[serde(default)]
    pub tue: Option<String>,
    #[serde(default)]
    pub wed: Option<String>,
    #[serde(default)]
    pub thu: Option<String>,
    #[serde(default)]
    pub fri: Option<String>,
    #[serde(default)]
    pub sat: Option<String>,
    #[serde(default)]
    pub sun: Option<String>,
}

impl ScheduleJson {
    /// The days' range texts, Monday first, with their JSON keys.
    fn days(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("mon", self.mon.as_deref()),
            ("tue", self.tue.as_deref()),
            ("wed", self.wed.as_deref()),
            ("thu", self.thu.as_deref()),
            ("fri", self.fri.as_deref()),
            ("sat", self.sat.as_deref()),
            ("sun", self.sun.as_deref()),
        ]
    }
}

/// The time zone, then the days that have ranges, Monday first; absent ones are left out.
impl Serialize for ScheduleJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(zone) = &self.time_zone {
            map.serialize_entry("time_zone", zone)?;
        }
        for (key, ranges) in self.days() {
            if let Some(ranges) = ranges {
                map.serialize_entry(key, ranges)?;
            }
        }
        map.end()
    }
}

/// What is wrong with a schedule, and where (a key under the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleError {
    /// JSON key relative to the rule: `schedule.mon`, `schedule.time_zone`, `expires_at`.
    pub key: String,
    pub message: String,
}

impl ScheduleError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A rule's validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    /// Ranges of minutes `[start, end)` per weekday, Monday first, sorted;
    /// None: no weekly schedule (only an expiry).
    days: Option<[Vec<(u16, u16)>; 7]>,
    expires_at: Option<Timestamp>,
}

impl Schedule {
    /// Validates a rule's `schedule` and `expires_at`: None when it has neither.
    pub(crate) fn parse(
        schedule: Option<&ScheduleJson>,
        expires_at: Option<&str>,
    ) -> Result<Option<Self>, ScheduleError> {
        if schedule.is_none() && expires_at.is_none() {
            return Ok(None);
        }
        let expires_at = expires_at
            .map(|text| {
                text.parse::<Timestamp>().map_err(|e| {
                    ScheduleError::new(
                        "expires_at",
                        format!("expires_at {text:?} is not an RFC 3339 instant (e.g. 2027-01-31T18:00:00Z): {e}"),
                    )
                })
            })
            .transpose()?;
        let Some(schedule) = schedule else {
            return Ok(Some(Self {
                tz: TimeZone::UTC,
                days: None,
                expires_at,
            }));
        };
        let tz = match &schedule.time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                ScheduleError::new(
                    "schedule.time_zone",
                    format!("unknown time zone {name:?}: use an IANA name such as Europe/Lisbon or America/New_York"),
                )
            })?,
        };
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        for (i, (key, text)) in schedule.days().into_iter().enumerate() {
            if let Some(text) = text {
                days[i] = parse_ranges(text)
                    .map_err(|e| ScheduleError::new(format!("schedule.{key}"), e.to_string()))?;
            }
        }
        Ok(Some(Self {
            tz,
            days: Some(days),
            expires_at,
        }))
    }

    /// Whether the rule takes part at `t`.
    pub fn active_at(&self, t: Timestamp) -> bool {
        if self.expires_at.is_some_and(|e| t >= e) {
            return false;
        }
        match &self.days {
            None => true,
            Some(_) => self.intervals_around(t).any(|(s, e)| s <= t && t < e),
        }
    }

    /// The first instant after `t` at which [`Schedule::active_at`] may
    /// change (a range's start or end, or the expiry); None if never.
    pub fn next_change_after(&self, t: Timestamp) -> Option<Timestamp> {
        let expiry = self.expires_at.filter(|e| *e > t);
        if self.expires_at.is_some_and(|e| t >= e) {
            return None;
        }
        let Some(days) = &self.days else {
            return expiry;
        };
        if days.iter().all(Vec::is_empty) {
            return expiry;
        }
        let boundary = self
            .intervals_around(t)
            .flat_map(|(s, e)| [s, e])
            .filter(|b| *b > t)
            .min();
        match (boundary, expiry) {
            (Some(b), Some(e)) => Some(b.min(e)),
            (b, e) => b.or(e),
        }
    }

    /// The ranges as instants, for the local days from the one before `t`
    /// to a week after it: every range that can contain `t`, and the next
    /// boundary after it whatever the schedule.
    fn intervals_around(&self, t: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = t.to_zoned(self.tz.clone()).date();
        let days = self.days.as_ref();
        (-1i32..=8).flat_map(move |offset| {
            let date = today.checked_add(jiff::Span::new().days(offset)).ok();
            let ranges = match (date, days) {
                (Some(d), Some(days)) => days[weekday_index(d.weekday())].as_slice(),
                _ => &[],
            };
            ranges.iter().filter_map(move |&(s, e)| {
                let date = date?;
                let start = self.instant(date, s)?;
                let end = self.instant(date, e)?;
                (start < end).then_some((start, end))
            })
        })
    }

    /// Local `date` at `minute` (1440: the next midnight) in the zone. A
    /// time that DST skips maps to the instant after the gap, a repeated
    /// one to its first occurrence (RFC 5545's and jiff's "compatible").
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = match minute {
            DAY_MINUTES => (date.tomorrow().ok()?, 0),
            m => (date, m),
        };
        let local = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        let zoned = self.tz.to_ambiguous_zoned(local).compatible().ok()?;
        Some(zoned.timestamp())
    }
}

fn weekday_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

/// What is wrong with one day's ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RangeError {
    #[error("{0:?} is not a range: write HH:MM-HH:MM, e.g. 09:00-17:00")]
    NotARange(String),
    #[error("{0:?} is not a time of day: write HH:MM, 00:00 to 24:00")]
    NotATime(String),
    #[error("range {0:?} ends before it starts: a range runs within one day (up to 24:00)")]
    Backwards(String),
    /// Two ranges (as `HH:MM-HH:MM`) that overlap.
    #[error("ranges {0} and {1} overlap: merge them into one")]
    Overlap(String, String),
}

/// `09:00-12:30,13:30-17:00`: ranges in minutes, sorted, none overlapping.
fn parse_ranges(text: &str) -> Result<Vec<(u16, u16)>, RangeError> {
    let mut ranges = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (start, end) = part
            .split_once('-')
            .ok_or_else(|| RangeError::NotARange(part.to_owned()))?;
        let (start, end) = (minute_of(start.trim())?, minute_of(end.trim())?);
        if start >= end {
            return Err(RangeError::Backwards(part.to_owned()));
        }
        ranges.push((start, end));
    }
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(RangeError::Overlap(show(w[0]), show(w[1])));
    }
    Ok(ranges)
}

fn minute_of(text: &str) -> Result<u16, RangeError> {
    let bad = || RangeError::NotATime(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn show((s, e): (u16, u16)) -> String {
    format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
}

/// A scheduled rule's state on the query path: one atomic word holding
/// whether the rule is active and until when (Unix seconds) that holds.
/// Queries before that instant read it; the first query after it works out
/// the next state. Threads that race there compute the same thing.
#[derive(Debug)]
pub struct RuleClock {
    schedule: Schedule,
    /// `until << 1 | active`; 0 (until the epoch): not yet computed.
    state: AtomicU64,
}

/// `until` when the state never changes again.
const FOREVER: u64 = u64::MAX >> 1;

impl RuleClock {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            state: AtomicU64::new(0),
        }
    }

    /// Whether the rule is active now.
    #[inline]
    pub fn active_now(&self) -> bool {
        let now = unix_seconds_now();
        let state = self.state.load(Ordering::Relaxed);
        if now < state >> 1 {
            return state & 1 == 1;
        }
        self.refresh(now)
    }

    #[cold]
    fn refresh(&self, now: u64) -> bool {
        let t = Timestamp::from_second(now as i64).unwrap_or(Timestamp::UNIX_EPOCH);
        let active = self.schedule.active_at(t);
        let until = self
            .schedule
            .next_change_after(t)
            .map_or(FOREVER, |n| n.as_second().max(0) as u64);
        self.state.store(
            (until.min(FOREVER) << 1) | u64::from(active),
            Ordering::Relaxed,
        );
        active
    }

    /// Whether the rule is active at `t` (`picket explain --at`, policy tests).
    pub fn active_at(&self, t: Timestamp) -> bool {
        self.schedule.active_at(t)
    }
}

fn unix_seconds_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a policy is evaluated: now (queries), or a given instant (explain
/// and policy tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum When {
    #[default]
    Now,
    At(Timestamp),
}

impl When {
    /// Whether a rule with this clock (None: unscheduled) takes part.
    #[inline]
    pub(crate) fn admits(self, clock: Option<&RuleClock>) -> bool {
        match (clock, self) {
            (None, _) => true,
            (Some(c), When::Now) => c.active_now(),
            (Some(c), When::At(t)) => c.active_at(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(json: &str, expires: Option<&str>) -> Schedule {
        let j: ScheduleJson = serde_json::from_str(json).unwrap();
        Schedule::parse(Some(&j), expires).unwrap().unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_in_local_time_on_the_days_named() {
        // 2026-12-07 is a Monday; Lisbon is UTC+0 in winter.
        let s = schedule(
            r#"{"time_zone": "Europe/Lisbon", "mon": "09:00-12:30,13:30-17:00"}"#,
            None,
        );
        assert!(!s.active_at(at("2026-12-07T08:59:59Z")));
        assert!(s.active_at(at("2026-12-07T09:00:00Z")));
        assert!(!s.active_at(at("2026-12-07T12:30:00Z")));
        assert!(s.active_at(at("2026-12-07T16:59:00Z")));
        assert!(
            !s.active_at(at("2026-12-08T10:00:00Z")),
            "Tuesday has no range"
        );
        assert_eq!(
            s.next_change_after(at("2026-12-07T10:00:00Z")),
            Some(at("2026-12-07T12:30:00Z"))
        );
        assert_eq!(
            s.next_change_after(at("2026-12-07T17:00:00Z")),
            Some(at("2026-12-14T09:00:00Z")),
            "next Monday"
        );
    }

    #[test]
    fn daylight_saving_time_moves_the_instants_not_the_local_times() {
        // New York: EST (UTC-5) until 2027-03-14, EDT (UTC-4) after.
        let s = schedule(
            r#"{"timezone": "America/New_York", "mon": "09:00-17:00"}"#,
            None,
        );
        assert!(s.active_at(at("2027-03-08T14:00:00Z")), "09:00 EST");
        assert!(!s.active_at(at("2027-03-08T13:30:00Z")));
        assert!(s.active_at(at("2027-03-15T13:00:00Z")), "09:00 EDT");
        assert!(!s.active_at(at("2027-03-15T12:59:00Z")));
        assert_eq!(
            s.next_change_after(at("2027-03-09T00:00:00Z")),
            Some(at("2027-03-15T13:00:00Z"))
        );
    }

    #[test]
    fn a_range_may_run_to_midnight_and_a_whole_day_is_00_00_24_00() {
        let s = schedule(r#"{"sat": "00:00-24:00", "sun": "22:00-24:00"}"#, None);
        // 2026-12-05 is a Saturday.
        assert!(s.active_at(at("2026-12-05T00:00:00Z")));
        assert!(s.active_at(at("2026-12-05T23:59:59Z")));
        assert!(!s.active_at(at("2026-12-06T00:00:00Z")));
        assert!(s.active_at(at("2026-12-06T23:00:00Z")));
        assert!(!s.active_at(at("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn expiry_turns_a_rule_off_for_good() {
        let s = schedule(r#"{"mon": "00:00-24:00"}"#, Some("2026-12-07T12:00:00Z"));
        assert!(s.active_at(at("2026-12-07T11:59:59Z")));
        assert!(!s.active_at(at("2026-12-07T12:00:00Z")));
        assert_eq!(
            s.next_change_after(at("2026-12-07T06:00:00Z")),
            Some(at("2026-12-07T12:00:00Z"))
        );
        assert_eq!(s.next_change_after(at("2026-12-07T13:00:00Z")), None);
        let only_expiry = Schedule::parse(None, Some("2026-12-07T12:00:00+01:00"))
            .unwrap()
            .unwrap();
        assert!(only_expiry.active_at(at("2026-12-07T10:59:00Z")));
        assert!(!only_expiry.active_at(at("2026-12-07T11:00:00Z")));
    }

    #[test]
    fn malformed_schedules_say_what_and_where() {
        let cases = [
            (
                r#"{"time_zone": "Mars/Olympus"}"#,
                None,
                "schedule.time_zone",
                "unknown time zone",
            ),
            (
                r#"{"mon": "9-17"}"#,
                None,
                "schedule.mon",
                "not a time of day",
            ),
            (r#"{"tue": "09:00"}"#, None, "schedule.tue", "not a range"),
            (
                r#"{"wed": "17:00-09:00"}"#,
                None,
                "schedule.wed",
                "ends before it starts",
            ),
            (
                r#"{"thu": "09:00-12:00,11:00-13:00"}"#,
                None,
                "schedule.thu",
                "overlap",
            ),
            (
                r#"{"fri": "24:30-25:00"}"#,
                None,
                "schedule.fri",
                "not a time of day",
            ),
            (
                r#"{"sat": "09:60-10:00"}"#,
                None,
                "schedule.sat",
                "not a time of day",
            ),
            (r#"{}"#, Some("next tuesday"), "expires_at", "RFC 3339"),
        ];
        for (json, expires, key, words) in cases {
            let j: ScheduleJson = serde_json::from_str(json).unwrap();
            let e = Schedule::parse(Some(&j), expires).unwrap_err();
            assert_eq!(e.key, key, "{json}");
            assert!(e.message.contains(words), "{json}: {}", e.message);
        }
    }

    #[test]
    fn the_clock_caches_the_state_until_the_next_change() {
        let always = RuleClock::new(schedule(
            r#"{"mon":"00:00-24:00","tue":"00:00-24:00","wed":"00:00-24:00","thu":"00:00-24:00","fri":"00:00-24:00","sat":"00:00-24:00","sun":"00:00-24:00"}"#,
            None,
        ));
        assert!(always.active_now());
        let state = always.state.load(Ordering::Relaxed);
        assert_eq!(state & 1, 1);
        assert!(
            state >> 1 > unix_seconds_now(),
            "valid until a future instant"
        );
        let never = RuleClock::new(schedule(r#"{}"#, None));
        assert!(!never.active_now());
        assert_eq!(never.state.load(Ordering::Relaxed) >> 1, FOREVER);
        let expired = RuleClock::new(
            Schedule::parse(None, Some("2020-01-01T00:00:00Z"))
                .unwrap()
                .unwrap(),
        );
        assert!(!expired.active_now());
        assert!(When::Now.admits(None));
        assert!(When::At(at("2019-06-01T00:00:00Z")).admits(Some(&expired)));
    }
}
