//! Picket as an anycast edge node (issue 9), without root: NSID, CHAOS
//! identity, the DNS health name, answers from the queried address on a
//! wildcard listener, and the graceful drain (in-process and as the binary
//! under SIGTERM).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::process::{assert_mentions, run_picket};
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RData, RecordType};

const ZONE: &str = "
example.test.     3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
www.example.test.  300 IN A   192.0.2.1
slow.example.test  300 IN A   192.0.2.9
";

const IDENTITY: &[u8] = b"edge-test-1";

fn edge_settings(upstream: SocketAddr) -> ::picket::config::Settings {
    let mut settings = test_settings(&[upstream]);
    settings.nsid = Some(IDENTITY.to_vec());
    settings.health_name = Some("health.picket".into());
    settings
}

fn nsid(message: &Message) -> Option<Vec<u8>> {
    match message.edns.as_ref()?.option(EdnsCode::NSID)? {
        EdnsOption::NSID(payload) => Some(payload.as_ref().to_vec()),
        _ => None,
    }
}

fn txt_strings(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn chaos(name: &str) -> Message {
    let mut query = QueryBuilder::new(name, RecordType::TXT).nsid().build();
    query.queries[0].set_query_class(DNSClass::CH);
    query
}

#[tokio::test(flavor = "multi_thread")]
async fn nsid_on_every_answer_that_asks_for_it() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(edge_settings(upstream.addr()));
    let asking = |name: &str, rtype| QueryBuilder::new(name, rtype).nsid().build();
    // A miss (forwarded), then a cache hit, NXDOMAIN, a local answer (ANY),
    // and a refusal: all carry our NSID, over UDP and TCP.
    for query in [
        asking("www.example.test", RecordType::A),
        asking("www.example.test", RecordType::A),
        asking("nope.example.test", RecordType::A),
        asking("www.example.test", RecordType::ANY),
        asking("example.test", RecordType::AXFR),
    ] {
        let udp = send_udp(picket.addr, &query).await.expect("UDP answer");
        assert_eq!(nsid(&udp).as_deref(), Some(IDENTITY), "{:?}", query.queries);
        let tcp = send_tcp(picket.addr, &query).await.expect("TCP answer");
        assert_eq!(nsid(&tcp).as_deref(), Some(IDENTITY), "{:?}", query.queries);
    }
    // Not asked: not sent.
    let plain = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert!(plain.edns.is_some());
    assert_eq!(nsid(&plain), None);
    let no_edns = QueryBuilder::new("www.example.test", RecordType::A)
        .no_edns()
        .build();
    let answer = send_udp(picket.addr, &no_edns).await.unwrap();
    assert!(answer.edns.is_none());
}

/// The COOKIE option of a message (RFC 7873), which hickory carries as an unknown option.
fn cookie(message: &Message) -> Option<Vec<u8>> {
    match message.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

fn with_cookie(name: &str, rtype: RecordType, cookie: &[u8]) -> Message {
    let option = EdnsOption::Unknown(10, cookie.to_vec());
    QueryBuilder::new(name, rtype).option(option).build()
}

/// A query with a client cookie gets it back with a server cookie in RFC 9018's form (version
/// 1, the time, a hash), on every kind of answer and over both transports; the server cookie
/// sent back is answered as well, and a malformed COOKIE option is a FORMERR (RFC 7873 §5.2.2).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_cookie_gets_a_server_cookie_on_every_answer() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(edge_settings(upstream.addr()));
    let client = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut learnt = Vec::new();
    // A miss (forwarded), a cache hit, NXDOMAIN, a local answer (ANY) and a refusal.
    for (name, rtype) in [
        ("www.example.test", RecordType::A),
        ("www.example.test", RecordType::A),
        ("nope.example.test", RecordType::A),
        ("www.example.test", RecordType::ANY),
        ("example.test", RecordType::AXFR),
    ] {
        let query = with_cookie(name, rtype, &client);
        let udp = send_udp(picket.addr, &query).await.expect("UDP answer");
        let tcp = send_tcp(picket.addr, &query).await.expect("TCP answer");
        for answer in [udp, tcp] {
            let got = cookie(&answer).unwrap_or_else(|| panic!("{name} {rtype}: {answer:?}"));
            assert_eq!(
                got.len(),
                24,
                "{name} {rtype}: 8 bytes of ours after the client's 8"
            );
            assert_eq!(got[..8], client, "{name} {rtype}: the client cookie echoed");
            assert_eq!(
                got[8..12],
                [1, 0, 0, 0],
                "{name} {rtype}: version 1, reserved"
            );
            let made = u32::from_be_bytes(got[12..16].try_into().unwrap());
            assert!(
                u64::from(made).abs_diff(now) < 600,
                "{name} {rtype}: made now"
            );
            learnt = got;
        }
    }
    let learnt = with_cookie("www.example.test", RecordType::A, &learnt);
    let again = send_udp(picket.addr, &learnt).await.expect("UDP answer");
    assert_eq!(rcode(&again), ResponseCode::NoError);
    assert_eq!(
        cookie(&again).map(|c| c[..8].to_vec()),
        Some(client.to_vec())
    );

    // A client cookie that is not 8 bytes, a server cookie shorter than 8 or longer than 32.
    for len in [5, 8 + 7, 8 + 33] {
        let bad = with_cookie("www.example.test", RecordType::A, &vec![7; len]);
        let answer = send_udp(picket.addr, &bad).await.expect("an answer");
        assert_eq!(
            rcode(&answer),
            ResponseCode::FormErr,
            "a COOKIE of {len} bytes"
        );
    }
    let plain = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(cookie(&plain), None, "no cookie asked, none sent");
}

/// Sends `count` copies of `query` (IDs 0 to count - 1) from `socket` and counts the answers
/// that are not truncated, and how long it took from the first query sent to the last answer.
async fn burst(
    socket: &tokio::net::UdpSocket,
    server: SocketAddr,
    query: &Message,
    count: u16,
) -> (usize, Duration) {
    let started = Instant::now();
    for id in 0..count {
        let mut copy = query.clone();
        copy.metadata.id = id;
        socket
            .send_to(&copy.to_vec().unwrap(), server)
            .await
            .unwrap();
    }
    let (mut answered, mut last) = (0, started);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        last = Instant::now();
        if !Message::from_vec(&buf[..len]).unwrap().metadata.truncation {
            answered += 1;
        }
    }
    (answered, last - started)
}

/// A server cookie proves the client's address (no forger could have read it), so a client
/// that sends back the one Picket gave it is answered past its rate limit; an altered cookie,
/// or the same cookie from another address, earns nothing (RFC 7873 §5.2.4, RFC 9018 §4.3).
#[tokio::test(flavor = "multi_thread")]
async fn a_valid_server_cookie_is_answered_past_the_rate_limit() {
    let upstream = Authority::start(ZONE);
    let mut settings = edge_settings(upstream.addr());
    settings.rate_limit = Some(::picket::admission::RateLimitSettings {
        qps: 20,
        burst: 0,
        slip: 2,
    });
    let picket = start_picket_with(settings);
    query_udp(picket.addr, "www.example.test", RecordType::A).await; // warm the cache
    let socket = tokio::net::UdpSocket::bind("127.0.3.1:0").await.unwrap();
    let learnt = learn_cookie(&socket, picket.addr).await;

    let valid = with_cookie("www.example.test", RecordType::A, &learnt);
    let (answered, _) = burst(&socket, picket.addr, &valid, 200).await;
    assert_eq!(
        answered, 200,
        "every query with its valid cookie is answered"
    );

    // The bound of tests/hardening.rs: 20 q/s over the burst's own duration, and the first.
    let limited = |took: Duration| 20 + (20.0 * took.as_secs_f64()).ceil() as usize + 1;
    let mut altered = learnt.clone();
    *altered.last_mut().unwrap() ^= 1;
    let forged = with_cookie("www.example.test", RecordType::A, &altered);
    let (answered, took) = burst(&socket, picket.addr, &forged, 200).await;
    assert!(
        answered <= limited(took),
        "an altered cookie is limited: {answered} answered in {took:?}"
    );
    let elsewhere = tokio::net::UdpSocket::bind("127.0.5.1:0").await.unwrap();
    let (answered, took) = burst(&elsewhere, picket.addr, &valid, 200).await;
    assert!(
        answered <= limited(took),
        "another address's cookie is limited: {answered} answered in {took:?}"
    );
}

/// The client and server cookie `server` answers a query with a client cookie alone from
/// `socket` with.
async fn learn_cookie(socket: &tokio::net::UdpSocket, server: SocketAddr) -> Vec<u8> {
    let client = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
    let learning = with_cookie("www.example.test", RecordType::A, &client);
    socket
        .send_to(&learning.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    cookie(&Message::from_vec(&buf[..len]).unwrap()).expect("a server cookie")
}

/// `picket serve` with a rate limit of 20 q/s and `--cookie-secret-file secrets`, its log
/// in `log`.
fn node_with_secrets(
    upstream: SocketAddr,
    secrets: &std::path::Path,
    log: &std::path::Path,
) -> PicketProcess {
    let log = std::fs::File::create(log).unwrap();
    let mut options = PicketProcess::options();
    options
        .upstream(upstream)
        .dnssec_off()
        .flag("--rate-limit", "20")
        .flag("--cookie-secret-file", secrets);
    options.spawn_with(|command| {
        command.stderr(log);
    })
}

/// Waits until `log` holds `line` (at most 10 s).
async fn wait_for_log(log: &std::path::Path, line: &str) {
    for _ in 0..200 {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains(line)) {
            return;
        }
        real_sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no `{line}` in {}:\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A fleet shares its cookie secrets (`--cookie-secret-file`), so a cookie one node made earns
/// its client the rate-limit exemption on another; a node reads the file again on SIGHUP, keeps
/// its secrets when the new file is bad, and will not start on a bad one.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_sharing_a_cookie_secret_file_accept_each_others_cookies() {
    const FIRST: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";
    const OTHER: &str = "00112233445566778899aabbccddeeff";
    let upstream = Authority::start(ZONE);
    let dir = dir_with(
        "cookie-secrets",
        &[
            ("a.secrets", &format!("{FIRST}\n")),
            ("b.secrets", &format!("{OTHER}\n")),
        ],
    );
    let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
    let a = node_with_secrets(upstream.addr(), &dir.join("a.secrets"), &a_log);
    let b = node_with_secrets(upstream.addr(), &dir.join("b.secrets"), &b_log);
    wait_until_answering(a.addr).await;
    wait_until_answering(b.addr).await;
    query_udp(b.addr, "www.example.test", RecordType::A).await; // warm B's cache

    let socket = tokio::net::UdpSocket::bind("127.0.3.2:0").await.unwrap();
    let from_a = with_cookie(
        "www.example.test",
        RecordType::A,
        &learn_cookie(&socket, a.addr).await,
    );
    let limited = |took: Duration| 20 + (20.0 * took.as_secs_f64()).ceil() as usize + 1;
    let (answered, took) = burst(&socket, b.addr, &from_a, 200).await;
    assert!(
        answered <= limited(took),
        "B does not know A's secret yet: {answered} answered in {took:?}"
    );

    // The rollover's first step on B: A's secret second, B's own still making its cookies.
    std::fs::write(dir.join("b.secrets"), format!("{OTHER}\n{FIRST}\n")).unwrap();
    b.signal(libc::SIGHUP);
    wait_for_log(&b_log, "cookie secrets reloaded").await;
    let (answered, _) = burst(&socket, b.addr, &from_a, 200).await;
    assert_eq!(
        answered, 200,
        "B answers every query with A's cookie past the limit"
    );

    std::fs::write(dir.join("b.secrets"), "not a secret\n").unwrap();
    b.signal(libc::SIGHUP);
    wait_for_log(&b_log, "cookie secrets not reloaded").await;
    assert!(std::fs::read_to_string(&b_log)
        .unwrap()
        .contains("b.secrets:1: `not a secret` is not a cookie secret"));
    let (answered, _) = burst(&socket, b.addr, &from_a, 200).await;
    assert_eq!(answered, 200, "a bad file leaves the secrets in use");

    let (code, said) = run_picket(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cookie-secret-file",
        &dir.join("b.secrets").display().to_string(),
    ]);
    assert_ne!(code, 0, "{said}");
    assert_mentions(
        "serve with a bad secret file",
        &said,
        &[
            "b.secrets:1: `not a secret` is not a cookie secret",
            "openssl rand -hex 16",
        ],
    );
}

/// dig sends a client cookie by default and says whether the answer's cookie echoes it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "drives the dig binary (Debian dnsutils); run by .ci/run"]
async fn dig_calls_the_server_cookie_good() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(edge_settings(upstream.addr()));
    let text = dig(picket.addr, &["www.example.test"]).await;
    assert!(text.contains("status: NOERROR"), "{text}");
    let line = text.lines().find(|l| l.starts_with("; COOKIE: "));
    let line = line.unwrap_or_else(|| panic!("no COOKIE line: {text}"));
    assert!(line.ends_with("(good)"), "{line}");
    // The client's 16 hex digits, then ours: 16 more.
    assert_eq!(
        line.split_whitespace().nth(2).map(str::len),
        Some(48),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_identity_and_version() {
    let upstream = Authority::start(ZONE);
    let mut settings = edge_settings(upstream.addr());
    settings.version_text = Some("picket-test".into());
    let picket = start_picket_with(settings);
    for name in ["id.server", "hostname.bind", "ID.Server."] {
        let answer = send_udp(picket.addr, &chaos(name)).await.unwrap();
        assert_eq!(rcode(&answer), ResponseCode::NoError, "{name}");
        assert!(answer.metadata.authoritative, "{name}");
        assert_eq!(txt_strings(&answer), ["edge-test-1"], "{name}");
        assert_eq!(answer.answers[0].dns_class, DNSClass::CH);
        assert_eq!(answer.answers[0].ttl, 0);
        assert_eq!(nsid(&answer).as_deref(), Some(IDENTITY));
    }
    let version = send_tcp(picket.addr, &chaos("version.bind")).await.unwrap();
    assert_eq!(txt_strings(&version), ["picket-test"]);
    for name in ["authors.bind", "www.example.test"] {
        let answer = send_udp(picket.addr, &chaos(name)).await.unwrap();
        assert_eq!(rcode(&answer), ResponseCode::Refused, "{name}");
    }
    let mut hesiod = QueryBuilder::new("id.server", RecordType::TXT).build();
    hesiod.queries[0].set_query_class(DNSClass::HS);
    let answer = send_udp(picket.addr, &hesiod).await.unwrap();
    assert_eq!(rcode(&answer), ResponseCode::Refused);
    assert_eq!(upstream.queries(), 0, "CHAOS never leaves Picket");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_off_refuses_chaos_and_sends_no_nsid() {
    let upstream = Authority::start(ZONE);
    let mut settings = edge_settings(upstream.addr());
    settings.nsid = None;
    let picket = start_picket_with(settings);
    for name in [
        "id.server",
        "hostname.bind",
        "version.bind",
        "version.server",
    ] {
        let answer = send_udp(picket.addr, &chaos(name)).await.unwrap();
        assert_eq!(rcode(&answer), ResponseCode::Refused, "{name}");
        assert_eq!(nsid(&answer), None, "{name}");
    }
    let query = QueryBuilder::new("www.example.test", RecordType::A)
        .nsid()
        .build();
    let answer = send_udp(picket.addr, &query).await.unwrap();
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(nsid(&answer), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_name_answers_locally_while_ready() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(edge_settings(upstream.addr()));
    let a = query_udp(picket.addr, "HeAlTh.PiCkEt.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(a_records(&a), [Ipv4Addr::LOCALHOST]);
    assert_eq!(a.answers[0].ttl, 0);
    let txt = query_tcp(picket.addr, "health.picket", RecordType::TXT).await;
    assert_eq!(txt_strings(&txt), ["ok"]);
    let aaaa = query_udp(picket.addr, "health.picket", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    // Names under it are ordinary names.
    let _ = query_udp(picket.addr, "x.health.picket", RecordType::A).await;
    assert_eq!(upstream.queries_for("health.picket"), 0, "never forwarded");
    assert_eq!(upstream.queries_for("x.health.picket"), 1);

    picket.server.shared().readiness.set_draining();
    let draining = query_udp(picket.addr, "health.picket", RecordType::A).await;
    assert_eq!(rcode(&draining), ResponseCode::ServFail);
    assert_eq!(ede(&draining), Some((14, "draining".into())));
    // Everything else is still answered while draining.
    let www = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&www), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_name_fails_without_a_working_upstream() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(edge_settings(upstream.addr()));
    assert!(picket.server.shared().ready().is_ok());
    upstream.set_silent(true);
    for i in 0..2 {
        let answer = query_udp(picket.addr, &format!("n{i}.example.test"), RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail);
    }
    let health = query_udp(picket.addr, "health.picket", RecordType::A).await;
    assert_eq!(rcode(&health), ResponseCode::ServFail);
    assert_eq!(ede(&health), Some((14, "no upstream".into())));
    upstream.set_silent(false);
    let _ = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    let health = query_udp(picket.addr, "health.picket", RecordType::A).await;
    assert_eq!(a_records(&health), [Ipv4Addr::LOCALHOST]);
}

/// A wildcard listener answers from the address the query was sent to: all
/// of 127/8 is local, so a query to 127.0.0.2 must be answered from
/// 127.0.0.2, not from 127.0.0.1 (what the kernel would pick).
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_listener_answers_from_the_queried_address() {
    let upstream = Authority::start(ZONE);
    let mut settings = edge_settings(upstream.addr());
    settings.listen = vec!["0.0.0.0:0".parse().unwrap(), "[::]:0".parse().unwrap()];
    let picket = start_picket_with(settings);
    let port = picket.server.local_addrs()[0].port();
    let v6_port = picket.server.local_addrs()[1].port();
    let targets: [(IpAddr, u16); 4] = [
        (Ipv4Addr::new(127, 0, 0, 2).into(), port),
        (Ipv4Addr::new(127, 0, 0, 53).into(), port),
        (Ipv4Addr::LOCALHOST.into(), port),
        ("::1".parse().unwrap(), v6_port),
    ];
    for (ip, port) in targets {
        let target = SocketAddr::new(ip, port);
        let bind: SocketAddr = if ip.is_ipv4() {
            "127.0.0.1:0".parse().unwrap()
        } else {
            "[::1]:0".parse().unwrap()
        };
        // Unconnected, so an answer from the wrong address is seen, not filtered.
        let socket = unconnected_udp(bind);
        for (name, rtype) in [
            ("health.picket", RecordType::A),
            ("www.example.test", RecordType::A),
        ] {
            let query = QueryBuilder::new(name, rtype).build();
            socket.send_to(&query.to_vec().unwrap(), target).unwrap();
            let mut buf = [0u8; 1500];
            let (len, from) = socket.recv_from(&mut buf).expect("an answer");
            assert_eq!(
                from, target,
                "answer to {target} for {name} came from {from}"
            );
            let answer = Message::from_vec(&buf[..len]).unwrap();
            assert_eq!(answer.metadata.id, query.metadata.id);
            assert_eq!(rcode(&answer), ResponseCode::NoError);
        }
        // TCP needs nothing special: the accepted socket is bound to it.
        let tcp = query_tcp(target, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&tcp), [Ipv4Addr::new(192, 0, 2, 1)]);
    }
}

/// A burst to a wildcard listener, sent to two of its addresses before any
/// answer is read, is answered in full and each answer comes from the address
/// its query went to (the answers leave in batches, several to a message).
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_listener_answers_a_burst_from_each_queried_address() {
    let upstream = Authority::start(ZONE);
    let mut settings = edge_settings(upstream.addr());
    settings.listen = vec!["0.0.0.0:0".parse().unwrap()];
    let picket = start_picket_with(settings);
    let port = picket.server.local_addrs()[0].port();
    let targets = [
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port)),
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 53), port)),
    ];
    // Cached first, so that the burst's answers are all of one size.
    let _ = query_udp(targets[0], "www.example.test", RecordType::A).await;
    let socket = unconnected_udp("127.0.0.1:0".parse().unwrap());
    let mut expected = std::collections::HashMap::new();
    for n in 0..40u16 {
        let target = targets[usize::from(n % 2)];
        let query = QueryBuilder::new("www.example.test", RecordType::A)
            .id(1000 + n)
            .build();
        expected.insert(query.metadata.id, target);
        socket.send_to(&query.to_vec().unwrap(), target).unwrap();
    }
    let mut buf = [0u8; 1500];
    for _ in 0..40 {
        let (len, from) = socket.recv_from(&mut buf).expect("every query answered");
        let answer = Message::from_vec(&buf[..len]).unwrap();
        let target = expected
            .remove(&answer.metadata.id)
            .expect("an answer to a query of the burst, once");
        assert_eq!(
            from, target,
            "answer came from {from}, its query went to {target}"
        );
        assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    }
}

/// In-process drain: queries keep being answered through the grace period,
/// queries waiting for the upstream when the listeners close are still
/// answered (UDP and TCP), and afterwards nothing listens.
#[tokio::test(flavor = "multi_thread")]
async fn drain_answers_through_grace_and_finishes_in_flight() {
    let upstream = Authority::start(ZONE);
    upstream.set_delay_for("slow.example.test", Duration::from_millis(700));
    let mut settings = edge_settings(upstream.addr());
    settings.drain.grace = Duration::from_millis(400);
    settings.forwarder.attempt_timeout = Duration::from_secs(2);
    settings.forwarder.total_timeout = Duration::from_secs(3);
    let picket = start_picket_with(settings);
    let addr = picket.addr;
    let _ = query_udp(addr, "www.example.test", RecordType::A).await;

    let shared = picket.server.shared().clone();
    let drained =
        tokio::task::spawn(async move { picket.server.drain(std::future::pending()).await });
    // Sent 100 ms before the listeners close; answered about 600 ms after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slow_udp = tokio::spawn(query_udp(addr, "slow.example.test", RecordType::A));
    let tcp = TcpClient::connect(addr).await;
    tcp.send_query("slow.example.test", RecordType::AAAA).await;
    // During the grace period: answered, and not ready.
    let www = query_udp(addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&www), [Ipv4Addr::new(192, 0, 2, 1)]);
    let health = query_udp(addr, "health.picket", RecordType::A).await;
    assert_eq!(rcode(&health), ResponseCode::ServFail);
    assert!(shared.readiness.is_draining());

    let slow = slow_udp.await.unwrap();
    assert_eq!(a_records(&slow), [Ipv4Addr::new(192, 0, 2, 9)]);
    let answer = tcp.recv().await.expect("TCP answer finished after close");
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert!(shared.drain.is_closing());
    let left = drained.await.unwrap();
    assert_eq!(left, 0, "nothing cut off");
    assert!(send_udp_raw(
        addr,
        &QueryBuilder::new("www.example.test", RecordType::A).to_bytes()
    )
    .await
    .is_none());
}

/// The binary under SIGTERM: the hook runs, queries sent during the grace
/// period are answered (the health name says SERVFAIL), the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_exits_zero() {
    let upstream = Authority::start(ZONE);
    let dir = temp_dir("drain");
    let marker = dir.join("hook-ran");
    let mut picket = PicketProcess::options()
        .upstream(upstream.addr())
        .dnssec_off()
        .threads(2)
        .flag("--health-name", "health.picket.")
        .flag("--drain-grace", "1s")
        .flag("--log-level", "warn")
        .flag(
            "--drain-hook",
            format!("echo drained > {}", marker.display()),
        )
        .spawn_with(|c| {
            c.stdout(Stdio::null());
        });
    let addr = picket.addr;
    let health = QueryBuilder::new("health.picket", RecordType::A).to_bytes();
    let started = Instant::now();
    while send_udp_raw(addr, &health).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "picket did not start"
        );
        real_sleep(Duration::from_millis(50)).await;
    }

    picket.signal(libc::SIGTERM);
    let term = Instant::now();
    let mut answered = 0;
    while term.elapsed() < Duration::from_millis(800) {
        let name = format!("q{answered}.example.test");
        let answer = query_udp(addr, &name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{name}");
        answered += 1;
        real_sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answered >= 10,
        "only {answered} queries in the grace period"
    );
    let health = query_udp(addr, "health.picket", RecordType::A).await;
    assert_eq!(rcode(&health), ResponseCode::ServFail);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "drained\n");

    let status = loop {
        if let Some(status) = picket.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(8),
            "picket did not exit"
        );
        real_sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        term.elapsed() >= Duration::from_secs(1),
        "exited before the grace period ended"
    );
    let _ = std::fs::remove_dir_all(dir);
}
