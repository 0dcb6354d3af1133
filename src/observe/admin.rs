//! The admin listener (`--metrics ADDR`): plain HTTP/1.1 on its own thread and
//! runtime, so a slow scraper never competes with the DNS workers' runtimes.
//!
//! - `GET /metrics`: Prometheus text exposition (probes read at scrape time).
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when the policy is loaded, an upstream answers and the
//!   server is not draining; 503 with the reason otherwise.
//!
//! Everything else is 404 (the exporter's own listener would answer metrics
//! on any path, which is why we serve HTTP ourselves).

use std::convert::Infallible;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::metrics::Metrics;

/// Admin connections served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histogram samples are drained into buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Readiness: Ok, or why not; either way with detail lines for `/readyz` (the policy bundle in
/// force), possibly none.
pub type ReadyCheck = Box<dyn Fn() -> (Result<(), String>, String) + Send + Sync>;

/// What the admin listener serves.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: ReadyCheck,
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

async fn serve(
    listener: std::net::TcpListener,
    admin: Arc<Admin>,
    mut stop: watch::Receiver<bool>,
) {
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, _) = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        tokio::spawn(async move {
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
        });
    }
}

fn answer(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, admin.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match (admin.ready)() {
            (Ok(()), details) => text(StatusCode::OK, format!("ready\n{details}")),
            (Err(reason), details) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n{details}"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
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
