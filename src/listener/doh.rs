//! DNS over HTTPS (RFC 8484): HTTP/2 or HTTP/1.1 over TLS (ALPN picks; hyper
//! serves both), `GET /dns-query?dns=<base64url>` and `POST /dns-query` with
//! an `application/dns-message` body. `/dns-query/{token}` passes the token
//! on as [`ClientHints::doh_token`] to identify an organization; a token the
//! pipeline does not accept gets 404, like any unknown path.
//!
//! Bounds: a place in the connection table per connection (shed when a
//! more productive client needs it, see [`super::conns`]), a TLS handshake
//! deadline, a bounded request head and HTTP/2 stream count, a body of at
//! most one DNS message (65535 bytes, refused while reading) that must
//! arrive in time, and an idle timeout as for TCP, which also ends a head
//! that never completes.
//!
//! What a request means and what answers it does not depend on the HTTP
//! version: [`answer`] and [`response`] serve this listener and DoH over
//! HTTP/3 ([`super::doh3`]) alike.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, ALT_SVC, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};

use super::conns::{accept_loop, Activity, ConnectionTable, OpenConnection};
use super::h2_records::ResponseRecords;
use super::tls::Tls;
use crate::config::Limits;
use crate::pipeline::Handled;
use crate::pipeline::Worker;
use crate::protocol::wire::{rtype, walk_records};
use crate::query::{ClientHints, Transport};

/// The endpoint RFC 8484 §3 suggests, and the one clients default to.
pub const PATH: &str = "/dns-query";
/// The media type of a DNS message (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";
/// Largest DNS message (RFC 1035 length fields are 16 bits): a body past it
/// is refused with 413 as soon as it is seen, and so is a GET parameter
/// that would decode past it.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// Longest `dns` parameter of a GET: base64url without padding of
/// [`MAX_MESSAGE`] bytes (4 characters per 3 bytes; 65535 is a multiple of 3).
const MAX_DNS_PARAM: usize = MAX_MESSAGE / 3 * 4;
/// Longest organization token in a path, as the policy allows (which tokens
/// exist, and so which paths answer, is the pipeline's to say).
pub const MAX_TOKEN: usize = 128;
/// HTTP/2 flow-control window per stream: one DNS message fits, so a client
/// cannot make us buffer more than that for a stream it never finishes.
const STREAM_WINDOW: u32 = MAX_MESSAGE as u32;
/// HTTP/2 flow-control window per connection: a few full-size messages.
const CONNECTION_WINDOW: u32 = 4 * STREAM_WINDOW;
/// The status of a query a `drop` rule chose not to answer. Over UDP and TCP
/// the client hears nothing and its lookup times out; 504 (Gateway Timeout:
/// no answer came from behind the HTTP server) says the same at once.
/// curl, Firefox and Chromium treat any status but 2xx as a failed lookup,
/// never as an answer, and no HTTP client retries a 504 on its own. Not a
/// 4xx, which would blame a request that was fine; not a 200, which needs a
/// DNS message to carry.
pub const DROPPED: StatusCode = StatusCode::GATEWAY_TIMEOUT;
/// After an idle close or a shed starts, how long in-flight answers have to drain.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts DoH connections on one worker's listener until the runtime stops.
/// `h3_port`: the port of a DoH3 listener to advertise (`Alt-Svc`).
pub async fn serve(
    worker: Arc<Worker>,
    listener: std::net::TcpListener,
    tls: Arc<Tls>,
    table: Arc<ConnectionTable>,
    h3_port: Option<u16>,
) -> std::io::Result<()> {
    let http = Arc::new(HttpBuilders::new(&worker.shared().settings.limits));
    let alt_svc = h3_port.map(alt_svc);
    accept_loop(worker, listener, table, move |a| {
        let connection = Connection {
            worker: a.worker,
            ip: a.hints.ip,
            open: a.connection,
            alt_svc: alt_svc.clone(),
        };
        let (tls, http) = (tls.clone(), http.clone());
        async move { connection.serve(a.stream, &tls, &http).await }
    })
    .await
}

/// The HTTP server settings shared by every connection of a listener: one
/// per protocol ALPN can settle on, and one that tells them apart by the
/// first bytes for clients that send no ALPN.
struct HttpBuilders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    either: auto::Builder<TokioExecutor>,
}

impl HttpBuilders {
    fn new(limits: &Limits) -> Self {
        let either = http_builder(limits);
        Self {
            h1: either.clone().http1_only(),
            h2: either.clone().http2_only(),
            either,
        }
    }

    /// The builder for the protocol ALPN chose. With HTTP/2 settled, the
    /// server speaks first (its SETTINGS), which some clients wait for
    /// (dnsperf stalls otherwise).
    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.h2,
            Some(b"http/1.1") => &self.h1,
            _ => &self.either,
        }
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper runs this timer also while a kept-alive connection waits
        // for its next request, so it is the idle timeout, not a request's.
        .header_read_timeout(limits.tcp_idle_timeout)
        .max_buf_size(limits.doh_max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.doh_max_streams)
        .max_header_list_size(limits.doh_max_header_bytes as u32)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false);
    builder
}

/// One client connection.
struct Connection {
    worker: Arc<Worker>,
    /// The client's address (the peer's, or the one its PROXY header gives).
    ip: IpAddr,
    /// Its place in the connection table, held throughout.
    open: OpenConnection,
    alt_svc: Option<HeaderValue>,
}

impl Connection {
    /// TLS handshake (bounded in time), then HTTP until the client closes,
    /// sends no request for the idle timeout, a drain begins, or the
    /// connection is shed to make room for another.
    async fn serve(self, stream: TcpStream, tls: &Tls, http: &HttpBuilders) {
        let limits = self.worker.shared().settings.limits.clone();
        let acceptor = tls.doh_acceptor();
        let limit = limits.tls_handshake_timeout;
        let Some(stream) = self.open.tls_handshake(acceptor, stream, limit).await else {
            return;
        };
        let ready = Instant::now();
        let activity = self.open.activity().clone();
        let handler = Arc::new(Handler {
            worker: self.worker.clone(),
            ip: self.ip,
            activity: activity.clone(),
            alt_svc: self.alt_svc.clone(),
        });
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.respond(req).await) }
        });
        let alpn = stream.get_ref().1.alpn_protocol();
        let http2 = alpn == Some(b"h2");
        let http = http.for_alpn(alpn);
        // Each HTTP/2 response ends its TLS record: see [`ResponseRecords`].
        let stream = ResponseRecords::new(stream, http2);
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let closed = self.worker.shared().drain.closed();
        tokio::pin!(closed);
        let shed = self.open.shed();
        tokio::pin!(shed);
        let draining = loop {
            let idle = if self.open.table().under_pressure() {
                limits.tcp_idle_timeout_pressure
            } else {
                limits.tcp_idle_timeout
            };
            let deadline = idle_deadline(&activity, ready, idle);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = &mut closed => break true,
                () = &mut shed => break false,
                _ = sleep_until(deadline.unwrap_or_else(|| Instant::now() + idle).into()) => {
                    if idle_deadline(&activity, ready, idle).is_some_and(|d| d <= Instant::now()) {
                        break false;
                    }
                }
            }
        };
        // A GOAWAY (HTTP/2), or a close after the current response
        // (HTTP/1.1). A drain lets requests in progress finish (it bounds
        // the wait itself); an idle or shed connection gets a moment, and a
        // client that does not take its answers loses them.
        conn.as_mut().graceful_shutdown();
        if draining {
            let _ = conn.await;
        } else {
            let _ = timeout(CLOSE_GRACE, conn).await;
        }
    }
}

/// When the connection will have been idle for `idle` if nothing happens
/// meanwhile, counted from the last request or else from `ready` (the end
/// of the handshake); None while a request is in progress.
fn idle_deadline(activity: &Activity, ready: Instant, idle: Duration) -> Option<Instant> {
    if activity.queries_in_flight() > 0 {
        return None;
    }
    let last = activity.last_active().map_or(ready, |last| last.max(ready));
    Some(last + idle)
}

/// Answers the requests of one connection.
struct Handler {
    worker: Arc<Worker>,
    ip: IpAddr,
    activity: Activity,
    alt_svc: Option<HeaderValue>,
}

impl Handler {
    async fn respond(&self, req: Request<Incoming>) -> Response<Reply> {
        let _busy = self.activity.begin_query();
        let (head, mut body) = req.into_parts();
        let answered = answer(&self.worker, self.ip, &head, &mut body).await;
        let response = response(answered, self.alt_svc.as_ref());
        let unread = (!body.is_end_stream()).then_some(body);
        response.map(|bytes| Reply {
            bytes: Full::new(bytes),
            _unread: unread,
        })
    }
}

/// The body of a DoH request, whichever HTTP version carries it.
pub trait RequestBody: Send {
    /// The next piece of the body; None at its end, Err if the stream broke.
    fn data(&mut self) -> impl Future<Output = Option<Result<Bytes, ()>>> + Send;
}

impl RequestBody for Incoming {
    async fn data(&mut self) -> Option<Result<Bytes, ()>> {
        loop {
            match self.frame().await? {
                // Trailers carry no part of the message.
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue,
                },
                Err(_) => return Some(Err(())),
            }
        }
    }
}

/// The DNS answer to a DoH request from `ip`, or the HTTP status that
/// replaces it: the one meaning of a request for every HTTP version.
pub async fn answer(
    worker: &Worker,
    ip: IpAddr,
    req: &Parts,
    body: &mut impl RequestBody,
) -> Result<Vec<u8>, StatusCode> {
    let token = route(req.uri.path()).ok_or(StatusCode::NOT_FOUND)?;
    let hints = ClientHints {
        ip,
        port: 0,
        transport: Transport::Doh,
        doh_token: token.map(str::to_owned),
        dot_label: None,
    };
    if !worker.accepts(&hints) {
        return Err(StatusCode::NOT_FOUND);
    }
    let limits = &worker.shared().settings.limits;
    let in_head = query_in_head(&req.method, req.uri.query(), req.headers.get(CONTENT_TYPE))?;
    let query = match in_head {
        Some(query) => query,
        None => {
            let announced = req.headers.get(CONTENT_LENGTH);
            timeout(limits.doh_body_timeout, read_body(announced, body))
                .await
                .map_err(|_| StatusCode::REQUEST_TIMEOUT)??
        }
    };
    status_of(worker.handle(&query, &hints).await)
}

/// The HTTP response for what [`answer`] found, with `alt_svc` (the HTTP/3
/// endpoint to advertise) on it if given.
pub fn response(
    answered: Result<Vec<u8>, StatusCode>,
    alt_svc: Option<&HeaderValue>,
) -> Response<Bytes> {
    let mut response = match answered {
        Ok(reply) => dns_response(reply),
        Err(status) => error_response(status),
    };
    if let Some(value) = alt_svc {
        response.headers_mut().insert(ALT_SVC, value.clone());
    }
    response
}

/// The `Alt-Svc` value (RFC 7838) advertising HTTP/3 on `port` of the same
/// host, for a day (`ma`, what Cloudflare and Google send): a client that
/// cannot reach it falls back to the connection it has.
pub fn alt_svc(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
        .expect("digits and ASCII punctuation are a valid header value")
}

/// The HTTP form of a query's outcome. Every DNS-level outcome with a
/// message is a 200 carrying it, whatever its RCODE (RFC 8484 §4.2.1):
/// NXDOMAIN, REFUSED for a client outside the access list, and an upstream's
/// own FORMERR alike. Only what is no DNS query at all is an HTTP fault (400).
/// A query deliberately not answered (a `drop` rule) has no message to
/// carry, and HTTP must answer something: [`DROPPED`].
pub fn status_of(handled: Handled) -> Result<Vec<u8>, StatusCode> {
    match handled {
        Handled::Reply(reply) => Ok(reply),
        Handled::Dropped => Err(DROPPED),
        Handled::Malformed => Err(StatusCode::BAD_REQUEST),
    }
}

/// The organization token of a DoH path: `Some(None)` for `/dns-query`,
/// `Some(Some(token))` for `/dns-query/{token}`, None for any other path
/// (404).
pub fn route(path: &str) -> Option<Option<&str>> {
    let rest = path.strip_prefix(PATH)?;
    if rest.is_empty() {
        return Some(None);
    }
    let token = rest.strip_prefix('/')?;
    let valid = !token.is_empty() && token.len() <= MAX_TOKEN && !token.contains('/');
    valid.then_some(Some(token))
}

/// What the head of a request to a DoH path says about its DNS query: the
/// query itself for a GET, None for a POST of a DNS message (the query is
/// the body, read next), or the status that refuses the request.
pub fn query_in_head(
    method: &Method,
    query: Option<&str>,
    content_type: Option<&HeaderValue>,
) -> Result<Option<Vec<u8>>, StatusCode> {
    match *method {
        Method::GET => query_from_get(query).map(Some),
        Method::POST if is_dns_message(content_type) => Ok(None),
        Method::POST => Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        _ => Err(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// The query of a GET: the `dns` parameter, base64url without padding
/// (RFC 8484 §4.1; padding is tolerated, as some clients send it). 400 if
/// it is missing or not base64url, 413 if it would decode past
/// [`MAX_MESSAGE`] (as a POST body would be).
pub fn query_from_get(query: Option<&str>) -> Result<Vec<u8>, StatusCode> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or(StatusCode::BAD_REQUEST)?;
    let value = value
        .trim_end_matches("%3D")
        .trim_end_matches("%3d")
        .trim_end_matches('=');
    if value.len() > MAX_DNS_PARAM {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| StatusCode::BAD_REQUEST)
}

/// Whether a Content-Type names a DNS message (parameters ignored).
pub fn is_dns_message(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(DNS_MESSAGE))
}

/// Reads a POST body of at most one DNS message. A larger Content-Length is
/// refused before reading; without one, reading stops at the first byte
/// past the limit.
async fn read_body(
    announced: Option<&HeaderValue>,
    body: &mut impl RequestBody,
) -> Result<Vec<u8>, StatusCode> {
    let announced = announced
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if announced > MAX_MESSAGE as u64 {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut message = Vec::with_capacity(announced as usize);
    while let Some(data) = body.data().await {
        let data = data.map_err(|()| StatusCode::BAD_REQUEST)?;
        add_body_data(&mut message, &data)?;
    }
    Ok(message)
}

/// Appends a piece of a POST body to the message read so far, or 413 if
/// the message would grow past [`MAX_MESSAGE`].
pub fn add_body_data(message: &mut Vec<u8>, data: &[u8]) -> Result<(), StatusCode> {
    if message.len() + data.len() > MAX_MESSAGE {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    message.extend_from_slice(data);
    Ok(())
}

/// How long an HTTP cache may keep the answer (RFC 8484 §5.1): the smallest
/// TTL of its records (OPT aside). A negative answer's SOA carries its
/// negative TTL (the pipeline serves it capped at the RFC 2308 value), so it
/// counts too. No records, or bytes that do not walk: 0.
pub fn max_age(reply: &[u8]) -> u32 {
    let mut min: Option<u32> = None;
    let walked = walk_records(reply, |record| {
        if record.rtype != rtype::OPT {
            min = Some(min.map_or(record.ttl, |m| m.min(record.ttl)));
        }
        Ok(())
    });
    match walked {
        Ok(_) => min.unwrap_or(0),
        Err(_) => 0,
    }
}

/// A response body that also holds the request body the handler left unread
/// (a 413, 415 or 400 answered early), until the response has gone out:
/// dropping it earlier makes HTTP/2 reset the stream (CANCEL) before the
/// client sees the status; dropped after, it is the RST_STREAM(NO_ERROR) of
/// RFC 9113 §8.1 that tells the client to stop sending.
struct Reply {
    bytes: Full<Bytes>,
    _unread: Option<Incoming>,
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().bytes).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.bytes.size_hint()
    }
}

fn dns_response(reply: Vec<u8>) -> Response<Bytes> {
    let max_age = format!("max-age={}", max_age(&reply));
    let mut response = Response::new(Bytes::from(reply));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(value) = HeaderValue::from_str(&max_age) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

fn error_response(status: StatusCode) -> Response<Bytes> {
    let reason = match status {
        StatusCode::NOT_FOUND => "not found: DNS queries go to /dns-query\n",
        StatusCode::METHOD_NOT_ALLOWED => "use GET /dns-query?dns=... or POST /dns-query\n",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "POST needs content-type: application/dns-message\n",
        StatusCode::PAYLOAD_TOO_LARGE => "a DNS message is at most 65535 bytes\n",
        StatusCode::REQUEST_TIMEOUT => "the request did not arrive in time\n",
        DROPPED => "no answer: the resolver's policy drops this query\n",
        _ => "not a DNS query: expected ?dns=<base64url DNS message> or a DNS message body\n",
    };
    let mut response = Response::new(Bytes::from_static(reason.as_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, POST"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_tokens() {
        assert_eq!(route("/dns-query"), Some(None));
        assert_eq!(route("/dns-query/sometoken"), Some(Some("sometoken")));
        assert_eq!(
            route("/dns-query/acme-corp_2.x~"),
            Some(Some("acme-corp_2.x~"))
        );
        assert_eq!(route("/dns-query/"), None);
        assert_eq!(route("/dns-query/a/b"), None);
        let longest = "t".repeat(128);
        assert_eq!(
            route(&format!("/dns-query/{longest}")),
            Some(Some(&*longest))
        );
        assert_eq!(route(&format!("/dns-query/{longest}t")), None);
        assert_eq!(route("/dns-queryx"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn get_parameter() {
        // A query for example.com A with ID 0, from RFC 8484 §4.1.1.
        let wire = query_from_get(Some("dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE")).unwrap();
        assert_eq!(wire.len(), 29);
        assert_eq!(&wire[..2], &[0, 0]);
        let padded =
            query_from_get(Some("ct&dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE%3D")).unwrap();
        assert_eq!(padded, wire);
        assert_eq!(
            query_from_get(Some("dns=***")),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            query_from_get(Some("name=example.com")),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(query_from_get(None), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn get_parameter_of_the_largest_message() {
        let largest = URL_SAFE_NO_PAD.encode(vec![7u8; MAX_MESSAGE]);
        let wire = query_from_get(Some(&format!("dns={largest}"))).unwrap();
        assert_eq!(wire.len(), MAX_MESSAGE);
        let larger = URL_SAFE_NO_PAD.encode(vec![7u8; MAX_MESSAGE + 1]);
        assert_eq!(
            query_from_get(Some(&format!("dns={larger}"))),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn request_heads() {
        let dns = Some(&HeaderValue::from_static(DNS_MESSAGE));
        let form = Some(&HeaderValue::from_static("text/plain"));
        let get = query_in_head(&Method::GET, Some("dns=AAAB"), None);
        assert_eq!(get, Ok(Some(vec![0, 0, 1])));
        assert_eq!(
            query_in_head(&Method::GET, None, dns),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            query_in_head(&Method::POST, Some("dns=AAAB"), dns),
            Ok(None)
        );
        assert_eq!(
            query_in_head(&Method::POST, None, form),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            query_in_head(&Method::POST, None, None),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            query_in_head(&Method::PUT, Some("dns=AAAB"), dns),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn body_stops_at_the_largest_message() {
        let mut message = Vec::new();
        assert_eq!(add_body_data(&mut message, &[1; 60000]), Ok(()));
        assert_eq!(add_body_data(&mut message, &[2; 5535]), Ok(()));
        assert_eq!(message.len(), MAX_MESSAGE);
        assert_eq!(
            add_body_data(&mut message, &[3]),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(message.len(), MAX_MESSAGE);
    }

    #[test]
    fn content_types() {
        let check = |v: &'static str| is_dns_message(Some(&HeaderValue::from_static(v)));
        assert!(check("application/dns-message"));
        assert!(check("Application/DNS-Message; charset=binary"));
        assert!(!check("application/dns-json"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!is_dns_message(None));
    }

    #[test]
    fn max_age_is_the_smallest_ttl() {
        use hickory_proto::op::{Message, MessageType, ResponseCode};
        use hickory_proto::rr::rdata::{A, SOA};
        use hickory_proto::rr::{Name, RData, Record};

        let name = Name::from_ascii("www.example.test.").unwrap();
        let mut msg = Message::new(0, MessageType::Response, hickory_proto::op::OpCode::Query);
        msg.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        msg.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        assert_eq!(max_age(&msg.to_vec().unwrap()), 60);

        let mut negative = Message::new(0, MessageType::Response, hickory_proto::op::OpCode::Query);
        negative.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(name.clone(), name.clone(), 1, 3600, 600, 86400, 900);
        negative.add_authority(Record::from_rdata(name, 120, RData::SOA(soa)));
        assert_eq!(max_age(&negative.to_vec().unwrap()), 120);

        let empty = Message::new(0, MessageType::Response, hickory_proto::op::OpCode::Query);
        assert_eq!(max_age(&empty.to_vec().unwrap()), 0);
        assert_eq!(max_age(b"junk"), 0);
    }
}
