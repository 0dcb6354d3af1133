//! DNS over QUIC (RFC 9250) and DoH over HTTP/3 end to end, over real QUIC
//! on 127.0.0.1: Picket in-process with a throwaway self-signed certificate
//! and the test authority as its upstream, queried by quinn (DoQ) and h3
//! (DoH3) clients that pin the certificate. The tests marked `#[ignore]`
//! drive dnspython with aioquic and kdig (installed by .ci/run).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::picket::{assert_served, SERVED_A_TTL};
use common::quic::{client_endpoint, connect, doq_query, doq_raw, h3_request, H3Reply};
use common::{a_query, any_port, free_port, run_program, test_settings, EncryptedPicket};
use hickory_proto::op::{Message, ResponseCode};
use hyper::header::{ALT_SVC, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use picket::app::Server;
use picket::config::{PolicySource, Settings, TlsSource};
use quinn::{ConnectionError, Endpoint};

/// Organization `acme`'s server name label in [`org_policy`] (made by
/// `picket token`: guessable ones do not load).
const ACME_NAME: &str = "ejj3rj55qbpyndwtwn2g2hvxk";
/// DOQ_PROTOCOL_ERROR and DOQ_REQUEST_CANCELLED (RFC 9250 §4.3).
const DOQ_PROTOCOL_ERROR: u32 = 0x2;
const DOQ_REQUEST_CANCELLED: u32 = 0x3;

/// A QUIC test: the upstream authority and Picket.
type Setup = EncryptedPicket;

fn start_with(adjust: impl FnOnce(&mut Settings)) -> Setup {
    let mut names: Vec<String> = ["www", "transport", "drop", "get", "post"]
        .map(String::from)
        .to_vec();
    names.extend((0..20).map(|i| format!("s{i}")));
    Setup::serving(&names, "doq.example.net", |settings| {
        settings.doq = vec![any_port()];
        settings.doh3 = vec![any_port()];
        adjust(settings);
    })
}

fn doq_client(server: &Server) -> Endpoint {
    client_endpoint(server.tls().unwrap().certificate(), &[b"doq"])
}

fn h3_client(server: &Server) -> Endpoint {
    client_endpoint(server.tls().unwrap().certificate(), &[b"h3"])
}

/// The application error code and reason the server closed with.
async fn close_reason(connection: &quinn::Connection) -> (u32, String) {
    let closed = tokio::time::timeout(common::quic::QUIC_TIMEOUT, connection.closed())
        .await
        .expect("the server closes the connection");
    match closed {
        ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner() as u32,
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("closed otherwise: {other}"),
    }
}

/// Organization `acme` (server name label [`ACME_NAME`]) blocks
/// www.example.test; for everyone, DoQ queries for transport.example.test
/// are blocked and drop.example.test is dropped.
fn org_policy() -> PathBuf {
    let dir = common::temp_dir("quic-policy");
    let policy = r#"{
      "global": { "rules": [
        { "id": "doq-only", "expression": "dns.transport == \"doq\" and dns.fqdn == \"transport.example.test\"", "action": "block" },
        { "id": "drop", "expression": "dns.fqdn == \"drop.example.test\"", "action": "drop" }
      ] },
      "organizations": [
        { "id": "acme", "dot_names": ["ACME_NAME"],
          "rules": [ { "id": "acme-www", "expression": "dns.fqdn == \"www.example.test\"", "action": "block" } ] }
      ]
    }"#
    .replace("ACME_NAME", ACME_NAME);
    std::fs::write(dir.join("policy.json"), policy).unwrap();
    dir
}

// ---------------------------------------------------------------- DoQ

#[tokio::test]
async fn doq_answers_streams_in_parallel_with_id_0() {
    let server = start_with(|_| {});
    let endpoint = doq_client(&server);
    let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    assert_eq!(
        connection
            .handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .as_deref(),
        Some(&b"doq"[..])
    );
    // Twenty queries on twenty streams of one connection, all at once.
    let queries = (0..20).map(|i| {
        let connection = connection.clone();
        async move { doq_query(&connection, &a_query(0, &format!("s{i}.example.test."))).await }
    });
    let answers = futures_util::future::join_all(queries).await;
    for answer in &answers {
        assert_eq!(answer.metadata.id, 0, "the answer has ID 0");
        assert_served(answer);
    }
    assert_eq!(server.upstream.queries_for("s7.example.test"), 1);
    // The connection serves on.
    assert_served(&doq_query(&connection, &a_query(0, "www.example.test.")).await);
}

#[tokio::test]
async fn doq_nonzero_id_closes_with_protocol_error() {
    let server = start_with(|_| {});
    let endpoint = doq_client(&server);
    let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    let wire = a_query(0x1234, "www.example.test.");
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    assert!(doq_raw(&connection, &framed).await.is_err(), "no answer");
    let (code, reason) = close_reason(&connection).await;
    assert_eq!(code, DOQ_PROTOCOL_ERROR);
    assert!(reason.contains("ID must be 0"), "{reason}");
    assert_eq!(server.upstream.queries_for("www.example.test"), 0);
}

#[tokio::test]
async fn doq_malformed_streams_close_with_protocol_error() {
    let server = start_with(|_| {});
    let endpoint = doq_client(&server);
    let wire = a_query(0, "www.example.test.");
    let mut long_prefix = ((wire.len() + 5) as u16).to_be_bytes().to_vec();
    long_prefix.extend_from_slice(&wire);
    let mut two_messages = (wire.len() as u16).to_be_bytes().to_vec();
    two_messages.extend_from_slice(&wire);
    two_messages.extend_from_slice(&two_messages.clone());
    let mut response = (wire.len() as u16).to_be_bytes().to_vec();
    response.extend_from_slice(&wire);
    response[4] |= 0x80; // QR: a response, not a query
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("one byte", vec![0], "2-byte length"),
        (
            "a prefix longer than the message",
            long_prefix,
            "does not match",
        ),
        ("two messages on one stream", two_messages, "does not match"),
        ("a response", response, "not a DNS query"),
    ];
    for (what, stream, expected) in cases {
        let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
        assert!(
            doq_raw(&connection, &stream).await.is_err(),
            "{what}: no answer"
        );
        let (code, reason) = close_reason(&connection).await;
        assert_eq!(code, DOQ_PROTOCOL_ERROR, "{what}");
        assert!(reason.contains(expected), "{what}: {reason}");
    }
    // Other connections are untouched.
    let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    assert_served(&doq_query(&connection, &wire).await);
}

#[tokio::test]
async fn doq_sni_picks_the_organization_and_policy_blocks_and_drops() {
    let dir = org_policy();
    let server = start_with(|s| s.policies = PolicySource::Dir(dir.clone()));
    let endpoint = doq_client(&server);
    let acme_sni = format!("{ACME_NAME}.doq.example.net");
    for (sni, blocked) in [
        (acme_sni.as_str(), true),
        ("acme.doq.example.net", false),
        ("localhost", false),
    ] {
        let connection = connect(&endpoint, server.doq_addrs()[0], sni).await;
        let msg = doq_query(&connection, &a_query(0, "www.example.test.")).await;
        if blocked {
            assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{sni}");
        } else {
            assert_served(&msg);
        }
    }
    let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    // The transport reaches the policy as "doq".
    let msg = doq_query(&connection, &a_query(0, "transport.example.test.")).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    // A dropped query's stream is reset at once, and the connection serves on.
    let wire = a_query(0, "drop.example.test.");
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    let err = doq_raw(&connection, &framed).await.unwrap_err();
    assert!(
        err.contains(&format!("reset by peer: error {DOQ_REQUEST_CANCELLED}")),
        "{err}"
    );
    assert_served(&doq_query(&connection, &a_query(0, "get.example.test.")).await);
    // Over DoH3 the transport is "doh": not blocked by the DoQ-only rule.
    let reply = h3_get(&server, &get_path(&a_query(0, "transport.example.test."))).await;
    assert_served(&Message::from_vec(&reply.body).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn doq_and_doh3_without_a_certificate_do_not_start() {
    for quic in ["doq", "doh3"] {
        let mut settings = test_settings(&["127.0.0.1:9".parse().unwrap()]);
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        if quic == "doq" {
            settings.doq = vec![addr];
        } else {
            settings.doh3 = vec![addr];
        }
        let err = Server::start(settings).err().expect("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("--tls-cert FILE --tls-key FILE"),
            "{quic}: {text}"
        );
    }
}

// ---------------------------------------------------------------- DoH3

fn get_path(wire: &[u8]) -> String {
    format!("/dns-query?dns={}", URL_SAFE_NO_PAD.encode(wire))
}

async fn h3_send(server: &Server, req: Request<()>, body: Option<Vec<u8>>) -> H3Reply {
    let endpoint = h3_client(server);
    let connection = connect(&endpoint, server.doh3_addrs()[0], "localhost").await;
    h3_request(connection, req, body).await
}

fn h3_req(method: &str, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
}

/// POST `body` as `content_type` to /dns-query over HTTP/3.
async fn h3_post(server: &Server, content_type: &str, body: Vec<u8>) -> H3Reply {
    let req = h3_req("POST", "/dns-query")
        .header(CONTENT_TYPE, content_type)
        .body(())
        .unwrap();
    h3_send(server, req, Some(body)).await
}

async fn h3_get(server: &Server, path: &str) -> H3Reply {
    h3_send(server, h3_req("GET", path).body(()).unwrap(), None).await
}

#[tokio::test]
async fn doh3_get_and_post_answer() {
    let server = start_with(|_| {});
    let get = h3_get(&server, &get_path(&a_query(0, "get.example.test."))).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.headers[CONTENT_TYPE], "application/dns-message");
    assert_eq!(
        get.headers[CACHE_CONTROL],
        format!("max-age={SERVED_A_TTL}").as_str()
    );
    let msg = Message::from_vec(&get.body).unwrap();
    assert_eq!(msg.metadata.id, 0);
    assert_served(&msg);

    let query = a_query(0x4242, "post.example.test.");
    let post = h3_post(&server, "application/dns-message", query).await;
    assert_eq!(post.status, StatusCode::OK);
    let msg = Message::from_vec(&post.body).unwrap();
    assert_eq!(msg.metadata.id, 0x4242);
    assert_served(&msg);
}

#[tokio::test]
async fn doh3_errors_have_the_status_of_doh() {
    let server = start_with(|_| {});
    let wire = a_query(0, "www.example.test.");
    let not_base64 = h3_get(&server, "/dns-query?dns=***").await;
    assert_eq!(not_base64.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&not_base64.body).contains("not a DNS query"));
    let elsewhere = h3_get(
        &server,
        &format!("/other?dns={}", URL_SAFE_NO_PAD.encode(&wire)),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let unknown_token = h3_get(
        &server,
        &format!(
            "/dns-query/nosuchtoken?dns={}",
            URL_SAFE_NO_PAD.encode(&wire)
        ),
    )
    .await;
    assert_eq!(unknown_token.status, StatusCode::NOT_FOUND);
    let form = h3_post(&server, "application/x-www-form-urlencoded", wire.clone()).await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let put = h3_send(
        &server,
        h3_req("PUT", "/dns-query").body(()).unwrap(),
        Some(wire),
    )
    .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    let too_large = h3_post(&server, "application/dns-message", vec![0; 70_000]).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(server.upstream.queries_for("www.example.test"), 0);
}

#[tokio::test]
async fn doh_on_the_port_of_doh3_advertises_it() {
    let port = free_port();
    let shared: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = start_with(|s| {
        s.doh = vec![shared, "127.0.0.1:0".parse().unwrap()];
        s.doh3 = vec![shared];
    });
    assert_eq!(server.doh3_addrs(), [shared]);
    let path = get_path(&a_query(0, "get.example.test."));
    let advertised = doh2_get_alt_svc(&server, server.doh_addrs()[0], &path).await;
    assert_eq!(
        advertised.as_deref(),
        Some(format!("h3=\":{port}\"; ma=86400").as_str())
    );
    // A DoH listener on another port has no HTTP/3 to advertise.
    assert_eq!(
        doh2_get_alt_svc(&server, server.doh_addrs()[1], &path).await,
        None
    );
    // And the advertised endpoint answers.
    let reply = h3_get(&server, &path).await;
    assert_served(&Message::from_vec(&reply.body).unwrap());
}

/// The Alt-Svc header of an HTTP/2 DoH GET to `addr`.
async fn doh2_get_alt_svc(server: &Server, addr: SocketAddr, path: &str) -> Option<String> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = common::tls::tls_over(tcp, server.tls().unwrap().certificate(), &[b"h2"])
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://localhost{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .headers()
        .get(ALT_SVC)
        .map(|v| v.to_str().unwrap().to_string())
}

/// A DoQ or DoH3 handshake with a client that trusts only `cert`.
async fn try_connect(
    cert: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    addr: SocketAddr,
    alpn: &[u8],
) -> Result<quinn::Connection, ConnectionError> {
    let endpoint = client_endpoint(cert, &[alpn]);
    let connecting = endpoint.connect(addr, "localhost").unwrap();
    tokio::time::timeout(common::quic::QUIC_TIMEOUT, connecting)
        .await
        .expect("the handshake ends in time")
}

#[tokio::test]
async fn reloaded_certificate_serves_new_quic_connections() {
    let dir = common::temp_dir("quic-reload");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let write_new = || {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        made.cert.der().clone()
    };
    let first = write_new();
    let server = start_with(|s| {
        s.tls = Some(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
    });
    let (doq, doh3) = (server.doq_addrs()[0], server.doh3_addrs()[0]);
    let established = try_connect(first.clone(), doq, b"doq").await.unwrap();

    let second = write_new();
    server.tls().unwrap().reload().unwrap();
    for (addr, alpn) in [(doq, &b"doq"[..]), (doh3, &b"h3"[..])] {
        assert!(try_connect(second.clone(), addr, alpn).await.is_ok());
        assert!(try_connect(first.clone(), addr, alpn).await.is_err());
    }
    // A connection made before the reload goes on.
    assert_served(&doq_query(&established, &a_query(0, "www.example.test.")).await);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- outside programs

/// Runs `program` with `args` off the runtime; its stdout and stderr.
async fn run(program: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || run_program(program, &args))
        .await
        .unwrap()
}

/// Picket's certificate as a PEM file, for a client to trust; and the path
/// of a script under tests/peers.
fn ca_file(server: &Server, dir: &std::path::Path) -> String {
    use base64::engine::general_purpose::STANDARD;
    let der = server.tls().unwrap().certificate();
    let b64 = STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

fn peer_script(name: &str) -> String {
    format!("{}/tests/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
#[ignore = "needs dnspython and aioquic (pip); run by .ci/run"]
async fn dnspython_queries_over_doq() {
    let dir = org_policy();
    let server = start_with(|s| s.policies = PolicySource::Dir(dir.clone()));
    let ca = ca_file(&server, &dir);
    let port = server.doq_addrs()[0].port().to_string();
    let ask = |sni: String, name: &str, count: &str| {
        let args = [
            peer_script("doq_client.py"),
            "127.0.0.1".into(),
            port.clone(),
            ca.clone(),
            sni,
            name.into(),
            count.into(),
        ];
        run("python3", args.to_vec())
    };
    // Three queries on one connection, each its own stream.
    let out = ask("localhost".into(), "s1.example.test", "3").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["id=0 rcode=NOERROR a=192.0.2.1"; 3], "{out}");
    // Organization by server name; the transport is "doq".
    let out = ask(
        format!("{ACME_NAME}.doq.example.net"),
        "www.example.test",
        "1",
    )
    .await;
    assert_eq!(out.trim(), "id=0 rcode=NXDOMAIN a=", "{out}");
    let out = ask("localhost".into(), "transport.example.test", "1").await;
    assert_eq!(out.trim(), "id=0 rcode=NXDOMAIN a=", "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "needs dnspython and aioquic (pip); run by .ci/run"]
async fn dnspython_queries_over_doh3() {
    let dir = common::temp_dir("quic-doh3-peer");
    let server = start_with(|_| {});
    let ca = ca_file(&server, &dir);
    let url = format!(
        "https://127.0.0.1:{}/dns-query",
        server.doh3_addrs()[0].port()
    );
    for (method, name) in [("get", "get.example.test"), ("post", "post.example.test")] {
        let args = [
            peer_script("doh3_client.py"),
            url.clone(),
            ca.clone(),
            name.into(),
            method.into(),
        ];
        let out = run("python3", args.to_vec()).await;
        assert!(
            out.trim().ends_with("rcode=NOERROR a=192.0.2.1"),
            "{method}: {out}"
        );
        assert_eq!(server.upstream.queries_for(name), 1, "{method}: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "needs kdig 3.x with QUIC (Debian knot-dnsutils); run by .ci/run"]
async fn kdig_over_quic() {
    let server = start_with(|_| {});
    let port = server.doq_addrs()[0].port().to_string();
    let args = ["+quic", "@127.0.0.1", "-p", &port, "www.example.test", "A"];
    let out = run("kdig", args.map(String::from).to_vec()).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("QUIC"), "{out}");
    assert!(out.contains("192.0.2.1"), "{out}");
}

/// A drain closes an idle DoQ connection at once (DOQ_NO_ERROR), and one
/// with a query in flight once its answer is out; DoH3 answers in flight
/// too. The drain then reports nothing cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_doq_at_once_and_finishes_queries_in_flight() {
    let Setup { upstream, picket } = start_with(|s| {
        s.drain.grace = std::time::Duration::ZERO;
        s.drain.finish_timeout = std::time::Duration::from_secs(5);
        s.forwarder.attempt_timeout = std::time::Duration::from_secs(2);
        s.forwarder.total_timeout = std::time::Duration::from_secs(2);
    });
    let server = picket.server;
    // Upstream answers take 500 ms, so these queries are in flight when the
    // drain begins.
    upstream.set_delay(std::time::Duration::from_millis(500));
    let endpoint = doq_client(&server);
    let busy = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    let idle = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    let over_doq = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let answer = doq_query(&busy, &a_query(0, "s1.example.test.")).await;
            (std::time::Instant::now(), answer)
        })
    };
    let h3 = connect(&h3_client(&server), server.doh3_addrs()[0], "localhost").await;
    let path = get_path(&a_query(0, "s2.example.test."));
    let over_doh3 = tokio::spawn(h3_request(h3, h3_req("GET", &path).body(()).unwrap(), None));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let drained = tokio::spawn(server.drain(std::future::pending()));
    let (code, _) = close_reason(&idle).await;
    let idle_at = std::time::Instant::now();
    assert_eq!(code, 0, "DOQ_NO_ERROR");
    let (answered_at, answer) = over_doq.await.unwrap();
    assert_served(&answer);
    assert!(
        idle_at < answered_at,
        "the idle connection lasted until the answer"
    );
    assert_eq!(close_reason(&busy).await.0, 0, "closed after its answer");
    let reply = over_doh3.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_served(&Message::from_vec(&reply.body).unwrap());
    assert_eq!(drained.await.unwrap(), 0, "nothing was cut off");
}

/// 0-RTT is refused (RFC 9250 §4.5): a client that resumes a session and
/// would send its query in early data cannot.
#[tokio::test]
async fn doq_refuses_0rtt() {
    use quinn::crypto::rustls::QuicClientConfig;
    let server = start_with(|_| {});
    let mut tls =
        (*common::tls::pinned_config(server.tls().unwrap().certificate(), &[b"doq"])).clone();
    tls.enable_early_data = true;
    let crypto = QuicClientConfig::try_from(std::sync::Arc::new(tls)).unwrap();
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    // A first connection, and a round trip so that its session ticket arrives.
    let first = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    assert_served(&doq_query(&first, &a_query(0, "www.example.test.")).await);
    first.close(0u32.into(), b"");
    let connecting = endpoint
        .connect(server.doq_addrs()[0], "localhost")
        .unwrap();
    let Err(connecting) = connecting.into_0rtt() else {
        panic!("0-RTT was offered");
    };
    let second = connecting.await.expect("a full handshake instead");
    assert_served(&doq_query(&second, &a_query(0, "get.example.test.")).await);
}

/// A stream whose query does not arrive in time is reset with
/// DOQ_REQUEST_CANCELLED; the connection serves on.
#[tokio::test]
async fn doq_slow_stream_is_cancelled() {
    let server =
        start_with(|s| s.limits.doq_stream_timeout = std::time::Duration::from_millis(200));
    let endpoint = doq_client(&server);
    let connection = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // The length of a query, then nothing more and no FIN.
    send.write_all(&[0, 40]).await.unwrap();
    let read = tokio::time::timeout(common::quic::QUIC_TIMEOUT, recv.read_to_end(100))
        .await
        .expect("the server gives up on the stream");
    let err = read.unwrap_err().to_string();
    assert!(
        err.contains(&format!("reset by peer: error {DOQ_REQUEST_CANCELLED}")),
        "{err}"
    );
    assert_served(&doq_query(&connection, &a_query(0, "www.example.test.")).await);
}

/// At the DoQ connection cap a newcomer gets in and a connection that never
/// asked anything is shed (closed with DOQ_NO_ERROR), not a working one.
#[tokio::test]
async fn doq_connection_cap_sheds_a_silent_connection() {
    let server = start_with(|s| s.limits.doq_max_connections = 2);
    let endpoint = doq_client(&server);
    let working = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    assert_served(&doq_query(&working, &a_query(0, "www.example.test.")).await);
    let silent = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    let newcomer = connect(&endpoint, server.doq_addrs()[0], "localhost").await;
    assert_eq!(close_reason(&silent).await.0, 0, "the silent one is shed");
    assert_served(&doq_query(&newcomer, &a_query(0, "get.example.test.")).await);
    assert_served(&doq_query(&working, &a_query(0, "post.example.test.")).await);
}
