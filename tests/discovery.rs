//! What browsers and stub resolvers ask a resolver about itself: DDR's
//! `_dns.resolver.arpa` SVCB (RFC 9461/9462), which advertises the
//! encrypted endpoints, and Firefox's canary `use-application-dns.net`,
//! which says whether the network filters DNS. Plain UDP queries to
//! Picket in-process; the `#[ignore]` test reads the answer with dig.

mod common;

use std::net::Ipv4Addr;

use common::{
    a_records, dig, dir_with, ede, query_udp, rcode, start_picket_with, temp_dir, test_settings,
    Authority, Picket,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue, SVCB};
use hickory_proto::rr::{Name, RData, RecordType};
use picket::config::{PolicySource, Settings, TlsSource};

/// The canary's address in the test authority: what Picket forwards when
/// it does not filter.
const CANARY_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn authority() -> Authority {
    Authority::start(
        "use-application-dns.net 3600 IN SOA ns.use-application-dns.net h.use-application-dns.net 1 7200 900 1209600 60
         use-application-dns.net  300 IN A   192.0.2.53
         resolver.arpa           3600 IN SOA ns.resolver.arpa h.resolver.arpa 1 7200 900 1209600 60
         _dns.resolver.arpa       300 IN A   192.0.2.99",
    )
}

fn start(upstream: &Authority, adjust: impl FnOnce(&mut Settings)) -> Picket {
    let mut settings = test_settings(&[upstream.addr()]);
    adjust(&mut settings);
    start_picket_with(settings)
}

fn with_encrypted_listeners(s: &mut Settings) {
    s.doh = vec!["127.0.0.1:0".parse().unwrap()];
    s.dot = vec!["127.0.0.1:0".parse().unwrap()];
    s.tls = Some(TlsSource::SelfSigned {
        names: vec!["dns.example.test".into()],
    });
}

/// Picket with encrypted listeners, and its DoH and DoT ports.
fn start_encrypted(upstream: &Authority) -> (Picket, u16, u16) {
    let picket = start(upstream, with_encrypted_listeners);
    let doh = picket.server.doh_addrs()[0].port();
    let dot = picket.server.dot_addrs()[0].port();
    (picket, doh, dot)
}

// ---------------------------------------------------------------- DDR

#[tokio::test]
async fn ddr_advertises_doh_and_dot_under_the_certificate_name() {
    let upstream = authority();
    let (picket, doh_port, dot_port) = start_encrypted(&upstream);
    let answer = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::SVCB).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert!(
        answer.metadata.authoritative,
        "resolver.arpa is ours to answer"
    );
    let records: Vec<&SVCB> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SVCB(svcb) => svcb,
            other => panic!("not an SVCB record: {other:?}"),
        })
        .collect();
    assert_eq!(records.len(), 2, "{answer:?}");
    let target = Name::from_ascii("dns.example.test.").unwrap();
    for record in &records {
        assert_eq!(record.target_name, target, "the certificate's name");
        assert!(record.svc_priority > 0, "ServiceMode");
    }
    let (doh, dot) = (records[0], records[1]);
    assert_eq!(alpn(doh), ["h2"]);
    assert_eq!(
        param(doh, SvcParamKey::Port),
        Some(&SvcParamValue::Port(doh_port))
    );
    assert_eq!(ipv4hint(doh), [Ipv4Addr::LOCALHOST]);
    assert_eq!(dohpath(doh).as_deref(), Some("/dns-query{?dns}"));
    assert_eq!(alpn(dot), ["dot"]);
    assert_eq!(
        param(dot, SvcParamKey::Port),
        Some(&SvcParamValue::Port(dot_port))
    );
    assert_eq!(ipv4hint(dot), [Ipv4Addr::LOCALHOST]);
    assert_eq!(dohpath(dot), None);
    assert_eq!(
        upstream.queries_for("_dns.resolver.arpa"),
        0,
        "never forwarded"
    );

    // Other types of the name: no data, still answered here.
    let a = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert!(a.answers.is_empty(), "{a:?}");
    assert_eq!(upstream.queries_for("_dns.resolver.arpa"), 0);
}

#[tokio::test]
async fn ddr_follows_a_reloaded_certificate_to_its_new_name() {
    let upstream = authority();
    let dir = temp_dir("ddr-cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let write = |name: &str| {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    };
    write("one.example.test");
    let picket = start(&upstream, |s| {
        with_encrypted_listeners(s);
        s.tls = Some(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    });
    let targets = |answer: &hickory_proto::op::Message| -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SVCB(svcb) => svcb.target_name.to_ascii(),
                other => panic!("not an SVCB record: {other:?}"),
            })
            .collect()
    };
    let answer = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::SVCB).await;
    assert_eq!(targets(&answer), ["one.example.test.", "one.example.test."]);
    write("two.example.test");
    picket.server.reload_certificate().unwrap();
    let answer = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::SVCB).await;
    assert_eq!(targets(&answer), ["two.example.test.", "two.example.test."]);
    // A broken file keeps the certificate, and its name.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(picket.server.reload_certificate().is_err());
    let answer = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::SVCB).await;
    assert_eq!(targets(&answer), ["two.example.test.", "two.example.test."]);
}

/// The rest of `resolver.arpa` is answered here too: the apex exists with no data, other names
/// do not exist, and the upstream (which serves the zone with other data) is never asked.
#[tokio::test]
async fn resolver_arpa_is_answered_here_and_never_forwarded() {
    let upstream = authority();
    let picket = start(&upstream, |_| {});
    for (name, rtype, code) in [
        ("resolver.arpa", RecordType::SOA, ResponseCode::NoError),
        ("resolver.arpa", RecordType::SVCB, ResponseCode::NoError),
        ("Resolver.ARPA", RecordType::A, ResponseCode::NoError),
        (
            "x._dns.resolver.arpa",
            RecordType::SVCB,
            ResponseCode::NXDomain,
        ),
        ("www.resolver.arpa", RecordType::A, ResponseCode::NXDomain),
    ] {
        let answer = query_udp(picket.addr, name, rtype).await;
        assert_eq!(rcode(&answer), code, "{name} {rtype}");
        assert!(answer.answers.is_empty(), "{name} {rtype}: {answer:?}");
        assert!(answer.metadata.authoritative, "{name} {rtype}");
    }
    // A name that merely ends in the zone's letters is an ordinary name.
    let other = query_udp(picket.addr, "notresolver.arpa", RecordType::A).await;
    assert_eq!(upstream.queries_for("notresolver.arpa"), 1, "{other:?}");
    assert_eq!(
        upstream.queries(),
        1,
        "nothing of resolver.arpa was forwarded"
    );
}

#[tokio::test]
async fn ddr_without_a_certificate_is_nodata() {
    let upstream = authority();
    let picket = start(&upstream, |_| {});
    let answer = query_udp(picket.addr, "_dns.resolver.arpa", RecordType::SVCB).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert!(
        answer.answers.is_empty(),
        "nothing encrypted to designate: {answer:?}"
    );
    assert_eq!(
        upstream.queries_for("_dns.resolver.arpa"),
        0,
        "never forwarded"
    );
}

fn param(record: &SVCB, key: SvcParamKey) -> Option<&SvcParamValue> {
    record
        .svc_params
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn alpn(record: &SVCB) -> Vec<String> {
    match param(record, SvcParamKey::Alpn) {
        Some(SvcParamValue::Alpn(alpn)) => alpn.0.clone(),
        other => panic!("alpn is {other:?}"),
    }
}

fn ipv4hint(record: &SVCB) -> Vec<Ipv4Addr> {
    match param(record, SvcParamKey::Ipv4Hint) {
        Some(SvcParamValue::Ipv4Hint(hint)) => hint.0.iter().map(|a| a.0).collect(),
        other => panic!("ipv4hint is {other:?}"),
    }
}

/// `dohpath` (key 7, RFC 9461 §5), which hickory keeps as an unknown key.
fn dohpath(record: &SVCB) -> Option<String> {
    match param(record, SvcParamKey::Unknown(7))? {
        SvcParamValue::Unknown(value) => Some(String::from_utf8(value.0.clone()).unwrap()),
        other => panic!("dohpath is {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs dig (Debian dnsutils); run by .ci/run"]
async fn dig_shows_the_ddr_svcb() {
    let upstream = authority();
    let (picket, doh_port, dot_port) = start_encrypted(&upstream);
    let out = dig(picket.addr, &["+norec", "_dns.resolver.arpa", "SVCB"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa"), "{out}");
    // dig 9.18 shows dohpath by its number (key7).
    assert!(
        out.contains(&format!(
            "SVCB\t1 dns.example.test. alpn=\"h2\" port={doh_port} ipv4hint=127.0.0.1 key7=\"/dns-query{{?dns}}\""
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "SVCB\t2 dns.example.test. alpn=\"dot\" port={dot_port} ipv4hint=127.0.0.1"
        )),
        "{out}"
    );
}

// ---------------------------------------------------------------- canary

/// A change to the settings that turns on some filtering.
type Adjust<'a> = Box<dyn FnOnce(&mut Settings) + 'a>;

#[tokio::test]
async fn canary_is_nxdomain_for_every_type_while_something_filters() {
    let upstream = authority();
    let blocklist = dir_with("canary-list", &[("list.txt", "ads.example\n")]);
    let policies = dir_with(
        "canary-policy",
        &[(
            "policy.json",
            r#"{ "global": { "rules": [
                 { "id": "nothing", "expression": "dns.fqdn == \"nothing.example\"", "action": "block" } ] } }"#,
        )],
    );
    let filters: [(&str, Adjust<'_>); 3] = [
        (
            "--rebind-protection",
            Box::new(|s| s.rebind_protection = true),
        ),
        (
            "--blocklist",
            Box::new(|s| s.blocklists = vec![blocklist.join("list.txt")]),
        ),
        (
            "--policies",
            Box::new(|s| s.policies = PolicySource::Dir(policies.clone())),
        ),
    ];
    for (flag, adjust) in filters {
        let picket = start(&upstream, adjust);
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::HTTPS,
            RecordType::TXT,
        ] {
            let answer = query_udp(picket.addr, "use-application-dns.net", rtype).await;
            assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{flag} {rtype}");
            assert!(answer.answers.is_empty());
            assert_eq!(ede(&answer).map(|(code, _)| code), Some(17), "Filtered");
        }
        assert_eq!(upstream.queries_for("use-application-dns.net"), 0, "{flag}");
    }
}

#[tokio::test]
async fn canary_resolves_normally_with_the_neutral_default() {
    let upstream = authority();
    let picket = start(&upstream, |_| {});
    let answer = query_udp(picket.addr, "use-application-dns.net", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(a_records(&answer), [CANARY_ADDRESS]);
    assert_eq!(upstream.queries_for("use-application-dns.net"), 1);
}
