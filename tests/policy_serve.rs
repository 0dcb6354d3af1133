//! The policy engine in the running server: every action and field driven
//! over real UDP/TCP against a real upstream answer (issue 3).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::picket::config::PolicySource;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

const ZONE: &str = r#"
example.test.        3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
www.example.test.     300 IN A    192.0.2.1
www.example.test.     300 IN AAAA 2001:db8::1
ok.ads.example.test   300 IN A    192.0.2.2
x.ads.example.test    300 IN A    192.0.2.3
rebind.example.test   300 IN A    10.0.0.1
printer.home.example.test 300 IN A 192.168.1.9
shop.example.test      60 IN CNAME shop.tracker.example.test.
shop.tracker.example.test 60 IN A 192.0.2.66
cdn.example.test       60 IN CNAME edge.cdn.example.test.
edge.cdn.example.test  60 IN A 192.0.2.77
safe.example.test     300 IN A    192.0.2.99
tcp-only.example.test 300 IN A    192.0.2.5
corp.example.test     300 IN A    192.0.2.200
"#;

/// The company's own DNS for split-DNS rules: a different answer.
const CORP_ZONE: &str = "
corp.example.test. 3600 IN SOA ns1.corp.example.test. h.corp.example.test. 1 7200 900 1209600 60
corp.example.test.  300 IN A 10.1.1.1
";

fn policy(corp: SocketAddr) -> String {
    format!(
        r#"{{
  "upstreams": {{ "corp": ["{corp}"] }},
  "global": {{
    "lists": {{ "private_ok": {{ "domains": ["home.example.test", "corp.example.test"] }} }},
    "rules": [
      {{ "id": "rebind", "expression": "dns.response.ip in {{10.0.0.0/8 192.168.0.0/16}} and not list.private_ok",
        "action": "block", "ede": "filtered" }}
    ]
  }},
  "organizations": [
    {{
      "id": "acme",
      "networks": ["127.0.0.1/32"],
      "lists": {{
        "ads": {{ "file": "lists/ads.txt" }},
        "trackers": {{ "domains": ["tracker.example.test"] }},
        "corp": {{ "domains": ["corp.example.test"] }}
      }},
      "rules": [
        {{ "id": "allow-ok", "expression": "dns.fqdn == \"ok.ads.example.test\"", "action": "allow" }},
        {{ "id": "ads", "expression": "list.ads or list.trackers", "action": "block" }},
        {{ "id": "nodata", "expression": "dns.fqdn == \"nodata.example.test\"", "action": "block", "mode": "nodata" }},
        {{ "id": "refused", "expression": "dns.fqdn == \"refused.example.test\"", "action": "block", "mode": "refused" }},
        {{ "id": "null", "expression": "dns.fqdn == \"null.example.test\"", "action": "block", "mode": "null", "ttl": 30 }},
        {{ "id": "page", "expression": "dns.fqdn == \"page.example.test\"", "action": "block", "addresses": ["192.0.2.250", "2001:db8::250"] }},
        {{ "id": "fixed", "expression": "dns.fqdn == \"fixed.example.test\"", "action": "override", "addresses": ["198.51.100.1"] }},
        {{ "id": "safesearch", "expression": "dns.fqdn == \"search.example.test\"", "action": "override", "cname": "safe.example.test" }},
        {{ "id": "split", "expression": "list.corp", "action": "resolve", "upstream": "corp" }},
        {{ "id": "audit-txt", "expression": "dns.qtype.name == \"TXT\"", "action": "audit" }},
        {{ "id": "refuse-mx", "expression": "dns.qtype == 15", "action": "refuse" }},
        {{ "id": "drop", "expression": "dns.fqdn == \"drop.example.test\"", "action": "drop" }},
        {{ "id": "truncate", "expression": "dns.fqdn == \"tcp-only.example.test\"", "action": "truncate" }},
        {{ "id": "tcp-rule", "expression": "dns.transport == \"tcp\" and dns.fqdn == \"www.example.test\"", "action": "block", "mode": "nodata" }},
        {{ "id": "do-rule", "expression": "dns.edns.do and dns.fqdn == \"signed.example.test\"", "action": "block" }},
        {{ "id": "org-rule", "expression": "org.id == \"acme\" and dns.fqdn == \"org.example.test\"", "action": "block" }},
        {{ "id": "cname-target", "expression": "dns.response.cname == \"edge.cdn.example.test\"", "action": "block" }}
      ]
    }},
    {{
      "id": "other",
      "networks": ["127.0.5.0/24"],
      "rules": [
        {{ "id": "src-rule", "expression": "dns.src_ip in {{127.0.5.7}} and dns.fqdn == \"www.example.test\"", "action": "block" }}
      ]
    }}
  ]
}}"#
    )
}

/// A policy directory in a fresh temp dir, with the ads list its rules name.
fn policy_dir(text: &str) -> PathBuf {
    dir_with(
        "policy",
        &[
            ("policy.json", text),
            (
                "lists/ads.txt",
                "# ads\n||ads.example.test^\n0.0.0.0 banner.example.test\nnot a domain!\n",
            ),
        ],
    )
}

struct Lab {
    upstream: Authority,
    corp: Authority,
    picket: Picket,
    dir: PathBuf,
}

fn lab() -> Lab {
    let upstream = Authority::start(ZONE);
    let corp = Authority::start(CORP_ZONE);
    let dir = policy_dir(&policy(corp.addr()));
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);
    Lab {
        upstream,
        corp,
        picket,
        dir,
    }
}

fn blocked_by(m: &Message) -> Option<(u16, String)> {
    ede(m)
}

#[tokio::test(flavor = "multi_thread")]
async fn block_modes_answer_as_configured_with_ede_and_soa() {
    let lab = lab();
    let addr = lab.picket.addr;
    let nx = query_udp(addr, "x.ads.example.test", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        blocked_by(&nx),
        Some((15, "blocked by rule acme/ads".into()))
    );
    assert_eq!(
        soa_in_authority(&nx).expect("SOA for negative caching").ttl,
        60
    );
    let hosts = query_udp(addr, "banner.example.test", RecordType::A).await;
    assert_eq!(
        hosts.metadata.response_code,
        ResponseCode::NXDomain,
        "hosts-format entry"
    );

    let nodata = query_udp(addr, "nodata.example.test", RecordType::A).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && soa_in_authority(&nodata).is_some());

    let refused = query_udp(addr, "refused.example.test", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(blocked_by(&refused).map(|e| e.0), Some(15));

    let null4 = query_udp(addr, "null.example.test", RecordType::A).await;
    assert_eq!(a_records(&null4), [Ipv4Addr::UNSPECIFIED]);
    assert_eq!(min_ttl(&null4), Some(30));
    let null6 = query_udp(addr, "null.example.test", RecordType::AAAA).await;
    assert_eq!(aaaa_records(&null6), [Ipv6Addr::UNSPECIFIED]);
    let null_txt = query_udp(addr, "null.example.test", RecordType::TXT).await;
    assert!(
        null_txt.answers.is_empty(),
        "null blocks other types with NODATA"
    );

    let page = query_udp(addr, "page.example.test", RecordType::A).await;
    assert_eq!(a_records(&page), [Ipv4Addr::new(192, 0, 2, 250)]);
    let page6 = query_udp(addr, "page.example.test", RecordType::AAAA).await;
    assert_eq!(
        aaaa_records(&page6),
        ["2001:db8::250".parse::<Ipv6Addr>().unwrap()]
    );
    assert_eq!(
        lab.upstream.queries(),
        0,
        "blocked names never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_override_resolve_audit_refuse_drop_and_truncate() {
    let lab = lab();
    let addr = lab.picket.addr;
    let allowed = query_udp(addr, "ok.ads.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&allowed),
        [Ipv4Addr::new(192, 0, 2, 2)],
        "allow wins over the ads list"
    );

    let fixed = query_udp(addr, "fixed.example.test", RecordType::A).await;
    assert_eq!(a_records(&fixed), [Ipv4Addr::new(198, 51, 100, 1)]);

    let safe = query_udp(addr, "search.example.test", RecordType::A).await;
    let types: Vec<RecordType> = safe.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        [RecordType::CNAME, RecordType::A],
        "CNAME then the resolved target"
    );
    assert!(
        matches!(&safe.answers[0].data, RData::CNAME(c) if c.0.to_string() == "safe.example.test.")
    );
    assert_eq!(a_records(&safe), [Ipv4Addr::new(192, 0, 2, 99)]);

    let split = query_udp(addr, "corp.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&split),
        [Ipv4Addr::new(10, 1, 1, 1)],
        "answered by the corp group"
    );
    assert_eq!(lab.corp.queries_for("corp.example.test"), 1);
    assert_eq!(lab.upstream.queries_for("corp.example.test"), 0);

    let audited = query_udp(addr, "www.example.test", RecordType::TXT).await;
    assert_eq!(
        audited.metadata.response_code,
        ResponseCode::NoError,
        "audit takes no action"
    );
    assert_eq!(lab.upstream.queries_for("www.example.test"), 1);

    let mx = query_udp(addr, "www.example.test", RecordType::MX).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::Refused);

    let dropped = QueryBuilder::new("drop.example.test", RecordType::A).to_bytes();
    assert_eq!(
        send_udp_raw(addr, &dropped).await,
        None,
        "drop sends nothing"
    );

    let truncated = query_udp(addr, "tcp-only.example.test", RecordType::A).await;
    assert!(truncated.metadata.truncation && truncated.answers.is_empty());
    let over_tcp = query_tcp(addr, "tcp-only.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&over_tcp),
        [Ipv4Addr::new(192, 0, 2, 5)],
        "resolves over TCP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_transport_do_bit_org_and_source_address() {
    let lab = lab();
    let addr = lab.picket.addr;
    let udp = query_udp(addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&udp).len(), 1);
    let tcp = query_tcp(addr, "www.example.test", RecordType::A).await;
    assert!(
        tcp.answers.is_empty(),
        "dns.transport == \"tcp\" rule applies over TCP only"
    );

    let plain = query_udp(addr, "signed.example.test", RecordType::A).await;
    assert_ne!(blocked_by(&plain).map(|e| e.0), Some(15));
    let with_do = QueryBuilder::new("signed.example.test", RecordType::A)
        .dnssec_ok(true)
        .build();
    let with_do = send_udp(addr, &with_do).await.unwrap();
    assert_eq!(blocked_by(&with_do).map(|e| e.0), Some(15), "dns.edns.do");

    let org = query_udp(addr, "org.example.test", RecordType::A).await;
    assert_eq!(
        blocked_by(&org),
        Some((15, "blocked by rule acme/org-rule".into()))
    );

    // The same name from another organization's network: its own rules.
    let from_other = query_udp_from("127.0.5.7:0", addr, "www.example.test", RecordType::A).await;
    assert_eq!(
        ede(&from_other),
        Some((15, "blocked by rule other/src-rule".into())),
        "dns.src_ip"
    );
    let org_from_other =
        query_udp_from("127.0.5.7:0", addr, "org.example.test", RecordType::A).await;
    assert_eq!(
        org_from_other.metadata.response_code,
        ResponseCode::NXDomain,
        "upstream's own NXDOMAIN"
    );
    assert!(
        ede(&org_from_other).is_none(),
        "acme's rule does not apply to org other"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn response_phase_blocks_private_addresses_and_cname_targets() {
    let lab = lab();
    let addr = lab.picket.addr;
    let rebind = query_udp(addr, "rebind.example.test", RecordType::A).await;
    assert_eq!(
        rebind.metadata.response_code,
        ResponseCode::NXDomain,
        "public name, private address"
    );
    assert_eq!(ede(&rebind), Some((17, "filtered by rule rebind".into())));
    let home = query_udp(addr, "printer.home.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&home),
        [Ipv4Addr::new(192, 168, 1, 9)],
        "allowed private zone"
    );

    let cloaked = query_udp(addr, "shop.example.test", RecordType::A).await;
    assert_eq!(
        cloaked.metadata.response_code,
        ResponseCode::NXDomain,
        "CNAME cloaking"
    );
    assert_eq!(ede(&cloaked), Some((15, "blocked by rule acme/ads".into())));

    let cdn = query_udp(addr, "cdn.example.test", RecordType::A).await;
    assert_eq!(
        ede(&cdn),
        Some((15, "blocked by rule acme/cname-target".into())),
        "dns.response.cname"
    );

    // Applied on every serve, not baked into the cache: the cached answer
    // is still blocked, and another organization gets it unblocked.
    let again = query_udp(addr, "shop.example.test", RecordType::A).await;
    assert_eq!(again.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(lab.upstream.queries_for("shop.example.test"), 1);
    let unblocked = query_udp_from("127.0.5.8:0", addr, "shop.example.test", RecordType::A).await;
    assert_eq!(a_records(&unblocked), [Ipv4Addr::new(192, 0, 2, 66)]);
    assert_eq!(
        lab.upstream.queries_for("shop.example.test"),
        1,
        "one shared cache"
    );
}

/// A cache hit skips the response phase once that phase kept the entry's answer, but only for
/// the same organization, request verdict and policy: another organization's response rules
/// still apply to it, and so does a reloaded policy's new rule.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_answer_is_judged_again_for_another_organization_and_after_a_reload() {
    let lab = lab();
    let addr = lab.picket.addr;
    let public = [Ipv4Addr::new(192, 0, 2, 1)];
    // Kept by the response phase for org other (127.0.5.8: no rule reads its address or
    // transport), on the miss and on the hits that follow.
    for _ in 0..3 {
        let other = query_udp_from("127.0.5.8:0", addr, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&other), public);
    }
    let text = policy(lab.corp.addr());
    let blocking = text.replace(
        r#"{ "id": "allow-ok""#,
        r#"{ "id": "no-192-0-2-1", "expression": "dns.response.ip == 192.0.2.1", "action": "block" },
        { "id": "allow-ok""#,
    );
    std::fs::write(lab.dir.join("policy.json"), &blocking).unwrap();
    let shared = lab.picket.server.shared().clone();
    shared.reload_policy().expect("valid policy reloads");
    // acme's new response rule applies to the cached answer org other had kept.
    let acme = query_udp(addr, "www.example.test", RecordType::A).await;
    assert_eq!(
        ede(&acme),
        Some((15, "blocked by rule acme/no-192-0-2-1".into())),
        "acme's response rule on an answer org other kept"
    );
    for _ in 0..2 {
        let other = query_udp_from("127.0.5.8:0", addr, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&other), public, "org other has no such rule");
        let acme = query_udp(addr, "www.example.test", RecordType::A).await;
        assert!(
            acme.answers.is_empty(),
            "still blocked for acme after org other's hit"
        );
    }
    // Back to the first policy: the answer is served to acme again.
    std::fs::write(lab.dir.join("policy.json"), &text).unwrap();
    shared.reload_policy().expect("valid policy reloads");
    let acme = query_udp(addr, "www.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&acme),
        public,
        "the rule is gone after the reload"
    );
    assert_eq!(
        lab.upstream.queries_for("www.example.test"),
        1,
        "every answer came from the one cache entry"
    );
}

/// The organizations of [`a_passed_hit_is_judged_again_for_another_organization_a_reload_and_a_client_rule`],
/// with `global` as the global rules: none of their rules reads who asked.
fn passing_policy(global: &str) -> String {
    format!(
        r#"{{
  "global": {{ "rules": [
    {{ "id": "rebind", "expression": "dns.response.ip in {{10.0.0.0/8}}", "action": "block" }}{global}
  ] }},
  "organizations": [
    {{ "id": "calm", "networks": ["127.0.6.0/24"] }},
    {{ "id": "strict", "networks": ["127.0.7.0/24"], "rules": [
      {{ "id": "no-www", "expression": "dns.fqdn == \"www.example.test\"", "action": "block" }}
    ] }}
  ]
}}"#
    )
}

/// A cache hit that the whole policy passed (no rule decided it, the response phase kept the
/// answer) is served again without the policy, but only under the same policy, to the same
/// organization, and only while no rule reads who asked. Each query comes from a new port, so
/// both workers serve hits from their own fronts.
#[tokio::test(flavor = "multi_thread")]
async fn a_passed_hit_is_judged_again_for_another_organization_a_reload_and_a_client_rule() {
    let upstream = Authority::start(ZONE);
    let dir = dir_with("passed", &[("policy.json", &passing_policy(""))]);
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);
    let (addr, www) = (picket.addr, "www.example.test");
    let public = [Ipv4Addr::new(192, 0, 2, 1)];
    let ask =
        |from: &'static str, name: &'static str| query_udp_from(from, addr, name, RecordType::A);
    let blocked_by = |rule: &str| Some((15, format!("blocked by rule {rule}")));
    let shared = picket.server.shared().clone();
    let reload_with = |global_rule: &str| {
        std::fs::write(dir.join("policy.json"), passing_policy(global_rule)).unwrap();
        shared.reload_policy().expect("valid policy reloads");
    };
    for _ in 0..8 {
        assert_eq!(a_records(&ask("127.0.6.1:0", www).await), public, "calm");
    }
    for _ in 0..4 {
        let strict = ask("127.0.7.1:0", www).await;
        let why = "strict's rule on the entry calm's hits passed";
        assert_eq!(ede(&strict), blocked_by("strict/no-www"), "{why}");
        assert_eq!(a_records(&ask("127.0.6.1:0", www).await), public);
        let rebind = ask("127.0.6.1:0", "rebind.example.test").await;
        assert_eq!(ede(&rebind), blocked_by("rebind"), "every time");
    }

    reload_with(
        r#", { "id": "no-www-now", "expression": "dns.fqdn == \"www.example.test\"", "action": "block" }"#,
    );
    for _ in 0..4 {
        let calm = ask("127.0.6.1:0", www).await;
        let why = "the reloaded policy's rule on a hit passed before";
        assert_eq!(ede(&calm), blocked_by("no-www-now"), "{why}");
    }

    reload_with(
        r#", { "id": "not-for-2", "expression": "dns.src_ip == 127.0.6.2 and dns.fqdn == \"www.example.test\"", "action": "block" }"#,
    );
    for _ in 0..4 {
        assert_eq!(a_records(&ask("127.0.6.1:0", www).await), public);
        let two = ask("127.0.6.2:0", www).await;
        let why = "a rule on the address: .1's hits pass nothing for .2";
        assert_eq!(ede(&two), blocked_by("not-for-2"), "{why}");
    }
    assert_eq!(
        upstream.queries_for(www),
        1,
        "every answer came from one entry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blocklist_quick_start_blocks_for_everyone() {
    let upstream = Authority::start(ZONE);
    let dir = policy_dir("{}");
    let list = dir.join("block.txt");
    std::fs::write(&list, "ads.example.test\n").unwrap();
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::None;
    settings.blocklists = vec![list];
    let picket = start_picket_with(settings);
    let blocked = query_udp(picket.addr, "x.ads.example.test", RecordType::A).await;
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&blocked).map(|e| e.0), Some(15));
    let fine = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&fine).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load_loses_no_query_and_a_bad_policy_keeps_the_last_good_one() {
    let lab = lab();
    let addr = lab.picket.addr;
    query_udp(addr, "www.example.test", RecordType::A).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, answered) = (stop.clone(), sent.clone(), answered.clone());
        tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 2048];
            let mut id = 0u16;
            while !stop.load(Ordering::Relaxed) {
                id = id.wrapping_add(1);
                let q = QueryBuilder::new("www.example.test", RecordType::A)
                    .id(id)
                    .to_bytes();
                socket.send_to(&q, addr).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                if let Ok(Ok(len)) =
                    tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await
                {
                    if Message::from_vec(&buf[..len]).is_ok_and(|m| m.metadata.id == id) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let text = policy(lab.corp.addr());
    let shared = lab.picket.server.shared().clone();
    for round in 0..10 {
        // Alternate between the policy with and without a new block rule.
        let changed = if round % 2 == 0 {
            text.replace(
                    r#"{ "id": "allow-ok""#,
                    r#"{ "id": "new", "expression": "dns.fqdn == \"new.example.test\"", "action": "block" },
        { "id": "allow-ok""#,
                )
        } else {
            text.clone()
        };
        std::fs::write(lab.dir.join("policy.json"), &changed).unwrap();
        shared.reload_policy().expect("valid policy reloads");
        let new = query_udp(addr, "new.example.test", RecordType::A).await;
        let blocked = ede(&new).is_some();
        assert_eq!(
            blocked,
            round % 2 == 0,
            "round {round}: the reloaded policy is in force"
        );
    }
    std::fs::write(
        lab.dir.join("policy.json"),
        "{ \"organizations\": [ { \"id\": ",
    )
    .unwrap();
    let err = shared.reload_policy().expect_err("broken JSON is refused");
    assert!(
        err.to_string().contains("policy.json"),
        "the error names the file: {err}"
    );
    let still = query_udp(addr, "x.ads.example.test", RecordType::A).await;
    assert_eq!(
        ede(&still).map(|e| e.0),
        Some(15),
        "the last good policy stays in force"
    );
    // Keep the load going long enough to mean something on a slow machine.
    while sent.load(Ordering::Relaxed) < 200 {
        real_sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    assert!(sent > 50, "load ran: {sent}");
    assert_eq!(sent, answered, "no query lost during reloads");
    // The directory watcher may have reloaded some of these changes too.
    assert!(shared.policy_reloads.ok.load(Ordering::Relaxed) >= 10);
    assert!(shared.policy_reloads.failed.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_directory_is_watched_for_changes() {
    let lab = lab();
    let before = query_udp(lab.picket.addr, "new.example.test", RecordType::A).await;
    assert!(ede(&before).is_none());
    let changed = policy(lab.corp.addr()).replace(
        r#"{ "id": "allow-ok""#,
        r#"{ "id": "new", "expression": "dns.fqdn == \"new.example.test\"", "action": "block" },
        { "id": "allow-ok""#,
    );
    std::fs::write(lab.dir.join("policy.json"), changed).unwrap();
    // The watcher polls every 2 s; 30 s leaves room for a debug build's reload on a busy machine.
    for _ in 0..120 {
        real_sleep(Duration::from_millis(250)).await;
        let after = query_udp(lab.picket.addr, "new.example.test", RecordType::A).await;
        if ede(&after).is_some() {
            return;
        }
    }
    panic!("the changed policy file was not picked up within 30 s");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "drives the dig binary (Debian dnsutils); run by .ci/run"]
async fn dig_shows_ede_15_on_a_blocked_name() {
    let lab = lab();
    let text = dig(lab.picket.addr, &["x.ads.example.test"]).await;
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert!(
        text.contains("EDE: 15 (Blocked): (blocked by rule acme/ads)"),
        "{text}"
    );
}

/// A response-phase `drop` sends nothing at all: no datagram over UDP (not
/// an empty one), no frame over TCP (not a zero-length one), whether the
/// answer came from the upstream or from the cache; the TCP connection
/// goes on answering the client's other queries.
#[tokio::test(flavor = "multi_thread")]
async fn response_phase_drop_sends_nothing_and_tcp_stays_usable() {
    let upstream = Authority::start(&format!(
        "{ZONE}\ndropped.example.test 300 IN A 192.0.2.13\n"
    ));
    let dir = policy_dir(
        r#"{ "global": { "rules": [
          { "id": "drop-answer", "expression": "dns.response.ip in {192.0.2.13}", "action": "drop" }
        ] } }"#,
    );
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);
    let addr = picket.addr;

    let dropped = QueryBuilder::new("dropped.example.test", RecordType::A).to_bytes();
    for fetched in ["from the upstream", "from the cache"] {
        assert_eq!(
            send_udp_raw(addr, &dropped).await,
            None,
            "UDP: no datagram for an answer {fetched}"
        );
    }
    assert_eq!(upstream.queries_for("dropped.example.test"), 1);

    // A miss on a fresh name (answered from the upstream, then dropped), a
    // cached one (dropped at once), then a name that is answered.
    let upstream_zone = format!("{ZONE}\nfresh.example.test 300 IN A 192.0.2.13\n");
    upstream.set_records(&upstream_zone);
    let tcp = TcpClient::connect(addr).await;
    tcp.send_query("fresh.example.test", RecordType::A).await;
    tcp.send_query("dropped.example.test", RecordType::A).await;
    let www = tcp.send_query("www.example.test", RecordType::A).await;
    let answer = tcp.recv_raw().await.expect("the answer to www");
    let answer = Message::from_vec(&answer).expect("a DNS message, not an empty frame");
    assert_eq!(answer.metadata.id, www);
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        tcp.next_frame(RAW_TIMEOUT).await,
        Frame::Timeout,
        "TCP: no frame for the dropped answers"
    );
    assert_eq!(upstream.queries_for("fresh.example.test"), 1);
    let again = tcp.send_query("www.example.test", RecordType::AAAA).await;
    let answer = tcp.recv().await.expect("the connection still answers");
    assert_eq!(answer.metadata.id, again);
    let _ = std::fs::remove_dir_all(&dir);
}
