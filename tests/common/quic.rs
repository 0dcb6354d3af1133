//! QUIC clients for the DoQ and DoH3 tests: a quinn endpoint that trusts
//! exactly Picket's certificate, DoQ exchanges on streams of a connection,
//! and HTTP/3 requests over h3.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use hickory_proto::op::Message;
use hyper::{Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ClientConfig, Connection, Endpoint};
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::tls::pinned_config;

/// How long a test waits for any one QUIC step before it fails.
pub const QUIC_TIMEOUT: Duration = Duration::from_secs(10);

/// A client endpoint on 127.0.0.1 that trusts only `cert` and offers `alpn`.
pub fn client_endpoint(cert: CertificateDer<'static>, alpn: &[&[u8]]) -> Endpoint {
    let tls = pinned_config(cert, alpn);
    let crypto = QuicClientConfig::try_from(tls).expect("TLS 1.3 with an initial suite");
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("a client socket");
    endpoint.set_default_client_config(ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// A connection to `addr` with server name `sni`.
pub async fn connect(endpoint: &Endpoint, addr: SocketAddr, sni: &str) -> Connection {
    let connecting = endpoint.connect(addr, sni).expect("a valid connect call");
    tokio::time::timeout(QUIC_TIMEOUT, connecting)
        .await
        .expect("the QUIC handshake finishes in time")
        .expect("the QUIC handshake succeeds")
}

/// Sends `stream` (raw bytes, framing included) on a new bidirectional
/// stream and finishes it; returns what comes back until the server's FIN.
pub async fn doq_raw(connection: &Connection, stream: &[u8]) -> Result<Vec<u8>, String> {
    let exchange = async {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(stream).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(70_000).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(QUIC_TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// One DoQ query (`wire`, sent with its 2-byte length) and its answer,
/// whose length prefix must match.
pub async fn doq_query(connection: &Connection, wire: &[u8]) -> Message {
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    let answer = doq_raw(connection, &framed).await.expect("a DoQ answer");
    let (length, message) = answer.split_at(2);
    assert_eq!(
        usize::from(u16::from_be_bytes([length[0], length[1]])),
        message.len(),
        "the answer's length prefix"
    );
    Message::from_vec(message).expect("a DNS message")
}

/// An HTTP/3 response: status, headers and body.
pub struct H3Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends `req` (with `body`, if any) over a new HTTP/3 connection on
/// `connection` and reads the whole response.
pub async fn h3_request(
    connection: Connection,
    req: Request<()>,
    body: Option<Vec<u8>>,
) -> H3Reply {
    let exchange = async {
        let (mut driver, mut send_request) = h3::client::new(h3_quinn::Connection::new(connection))
            .await
            .expect("an HTTP/3 connection");
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let mut stream = send_request
            .send_request(req)
            .await
            .expect("a request stream");
        // A server may answer before the whole body is in (a 413 for one
        // too large) and stop the sending side (RFC 9114 section 4.1), so
        // the body's send or the request's end can fail while the response
        // is there to read; a request that truly failed shows there.
        let sent = match body {
            Some(body) => stream.send_data(Bytes::from(body)).await.is_ok(),
            None => true,
        };
        if sent {
            let _ = stream.finish().await;
        }
        let response = stream.recv_response().await.expect("a response");
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.expect("the body") {
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                body.extend_from_slice(piece);
                let len = piece.len();
                chunk.advance(len);
            }
        }
        drive.abort();
        H3Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        }
    };
    tokio::time::timeout(QUIC_TIMEOUT, exchange)
        .await
        .expect("an HTTP/3 response in time")
}
