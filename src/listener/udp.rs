//! UDP (RFC 1035 §4.2.1): one SO_REUSEPORT socket per worker. Queries are
//! read in batches (`recvmmsg`); answers that need no waiting are queued and
//! sent together (`sendmmsg`) once the socket is found empty, and a miss is
//! handed to its own task so the loop keeps reading; its answer joins the
//! worker's [`outbox`].
//!
//! The socket is registered with the reactor for reading only
//! ([`crate::reactor`]): a send that finds its buffer full waits for room on
//! a duplicate of it (`reactor::send`).
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
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::task::coop;

use smallvec::SmallVec;

use super::batch::{RecvBatch, SendBatch, BATCH};
use super::cmsg::Destination;
use super::outbox;
use crate::config::limits::MAX_UDP_QUERY;
use crate::pipeline::{Incoming, Step, Worker};
use crate::query::{ClientHints, Transport};
use crate::reactor;

/// Serves one worker's UDP socket until the runtime stops (or the drain
/// aborts this loop; answers still being resolved go out after that).
pub async fn serve(worker: Arc<Worker>, socket: std::net::UdpSocket) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let destinations = socket.local_addr()?.ip().is_unspecified();
    let socket = Arc::new(reactor::register(socket)?);
    let mut incoming = RecvBatch::new(destinations);
    let mut outgoing = SendBatch::default();
    let mut idle = false;
    loop {
        let received = next_batch(&socket, &mut incoming, &mut outgoing, &mut idle).await;
        // ICMP errors from earlier sends surface here on some systems;
        // they concern one peer, not the socket.
        let Ok(count) = received else {
            continue;
        };
        let mut returns: SmallVec<[(SocketAddr, Option<Destination>); BATCH]> = SmallVec::new();
        // Filled in place: `collect` builds the vector and then moves it, a
        // copy of all BATCH slots (3 KiB) per batch, most of it unused.
        let mut batch: SmallVec<[Incoming<'_>; BATCH]> = SmallVec::new();
        batch.extend((0..count).filter_map(|i| incoming.get(i)).map(|datagram| {
            let source = Destination::answer_source(datagram.destination);
            returns.push((datagram.peer, source));
            incoming_datagram(datagram.bytes, datagram.oversized, datagram.peer)
        }));
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
                        outbox::hold(&socket, reply, peer, source);
                    }));
                }
            }
        });
        drop(batch);
        if outgoing.len() >= BATCH {
            send_queued(&socket, &mut outgoing).await;
            outbox::flush();
        }
    }
}

/// Reads the next batch of queries. While more wait, the answers of the
/// batches read so far stay queued: they leave together when the socket is
/// found empty (or [`BATCH`] are queued), in fewer `sendmmsg` calls, each of
/// which may have to wake the client's thread. Queries that came in while
/// they left are read before the loop waits for the reactor.
///
/// A worker that waited longer than [`IDLE_WAIT`] for a batch (`idle`)
/// sends its answers at once instead: the read before the send would find
/// nothing, and cost the answer 2 µs.
///
/// The loop yields to the misses' tasks when its task budget is spent, and
/// then only with nothing queued, so a drain that stops it there loses no
/// answer (a socket buffer that stays full is the exception, as before).
async fn next_batch(
    socket: &reactor::Udp,
    incoming: &mut RecvBatch,
    outgoing: &mut SendBatch,
    idle: &mut bool,
) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let read_first = !*idle || outgoing.is_empty();
    *idle = false;
    // `try_io` spends none of the budget that makes a task yield; this does,
    // and does not yield while some is left.
    let budget = coop::has_budget_remaining();
    if budget {
        coop::consume_budget().await;
        if read_first {
            if let Some(received) =
                unless_empty(socket.try_io(Interest::READABLE, |_| incoming.recv(fd)))
            {
                return received;
            }
        }
    }
    outbox::flush();
    if !outgoing.is_empty() {
        send_queued(socket, outgoing).await;
        if budget {
            if let Some(received) = unless_empty(incoming.recv(fd)) {
                return received;
            }
            // The reactor may still hold the readiness this read used up (no
            // `try_io` read came first): without it, the wait below would
            // read the empty socket again before it sleeps.
            reactor::forget_readiness(socket, Interest::READABLE);
        }
    }
    // With the budget spent, this returns pending and the task yields.
    let waiting = Instant::now();
    let received = socket
        .async_io(Interest::READABLE, |_| incoming.recv(fd))
        .await;
    *idle = waiting.elapsed() >= IDLE_WAIT;
    received
}

/// What a non-blocking read gave, or None when it found the socket empty.
fn unless_empty(read: io::Result<usize>) -> Option<io::Result<usize>> {
    match read {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
        read => Some(read),
    }
}

/// A wait for queries this long means the worker is idle: its next batch is
/// all there is for now. Under full load on the AMD VM of `benches/README.md`
/// the worker's sleeps last 19-37 µs (most of it the wake-up itself), 7 %
/// of them longer than this; at 10,000 queries/s about 100 µs.
const IDLE_WAIT: Duration = Duration::from_micros(50);

/// [`send_all`], waiting only for room in the socket's buffer, never for
/// the task's budget: the loop must not yield, and be stopped by a drain,
/// with answers queued.
async fn send_queued(socket: &reactor::Udp, outgoing: &mut SendBatch) {
    coop::unconstrained(send_all(socket, outgoing)).await;
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
pub(super) async fn send_all(socket: &reactor::Udp, outgoing: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !outgoing.is_empty() {
        if reactor::send(socket, || outgoing.send(fd)).await.is_err() {
            outgoing.skip_first();
        }
    }
}
