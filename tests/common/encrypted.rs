//! Encrypted fronts for a test [`Authority`]: DNS over TLS, over HTTPS
//! (HTTP/2, hyper's server) and over QUIC (quinn), each answering from the
//! authority's zones and counted in its query counters, so Picket can be
//! tested against real encrypted upstreams on loopback.
//!
//! Each front runs on its own thread and runtime, like the authority, and
//! counts the connections it is offered and the handshakes that finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::authority::{Authority, Shared};
use super::respond::Transport;
use super::server::serve_stream;
use super::server_thread::ServerThread;

/// What a DoH front saw of one request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub version: String,
}

#[derive(Default)]
struct Counts {
    /// TCP connections accepted / QUIC connections offered.
    offered: AtomicUsize,
    /// TLS (or QUIC) handshakes finished.
    established: AtomicUsize,
    /// Established connections that have ended since.
    closed: AtomicUsize,
    requests: Mutex<Vec<HttpRequest>>,
}

/// One encrypted listener in front of an authority; dropping it stops it.
pub struct EncryptedFront {
    addr: SocketAddr,
    counts: Arc<Counts>,
    kick: watch::Sender<u64>,
    _thread: ServerThread,
}

#[derive(Clone, Copy)]
enum Kind {
    Dot,
    Doh,
    Doq,
}

impl EncryptedFront {
    /// DNS over TLS (RFC 7858) on a free loopback port: the authority's
    /// TCP handling (pipelined, answers in any order) inside TLS.
    pub fn dot(authority: &Authority, tls: Arc<ServerConfig>) -> Self {
        Self::start(authority, tls, Kind::Dot)
    }

    /// DNS over HTTPS (RFC 8484) over HTTP/2 at `/dns-query`.
    pub fn doh(authority: &Authority, tls: Arc<ServerConfig>) -> Self {
        Self::start(authority, tls, Kind::Doh)
    }

    /// DNS over QUIC (RFC 9250), one query per stream.
    pub fn doq(authority: &Authority, tls: Arc<ServerConfig>) -> Self {
        Self::start(authority, tls, Kind::Doq)
    }

    fn start(authority: &Authority, tls: Arc<ServerConfig>, kind: Kind) -> Self {
        let shared = authority.shared();
        let counts = Arc::new(Counts::default());
        let (kick, kicked) = watch::channel(0u64);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_counts = counts.clone();
        let thread = ServerThread::spawn("test-encrypted", move || async move {
            match kind {
                Kind::Dot | Kind::Doh => {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    ready_tx.send(listener.local_addr().unwrap()).unwrap();
                    serve_tls(listener, tls, kind, shared, thread_counts, kicked).await
                }
                Kind::Doq => {
                    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
                        .expect("a TLS 1.3 config for QUIC");
                    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
                    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap())
                        .expect("bind QUIC");
                    ready_tx.send(endpoint.local_addr().unwrap()).unwrap();
                    serve_quic(endpoint, shared, thread_counts, kicked).await
                }
            }
        });
        let addr = ready_rx.recv().expect("front bound");
        Self {
            addr,
            counts,
            kick,
            _thread: thread,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections offered (TCP accepted, QUIC handshakes begun).
    pub fn offered(&self) -> usize {
        self.counts.offered.load(Ordering::SeqCst)
    }

    /// Connections whose TLS/QUIC handshake finished.
    pub fn connections(&self) -> usize {
        self.counts.established.load(Ordering::SeqCst)
    }

    /// Established connections that have ended (either side closed them).
    pub fn closed(&self) -> usize {
        self.counts.closed.load(Ordering::SeqCst)
    }

    /// Every DoH request seen, in order.
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        self.counts
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes every open connection from the server side, as a server
    /// restarting or closing idle connections would.
    pub fn close_connections(&self) {
        self.kick.send_modify(|n| *n += 1);
    }
}

async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    kind: Kind,
    shared: Arc<Shared>,
    counts: Arc<Counts>,
    kicked: watch::Receiver<u64>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        counts.offered.fetch_add(1, Ordering::SeqCst);
        let (acceptor, shared, counts) = (acceptor.clone(), shared.clone(), counts.clone());
        let mut kicked = kicked.clone();
        kicked.mark_unchanged();
        tokio::spawn(async move {
            // A client that rejects our certificate aborts here.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            counts.established.fetch_add(1, Ordering::SeqCst);
            let http_counts = counts.clone();
            let serving = async move {
                match kind {
                    Kind::Dot => serve_stream(stream, shared).await,
                    _ => serve_http2(stream, shared, http_counts).await,
                }
            };
            tokio::select! {
                _ = serving => {}
                _ = kicked.changed() => {}
            }
            counts.closed.fetch_add(1, Ordering::SeqCst);
        });
    }
}

async fn serve_http2<S>(stream: S, shared: Arc<Shared>, counts: Arc<Counts>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (shared, counts) = (shared.clone(), counts.clone());
        async move { Ok::<_, Infallible>(doh_answer(request, &shared, &counts).await) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn doh_answer(
    request: Request<Incoming>,
    shared: &Shared,
    counts: &Counts,
) -> Response<Full<Bytes>> {
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    counts
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(HttpRequest {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            content_type: content_type.clone(),
            version: format!("{:?}", request.version()),
        });
    let status = |code: StatusCode| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    if request.uri().path() != "/dns-query" {
        return status(StatusCode::NOT_FOUND);
    }
    if request.method() != hyper::Method::POST
        || content_type.as_deref() != Some("application/dns-message")
    {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let Ok(body) = request.into_body().collect().await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(reply) = shared.on_query(&body.to_bytes(), Transport::Tcp) else {
        return status(StatusCode::GATEWAY_TIMEOUT);
    };
    tokio::time::sleep(reply.delay).await;
    let Some(packet) = reply.packets.into_iter().last() else {
        return status(StatusCode::GATEWAY_TIMEOUT);
    };
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, "application/dns-message")
        .body(Full::new(Bytes::from(packet)))
        .unwrap()
}

async fn serve_quic(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    counts: Arc<Counts>,
    kicked: watch::Receiver<u64>,
) {
    while let Some(incoming) = endpoint.accept().await {
        counts.offered.fetch_add(1, Ordering::SeqCst);
        let (shared, counts) = (shared.clone(), counts.clone());
        let mut kicked = kicked.clone();
        kicked.mark_unchanged();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            counts.established.fetch_add(1, Ordering::SeqCst);
            loop {
                tokio::select! {
                    stream = conn.accept_bi() => {
                        let Ok((send, recv)) = stream else { break };
                        tokio::spawn(answer_quic_stream(send, recv, shared.clone()));
                    }
                    _ = kicked.changed() => {
                        conn.close(quinn::VarInt::from_u32(0), b"");
                        break;
                    }
                }
            }
            counts.closed.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// RFC 9250 §4.2: one length-prefixed query per stream, one answer back.
async fn answer_quic_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
) {
    let Ok(data) = recv.read_to_end(2 + 65_535).await else {
        return;
    };
    if data.len() < 2 {
        return;
    }
    let Some(reply) = shared.on_query(&data[2..], Transport::Tcp) else {
        return;
    };
    tokio::time::sleep(reply.delay).await;
    let Some(packet) = reply.packets.into_iter().last() else {
        return;
    };
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    let _ = send.write_all(&framed).await;
    let _ = send.finish();
    // Keep the stream until the peer has read the answer.
    let _ = send.stopped().await;
}
