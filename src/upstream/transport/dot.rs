//! DNS over TLS to an upstream (RFC 7858): a few persistent connections,
//! queries pipelined on them and answers matched by ID in whatever order
//! they come (RFC 7766 §6.2.1.1).
//!
//! Each connection has a reader task (dispatches answers by ID, closes the
//! connection when it has been idle with nothing outstanding) and a writer
//! task (writes whole frames from a queue, so a query abandoned at its
//! timeout never leaves half a frame on the stream).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;

use super::{checked, framed, network, tls_to, Common, ConnectionPool, Failed, InUse};
use crate::upstream::forward::{SentQuery, UpstreamQuery};
use crate::upstream::UpstreamError;

type Stream = TlsStream<TcpStream>;

pub(super) struct Pool {
    addr: SocketAddr,
    name: ServerName<'static>,
    /// `tls://ADDR#NAME`, for errors.
    label: String,
    config: Arc<ClientConfig>,
    common: Common,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is being opened, so that a burst of queries
    /// to a cold upstream opens one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

/// One connection's shared side.
pub(super) struct Conn {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// Queries written and not answered yet, by ID.
    waiting: HashMap<u16, oneshot::Sender<Vec<u8>>>,
    /// No more queries: the connection closed or is closing.
    closed: bool,
}

impl Pool {
    pub(super) fn new(
        addr: SocketAddr,
        name: &str,
        config: Arc<ClientConfig>,
        common: Common,
    ) -> Result<Self, UpstreamError> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| network(format!("tls://{addr}#{name}: {e}")))?;
        Ok(Self {
            label: format!("tls://{addr}#{}", name.to_str()),
            addr,
            name,
            config,
            common,
            conns: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
        })
    }
}

impl ConnectionPool for Pool {
    type Conn = Arc<Conn>;

    async fn ask(
        &self,
        conn: &Arc<Conn>,
        q: &UpstreamQuery<'_>,
        payload: u16,
    ) -> Result<Vec<u8>, Failed> {
        conn.ask(q, payload, &self.common, &self.label).await
    }

    /// A connection with room for one more query (and whether it was just
    /// opened): the least busy open one, else a new one while under the cap.
    async fn connection(&self) -> Result<(Arc<Conn>, bool), UpstreamError> {
        if let Some(conn) = self.pick() {
            return Ok((conn, false));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.pick() {
            return Ok((conn, false));
        }
        if self.open_count() >= self.common.limits.connections {
            return Err(UpstreamError::Overloaded);
        }
        let conn = self.common.open(&self.label, self.connect()).await?;
        self.lock_conns().push(conn.clone());
        Ok((conn, true))
    }
}

impl Pool {
    fn lock_conns(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self) -> Option<Arc<Conn>> {
        let mut conns = self.lock_conns();
        conns.retain(|c| !c.lock().closed);
        conns
            .iter()
            .map(|c| (c.lock().waiting.len(), c))
            .filter(|(load, _)| *load < self.common.limits.pipelined)
            .min_by_key(|(load, _)| *load)
            .map(|(_, c)| c.clone())
    }

    fn open_count(&self) -> usize {
        let mut conns = self.lock_conns();
        conns.retain(|c| !c.lock().closed);
        conns.len()
    }

    async fn connect(&self) -> Result<Arc<Conn>, UpstreamError> {
        let label = &self.label;
        let (tls, socket) =
            tls_to(&self.common, self.addr, &self.config, &self.name, label).await?;
        let (reader, writer) = tokio::io::split(tls);
        let (outbox, queue) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            outbox,
            pending: Mutex::new(Pending::default()),
        });
        let (close, closed) = oneshot::channel();
        tokio::spawn(write_frames(writer, queue, closed));
        tokio::spawn(read_answers(
            conn.clone(),
            reader,
            close,
            socket,
            self.common.limits.idle_timeout,
        ));
        Ok(conn)
    }
}

/// The connection closed before the answer came.
fn closed(label: &str) -> Failed {
    Failed::Lost(network(format!("{label}: the connection closed")))
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(
        &self,
        q: &UpstreamQuery<'_>,
        payload: u16,
        common: &Common,
        label: &str,
    ) -> Result<Vec<u8>, Failed> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let sent = {
            let mut pending = self.lock();
            if pending.closed {
                return Err(closed(label));
            }
            // An ID not outstanding on this connection: answers are matched by it.
            let sent = loop {
                let sent = SentQuery::encrypted(rand::random(), q, payload);
                if !pending.waiting.contains_key(&sent.id) {
                    break sent;
                }
            };
            pending.waiting.insert(sent.id, answer_tx);
            sent
        };
        // Forgets the query when it is answered, fails or is abandoned.
        let _forget = Forget(self, sent.id);
        self.outbox
            .send(framed(&sent.message))
            .map_err(|_| closed(label))?;
        let answer = answer_rx.await.map_err(|_| closed(label))?;
        checked(&sent, q, answer, &common.stats).map_err(Failed::Other)
    }
}

struct Forget<'a>(&'a Conn, u16);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting.remove(&self.1);
    }
}

/// Hands each answer to the query with its ID, in the order they come;
/// closes the connection when the server does, on a read error, or after
/// `idle` with nothing outstanding.
async fn read_answers(
    conn: Arc<Conn>,
    mut reader: ReadHalf<Stream>,
    close: oneshot::Sender<()>,
    socket: InUse,
    idle: std::time::Duration,
) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        while let Some(message) = next_frame(&mut buf) {
            let id = u16::from_be_bytes([message[0], message[1]]);
            // None: its query gave up already, or the server sent an ID
            // we never used.
            let waiter = conn.lock().waiting.remove(&id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
        }
        // read_buf keeps what it read if the idle timer fires mid-frame.
        match tokio::time::timeout(idle, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => {
                let mut pending = conn.lock();
                if pending.waiting.is_empty() {
                    pending.closed = true;
                    break;
                }
            }
        }
    }
    let mut pending = conn.lock();
    pending.closed = true;
    // Dropping the waiters' senders fails their queries at once.
    pending.waiting.clear();
    drop(pending);
    let _ = close.send(());
    drop(socket);
}

/// The next whole length-prefixed message in `buf` (at least a header's
/// worth: shorter ones are dropped), if one is complete.
fn next_frame(buf: &mut BytesMut) -> Option<Vec<u8>> {
    loop {
        if buf.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if buf.len() < 2 + len {
            return None;
        }
        buf.advance(2);
        let message = buf.split_to(len).to_vec();
        if message.len() >= 12 {
            return Some(message);
        }
    }
}

/// Writes queued frames until the reader says the connection is closing or
/// every sender is gone, then closes our side with a TLS close_notify.
async fn write_frames(
    mut writer: WriteHalf<Stream>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    mut closed: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
                // Whatever else is queued goes out in the same flush.
                while let Ok(more) = queue.try_recv() {
                    if writer.write_all(&more).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
            _ = &mut closed => break,
        }
    }
    let _ = writer.shutdown().await;
}
