//! The admin listener (`--metrics ADDR`): plain HTTP/1.1 on its own thread and
//! runtime, so a slow scraper never competes with the DNS workers' runtimes.
//!
//! - `GET /metrics`: Prometheus text exposition (probes read at scrape time).
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when the policy is loaded, an upstream answers and the
//!   server is not draining; 503 with the reason otherwise.
//! - `GET /`: the dashboard, one page with its script and style inline (no
//!   request to another host; the Content-Security-Policy says so to the
//!   browser too).
//! - `GET /api/stats`, `/api/top`, `/api/recent`, `/api/explain`: the JSON the
//!   page polls, for scripts too ([`super::api`]). Read-only.
//!
//! With `--admin-token`, everything but `/metrics`, `/healthz` and `/readyz`
//! needs `Authorization: Bearer TOKEN` (the page itself also takes
//! `?token=TOKEN`, since a browser cannot send a header when it opens a
//! page; its script then sends the header).
//!
//! Everything else is 404 (the exporter's own listener would answer metrics
//! on any path, which is why we serve HTTP ourselves).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::api::{self, Explain, Json};
use super::dashboard::{Dashboard, COLLECT_EVERY};
use super::metrics::Metrics;
use crate::health::NotReady;

/// Admin connections served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histogram samples are drained into buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Readiness: Ok, or why not; either way with detail lines for `/readyz` (the policy bundle in
/// force), possibly none.
pub type ReadyCheck = Box<dyn Fn() -> (Result<(), NotReady>, String) + Send + Sync>;

/// The server's state the dashboard shows (version, uptime, policy, reloads).
pub type StatusRead = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// `picket explain` with the policy in force.
pub type ExplainRun = Box<dyn Fn(&Explain) -> String + Send + Sync>;

/// What the admin listener serves.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: ReadyCheck,
    /// The dashboard's recorder (None: no page and no `/api/`).
    pub dashboard: Option<Arc<Dashboard>>,
    /// `--admin-token`.
    pub token: Option<String>,
    pub status: StatusRead,
    pub explain: ExplainRun,
}

/// Starts the admin listener on `listener` in its own thread; it stops when
/// `stop` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    admin: Admin,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("picket-admin".into())
        .spawn(move || runtime.block_on(serve(listener, Arc::new(admin), stop)))
}

async fn serve(listener: std::net::TcpListener, admin: Arc<Admin>, stop: watch::Receiver<bool>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the admin listener");
            return;
        }
    };
    let upkeep_metrics = admin.metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep_metrics.run_upkeep();
        }
    });
    if let Some(dashboard) = admin.dashboard.clone() {
        // Takes the workers' batches, so they stay small whether or not
        // anyone looks at the dashboard.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COLLECT_EVERY);
            loop {
                tick.tick().await;
                dashboard.collect();
            }
        });
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    accept_bounded(&listener, slots, stop, |stream, _, permit| {
        let admin = admin.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(answer(&admin, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        }
    })
    .await;
}

/// Accepts connections on `listener` until `stop` turns true, each once a place in `slots` is
/// free (more wait in the kernel's backlog), and runs `serve` on it as a task of its own, with
/// its place, which it gives back when it ends. For the small HTTP listeners (admin, block
/// page), whose bound is a count of connections and a header deadline.
pub async fn accept_bounded<F, Fut>(
    listener: &TcpListener,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of descriptors, most likely: let some connections end.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve(stream, peer, permit));
    }
}

fn answer(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD: the admin listener is read-only\n".into(),
        );
    }
    let path = req.uri().path();
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, admin.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        "/healthz" => return text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            return match (admin.ready)() {
                (Ok(()), details) => text(StatusCode::OK, format!("ready\n{details}")),
                (Err(reason), details) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n{details}"),
                ),
            }
        }
        _ => {}
    }
    let query = req.uri().query().unwrap_or("");
    if let Some(token) = &admin.token {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()));
        // The page may carry the token in its address: a browser opening it
        // cannot send a header.
        let in_query = path == "/"
            && api::param(query, "token")
                .is_some_and(|given| same(given.as_bytes(), token.as_bytes()));
        if !header && !in_query {
            return unauthorized(path);
        }
    }
    let Some(dashboard) = &admin.dashboard else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        );
    };
    match path {
        "/" | "/index.html" => page(),
        "/api" | "/api/" => json(StatusCode::OK, &api::index()),
        "/api/stats" => reply(api::stats(dashboard, &admin.status, query)),
        "/api/top" => reply(api::top(dashboard, query)),
        "/api/recent" => reply(api::recent(dashboard, query)),
        "/api/explain" => reply(api::explain(query, &admin.explain)),
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "not found: {path}. Try / (the dashboard), /api/ (its JSON endpoints), /metrics, /healthz or /readyz\n"
            ),
        ),
    }
}

/// Compares a given token with ours in time that does not depend on where
/// they first differ.
fn same(given: &[u8], ours: &[u8]) -> bool {
    given.len() == ours.len() && given.iter().zip(ours).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// 401: the page gets a form to enter the token, everything else a line
/// saying how to send it.
fn unauthorized(path: &str) -> Response<Full<Bytes>> {
    let mut response = if path == "/" {
        let mut r = Response::new(Full::new(Bytes::from_static(super::page::LOGIN.as_bytes())));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut().insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(super::page::LOGIN_CSP),
        );
        r
    } else {
        text(
            StatusCode::UNAUTHORIZED,
            format!("{path} needs the admin token (--admin-token): send the header `Authorization: Bearer TOKEN`\n"),
        )
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"picket admin\""),
    );
    response
}

/// The dashboard page, with a Content-Security-Policy that allows its own
/// inline script and style (by hash) and requests to this listener only.
fn page() -> Response<Full<Bytes>> {
    let page = super::page::page();
    html_page(Bytes::from_static(page.html.as_bytes()), &page.csp)
}

/// 200 with an HTML page of our own and the headers that keep it to itself: its
/// Content-Security-Policy `csp`, no caching, no type sniffing, no referrer.
pub fn html_page(html: Bytes, csp: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(html));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn reply(result: Json) -> Response<Full<Bytes>> {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(bad) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": bad.to_string() }),
        ),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
