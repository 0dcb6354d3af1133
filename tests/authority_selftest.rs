//! Tests of the test harness itself (tests/common), over real loopback UDP/TCP.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::zone::{Zones, EXAMPLE_TEST_APEX};
use common::*;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// The zones under test: example.test's apex and www
/// ([`EXAMPLE_TEST_APEX`]), then these.
fn zone() -> String {
    [EXAMPLE_TEST_APEX, ZONE_REST].concat()
}

const ZONE_REST: &str = r#"
alias.example.test      120    CNAME www.example.test
chain.example.test       60 IN CNAME alias.other.test.
dangling.example.test    60 IN CNAME missing.other.test
away.example.test        60 IN CNAME www.elsewhere.invalid
loop1.example.test       60 IN CNAME loop2.example.test
loop2.example.test       60 IN CNAME loop1.example.test
mail.example.test       300 IN MX    10 mx1.example.test
txt.example.test        300 IN TXT   "hello world" "second; string"
_dns._udp.example.test  300 IN SRV   0 5 53 ns1.example.test
deep.ent.example.test   300 IN A     192.0.2.9 ; ent.example.test is an empty non-terminal
sub.example.test        300 IN NS    ns.sub.example.test
ns.sub.example.test     300 IN A     192.0.2.77

; other.test: negative TTL = min(600, 30) = 30
other.test   600 IN SOA ns1.other.test hostmaster.other.test 1 7200 900 1209600 30
alias.other.test  60 IN CNAME target.other.test
target.other.test 45 IN A     198.51.100.7

; low.test: negative TTL = min(10, 300) = 10
low.test      10 IN SOA ns1.low.test hostmaster.low.test 1 7200 900 1209600 300

2.0.192.in-addr.arpa     3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
1.2.0.192.in-addr.arpa    300 IN PTR www.example.test
"#;

/// A zone whose A answer (40 records) cannot fit in 512 bytes.
fn big_zone() -> String {
    let mut zone = String::from("big.test 300 SOA ns.big.test h.big.test 1 2 3 4 5\n");
    for i in 1..=40 {
        zone.push_str(&format!("many.big.test 300 A 10.0.0.{i}\n"));
    }
    zone
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

#[tokio::test]
async fn serves_each_record_type() {
    let auth = Authority::start(&zone());
    let at = auth.addr();

    let a = query_udp(at, "www.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&a),
        [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
    );
    assert_eq!(a.answers[0].ttl, 300);

    let aaaa = query_udp(at, "www.example.test", RecordType::AAAA).await;
    assert_eq!(
        aaaa_records(&aaaa),
        ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
    );

    let cname = query_udp(at, "alias.example.test", RecordType::CNAME).await;
    assert_eq!(cname.answers.len(), 1, "a CNAME query is not chased");
    assert!(matches!(&cname.answers[0].data, RData::CNAME(t) if t.0 == name("www.example.test.")));

    let ns = query_udp(at, "example.test", RecordType::NS).await;
    assert!(matches!(&ns.answers[0].data, RData::NS(t) if t.0 == name("ns1.example.test.")));

    let soa = query_udp(at, "example.test", RecordType::SOA).await;
    assert!(matches!(&soa.answers[0].data, RData::SOA(s) if s.minimum == 60 && s.serial == 1));

    let mx = query_udp(at, "mail.example.test", RecordType::MX).await;
    assert!(matches!(&mx.answers[0].data,
        RData::MX(m) if m.preference == 10 && m.exchange == name("mx1.example.test.")));

    let txt = query_udp(at, "txt.example.test", RecordType::TXT).await;
    let RData::TXT(strings) = &txt.answers[0].data else {
        panic!("{txt:?}")
    };
    assert_eq!(
        &*strings.txt_data,
        [&b"hello world"[..], &b"second; string"[..]].map(Box::from)
    );

    let srv = query_udp(at, "_dns._udp.example.test", RecordType::SRV).await;
    assert!(matches!(&srv.answers[0].data,
        RData::SRV(s) if (s.priority, s.weight, s.port) == (0, 5, 53)
            && s.target == name("ns1.example.test.")));

    let ptr = query_udp(at, "1.2.0.192.in-addr.arpa", RecordType::PTR).await;
    assert!(matches!(&ptr.answers[0].data, RData::PTR(p) if p.0 == name("www.example.test.")));

    let caa = query_udp(at, "example.test", RecordType::CAA).await;
    assert!(matches!(&caa.answers[0].data,
        RData::CAA(c) if c.tag == "issue" && c.value == b"ca.example.net"));

    let any = query_udp(at, "www.example.test", RecordType::ANY).await;
    assert_eq!(any.answers.len(), 3);
}

#[tokio::test]
async fn header_question_and_edns_are_echoed() {
    let auth = Authority::start(&zone());
    let query = QueryBuilder::new("WwW.ExAmple.TEST", RecordType::A)
        .id(0xBEEF)
        .rd(false)
        .cd(true)
        .dnssec_ok(true)
        .build();
    let answer = send_udp(auth.addr(), &query).await.unwrap();
    assert_eq!(answer.metadata.id, 0xBEEF);
    assert!(answer.metadata.authoritative);
    assert!(!answer.metadata.recursion_desired);
    assert!(!answer.metadata.recursion_available);
    assert!(answer.metadata.checking_disabled);
    assert!(
        answer.queries[0].name().eq_case(&name("WwW.ExAmple.TEST.")),
        "question echoed exactly"
    );
    assert!(
        answer.answers[0].name.eq_case(&name("WwW.ExAmple.TEST.")),
        "owner spelled as asked"
    );
    let edns = answer.edns.as_ref().expect("OPT echoed");
    assert_eq!(edns.max_payload(), 1232);
    assert!(edns.flags().dnssec_ok);

    let plain = QueryBuilder::new("www.example.test", RecordType::A)
        .no_edns()
        .build();
    let answer = send_udp(auth.addr(), &plain).await.unwrap();
    assert!(answer.metadata.recursion_desired, "RD copied");
    assert!(answer.edns.is_none(), "no OPT without one in the query");
}

#[tokio::test]
async fn cname_chains_are_followed_across_zones() {
    let auth = Authority::start(&zone());
    let at = auth.addr();

    let alias = query_udp(at, "alias.example.test", RecordType::A).await;
    assert_eq!(alias.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&alias).len(), 2);
    assert_eq!(min_ttl(&alias), Some(120));

    let chain = query_udp(at, "chain.example.test", RecordType::A).await;
    let owners: Vec<String> = chain.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(
        owners,
        [
            "chain.example.test.",
            "alias.other.test.",
            "target.other.test."
        ]
    );
    assert_eq!(a_records(&chain), [Ipv4Addr::new(198, 51, 100, 7)]);
    assert_eq!(min_ttl(&chain), Some(45));

    // RFC 6604: the rcode and SOA belong to the last name in the chain.
    let dangling = query_udp(at, "dangling.example.test", RecordType::A).await;
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(dangling.answers.len(), 1);
    assert_eq!(
        soa_in_authority(&dangling).unwrap().name,
        name("other.test.")
    );

    let away = query_udp(at, "away.example.test", RecordType::A).await;
    assert_eq!(away.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        away.answers.len(),
        1,
        "a target outside our zones is left to the resolver"
    );
    assert!(away.authorities.is_empty());

    let lp = query_udp(at, "loop1.example.test", RecordType::A).await;
    assert_eq!(lp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lp.answers.len(),
        2,
        "each CNAME of the loop once, then stop"
    );
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let auth = Authority::start(&zone());
    let at = auth.addr();

    let nx = query_udp(at, "nope.example.test", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    let soa = soa_in_authority(&nx).expect("SOA in authority");
    assert_eq!((soa.name.clone(), soa.ttl), (name("example.test."), 60));

    let nodata = query_udp(at, "www.example.test", RecordType::TXT).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_in_authority(&nodata).unwrap().ttl, 60);

    let ent = query_udp(at, "ent.example.test", RecordType::A).await;
    assert_eq!(
        ent.metadata.response_code,
        ResponseCode::NoError,
        "empty non-terminal"
    );
    assert!(soa_in_authority(&ent).is_some());

    let other = query_udp(at, "nope.other.test", RecordType::A).await;
    assert_eq!(min_ttl(&other), Some(30));
    let low = query_udp(at, "nope.low.test", RecordType::A).await;
    assert_eq!(min_ttl(&low), Some(10), "SOA TTL below MINIMUM wins");

    let outside = query_udp(at, "www.example.com", RecordType::A).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    assert!(!outside.metadata.authoritative);
    assert!(outside.answers.is_empty() && outside.authorities.is_empty());
}

#[tokio::test]
async fn zone_cuts_give_referrals() {
    let auth = Authority::start(&zone());
    let referral = query_udp(auth.addr(), "www.sub.example.test", RecordType::A).await;
    assert_eq!(referral.metadata.response_code, ResponseCode::NoError);
    assert!(!referral.metadata.authoritative);
    assert!(referral.answers.is_empty());
    assert_eq!(referral.authorities[0].record_type(), RecordType::NS);
    assert_eq!(
        referral.additionals[0].name,
        name("ns.sub.example.test."),
        "glue"
    );
}

#[tokio::test]
async fn odd_queries_get_the_right_error() {
    let auth = Authority::start(&zone());
    let at = auth.addr();

    let v1 = QueryBuilder::new("www.example.test", RecordType::A)
        .edns_version(1)
        .build();
    let answer = send_udp(at, &v1).await.unwrap();
    // 16 reads back as BADSIG, which shares the number with BADVERS.
    assert_eq!(u16::from(answer.metadata.response_code), 16, "BADVERS");
    assert_eq!(answer.edns.unwrap().version(), 0);

    let notify = QueryBuilder::new("example.test", RecordType::SOA)
        .op_code(OpCode::Notify)
        .build();
    let answer = send_udp(at, &notify).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(answer.metadata.op_code, OpCode::Notify);

    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01];
    garbage.extend_from_slice(&[0xff; 10]);
    let reply = send_udp_raw(at, &garbage)
        .await
        .expect("FORMERR for a bad body");
    assert_eq!(&reply[..2], [0x12, 0x34]);
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR");

    assert_eq!(
        send_udp_raw(at, &[1, 2, 3]).await,
        None,
        "no header, no answer"
    );
    assert_eq!(auth.queries(), 4);
}

#[tokio::test]
async fn udp_truncates_and_tcp_gives_the_full_answer() {
    let auth = Authority::start(&big_zone());
    let at = auth.addr();

    let small = QueryBuilder::new("many.big.test", RecordType::A)
        .no_edns()
        .build();
    let truncated = send_udp(at, &small).await.unwrap();
    assert!(truncated.metadata.truncation);
    assert!(truncated.answers.is_empty());
    assert_eq!(truncated.queries.len(), 1);

    let large = QueryBuilder::new("many.big.test", RecordType::A)
        .payload(4096)
        .build();
    let full = send_udp(at, &large).await.unwrap();
    assert!(!full.metadata.truncation);
    assert_eq!(a_records(&full).len(), 40);

    let tcp = query_tcp(at, "many.big.test", RecordType::A).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(a_records(&tcp).len(), 40);

    auth.set_udp_limit(Some(100));
    let forced = send_udp(at, &large).await.unwrap();
    assert!(
        forced.metadata.truncation,
        "limit applies whatever the EDNS size"
    );
    assert!(forced.edns.is_some());
    assert_eq!(
        a_records(&query_tcp(at, "many.big.test", RecordType::A).await).len(),
        40
    );
    auth.set_udp_limit(None);
    assert!(!send_udp(at, &large).await.unwrap().metadata.truncation);
}

#[tokio::test]
async fn tcp_pipelines_and_answers_out_of_order() {
    let auth = Authority::start(&zone());
    auth.set_delay_for("www.example.test", Duration::from_millis(300));
    let client = TcpClient::connect(auth.addr()).await;
    let slow = client.send_query("www.example.test", RecordType::A).await;
    let mail = client.send_query("mail.example.test", RecordType::MX).await;
    let txt = client.send_query("txt.example.test", RecordType::TXT).await;

    let answers = client.recv_n(3).await;
    let ids: Vec<u16> = answers.iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&mail) && ids.contains(&txt));
    assert_eq!(ids[2], slow, "the delayed answer comes last");
    assert_eq!(auth.tcp_queries(), 3);

    client.shutdown_write().await;
    assert_eq!(
        client.next_frame(Duration::from_secs(2)).await,
        Frame::Closed
    );
}

#[tokio::test]
async fn tcp_accepts_raw_and_split_frames() {
    let auth = Authority::start(&zone());
    let client = TcpClient::connect(auth.addr()).await;
    let query = QueryBuilder::new("www.example.test", RecordType::A)
        .id(7)
        .to_bytes();
    let mut frame = u16::try_from(query.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&query);
    client.send_bytes(&frame[..1]).await;
    real_sleep(Duration::from_millis(50)).await;
    client.send_bytes(&frame[1..]).await;
    assert_eq!(client.recv().await.unwrap().metadata.id, 7);

    client.send_frame(&query).await;
    assert_eq!(a_records(&client.recv().await.unwrap()).len(), 2);
}

#[tokio::test]
async fn silent_mode_counts_but_never_answers() {
    let auth = Authority::start(&zone());
    auth.set_silent(true);
    let query = QueryBuilder::new("www.example.test", RecordType::A).to_bytes();
    assert_eq!(send_udp_raw(auth.addr(), &query).await, None);
    assert_eq!(auth.queries(), 1);

    let client = TcpClient::connect(auth.addr()).await;
    client.send_frame(&query).await;
    assert_eq!(
        client.next_frame(Duration::from_millis(500)).await,
        Frame::Timeout
    );
    assert_eq!((auth.queries(), auth.tcp_queries()), (2, 1));

    auth.set_silent(false);
    assert!(send_udp_raw(auth.addr(), &query).await.is_some());
}

#[tokio::test]
async fn delay_holds_answers_without_blocking_others() {
    let auth = Authority::start(&zone());
    auth.set_delay(Duration::from_millis(500));
    let started = Instant::now();
    let (a, b) = tokio::join!(
        query_udp(auth.addr(), "www.example.test", RecordType::A),
        query_tcp(auth.addr(), "mail.example.test", RecordType::MX),
    );
    let elapsed = started.elapsed();
    assert_eq!(a_records(&a).len(), 2);
    assert_eq!(b.answers.len(), 1);
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    // Serialised answers would take 1000 ms; leave room for a loaded machine.
    let limit = Duration::from_millis(950);
    assert!(elapsed < limit, "queries were serialised: {elapsed:?}");
}

#[tokio::test]
async fn forge_mode_sends_two_forgeries_before_the_answer() {
    let auth = Authority::start(&zone());
    auth.set_forge(true);
    let query = QueryBuilder::new("www.example.test", RecordType::A)
        .id(0x1234)
        .to_bytes();
    let datagrams = send_udp_collect(auth.addr(), &query, Duration::from_millis(500)).await;
    let packets: Vec<Message> = datagrams
        .iter()
        .map(|d| Message::from_vec(d).unwrap())
        .collect();
    assert_eq!(packets.len(), 3);

    assert_ne!(packets[0].metadata.id, 0x1234, "forgery 1: wrong ID");
    assert_eq!(packets[0].queries[0].name(), &name("www.example.test."));
    assert_eq!(a_records(&packets[0]), [FORGED_V4]);

    assert_eq!(
        packets[1].metadata.id, 0x1234,
        "forgery 2: right ID, other question"
    );
    assert_ne!(packets[1].queries[0].name(), &name("www.example.test."));
    assert_eq!(a_records(&packets[1]), [FORGED_V4]);

    assert_eq!(packets[2].metadata.id, 0x1234, "then the genuine answer");
    assert_eq!(a_records(&packets[2]).len(), 2);
    assert!(!a_records(&packets[2]).contains(&FORGED_V4));

    let tcp = query_tcp(auth.addr(), "www.example.test", RecordType::AAAA).await;
    assert_eq!(
        aaaa_records(&tcp),
        ["2001:db8::1".parse::<Ipv6Addr>().unwrap()],
        "TCP: no forgery"
    );
}

#[tokio::test]
async fn counters_track_queries_by_name() {
    let auth = Authority::start(&zone());
    let at = auth.addr();
    query_udp(at, "www.example.test", RecordType::A).await;
    query_udp(at, "WWW.Example.Test.", RecordType::AAAA).await;
    query_tcp(at, "mail.example.test", RecordType::MX).await;
    let with_do = QueryBuilder::new("txt.example.test", RecordType::TXT)
        .dnssec_ok(true)
        .build();
    send_udp(at, &with_do).await.unwrap();

    assert_eq!(auth.queries(), 4);
    assert_eq!((auth.udp_queries(), auth.tcp_queries()), (3, 1));
    assert_eq!(auth.queries_for("www.example.test"), 2);
    assert_eq!(auth.queries_for("Mail.Example.Test."), 1);
    assert_eq!(auth.queries_for("nope.example.test"), 0);
    let last = auth.last_query().unwrap();
    assert!(last.edns.unwrap().flags().dnssec_ok);
    assert_eq!(auth.received().len(), 4);

    auth.reset_counts();
    assert_eq!(
        (auth.queries(), auth.queries_for("www.example.test")),
        (0, 0)
    );
    assert!(auth.last_query().is_none());
}

#[tokio::test]
async fn servfail_ede_and_new_records_apply_while_running() {
    let auth = Authority::start(&zone());
    let at = auth.addr();

    auth.set_servfail(true);
    let failed = query_udp(at, "www.example.test", RecordType::A).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    assert!(failed.answers.is_empty());
    auth.set_servfail(false);

    auth.set_ede(Some((15, "blocked by test".to_string())));
    let blocked = query_udp(at, "www.example.test", RecordType::A).await;
    assert_eq!(ede(&blocked), Some((15, "blocked by test".to_string())));
    let plain = QueryBuilder::new("www.example.test", RecordType::A)
        .no_edns()
        .build();
    assert_eq!(
        ede(&send_udp(at, &plain).await.unwrap()),
        None,
        "EDE needs an OPT"
    );
    auth.set_ede(None);
    assert_eq!(
        ede(&query_udp(at, "www.example.test", RecordType::A).await),
        None
    );

    auth.set_records("example.test 60 SOA ns h 1 2 3 4 5\nwww.example.test 5 A 203.0.113.9");
    let replaced = query_udp(at, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&replaced), [Ipv4Addr::new(203, 0, 113, 9)]);
    let gone = query_udp(at, "mail.example.test", RecordType::MX).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test(start_paused = true)]
async fn works_under_a_paused_clock() {
    let auth = Authority::start(&zone());
    auth.set_delay(Duration::from_millis(200));
    let answer = query_udp(auth.addr(), "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer).len(), 2);
}

#[tokio::test]
async fn stops_when_dropped() {
    let auth = Authority::start(&zone());
    let at = auth.addr();
    drop(auth);
    let query = QueryBuilder::new("www.example.test", RecordType::A).to_bytes();
    assert_eq!(send_udp_raw(at, &query).await, None);
    assert!(tokio::net::TcpStream::connect(at).await.is_err());
}

#[test]
fn bad_zone_text_is_reported_with_its_line() {
    let err =
        Zones::parse("example.test 60 SOA ns h 1 2 3 4 5\nwww.example.test A 1.2.3.4").unwrap_err();
    assert!(err.contains("line 2"), "{err}");
    let err = Zones::parse("www.example.test 60 A 192.0.2.1").unwrap_err();
    assert!(err.contains("outside every zone"), "{err}");
    let err = Zones::parse("x.test 60 A 999.0.0.1").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
}
