//! DoH (RFC 8484) and DoT (RFC 7858) end to end, over real TLS on 127.0.0.1:
//! Picket in-process with a throwaway self-signed certificate and the test
//! authority as its upstream, queried by rustls + hyper clients that pin the
//! certificate. The tests marked `#[ignore]` drive curl and kdig.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use common::picket::{assert_served, SERVED_A_TTL, SERVED_NEGATIVE_TTL};
use common::{
    a_query, any_port, dir_with, free_addr, rcode, run_program, EncryptedPicket, PicketProcess,
    QueryBuilder,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use picket::app::Server;
use picket::config::{PolicySource, Settings, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// A DoH/DoT test: the upstream authority and Picket (cache clock stopped,
/// so served TTLs are exact).
type Setup = EncryptedPicket;

fn start() -> Setup {
    start_with(|_| {})
}

fn start_with(adjust: impl FnOnce(&mut Settings)) -> Setup {
    let mut names: Vec<String> = ["www", "get", "dot", "idle", "again", "transport", "a", "b"]
        .map(String::from)
        .to_vec();
    names.extend((0..4).map(|i| format!("w{i}")));
    names.extend((0..50).map(|i| format!("s{i}")));
    Setup::serving(&names, "dot.example.net", |settings| {
        settings.doh = vec![any_port()];
        settings.dot = vec![any_port()];
        adjust(settings);
    })
}

// ---------------------------------------------------------------- clients

/// A TLS connection to `addr` that trusts Picket's certificate, offering `alpn`.
async fn tls_connect(
    server: &Server,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    try_tls_connect(server, addr, sni, alpn)
        .await
        .expect("TLS connection")
}

/// [`tls_connect`] for a server whose only connection slot is being freed:
/// the worker that frees it and the one that accepts next may be different
/// threads, so the first tries can still find it taken.
async fn tls_connect_when_free(
    server: &Server,
    addr: SocketAddr,
    alpn: &[u8],
) -> TlsStream<TcpStream> {
    for _ in 0..50 {
        if let Ok(tls) = try_tls_connect(server, addr, "localhost", &[alpn]).await {
            return tls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr}: no connection slot came free");
}

async fn try_tls_connect(
    server: &Server,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let cert = server.tls().unwrap().certificate();
    connect_pinned(cert, addr, sni, alpn).await
}

/// A TLS connection to `addr` that accepts only `cert`.
async fn connect_pinned(
    cert: CertificateDer<'static>,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(common::tls::pinned_config(cert, alpn))
        .connect(name, tcp)
        .await
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Http {
    One,
    Two,
}

impl Http {
    /// The ALPN protocol ID that negotiates this version.
    fn alpn(self) -> &'static [u8] {
        match self {
            Http::One => b"http/1.1",
            Http::Two => b"h2",
        }
    }
}

/// What came back.
struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: hyper::header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn dns(&self) -> Message {
        assert_eq!(self.status, StatusCode::OK, "body: {:?}", self.body);
        assert_eq!(self.header(CONTENT_TYPE), "application/dns-message");
        Message::from_vec(&self.body).expect("a DNS message")
    }
}

/// A client connection of either HTTP version.
enum Sender<B> {
    One(hyper::client::conn::http1::SendRequest<B>),
    Two(hyper::client::conn::http2::SendRequest<B>),
}

impl<B> Sender<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// The client side of a connection over `io` as `http`, and its driver,
    /// on a task of its own: the task ends when the connection does.
    async fn handshake(
        http: Http,
        io: TokioIo<TlsStream<TcpStream>>,
    ) -> (Self, tokio::task::JoinHandle<Result<(), hyper::Error>>) {
        match http {
            Http::One => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                (Sender::One(sender), tokio::spawn(conn))
            }
            Http::Two => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                (Sender::Two(sender), tokio::spawn(conn))
            }
        }
    }

    async fn send(&mut self, req: Request<B>) -> hyper::Response<hyper::body::Incoming> {
        match self {
            Sender::One(sender) => sender.send_request(req).await.unwrap(),
            Sender::Two(sender) => sender.send_request(req).await.unwrap(),
        }
    }
}

/// One request on a fresh connection negotiated as `http` by ALPN.
async fn send<B>(server: &Server, http: Http, req: Request<B>) -> Reply
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = server.doh_addrs()[0];
    let alpn = http.alpn();
    let tls = tls_connect(server, addr, "localhost", &[alpn]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "ALPN negotiated"
    );
    let (mut sender, _connection) = Sender::handshake(http, TokioIo::new(tls)).await;
    let response = sender.send(req).await;
    let (head, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status: head.status,
        version: head.version,
        headers: head.headers,
        body,
    }
}

fn request(
    server: &Server,
    http: Http,
    method: &str,
    path_and_query: &str,
) -> hyper::http::request::Builder {
    let authority = format!("localhost:{}", server.doh_addrs()[0].port());
    let builder = Request::builder().method(method);
    match http {
        // HTTP/2 wants the full URI (it becomes :scheme and :authority).
        Http::Two => builder.uri(format!("https://{authority}{path_and_query}")),
        Http::One => builder.uri(path_and_query).header("host", authority),
    }
}

async fn get(server: &Server, http: Http, path_and_query: &str) -> Reply {
    let req = request(server, http, "GET", path_and_query)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(server, http, req).await
}

async fn post(server: &Server, http: Http, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let req = request(server, http, "POST", path)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(server, http, req).await
}

fn get_path(wire: &[u8]) -> String {
    format!("/dns-query?dns={}", URL_SAFE_NO_PAD.encode(wire))
}

fn max_age(reply: &Reply) -> u32 {
    let value = reply.header(CACHE_CONTROL);
    value
        .strip_prefix("max-age=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cache-control is `{value}`"))
}

// ---------------------------------------------------------------- DoH

#[tokio::test]
async fn doh_get_and_post_answer_over_both_http_versions() {
    let server = start();
    for (h, http) in [Http::Two, Http::One].into_iter().enumerate() {
        for (i, via_post) in [false, true].into_iter().enumerate() {
            let wire = a_query(0, &format!("w{}.example.test.", h * 2 + i));
            let reply = if via_post {
                post(&server, http, "/dns-query", "application/dns-message", wire).await
            } else {
                get(&server, http, &get_path(&wire)).await
            };
            let expected = if http == Http::Two {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            assert_eq!(reply.version, expected);
            let msg = reply.dns();
            assert_eq!(msg.metadata.id, 0, "ID 0 is echoed");
            assert_served(&msg);
            assert_eq!(max_age(&reply), SERVED_A_TTL, "{http:?} post={via_post}");
        }
    }
}

#[tokio::test]
async fn doh_max_age_follows_the_served_ttls() {
    let server = start();
    let wire = a_query(0x1234, "www.example.test.");
    let reply = get(&server, Http::Two, &get_path(&wire)).await;
    assert_eq!(reply.dns().metadata.id, 0x1234);
    assert_eq!(max_age(&reply), SERVED_A_TTL);
    // From the cache 100 s later: the TTL and max-age have both aged.
    server.picket.clock.advance(Duration::from_secs(100));
    let reply = get(&server, Http::One, &get_path(&wire)).await;
    assert_eq!(reply.dns().answers[0].ttl, SERVED_A_TTL - 100);
    assert_eq!(max_age(&reply), SERVED_A_TTL - 100);
}

#[tokio::test]
async fn doh_negative_answer_caches_for_the_negative_ttl() {
    let server = start();
    let wire = a_query(0xbeef, "nope.example.test.");
    let reply = post(
        &server,
        Http::Two,
        "/dns-query",
        "application/dns-message",
        wire,
    )
    .await;
    let msg = reply.dns();
    assert_eq!(msg.metadata.id, 0xbeef);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    // The SOA's own TTL is 3600; its MINIMUM (RFC 2308) bounds the caching.
    assert_eq!(max_age(&reply), SERVED_NEGATIVE_TTL);
}

#[tokio::test]
async fn doh_errors_have_their_http_status() {
    let server = start();
    let wire = a_query(7, "www.example.test.");
    for http in [Http::Two, Http::One] {
        let put = request(&server, http, "PUT", "/dns-query")
            .body(Full::new(Bytes::from(wire.clone())))
            .unwrap();
        let reply = send(&server, http, put).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{http:?}");
        assert_eq!(reply.header(hyper::header::ALLOW), "GET, POST");

        let reply = post(
            &server,
            http,
            "/dns-query",
            "application/octet-stream",
            wire.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{http:?}");

        let reply = get(&server, http, "/dns-query?dns=not*base64!").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{http:?} bad base64");

        let reply = get(&server, http, "/dns-query?name=www.example.test").await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{http:?} no dns parameter"
        );

        let garbage = b"this is not a DNS message".to_vec();
        let reply = get(&server, http, &get_path(&garbage)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{http:?} garbage GET"
        );
        let reply = post(
            &server,
            http,
            "/dns-query",
            "application/dns-message",
            garbage,
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{http:?} garbage POST"
        );

        // Announced size over one DNS message: refused before reading.
        // No size announced: refused once the body passes the limit.
        assert_eq!(
            too_large(&server, http, true).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{http:?} announced"
        );
        assert_eq!(
            too_large(&server, http, false).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{http:?} streamed"
        );

        for path in ["/", "/dns", "/dns-query/", "/dns-query/a/b", "/dns-queryx"] {
            let reply = get(
                &server,
                http,
                &format!("{path}?dns={}", URL_SAFE_NO_PAD.encode(&wire)),
            )
            .await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{http:?} {path}");
        }
    }
}

/// The status of a POST of 1 MiB, with or without a Content-Length. The
/// server answers before the body is through, so the client must not insist
/// on sending all of it first: hyper's HTTP/2 client copes, but its HTTP/1.1
/// client reports the broken pipe instead of the response, so HTTP/1.1 is
/// spoken by hand here.
async fn too_large(server: &Server, http: Http, announced: bool) -> StatusCode {
    const SIZE: usize = 1 << 20;
    if http == Http::Two {
        let builder = request(server, http, "POST", "/dns-query")
            .header(CONTENT_TYPE, "application/dns-message");
        let req = if announced {
            builder.body(Sized::new(SIZE)).unwrap()
        } else {
            builder.body(Sized::unannounced(SIZE)).unwrap()
        };
        return send(server, http, req).await.status;
    }
    let tls = tls_connect(server, server.doh_addrs()[0], "localhost", &[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let length = if announced {
        format!("content-length: {SIZE}")
    } else {
        "transfer-encoding: chunked".to_string()
    };
    let head = format!("POST /dns-query HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/dns-message\r\n{length}\r\n\r\n");
    tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![0u8; 16 << 10];
        for _ in 0..SIZE / chunk.len() {
            if !announced {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
            }
            writer.write_all(&chunk).await?;
            if !announced {
                writer.write_all(b"\r\n").await?;
            }
        }
        writer
            .write_all(if announced { b"" } else { b"0\r\n\r\n" })
            .await
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = reader
            .read(&mut buf)
            .await
            .expect("a response before the connection closes");
        assert!(
            n > 0,
            "closed without a response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&response[9..12]).to_string();
    StatusCode::from_bytes(status.as_bytes()).unwrap()
}

/// A request body of zeros, its length announced or not (then chunked in
/// HTTP/1.1, plain DATA frames in HTTP/2).
struct Sized {
    left: usize,
    announced: bool,
}

impl Sized {
    fn new(len: usize) -> Self {
        Self {
            left: len,
            announced: true,
        }
    }

    fn unannounced(len: usize) -> Self {
        Self {
            left: len,
            announced: false,
        }
    }
}

impl Body for Sized {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let n = self.left.min(16 << 10);
        self.left -= n;
        std::task::Poll::Ready((n > 0).then(|| Ok(Frame::data(Bytes::from(vec![0; n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.announced {
            SizeHint::with_exact(self.left as u64)
        } else {
            SizeHint::new()
        }
    }
}

/// Organization `acme`'s DoH path token and DoT server name label in
/// [`org_policy`] (made by `picket token`: guessable ones do not load).
const ACME_TOKEN: &str = "loquhpxg11aop444mma4rc9zs";
const ACME_DOT_NAME: &str = "ejj3rj55qbpyndwtwn2g2hvxk";

/// A policy directory: organization `acme` (DoH token [`ACME_TOKEN`], DoT
/// name [`ACME_DOT_NAME`]) blocks www.example.test; for everyone, DoH
/// queries for transport.example.test are blocked.
fn org_policy() -> PathBuf {
    let policy = r#"{
      "global": { "rules": [
        { "id": "doh-only", "expression": "dns.transport == \"doh\" and dns.fqdn == \"transport.example.test\"", "action": "block" }
      ] },
      "organizations": [
        { "id": "acme", "doh_tokens": ["ACME_TOKEN"], "dot_names": ["ACME_DOT_NAME"],
          "rules": [ { "id": "acme-www", "expression": "dns.fqdn == \"www.example.test\"", "action": "block" } ] }
      ]
    }"#
    .replace("ACME_TOKEN", ACME_TOKEN)
    .replace("ACME_DOT_NAME", ACME_DOT_NAME);
    dir_with("doh-policy", &[("policy.json", &policy)])
}

#[tokio::test]
async fn doh_token_and_dot_sni_pick_the_organization() {
    let dir = org_policy();
    let server = start_with(|s| s.policies = PolicySource::Dir(dir.clone()));
    let dns = format!(
        "dns={}",
        URL_SAFE_NO_PAD.encode(a_query(1, "www.example.test."))
    );
    let acme = get(
        &server,
        Http::Two,
        &format!("/dns-query/{ACME_TOKEN}?{dns}"),
    )
    .await;
    let blocked = rcode(&acme.dns());
    assert_eq!(blocked, ResponseCode::NXDomain, "acme's rule blocks");
    let anyone = get(&server, Http::Two, &format!("/dns-query?{dns}")).await;
    assert_served(&anyone.dns());
    // A token that names no organization: 404, like any unknown path.
    let unknown = get(&server, Http::One, &format!("/dns-query/nosuchtoken?{dns}")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // DoT: the first label of the server name.
    let acme_sni = format!("{ACME_DOT_NAME}.dot.example.net");
    for (sni, blocked) in [
        (acme_sni.as_str(), true),
        ("acme.dot.example.net", false),
        ("other.dot.example.net", false),
    ] {
        let mut tls = tls_connect(&server, server.dot_addrs()[0], sni, &[b"dot"]).await;
        let msg = dot_exchange(&mut tls, &a_query(2, "www.example.test.")).await;
        if blocked {
            assert_eq!(rcode(&msg), ResponseCode::NXDomain, "{sni}");
        } else {
            assert_served(&msg);
        }
    }

    // The transport reaches the policy too.
    let path = get_path(&a_query(3, "transport.example.test."));
    assert_eq!(
        rcode(&get(&server, Http::Two, &path).await.dns()),
        ResponseCode::NXDomain
    );
    let mut tls = tls_connect(&server, server.dot_addrs()[0], "localhost", &[b"dot"]).await;
    assert_served(&dot_exchange(&mut tls, &a_query(4, "transport.example.test.")).await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One query and its answer over an established DoT connection.
async fn dot_exchange(tls: &mut TlsStream<TcpStream>, wire: &[u8]) -> Message {
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    tls.write_all(&framed).await.unwrap();
    let len = tls.read_u16().await.unwrap() as usize;
    let mut answer = vec![0; len];
    tls.read_exact(&mut answer).await.unwrap();
    Message::from_vec(&answer).unwrap()
}

#[tokio::test]
async fn doh_http2_connection_carries_many_streams() {
    let server = start();
    let tls = tls_connect(&server, server.doh_addrs()[0], "localhost", &[b"h2"]).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..50u16 {
        let mut sender = sender.clone();
        let uri = format!(
            "https://localhost{}",
            get_path(&a_query(i, &format!("s{i}.example.test.")))
        );
        tasks.push(tokio::spawn(async move {
            let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
            let response = sender.send_request(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            Message::from_vec(&body).unwrap().metadata.id
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), i as u16);
    }
}

/// A response's HTTP/2 frames end a TLS record before the next response
/// starts: dnsperf's DoH client (2.10) reads one record at a time and loses
/// an answer whose DATA comes in the read that completed the one before
/// (it pauses nghttp2 on the chunk, which nghttp2 counts as consumed).
/// Cache hits asked many at once are the answers the server has ready
/// together.
#[tokio::test]
async fn doh_http2_responses_each_end_a_tls_record() {
    let server = start();
    let cert = server.tls().unwrap().certificate();
    let addr = server.doh_addrs()[0];
    let records = tokio::task::spawn_blocking(move || {
        let mut client = RecordClient::connect(cert, addr);
        let names: Vec<String> = (0..20).map(|i| format!("s{i}.example.test.")).collect();
        // Misses first, to fill the cache; then the same names as hits.
        let mut records = client.exchange(&names, 1);
        records.extend(client.exchange(&names, 41));
        records
    })
    .await
    .unwrap();
    let mut answers = 0;
    for (i, record) in records.iter().enumerate() {
        for (at, frame) in record.iter().enumerate() {
            if frame.ends_stream() {
                answers += 1;
                assert_eq!(
                    at,
                    record.len() - 1,
                    "record {i}: a response ends mid-record, before {:?}",
                    &record[at + 1..]
                );
            }
        }
    }
    assert_eq!(answers, 40);
}

/// An HTTP/2 frame as a client saw it.
#[derive(Debug)]
struct SeenFrame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl SeenFrame {
    /// DATA or HEADERS with END_STREAM: the last frame of a response.
    fn ends_stream(&self) -> bool {
        self.kind <= 1 && self.flags & 1 != 0
    }
}

/// An HTTP/2 DoH client on a blocking rustls connection that takes the
/// server's TLS records one at a time, as OpenSSL's `SSL_read` hands them to
/// dnsperf.
struct RecordClient {
    tcp: std::net::TcpStream,
    tls: tokio_rustls::rustls::ClientConnection,
    /// Plaintext of a frame not complete at the end of the last record.
    partial: Vec<u8>,
}

impl RecordClient {
    fn connect(cert: CertificateDer<'static>, addr: SocketAddr) -> Self {
        let config = common::tls::pinned_config(cert, &[b"h2"]);
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::rustls::ClientConnection::new(config, name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        let mut client = Self {
            tcp,
            tls,
            partial: Vec::new(),
        };
        client.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        client
    }

    fn write(&mut self, plaintext: &[u8]) {
        std::io::Write::write_all(&mut self.tls.writer(), plaintext).unwrap();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tcp).unwrap();
        }
    }

    /// GETs of A `names` on streams from `first_stream`, all in one write;
    /// the frames of each record read until every response has ended.
    /// Checks each answer carries its query's ID.
    fn exchange(&mut self, names: &[String], first_stream: u32) -> Vec<Vec<SeenFrame>> {
        let mut requests = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let stream = first_stream + 2 * i as u32;
            let path = get_path(&common::a_query(stream as u16, name));
            requests.extend(get_headers_frame(stream, &path));
        }
        self.write(&requests);
        let mut records = Vec::new();
        let mut ended = 0;
        while ended < names.len() {
            let frames = self.read_record();
            for frame in frames
                .iter()
                .filter(|f| f.kind == 0 && !f.payload.is_empty())
            {
                let id = Message::from_vec(&frame.payload)
                    .expect("a DNS answer")
                    .metadata
                    .id;
                assert_eq!(
                    u32::from(id),
                    frame.stream,
                    "the answer on stream {}",
                    frame.stream
                );
            }
            ended += frames.iter().filter(|f| f.ends_stream()).count();
            records.push(frames);
        }
        records
    }

    /// The HTTP/2 frames that end in the server's next TLS record.
    fn read_record(&mut self) -> Vec<SeenFrame> {
        use std::io::Read;
        let mut record = vec![0u8; 5];
        self.tcp.read_exact(&mut record).unwrap();
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        record.resize(5 + len, 0);
        self.tcp.read_exact(&mut record[5..]).unwrap();
        self.tls.read_tls(&mut &record[..]).unwrap();
        self.tls.process_new_packets().unwrap();
        let mut plaintext = std::mem::take(&mut self.partial);
        match self.tls.reader().read_to_end(&mut plaintext) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the record's plaintext: {e}"),
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while plaintext.len() - at >= 9 {
            let head = &plaintext[at..at + 9];
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            if plaintext.len() - at - 9 < len {
                break;
            }
            frames.push(SeenFrame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload: plaintext[at + 9..at + 9 + len].to_vec(),
            });
            at += 9 + len;
        }
        self.partial = plaintext.split_off(at);
        frames
    }
}

/// A HEADERS frame (END_STREAM, END_HEADERS) that GETs `path` on `stream`,
/// its fields HPACK literals without indexing (RFC 7541 §6.2.2).
fn get_headers_frame(stream: u32, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
        ("accept", "application/dns-message"),
    ] {
        block.push(0);
        for text in [name, value] {
            hpack_length(&mut block, text.len());
            block.extend_from_slice(text.as_bytes());
        }
    }
    let len = (block.len() as u32).to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], 0x1, 0x5];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend(block);
    frame
}

/// A string length as an HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
fn hpack_length(out: &mut Vec<u8>, mut len: usize) {
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(127);
    len -= 127;
    while len >= 128 {
        out.push((len % 128) as u8 | 0x80);
        len /= 128;
    }
    out.push(len as u8);
}

#[tokio::test]
async fn doh_http2_by_alpn_server_speaks_first() {
    // With h2 settled by ALPN, the server sends its SETTINGS without waiting
    // for the client's preface; some clients (dnsperf) wait for it.
    let server = start();
    let mut tls = tls_connect(&server, server.doh_addrs()[0], "localhost", &[b"h2"]).await;
    let mut frame_header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), tls.read_exact(&mut frame_header))
        .await
        .expect("a frame from the server before the client says anything")
        .unwrap();
    assert_eq!(frame_header[3], 0x4, "a SETTINGS frame");
}

#[tokio::test]
async fn stalled_tls_handshake_loses_its_connection_and_slot() {
    let server = start_with(|s| {
        s.limits.tls_handshake_timeout = Duration::from_millis(300);
        s.limits.doh_max_connections = 1;
        s.limits.dot_max_connections = 1;
    });
    for addr in [server.doh_addrs()[0], server.dot_addrs()[0]] {
        // Connect and send nothing: closed after the handshake timeout.
        let started = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{addr}: {closed:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{addr}: closed too early"
        );
        // The only slot is free again: a real client gets through.
        let alpn: &[u8] = if addr == server.doh_addrs()[0] {
            b"h2"
        } else {
            b"dot"
        };
        let tls = tls_connect_when_free(&server, addr, alpn).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    }
}

#[tokio::test]
async fn doh_idle_connection_is_closed_and_frees_its_slot() {
    let server = start_with(|s| {
        // One connection is past 3/4 of a cap of one: the pressure timeout applies.
        s.limits.tcp_idle_timeout_pressure = Duration::from_millis(300);
        s.limits.doh_max_connections = 1;
    });
    for http in [Http::Two, Http::One] {
        let alpn = http.alpn();
        let tls = tls_connect_when_free(&server, server.doh_addrs()[0], alpn).await;
        let io = TokioIo::new(tls);
        let req = request(
            &server,
            http,
            "GET",
            &get_path(&a_query(1, "idle.example.test.")),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
        // The client keeps the connection open (its sender stays alive);
        // the server must end it. Returns how long that took.
        let started = Instant::now();
        let (mut sender, conn) = Sender::handshake(http, io).await;
        let response = sender.send(req).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
        drop(sender);
        assert!(ended.is_ok(), "{http:?}: still open after the idle timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "{http:?}: closed after {took:?}, before the idle timeout"
        );
    }
    // The slot came back: the cap of one still admits a client.
    let tls = tls_connect_when_free(&server, server.doh_addrs()[0], b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn doh_slow_body_gets_408() {
    let server = start_with(|s| s.limits.doh_body_timeout = Duration::from_millis(200));
    let tls = tls_connect(&server, server.doh_addrs()[0], "localhost", &[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    // Ten bytes of an announced hundred, then nothing.
    let head = "POST /dns-query HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/dns-message\r\ncontent-length: 100\r\n\r\n";
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(&[0; 10]).await.unwrap();
    let mut response = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(3), reader.read_exact(&mut response))
        .await
        .expect("an answer before the idle timeout")
        .unwrap();
    assert_eq!(&response, b"HTTP/1.1 408");
}

#[tokio::test]
async fn doh_keep_alive_outlasts_the_request_timeout() {
    let server = start_with(|s| s.limits.doh_body_timeout = Duration::from_millis(100));
    for http in [Http::One, Http::Two] {
        let alpn = http.alpn();
        let tls = tls_connect(&server, server.doh_addrs()[0], "localhost", &[alpn]).await;
        let io = TokioIo::new(tls);
        let req = || {
            request(
                &server,
                http,
                "GET",
                &get_path(&a_query(3, "www.example.test.")),
            )
            .body(Full::new(Bytes::new()))
            .unwrap()
        };
        // Two requests on one connection, idle in between for longer than a
        // request may take to arrive, but well within the idle timeout.
        let (mut sender, _connection) = Sender::handshake(http, io).await;
        for _ in 0..2 {
            let response = sender.send(req()).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.into_body().collect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
}

// ---------------------------------------------------------------- DoT

#[tokio::test]
async fn dot_answers_with_sni_and_alpn() {
    let server = start();
    let mut tls = tls_connect(
        &server,
        server.dot_addrs()[0],
        "acme.dot.example.net",
        &[b"dot"],
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    // Two pipelined queries on one connection.
    for (id, name) in [(0u16, "a.example.test."), (0x1234, "b.example.test.")] {
        let wire = a_query(id, name);
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        tls.write_all(&framed).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        let len = tls.read_u16().await.unwrap() as usize;
        let mut answer = vec![0; len];
        tls.read_exact(&mut answer).await.unwrap();
        let msg = Message::from_vec(&answer).unwrap();
        assert_served(&msg);
        ids.push(msg.metadata.id);
    }
    ids.sort();
    assert_eq!(ids, vec![0, 0x1234]);
}

/// RFC 7830 §4 and RFC 8467 §4.1: a padded query over DoT gets a response padded to a
/// multiple of 468 bytes, a cache hit as much as a miss; an unpadded one gets no padding.
#[tokio::test]
async fn dot_pads_the_answers_to_padded_queries() {
    let server = start();
    let mut tls = tls_connect(&server, server.dot_addrs()[0], "localhost", &[b"dot"]).await;
    let padded = |id| {
        QueryBuilder::new("www.example.test", RecordType::A)
            .id(id)
            .option(EdnsOption::Unknown(12, vec![0; 60]))
            .to_bytes()
    };
    for id in [1, 2] {
        let wire = padded(id);
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        tls.write_all(&framed).await.unwrap();
        let len = tls.read_u16().await.unwrap() as usize;
        let mut answer = vec![0; len];
        tls.read_exact(&mut answer).await.unwrap();
        assert_eq!(len % 468, 0, "query {id}: {len} bytes");
        let msg = Message::from_vec(&answer).unwrap();
        assert_served(&msg);
        let options = msg.edns.expect("an OPT").options().as_ref().len();
        assert_eq!(options, 1, "the padding option");
    }
    let plain = dot_exchange(&mut tls, &a_query(3, "www.example.test.")).await;
    assert!(plain.edns.expect("an OPT").options().as_ref().is_empty());
}

// ---------------------------------------------------------------- drain

/// An HTTP/2 connection to DoH: its request sender and its driving task.
async fn h2_connection(
    server: &Server,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = tls_connect(server, server.doh_addrs()[0], "localhost", &[b"h2"]).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_doh_at_once_and_finishes_exchanges_in_flight() {
    let Setup { upstream, picket } = start_with(|s| {
        s.drain.grace = Duration::ZERO;
        s.drain.finish_timeout = Duration::from_secs(5);
        s.forwarder.attempt_timeout = Duration::from_secs(2);
        s.forwarder.total_timeout = Duration::from_secs(2);
    });
    let server = picket.server;
    let (doh, dot) = (server.doh_addrs()[0], server.dot_addrs()[0]);
    // Upstream answers take 500 ms, so these queries are in flight when the
    // drain closes the listeners.
    upstream.set_delay(Duration::from_millis(500));
    let (mut busy, _busy_conn) = h2_connection(&server).await;
    let uri = format!(
        "https://localhost{}",
        get_path(&a_query(1, "w0.example.test."))
    );
    let over_doh = tokio::spawn(async move {
        let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
        let response = busy.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (Instant::now(), body)
    });
    let mut dot_tls = tls_connect(&server, dot, "localhost", &[b"dot"]).await;
    let over_dot =
        tokio::spawn(
            async move { dot_exchange(&mut dot_tls, &a_query(2, "w1.example.test.")).await },
        );
    // A connection with nothing to do.
    let (_idle, idle_conn) = h2_connection(&server).await;
    let idle_ended = tokio::spawn(async move { (Instant::now(), idle_conn.await) });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let drained = tokio::spawn(server.drain(std::future::pending()));
    // The idle connection gets its GOAWAY at once and ends cleanly, while
    // the answers still in flight arrive later, and then the drain ends.
    let (idle_at, idle_result) = idle_ended.await.unwrap();
    assert!(
        idle_result.unwrap().is_ok(),
        "the idle connection did not end cleanly"
    );
    let (answered_at, body) = over_doh.await.unwrap();
    assert!(
        idle_at < answered_at,
        "the idle connection lasted until the drain's end"
    );
    assert_served(&Message::from_vec(&body).unwrap());
    assert_served(&over_dot.await.unwrap());
    assert_eq!(drained.await.unwrap(), 0, "nothing was cut off");
    // The listeners are gone.
    assert!(TcpStream::connect(doh).await.is_err());
    assert!(TcpStream::connect(dot).await.is_err());
}

// ---------------------------------------------------------------- coalescing

/// Waits (real time, at most 3 s) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        common::real_sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A DoH client that resets its stream while Picket waits on the upstream
/// takes only its own wait away: the queries that joined its fetch are
/// answered by the one upstream query already sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_doh_stream_leaves_its_fetch_to_the_queries_waiting_on_it() {
    let Setup { upstream, picket } = start_with(|s| {
        // One attempt outlasts the delay, so each fetch is one upstream query.
        s.forwarder.attempt_timeout = Duration::from_secs(2);
        s.forwarder.total_timeout = Duration::from_secs(2);
    });
    let name = "s42.example.test.";
    upstream.set_delay(Duration::from_millis(600));
    let (mut leader, _leader_conn) = h2_connection(&picket.server).await;
    let uri = format!("https://localhost{}", get_path(&a_query(1, name)));
    let leading = tokio::spawn(async move {
        let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
        leader.send_request(req).await
    });
    wait_until("the DoH query reaches the upstream", || {
        upstream.queries_for(name) == 1
    })
    .await;
    let followers: Vec<_> = (0..8)
        .map(|_| {
            let addr = picket.addr;
            tokio::spawn(async move { common::query_udp(addr, name, RecordType::A).await })
        })
        .collect();
    common::real_sleep(Duration::from_millis(100)).await;
    // Dropping the response future resets the HTTP/2 stream (RST_STREAM).
    leading.abort();
    for follower in followers {
        assert_served(&follower.await.unwrap());
    }
    assert_eq!(upstream.queries_for(name), 1, "one upstream query in all");
}

// ---------------------------------------------------------------- reload

/// A certificate and key as PEM files in a fresh directory.
struct CertFiles {
    dir: std::path::PathBuf,
}

impl CertFiles {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("picket-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.join("key.pem")
    }

    /// Writes a new certificate for localhost; returns it (DER).
    fn write_new(&self) -> CertificateDer<'static> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(self.cert(), made.cert.pem()).unwrap();
        std::fs::write(self.key(), made.signing_key.serialize_pem()).unwrap();
        made.cert.der().clone()
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn reloaded_certificate_serves_new_connections() {
    let files = CertFiles::new("reload");
    let first = files.write_new();
    let server = start_with(|s| {
        s.tls = Some(TlsSource::Files {
            cert: files.cert(),
            key: files.key(),
        })
    });
    let (doh, dot) = (server.doh_addrs()[0], server.dot_addrs()[0]);
    let established = connect_pinned(first.clone(), doh, "localhost", &[b"h2"])
        .await
        .unwrap();

    let second = files.write_new();
    server.tls().unwrap().reload().unwrap();
    for (addr, alpn) in [(doh, &b"h2"[..]), (dot, &b"dot"[..])] {
        assert!(connect_pinned(second.clone(), addr, "localhost", &[alpn])
            .await
            .is_ok());
        assert!(connect_pinned(first.clone(), addr, "localhost", &[alpn])
            .await
            .is_err());
    }
    // A connection made before the reload goes on.
    let io = TokioIo::new(established);
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = request(
        &server,
        Http::Two,
        "GET",
        &get_path(&a_query(5, "www.example.test.")),
    )
    .body(Full::new(Bytes::new()))
    .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_running_binary() {
    let files = CertFiles::new("sighup");
    let first = files.write_new();
    let doh = free_addr();
    let binary = env!("CARGO_BIN_EXE_picket");
    let help = run_program(binary, &["serve", "--help"]);
    assert!(
        help.contains("--tls-cert"),
        "{binary} is not this build (another checkout sharing CARGO_TARGET_DIR rebuilt it?)"
    );
    let picket = PicketProcess::options()
        .upstream("127.0.0.1:9")
        .threads(1)
        .flag("--doh", doh.to_string())
        .flag("--tls-cert", files.cert())
        .flag("--tls-key", files.key())
        .quiet()
        .spawn_with(|c| {
            c.stdout(std::process::Stdio::null());
        });
    let presents = |cert: CertificateDer<'static>| async move {
        for _ in 0..100 {
            if connect_pinned(cert.clone(), doh, "localhost", &[b"h2"])
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let started = presents(first).await;
    let second = files.write_new();
    // SAFETY: kill(2) on the child we spawned.
    let signalled = unsafe { libc::kill(picket.child.id() as libc::pid_t, libc::SIGHUP) } == 0;
    let reloaded = signalled && presents(second).await;
    drop(picket);
    assert!(started, "picket did not start serving DoH on {doh}");
    assert!(reloaded, "SIGHUP did not bring in the new certificate");
}

// ---------------------------------------------------------------- outside programs

#[tokio::test]
#[ignore = "needs curl and kdig (Debian curl, knot-dnsutils); run by .ci/run"]
async fn curl_resolves_through_doh() {
    let server = start();
    // Port 9 (discard) on a TEST-NET address: the connection fails, but the
    // verbose log shows the address curl got from Picket.
    let out = curl_with_doh(&server, "3", "http://www.example.test:9/").await;
    assert!(out.contains("DoH A: 192.0.2.1"), "{out}");
    assert!(out.contains("Trying 192.0.2.1:9"), "{out}");
}

/// curl fetching `url` within `max_time` seconds, resolving through Picket's
/// DoH listener (its certificate unchecked): curl's verbose output.
async fn curl_with_doh(server: &Setup, max_time: &str, url: &str) -> String {
    let doh_url = format!(
        "https://127.0.0.1:{}/dns-query",
        server.doh_addrs()[0].port()
    );
    let args = [
        "-sSv",
        "--max-time",
        max_time,
        "--doh-insecure",
        "--doh-url",
        &doh_url,
        url,
    ]
    .map(String::from);
    tokio::task::spawn_blocking(move || run_program("curl", &args))
        .await
        .unwrap()
}

/// curl takes the 504 of a dropped query for a failed lookup.
#[tokio::test]
#[ignore = "needs curl (Debian curl); run by .ci/run"]
async fn curl_fails_the_lookup_of_a_dropped_name() {
    let dir = drop_policy();
    let server = start_with(|s| s.policies = PolicySource::Dir(dir.clone()));
    let out = curl_with_doh(&server, "10", "http://drop.example.test:9/").await;
    assert!(
        out.contains("curl: (6)"),
        "curl exits 6, could not resolve: {out}"
    );
    assert!(!out.contains(":9..."), "no address was tried: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "needs curl and kdig (Debian curl, knot-dnsutils); run by .ci/run"]
async fn kdig_over_https_and_tls() {
    let server = start();
    let doh_port = server.doh_addrs()[0].port().to_string();
    let dot_port = server.dot_addrs()[0].port().to_string();
    // (transport options, port, name asked)
    let runs = [
        (vec!["+https"], doh_port.clone(), "www"),
        (vec!["+https-get"], doh_port, "get"),
        (
            vec!["+tls", "+tls-sni=acme.dot.example.net"],
            dot_port,
            "dot",
        ),
    ];
    let out = tokio::task::spawn_blocking(move || {
        runs.map(|(options, port, name)| {
            let name = format!("{name}.example.test");
            let mut args = options;
            args.extend(["@127.0.0.1", "-p", &port, &name, "A"]);
            run_program("kdig", &args)
        })
    })
    .await
    .unwrap();
    for (out, name) in out.iter().zip(["www", "get", "dot"]) {
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains(&format!("{name}.example.test.")), "{out}");
        assert!(out.contains("192.0.2.1"), "{out}");
    }
    assert!(out[0].contains("HTTP/2-POST"), "{}", out[0]);
    assert!(out[1].contains("HTTP/2-GET"), "{}", out[1]);
    assert!(out[2].contains("TLS"), "{}", out[2]);
    // kdig pads its DoT query (+padding): the answer is padded to 468 bytes.
    let dot_port = server.dot_addrs()[0].port().to_string();
    let padded = tokio::task::spawn_blocking(move || {
        let args = ["+tls", "+padding", "@127.0.0.1", "-p", &dot_port];
        run_program("kdig", &[&args[..], &["www.example.test", "A"]].concat())
    })
    .await
    .unwrap();
    assert!(padded.contains("status: NOERROR"), "{padded}");
    assert!(padded.contains("PADDING: "), "{padded}");
    assert!(padded.contains("Received 468 B"), "{padded}");
}

/// dnsperf's DoH client gets every answer, GET and POST, with many
/// queries in flight on its connection.
#[tokio::test]
#[ignore = "needs dnsperf (Debian package dnsperf); .ci/run installs it"]
async fn dnsperf_over_doh_completes_every_query() {
    let server = start();
    let names: String = (0..50).map(|i| format!("s{i}.example.test A\n")).collect();
    let dir = dir_with("doh-dnsperf", &[("queries", &names)]);
    let port = server.doh_addrs()[0].port();
    for method in ["GET", "POST"] {
        for in_flight in ["2", "10"] {
            let args = [
                "-m",
                "doh",
                "-O",
                &format!("doh-method={method}"),
                "-s",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                dir.join("queries").to_str().unwrap(),
                "-c",
                "1",
                "-q",
                in_flight,
                "-n",
                "2",
                "-t",
                "5",
            ]
            .map(String::from);
            let out = tokio::task::spawn_blocking(move || run_program("dnsperf", &args))
                .await
                .unwrap();
            let what = format!("{method}, {in_flight} in flight");
            assert!(out.contains("Queries sent:         100\n"), "{what}: {out}");
            assert!(
                out.contains("Queries completed:    100 (100.00%)"),
                "{what}: {out}"
            );
            assert!(out.contains("Reconnections:        0\n"), "{what}: {out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A policy directory: drop.example.test is dropped at the request phase,
/// a.example.test at the response phase (by its answer's address).
fn drop_policy() -> PathBuf {
    let policy = r#"{ "global": { "rules": [
        { "id": "drop-query", "expression": "dns.fqdn == \"drop.example.test\"", "action": "drop" },
        { "id": "drop-answer", "expression": "dns.response.ip in {192.0.2.1} and dns.fqdn == \"a.example.test\"", "action": "drop" }
    ] } }"#;
    dir_with("doh-drop", &[("policy.json", policy)])
}

/// A query a `drop` rule does not answer, in either phase, is a 504 with no
/// DNS message (not the 400 of a request that is no DNS query).
#[tokio::test]
async fn doh_drop_is_504_in_both_phases() {
    let dir = drop_policy();
    let server = start_with(|s| s.policies = PolicySource::Dir(dir.clone()));
    for http in [Http::Two, Http::One] {
        let reply = get(&server, http, &get_path(&a_query(1, "drop.example.test."))).await;
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{http:?} request phase"
        );
        assert_ne!(reply.header(CONTENT_TYPE), "application/dns-message");
        // From the upstream, then from the cache.
        for round in 0..2 {
            let path = "/dns-query";
            let body = a_query(2, "a.example.test.");
            let reply = post(&server, http, path, "application/dns-message", body).await;
            assert_eq!(
                reply.status,
                StatusCode::GATEWAY_TIMEOUT,
                "{http:?} response phase, round {round}: {:?}",
                reply.body
            );
        }
    }
    assert_eq!(server.upstream.queries_for("drop.example.test"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An upstream's FORMERR is a DNS-level outcome like any other: a 200
/// carrying the message, not the 400 of a request that is no DNS query. The
/// message is SERVFAIL: the upstream could not read Picket's query, which
/// says nothing of the client's.
#[tokio::test]
async fn doh_upstream_formerr_is_a_dns_message() {
    let server = start();
    server.upstream.set_rcode(Some(ResponseCode::FormErr));
    for http in [Http::Two, Http::One] {
        let reply = get(&server, http, &get_path(&a_query(3, "b.example.test."))).await;
        let msg = reply.dns();
        assert_eq!(msg.metadata.id, 3, "{http:?}");
        assert_eq!(rcode(&msg), ResponseCode::ServFail, "{http:?}");
    }
}

/// A client outside the access list gets the REFUSED message every
/// transport gets (200), not an HTTP error; what is no DNS query stays 400.
#[tokio::test]
async fn doh_access_list_refusal_is_a_refused_message() {
    let server = start_with(|s| {
        s.access = common::allow_only(&["192.0.2.0/24"]);
    });
    for http in [Http::Two, Http::One] {
        let reply = get(&server, http, &get_path(&a_query(4, "www.example.test."))).await;
        let msg = reply.dns();
        assert_eq!(msg.metadata.id, 4);
        assert_eq!(rcode(&msg), ResponseCode::Refused, "{http:?}");
        let garbage = get(&server, http, &get_path(b"not a DNS message")).await;
        assert_eq!(garbage.status, StatusCode::BAD_REQUEST, "{http:?}");
    }
    assert_eq!(server.upstream.queries(), 0);
}
