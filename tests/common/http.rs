//! A plain HTTP/1.1 GET for tests of the admin listener (metrics, dashboard, API) and the
//! block page (any Host, plain or over TLS), and the metric samples the admin listener exposes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An HTTP answer: status, header lines (lower-cased names) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts that this is an HTML page (UTF-8) with a Content Security
    /// Policy, and returns the policy.
    pub fn html_csp(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        self.header("content-security-policy").expect("a CSP")
    }

    /// Status and body, for one assertion on both.
    pub fn status_and_body(&self) -> (u16, &str) {
        (self.status, &self.body)
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// GET `path` with extra request header lines (`Name: value`).
pub async fn http_get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> HttpAnswer {
    http_get_as(addr, &addr.to_string(), path, headers).await
}

/// GET `path` from `addr` as if for the site `host` (its `Host` header), with
/// extra request header lines.
pub async fn http_get_as(addr: SocketAddr, host: &str, path: &str, headers: &[&str]) -> HttpAnswer {
    try_get_as(addr, host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path} for {host} from {addr}: {e}"))
}

/// GET `path`, or None when nothing listens on `addr` yet or no whole HTTP
/// answer comes (for polls while a process starts or restarts).
pub async fn http_try_get(addr: SocketAddr, path: &str) -> Option<HttpAnswer> {
    try_get_as(addr, &addr.to_string(), path, &[]).await.ok()
}

/// One GET on a fresh connection; what went wrong, in words, if no whole
/// answer came back.
async fn try_get_as(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[&str],
) -> Result<HttpAnswer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("the HTTP listener does not accept: {e}"))?;
    exchange(stream, host, path, headers).await
}

/// GET `path` for `host` over an open connection (plain or TLS), reading the
/// answer until the server closes; panics when no whole answer comes.
pub async fn http_exchange<S>(stream: S, host: &str, path: &str, headers: &[&str]) -> HttpAnswer
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    exchange(stream, host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path} for {host}: {e}"))
}

/// One GET over `stream`; what went wrong, in words, if no whole answer came
/// back within 10 s.
async fn exchange<S>(
    mut stream: S,
    host: &str,
    path: &str,
    headers: &[&str],
) -> Result<HttpAnswer, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "no answer in time".to_string())?;
    // A TLS peer that closes without close_notify ends in UnexpectedEof after the answer.
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(format!("no HTTP answer: {e}"));
        }
    }
    parse_answer(raw)
}

/// Status, headers and body of a raw HTTP/1.1 answer.
fn parse_answer(raw: Vec<u8>) -> Result<HttpAnswer, String> {
    let text = String::from_utf8(raw).map_err(|_| "the HTTP answer is not text")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head and body: {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code: {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// The value of one sample on `/metrics` (`series` is `name{labels}` exactly
/// as rendered, or a bare name), 0 when it is absent or the admin listener
/// does not answer (yet).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let Some(answer) = http_try_get(admin, "/metrics").await else {
        return 0.0;
    };
    answer
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Polls `cond` until it holds; panics with `what` after a minute (a hang
/// guard, not a timing assertion: a wait normally ends within a few polls).
pub async fn poll_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        super::client::real_sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// GET `path`, no extra header.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    http_get_with(addr, path, &[]).await
}

/// Asserts that the JSON object `object` (named `what` in the message) holds
/// each of `fields`: (key, the string it must be).
pub fn assert_fields(what: &str, object: &serde_json::Value, fields: &[(&str, &str)]) {
    for (key, want) in fields {
        assert_eq!(object[*key], *want, "{what}.{key} in {object:#}");
    }
}
