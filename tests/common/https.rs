//! An in-process HTTPS server on 127.0.0.1 under a test CA: what a control plane or a list
//! feed is to Picket (`--policy-url`, `"url"` lists). It serves what a test publishes, with
//! an ETag per version (answering 304 to a matching If-None-Match), and records every request.
//! Picket trusts it through `--ca-file` (the CA's PEM, written to a scratch file).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use super::server_thread::ServerThread;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub if_none_match: Option<String>,
    /// 200 or 304 (or 404).
    pub status: u16,
}

#[derive(Default)]
struct Content {
    /// path → (body, etag)
    files: HashMap<String, (Vec<u8>, String)>,
    seen: Vec<Seen>,
    next_etag: u64,
}

/// The server; stops when dropped.
pub struct HttpsServer {
    pub addr: SocketAddr,
    /// The test CA's certificate (PEM), for `--ca-file`.
    pub ca_file: PathBuf,
    content: Arc<Mutex<Content>>,
    _thread: ServerThread,
}

impl HttpsServer {
    /// Starts on 127.0.0.1:0, with a fresh CA and a certificate for 127.0.0.1 and localhost.
    pub fn start() -> HttpsServer {
        let ca = super::tls::TestCa::new();
        let ca_file = ca.ca_file();
        let config = ca.server_config(&["localhost", "127.0.0.1"], &[], false);
        let acceptor = TlsAcceptor::from(config);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let content = Arc::new(Mutex::new(Content::default()));
        let served = content.clone();
        let thread = ServerThread::spawn("test-https", move || async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let content = served.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let content = content.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&content, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer {
            addr,
            ca_file,
            content,
            _thread: thread,
        }
    }

    /// `https://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{}", self.addr.port(), path)
    }

    /// Serves `body` at `/path` from now on, under a new ETag.
    pub fn publish(&self, path: &str, body: impl Into<Vec<u8>>) {
        let mut c = self.content.lock().unwrap();
        c.next_etag += 1;
        let etag = format!("\"v{}\"", c.next_etag);
        c.files.insert(path.to_owned(), (body.into(), etag));
    }

    /// Every request so far for `/path`.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        let c = self.content.lock().unwrap();
        c.seen
            .iter()
            .filter(|s| s.path == format!("/{path}"))
            .cloned()
            .collect()
    }
}

fn answer(content: &Mutex<Content>, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let mut c = content.lock().unwrap();
    let path = req.uri().path().to_owned();
    let if_none_match = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let found = c.files.get(path.trim_start_matches('/')).cloned();
    let (status, body, etag) = match found {
        None => (StatusCode::NOT_FOUND, Vec::new(), None),
        Some((_, etag)) if if_none_match.as_deref() == Some(etag.as_str()) => {
            (StatusCode::NOT_MODIFIED, Vec::new(), Some(etag))
        }
        Some((body, etag)) => (StatusCode::OK, body, Some(etag)),
    };
    c.seen.push(Seen {
        path,
        if_none_match,
        status: status.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(etag) = etag {
        response
            .headers_mut()
            .insert(hyper::header::ETAG, etag.parse().unwrap());
    }
    response
}
