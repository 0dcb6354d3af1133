//! Rule-hit metrics of a policy with more rules than the series cap (issue 17): every rule's
//! series exists from the load (at 0), hits are counted exactly on `/metrics`, the rules past
//! the cap share `rule="_other"`, and counts carry on across a reload.

mod common;

use std::net::SocketAddr;

use ::picket::config::PolicySource;
use ::picket::observe::metrics::MAX_RULE_SERIES;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = "
example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
";

/// Rules past the cap.
const PAST_CAP: usize = 5;

/// A global policy of `MAX_RULE_SERIES + PAST_CAP` rules, rule `r{i}` blocking `n{i}.example.test`
/// (plus `extra` rules written first).
fn write_policy(dir: &std::path::Path, extra: &str) {
    let rules: Vec<String> = (0..MAX_RULE_SERIES + PAST_CAP)
        .map(|i| {
            format!(
                r#"{{ "id": "r{i}", "expression": "dns.fqdn == \"n{i}.example.test\"", "action": "block" }}"#
            )
        })
        .collect();
    let text = format!(
        r#"{{ "global": {{ "rules": [ {extra}{} ] }} }}"#,
        rules.join(",\n")
    );
    std::fs::write(dir.join("policy.json"), text).unwrap();
}

/// GET /metrics over plain HTTP/1.1: the body.
async fn scrape(admin: SocketAddr) -> String {
    let answer = http_get(admin, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// The value of `picket_rule_hits_total{org="none",rule=RULE}`, if exported.
fn hits(metrics: &str, rule: &str) -> Option<u64> {
    let series = format!(r#"picket_rule_hits_total{{org="none",rule="{rule}"}} "#);
    let line = metrics.lines().find(|l| l.starts_with(&series))?;
    Some(line[series.len()..].parse().unwrap())
}

async fn blocked(server: SocketAddr, name: &str) {
    let answer = query_udp(server, name, RecordType::A).await;
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NXDomain,
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_hits_past_twenty_thousand_rules_are_registered_at_load_and_counted() {
    let upstream = Authority::start(ZONE);
    let dir = temp_dir("rule-metrics");
    write_policy(&dir, "");
    let mut settings = test_settings(&[upstream.addr()]);
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);
    let admin = picket.server.admin_addr().expect("metrics on");

    let before = scrape(admin).await;
    assert_eq!(hits(&before, "r0"), Some(0), "registered at load");
    let last = format!("r{}", MAX_RULE_SERIES - 1);
    assert_eq!(hits(&before, &last), Some(0), "registered at load");
    assert_eq!(
        hits(&before, &format!("r{MAX_RULE_SERIES}")),
        None,
        "past the cap"
    );
    assert_eq!(hits(&before, "_other"), None, "no hit past the cap yet");

    for _ in 0..3 {
        blocked(picket.addr, "n7.example.test").await;
    }
    blocked(
        picket.addr,
        &format!("n{}.example.test", MAX_RULE_SERIES - 1),
    )
    .await;
    for i in 0..PAST_CAP {
        blocked(
            picket.addr,
            &format!("n{}.example.test", MAX_RULE_SERIES + i),
        )
        .await;
    }
    let after = scrape(admin).await;
    assert_eq!(hits(&after, "r7"), Some(3));
    assert_eq!(hits(&after, &last), Some(1));
    assert_eq!(hits(&after, "r8"), Some(0));
    assert_eq!(hits(&after, "_other"), Some(PAST_CAP as u64));
    assert_eq!(
        after.matches("picket_rule_hits_total{").count(),
        MAX_RULE_SERIES + 1,
        "the cap and _other"
    );

    // A reload with one more rule: counts carry on; the new rule is past the cap.
    write_policy(
        &dir,
        r#"{ "id": "fresh", "expression": "dns.fqdn == \"fresh.example.test\"", "action": "block" },"#,
    );
    picket.server.reload_policy();
    blocked(picket.addr, "n7.example.test").await;
    blocked(picket.addr, "fresh.example.test").await;
    // `fresh` blocking proves the new policy serves (the file watcher may reload it too).
    let reloaded = scrape(admin).await;
    assert_eq!(hits(&reloaded, "r7"), Some(4));
    assert_eq!(hits(&reloaded, "fresh"), None);
    assert_eq!(hits(&reloaded, "_other"), Some(PAST_CAP as u64 + 1));
    let _ = std::fs::remove_dir_all(dir);
}
