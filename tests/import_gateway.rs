//! `picket import gateway`: a realistic Gateway export (tests/fixtures/gateway/: rules of every
//! kind the import maps, and a lists export) imported as a user would, then checked, explained
//! and served: the imported policy must decide as Gateway would.

mod common;

use std::path::PathBuf;
use std::process::Command;

use ::picket::config::PolicySource;
use common::*;
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

const RULES: &str = "tests/fixtures/gateway/rules.json";
const LISTS: &str = "tests/fixtures/gateway/lists.json";
const HQ: &str = "2d5c8f1e-6a77-4d4f-9b0a-3e2f1c0d9a11";

/// Runs picket to its end: (exit code, stdout, stderr). The import's contract is in all three.
fn run_picket(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picket"))
        .args(args)
        .output()
        .expect("picket runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The fixture imported with its lists: (policy JSON, warnings).
fn import_fixture() -> (String, String) {
    let (code, out, err) = run_picket(&["import", "gateway", RULES, "--lists", LISTS]);
    assert_eq!(code, 0, "{err}");
    (out, err)
}

/// A policy directory holding `policy` (and more files).
fn policy_dir(policy: &str, more: &[(&str, &str)]) -> PathBuf {
    let mut files = vec![("gateway.json", policy)];
    files.extend_from_slice(more);
    dir_with("gw-import", &files)
}

/// The Picket id of the imported rule named `name`.
fn rule_id(policy: &Value, name: &str) -> String {
    policy["global"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule named {name:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn warnings_name_each_rule_not_carried_over_and_why() {
    let (_, err) = import_fixture();
    let expected = [
        r#"rule "Block file uploads": skipped: filters ["http"] (only DNS rules are imported)"#,
        r#"rule "Block gambling": `any(dns.content_category[*] in {99})`: Picket has no Cloudflare content categories"#,
        r#"rule "Block malware and phishing": `any(dns.security_category[*] in {68 178 80 83})`: Picket has no Cloudflare security categories"#,
        r#"rule "No social media for Engineering": Picket cannot evaluate the identity condition"#,
        r#"rule "VPN for healthy devices": Picket cannot evaluate the device_posture condition"#,
        r#"rule "Blocklist from a deleted list": `any(dns.domains[*] in $e9f1a3b5-4d6f-4a8c-9e0a-5f7b9d1e3a57)`: the list $e9f1a3b5-4d6f-4a8c-9e0a-5f7b9d1e3a57 is not in the lists export"#,
        r#"rule "Override with no target": skipped: an override rule with neither override_ips nor override_host"#,
        r#"rule "SafeSearch at HQ": location 2d5c8f1e-6a77-4d4f-9b0a-3e2f1c0d9a11 became the organization"#,
        r#"rule "YouTube restricted for the kids' endpoint": the DoH subdomain "k7q2m9x4ra" has about 52 bits of randomness"#,
        r#"rule "Forward corp to internal DNS": the resolver 10.0.1.53 is reached through a Cloudflare private network"#,
    ];
    let lines: Vec<&str> = err.lines().collect();
    for e in expected {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("warning: {e}"))),
            "missing warning {e:?} in:\n{err}"
        );
    }
    // The rules Picket cannot evaluate say they were imported disabled; nothing else warns.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("imported disabled"))
            .count(),
        5,
        "{err}"
    );
    assert_eq!(lines.len(), expected.len(), "{err}");
}

#[test]
fn the_imported_policy_passes_check_and_keeps_order_and_state() {
    let (policy, _) = import_fixture();
    let dir = policy_dir(&policy, &[]);
    let (code, out, err) = run_picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&policy).unwrap();
    let rules = v["global"]["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    // Precedence order (the export is not in that order), resolver policies after DNS policies.
    assert_eq!(
        names[..2],
        ["Allow partner portal", "Block ads and trackers"]
    );
    assert_eq!(
        names[names.len() - 2..],
        [
            "Forward corp to internal DNS",
            "Public zone through Cloudflare"
        ]
    );
    let enabled = |name: &str| rules.iter().find(|r| r["name"] == name).unwrap()["enabled"].clone();
    assert_eq!(
        enabled("Retired rule"),
        false,
        "enabled: false stays disabled"
    );
    assert_eq!(enabled("Block gambling"), false);
    assert_eq!(enabled("Block ads and trackers"), true);
    let ads = rules
        .iter()
        .find(|r| r["name"] == "Block ads and trackers")
        .unwrap();
    assert_eq!(ads["block_page"], true);
    assert_eq!(
        ads["block_reason"],
        "Advertising is blocked on the company network"
    );
    assert_eq!(ads["expression"], "list.ads_and_trackers");
    assert_eq!(
        v["global"]["lists"]["ads_and_trackers"]["domains"][1],
        "tracker.example"
    );
    assert_eq!(
        v["upstreams"]["forward-corp-to-internal-dns"][1],
        "10.0.1.53:5353"
    );
    assert_eq!(v["organizations"][0]["id"], HQ);
}

/// One row of the explain table: the query, who asks, when, and what Gateway would do.
struct Row {
    name: &'static str,
    qtype: &'static str,
    client: &'static str,
    org: Option<&'static str>,
    at: Option<&'static str>,
    /// The deciding rule's name, or None when no rule decides.
    rule: Option<&'static str>,
    answer: &'static str,
}

const fn row(name: &'static str, rule: Option<&'static str>, answer: &'static str) -> Row {
    Row {
        name,
        qtype: "A",
        client: "10.1.1.1",
        org: None,
        at: None,
        rule,
        answer,
    }
}

fn table() -> Vec<Row> {
    vec![
        // The allow before the block is an exception to it.
        row("partner.ads.example", Some("Allow partner portal"), "resolved normally"),
        row("x.ads.example", Some("Block ads and trackers"), "A 0.0.0.0"),
        Row { qtype: "AAAA", ..row("tracker.example", Some("Block ads and trackers"), "AAAA ::") },
        // dns.fqdn in a list is the exact name; any(dns.domains...) takes subdomains.
        row("bad.example", Some("Block known bad hosts"), "A 0.0.0.0"),
        row("www.bad.example", None, "resolved normally"),
        row("malware-c2.example", Some("Block known bad hosts"), "A 0.0.0.0"),
        Row { qtype: "TXT", client: "10.99.3.4", ..row("example.org", Some("Guests: no TXT or ANY"), "NODATA") },
        Row { client: "10.99.3.4", ..row("example.org", None, "resolved normally") },
        Row { qtype: "TXT", ..row("example.org", None, "resolved normally") },
        row("intranet.corp.example", Some("Intranet address"), "A 10.1.2.3"),
        Row { qtype: "AAAA", ..row("intranet.corp.example", Some("Intranet address"), "AAAA 2001:db8::3") },
        row("wiki.example", Some("Wiki alias"), "CNAME wiki.corp.example"),
        Row { org: Some(HQ), ..row("www.google.com", Some("SafeSearch at HQ (Google)"), "CNAME forcesafesearch.google.com") },
        Row { org: Some(HQ), ..row("www.bing.com", Some("SafeSearch at HQ (Bing)"), "CNAME strict.bing.com") },
        Row { org: Some(HQ), ..row("duckduckgo.com", Some("SafeSearch at HQ (DuckDuckGo)"), "CNAME safe.duckduckgo.com") },
        Row { org: Some(HQ), ..row("m.youtube.com", Some("SafeSearch at HQ (YouTube)"), "CNAME restrictmoderate.youtube.com") },
        row("www.google.com", None, "resolved normally"),
        Row { org: Some("doh-1"), ..row("www.youtube.com", Some("YouTube restricted for the kids' endpoint (YouTube)"), "CNAME restrict.youtube.com") },
        // Unknown selectors: imported disabled, so the rule never decides.
        row("social.example", None, "resolved normally"),
        row("vpn.example", None, "resolved normally"),
        row("old.example", None, "resolved normally"),
        // Schedules: Monday 2027-01-04 10:00 in Lisbon is office hours, Saturday is not.
        Row { at: Some("2027-01-04T10:00:00Z"), ..row("www.games.example", Some("Games during office hours"), "A 0.0.0.0") },
        Row { at: Some("2027-01-04T13:00:00Z"), ..row("www.games.example", None, "resolved normally") },
        Row { at: Some("2027-01-09T10:00:00Z"), ..row("play.example", None, "resolved normally") },
        // Expiry.
        Row { at: Some("2026-12-24T12:00:00Z"), ..row("promo.example", Some("Holiday promotion block"), "A 0.0.0.0") },
        Row { at: Some("2027-01-02T12:00:00Z"), ..row("promo.example", None, "resolved normally") },
        row("k2j4h6g8f0d2s4a6q8w0e2r4t6y8u0i2.example", Some("Random-looking names"), "A 0.0.0.0"),
        // Resolver policies: through the custom resolvers, or Cloudflare's.
        row("git.corp.example", Some("Forward corp to internal DNS"), "forwarded to upstream group forward-corp-to-internal-dns (10.0.0.53:53, 10.0.1.53:5353, [2001:db8::53]:53)"),
        row("www.public.example", Some("Public zone through Cloudflare"), "forwarded to upstream group cloudflare"),
    ]
}

#[test]
fn explain_on_the_imported_policy_decides_as_gateway_would() {
    let (policy, _) = import_fixture();
    let v: Value = serde_json::from_str(&policy).unwrap();
    let dir = policy_dir(&policy, &[]);
    let mut failures = Vec::new();
    for r in table() {
        let mut args = vec![
            "explain",
            r.name,
            r.qtype,
            "--client",
            r.client,
            "--policies",
            dir.to_str().unwrap(),
        ];
        if let Some(o) = r.org {
            args.extend(["--org", o]);
        }
        if let Some(at) = r.at {
            args.extend(["--at", at]);
        }
        let (code, out, err) = run_picket(&args);
        assert_eq!(code, 0, "{err}");
        let decision = match r.rule {
            Some(name) => format!("decision: rule {} \"{name}\"", rule_id(&v, name)),
            None => "decision: no rule matched".to_owned(),
        };
        let answer = out
            .lines()
            .find(|l| l.starts_with("answer: "))
            .unwrap_or("");
        if !out.contains(&decision) || !answer.contains(r.answer) {
            failures.push(format!(
                "{} {} from {} ({:?}, at {:?}): expected {decision:?} and {:?}\n{out}",
                r.name, r.qtype, r.client, r.org, r.at, r.answer
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn explain_shows_rules_with_unknown_selectors_as_disabled() {
    let (policy, _) = import_fixture();
    let v: Value = serde_json::from_str(&policy).unwrap();
    let dir = policy_dir(&policy, &[]);
    let (_, out, _) = run_picket(&[
        "explain",
        "casino.example",
        "--policies",
        dir.to_str().unwrap(),
    ]);
    for name in [
        "Block gambling",
        "Block malware and phishing",
        "No social media for Engineering",
    ] {
        let id = rule_id(&v, name);
        let mut lines = out
            .lines()
            .skip_while(|l| !l.contains(&format!(" {id} \"{name}\"")));
        assert!(lines.next().is_some(), "{name} not listed:\n{out}");
        assert_eq!(
            lines.next().map(str::trim),
            Some("-> disabled"),
            "{name}:\n{out}"
        );
    }
}

/// Response-phase rules (dns.resolved_ips, dns.response.cname) decide on the answer: policy
/// tests with simulated answers, written next to the imported policy, run by `check`.
#[test]
fn response_phase_rules_decide_on_the_answer() {
    let (policy, _) = import_fixture();
    let v: Value = serde_json::from_str(&policy).unwrap();
    let rebind = rule_id(&v, "DNS rebinding protection");
    let cdn = rule_id(&v, "Tracker CDN behind CNAMEs");
    let tests = format!(
        r#"{{"tests": [
  {{"name": "evil.example", "client": "10.1.1.1", "answer": {{"addresses": ["192.168.1.1"]}},
    "expect": {{"action": "block", "rule": "{rebind}"}}}},
  {{"name": "evil.example", "client": "10.1.1.1", "answer": {{"addresses": ["198.51.100.7"]}},
    "expect": {{"action": "resolve", "rule": null}}}},
  {{"name": "printer.corp.example", "client": "10.1.1.1", "answer": {{"addresses": ["10.2.0.9"]}},
    "expect": {{"action": "resolve", "upstream": "forward-corp-to-internal-dns"}}}},
  {{"name": "shop.example", "client": "10.1.1.1",
    "answer": {{"cnames": ["edge.tracker-cdn.example"], "addresses": ["198.51.100.8"]}},
    "expect": {{"action": "block", "rule": "{cdn}"}}}},
  {{"name": "partner.ads.example", "client": "10.1.1.1", "answer": {{"addresses": ["10.0.0.1"]}},
    "expect": {{"action": "allow"}}}}
]}}"#
    );
    let dir = policy_dir(&policy, &[("tests.json", &tests)]);
    let (code, out, err) = run_picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 passed, 0 failed"), "{out}");
}

#[test]
fn rules_that_reference_lists_need_the_lists_export() {
    let (code, policy, err) = run_picket(&["import", "gateway", RULES]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(r#"warning: rule "Block ads and trackers": `any(dns.domains[*] in $5f0d6a3c-9c1e-4b7a-8e2d-1a4b6c8d0e21)`: the list $5f0d6a3c-9c1e-4b7a-8e2d-1a4b6c8d0e21 is not known: give the lists export with --lists FILE"#),
        "{err}"
    );
    let v: Value = serde_json::from_str(&policy).unwrap();
    let ads = v["global"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Block ads and trackers")
        .unwrap()
        .clone();
    assert_eq!(ads["enabled"], false, "never imported wider than Gateway's");
    let dir = policy_dir(&policy, &[]);
    let (code, out, _) = run_picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_bare_array_of_rules_imports_the_same() {
    let (policy, _) = import_fixture();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(RULES).unwrap()).unwrap();
    let dir = temp_dir("gw-bare");
    let bare = dir.join("rules.json");
    std::fs::write(&bare, doc["result"].to_string()).unwrap();
    let (code, out, err) = run_picket(&[
        "import",
        "gateway",
        bare.to_str().unwrap(),
        "--lists",
        LISTS,
    ]);
    assert_eq!(code, 0, "{err}");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&policy).unwrap(),
        serde_json::from_str(&out).unwrap(),
    );
    assert_eq!(a["global"], b["global"]);
    assert_eq!(a["organizations"], b["organizations"]);
}

#[test]
fn unreadable_or_invalid_input_is_a_clear_error() {
    let dir = temp_dir("gw-bad");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let broken = write("broken.json", "{\"result\": [\n  {\"name\": \"x\",}\n]}");
    let (code, out, err) = run_picket(&["import", "gateway", &broken]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "no policy on stdout: {out}");
    assert!(
        err.contains(&format!("{broken}:2:")) && err.contains("not valid JSON"),
        "{err}"
    );

    let other = write("other.json", r#"{"rules": []}"#);
    let (code, _, err) = run_picket(&["import", "gateway", &other]);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            r#"expected Gateway rules: the Gateway API's response ({"result": [...]}) or an array"#
        ),
        "{err}"
    );

    let failed = write(
        "failed.json",
        r#"{"success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "result": null}"#,
    );
    let (code, _, err) = run_picket(&["import", "gateway", &failed]);
    assert_ne!(code, 0);
    assert!(
        err.contains("API error response") && err.contains("Authentication error"),
        "{err}"
    );

    let missing = dir.join("missing.json");
    let (code, _, err) = run_picket(&[
        "import",
        "gateway",
        RULES,
        "--lists",
        missing.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("cannot read {}", missing.display())),
        "{err}"
    );
}

/// The imported policy served: the operator gives the HQ location its network, as the
/// warning asks, and queries over UDP get Gateway's answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_imported_policy_answers_queries() {
    let upstream = Authority::start(
        "
google.com.                 3600 IN SOA ns1.google.com. dns-admin.google.com. 1 900 900 1800 60
forcesafesearch.google.com.  300 IN A   216.239.38.120
example.                    3600 IN SOA ns.example. h.example. 1 7200 900 1209600 60
www.games.example.           300 IN A   192.0.2.7
",
    );
    let (policy, _) = import_fixture();
    let mut v: Value = serde_json::from_str(&policy).unwrap();
    v["organizations"][0]["networks"] = serde_json::json!(["127.0.0.0/8"]);
    let dir = policy_dir(&v.to_string(), &[]);
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir);
    let picket = start_picket_with(settings);

    let blocked = query_udp(picket.addr, "x.ads.example", RecordType::A).await;
    assert_eq!(a_records(&blocked), [std::net::Ipv4Addr::UNSPECIFIED]);
    let over = query_udp(picket.addr, "intranet.corp.example", RecordType::A).await;
    assert_eq!(a_records(&over), [std::net::Ipv4Addr::new(10, 1, 2, 3)]);
    let safe = query_udp(picket.addr, "www.google.com", RecordType::A).await;
    assert!(
        matches!(&safe.answers[0].data, RData::CNAME(c) if c.0.to_string() == "forcesafesearch.google.com."),
        "{safe:?}"
    );
    assert_eq!(
        a_records(&safe),
        [std::net::Ipv4Addr::new(216, 239, 38, 120)]
    );
}
