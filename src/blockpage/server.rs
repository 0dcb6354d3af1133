//! The block page's listener: HTTP/1.1 on `--block-page`, HTTPS (HTTP/1.1 over TLS with the
//! `--tls-cert` certificate) on `--block-page-tls`, on one thread and runtime of its own, so a
//! crowd of browsers never competes with the DNS workers. Every request, whatever its Host,
//! path or method, gets the page (403): the browser came here because a name was answered with
//! this address.
//!
//! Bounds (`config::Limits`, `block_page_*`): connections served at once (more wait in the
//! kernel's backlog), one request per connection (no keep-alive: the page loads nothing more),
//! a deadline for the TLS handshake and the request head together, a bounded head, and the body
//! is never read. So a slow client (slowloris) holds a place for a few seconds at most.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_LANGUAGE, CONTENT_LANGUAGE, HOST, VARY};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use super::page::{choose_language, csp, render, View};
use super::{BlockPage, Blocked, Source};
use crate::config::Limits;
use crate::listener::tls::Tls;
use crate::observe::admin::{accept_bounded, html_page};
use crate::pipeline::Shared;
use crate::protocol::wire::rtype;
use crate::query::{ClientHints, Facts, Transport};

/// Longest name a Host can carry that Picket looks up (RFC 1035 §2.3.4: 253 characters in
/// text form); a longer Host still gets the page, without a rule.
const MAX_NAME: usize = 253;

/// The listeners the block page serves on (bound by `app.rs` with the others).
#[derive(Default)]
pub struct Listeners {
    /// `--block-page`: plain HTTP.
    pub http: Option<std::net::TcpListener>,
    /// `--block-page-tls`: HTTPS.
    pub https: Option<std::net::TcpListener>,
}

/// What every connection needs.
struct Served {
    shared: Arc<Shared>,
    page: Arc<BlockPage>,
    limits: Limits,
}

/// Starts the block page's listeners on a thread of their own; they stop when `stop` turns
/// true. `tls` is required when `listeners.https` is given.
pub fn spawn(
    listeners: Listeners,
    shared: Arc<Shared>,
    page: Arc<BlockPage>,
    tls: Option<Arc<Tls>>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    for listener in listeners.http.iter().chain(listeners.https.iter()) {
        listener.set_nonblocking(true)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let limits = shared.settings.limits.clone();
    let served = Arc::new(Served {
        shared,
        page,
        limits,
    });
    std::thread::Builder::new()
        .name("picket-block-page".into())
        .spawn(move || {
            runtime.block_on(async move {
                let slots = Arc::new(Semaphore::new(served.limits.block_page_max_connections));
                let http = async {
                    if let Some(l) = listeners.http {
                        accept(l, None, (served.clone(), slots.clone(), stop.clone())).await;
                    }
                };
                let https = async {
                    if let (Some(l), Some(tls)) = (listeners.https, tls) {
                        accept(l, Some(tls), (served.clone(), slots.clone(), stop.clone())).await;
                    }
                };
                tokio::join!(http, https);
            })
        })
}

/// Accepts connections on one listener until `stop`, each once a place is free.
async fn accept(
    listener: std::net::TcpListener,
    tls: Option<Arc<Tls>>,
    (served, slots, stop): (Arc<Served>, Arc<Semaphore>, watch::Receiver<bool>),
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the block page listener");
            return;
        }
    };
    accept_bounded(&listener, slots, stop, |stream, peer, permit| {
        connection(stream, peer, tls.clone(), served.clone(), permit)
    })
    .await;
}

/// One connection: the TLS handshake (HTTPS) and the request head within the header timeout,
/// then the page. The whole connection gets that time twice over (the head's, and as much
/// again to take the answer), so a client that never reads cannot keep its place either.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<Tls>>,
    served: Arc<Served>,
    _permit: OwnedSemaphorePermit,
) {
    let limit = served.limits.block_page_header_timeout;
    let exchange = async {
        match tls {
            None => serve_http(stream, peer.ip(), false, &served).await,
            Some(tls) => {
                if let Ok(Ok(stream)) =
                    timeout(limit, tls.block_page_acceptor().accept(stream)).await
                {
                    serve_http(stream, peer.ip(), true, &served).await;
                }
            }
        }
    };
    let _ = timeout(limit * 2, exchange).await;
}

async fn serve_http<S>(stream: S, client: IpAddr, https: bool, served: &Arc<Served>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_requests = served.clone();
    let service = hyper::service::service_fn(move |req| {
        let served = for_requests.clone();
        async move { Ok::<_, Infallible>(served.answer(&req, client, https)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(served.limits.block_page_header_timeout)
        // hyper's smallest buffer is 8 KiB.
        .max_buf_size(served.limits.block_page_max_header_bytes.max(8192))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

impl Served {
    /// The page for one request: the block the Host names for this client, in the language the
    /// browser asks for.
    fn answer(
        &self,
        req: &Request<Incoming>,
        client: IpAddr,
        https: bool,
    ) -> Response<Full<Bytes>> {
        let host = req
            .headers()
            .get(HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .or_else(|| req.uri().host().map(str::to_owned))
            .unwrap_or_default();
        let name = host_name(&host);
        let (blocked, source) = self.find(client, &name);
        self.page.count(https, source);
        let accept = req
            .headers()
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let language = choose_language(accept);
        let view = View {
            domain: if name.is_empty() { &host } else { &name },
            blocked: blocked.as_deref(),
        };
        page_response(render(&view, language), language.tag)
    }

    /// What blocked `name` for `client`: the block-page answer it was given, else the policy in
    /// force evaluated again. Why a fallback at all: the table of answers is bounded and
    /// forgets (eviction, age, a restart), a browser or operating system may reuse an answer
    /// from its own cache long after the table let it go, and in a fleet the lookup may have
    /// gone to another node. The policy, asked again for this name and client address, names
    /// the rule that blocks it now: the same one unless the policy changed. It cannot see what
    /// only the query had (a DoH token, a DoT name, the transport: UDP is assumed), so it comes
    /// second.
    fn find(&self, client: IpAddr, name: &str) -> (Option<Arc<Blocked>>, Source) {
        if name.is_empty() {
            return (None, Source::Unknown);
        }
        if let Some(blocked) = self.page.recent(client, name) {
            return (Some(blocked), Source::Answer);
        }
        let policy = self.shared.policy.load();
        let identity = policy.identify(&ClientHints::plain(client, Transport::Udp));
        let facts = Facts {
            qname: name,
            qtype: rtype::A,
            qclass: 1,
            client_ip: client,
            transport: Transport::Udp,
            dnssec_ok: false,
        };
        let verdict = crate::policy::evaluate(&policy, &identity, &facts);
        match Blocked::from_verdict(&policy, &identity, &verdict) {
            Some(blocked) => (Some(Arc::new(blocked)), Source::Policy),
            None => (None, Source::Unknown),
        }
    }
}

/// The name a Host header names, as queries spell it (lower case, no port, no trailing dot);
/// empty when it is no name (an IP literal, too long, or characters no name has).
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let name = without_port.trim_end_matches('.').to_ascii_lowercase();
    let is_name = name.len() <= MAX_NAME
        && name.parse::<IpAddr>().is_err()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if is_name {
        name
    } else {
        String::new()
    }
}

/// 403 with the page and the headers that keep it self-contained (its CSP, no caching: the
/// rule and time are of this visit), in `language`.
fn page_response(html: String, language: &'static str) -> Response<Full<Bytes>> {
    let mut response = html_page(Bytes::from(html), csp());
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(CONTENT_LANGUAGE, HeaderValue::from_static(language));
    headers.insert(VARY, HeaderValue::from_static("Accept-Language"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_read_as_the_name_queries_spell() {
        assert_eq!(host_name("Blocked.Example:8080"), "blocked.example");
        assert_eq!(host_name("blocked.example."), "blocked.example");
        assert_eq!(host_name("[::1]:80"), "");
        assert_eq!(host_name("192.0.2.1"), "");
        assert_eq!(host_name("<script>.example"), "");
        assert_eq!(host_name(&"a".repeat(300)), "");
        assert_eq!(host_name(""), "");
    }
}
