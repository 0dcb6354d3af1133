//! Rule schedules and expiry: a rule takes part only inside its ranges of
//! local time, judged at the instant `picket explain --at` and policy tests
//! name, and at the query's own time when serving.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use ::picket::config::PolicySource;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = "
example.test.      3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.      3600 IN NS  ns1.example.test.
games.example.test. 300 IN A   192.0.2.7
work.example.test.  300 IN A   192.0.2.8
";

/// Games blocked during Lisbon office hours on weekdays; the tests pin it.
/// 2027-01-04 is a Monday; Lisbon is UTC+0 in January, UTC+1 in July.
const OFFICE_HOURS: &str = r#"{
  "global": {"rules": [
    {"id": "no-games-at-work", "name": "No games during office hours",
     "expression": "dns.fqdn == \"games.example.test\"", "action": "block",
     "schedule": {"time_zone": "Europe/Lisbon",
                  "mon": "09:00-12:30,13:30-17:00", "tue": "09:00-17:00", "wed": "09:00-17:00",
                  "thu": "09:00-17:00", "fri": "09:00-17:00"}}
  ]},
  "tests": [
    {"name": "games.example.test", "at": "2027-01-04T10:00:00Z", "expect": {"action": "block", "rule": "no-games-at-work"}},
    {"name": "games.example.test", "at": "2027-01-04T13:00:00Z", "expect": {"action": "resolve"}},
    {"name": "games.example.test", "at": "2027-01-09T10:00:00Z", "expect": {"action": "resolve"}},
    {"name": "games.example.test", "at": "2027-07-05T08:30:00Z", "expect": {"action": "block"}},
    {"name": "games.example.test", "at": "2027-07-05T16:30:00Z", "expect": {"action": "resolve"}}
  ]
}"#;

fn picket(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picket"))
        .args(args)
        .output()
        .expect("run picket");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn policy_tests_judge_schedules_at_their_instant_across_dst() {
    let dir = dir_with("sched-check", &[("policy.json", OFFICE_HOURS)]);
    let (code, out) = picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 passed"), "{out}");
    // A test that expects the wrong thing at an instant fails, naming it.
    let wrong = OFFICE_HOURS.replace(
        r#""at": "2027-01-04T13:00:00Z", "expect": {"action": "resolve"}"#,
        r#""at": "2027-01-04T13:00:00Z", "expect": {"action": "block"}"#,
    );
    let dir = dir_with("sched-check-wrong", &[("policy.json", &wrong)]);
    let (code, out) = picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 failed"), "{out}");
}

#[test]
fn explain_at_an_instant_says_whether_the_schedule_admits_the_rule() {
    let dir = dir_with("sched-explain", &[("policy.json", OFFICE_HOURS)]);
    let policies = dir.to_str().unwrap();
    let explain = |at: &str| {
        picket(&[
            "explain",
            "games.example.test",
            "--policies",
            policies,
            "--at",
            at,
        ])
    };
    let (code, inside) = explain("2027-01-04T10:00:00+00:00");
    assert_eq!(code, 0, "{inside}");
    assert!(inside.contains("at: 2027-01-04T10:00:00Z"), "{inside}");
    assert!(inside.contains("MATCHED: decides"), "{inside}");
    assert!(
        inside.contains("decision: rule no-games-at-work"),
        "{inside}"
    );
    let (_, outside) = explain("2027-01-04T12:45:00Z");
    assert!(outside.contains("off: outside its schedule"), "{outside}");
    assert!(outside.contains("decision: no rule matched"), "{outside}");
    let (code, bad) = explain("monday morning");
    assert_eq!(code, 2, "{bad}");
    assert!(bad.contains("RFC 3339"), "{bad}");
}

#[test]
fn malformed_schedules_are_load_errors_with_file_line_and_column() {
    let cases = [
        (
            r#""schedule": {"time_zone": "Europe/Atlantis", "mon": "09:00-17:00"}"#,
            "unknown time zone",
        ),
        (
            r#""schedule": {"mon": "09:00-12:00,11:30-13:00"}"#,
            "overlap",
        ),
        (r#""schedule": {"tue": "9am-5pm"}"#, "not a time of day"),
        (
            r#""schedule": {"wed": "17:00-09:00"}"#,
            "ends before it starts",
        ),
        (r#""schedule": {"someday": "09:00-17:00"}"#, "unknown field"),
        (r#""expires_at": "31/01/2027""#, "RFC 3339"),
    ];
    for (fragment, words) in cases {
        let policy = format!(
            "{{\n  \"global\": {{\"rules\": [\n    {{\"id\": \"r\", \"expression\": \"dns.qtype == 1\", \"action\": \"block\",\n     {fragment}}}\n  ]}}\n}}\n"
        );
        let dir = dir_with("sched-bad", &[("policy.json", &policy)]);
        let (code, out) = picket(&["check", dir.to_str().unwrap()]);
        assert_eq!(code, 1, "{fragment}: {out}");
        assert!(out.contains(words), "{fragment}: {out}");
        assert!(
            out.contains("policy.json:4:"),
            "line and column for {fragment}: {out}"
        );
        assert!(
            out.contains("rules[0]"),
            "the rule's path for {fragment}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_rule_turns_off_when_it_expires_without_a_reload() {
    let upstream = Authority::start(ZONE);
    // Expires a few seconds from now; a schedule that covers every day.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let policy = format!(
        r#"{{"global": {{"rules": [
          {{"id": "until-soon", "expression": "dns.fqdn == \"games.example.test\"", "action": "block",
            "expires_at": "{expires}",
            "schedule": {{"mon": "00:00-24:00", "tue": "00:00-24:00", "wed": "00:00-24:00",
              "thu": "00:00-24:00", "fri": "00:00-24:00", "sat": "00:00-24:00", "sun": "00:00-24:00"}}}},
          {{"id": "never", "expression": "dns.fqdn == \"work.example.test\"", "action": "block",
            "schedule": {{"time_zone": "Asia/Tokyo"}}}}
        ]}}}}"#
    );
    let dir = dir_with("sched-serve", &[("policy.json", &policy)]);
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir);
    let picket = start_picket_with(settings);

    let games = query_udp(picket.addr, "games.example.test", RecordType::A).await;
    assert_eq!(
        rcode(&games),
        ResponseCode::NXDomain,
        "blocked before expiry"
    );
    let work = query_udp(picket.addr, "work.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&work).len(),
        1,
        "a schedule with no range never applies"
    );

    // After the expiry the same policy (no reload) lets the name resolve.
    let until = Instant::now() + Duration::from_secs(15);
    let mut resolved = false;
    while !resolved && Instant::now() < until {
        real_sleep(Duration::from_millis(250)).await;
        let games = query_udp(picket.addr, "games.example.test", RecordType::A).await;
        resolved = rcode(&games) == ResponseCode::NoError && a_records(&games).len() == 1;
    }
    assert!(resolved, "the expired rule still blocks");
    assert!(
        jiff::Timestamp::now() >= expires,
        "resolved only after the expiry"
    );
    picket.server.stop();
}
