//! UDP sockets registered with a worker's reactor for reading only, as
//! Unbound registers its own: the listening sockets and the pooled upstream
//! ones.
//!
//! `tokio::net::UdpSocket` registers every socket for reading and writing.
//! epoll is edge-triggered there, and the kernel signals "writable" each
//! time it frees a datagram's buffer, so every datagram sent queued an event
//! for the socket: an idle worker then made a second `epoll_wait` per query
//! just to learn that it could still send (at 10,000 cache hits/s, 1.39
//! `epoll_wait` per query against Unbound's 0.67). A UDP socket's buffer is
//! almost never full, so the rare send that finds it full waits on a
//! duplicate of the descriptor, registered for writing while it waits
//! ([`send`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A UDP socket registered with the current worker's reactor for reading.
pub type Udp = AsyncFd<std::net::UdpSocket>;

/// Registers `socket`, which must be non-blocking, with the current
/// runtime's reactor for reading (errors are always reported).
pub fn register(socket: std::net::UdpSocket) -> io::Result<Udp> {
    // SAFETY: a `UdpSocket` owns its descriptor: it stays open, and is the
    // one `as_raw_fd` returns, until the socket (and so the `AsyncFd`) drops.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// Runs the non-blocking `send` on `socket` until it does something other
/// than report a full buffer (`WouldBlock`), waiting for [`room`] in between.
pub async fn send<T: AsRawFd + AsFd, R>(
    socket: &AsyncFd<T>,
    mut send: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match send() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => room(socket).await,
            done => return done,
        }
    }
}

/// How long a send waits before trying again when it cannot watch for room.
const ROOM_RETRY: Duration = Duration::from_millis(1);

/// Waits until `socket`'s send buffer has room for a datagram. epoll reports
/// the duplicate writable at once if room came since the send that failed,
/// so no wake-up is lost. If no duplicate can be had (no descriptor left),
/// it waits [`ROOM_RETRY`] instead.
async fn room<T: AsRawFd + AsFd>(socket: &AsyncFd<T>) {
    let waited = match watch_writable(socket.get_ref().as_fd()) {
        Ok(watch) => watch.writable().await.map(drop),
        Err(error) => Err(error),
    };
    if waited.is_err() {
        tokio::time::sleep(ROOM_RETRY).await;
    }
}

/// A duplicate of `fd`, registered with the reactor for writing.
fn watch_writable(fd: BorrowedFd<'_>) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = fd.try_clone_to_owned()?;
    // SAFETY: the `OwnedFd` owns the duplicate: it stays open, and is the
    // one `as_raw_fd` returns, until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }.map_err(io::Error::from)
}

/// Clears the reactor's record that `socket` is ready for `interest`,
/// without a system call: an operation that reports `WouldBlock` makes
/// tokio forget the readiness it saw, so the next wait sleeps until the
/// kernel says more.
pub fn forget_readiness<T: AsRawFd>(socket: &AsyncFd<T>, interest: Interest) {
    let _ = socket.try_io(interest, |_| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[tokio::test]
    async fn a_send_that_finds_the_buffer_full_waits_for_room_then_goes_on() {
        // A datagram socket whose peer does not read fills up, as a UDP
        // socket's buffer can on a busy link (loopback never fills one).
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let datagram = [7u8; 512];
        let mut sent = 0;
        while ours.send(&datagram).is_ok() {
            sent += 1;
        }
        assert!(sent > 0);
        // SAFETY: the `UnixDatagram` owns its descriptor until the `AsyncFd` drops it.
        let ours = unsafe { AsyncFd::register_with_interest(ours, Interest::READABLE) }.unwrap();

        let waiting = room(&ours);
        tokio::pin!(waiting);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
        assert!(early.is_err(), "room reported while the buffer is full");

        let mut read = 0;
        let mut buf = [0u8; 512];
        while theirs.recv(&mut buf).is_ok() {
            read += 1;
        }
        assert_eq!(read, sent);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room once the peer has read");
        assert!(ours.get_ref().send(&datagram).is_ok());
    }
}
