//! DoH (RFC 8484) and DoT (RFC 7858) end to end, over real TLS on 127.0.0.1:
//! Picket in-process with a throwaway self-signed certificate, a tiny UDP
//! responder as its upstream, and rustls + hyper clients that pin the
//! certificate. The tests marked `#[ignore]` drive curl and kdig.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use picket::app::Server;
use picket::config::{Settings, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

/// TTL of the responder's A records.
const A_TTL: u32 = 300;
/// TTL of the responder's SOA (and its negative TTL).
const SOA_TTL: u32 = 120;

// ---------------------------------------------------------------- upstream

/// A UDP responder on 127.0.0.1: `*.example.test` A → 192.0.2.1; other
/// types there NODATA, other names NXDOMAIN, both with an SOA.
fn start_responder() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = respond(&buf[..len]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn respond(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    let zone = Name::from_ascii("example.test.").unwrap();
    let name = question.name();
    if zone.zone_of(name) && name != &zone && question.query_type() == RecordType::A {
        reply.add_answer(Record::from_rdata(
            name.clone(),
            A_TTL,
            RData::A(A::new(192, 0, 2, 1)),
        ));
    } else {
        if !zone.zone_of(name) {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, SOA_TTL);
        reply.add_authority(Record::from_rdata(zone, SOA_TTL, RData::SOA(soa)));
    }
    reply.to_vec().ok()
}

/// A query for `name` A with the given ID (RD set).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    msg.to_vec().unwrap()
}

// ---------------------------------------------------------------- Picket

fn start_picket() -> Server {
    start_picket_with(|_| {})
}

fn start_picket_with(adjust: impl FnOnce(&mut Settings)) -> Server {
    let mut settings = Settings {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        upstreams: vec![start_responder()],
        doh: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        dot: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        tls: Some(TlsSource::SelfSigned {
            names: vec!["dot.example.net".into(), "*.dot.example.net".into()],
        }),
        ..Default::default()
    };
    adjust(&mut settings);
    Server::start(settings).expect("picket starts")
}

// ---------------------------------------------------------------- clients

/// Trusts exactly one certificate: the one Picket generated.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(tokio_rustls::rustls::Error::General(
                "not the pinned certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to `addr` that trusts Picket's certificate, offering `alpn`.
async fn tls_connect(
    server: &Server,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Pinned {
        cert: server.tls().unwrap().certificate(),
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Http {
    One,
    Two,
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

/// One request on a fresh connection negotiated as `http` by ALPN.
async fn send<B>(server: &Server, http: Http, req: Request<B>) -> Reply
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = server.doh_addrs()[0];
    let alpn: &[u8] = match http {
        Http::One => b"http/1.1",
        Http::Two => b"h2",
    };
    let tls = tls_connect(server, addr, "localhost", &[alpn]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "ALPN negotiated"
    );
    let io = TokioIo::new(tls);
    let response = match http {
        Http::One => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        }
        Http::Two => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        }
    };
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
    let server = start_picket();
    for http in [Http::Two, Http::One] {
        for (i, via_post) in [false, true].into_iter().enumerate() {
            let name = format!("www{i}.{http:?}.example.test.").to_lowercase();
            let wire = query(0, &name);
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
            assert_eq!(msg.metadata.message_type, MessageType::Response);
            assert_eq!(msg.answers.len(), 1, "{http:?} post={via_post}");
            assert_eq!(msg.answers[0].data, RData::A(A::new(192, 0, 2, 1)));
            // A fresh answer: the record's TTL, give or take a second of aging.
            let age = max_age(&reply);
            assert!((A_TTL - 1..=A_TTL).contains(&age), "max-age={age}");
        }
    }
}

#[tokio::test]
async fn doh_nonzero_id_is_echoed_and_negative_answers_cache_for_the_soa_ttl() {
    let server = start_picket();
    let reply = post(
        &server,
        Http::Two,
        "/dns-query",
        "application/dns-message",
        query(0xbeef, "nope.invalid."),
    )
    .await;
    let msg = reply.dns();
    assert_eq!(msg.metadata.id, 0xbeef);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    let age = max_age(&reply);
    assert!((SOA_TTL - 1..=SOA_TTL).contains(&age), "max-age={age}");
}

#[tokio::test]
async fn doh_errors_have_their_http_status() {
    let server = start_picket();
    let wire = query(7, "www.example.test.");
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

#[tokio::test]
async fn doh_token_path_reaches_the_pipeline() {
    // Until organizations are wired, every token is accepted; the routing and
    // the `doh_token` it sets are unit-tested in `listener::doh`.
    let server = start_picket();
    let wire = query(9, "tok.example.test.");
    let reply = get(
        &server,
        Http::Two,
        &format!("/dns-query/sometoken?dns={}", URL_SAFE_NO_PAD.encode(&wire)),
    )
    .await;
    assert_eq!(reply.dns().metadata.id, 9);
}

#[tokio::test]
async fn doh_http2_connection_carries_many_streams() {
    let server = start_picket();
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
            get_path(&query(i, &format!("s{i}.example.test.")))
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

#[tokio::test]
async fn stalled_tls_handshake_loses_its_connection_and_slot() {
    let server = start_picket_with(|s| {
        s.limits.tls_handshake_timeout = Duration::from_millis(300);
        s.limits.doh_max_connections = 1;
        s.limits.dot_max_connections = 1;
    });
    for addr in [server.doh_addrs()[0], server.dot_addrs()[0]] {
        // Connect and send nothing: closed after the handshake timeout.
        let started = std::time::Instant::now();
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
        let tls = tls_connect(&server, addr, "localhost", &[alpn]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    }
}

#[tokio::test]
async fn doh_idle_connection_is_closed_and_frees_its_slot() {
    let server = start_picket_with(|s| {
        // One connection is past 3/4 of a cap of one: the pressure timeout applies.
        s.limits.tcp_idle_timeout_pressure = Duration::from_millis(300);
        s.limits.doh_max_connections = 1;
    });
    for http in [Http::Two, Http::One] {
        let alpn: &[u8] = if http == Http::Two {
            b"h2"
        } else {
            b"http/1.1"
        };
        let tls = tls_connect(&server, server.doh_addrs()[0], "localhost", &[alpn]).await;
        let io = TokioIo::new(tls);
        let req = request(
            &server,
            http,
            "GET",
            &get_path(&query(1, "idle.example.test.")),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
        // The client keeps the connection open (its sender stays alive);
        // the server must end it. Returns how long that took.
        let started = std::time::Instant::now();
        let ended = match http {
            Http::Two => {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                let conn = tokio::spawn(conn);
                assert_eq!(
                    sender.send_request(req).await.unwrap().status(),
                    StatusCode::OK
                );
                let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
                drop(sender);
                ended
            }
            Http::One => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                let conn = tokio::spawn(conn);
                let response = sender.send_request(req).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.into_body().collect().await.unwrap();
                let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
                drop(sender);
                ended
            }
        };
        assert!(ended.is_ok(), "{http:?}: still open after the idle timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "{http:?}: closed after {took:?}, before the idle timeout"
        );
    }
    // Both slots came back: the cap of one still admits a client.
    assert_eq!(
        get(
            &server,
            Http::Two,
            &get_path(&query(2, "again.example.test."))
        )
        .await
        .status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- DoT

#[tokio::test]
async fn dot_answers_with_sni_and_alpn() {
    let server = start_picket();
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
        let wire = query(id, name);
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
        assert_eq!(msg.answers.len(), 1);
        assert_eq!(msg.answers[0].data, RData::A(A::new(192, 0, 2, 1)));
        ids.push(msg.metadata.id);
    }
    ids.sort();
    assert_eq!(ids, vec![0, 0x1234]);
}

// ---------------------------------------------------------------- outside programs

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
#[ignore = "needs curl and kdig (Debian curl, knot-dnsutils); run by .ci/run"]
async fn curl_resolves_through_doh() {
    let server = start_picket();
    let doh_url = format!(
        "https://127.0.0.1:{}/dns-query",
        server.doh_addrs()[0].port()
    );
    // Port 9 (discard) on a TEST-NET address: the connection fails, but the
    // verbose log shows the address curl got from Picket.
    let out = tokio::task::spawn_blocking(move || {
        run(
            "curl",
            &[
                "-sv",
                "--max-time",
                "3",
                "--doh-insecure",
                "--doh-url",
                &doh_url,
                "http://www.example.test:9/",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.contains("DoH A: 192.0.2.1"), "{out}");
    assert!(out.contains("Trying 192.0.2.1:9"), "{out}");
}

#[tokio::test]
#[ignore = "needs curl and kdig (Debian curl, knot-dnsutils); run by .ci/run"]
async fn kdig_over_https_and_tls() {
    let server = start_picket();
    let doh_port = server.doh_addrs()[0].port().to_string();
    let dot_port = server.dot_addrs()[0].port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        [
            run(
                "kdig",
                &[
                    "+https",
                    "@127.0.0.1",
                    "-p",
                    &doh_port,
                    "www.example.test",
                    "A",
                ],
            ),
            run(
                "kdig",
                &[
                    "+https-get",
                    "@127.0.0.1",
                    "-p",
                    &doh_port,
                    "get.example.test",
                    "A",
                ],
            ),
            run(
                "kdig",
                &[
                    "+tls",
                    "+tls-sni=acme.dot.example.net",
                    "@127.0.0.1",
                    "-p",
                    &dot_port,
                    "dot.example.test",
                    "A",
                ],
            ),
        ]
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
}
