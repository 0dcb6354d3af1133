//! Encrypted upstreams: DNS over TLS (`dot.rs`, RFC 7858), over HTTPS
//! (`doh.rs`, RFC 8484) and over QUIC (`doq.rs`, RFC 9250).
//!
//! Each worker's [`Forwarder`](super::Forwarder) keeps its own connections,
//! one pool per upstream, opened on first use and reused: DoT pipelines
//! queries on a connection and matches answers by ID in any order (RFC 7766
//! §6.2.1.1), DoH multiplexes them as HTTP/2 streams, DoQ as QUIC streams.
//! A failed connection attempt holds further attempts off with an
//! exponential backoff, so a dead upstream costs the queries that fail over
//! nothing but a check. Answers pass the same check as over UDP: our ID
//! (0 for DoH and DoQ, whose stream carries the match) and our exact
//! question. No 0x20 and no TC handling: nobody off-path can inject into an
//! authenticated stream, and a stream carries any size.
//!
//! Certificates are checked against webpki-roots (Mozilla's root program,
//! compiled in) plus `--ca-file`: the same binary verifies the same way on a
//! host and in a scratch container with no CA bundle, and a private CA is
//! one flag away.

mod doh;
mod doq;
mod dot;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::forward::{Check, ForwarderStats, SentQuery, UpstreamQuery};
pub(super) use super::sockets::InUse;
use super::spec::{Upstream, UpstreamSpec};
use super::UpstreamError;
use crate::config::Limits;
use crate::protocol::wire::HEADER_LEN;

/// Why a query on a kept connection failed.
enum Failed {
    /// The connection was gone before the answer came: worth one retry on a
    /// fresh connection if it had been reused (a server may close an idle
    /// connection at any time, RFC 7766 §6.2.3, or send an HTTP/2 GOAWAY).
    Lost(UpstreamError),
    Other(UpstreamError),
}

impl Failed {
    fn into_error(self) -> UpstreamError {
        match self {
            Self::Lost(e) | Self::Other(e) => e,
        }
    }
}

/// One upstream's kept connections (DoT, DoH or DoQ).
trait ConnectionPool {
    type Conn;

    /// A connection to ask on, and whether it was opened just now.
    async fn connection(&self) -> Result<(Self::Conn, bool), UpstreamError>;

    /// One query on `conn`.
    async fn ask(
        &self,
        conn: &Self::Conn,
        q: &UpstreamQuery<'_>,
        payload: u16,
    ) -> Result<Vec<u8>, Failed>;

    /// One query, asked once more on a fresh connection when a reused one
    /// turns out lost.
    async fn exchange(
        &self,
        q: &UpstreamQuery<'_>,
        payload: u16,
    ) -> Result<Vec<u8>, UpstreamError> {
        let (conn, fresh) = self.connection().await?;
        match self.ask(&conn, q, payload).await {
            Err(Failed::Lost(e)) if !fresh => {
                tracing::debug!(error = %e, "upstream connection lost; reconnecting");
                let (conn, _) = self.connection().await?;
                self.ask(&conn, q, payload)
                    .await
                    .map_err(Failed::into_error)
            }
            other => other.map_err(Failed::into_error),
        }
    }
}

/// The bounds of encrypted upstream connections, from [`Limits`].
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// DoT connections one worker keeps to one upstream.
    pub connections: usize,
    /// Queries outstanding on one DoT connection.
    pub pipelined: usize,
    /// An upstream connection with nothing outstanding this long is closed.
    pub idle_timeout: Duration,
    /// First and longest wait after a failed connection attempt.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl StreamLimits {
    pub fn from_limits(limits: &Limits) -> Self {
        Self {
            connections: limits.upstream_stream_connections.max(1),
            pipelined: limits.upstream_stream_pipelined.max(1),
            idle_timeout: limits.upstream_stream_idle_timeout,
            backoff_min: limits.upstream_reconnect_backoff_min,
            backoff_max: limits.upstream_reconnect_backoff_max,
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self::from_limits(&Limits::default())
    }
}

/// Why `--ca-file` cannot be used. The message names the file and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("--ca-file {}: cannot open it: {error}", path.display())]
    Open { path: PathBuf, error: pem::Error },
    #[error("--ca-file {}: not readable as PEM: {error}", path.display())]
    Pem { path: PathBuf, error: pem::Error },
    #[error(
        "--ca-file {}: holds no certificate: give PEM CA certificates \
         (-----BEGIN CERTIFICATE-----), e.g. your private CA's ca.pem",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("--ca-file {}: certificate {number} is not usable as a CA: {error}", path.display())]
    NotCa {
        path: PathBuf,
        number: usize,
        error: rustls::Error,
    },
}

/// Reads the PEM certificates of `--ca-file`; each must be usable as a
/// trust anchor.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let path_buf = || path.to_path_buf();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| CaFileError::Open {
            path: path_buf(),
            error,
        })?
        .collect::<Result<_, _>>()
        .map_err(|error| CaFileError::Pem {
            path: path_buf(),
            error,
        })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty { path: path_buf() });
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|error| CaFileError::NotCa {
                path: path_buf(),
                number: i + 1,
                error,
            })?;
    }
    Ok(certs)
}

/// A rustls client config trusting webpki-roots plus `extra_roots`,
/// offering `alpn`; TLS 1.3 only for QUIC (RFC 9001 §4.2).
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
    alpn: &[u8],
    tls13_only: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        // read_ca_file checked each one already; a bad one only trusts less.
        let _ = roots.add(cert.clone());
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()));
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .expect("ring offers TLS 1.2 and 1.3");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// One worker's encrypted-upstream connections, by upstream.
pub(crate) struct Transports {
    extra_roots: Vec<CertificateDer<'static>>,
    limits: StreamLimits,
    stats: Arc<ForwarderStats>,
    pools: Mutex<HashMap<Upstream, Pool>>,
}

#[derive(Clone)]
enum Pool {
    Dot(Arc<dot::Pool>),
    Doh(Arc<doh::Pool>),
    Doq(Arc<doq::Pool>),
}

impl Transports {
    pub(crate) fn new(
        extra_roots: Vec<CertificateDer<'static>>,
        limits: StreamLimits,
        stats: Arc<ForwarderStats>,
    ) -> Self {
        Self {
            extra_roots,
            limits,
            stats,
            pools: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_limits(&mut self, limits: StreamLimits) {
        self.limits = limits;
    }

    /// One query to an encrypted `upstream`, answered or failed within the
    /// caller's timeout (dropping the future abandons the query cleanly).
    pub(crate) async fn exchange(
        &self,
        q: &UpstreamQuery<'_>,
        upstream: &Upstream,
        payload: u16,
    ) -> Result<Vec<u8>, UpstreamError> {
        let result = match self.pool(upstream)? {
            Pool::Dot(pool) => pool.exchange(q, payload).await,
            Pool::Doh(pool) => pool.exchange(q, payload).await,
            Pool::Doq(pool) => pool.exchange(q, payload).await,
        };
        // The details (addresses, names, TLS errors) are for the operator's
        // log; a client sees the kind of failure in its EDE text, no more.
        result.map_err(|e| match e {
            UpstreamError::Network(detail) => {
                tracing::debug!(%upstream, error = %detail, "encrypted upstream exchange failed");
                UpstreamError::Network(format!("{} upstream failed", upstream.kind()))
            }
            other => other,
        })
    }

    fn pool(&self, upstream: &Upstream) -> Result<Pool, UpstreamError> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(upstream) {
            return Ok(pool.clone());
        }
        let common = Common {
            backoff: Backoff::new(&self.limits),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
        };
        let pool = match upstream.spec() {
            UpstreamSpec::Plain(_) => {
                return Err(UpstreamError::Network("not an encrypted upstream".into()))
            }
            UpstreamSpec::Tls { addr, name } => Pool::Dot(Arc::new(dot::Pool::new(
                *addr,
                name,
                client_config(&self.extra_roots, b"dot", false),
                common,
            )?)),
            UpstreamSpec::Https { host, path, addr } => Pool::Doh(Arc::new(doh::Pool::new(
                *addr,
                host,
                path,
                client_config(&self.extra_roots, b"h2", false),
                common,
            )?)),
            UpstreamSpec::Quic { addr, name } => Pool::Doq(Arc::new(doq::Pool::new(
                *addr,
                name,
                client_config(&self.extra_roots, b"doq", true),
                common,
            )?)),
        };
        pools.insert(upstream.clone(), pool.clone());
        Ok(pool)
    }
}

/// What every pool has.
pub(super) struct Common {
    pub backoff: Backoff,
    pub limits: StreamLimits,
    pub stats: Arc<ForwarderStats>,
}

/// Exponential backoff between failed connection attempts to one upstream.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    /// Consecutive failures, and until when no attempt is made.
    state: Mutex<(u32, Option<Instant>)>,
}

impl Backoff {
    fn new(limits: &StreamLimits) -> Self {
        Self {
            min: limits.backoff_min,
            max: limits.backoff_max.max(limits.backoff_min),
            state: Mutex::new((0, None)),
        }
    }

    /// Ok when a connection attempt may be made now.
    pub fn check(&self, what: &str) -> Result<(), UpstreamError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.1 {
            Some(until) if Instant::now() < until => Err(UpstreamError::Network(format!(
                "{what}: not reconnecting for {} ms after {} failed connection attempts",
                until.saturating_duration_since(Instant::now()).as_millis(),
                state.0
            ))),
            _ => Ok(()),
        }
    }

    pub fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_add(1);
        let wait = self
            .min
            .saturating_mul(1 << (state.0 - 1).min(16))
            .min(self.max);
        state.1 = Some(Instant::now() + wait);
    }

    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
    }
}

/// Logs why a connection to `label` could not be opened (a certificate
/// that does not match, a refused port): once per attempt, and attempts
/// are spaced by the backoff.
/// A TLS connection to `addr` for the server `name`, counted as an open upstream socket while
/// the returned [`InUse`] lives; errors start with the upstream's `label`.
async fn tls_to(
    common: &Common,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    label: &str,
) -> Result<(TlsStream<TcpStream>, InUse), UpstreamError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| network(format!("{label} (at {addr}): connect: {e}")))?;
    let socket = InUse::count(&common.stats);
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| network(format!("{label}: TLS handshake: {e}")))?;
    Ok((tls, socket))
}

impl Common {
    /// A new connection from `connect`, unless the backoff holds attempts
    /// off; the outcome moves the backoff, and a failure is logged.
    async fn open<C>(
        &self,
        label: &str,
        connect: impl Future<Output = Result<C, UpstreamError>>,
    ) -> Result<C, UpstreamError> {
        self.backoff.check(label)?;
        match connect.await {
            Ok(conn) => {
                self.backoff.succeeded();
                Ok(conn)
            }
            Err(e) => {
                self.backoff.failed();
                connect_failed(label, &e);
                Err(e)
            }
        }
    }
}

fn connect_failed(label: &str, error: &UpstreamError) {
    tracing::warn!(
        upstream = %label,
        %error,
        "cannot connect to the encrypted upstream; its queries go to the other upstreams \
         until a retry after a backoff connects"
    );
}

/// The answer to `sent`, checked like a UDP answer (our ID, our exact
/// question; RFC 5452), with the question in `q`'s case.
pub(super) fn checked(
    sent: &SentQuery,
    q: &UpstreamQuery<'_>,
    mut answer: Vec<u8>,
    stats: &ForwarderStats,
) -> Result<Vec<u8>, UpstreamError> {
    if sent.check(&answer) != Check::Ours {
        stats.rejected_answers.fetch_add(1, Ordering::Relaxed);
        return Err(UpstreamError::Malformed);
    }
    answer[HEADER_LEN..HEADER_LEN + q.name_wire.len()].copy_from_slice(q.name_wire);
    Ok(answer)
}

/// A query framed for a stream: two length bytes, then the message
/// (RFC 1035 §4.2.2, RFC 9250 §4.2).
pub(super) fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

pub(super) fn network(what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Network(what.to_string())
}
