//! The policy engine's public API: actions, fields, lists, response phase, identity, check.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{dir_with, policy_file_dir};
use picket::policy::{
    check, evaluate, evaluate_response, explain, Action, AnswerFacts, BlockAnswer, BlockMode,
    Identity, LoadOptions, OverrideAnswer, PolicySet, Verdict,
};
use picket::query::{ClientHints, Facts, Transport};

fn load(files: &[(&str, &str)]) -> PolicySet {
    let d = dir_with("policy-api", files);
    match PolicySet::load_dir(&d) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// [`org_policy`] with `rules`, loaded.
fn load_org(rules: &str) -> PolicySet {
    load(&[("p.json", &org_policy(rules))])
}

fn facts<'a>(name: &'a str, qtype: u16, ip: &str, transport: Transport) -> Facts<'a> {
    Facts {
        qname: name,
        qtype,
        qclass: 1,
        client_ip: ip.parse().unwrap(),
        transport,
        dnssec_ok: false,
    }
}

fn eval(p: &PolicySet, name: &str, qtype: u16, ip: &str) -> Verdict {
    let hints = ClientHints::plain(ip.parse().unwrap(), Transport::Udp);
    let id = p.identify(&hints);
    evaluate(p, &id, &facts(name, qtype, ip, Transport::Udp))
}

fn rule(v: &Verdict) -> Option<&str> {
    v.rule.as_ref().map(|r| r.id())
}

/// The id of the rule that decides `name` A asked from 10.0.0.1 (organization o's network).
fn rule_for(p: &PolicySet, name: &str) -> Option<String> {
    rule(&eval(p, name, 1, "10.0.0.1")).map(str::to_owned)
}

fn org_policy(rules: &str) -> String {
    format!(
        r#"{{
          "upstreams": {{"corp": ["127.0.0.1:5300", "[::1]:5301", "192.0.2.53"]}},
          "organizations": [{{
            "id": "o", "networks": ["10.0.0.0/8"],
            "lists": {{"l": {{"domains": ["listed.example"]}}}},
            "rules": {rules}
          }}]
        }}"#
    )
}

#[test]
fn every_action() {
    let p = load_org(
        r#"[
          {"id": "nx", "expression": "dns.fqdn == \"nx.example\"", "action": "block"},
          {"id": "nd", "expression": "dns.fqdn == \"nd.example\"", "action": "block", "mode": "nodata", "ttl": 5},
          {"id": "rf", "expression": "dns.fqdn == \"rf.example\"", "action": "block", "mode": "refused", "ede": "filtered"},
          {"id": "nu", "expression": "dns.fqdn == \"nu.example\"", "action": "block", "mode": "null"},
          {"id": "ad", "expression": "dns.fqdn == \"ad.example\"", "action": "block", "addresses": ["192.0.2.1", "2001:db8::1"]},
          {"id": "al", "expression": "dns.fqdn == \"al.example\"", "action": "allow"},
          {"id": "ov", "expression": "dns.fqdn == \"ov.example\"", "action": "override", "addresses": ["192.0.2.7"]},
          {"id": "oc", "expression": "dns.fqdn == \"oc.example\"", "action": "override", "cname": "Target.Example.", "ttl": 30},
          {"id": "rs", "expression": "dns.fqdn == \"rs.example\"", "action": "resolve", "upstream": "corp"},
          {"id": "au", "expression": "dns.fqdn == \"rs.example\"", "action": "audit"},
          {"id": "re", "expression": "dns.fqdn == \"re.example\"", "action": "refuse"},
          {"id": "dr", "expression": "dns.fqdn == \"dr.example\"", "action": "drop"},
          {"id": "tr", "expression": "dns.fqdn == \"tr.example\"", "action": "truncate"}
        ]"#,
    );
    let v = |n: &str| eval(&p, n, 1, "10.0.0.1");
    let block = |mode, ttl, ede| Action::Block(BlockAnswer::plain(mode, ttl, ede));
    assert_eq!(v("nx.example").action, block(BlockMode::NxDomain, 60, 15));
    assert_eq!(v("nd.example").action, block(BlockMode::NoData, 5, 15));
    assert_eq!(v("rf.example").action, block(BlockMode::Refused, 60, 17));
    assert_eq!(v("nu.example").action, block(BlockMode::Null, 60, 15));
    assert_eq!(
        v("ad.example").action,
        block(
            BlockMode::Addresses(vec![
                "192.0.2.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]),
            60,
            15
        )
    );
    assert_eq!(v("nx.example").ede_text().unwrap(), "blocked by rule o/nx");
    assert_eq!(v("rf.example").ede_text().unwrap(), "filtered by rule o/rf");
    let al = v("al.example");
    assert_eq!(al.action, Action::Resolve { group: None });
    assert_eq!((al.label().as_str(), rule(&al)), ("allow", Some("al")));
    assert_eq!(
        v("ov.example").action,
        Action::Override(OverrideAnswer {
            addresses: vec!["192.0.2.7".parse().unwrap()],
            cname: None,
            ttl: 60
        })
    );
    assert_eq!(
        v("oc.example").action,
        Action::Override(OverrideAnswer {
            addresses: vec![],
            cname: Some("target.example".into()),
            ttl: 30
        })
    );
    let rs = v("rs.example");
    assert_eq!(
        rs.action,
        Action::Resolve {
            group: Some("corp".into())
        }
    );
    assert_eq!(rs.label().as_str(), "resolve");
    assert_eq!(
        p.upstream_group("corp").unwrap(),
        &[
            "127.0.0.1:5300".parse().unwrap(),
            "[::1]:5301".parse().unwrap(),
            "192.0.2.53:53".parse().unwrap()
        ]
    );
    assert!(p.upstream_group("nope").is_none());
    // The audit rule comes after the deciding rule: not recorded.
    assert!(rs.audited.is_empty());
    assert_eq!(v("re.example").action, Action::Refuse);
    assert_eq!(v("dr.example").action, Action::Drop);
    assert_eq!(v("tr.example").action, Action::Truncate);
    let none = v("other.example");
    assert_eq!(
        (none.label().as_str(), none.rule.clone()),
        ("resolve", None)
    );
    for (n, l) in [
        ("nx.example", "block"),
        ("ov.example", "override"),
        ("re.example", "refuse"),
        ("dr.example", "drop"),
        ("tr.example", "truncate"),
    ] {
        assert_eq!(v(n).label().as_str(), l);
    }
}

#[test]
fn audit_records_and_continues() {
    let p = load_org(
        r#"[
          {"id": "a1", "name": "Audit one", "expression": "dns.fqdn contains \"x\"", "action": "audit"},
          {"id": "a2", "expression": "list.l", "action": "audit"},
          {"id": "b", "expression": "list.l", "action": "block"},
          {"id": "a3", "expression": "list.l", "action": "audit"}
        ]"#,
    );
    let v = eval(&p, "x.listed.example", 1, "10.0.0.1");
    assert_eq!(rule(&v), Some("b"));
    let ids: Vec<&str> = v.audited.iter().map(|r| r.id()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(&*v.audited[0].name, "Audit one");
    assert_eq!(v.audited[0].org(), "o");
    let v = eval(&p, "x.example", 1, "10.0.0.1");
    assert_eq!(rule(&v), None);
    assert_eq!(v.audited.len(), 1);
}

#[test]
fn every_field() {
    let p = load_org(
        r#"[
          {"id": "fqdn", "expression": "dns.fqdn matches \"^f[0-9]+[.]example$\"", "action": "refuse"},
          {"id": "qtype", "expression": "dns.qtype == 16", "action": "refuse"},
          {"id": "qname", "expression": "dns.qtype.name in {\"MX\" \"TYPE65280\"}", "action": "refuse"},
          {"id": "qclass", "expression": "dns.qclass == 3", "action": "refuse"},
          {"id": "src", "expression": "dns.src_ip in {10.9.0.0/16}", "action": "refuse"},
          {"id": "transport", "expression": "dns.transport == \"tcp\"", "action": "refuse"},
          {"id": "do", "expression": "dns.edns.do", "action": "refuse"},
          {"id": "org", "expression": "org.id == \"o\" and dns.fqdn == \"org.example\"", "action": "refuse"},
          {"id": "list", "expression": "list.l and dns.qtype == 1", "action": "refuse"}
        ]"#,
    );
    let id = p.org_by_id("o").unwrap();
    let base = facts("n.example", 1, "10.0.0.1", Transport::Udp);
    let check = |f: Facts<'_>, want: Option<&str>| {
        let v = evaluate(&p, &id, &f);
        assert_eq!(rule(&v), want, "{f:?}");
    };
    check(base, None);
    check(
        Facts {
            qname: "f12.example",
            ..base
        },
        Some("fqdn"),
    );
    check(Facts { qtype: 16, ..base }, Some("qtype"));
    check(Facts { qtype: 15, ..base }, Some("qname"));
    check(
        Facts {
            qtype: 65280,
            ..base
        },
        Some("qname"),
    );
    check(Facts { qclass: 3, ..base }, Some("qclass"));
    check(
        Facts {
            client_ip: "10.9.1.1".parse().unwrap(),
            ..base
        },
        Some("src"),
    );
    check(
        Facts {
            transport: Transport::Tcp,
            ..base
        },
        Some("transport"),
    );
    check(
        Facts {
            dnssec_ok: true,
            ..base
        },
        Some("do"),
    );
    check(
        Facts {
            qname: "org.example",
            ..base
        },
        Some("org"),
    );
    check(
        Facts {
            qname: "a.listed.example",
            ..base
        },
        Some("list"),
    );
    check(
        Facts {
            qname: "a.listed.example",
            qtype: 28,
            ..base
        },
        None,
    );
    // org.id is "" without an organization.
    let v = evaluate(
        &p,
        &Identity::NoOrg,
        &Facts {
            qname: "org.example",
            ..base
        },
    );
    assert_eq!(rule(&v), None);
}

#[test]
fn lists_in_three_formats_with_invalid_lines() {
    let policy = r#"{
      "global": {
        "lists": {
          "plain": {"file": "lists/plain.txt"},
          "hosts": {"file": "lists/h.hosts"},
          "adb": {"file": "adblock.txt"},
          "inline": {"domains": ["Inline.Example."]}
        },
        "rules": [
          {"id": "p", "expression": "list.plain", "action": "block"},
          {"id": "h", "expression": "list.hosts", "action": "block", "mode": "nodata"},
          {"id": "a", "expression": "list.adb", "action": "block", "mode": "refused"},
          {"id": "i", "expression": "list.inline", "action": "drop"}
        ]
      }
    }"#;
    let p = load(&[
        ("p.json", policy),
        ("lists/plain.txt", "# comment\n\nplain.example\nBAD..name\n*.wild.example\nUPPER.Example.\n"),
        (
            "lists/h.hosts",
            "127.0.0.1 localhost\n0.0.0.0 h1.example h2.example # trailing\n::1 ip6-localhost\n0.0.0.0\n",
        ),
        ("adblock.txt", "! title\n[Adblock Plus 2.0]\n||adb.example^\n||opt.example^$third-party\n@@||ok.example^\n"),
    ]);
    let r = |n: &str| rule(&eval(&p, n, 1, "192.0.2.1")).map(str::to_owned);
    assert_eq!(r("plain.example").as_deref(), Some("p"));
    assert_eq!(r("deep.sub.plain.example").as_deref(), Some("p"));
    assert_eq!(r("notplain.example"), None);
    assert_eq!(r("wild.example").as_deref(), Some("p"));
    assert_eq!(r("upper.example").as_deref(), Some("p"));
    assert_eq!(r("h1.example").as_deref(), Some("h"));
    assert_eq!(r("x.h2.example").as_deref(), Some("h"));
    assert_eq!(r("localhost"), None);
    assert_eq!(r("adb.example").as_deref(), Some("a"));
    assert_eq!(r("opt.example"), None);
    assert_eq!(r("ok.example"), None);
    assert_eq!(r("inline.example").as_deref(), Some("i"));
    let s = p.stats();
    assert_eq!(s.lists, 4);
    assert_eq!(s.list_entries, 7);
    assert_eq!(s.invalid_lines, 4);
    let samples: Vec<String> = s
        .invalid_samples
        .iter()
        .map(|l| {
            format!(
                "{}:{}",
                l.file.file_name().unwrap().to_string_lossy(),
                l.line
            )
        })
        .collect();
    // Lists load in name order: adb, hosts, inline, plain.
    assert_eq!(
        samples,
        ["adblock.txt:4", "adblock.txt:5", "h.hosts:4", "plain.txt:4"]
    );
    assert!(s.invalid_samples[3].file.ends_with("lists/plain.txt"));
    assert_eq!(s.invalid_samples[3].text, "BAD..name");
    assert!(s.invalid_samples[0].reason.contains("unsupported adblock"));
}

#[test]
fn one_name_on_several_lists() {
    let p = load(&[(
        "p.json",
        r#"{
          "global": {"lists": {"g": {"domains": ["shared.example"]}},
                     "rules": [{"id": "g", "expression": "list.g and dns.qtype == 28", "action": "block"}]},
          "organizations": [
            {"id": "a", "networks": ["10.1.0.0/16"], "lists": {"x": {"domains": ["shared.example"]}},
             "rules": [{"id": "ax", "expression": "list.x", "action": "refuse"}]},
            {"id": "b", "networks": ["10.2.0.0/16"], "lists": {"x": {"domains": ["other.example"]}},
             "rules": [{"id": "bx", "expression": "list.x", "action": "drop"}]}
          ]
        }"#,
    )]);
    assert_eq!(rule(&eval(&p, "shared.example", 28, "10.1.0.1")), Some("g"));
    assert_eq!(rule(&eval(&p, "shared.example", 1, "10.1.0.1")), Some("ax"));
    // Organization b's list.x is its own list: shared.example is not on it.
    assert_eq!(rule(&eval(&p, "shared.example", 1, "10.2.0.1")), None);
    assert_eq!(rule(&eval(&p, "other.example", 1, "10.2.0.1")), Some("bx"));
    assert_eq!(rule(&eval(&p, "other.example", 1, "10.1.0.1")), None);
    assert_eq!(p.stats().distinct_domains, 2);
}

#[test]
fn identity_by_cidr_token_and_sni() {
    let p = load(&[(
        "p.json",
        r#"{
          "organizations": [
            {"id": "wide", "networks": ["10.0.0.0/8", "2001:db8::/32"]},
            {"id": "narrow", "networks": ["10.5.0.0/16", "192.0.2.7"], "doh_tokens": ["dy4gjk39y0upzkx0dtubgyeur"], "dot_names": ["y3zdxoilh3cvc9bcp7r5b1kv7"]}
          ]
        }"#,
    )]);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let who = |h: ClientHints| {
        let id = p.identify(&h);
        (id, id.org_id(&p).to_owned())
    };
    let plain = |s: &str| ClientHints::plain(ip(s), Transport::Udp);
    assert_eq!(who(plain("10.1.1.1")).1, "wide");
    assert_eq!(who(plain("10.5.1.1")).1, "narrow");
    assert_eq!(who(plain("192.0.2.7")).1, "narrow");
    assert_eq!(who(plain("192.0.2.8")).0, Identity::NoOrg);
    assert_eq!(who(plain("2001:db8::5")).1, "wide");
    assert_eq!(who(plain("::ffff:10.5.0.1")).1, "narrow");
    let mut h = ClientHints::plain(ip("10.1.1.1"), Transport::Doh);
    h.doh_token = Some("dy4gjk39y0upzkx0dtubgyeur".into());
    assert_eq!(who(h.clone()).1, "narrow");
    h.doh_token = Some("wrong".into());
    assert_eq!(who(h.clone()).0, Identity::UnknownToken);
    assert_eq!(Identity::UnknownToken.org_id(&p), "");
    let mut h = ClientHints::plain(ip("10.1.1.1"), Transport::Dot);
    h.dot_label = Some("y3zdxoilh3cvc9bcp7r5b1kv7".into());
    assert_eq!(who(h.clone()).1, "narrow");
    h.dot_label = Some("unknown".into());
    assert_eq!(who(h).1, "wide");
    assert_eq!(p.org_by_id("narrow"), Some(Identity::Org(1)));
    assert_eq!(p.org_by_id(""), Some(Identity::NoOrg));
    assert_eq!(p.org_by_id("zzz"), None);
}

const RESPONSE_POLICY: &str = r#"{
  "global": {
    "lists": {"bad": {"domains": ["tracker.example"]}},
    "rules": [
      {"id": "bad", "expression": "list.bad", "action": "block"},
      {"id": "audit-cname", "expression": "dns.response.cname contains \"cdn\"", "action": "audit"},
      {"id": "rebind", "expression": "dns.response.ip in {10.0.0.0/8 fc00::/7} and not dns.fqdn contains \"internal\"", "action": "block", "ede": "filtered"},
      {"id": "bad-cname", "expression": "dns.response.cname == \"evil.example\"", "action": "refuse"}
    ]
  },
  "organizations": [{
    "id": "o", "networks": ["10.0.0.0/8"],
    "rules": [
      {"id": "trusted", "expression": "dns.fqdn == \"trusted.example\"", "action": "allow"},
      {"id": "ov", "expression": "dns.fqdn == \"ov.example\"", "action": "override", "cname": "tracker.example"},
      {"id": "late-resp", "expression": "dns.response.ip == 192.0.2.66", "action": "drop"}
    ]
  }]
}"#;

#[test]
fn response_ip_and_cname_rules() {
    let p = load(&[("p.json", RESPONSE_POLICY)]);
    let id = p.org_by_id("o").unwrap();
    assert!(p.has_response_rules(&id));
    assert!(p.has_response_rules(&Identity::NoOrg));
    let f = facts("www.example", 1, "10.0.0.1", Transport::Udp);
    let ips: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "10.1.2.3".parse().unwrap()];
    let resp = |f: &Facts<'_>, addrs: &[IpAddr], cnames: &[&str]| {
        evaluate_response(
            &p,
            &id,
            f,
            &AnswerFacts {
                addresses: addrs,
                cnames,
            },
        )
    };
    let v = resp(&f, &ips, &[]).unwrap();
    assert_eq!(rule(&v), Some("rebind"));
    assert!(matches!(
        v.action,
        Action::Block(BlockAnswer { ede: 17, .. })
    ));
    let v6: Vec<IpAddr> = vec!["fd00::1".parse().unwrap()];
    assert_eq!(rule(&resp(&f, &v6, &[]).unwrap()), Some("rebind"));
    let fi = facts("db.internal", 1, "10.0.0.1", Transport::Udp);
    assert_eq!(resp(&fi, &ips, &[]), None);
    // CNAME field, with the audit recorded first.
    let v = resp(&f, &[], &["a.cdn.example", "evil.example"]).unwrap();
    assert_eq!(rule(&v), Some("bad-cname"));
    assert_eq!(
        v.audited.iter().map(|r| r.id()).collect::<Vec<_>>(),
        ["audit-cname"]
    );
    // Only an audit: the answer is kept, the verdict is for the logs.
    let v = resp(&f, &[], &["a.cdn.example"]).unwrap();
    assert!(v.resolves());
    assert_eq!(v.rule, None);
    assert_eq!(v.audited.len(), 1);
    // Nothing matches.
    let ok: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
    assert_eq!(resp(&f, &ok, &["www.example.net"]), None);
    // An org response rule after the global ones.
    let late: Vec<IpAddr> = vec!["192.0.2.66".parse().unwrap()];
    assert_eq!(rule(&resp(&f, &late, &[]).unwrap()), Some("late-resp"));
    // The org's allow is final for rules after it, but global rules come first.
    let ft = facts("trusted.example", 1, "10.0.0.1", Transport::Udp);
    assert_eq!(resp(&ft, &late, &[]), None);
    assert_eq!(rule(&resp(&ft, &ips, &[]).unwrap()), Some("rebind"));
    // A synthesized answer is never inspected.
    let fo = facts("ov.example", 1, "10.0.0.1", Transport::Udp);
    assert_eq!(resp(&fo, &ips, &[]), None);
}

#[test]
fn cname_cloaking() {
    let p = load(&[("p.json", RESPONSE_POLICY)]);
    let id = p.org_by_id("o").unwrap();
    let f = facts("shop.example", 1, "10.0.0.1", Transport::Udp);
    let ips: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
    let v = evaluate_response(
        &p,
        &id,
        &f,
        &AnswerFacts {
            addresses: &ips,
            cnames: &["shop.edge.example", "x.tracker.example"],
        },
    )
    .unwrap();
    assert_eq!(rule(&v), Some("bad"));
    assert!(matches!(v.action, Action::Block(_)));
    // Also without an organization.
    let v = evaluate_response(
        &p,
        &Identity::NoOrg,
        &f,
        &AnswerFacts {
            addresses: &ips,
            cnames: &["tracker.example"],
        },
    )
    .unwrap();
    assert_eq!(rule(&v), Some("bad"));
}

#[test]
fn no_response_phase_without_blocking_or_response_rules() {
    let p = load_org(r#"[{"id": "a", "expression": "list.l", "action": "allow"}]"#);
    let id = p.org_by_id("o").unwrap();
    assert!(!p.has_response_rules(&id));
    let f = facts("x.example", 1, "10.0.0.1", Transport::Udp);
    let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    assert_eq!(
        evaluate_response(
            &p,
            &id,
            &f,
            &AnswerFacts {
                addresses: &ips,
                cnames: &["listed.example"]
            }
        ),
        None
    );
}

#[test]
fn empty_policy_allows_everything() {
    let p = PolicySet::empty();
    let v = eval(&p, "anything.example", 1, "10.0.0.1");
    assert_eq!(v, Verdict::resolve());
    assert_eq!(
        p.identify(&ClientHints::plain(
            "10.0.0.1".parse().unwrap(),
            Transport::Udp
        )),
        Identity::NoOrg
    );
    assert!(!p.has_response_rules(&Identity::NoOrg));
    assert_ne!(PolicySet::empty().version(), p.version());
}

#[test]
fn blocklists_flag() {
    let d = dir_with(
        "policy-api",
        &[
            ("bl1.txt", "blocked.example\n"),
            ("bl2.hosts", "0.0.0.0 other.example\nnot a line\n"),
        ],
    );
    let policy_dir = policy_file_dir(
        "policy-api",
        r#"{"global": {"rules": [{"id": "exc", "expression": "dns.fqdn == \"ok.blocked.example\"", "action": "allow"}]},
            "organizations": [{"id": "o", "networks": ["10.0.0.0/8"],
              "rules": [{"id": "late", "expression": "dns.qtype == 99", "action": "refuse"}]}]}"#,
    );
    let base = PolicySet::load_dir(&policy_dir).unwrap();
    // list.blocklist does not exist before --blocklist...
    assert!(base.stats().rules == 2);
    let blocklists = [d.join("bl1.txt"), d.join("bl2.hosts")];
    let opts = LoadOptions {
        blocklists: &blocklists,
        previous: None,
        remote: None,
    };
    let p = PolicySet::load_dir_with(&policy_dir, &opts).unwrap();
    assert_eq!(p.stats().rules, 3);
    assert_eq!(p.stats().lists, 1, "all --blocklist files make one list");
    let v = eval(&p, "www.blocked.example", 1, "192.0.2.1");
    assert_eq!(rule(&v), Some("blocklist"));
    assert_eq!(
        v.action,
        Action::Block(BlockAnswer::plain(BlockMode::NxDomain, 60, 15))
    );
    assert_eq!(rule_for(&p, "other.example").as_deref(), Some("blocklist"));
    assert_eq!(rule_for(&p, "ok.blocked.example").as_deref(), Some("exc"));
    assert_eq!(p.stats().invalid_lines, 1);
    // Without policy files (--no-policy --blocklist).
    let only = PolicySet::blocklists_only(&opts).unwrap();
    assert_eq!(
        rule_for(&only, "a.blocked.example").as_deref(),
        Some("blocklist")
    );
    let missing = [d.join("missing.txt")];
    let err = PolicySet::blocklists_only(&LoadOptions {
        blocklists: &missing,
        previous: None,
        remote: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing.txt"), "{err}");
    assert!(err.contains("cannot read blocklist"), "{err}");
}

#[test]
fn blocklist_name_and_rule_id_taken_by_the_policy() {
    let d = dir_with("policy-api", &[("bl.txt", "x.example\n")]);
    let blocklists = [d.join("bl.txt")];
    let opts = LoadOptions {
        blocklists: &blocklists,
        previous: None,
        remote: None,
    };
    let list_taken = policy_file_dir(
        "policy-api",
        r#"{"global": {"lists": {"blocklist": {"domains": ["y.example"]}}}}"#,
    );
    let e = PolicySet::load_dir_with(&list_taken, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("list name \"blocklist\""), "{e}");
    let rule_taken = policy_file_dir(
        "policy-api",
        r#"{"global": {"rules": [{"id": "blocklist", "expression": "dns.qtype == 1", "action": "refuse"}]}}"#,
    );
    let e = PolicySet::load_dir_with(&rule_taken, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("global rule id \"blocklist\""), "{e}");
}

/// A reload shares the lists of the policy in force while no list source changed (a rule
/// edit, a SIGHUP), and reads them again when one did: a list file's content, an inline
/// list, a --blocklist file.
#[test]
fn reload_shares_unchanged_lists_and_rereads_changed_ones() {
    let d = dir_with(
        "policy-api",
        &[
            ("lists/ads.txt", "ads.example\n"),
            ("bl.txt", "bl.example\n"),
            (
                "p.json",
                r#"{"global": {"lists": {"ads": {"file": "lists/ads.txt"}, "kids": {"domains": ["games.example"]}},
                "rules": [{"id": "ads", "expression": "list.ads", "action": "block"},
                          {"id": "kids", "expression": "list.kids", "action": "refuse"}]}}"#,
            ),
        ],
    );
    let blocklists = [d.join("bl.txt")];
    let load = |previous: Option<&PolicySet>| {
        PolicySet::load_dir_with(
            &d,
            &LoadOptions {
                blocklists: &blocklists,
                previous,
                remote: None,
            },
        )
        .unwrap()
    };
    let first = load(None);
    let same = load(Some(&first));
    assert!(same.shares_lists_with(&first));
    assert_ne!(same.version(), first.version());

    // A rule edit: lists still shared, the new rule in force.
    let json = std::fs::read_to_string(d.join("p.json")).unwrap();
    std::fs::write(d.join("p.json"), json.replace("\"refuse\"", "\"drop\"")).unwrap();
    let edited = load(Some(&same));
    assert!(edited.shares_lists_with(&same));
    assert_eq!(
        eval(&edited, "games.example", 1, "10.0.0.1").action,
        Action::Drop
    );

    // Each kind of list source, changed, is read again.
    let changes: [(&str, &dyn Fn()); 3] = [
        ("list file", &|| {
            std::fs::write(d.join("lists/ads.txt"), "ads.example\nmore-ads.example\n").unwrap()
        }),
        ("inline list", &|| {
            let json = std::fs::read_to_string(d.join("p.json")).unwrap();
            std::fs::write(
                d.join("p.json"),
                json.replace("games.example", "toys.example"),
            )
            .unwrap()
        }),
        ("blocklist", &|| {
            std::fs::write(d.join("bl.txt"), "bl.example\nbl2.example\n").unwrap()
        }),
    ];
    let mut current = edited;
    for (what, change) in changes {
        change();
        let next = load(Some(&current));
        assert!(!next.shares_lists_with(&current), "{what} changed");
        current = next;
    }
    assert_eq!(
        rule_for(&current, "x.more-ads.example").as_deref(),
        Some("ads")
    );
    assert_eq!(rule_for(&current, "toys.example").as_deref(), Some("kids"));
    assert_eq!(rule_for(&current, "games.example").as_deref(), None);
    assert_eq!(
        rule_for(&current, "bl2.example").as_deref(),
        Some("blocklist")
    );
}

#[test]
fn blocklist_field_usable_only_after_flag() {
    // A policy cannot name list.blocklist unless it defines it: unknown field.
    let d = policy_file_dir(
        "policy-api",
        r#"{"global": {"rules": [{"id": "x", "expression": "list.blocklist", "action": "refuse"}]}}"#,
    );
    let e = PolicySet::load_dir(&d).unwrap_err().to_string();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn many_wirefilter_rules_and_threads() {
    let mut rules = Vec::new();
    for i in 0..200 {
        rules.push(format!(
            r#"{{"id": "r{i}", "expression": "dns.fqdn contains \"n{i}x\" and dns.qtype == 1", "action": "refuse"}}"#
        ));
    }
    let p = std::sync::Arc::new(load_org(&format!("[{}]", rules.join(","))));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in (t..200).step_by(4) {
                    let name = format!("a.n{i}x.example");
                    let v = eval(&p, &name, 1, "10.0.0.1");
                    assert_eq!(rule(&v), Some(format!("r{i}").as_str()));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn reload_gives_new_version_and_fresh_filters() {
    let d1 = policy_file_dir(
        "policy-api",
        &org_policy(r#"[{"id": "a", "expression": "dns.qtype == 1", "action": "refuse"}]"#),
    );
    let d2 = policy_file_dir(
        "policy-api",
        &org_policy(r#"[{"id": "b", "expression": "dns.qtype == 1", "action": "drop"}]"#),
    );
    let p1 = PolicySet::load_dir(&d1).unwrap();
    let p2 = PolicySet::load_dir(&d2).unwrap();
    assert_ne!(p1.version(), p2.version());
    for _ in 0..3 {
        assert_eq!(rule_for(&p1, "x.example").as_deref(), Some("a"));
        assert_eq!(rule_for(&p2, "x.example").as_deref(), Some("b"));
    }
}

fn policies_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples"))
}

#[test]
fn shipped_policies_pass_check() {
    let mut out = Vec::new();
    let report = check::run(policies_dir(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.is_ok(), "{text}");
    assert!(report.tests >= 20, "{text}");
    assert_eq!(report.stats.invalid_lines, 0, "{text}");
    assert!(
        text.ends_with(&format!("{} passed, 0 failed\n", report.passed)),
        "{text}"
    );
}

#[test]
fn check_reports_failing_tests() {
    let d = policy_file_dir(
        "policy-api",
        r#"{"tests": [
            {"name": "a.example", "expect": {"action": "block", "rule": "x"}},
            {"name": "a.example", "type": "BOGUS", "expect": {"action": "resolve"}},
            {"name": "a.example", "expect": {"action": "resolve", "rule": null, "org": ""}}
        ]}"#,
    );
    let mut out = Vec::new();
    let report = check::run(&d, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        (report.tests, report.passed, report.failures.len()),
        (3, 1, 2),
        "{text}"
    );
    assert!(text.contains("p.json: tests[0]: a.example A from 127.0.0.1: expected action \"block\", rule \"x\", got resolve (no rule)"), "{text}");
    assert!(
        text.contains("tests[1]: invalid test: unknown query type \"BOGUS\""),
        "{text}"
    );
    assert!(text.contains("1 passed, 2 failed"), "{text}");
}

#[test]
fn check_prints_load_errors() {
    let d = dir_with(
        "policy-api",
        &[("p.json", r#"{"organizations": [{"id": "o", "bogus": 1}]}"#)],
    );
    let mut out = Vec::new();
    assert!(check::run(&d, &mut out).is_err());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("error: ") && text.contains("bogus"), "{text}");
}

#[test]
fn explain_describes_the_decision() {
    let p = PolicySet::load_dir(policies_dir()).unwrap();
    let hints = ClientHints::plain("10.0.0.5".parse().unwrap(), Transport::Udp);
    let s = explain::explain(&p, "WWW.Google.com.", 1, &hints, None);
    assert!(
        s.contains("organization: acme \"Acme Corp\" (by client network 10.0.0.0/8)"),
        "{s}"
    );
    assert!(s.contains("MATCHED: decides"), "{s}");
    assert!(s.contains("decision: rule acme/safesearch-google"), "{s}");
    assert!(
        s.contains("answer: CNAME forcesafesearch.google.com (TTL 60)"),
        "{s}"
    );
    assert!(s.contains("-> disabled"), "{s}");
    let s = explain::explain(&p, "x.malware.example", 28, &hints, None);
    assert!(s.contains("list.malware (entry malware.example"), "{s}");
    assert!(
        s.contains("NXDOMAIN with SOA (negative TTL 60), EDE 15 \"blocked by rule block-malware\""),
        "{s}"
    );
    assert!(
        s.contains("would match, but an earlier rule decided") || s.contains("not reached"),
        "{s}"
    );
    let s = explain::explain(&p, "ads.example", 28, &hints, None);
    assert!(
        s.contains("AAAA :: (TTL 300), EDE 17 \"filtered by rule acme/block-ads\""),
        "{s}"
    );
    let s = explain::explain(&p, "ads.example", 1, &hints, Some(""));
    assert!(s.contains("organization: none (given with --org)"), "{s}");
    assert!(s.contains("decision: no rule matched"), "{s}");
    let s = explain::explain(&p, "ads.example", 1, &hints, Some("nobody"));
    assert!(
        s.contains("unknown organization \"nobody\" (known: acme)"),
        "{s}"
    );
    let s = explain::explain(&p, "a.corp.internal", 1, &hints, None);
    assert!(
        s.contains("forwarded to upstream group corp (127.0.0.1:5300)"),
        "{s}"
    );
}

#[test]
fn embedded_policies_load() {
    let files: Vec<(String, String)> = [
        "global.json",
        "acme.json",
        "lists/malware.txt",
        "lists/ads.txt",
        "lists/trackers.hosts",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read_to_string(policies_dir().join(n)).unwrap(),
        )
    })
    .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = PolicySet::load_embedded(&refs).unwrap();
    assert_eq!(p.dir(), None);
    assert_eq!(
        rule(&eval(&p, "ads.example", 1, "127.0.0.1")),
        Some("block-ads")
    );
    let mut out = Vec::new();
    let r = check::run_policy(&p, "embedded", &mut out).unwrap();
    assert!(r.is_ok(), "{}", String::from_utf8_lossy(&out));
}

/// A failing test names every expectation the verdict missed, each with what it got.
#[test]
fn check_names_every_mismatch() {
    let d = policy_file_dir(
        "policy-api",
        r#"{"upstreams": {"corp": ["127.0.0.1:5300"]},
        "organizations": [{"id": "acme", "networks": ["10.0.0.0/8"], "rules": [
            {"id": "watch", "expression": "dns.fqdn == \"a.example\"", "action": "audit"},
            {"id": "corp", "expression": "dns.fqdn == \"a.example\"", "action": "resolve", "upstream": "corp"}
        ]}],
        "tests": [
            {"name": "a.example", "client": "10.1.2.3", "expect": {"action": "block", "rule": null, "org": "other", "upstream": "dns", "audited": []}},
            {"name": "b.example", "client": "10.1.2.3", "expect": {"action": "resolve", "rule": "corp"}}
        ]}"#,
    );
    let mut out = Vec::new();
    let report = check::run(&d, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((report.tests, report.failures.len()), (2, 2), "{text}");
    assert!(text.contains("p.json: tests[0]: a.example A from 10.1.2.3 (org acme): expected action \"block\", no rule, organization \"other\" (got \"acme\"), upstream group \"dns\" (got Some(\"corp\")), audited [] (got [\"watch\"]), got resolve by rule corp"), "{text}");
    assert!(text.contains("p.json: tests[1]: b.example A from 10.1.2.3 (org acme): expected rule \"corp\", got resolve (no rule)"), "{text}");
}
