//! HTTPS GET for policy bundles and list URLs: one request per connection, conditional on the
//! last ETag, size-capped while the body arrives, and bounded in time.
//!
//! Built on hyper's HTTP/1.1 client connection and tokio-rustls, both already used by the DoH
//! listener, rather than a client crate with its own TLS stack and pool: polling one URL every
//! few seconds needs neither pooling nor redirects, and the size cap must apply to the bytes as
//! they arrive, which the low-level connection makes plain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, ETAG, HOST, IF_NONE_MATCH, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::upstream::{read_ca_file, CaFileError};

/// Where the operating system keeps its CA bundle (Debian/Ubuntu/Alpine, then Fedora/RHEL).
const SYSTEM_CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Why a [`Fetcher`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
}

/// What a GET brought.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the server still has what we have (the ETag matched).
    NotModified,
    /// 200 with the whole body, and its ETag if the server sent one.
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// What a GET that wrote its body into a sink brought ([`Fetcher::get_into`]).
#[derive(Debug)]
pub enum Streamed {
    /// 304: the server still has what we have (the ETag matched); nothing was written.
    NotModified,
    /// 200, the whole body written, and its ETag if the server sent one.
    Written { etag: Option<String> },
}

/// Why a GET brought nothing usable. The message names the URL and what to check.
#[derive(Debug)]
pub struct FetchError {
    /// Bounded label for metrics: `network`, `http_status`, `too_large`, `timeout`, `write`.
    pub label: &'static str,
    pub message: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An HTTPS client trusting the system's CAs and `--ca-file`.
#[derive(Clone)]
pub struct Fetcher {
    tls: TlsConnector,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Fetcher {
    /// Trusts the system CA bundle (when there is one) and every certificate in `ca_file`.
    pub fn new(
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Fetcher, FetcherError> {
        let mut roots = RootCertStore::empty();
        for system in SYSTEM_CA_BUNDLES {
            if let Ok(certs) = CertificateDer::pem_file_iter(system) {
                roots.add_parsable_certificates(certs.flatten());
                break;
            }
        }
        if let Some(path) = ca_file {
            // read_ca_file checked that each is usable as a CA.
            roots.add_parsable_certificates(read_ca_file(path)?);
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            tls: TlsConnector::from(Arc::new(config)),
            connect_timeout,
            timeout,
        })
    }

    /// GET `url` (https only), with `If-None-Match: etag` when given; a body over `max` bytes is
    /// cut off and refused. The body is collected in memory (a policy bundle, which is
    /// verified whole before anything is parsed).
    pub async fn get(
        &self,
        url: &str,
        etag: Option<&str>,
        max: u64,
    ) -> Result<Fetched, FetchError> {
        let mut bytes = Vec::new();
        Ok(match self.get_into(url, etag, max, &mut bytes).await? {
            Streamed::NotModified => Fetched::NotModified,
            Streamed::Written { etag } => Fetched::Body { bytes, etag },
        })
    }

    /// As [`Fetcher::get`], but each piece of the body is written to `sink` as it arrives
    /// (a list download goes to a file, never whole into memory). On an error, what was
    /// written is incomplete: the caller discards it.
    pub async fn get_into(
        &self,
        url: &str,
        etag: Option<&str>,
        max: u64,
        sink: &mut impl std::io::Write,
    ) -> Result<Streamed, FetchError> {
        let get = self.get_unbounded(sink, url, etag, max);
        match tokio::time::timeout(self.timeout, get).await {
            Ok(result) => result,
            Err(_) => Err(FetchError {
                label: "timeout",
                message: format!(
                    "GET {url}: no complete answer within {:?} (Limits::fetch_timeout)",
                    self.timeout
                ),
            }),
        }
    }

    /// The GET itself, without the overall timeout.
    async fn get_unbounded(
        &self,
        sink: &mut impl std::io::Write,
        url: &str,
        etag: Option<&str>,
        max: u64,
    ) -> Result<Streamed, FetchError> {
        let network = |what: String| FetchError {
            label: "network",
            message: format!("GET {url}: {what}"),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| network(format!("not a URL ({e})")))?;
        if uri.scheme_str() != Some("https") {
            return Err(network(
                "only https:// URLs are fetched (give the server a certificate; --ca-file trusts a private CA)".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| network("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| network(format!("cannot connect to {host}:{port}: {e}")))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| network(format!("bad server name {host:?}: {e}")))?;
            self.tls.connect(name, tcp).await.map_err(|e| {
                network(format!(
                    "TLS with {host}:{port} failed: {e} (a private CA needs --ca-file)"
                ))
            })
        };
        let tls = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| FetchError {
                label: "timeout",
                message: format!(
                    "GET {url}: no connection within {:?} (Limits::fetch_connect_timeout)",
                    self.connect_timeout
                ),
            })??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| network(format!("HTTP handshake: {e}")))?;
        // The connection task ends with the request (one request per connection).
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
        let mut request = Request::get(path)
            .header(HOST, authority)
            .header(USER_AGENT, concat!("picket/", env!("CARGO_PKG_VERSION")));
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| network(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| network(format!("request failed: {e}")))?;
        let result = read_response(url, response, max, sink).await;
        driver.abort();
        result
    }
}

async fn read_response(
    url: &str,
    response: hyper::Response<hyper::body::Incoming>,
    max: u64,
    sink: &mut impl std::io::Write,
) -> Result<Streamed, FetchError> {
    let too_large = |size: u64| {
        FetchError {
        label: "too_large",
        message: format!(
            "GET {url}: the body is {size} bytes or more, over the {max}-byte limit: the download was cut off"
        ),
    }
    };
    match response.status() {
        StatusCode::NOT_MODIFIED => return Ok(Streamed::NotModified),
        StatusCode::OK => {}
        status => {
            return Err(FetchError {
                label: "http_status",
                message: format!("GET {url}: the server answered {status}"),
            })
        }
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&l| l > max) {
        return Err(too_large(len));
    }
    let mut body = response.into_body();
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError {
            label: "network",
            message: format!("GET {url}: the body was cut short after {written} bytes: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            written += data.len() as u64;
            if written > max {
                return Err(too_large(written));
            }
            sink.write_all(&data).map_err(|e| FetchError {
                label: "write",
                message: format!(
                    "GET {url}: cannot store the body after {written} bytes: {e} (check the space and permissions of --state-dir, or of the temporary directory without it)"
                ),
            })?;
        }
    }
    Ok(Streamed::Written { etag })
}

/// `interval` moved by up to [`crate::config::limits::FETCH_JITTER`] either way.
pub fn jittered(interval: Duration) -> Duration {
    let spread = crate::config::limits::FETCH_JITTER;
    let factor = 1.0 + rand::random_range(-spread..=spread);
    interval.mul_f64(factor)
}
