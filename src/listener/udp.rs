//! UDP (RFC 1035 §4.2.1): one SO_REUSEPORT socket per worker. Queries are
//! read in batches (`recvmmsg`); answers that need no waiting are sent
//! together at the end of the batch (`sendmmsg`), and a miss is handed to
//! its own task so the loop keeps reading.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) must answer from
//! the address each query was sent to, or a client that asked an anycast
//! address would get its answer from the host's own address and drop it. It
//! learns that address with IP_PKTINFO / IPV6_RECVPKTINFO, read with each
//! datagram of the batch, and names it on each answer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::SockAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use smallvec::SmallVec;

use super::batch::{RecvBatch, SendBatch, BATCH};
use super::cmsg::{send_with_source, Destination};
use super::outbox;
use crate::config::limits::MAX_UDP_QUERY;
use crate::pipeline::{Incoming, Step, Worker};
use crate::query::{ClientHints, Transport};

/// Serves one worker's UDP socket until the runtime stops (or the drain
/// aborts this loop; answers still being resolved go out after that).
pub async fn serve(worker: Arc<Worker>, socket: std::net::UdpSocket) -> io::Result<()> {
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let fd = socket.as_raw_fd();
    let destinations = socket.local_addr()?.ip().is_unspecified();
    let mut incoming = RecvBatch::new(destinations);
    let mut outgoing = SendBatch::default();
    loop {
        let received = socket
            .async_io(Interest::READABLE, || incoming.recv(fd))
            .await;
        // ICMP errors from earlier sends surface here on some systems;
        // they concern one peer, not the socket.
        let Ok(count) = received else {
            continue;
        };
        outbox::note_batch(count);
        let mut returns: SmallVec<[(SocketAddr, Option<Destination>); BATCH]> = SmallVec::new();
        let batch: SmallVec<[Incoming<'_>; BATCH]> = (0..count)
            .filter_map(|i| incoming.get(i))
            .map(|datagram| {
                let source = Destination::answer_source(datagram.destination);
                returns.push((datagram.peer, source));
                incoming_datagram(datagram.bytes, datagram.oversized, datagram.peer)
            })
            .collect();
        worker.start_batch(&batch, |i, step| {
            let (peer, source) = returns[i];
            match step {
                Step::Reply(reply) => outgoing.push(reply, peer, source),
                Step::Drop => {}
                Step::Resolve(pending) => {
                    let (worker, socket) = (worker.clone(), socket.clone());
                    // Boxed: tokio copies a task's whole future when it is spawned and again
                    // when it completes; this one is kilobytes, its box a pointer.
                    tokio::spawn(Box::pin(async move {
                        // Answers held so far leave before this query's
                        // upstream exchange, not after it.
                        outbox::flush();
                        // None: the response phase dropped it; send nothing.
                        let Some(reply) = worker.finish_in_task(pending).await else {
                            return;
                        };
                        if outbox::holding() {
                            outbox::hold(&socket, reply, peer, source);
                        } else {
                            let _ = send_one(&socket, &reply, peer, source).await;
                        }
                    }));
                }
            }
        });
        drop(batch);
        send_all(&socket, &mut outgoing).await;
        outbox::flush();
    }
}

/// A datagram from `peer` for the pipeline; one longer than
/// [`MAX_UDP_QUERY`] is malformed, whatever its first bytes say.
fn incoming_datagram(bytes: &[u8], oversized: bool, peer: SocketAddr) -> Incoming<'_> {
    Incoming {
        bytes,
        hints: ClientHints::from_peer(peer, Transport::Udp),
        oversized: oversized || bytes.len() > MAX_UDP_QUERY,
    }
}

/// Sends every queued answer, waiting while the socket buffer is full; an
/// answer whose destination is refused by the kernel is dropped.
pub(super) async fn send_all(socket: &UdpSocket, outgoing: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !outgoing.is_empty() {
        if socket
            .async_io(Interest::WRITABLE, || outgoing.send(fd))
            .await
            .is_err()
        {
            outgoing.skip_first();
        }
    }
}

/// Sends one answer to `peer`, from `source` when the socket must name it.
async fn send_one(
    socket: &UdpSocket,
    reply: &[u8],
    peer: SocketAddr,
    source: Option<Destination>,
) -> io::Result<usize> {
    let Some(source) = source else {
        return socket.send_to(reply, peer).await;
    };
    let peer = SockAddr::from(peer);
    socket
        .async_io(Interest::WRITABLE, || {
            send_with_source(socket.as_raw_fd(), reply, &peer, source)
        })
        .await
}
