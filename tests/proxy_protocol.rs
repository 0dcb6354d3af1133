//! PROXY protocol v2 on the stream listeners (`--proxy-protocol-from`),
//! driven like a load balancer would: a TCP connection from a trusted
//! loopback address that starts with a v2 header naming another client,
//! then plain DNS, TLS (DoT) or TLS and HTTP/2 (DoH). A policy rule on
//! `dns.src_ip` and the query log show whose address Picket used. The
//! `#[ignore]` test puts Debian's HAProxy (`send-proxy-v2`) in front.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use common::tls::{tcp_from, tls_over};
use common::{
    a_records, allow_only, dir_with, free_port, rcode, run_program, start_picket_with, temp_dir,
    test_settings, wait_until_answering, Authority, KillOnDrop, Picket, PicketProcess,
    QueryBuilder,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use picket::config::{PolicySource, Settings, TlsSource};
use picket::observe::{ClientIpMode, LogTarget, QueryLogSettings};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client a header names, which the policy blocks www.example.test for.
const BLOCKED_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 8, 7);
/// Another client a header names: answered.
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
/// A client outside the default access list (public, TEST-NET-3).
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The upstream's one address.
const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// How long a test waits for an answer or a close before calling it stuck.
const PATIENCE: Duration = Duration::from_secs(10);

const ZONE: &str = "example.test 3600 IN SOA ns.example.test h.example.test 1 7200 900 1209600 60
                    www.example.test 300 IN A 192.0.2.1";

fn policy_dir() -> PathBuf {
    dir_with(
        "proxy-policy",
        &[(
            "policy.json",
            r#"{ "global": { "rules": [
                 { "id": "by-client", "expression": "dns.src_ip == 10.9.8.7 or dns.src_ip == 127.0.0.9", "action": "block" } ] },
               "organizations": [ { "id": "branch", "networks": ["10.1.0.0/16"], "rules": [] } ] }"#,
        )],
    )
}

struct Setup {
    picket: Picket,
    _upstream: Authority,
    log: PathBuf,
}

/// Picket with TCP, DoT and DoH, trusting PROXY headers from `trusted`,
/// logging full client addresses.
fn start(trusted: &str, adjust: impl FnOnce(&mut Settings)) -> Setup {
    let upstream = Authority::start(ZONE);
    let mut settings = test_settings(&[upstream.addr()]);
    settings.proxy_protocol_from = vec![trusted.parse().unwrap()];
    settings.doh = vec!["127.0.0.1:0".parse().unwrap()];
    settings.dot = vec!["127.0.0.1:0".parse().unwrap()];
    settings.tls = Some(TlsSource::SelfSigned { names: vec![] });
    settings.policies = PolicySource::Dir(policy_dir());
    let log = temp_dir("proxy-log").join("queries.log");
    let mut query_log = QueryLogSettings::new(LogTarget::File(log.clone()));
    query_log.client_ip = ClientIpMode::Full;
    settings.query_log = Some(query_log);
    adjust(&mut settings);
    Setup {
        picket: start_picket_with(settings),
        _upstream: upstream,
        log,
    }
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family byte, address block.
fn header(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// PROXY TCP4 from `client`:40000 to 192.0.2.53:53.
fn proxied(client: Ipv4Addr) -> Vec<u8> {
    let mut block = client.octets().to_vec();
    block.extend_from_slice(&[192, 0, 2, 53]);
    block.extend_from_slice(&40000u16.to_be_bytes());
    block.extend_from_slice(&53u16.to_be_bytes());
    header(1, 0x11, &block)
}

fn query(id: u16) -> Vec<u8> {
    QueryBuilder::new("www.example.test.", RecordType::A)
        .id(id)
        .to_bytes()
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, wire: &[u8]) -> Message {
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    let answer = async {
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await? as usize;
        let mut answer = vec![0; len];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(PATIENCE, answer)
        .await
        .expect("an answer in time")
        .expect("an answer");
    Message::from_vec(&answer).unwrap()
}

/// A TCP connection from `from` that starts with `prefix`.
async fn connect_with(from: &str, addr: SocketAddr, prefix: &[u8]) -> TcpStream {
    let mut tcp = tcp_from(from, addr).await.expect("connects");
    tcp.write_all(prefix).await.unwrap();
    tcp
}

async fn over_tcp(setup: &Setup, prefix: &[u8]) -> Message {
    let mut tcp = connect_with("127.0.0.1", setup.picket.addr, prefix).await;
    exchange(&mut tcp, &query(1)).await
}

async fn over_dot(setup: &Setup, prefix: &[u8]) -> Message {
    let server = &setup.picket.server;
    let tcp = connect_with("127.0.0.1", server.dot_addrs()[0], prefix).await;
    let cert = server.tls().unwrap().certificate();
    let mut tls = tls_over(tcp, cert, &[b"dot"]).await.expect("TLS");
    exchange(&mut tls, &query(2)).await
}

async fn over_doh(setup: &Setup, prefix: &[u8]) -> Message {
    let server = &setup.picket.server;
    let addr = server.doh_addrs()[0];
    let tcp = connect_with("127.0.0.1", addr, prefix).await;
    let cert = server.tls().unwrap().certificate();
    let tls = tls_over(tcp, cert, &[b"h2"]).await.expect("TLS");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!(
        "https://localhost:{}/dns-query?dns={}",
        addr.port(),
        URL_SAFE_NO_PAD.encode(query(0))
    );
    let req = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("a response in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Message::from_vec(&body).unwrap()
}

/// Reads the query log once the server has stopped (which flushes it).
fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The (transport, client, action) of every line.
fn log_entries(path: &Path) -> Vec<(String, String, String)> {
    let mut entries: Vec<_> = read_log(path)
        .iter()
        .map(|l| {
            (
                l["transport"].as_str().unwrap().to_string(),
                l["client"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    entries.sort();
    entries
}

fn entry(transport: &str, client: &str, action: &str) -> (String, String, String) {
    (transport.into(), client.into(), action.into())
}

/// Whether the server closed `stream` (EOF or reset) instead of answering.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection neither closed nor answered"),
    }
}

// ---------------------------------------------------------------- trusted

#[tokio::test]
async fn the_headers_client_is_the_one_policy_and_query_log_see() {
    let setup = start("127.0.0.1/32", |_| {});
    let blocked = proxied(BLOCKED_CLIENT);
    let other = proxied(OTHER_CLIENT);
    for (transport, msg) in [
        ("tcp", over_tcp(&setup, &blocked).await),
        ("dot", over_dot(&setup, &blocked).await),
        ("doh", over_doh(&setup, &blocked).await),
    ] {
        assert_eq!(
            rcode(&msg),
            ResponseCode::NXDomain,
            "{transport}: the rule on 10.9.8.7"
        );
    }
    for (transport, msg) in [
        ("tcp", over_tcp(&setup, &other).await),
        ("dot", over_dot(&setup, &other).await),
        ("doh", over_doh(&setup, &other).await),
    ] {
        assert_eq!(a_records(&msg), [ADDRESS], "{transport}: another client");
    }
    setup.picket.server.stop();
    // The organization is found by the header's client too.
    let orgs: Vec<(String, Value)> = read_log(&setup.log)
        .iter()
        .map(|l| (l["client"].as_str().unwrap().to_string(), l["org"].clone()))
        .collect();
    for (client, org) in &orgs {
        let want = if client == "10.1.1.1" {
            Value::from("branch")
        } else {
            Value::Null
        };
        assert_eq!(org, &want, "{client}");
    }
    assert_eq!(
        log_entries(&setup.log),
        [
            entry("doh", "10.1.1.1", "resolve"),
            entry("doh", "10.9.8.7", "block"),
            entry("dot", "10.1.1.1", "resolve"),
            entry("dot", "10.9.8.7", "block"),
            entry("tcp", "10.1.1.1", "resolve"),
            entry("tcp", "10.9.8.7", "block"),
        ]
    );
}

#[tokio::test]
async fn the_access_list_judges_the_headers_client() {
    let setup = start("127.0.0.1/32", |_| {});
    let outsider = proxied(OUTSIDER);
    let msg = over_tcp(&setup, &outsider).await;
    assert_eq!(
        rcode(&msg),
        ResponseCode::Refused,
        "203.0.113.9 is not allowed"
    );
    let msg = over_doh(&setup, &outsider).await;
    assert_eq!(rcode(&msg), ResponseCode::Refused);
    // The peer itself (127.0.0.1) is allowed, and a LOCAL header keeps it.
    let local = header(0, 0x00, &[]);
    assert_eq!(a_records(&over_tcp(&setup, &local).await), [ADDRESS]);
    assert_eq!(a_records(&over_dot(&setup, &local).await), [ADDRESS]);
    setup.picket.server.stop();
    assert_eq!(
        log_entries(&setup.log),
        [
            entry("doh", "203.0.113.9", "denied"),
            entry("dot", "127.0.0.1", "resolve"),
            entry("tcp", "127.0.0.1", "resolve"),
            entry("tcp", "203.0.113.9", "denied"),
        ]
    );
}

#[tokio::test]
async fn an_ipv6_client_behind_an_ipv4_proxy() {
    let setup = start("127.0.0.1/32", |s| {
        s.access = allow_only(&["0.0.0.0/0", "::/0"]);
    });
    let mut block = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    block.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&[0x9c, 0x40, 0, 53]);
    // A TLV after the addresses (PP2_TYPE_AUTHORITY) is skipped.
    block.extend_from_slice(&[0x02, 0, 11]);
    block.extend_from_slice(b"dns.example");
    let msg = over_dot(&setup, &header(1, 0x21, &block)).await;
    assert_eq!(a_records(&msg), [ADDRESS]);
    setup.picket.server.stop();
    assert_eq!(
        log_entries(&setup.log),
        [entry("dot", "2001:db8::7", "resolve")]
    );
}

// ---------------------------------------------------------------- refused

#[tokio::test]
async fn a_header_from_an_untrusted_peer_closes_the_connection() {
    // Only 127.0.0.2 is trusted; these clients connect from 127.0.0.1.
    let setup = start("127.0.0.2/32", |_| {});
    let addrs = [
        setup.picket.addr,
        setup.picket.server.dot_addrs()[0],
        setup.picket.server.doh_addrs()[0],
    ];
    for addr in addrs {
        let mut tcp = connect_with("127.0.0.1", addr, &proxied(OTHER_CLIENT)).await;
        assert!(closed_by_server(&mut tcp).await, "{addr}");
    }
    // Without a header the untrusted peer is an ordinary client.
    assert_eq!(a_records(&over_tcp(&setup, &[]).await), [ADDRESS]);
    assert_eq!(a_records(&over_dot(&setup, &[]).await), [ADDRESS]);
    assert_eq!(a_records(&over_doh(&setup, &[]).await), [ADDRESS]);
    setup.picket.server.stop();
    let clients: Vec<String> = log_entries(&setup.log).into_iter().map(|e| e.1).collect();
    assert_eq!(clients, ["127.0.0.1", "127.0.0.1", "127.0.0.1"]);
}

#[tokio::test]
async fn a_trusted_peer_without_a_header_is_closed() {
    let setup = start("127.0.0.2/32", |_| {});
    // Plain DNS over TCP from the proxy's address.
    let mut framed = (query(1).len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query(1));
    let mut tcp = connect_with("127.0.0.2", setup.picket.addr, &framed).await;
    assert!(closed_by_server(&mut tcp).await, "TCP");
    // A TLS handshake from the proxy's address, for DoT and DoH.
    let cert = setup.picket.server.tls().unwrap().certificate();
    for (addr, alpn) in [
        (setup.picket.server.dot_addrs()[0], b"dot".as_slice()),
        (setup.picket.server.doh_addrs()[0], b"h2".as_slice()),
    ] {
        let tcp = tcp_from("127.0.0.2", addr).await.unwrap();
        let handshake = tokio::time::timeout(PATIENCE, tls_over(tcp, cert.clone(), &[alpn])).await;
        assert!(
            matches!(handshake, Ok(Err(_))),
            "{addr}: closed during the handshake"
        );
    }
    // With a header, the same peer is served.
    let mut tcp = connect_with("127.0.0.2", setup.picket.addr, &proxied(OTHER_CLIENT)).await;
    assert_eq!(a_records(&exchange(&mut tcp, &query(3)).await), [ADDRESS]);
    setup.picket.server.stop();
    assert_eq!(
        log_entries(&setup.log),
        [entry("tcp", "10.1.1.1", "resolve")]
    );
}

/// A load balancer that sends no header does so on every connection: the
/// log gets one warning for the first (at most one per 10 s), not one per
/// connection, and a connection with a header is still served.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_balancer_without_headers_does_not_flood_the_log() {
    let upstream = Authority::start(ZONE);
    let stderr = temp_dir("proxy-flood").join("stderr");
    let picket = PicketProcess::options()
        .upstream(upstream.addr())
        .dnssec_off()
        .flag("--proxy-protocol-from", "127.0.0.2/32")
        .args(&["--no-policy"])
        .spawn_logging_to(&stderr);
    wait_until_answering(picket.addr).await;
    let mut framed = (query(1).len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query(1));
    const CONNECTIONS: usize = 20;
    for _ in 0..CONNECTIONS {
        let mut tcp = connect_with("127.0.0.2", picket.addr, &framed).await;
        assert!(closed_by_server(&mut tcp).await);
    }
    let mut tcp = connect_with("127.0.0.2", picket.addr, &proxied(OTHER_CLIENT)).await;
    assert_eq!(a_records(&exchange(&mut tcp, &query(2)).await), [ADDRESS]);
    let log = std::fs::read_to_string(&stderr).unwrap();
    drop(picket);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("connection closed"))
        .collect();
    // A machine slow enough to take 10 s for the loop may log a second.
    assert!(
        (1..=2).contains(&warnings.len()),
        "{} warnings for {CONNECTIONS} connections:\n{log}",
        warnings.len()
    );
}

#[tokio::test]
async fn malformed_headers_close_the_connection() {
    let setup = start("127.0.0.1/32", |s| {
        s.limits.proxy_header_timeout = Duration::from_millis(300);
    });
    let good = proxied(OTHER_CLIENT);
    let with = |at: usize, byte: u8| {
        let mut h = good.clone();
        h[at] = byte;
        h
    };
    let mut too_long = header(1, 0x11, &[]);
    too_long[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("version 1 in a v2 header", with(12, 0x11)),
        ("command 2", with(12, 0x22)),
        ("family 0x41", with(13, 0x41)),
        ("address block too short", header(1, 0x11, &[10, 9, 8, 7])),
        ("longer than the bound", too_long),
        (
            "a v1 text header",
            b"PROXY TCP4 10.9.8.7 192.0.2.53 40000 53\r\n".to_vec(),
        ),
        ("half a header, then nothing", good[..20].to_vec()),
        (
            "a signature that goes wrong",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        for addr in [setup.picket.addr, setup.picket.server.dot_addrs()[0]] {
            let mut tcp = connect_with("127.0.0.1", addr, &bytes).await;
            // Whatever follows is never read as DNS.
            let _ = tcp.write_all(&[0, 29]).await;
            assert!(closed_by_server(&mut tcp).await, "{what} to {addr}");
        }
    }
    // Bytes after a header in the same segment are the stream's own.
    let mut bytes = good.clone();
    let wire = query(9);
    bytes.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&wire);
    let mut tcp = connect_with("127.0.0.1", setup.picket.addr, &bytes).await;
    let len = tcp.read_u16().await.unwrap() as usize;
    let mut answer = vec![0; len];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(a_records(&Message::from_vec(&answer).unwrap()), [ADDRESS]);
}

#[tokio::test]
async fn the_per_client_cap_counts_the_headers_client() {
    // One connection per client: a second one from the same client behind
    // the proxy sheds the first, one from another client does not.
    let setup = start("127.0.0.1/32", |s| s.limits.max_connections_per_client = 1);
    let mut first = connect_with("127.0.0.1", setup.picket.addr, &proxied(OTHER_CLIENT)).await;
    assert_eq!(a_records(&exchange(&mut first, &query(1)).await), [ADDRESS]);
    let mut another = connect_with("127.0.0.1", setup.picket.addr, &proxied(BLOCKED_CLIENT)).await;
    assert_eq!(
        rcode(&exchange(&mut another, &query(2)).await),
        ResponseCode::NXDomain
    );
    // Both still open: the proxy's own address did not count them together.
    assert_eq!(a_records(&exchange(&mut first, &query(3)).await), [ADDRESS]);
    let mut second = connect_with("127.0.0.1", setup.picket.addr, &proxied(OTHER_CLIENT)).await;
    assert_eq!(
        a_records(&exchange(&mut second, &query(4)).await),
        [ADDRESS]
    );
    assert!(
        closed_by_server(&mut first).await,
        "the client's older connection was shed"
    );
    assert_eq!(
        rcode(&exchange(&mut another, &query(5)).await),
        ResponseCode::NXDomain
    );
}

// ---------------------------------------------------------------- HAProxy

#[tokio::test]
#[ignore = "needs haproxy, dig and kdig (Debian haproxy, dnsutils, knot-dnsutils); run by .ci/run"]
async fn haproxy_send_proxy_v2_in_front_of_tcp_and_dot() {
    // HAProxy connects to Picket from 127.0.0.1, the trusted proxy; the
    // clients query HAProxy from 127.0.0.9, which the policy blocks, and
    // from 127.0.0.1, which it does not.
    let setup = start("127.0.0.1/32", |_| {});
    let (tcp_front, dot_front) = (free_port(), free_port());
    let config = format!(
        "global\n  log stderr format raw local0\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         listen dns_tcp\n  bind 127.0.0.1:{tcp_front}\n  server picket {tcp} send-proxy-v2\n\
         listen dns_tls\n  bind 127.0.0.1:{dot_front}\n  server picket {dot} send-proxy-v2\n",
        tcp = setup.picket.addr,
        dot = setup.picket.server.dot_addrs()[0],
    );
    let dir = temp_dir("haproxy");
    let config_path = dir.join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let check = run_program("haproxy", &["-c", "-f", config_path.to_str().unwrap()]);
    assert!(check.contains("Configuration file is valid"), "{check}");
    let _haproxy = KillOnDrop::spawn(
        std::process::Command::new("haproxy").args(["-db", "-f", config_path.to_str().unwrap()]),
        "haproxy",
    );
    for port in [tcp_front, dot_front] {
        wait_for_listener(port).await;
    }
    let (tcp_port, dot_port) = (tcp_front.to_string(), dot_front.to_string());
    let out = tokio::task::spawn_blocking(move || {
        let dig = |from: &str| {
            run_program(
                "dig",
                &[
                    "+tcp",
                    "+tries=1",
                    "-b",
                    from,
                    "@127.0.0.1",
                    "-p",
                    &tcp_port,
                    "www.example.test",
                    "A",
                ],
            )
        };
        let kdig = |from: &str| {
            run_program(
                "kdig",
                &[
                    "+tls",
                    "+retry=0",
                    "-b",
                    from,
                    "@127.0.0.1",
                    "-p",
                    &dot_port,
                    "www.example.test",
                    "A",
                ],
            )
        };
        [
            dig("127.0.0.9"),
            dig("127.0.0.1"),
            kdig("127.0.0.9"),
            kdig("127.0.0.1"),
        ]
    })
    .await
    .unwrap();
    assert!(
        out[0].contains("status: NXDOMAIN"),
        "dig from the blocked client: {}",
        out[0]
    );
    assert!(
        out[1].contains("status: NOERROR") && out[1].contains("192.0.2.1"),
        "{}",
        out[1]
    );
    assert!(
        out[2].contains("status: NXDOMAIN"),
        "kdig from the blocked client: {}",
        out[2]
    );
    assert!(
        out[3].contains("status: NOERROR") && out[3].contains("192.0.2.1"),
        "{}",
        out[3]
    );
    setup.picket.server.stop();
    let entries = log_entries(&setup.log);
    assert!(
        entries.contains(&entry("tcp", "127.0.0.9", "block")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&entry("dot", "127.0.0.9", "block")),
        "{entries:?}"
    );
}

async fn wait_for_listener(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("haproxy did not listen on {port}");
}
