//! A plain HTTP/1.1 GET for tests of the admin listener (metrics, dashboard, API) and the
//! block page (any Host, plain or over TLS).

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
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the HTTP listener accepts");
    http_exchange(stream, host, path, headers).await
}

/// GET `path` for `host` over an open connection (plain or TLS), reading the
/// answer until the server closes.
pub async fn http_exchange<S>(mut stream: S, host: &str, path: &str, headers: &[&str]) -> HttpAnswer
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers in time");
    // A TLS peer that closes without close_notify ends in UnexpectedEof after the answer.
    if let Err(e) = read {
        assert!(!raw.is_empty(), "no HTTP answer: {e}");
    }
    parse_answer(&raw)
}

/// Status, headers and body of a raw HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> HttpAnswer {
    let text = String::from_utf8(raw.to_vec()).expect("HTTP answer is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// GET `path`, no extra header.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    http_get_with(addr, path, &[]).await
}
