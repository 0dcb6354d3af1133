//! The test authority's network side: a dedicated thread running its own
//! current-thread runtime with one UDP loop and one TCP accept loop.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep;

use super::authority::Shared;
use super::respond::Transport;

/// Largest DNS message over either transport.
const MAX_MESSAGE: usize = 65535;

/// Runs the server until the returned sender fires (or is dropped).
pub(super) fn spawn(
    shared: Arc<Shared>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (shutdown, stop) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("test-authority".into())
        .spawn(move || run(shared, udp, tcp, stop))
        .expect("spawn test authority thread");
    (shutdown, thread)
}

fn run(
    shared: Arc<Shared>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    stop: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test authority runtime");
    runtime.block_on(async move {
        udp.set_nonblocking(true).expect("nonblocking UDP");
        tcp.set_nonblocking(true).expect("nonblocking TCP");
        let udp = Arc::new(UdpSocket::from_std(udp).expect("register UDP socket"));
        let tcp = TcpListener::from_std(tcp).expect("register TCP listener");
        tokio::select! {
            _ = stop => {}
            _ = serve_udp(udp, Arc::clone(&shared)) => {}
            _ = serve_tcp(tcp, shared) => {}
        }
    });
    // Dropping the runtime cancels in-flight replies and closes every socket.
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue; // e.g. a stray ICMP error; the socket itself is fine
        };
        shared.on_udp_source(peer);
        let Some(reply) = shared.on_query(&buf[..len], Transport::Udp) else {
            continue;
        };
        let socket = Arc::clone(&socket);
        // One task per reply, so a delayed answer never holds up the next query.
        tokio::spawn(async move {
            sleep(reply.delay).await;
            for packet in reply.packets {
                let _ = socket.send_to(&packet, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_stream(stream, Arc::clone(&shared)));
        }
    }
}

/// RFC 7766: length-prefixed messages, several per connection, each answered
/// when ready, so answers may overtake each other. The connection closes once
/// the client has finished sending and every pending answer is written.
/// Also the inside of the test DoT server (`encrypted.rs`), over TLS.
pub(super) async fn serve_stream<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (outbox, inbox) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(writer, inbox));
    while let Some(message) = read_frame(&mut reader).await {
        let Some(reply) = shared.on_query(&message, Transport::Tcp) else {
            continue;
        };
        let outbox = outbox.clone();
        tokio::spawn(async move {
            sleep(reply.delay).await;
            for packet in reply.packets {
                let _ = outbox.send(packet);
            }
        });
    }
}

async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let len = reader.read_u16().await.ok()?;
    let mut message = vec![0u8; usize::from(len)];
    reader.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// Writes each answer as one frame; ends (closing our side) when every
/// sender is gone.
async fn write_frames(
    mut writer: impl AsyncWrite + Unpin,
    mut inbox: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(packet) = inbox.recv().await {
        let len = u16::try_from(packet.len()).expect("DNS message fits a TCP frame");
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&packet);
        if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
