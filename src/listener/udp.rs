//! UDP (RFC 1035 §4.2.1): one SO_REUSEPORT socket per worker. Answers that
//! need no waiting are sent inline from the receive loop; a miss is handed to
//! its own task so the loop keeps reading.

use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::pipeline::{Step, Worker};
use crate::query::{ClientHints, Transport};

/// Largest datagram read; DNS over UDP never legitimately exceeds it.
const MAX_DATAGRAM: usize = 65_535;

/// Serves one worker's UDP socket until the runtime stops.
pub async fn serve(worker: Arc<Worker>, socket: std::net::UdpSocket) -> std::io::Result<()> {
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors from earlier sends surface here on some systems;
            // they concern one peer, not the socket.
            Err(_) => continue,
        };
        let hints = ClientHints::plain(peer.ip(), Transport::Udp);
        match worker.start(&buf[..len], &hints) {
            Step::Reply(reply) => {
                let _ = socket.send_to(&reply, peer).await;
            }
            Step::Drop => {}
            Step::Resolve(pending) => {
                let (worker, socket) = (worker.clone(), socket.clone());
                tokio::spawn(async move {
                    let reply = worker.finish(*pending).await;
                    let _ = socket.send_to(&reply, peer).await;
                });
            }
        }
    }
}
