//! A UDP socket registered with the reactor for reading only, for the UDP
//! listener and the upstream sockets.
//!
//! Why not `tokio::net::UdpSocket`: it registers every socket for readable
//! and writable, edge-triggered. Linux then puts the socket on the epoll
//! ready list each time a datagram it sent is freed (`sock_wfree` →
//! `sock_def_write_space_wfree` → `ep_poll_callback` with `EPOLLOUT`, which
//! on loopback happens inside the send itself, `loopback_xmit` orphaning the
//! buffer), and the next `epoll_wait` hands the runtime a write readiness no
//! task waits for: a resolver that parks after each burst turns its driver
//! twice, and every upstream socket a miss used comes back as an event.
//! Unbound registers its sockets for `EPOLLIN` only; so does this.
//!
//! Sends are made directly, without blocking. A UDP send fails with EAGAIN
//! only while the socket's send buffer is full (a device queue backed up:
//! never on loopback, whose transmit releases each datagram's charge at
//! once); then, and only then, [`send_waiting`] registers a duplicate of the
//! descriptor for writable readiness and waits for it, so the worker goes on
//! with other tasks and the answer goes out when there is room, as it did
//! with tokio's socket. Unbound blocks its thread in `poll` for up to 200 ms
//! per try instead (`SEND_BLOCKED_WAIT_TIMEOUT` in its `netevent.c`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A non-blocking UDP socket registered for readable readiness only.
pub struct UdpFd {
    inner: AsyncFd<std::net::UdpSocket>,
}

impl UdpFd {
    /// Registers `socket` with the current runtime's reactor. The socket
    /// must be non-blocking already (as for tokio's `from_std`; the pool's
    /// and the listeners' are created so): no system call is spent on it here.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        Self::with_interest(socket, Interest::READABLE)
    }

    /// EXPERIMENT: registered for both, as tokio's socket.
    pub fn with_interest(socket: std::net::UdpSocket, interest: Interest) -> io::Result<Self> {
        // SAFETY: the `UdpSocket` owns its descriptor, and the `AsyncFd` owns
        // the socket until it is dropped: the descriptor stays open and the same.
        let inner = unsafe { AsyncFd::register_with_interest(socket, interest) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { inner })
    }

    /// The socket, for calls that need no readiness (`local_addr`, `connect`).
    pub fn get_ref(&self) -> &std::net::UdpSocket {
        self.inner.get_ref()
    }

    /// Waits until `read` succeeds; it is tried when the socket is readable,
    /// and must fail with `WouldBlock` only when the kernel said so (the
    /// readiness is then cleared).
    pub async fn read<R>(
        &self,
        mut read: impl FnMut(&std::net::UdpSocket) -> io::Result<R>,
    ) -> io::Result<R> {
        self.inner.async_io(Interest::READABLE, |s| read(s)).await
    }

    /// Tries `read` if the socket may be readable (no system call if the
    /// reactor saw nothing arrive since a read last found it empty).
    pub fn try_read<R>(
        &self,
        read: impl FnOnce(&std::net::UdpSocket) -> io::Result<R>,
    ) -> io::Result<R> {
        self.inner.try_io(Interest::READABLE, read)
    }

    /// Waits until the reactor reports the socket readable; the readiness
    /// stays until a read finds the socket empty.
    pub async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await.map(drop)
    }

    /// Forgets the readable readiness without a system call, as a read
    /// that found nothing would.
    pub fn forget_readable(&self) {
        let _ = self.try_read(|_| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    }

    /// `send` on a connected socket, waiting while the send buffer is full.
    pub async fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        send_waiting(self.as_fd(), || self.get_ref().send(datagram)).await
    }

    /// `send_to`, waiting while the send buffer is full.
    pub async fn send_to(&self, datagram: &[u8], peer: SocketAddr) -> io::Result<usize> {
        send_waiting(self.as_fd(), || self.get_ref().send_to(datagram, peer)).await
    }
}

impl AsRawFd for UdpFd {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UdpFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

/// Runs the non-blocking `send` on `fd` until it does not fail with
/// `WouldBlock`, waiting for writable readiness in between (see the module's
/// notes): the first try costs nothing but the system call.
pub async fn send_waiting<R>(
    fd: BorrowedFd<'_>,
    mut send: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(fd).await?,
            done => return done,
        }
    }
}

/// Waits until `fd` has room to send: a duplicate descriptor (the same
/// socket) is registered for writable readiness only for this wait, and
/// removed with it. `epoll_ctl` checks the socket when it adds it, so room
/// made between the failed send and the registration is not missed.
async fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let duplicate: OwnedFd = fd.try_clone_to_owned()?;
    // SAFETY: the `OwnedFd` is the `AsyncFd`'s alone and stays open until
    // the `AsyncFd` is dropped at the end of this function.
    let waiter = unsafe { AsyncFd::register_with_interest(duplicate, Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ready = waiter.writable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// A datagram socket whose send queue fills: a connected Unix datagram
    /// pair (a UDP socket's never fills on loopback, see the module's notes),
    /// the sender's buffer as small as the kernel allows.
    fn full_pair() -> (UnixDatagram, UnixDatagram) {
        let (sender, receiver) = UnixDatagram::pair().unwrap();
        sender.set_nonblocking(true).unwrap();
        socket2::SockRef::from(&sender)
            .set_send_buffer_size(1)
            .unwrap();
        let mut queued = 0u32;
        while sender.send(&queued.to_be_bytes()).is_ok() {
            queued += 1;
        }
        (sender, receiver)
    }

    #[tokio::test]
    async fn a_send_that_finds_the_buffer_full_waits_for_room_and_nothing_is_lost() {
        let (sender, receiver) = full_pair();
        let err = sender.send(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "the queue is full");
        let writer = tokio::spawn(async move {
            for i in 0..100u32 {
                let payload = format!("late {i}");
                send_waiting(sender.as_fd(), || sender.send(payload.as_bytes())).await?;
            }
            send_waiting(sender.as_fd(), || sender.send(b"end")).await
        });
        // The test's runtime has one thread: the writer runs until it waits.
        tokio::task::yield_now().await;
        assert!(!writer.is_finished(), "nobody reads: the writer waits");
        let reader = tokio::task::spawn_blocking(move || {
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(len) = receiver.recv(&mut buf) {
                if &buf[..len] == b"end" {
                    break;
                }
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            got
        });
        writer.await.unwrap().unwrap();
        let got = reader.await.unwrap();
        let late: Vec<&String> = got.iter().filter(|d| d.starts_with("late")).collect();
        let expected: Vec<String> = (0..100).map(|i| format!("late {i}")).collect();
        assert_eq!(
            late,
            expected.iter().collect::<Vec<_>>(),
            "every one, in order"
        );
        assert!(got.len() > late.len(), "after what filled the queue");
    }

    #[tokio::test]
    async fn a_udp_socket_answers_and_reads_with_read_only_registration() {
        let bind = || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            UdpFd::new(socket).unwrap()
        };
        let (server, client) = (bind(), bind());
        let server_addr = server.get_ref().local_addr().unwrap();
        client.get_ref().connect(server_addr).unwrap();
        client.send(b"query").await.unwrap();
        let mut buf = [0u8; 64];
        let (len, peer) = server.read(|s| s.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..len], b"query");
        server.send_to(b"answer", peer).await.unwrap();
        let len = client.read(|s| s.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..len], b"answer");
    }
}
