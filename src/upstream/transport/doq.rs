//! DNS over QUIC to an upstream (RFC 9250) with quinn: one connection per
//! upstream, reused; each query on a bidirectional stream of its own, ID 0
//! (§4.2.1), two length bytes before the message (§4.2). No 0-RTT: a
//! query replayed by an attacker is a privacy leak (§4.5), and it would
//! save one round trip per connection, not per query.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{
    ClientConfig as QuinnConfig, Connection, Endpoint, IdleTimeout, TransportConfig, VarInt,
};
use tokio_rustls::rustls::ClientConfig;

use super::{checked, framed, network, Common, ConnectionPool, Failed, InUse};
use crate::upstream::forward::{SentQuery, UpstreamQuery};
use crate::upstream::UpstreamError;

/// RFC 9250 §4.3: DOQ_NO_ERROR, closing a connection we no longer need.
const DOQ_NO_ERROR: u32 = 0;

pub(super) struct Pool {
    addr: SocketAddr,
    name: String,
    label: String,
    config: QuinnConfig,
    common: Common,
    /// The endpoint (made on first use, inside the worker's runtime) and
    /// the open connection; the lock also makes a burst of queries to a
    /// cold upstream open one connection.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoint: Option<(Endpoint, InUse)>,
    conn: Option<Connection>,
}

impl Pool {
    pub(super) fn new(
        addr: SocketAddr,
        name: &str,
        tls: Arc<ClientConfig>,
        common: Common,
    ) -> Result<Self, UpstreamError> {
        let label = format!("quic://{addr}#{name}");
        let crypto = QuicClientConfig::try_from(tls)
            .map_err(|e| network(format!("{label}: TLS for QUIC: {e}")))?;
        let mut config = QuinnConfig::new(Arc::new(crypto));
        let mut transport = TransportConfig::default();
        // Closed when idle this long (both sides may close; the smaller wins).
        transport.max_idle_timeout(IdleTimeout::try_from(common.limits.idle_timeout).ok());
        config.transport_config(Arc::new(transport));
        Ok(Self {
            addr,
            name: name.to_string(),
            label,
            config,
            common,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }
}

impl ConnectionPool for Pool {
    type Conn = Connection;

    async fn ask(
        &self,
        conn: &Connection,
        q: &UpstreamQuery<'_>,
        payload: u16,
    ) -> Result<Vec<u8>, Failed> {
        let label = &self.label;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| Failed::Lost(network(format!("{label}: {e}"))))?;
        let sent = SentQuery::encrypted(0, q, payload);
        let other = |what: String| Failed::Other(network(format!("{label}: {what}")));
        send.write_all(&framed(&sent.message))
            .await
            .map_err(|e| other(format!("sending the query: {e}")))?;
        // The query is complete: RFC 9250 §4.2 has the client finish its side.
        send.finish()
            .map_err(|e| other(format!("sending the query: {e}")))?;
        let data = recv
            .read_to_end(2 + 65_535)
            .await
            .map_err(|e| other(format!("reading the answer: {e}")))?;
        let Some(len) = data
            .get(..2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return Err(other("the stream ended without an answer".into()));
        };
        if data.len() != 2 + len {
            return Err(other(format!(
                "the answer's length prefix says {len} bytes, the stream held {}",
                data.len() - 2
            )));
        }
        checked(&sent, q, data[2..].to_vec(), &self.common.stats).map_err(Failed::Other)
    }

    async fn connection(&self) -> Result<(Connection, bool), UpstreamError> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            if conn.close_reason().is_none() {
                return Ok((conn.clone(), false));
            }
        }
        state.conn = None;
        let conn = self
            .common
            .open(&self.label, self.connect(&mut state))
            .await?;
        state.conn = Some(conn.clone());
        Ok((conn, true))
    }
}

impl Pool {
    async fn connect(&self, state: &mut State) -> Result<Connection, UpstreamError> {
        let label = &self.label;
        if state.endpoint.is_none() {
            let bind: SocketAddr = if self.addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let endpoint = Endpoint::client(bind)
                .map_err(|e| network(format!("{label}: opening a UDP socket: {e}")))?;
            state.endpoint = Some((endpoint, InUse::count(&self.common.stats)));
        }
        let (endpoint, _) = state.endpoint.as_ref().expect("set above");
        let connecting = endpoint
            .connect_with(self.config.clone(), self.addr, &self.name)
            .map_err(|e| network(format!("{label}: {e}")))?;
        connecting
            .await
            .map_err(|e| network(format!("{label}: QUIC handshake: {e}")))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(conn) = self.state.get_mut().conn.take() {
            conn.close(VarInt::from_u32(DOQ_NO_ERROR), b"");
        }
    }
}
