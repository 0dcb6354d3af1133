//! DNS over HTTPS to an upstream (RFC 8484): one HTTP/2 connection per
//! upstream (hyper's client), each query a POST of `application/dns-message`
//! on a stream of its own, ID 0 (RFC 8484 §4.1: the stream matches the
//! answer, and ID 0 lets HTTP caches share it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;

use super::{checked, network, tls_to, Common, ConnectionPool, Failed};
use crate::upstream::forward::{SentQuery, UpstreamQuery};
use crate::upstream::UpstreamError;

const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message (RFC 1035 §4.2.2's two length bytes): a longer
/// body is no answer.
const MAX_BODY: usize = 65_535;

pub(super) struct Pool {
    addr: SocketAddr,
    name: ServerName<'static>,
    uri: Uri,
    label: String,
    config: Arc<ClientConfig>,
    common: Common,
    /// The open connection; the lock also makes a burst of queries to a
    /// cold upstream open one connection.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

#[derive(Clone)]
pub(super) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    use_: Arc<Use>,
}

/// How busy a connection is, for its idle timer.
#[derive(Default)]
struct Use {
    in_flight: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl Use {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn idle_for(&self, idle: Duration) -> bool {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        self.in_flight.load(Ordering::Acquire) == 0 && last.is_none_or(|t| t.elapsed() >= idle)
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Use>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    pub(super) fn new(
        addr: SocketAddr,
        host: &str,
        path: &str,
        config: Arc<ClientConfig>,
        common: Common,
    ) -> Result<Self, UpstreamError> {
        let authority = if host.contains(':') {
            format!("[{host}]:{}", addr.port())
        } else {
            format!("{host}:{}", addr.port())
        };
        let label = format!("https://{authority}{path}");
        let uri: Uri = label
            .parse()
            .map_err(|e| network(format!("{label}: {e}")))?;
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| network(format!("{label}: {e}")))?;
        Ok(Self {
            addr,
            name,
            uri,
            label,
            config,
            common,
            conn: tokio::sync::Mutex::new(None),
        })
    }
}

impl ConnectionPool for Pool {
    type Conn = Conn;

    /// One POST.
    async fn ask(
        &self,
        conn: &Conn,
        q: &UpstreamQuery<'_>,
        payload: u16,
    ) -> Result<Vec<u8>, Failed> {
        let label = &self.label;
        let sent = SentQuery::encrypted(0, q, payload);
        let request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .body(Full::new(Bytes::from(sent.message.clone())))
            .map_err(|e| Failed::Other(network(format!("{label}: {e}"))))?;
        conn.use_.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(conn.use_.clone());
        let mut sender = conn.sender.clone();
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) if e.is_canceled() || e.is_closed() => {
                return Err(Failed::Lost(network(format!("{label}: {e}"))))
            }
            Err(e) => return Err(Failed::Other(network(format!("{label}: HTTP/2: {e}")))),
        };
        let fail = |what: String| Err(Failed::Other(network(format!("{label}: {what}"))));
        if response.status() != StatusCode::OK {
            return fail(format!("HTTP status {}", response.status()));
        }
        // The media type, parameters aside (RFC 9110 §8.3.1).
        let content_type = response.headers().get(CONTENT_TYPE);
        let media_type = content_type
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(DNS_MESSAGE)) {
            return fail(format!(
                "answered with content-type {content_type:?}, not {DNS_MESSAGE}"
            ));
        }
        let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return fail(format!("reading the answer: {e}")),
        };
        checked(&sent, q, body.to_vec(), &self.common.stats).map_err(Failed::Other)
    }

    /// The open connection (and whether it was just opened), or a new one.
    async fn connection(&self) -> Result<(Conn, bool), UpstreamError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.sender.is_closed() {
                return Ok((conn.clone(), false));
            }
        }
        *slot = None;
        let conn = self.common.open(&self.label, self.connect()).await?;
        *slot = Some(conn.clone());
        Ok((conn, true))
    }
}

impl Pool {
    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let label = &self.label;
        let (tls, socket) =
            tls_to(&self.common, self.addr, &self.config, &self.name, label).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(network(format!(
                "{label}: the server did not agree to HTTP/2 (ALPN h2); Picket's DoH upstreams speak HTTP/2 only"
            )));
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| network(format!("{label}: HTTP/2 handshake: {e}")))?;
        let use_ = Arc::new(Use::default());
        use_.touch();
        let watched = use_.clone();
        let idle = self.common.limits.idle_timeout;
        tokio::spawn(async move {
            let _socket = socket;
            let idle_timer = async {
                loop {
                    tokio::time::sleep(idle).await;
                    if watched.idle_for(idle) {
                        return;
                    }
                }
            };
            // Ends when the server closes, or when idle: dropping the
            // connection closes it.
            tokio::select! {
                _ = connection => {}
                _ = idle_timer => {}
            }
        });
        Ok(Conn { sender, use_ })
    }
}
