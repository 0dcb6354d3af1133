//! DoH over HTTP/3 (RFC 8484 over RFC 9114): the requests, tokens, status
//! codes and headers of [`super::doh`], whose [`answer`] and [`response`]
//! this listener calls, carried by h3 on a quinn endpoint (ALPN `h3`).
//!
//! Bounds: the QUIC ones of [`super::quic`] (a place in the DoH connection
//! table, the handshake deadline, the idle timeout), `doh_max_streams`
//! requests at once per connection, a request head of at most
//! `doh_max_header_bytes`, and the body bounds of DoH over HTTP/2. A drain
//! sends GOAWAY and lets the requests in progress finish.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use quinn::{Connection, VarInt};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::conns::{Activity, OpenConnection};
use super::doh::{answer, response, RequestBody};
use crate::pipeline::Worker;

/// HTTP/3's "no error" code (RFC 9114 §8.1), for the CONNECTION_CLOSE.
const H3_NO_ERROR: VarInt = VarInt::from_u32(0x100);
/// After a GOAWAY and the last answer, how long the client has to close the
/// connection itself (it has its answers; this only lets the last
/// acknowledgements through) before we do.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Answers the requests of one connection until the client closes it, it
/// is idle for the QUIC idle timeout, it is shed, or a drain begins.
pub(super) async fn serve_connection(
    worker: Arc<Worker>,
    connection: Connection,
    open: OpenConnection,
) {
    let ip = connection.remote_address().ip();
    let max_head = worker.shared().settings.limits.doh_max_header_bytes as u64;
    let built = h3::server::builder()
        .max_field_section_size(max_head)
        // No reserved ("grease", RFC 9114 §7.2.8) frames and streams:
        // dnspython 2.7's HTTP/3 client (aioquic 1.2) never sees the end of
        // a response from a server that sends them and times out
        // (tests/quic.rs, dnspython_queries_over_doh3).
        .send_grease(false)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection.clone()))
        .await;
    let Ok(mut http) = built else {
        return;
    };
    let mut requests = JoinSet::new();
    let mut closed = std::pin::pin!(worker.shared().drain.closed());
    let draining = loop {
        tokio::select! {
            accepted = http.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (worker, activity) = (worker.clone(), open.activity().clone());
                    requests.spawn(async move {
                        if let Ok((req, stream)) = resolver.resolve_request().await {
                            respond(&worker, ip, &activity, req, stream).await;
                        }
                    });
                }
                // Closed by the client, idle, or broken.
                Ok(None) | Err(_) => return,
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            () = &mut closed => break true,
            () = open.shed() => break false,
        }
    };
    // GOAWAY: no new requests. A drain lets those in progress finish (it
    // bounds the wait itself); a shed connection gets a moment.
    let _ = http.shutdown(0).await;
    let finish = async {
        while requests.join_next().await.is_some() {}
        // h3 reads the client's side (its GOAWAY, its close) only while accepting.
        while let Ok(Some(_)) = http.accept().await {}
    };
    if draining {
        finish.await;
        let _ = timeout(CLOSE_GRACE, connection.closed()).await;
    } else {
        let _ = timeout(CLOSE_GRACE, finish).await;
    }
    connection.close(H3_NO_ERROR, b"");
}

/// The request body of an HTTP/3 stream.
struct H3Body<'a>(&'a mut Stream);

impl RequestBody for H3Body<'_> {
    async fn data(&mut self) -> Option<Result<Bytes, ()>> {
        match self.0.recv_data().await {
            Ok(Some(mut data)) => Some(Ok(data.copy_to_bytes(data.remaining()))),
            Ok(None) => None,
            Err(_) => Some(Err(())),
        }
    }
}

/// Answers one request (see [`answer`]) on its stream.
async fn respond(
    worker: &Worker,
    ip: IpAddr,
    activity: &Activity,
    req: hyper::Request<()>,
    mut stream: Stream,
) {
    let _busy = activity.begin_query();
    let (head, ()) = req.into_parts();
    let answered = answer(worker, ip, &head, &mut H3Body(&mut stream)).await;
    let (head, body) = response(answered, None).into_parts();
    if stream
        .send_response(hyper::Response::from_parts(head, ()))
        .await
        .is_ok()
        && stream.send_data(body).await.is_ok()
    {
        let _ = stream.finish().await;
    }
}
