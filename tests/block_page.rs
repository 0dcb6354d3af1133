//! The block page (issue 20): a `"block_page": true` rule answers A/AAAA with the block page's
//! address over real DNS, and the page that address serves, over real HTTP and HTTPS, names
//! the domain, the rule, the organization, the time and the reason, in the browser's language,
//! with everything from outside escaped; and in a real browser (headless Chromium, ignored
//! without it).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ::picket::config::{BlockPageSettings, PolicySource, Settings, TlsSource};
use common::browser::{dump_dom, screenshot, text_of};
use common::process::run_picket;
use common::tls::TestCa;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

const ZONE: &str = r#"
example.       3600 IN SOA ns1.example. hostmaster.example. 1 7200 900 1209600 60
www.example.    300 IN A   192.0.2.1
"#;

/// Loopback clients are Acme; its gambling rule asks for the block page, with a reason; a
/// global rule shows a hostile name and reason; `plain.example` is blocked without a page.
const POLICY: &str = r#"{
  "global": { "rules": [
    { "id": "evil", "name": "<b>Evil</b> & \"co\"", "expression": "dns.fqdn == \"evil.example\"",
      "action": "block", "block_page": true, "block_reason": "<script>alert(1)</script>" }
  ] },
  "organizations": [ {
    "id": "acme", "name": "Acme Corp", "networks": ["127.0.0.0/8"],
    "rules": [
      { "id": "gambling", "name": "No gambling", "expression": "dns.fqdn in {\"blocked.example\" \"casino.example\"}",
        "action": "block", "block_page": true, "mode": "nxdomain",
        "block_reason": "Gambling sites are not allowed on the office network." },
      { "id": "plain", "name": "Plain block", "expression": "dns.fqdn == \"plain.example\"", "action": "block" }
    ]
  } ]
}"#;

const REASON: &str = "Gambling sites are not allowed on the office network.";

/// Settings with the policy, metrics, and the block page as `page` says (None: none).
fn settings(upstream: SocketAddr, page: Option<BlockPageSettings>) -> Settings {
    let mut settings = test_settings(&[upstream]);
    settings.policies = PolicySource::Dir(dir_with("policy", &[("policy.json", POLICY)]));
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    settings.block_page = page;
    settings
}

/// The block page on HTTP at 127.0.0.1 (port picked), answered as `addresses` (empty: the
/// listen address).
fn http_page(addresses: &[&str]) -> BlockPageSettings {
    let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
    BlockPageSettings::new(Some("127.0.0.1:0".parse().unwrap()), None, addresses).unwrap()
}

/// The upstream and Picket with the policy and the block page as `page` says.
fn start(page: Option<BlockPageSettings>) -> (Authority, Picket) {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(settings(upstream.addr(), page));
    (upstream, picket)
}

fn page_addr(picket: &Picket) -> SocketAddr {
    picket
        .server
        .block_page_addrs()
        .http
        .expect("the block page listens")
}

#[tokio::test]
async fn a_block_page_rule_answers_addresses_with_the_block_page() {
    let (upstream, picket) = start(Some(http_page(&["192.0.2.10", "2001:db8::10"])));

    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(a_records(&a), [Ipv4Addr::new(192, 0, 2, 10)]);
    assert_eq!(
        ede(&a),
        Some((15, "blocked by rule acme/gambling".to_string()))
    );
    let aaaa = query_tcp(picket.addr, "casino.example", RecordType::AAAA).await;
    assert_eq!(
        aaaa_records(&aaaa),
        ["2001:db8::10".parse::<Ipv6Addr>().unwrap()]
    );
    // Other types keep the rule's mode.
    let txt = query_udp(picket.addr, "blocked.example", RecordType::TXT).await;
    assert_eq!(rcode(&txt), ResponseCode::NXDomain);
    // A rule without "block_page" is unchanged by a block page.
    let plain = query_udp(picket.addr, "plain.example", RecordType::A).await;
    assert_eq!(rcode(&plain), ResponseCode::NXDomain);
    assert!(a_records(&plain).is_empty());
    assert_eq!(upstream.queries_for("blocked.example"), 0);
}

#[tokio::test]
async fn without_an_address_of_the_family_the_answer_is_nodata() {
    // Answered as the listen address: 127.0.0.1, no IPv6 one.
    let (_upstream, picket) = start(Some(http_page(&[])));
    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    assert_eq!(a_records(&a), [Ipv4Addr::LOCALHOST]);
    let aaaa = query_udp(picket.addr, "blocked.example", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError);
    assert!(aaaa_records(&aaaa).is_empty());
    assert!(soa_in_authority(&aaaa).is_some(), "NODATA with an SOA");
}

#[tokio::test]
async fn without_a_block_page_the_rule_answers_with_its_mode() {
    let (_upstream, picket) = start(None);
    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NXDomain);
    assert!(a_records(&a).is_empty());
    assert!(picket.server.block_page_addrs().http.is_none());
}

#[test]
fn a_wildcard_listen_address_needs_the_address_answers_carry() {
    let wildcard = Some("0.0.0.0:80".parse().unwrap());
    let err = BlockPageSettings::new(wildcard, None, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("--block-page-address"), "{err}");
    let ok = BlockPageSettings::new(wildcard, None, vec!["192.0.2.10".parse().unwrap()]).unwrap();
    assert_eq!(ok.addresses, ["192.0.2.10".parse::<IpAddr>().unwrap()]);
}

#[tokio::test]
async fn the_page_names_the_domain_rule_organization_time_and_reason() {
    let (_upstream, picket) = start(Some(http_page(&[])));
    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    assert_eq!(a_records(&a), [Ipv4Addr::LOCALHOST]);

    let page = http_get_as(page_addr(&picket), "blocked.example", "/some/path?q=1", &[]).await;
    assert_eq!(page.status, 403);
    let csp = page.html_csp();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    let body = &page.body;
    for shown in [
        "<strong id=\"domain\">blocked.example</strong>",
        "<span id=\"rule-name\">No gambling</span>",
        "<code id=\"rule-id\">acme/gambling</code>",
        "<dd id=\"org\">Acme Corp</dd>",
        REASON,
        " UTC</time>",
    ] {
        assert!(body.contains(shown), "{shown} not in {body}");
    }
    assert!(
        !body.contains("src=") && !body.contains("http"),
        "nothing from another host"
    );

    // A blocked name this client never asked about: the policy, evaluated again.
    let again = http_get_as(page_addr(&picket), "casino.example:80", "/", &[]).await;
    assert!(again.body.contains("acme/gambling") && again.body.contains("casino.example"));
    // A name nothing blocks: the page, without a rule.
    let unknown = http_get_as(page_addr(&picket), "www.example", "/", &[]).await;
    assert_eq!(unknown.status, 403);
    assert!(unknown.body.contains("id=\"unknown\"") && !unknown.body.contains("rule-id"));

    let admin = picket.server.admin_addr().unwrap();
    let metrics = http_get(admin, "/metrics").await.body;
    for (source, count) in [("answer", 1), ("policy", 1), ("unknown", 1)] {
        let line = format!(
            "picket_block_page_requests_total{{scheme=\"http\",source=\"{source}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}

#[tokio::test]
async fn accept_language_picks_the_language() {
    let (_upstream, picket) = start(Some(http_page(&[])));
    let addr = page_addr(&picket);
    for (accept, lang, heading) in [
        ("pt-BR,pt;q=0.9,en;q=0.8", "pt", "Este site está bloqueado"),
        ("ja, de;q=0.5, fr;q=0.7", "fr", "Ce site est bloqué"),
        ("es-419", "es", "Este sitio está bloqueado"),
        ("de-CH", "de", "Diese Website ist gesperrt"),
        ("ja, zh-CN", "en", "This site is blocked"),
    ] {
        let header = format!("Accept-Language: {accept}");
        let page = http_get_as(addr, "blocked.example", "/", &[&header]).await;
        assert!(
            page.body.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
        assert!(page.body.contains(heading), "{accept}: {}", page.body);
        assert_eq!(page.header("content-language"), Some(lang));
        // The reason is the operator's, in whatever language they wrote it.
        assert!(page.body.contains(REASON));
    }
    let plain = http_get_as(addr, "blocked.example", "/", &[]).await;
    assert!(plain.body.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn a_hostile_host_rule_name_and_reason_are_escaped() {
    let (_upstream, picket) = start(Some(http_page(&[])));
    let addr = page_addr(&picket);
    let page = http_get_as(addr, "<script>alert(1)</script>\"'&", "/", &[]).await;
    assert_eq!(page.status, 403);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(page
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));

    let evil = query_udp(picket.addr, "evil.example", RecordType::A).await;
    assert_eq!(a_records(&evil), [Ipv4Addr::LOCALHOST]);
    let page = http_get_as(addr, "evil.example", "/", &[]).await;
    for raw in ["<b>Evil", "<script>", "\"co\""] {
        assert!(!page.body.contains(raw), "{raw} in {}", page.body);
    }
    assert!(page
        .body
        .contains("&lt;b&gt;Evil&lt;/b&gt; &amp; &quot;co&quot;"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn a_head_past_the_bound_is_refused_and_a_silent_client_is_let_go() {
    let upstream = Authority::start(ZONE);
    let mut settings = settings(upstream.addr(), Some(http_page(&[])));
    settings.limits.block_page_header_timeout = std::time::Duration::from_millis(200);
    let picket = start_picket_with(settings);
    let addr = page_addr(&picket);
    let huge = format!("X-Padding: {}", "a".repeat(16 << 10));
    let refused = http_get_as(addr, "blocked.example", "/", &[&huge]).await;
    assert_eq!(refused.status, 431);

    // Half a request head, then nothing: the server closes the connection.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: blocked.exa")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        slow.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the server let a silent client go");
    // And still serves everyone else.
    let page = http_get_as(addr, "blocked.example", "/", &[]).await;
    assert_eq!(page.status, 403);
}

#[tokio::test]
async fn https_serves_the_page_with_the_operators_certificate() {
    let upstream = Authority::start(ZONE);
    let ca = TestCa::new();
    let issued = ca.issue(&["blocked.example"]);
    let dir = dir_with(
        "block-page-tls",
        &[
            ("cert.pem", &issued.chain_pem),
            ("key.pem", &issued.key_pem),
        ],
    );
    let page =
        BlockPageSettings::new(None, Some("127.0.0.1:0".parse().unwrap()), Vec::new()).unwrap();
    let mut settings = settings(upstream.addr(), Some(page));
    settings.tls = Some(TlsSource::Files {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    });
    let picket = start_picket_with(settings);
    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    assert_eq!(a_records(&a), [Ipv4Addr::LOCALHOST]);

    let addr = picket
        .server
        .block_page_addrs()
        .https
        .expect("HTTPS listens");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(ca.client_config(&[b"http/1.1"]));
    let name = ServerName::try_from("blocked.example").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("a client that trusts the operator's CA verifies the certificate");
    let page = http_exchange(tls, "blocked.example", "/", &["Accept-Language: fr"]).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("acme/gambling") && page.body.contains(REASON));
    assert!(page.body.contains("<html lang=\"fr\">"));

    let metrics = http_get(picket.server.admin_addr().unwrap(), "/metrics")
        .await
        .body;
    let line = "picket_block_page_requests_total{scheme=\"https\",source=\"answer\"} 1";
    assert!(metrics.contains(line), "{metrics}");

    // A client that does not trust the CA refuses the certificate: the warning browsers show.
    let other = TestCa::new();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("blocked.example").unwrap();
    let refused = TlsConnector::from(other.client_config(&[b"http/1.1"]))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium (package chromium); run by .ci/run"]
async fn a_browser_sent_to_the_block_page_shows_why() {
    let (_upstream, picket) = start(Some(http_page(&[])));
    // The browser asks Picket over DNS as a stub would, and gets the block page's address.
    let a = query_udp(picket.addr, "blocked.example", RecordType::A).await;
    let [ip] = a_records(&a)[..] else {
        panic!("one A record: {a:?}")
    };
    let addr = page_addr(&picket);
    let rules = format!(
        "--host-resolver-rules=MAP blocked.example {ip}:{}",
        addr.port()
    );
    let url = "http://blocked.example/";
    let dom = dump_dom(&[&rules, "--accept-lang=pt-BR,pt"], url).await;
    assert_eq!(text_of(&dom, "domain"), "blocked.example", "{dom}");
    assert_eq!(text_of(&dom, "heading"), "Este site está bloqueado");
    assert_eq!(text_of(&dom, "rule-name"), "No gambling");
    assert_eq!(text_of(&dom, "rule-id"), "acme/gambling");
    assert_eq!(text_of(&dom, "org"), "Acme Corp");
    assert_eq!(text_of(&dom, "reason"), REASON);
    // Kept at target/tmp/block-page.png for people to look at.
    screenshot("block-page.png", (1024, 768), &[&rules], url).await;
}

#[test]
fn explain_says_a_block_page_answers_addresses_and_shows_the_reason() {
    let dir = dir_with("policy", &[("policy.json", POLICY)]);
    let policies = dir.to_str().unwrap();
    let (code, out) = run_picket(&["explain", "blocked.example", "A", "--policies", policies]);
    assert_eq!(code, 0, "{out}");
    let answer = out.lines().find(|l| l.starts_with("answer:")).expect(&out);
    assert!(answer.starts_with("answer: NXDOMAIN"), "{answer}");
    assert!(
        answer.contains("when Picket serves a block page (--block-page, --block-page-tls): A records with its address instead"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("the page shows the reason \"{REASON}\"")),
        "{answer}"
    );
    let (_, txt) = run_picket(&["explain", "blocked.example", "TXT", "--policies", policies]);
    assert!(
        txt.contains("a block page (--block-page) changes only A and AAAA answers"),
        "{txt}"
    );
    let (_, plain) = run_picket(&["explain", "plain.example", "A", "--policies", policies]);
    assert!(!plain.contains("block page"), "{plain}");
}

#[test]
fn block_page_flags_that_cannot_work_are_refused_naming_the_fix() {
    let (code, out) = run_picket(&["serve", "--block-page", "0.0.0.0:0", "--no-policy"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--block-page-address IP"), "{out}");
    let (code, out) = run_picket(&["serve", "--block-page-address", "192.0.2.10"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("add --block-page ADDR"), "{out}");
    let (code, out) = run_picket(&[
        "serve",
        "--block-page-tls",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("--block-page-tls needs a certificate"),
        "{out}"
    );
}
