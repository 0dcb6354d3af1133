//! DNS over a stream (RFC 7766): 2-byte length framing, several queries per
//! connection answered as they complete (out of order), an idle timeout that
//! shortens under pressure, and a cap on open connections. DoT (RFC 7858)
//! runs the same code over TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;

use crate::config::Limits;
use crate::pipeline::{Step, Worker};
use crate::query::{ClientHints, Transport};

/// Open connections of one kind, bounded, shared by all workers.
#[derive(Debug)]
pub struct ConnectionSlots {
    open: AtomicUsize,
    max: usize,
}

/// Holds a connection slot; frees it on drop.
pub struct Slot(Arc<ConnectionSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionSlots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    /// Takes a slot, or None when all are in use.
    pub fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => open = now,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Past three quarters of the cap: idle connections get less time.
    pub fn under_pressure(&self) -> bool {
        self.open() * 4 >= self.max * 3
    }
}

/// Accepts TCP connections on one worker's listener until the runtime stops.
pub async fn serve(
    worker: Arc<Worker>,
    listener: std::net::TcpListener,
    slots: Arc<ConnectionSlots>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        let (stream, peer, slot) = accept(&listener, &slots).await;
        let worker = worker.clone();
        let hints = ClientHints::plain(peer.ip(), Transport::Tcp);
        let limits = worker.shared().settings.limits.clone();
        // A graceful stop waits for this connection's answers.
        let inflight = worker.shared().drain.track();
        tokio::spawn(async move {
            serve_stream(worker, stream, hints, &limits, &slot).await;
            drop(inflight);
        });
    }
}

/// Waits for the next connection that gets a slot (TCP, DoT and DoH alike).
/// At the cap a connection is closed at once; the client retries or falls
/// back to UDP, and established clients keep their service.
pub async fn accept(
    listener: &TcpListener,
    slots: &Arc<ConnectionSlots>,
) -> (TcpStream, SocketAddr, Slot) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = slots.acquire() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, peer, slot);
    }
}

/// Serves DNS messages on one established stream until the client closes it,
/// goes idle, sends a broken frame, or a drain closes the listeners; then
/// writes the answers still owed and closes.
pub async fn serve_stream<S>(
    worker: Arc<Worker>,
    stream: S,
    hints: ClientHints,
    limits: &Limits,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(limits.tcp_max_pipelined.max(1));
    let write_timeout = limits.tcp_idle_timeout;
    let writing = write_answers(writer, rx, write_timeout);
    let reading = read_queries(worker, reader, tx, hints, limits, &slot.0);
    tokio::join!(reading, writing);
}

async fn read_queries<R: AsyncRead>(
    worker: Arc<Worker>,
    reader: R,
    tx: mpsc::Sender<Vec<u8>>,
    hints: ClientHints,
    limits: &Limits,
    slots: &ConnectionSlots,
) {
    tokio::pin!(reader);
    let outstanding = Arc::new(Semaphore::new(limits.tcp_max_pipelined.max(1)));
    let closed = worker.shared().drain.closed();
    tokio::pin!(closed);
    loop {
        let idle = if slots.under_pressure() {
            limits.tcp_idle_timeout_pressure
        } else {
            limits.tcp_idle_timeout
        };
        let message = tokio::select! {
            biased;
            () = &mut closed => break,
            message = read_frame(&mut reader, idle) => message,
        };
        let Some(message) = message else {
            break;
        };
        match worker.start(&message, &hints) {
            Step::Reply(reply) => {
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            Step::Drop => {}
            Step::Resolve(pending) => {
                // Bounded pipelining: past the limit we stop reading until an
                // answer goes out (backpressure through the socket).
                let Ok(permit) = outstanding.clone().acquire_owned().await else {
                    break;
                };
                let (worker, tx) = (worker.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = worker.finish(*pending).await;
                    let _ = tx.send(reply).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Reads one length-prefixed message. None on EOF, idle timeout, or a
/// message that does not arrive in time once started (slowloris).
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, idle: Duration) -> Option<Vec<u8>> {
    let len = timeout(idle, reader.read_u16()).await.ok()?.ok()? as usize;
    let mut message = vec![0u8; len];
    timeout(idle, reader.read_exact(&mut message))
        .await
        .ok()?
        .ok()?;
    Some(message)
}

async fn write_answers<W: AsyncWrite>(
    writer: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
) {
    tokio::pin!(writer);
    let mut framed = Vec::with_capacity(1024);
    while let Some(answer) = rx.recv().await {
        framed.clear();
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        match timeout(write_timeout, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            // A client that does not read its answers loses its connection.
            _ => return,
        }
    }
    let _ = timeout(Duration::from_secs(1), writer.shutdown()).await;
}
