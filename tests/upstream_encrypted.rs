//! Encrypted upstreams (issue 18): Picket forwarding its misses over DNS
//! over TLS, HTTPS and QUIC to real servers on loopback (the test
//! authority behind TLS, hyper's HTTP/2 server and quinn), whose
//! certificates come from a test CA given as `--ca-file`.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ::picket::config::Settings;
use ::picket::upstream::{read_ca_file, Upstream};
use common::tls::TestCa;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// `w<i>.example.test A 192.0.2.<i>` for i in 0..20.
fn zone() -> String {
    let mut zone = String::from(
        "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60\n\
         www.example.test. 300 IN A 192.0.2.200\n",
    );
    for i in 0..20 {
        zone.push_str(&format!("w{i}.example.test. 300 IN A 192.0.2.{i}\n"));
    }
    zone
}

/// One worker (so one pool per upstream to count connections of), the
/// test CA trusted through the same reader as `--ca-file`, and attempt
/// timeouts long enough for handshakes in a debug build on a busy machine.
fn settings(upstreams: &[String], ca: &TestCa) -> Settings {
    let mut settings = test_settings(&[]);
    settings.upstreams = upstreams
        .iter()
        .map(|u| Upstream::parse(u).unwrap())
        .collect();
    settings.forwarder.ca_roots = read_ca_file(&ca.ca_file()).expect("the test CA loads");
    settings.forwarder.attempt_timeout = Duration::from_secs(3);
    settings.forwarder.total_timeout = Duration::from_secs(6);
    settings.threads = 1;
    settings
}

/// www.example.test's one address.
const WWW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

/// A DoT front for `authority` under a certificate for `name` from `ca`.
fn dot_front(authority: &Authority, ca: &TestCa, name: &str) -> EncryptedFront {
    EncryptedFront::dot(authority, ca.server_config(&[name], &[b"dot"], false))
}

/// A test CA, the zone's authority and a DoT front for it with a
/// certificate for dns.test.
fn dot_upstream() -> (TestCa, Authority, EncryptedFront) {
    let ca = TestCa::new();
    let authority = Authority::start(&zone());
    let dot = dot_front(&authority, &ca, "dns.test");
    (ca, authority, dot)
}

/// The upstream spec of DoT `front`, checked as dns.test.
fn dot_spec(front: &EncryptedFront) -> String {
    format!("tls://{}#dns.test", front.addr())
}

/// Asserts that `w<i>.example.test` is answered with its address, 192.0.2.<i>.
async fn assert_w_answered(picket: &Picket, i: u8) {
    let name = format!("w{i}.example.test");
    assert_eq!(ask_a(picket, &name).await, [Ipv4Addr::new(192, 0, 2, i)]);
}

/// `front` closes its connections; the next miss (w15) opens a second one.
async fn assert_reconnects_after_the_server_closes(front: &EncryptedFront, picket: &Picket) {
    front.close_connections();
    wait_for("the server to close its connection", || front.closed() == 1).await;
    assert_w_answered(picket, 15).await;
    assert_eq!(
        front.connections(),
        2,
        "reconnected after the server closed"
    );
}

/// DoH and DoQ: every query the authority received carried ID 0 (`rule`, the
/// RFC's section that says so), and `front` is reconnected to once it closes.
async fn assert_id_zero_and_reconnects(
    authority: &Authority,
    front: &EncryptedFront,
    picket: &Picket,
    rule: &str,
) {
    assert!(
        authority.received().iter().all(|m| m.metadata.id == 0),
        "{rule}: ID 0"
    );
    assert_reconnects_after_the_server_closes(front, picket).await;
}

async fn ask_a(picket: &Picket, name: &str) -> Vec<Ipv4Addr> {
    let answer = query_udp(picket.addr, name, RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{name}: {answer:?}");
    a_records(&answer)
}

/// Asks for w0..w<n> at once; the first one asked is answered last by the
/// upstream, so answers come back out of order on a shared connection.
async fn concurrent_misses(picket: &Picket, authority: &Authority, n: u8) {
    authority.set_delay(Duration::from_millis(150));
    authority.set_delay_for("w0.example.test", Duration::from_millis(500));
    let addr = picket.addr;
    let asks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                let name = format!("w{i}.example.test");
                (i, query_udp(addr, &name, RecordType::A).await)
            })
        })
        .collect();
    for ask in asks {
        let (i, answer) = ask.await.unwrap();
        assert_eq!(rcode(&answer), ResponseCode::NoError, "w{i}: {answer:?}");
        assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, i)], "w{i}");
    }
    authority.set_delay(Duration::ZERO);
}

/// Polls (real clock) until `done`, for state another thread changes.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        real_sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 6 s for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_upstream_pipelines_concurrent_misses_on_one_connection() {
    let (ca, authority, dot) = dot_upstream();
    let spec = dot_spec(&dot);
    let picket = start_picket_with(settings(&[spec], &ca));

    assert_eq!(ask_a(&picket, "www.example.test").await, [WWW]);
    assert_eq!(dot.connections(), 1);
    concurrent_misses(&picket, &authority, 12).await;
    assert_eq!(
        dot.connections(),
        1,
        "12 concurrent misses share the warm connection"
    );
    assert_eq!(authority.tcp_queries(), 13, "one query per miss, over TLS");
    assert_eq!(authority.udp_queries(), 0, "nothing in the clear");
    // Pipelined queries in flight together carry distinct IDs.
    let ids: HashSet<u16> = authority.received().iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids.len(), 13);
    // Each query is padded (RFC 8467): its length tells an observer nothing of the name.
    let padded = |m: &Message| {
        m.edns.as_ref().is_some_and(|e| {
            let options = e.options().as_ref();
            options.iter().any(|(code, _)| u16::from(*code) == 12)
        })
    };
    assert!(authority.received().iter().all(padded));
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_upstream_reconnects_after_the_server_closes() {
    let (ca, _authority, dot) = dot_upstream();
    let picket = start_picket_with(settings(&[dot_spec(&dot)], &ca));

    assert_w_answered(&picket, 1).await;
    dot.close_connections();
    wait_for("the server to close its connection", || dot.closed() == 1).await;
    assert_w_answered(&picket, 2).await;
    assert_eq!(dot.connections(), 2, "a new connection after the close");
    // And again, with the close racing nothing: the new connection is reused.
    assert_w_answered(&picket, 3).await;
    assert_eq!(dot.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_dot_connection_is_closed_and_reopened_when_needed() {
    let (ca, _authority, dot) = dot_upstream();
    let mut settings = settings(&[dot_spec(&dot)], &ca);
    settings.limits.upstream_stream_idle_timeout = Duration::from_millis(200);
    let picket = start_picket_with(settings);

    assert_w_answered(&picket, 1).await;
    wait_for("Picket to close its idle connection", || dot.closed() == 1).await;
    assert_w_answered(&picket, 2).await;
    assert_eq!(dot.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dot_upstream_whose_certificate_does_not_match_is_never_used() {
    let ca = TestCa::new();
    let authority = Authority::start(&zone());
    let wrong = dot_front(&authority, &ca, "elsewhere.test");
    let right = dot_front(&authority, &ca, "dns.test");
    let wrong_spec = dot_spec(&wrong);
    let right_spec = dot_spec(&right);

    // Alone, it is asked and refused: SERVFAIL, the query never sent; and
    // while the reconnect backoff runs, not asked again.
    let mut alone = settings(std::slice::from_ref(&wrong_spec), &ca);
    alone.limits.upstream_reconnect_backoff_min = Duration::from_secs(600);
    let alone = start_picket_with(alone);
    for name in ["w1.example.test", "w2.example.test"] {
        let answer = query_udp(alone.addr, name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail);
    }
    assert_eq!(
        wrong.offered(),
        1,
        "one connection attempt, then the backoff holds retries off"
    );
    assert_eq!(wrong.connections(), 0, "no handshake finished");
    assert_eq!(authority.queries(), 0, "no query went to it");
    drop(alone);

    // Beside a good one, every miss fails over to the good one.
    let mut with_metrics = settings(&[wrong_spec.clone(), right_spec.clone()], &ca);
    with_metrics.metrics = Some("127.0.0.1:0".parse().unwrap());
    let picket = start_picket_with(with_metrics);
    let offered_before = wrong.offered();
    let mut asked = 0;
    for i in 0..20u8 {
        let name = format!("w{i}.example.test");
        assert_eq!(ask_a(&picket, &name).await, [Ipv4Addr::new(192, 0, 2, i)]);
        asked += 1;
        if wrong.offered() > offered_before {
            break;
        }
    }
    assert!(
        wrong.offered() > offered_before,
        "20 misses, a random upstream first each time, and the bad one never tried"
    );
    assert_eq!(wrong.connections(), 0);
    assert_eq!(
        authority.queries(),
        asked,
        "each miss asked once, of the good one"
    );

    // Metrics per upstream, labelled with the spec.
    let metrics = http_get(picket.server.admin_addr().unwrap(), "/metrics")
        .await
        .body;
    let right_label = format!("upstream=\"{right_spec}\"");
    let wrong_label = format!("upstream=\"{wrong_spec}\"");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("picket_upstream_queries_total")
                && l.contains(&right_label)
                && l.ends_with(&format!(" {asked}"))),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("picket_upstream_errors_total")
                && l.contains(&wrong_label)
                && l.contains("kind=\"network\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doh_upstream_posts_id_zero_queries_as_http2_streams_on_one_connection() {
    let ca = TestCa::new();
    let authority = Authority::start(&zone());
    let doh = EncryptedFront::doh(&authority, ca.server_config(&["dns.test"], &[b"h2"], false));
    // HOST is a name, reached at #IP; SNI and the certificate check use HOST.
    let spec = format!("https://dns.test:{}/dns-query#127.0.0.1", doh.addr().port());
    let picket = start_picket_with(settings(&[spec], &ca));

    assert_eq!(ask_a(&picket, "www.example.test").await, [WWW]);
    concurrent_misses(&picket, &authority, 12).await;
    assert_eq!(doh.connections(), 1, "one HTTP/2 connection for 13 misses");
    let requests = doh.http_requests();
    assert_eq!(requests.len(), 13);
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.version.as_str()),
            ("POST", "/dns-query", "HTTP/2.0")
        );
        assert_eq!(r.content_type.as_deref(), Some("application/dns-message"));
    }
    assert_id_zero_and_reconnects(&authority, &doh, &picket, "RFC 8484 §4.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn doq_upstream_asks_one_query_per_stream_on_one_connection() {
    let ca = TestCa::new();
    let authority = Authority::start(&zone());
    let doq = EncryptedFront::doq(&authority, ca.server_config(&["dns.test"], &[b"doq"], true));
    let spec = format!("quic://{}#dns.test", doq.addr());
    let picket = start_picket_with(settings(&[spec], &ca));

    assert_eq!(ask_a(&picket, "www.example.test").await, [WWW]);
    concurrent_misses(&picket, &authority, 12).await;
    assert_eq!(doq.connections(), 1, "one QUIC connection for 13 misses");
    assert_eq!(authority.queries(), 13);
    assert_id_zero_and_reconnects(&authority, &doq, &picket, "RFC 9250 §4.2.1").await;
}

/// The binary, configured by flags as an operator would.
#[tokio::test(flavor = "multi_thread")]
async fn the_flags_configure_a_dot_upstream_with_a_private_ca() {
    let (ca, authority, dot) = dot_upstream();
    let ca_file = ca.ca_file();
    let picket = PicketProcess::options()
        .dnssec_off()
        .upstream(dot_spec(&dot))
        .flag("--ca-file", &ca_file)
        .threads(1)
        .spawn();
    wait_until_answering(picket.addr).await;
    let answer = query_udp(picket.addr, "w7.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(dot.connections(), 1);
    assert_eq!(authority.udp_queries(), 0);
}

/// Unbound (Debian's) serving `w<i>.example.test` from local data on its
/// DoT (`tls-port`) and DoH (`https-port`, built with nghttp2 in Debian)
/// listeners, with a certificate from the test CA.
struct Unbound {
    _child: KillOnDrop,
    dot: SocketAddr,
    doh: SocketAddr,
}

impl Unbound {
    fn start(ca: &TestCa) -> Unbound {
        let dir = temp_dir("unbound-upstream");
        let issued = ca.issue(&["dns.test"]);
        let (pem, key) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&pem, &issued.chain_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let (dot_port, doh_port) = (free_port(), free_port());
        let local_data: String = (0..20)
            .map(|i| format!("  local-data: \"w{i}.example.test. 300 IN A 192.0.2.{i}\"\n"))
            .collect();
        let server = format!(
            "  interface: 127.0.0.1@{dot_port}\n  interface: 127.0.0.1@{doh_port}\n  \
             tls-port: {dot_port}\n  https-port: {doh_port}\n  \
             tls-service-pem: \"{pem}\"\n  tls-service-key: \"{key}\"\n  \
             verbosity: 1\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  \
             local-zone: \"example.test.\" static\n{local_data}",
            pem = pem.display(),
            key = key.display(),
        );
        let unbound = Unbound {
            _child: start_unbound(&dir, &server),
            dot: SocketAddr::from(([127, 0, 0, 1], dot_port)),
            doh: SocketAddr::from(([127, 0, 0, 1], doh_port)),
        };
        for _ in 0..600 {
            if std::net::TcpStream::connect(unbound.dot).is_ok()
                && std::net::TcpStream::connect(unbound.doh).is_ok()
            {
                return unbound;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "Unbound did not listen on {} and {}",
            unbound.dot, unbound.doh
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs Unbound (/usr/sbin/unbound, Debian package unbound) as the upstream; run by .ci/run"]
async fn unbound_answers_as_a_dot_and_a_doh_upstream() {
    let ca = TestCa::new();
    let unbound = Unbound::start(&ca);
    for spec in [
        format!("tls://{}#dns.test", unbound.dot),
        format!(
            "https://dns.test:{}/dns-query#127.0.0.1",
            unbound.doh.port()
        ),
    ] {
        let picket = start_picket_with(settings(std::slice::from_ref(&spec), &ca));
        assert_eq!(
            ask_a(&picket, "w3.example.test").await,
            [Ipv4Addr::new(192, 0, 2, 3)],
            "{spec}"
        );
        // Several at once on the same connection, and NXDOMAIN passed through.
        let addr = picket.addr;
        let asks: Vec<_> = (4..12u8)
            .map(|i| {
                tokio::spawn(async move {
                    (
                        i,
                        query_udp(addr, &format!("w{i}.example.test"), RecordType::A).await,
                    )
                })
            })
            .collect();
        for ask in asks {
            let (i, answer) = ask.await.unwrap();
            assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, i)], "{spec}");
        }
        let missing = query_udp(picket.addr, "nowhere.example.test", RecordType::A).await;
        assert_eq!(rcode(&missing), ResponseCode::NXDomain, "{spec}");
    }
}
