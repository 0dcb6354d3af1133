//! What DNS over QUIC ([`super::doq`]) and DoH over HTTP/3 ([`super::doh3`])
//! share: a quinn endpoint on one UDP socket, the QUIC settings built from
//! [`Limits`], and an accept loop that admits each connection to a
//! [`ConnectionTable`] and bounds its handshake.
//!
//! One endpoint per listen address, on one runtime: QUIC routes packets to
//! connections by connection ID, and the kernel's SO_REUSEPORT spreads
//! them by address, so several endpoints on one port would see packets of
//! each other's connections. Queries go to the same shared pipeline as the
//! other transports' (see docs/architecture.md, "Threads").

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{
    Connecting, Connection, Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::time::timeout;
use tokio_rustls::rustls;

use super::conns::{ConnectionTable, OpenConnection};
use super::doh::MAX_MESSAGE;
use super::tls::Tls;
use super::{doh3, doq};
use crate::config::limits::H3_UNI_STREAMS;
use crate::config::Limits;
use crate::pipeline::Worker;

/// Which rustls config of [`Tls`] a listener presents.
pub type PickConfig = fn(&Tls) -> Arc<rustls::ServerConfig>;

/// A UDP socket for a QUIC endpoint. No SO_REUSEPORT (one endpoint owns the
/// address, see the module documentation); quinn sets the socket options
/// it needs (ECN, packet info, GSO) itself.
pub fn bind_quic(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// QUIC transport settings of a listener: idle timeout, stream caps, and
/// flow-control windows that hold one DNS message per stream.
pub fn transport_config(limits: &Limits, bidi_streams: u32, uni_streams: u32) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(uni_streams))
        // Out of range (over 2^62 ms) only if misconfigured: then quinn's default.
        .max_idle_timeout(IdleTimeout::try_from(limits.quic_idle_timeout).ok())
        // A query and its 2-byte length (DoQ) or HTTP/3 framing per stream;
        // a client cannot make us buffer more than that for a stream it
        // never finishes, nor more than the streams' sum per connection.
        .stream_receive_window(VarInt::from_u32(MAX_MESSAGE as u32 + 1024))
        .receive_window(VarInt::from_u32(4 * (MAX_MESSAGE as u32 + 1024)));
    transport
}

/// The quinn server config for the current rustls config, rebuilt only
/// when a reload (SIGHUP) replaced the latter, so a new certificate serves
/// new connections as it does for DoT.
struct ServerConfigs {
    tls: Arc<Tls>,
    pick: PickConfig,
    transport: Arc<TransportConfig>,
    current: Option<(Arc<rustls::ServerConfig>, Arc<quinn::ServerConfig>)>,
}

impl ServerConfigs {
    fn current(&mut self) -> std::io::Result<Arc<quinn::ServerConfig>> {
        let rustls_config = (self.pick)(&self.tls);
        if let Some((seen, built)) = &self.current {
            if Arc::ptr_eq(seen, &rustls_config) {
                return Ok(built.clone());
            }
        }
        let crypto = QuicServerConfig::try_from(rustls_config.clone()).map_err(|e| {
            std::io::Error::other(format!("the TLS configuration cannot serve QUIC: {e}"))
        })?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let config = Arc::new(config);
        self.current = Some((rustls_config, config.clone()));
        Ok(config)
    }
}

/// What is served over QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// DNS over QUIC ([`super::doq`]).
    Doq,
    /// DoH over HTTP/3 ([`super::doh3`]).
    Doh3,
}

/// Serves `service` on `socket` until the runtime stops, each connection
/// admitted to `table`.
pub async fn serve(
    worker: Arc<Worker>,
    socket: std::net::UdpSocket,
    tls: Arc<Tls>,
    table: Arc<ConnectionTable>,
    service: Service,
) -> std::io::Result<()> {
    let limits = &worker.shared().settings.limits;
    let (pick, bidi, uni): (PickConfig, _, _) = match service {
        // Clients open no unidirectional stream in DoQ (§4.2).
        Service::Doq => (Tls::doq_config, limits.doq_max_streams, 0),
        Service::Doh3 => (Tls::doh3_config, limits.doh_max_streams, H3_UNI_STREAMS),
    };
    let configs = ServerConfigs {
        tls,
        pick,
        transport: Arc::new(transport_config(limits, bidi, uni)),
        current: None,
    };
    match service {
        Service::Doq => accept_loop(worker, socket, configs, table, doq::serve_connection).await,
        Service::Doh3 => accept_loop(worker, socket, configs, table, doh3::serve_connection).await,
    }
}

/// Accepts QUIC connections on `socket` until the runtime stops. Each is
/// admitted to `table` (shedding the least productive at a cap, as for
/// TCP), its handshake bounded by `tls_handshake_timeout`, and then served
/// by its own task running `serve`, which a graceful stop waits for.
async fn accept_loop<Fut>(
    worker: Arc<Worker>,
    socket: std::net::UdpSocket,
    mut configs: ServerConfigs,
    table: Arc<ConnectionTable>,
    serve: fn(Arc<Worker>, Connection, OpenConnection) -> Fut,
) -> std::io::Result<()>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(configs.current()?.as_ref().clone()),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    let handshake_timeout = worker.shared().settings.limits.tls_handshake_timeout;
    while let Some(incoming) = endpoint.accept().await {
        let Ok(config) = configs.current() else {
            incoming.refuse();
            continue;
        };
        // A QUIC Initial can come from a forged address, and admitting it
        // may shed another client's connection still in its handshake. Near
        // the cap, a client first proves its address with a stateless Retry
        // (RFC 9000 §8.1.2), one round trip more, as TCP's handshake does.
        if table.under_pressure() && !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let peer = incoming.remote_address();
        let Ok(connecting) = incoming.accept_with(config) else {
            continue;
        };
        let open = table.admit(peer.ip());
        // A graceful stop waits for this connection's answers.
        let inflight = worker.shared().drain.track();
        let worker = worker.clone();
        tokio::spawn(async move {
            if let Some(connection) = handshake(connecting, &open, handshake_timeout).await {
                serve(worker, connection, open).await;
            }
            drop(inflight);
        });
    }
    Ok(())
}

/// The handshake, bounded in time and ended early if the connection is
/// shed meanwhile (dropping `Connecting` abandons it).
async fn handshake(
    connecting: Connecting,
    open: &OpenConnection,
    limit: std::time::Duration,
) -> Option<Connection> {
    tokio::select! {
        done = timeout(limit, connecting) => done.ok()?.ok(),
        () = open.shed() => None,
    }
}

/// The server name the client asked for (SNI), if any.
pub fn server_name(connection: &Connection) -> Option<String> {
    connection
        .handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?
        .server_name
}
