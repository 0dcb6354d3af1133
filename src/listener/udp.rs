//! UDP (RFC 1035 §4.2.1): one SO_REUSEPORT socket per worker. Answers that
//! need no waiting are sent inline from the receive loop; a miss is handed to
//! its own task so the loop keeps reading.
//!
//! A socket bound to a specific address (the fast path) answers with plain
//! `recv_from`/`send_to`. A socket bound to a wildcard address (`0.0.0.0`,
//! `[::]`) must answer from the address each query was sent to, or a client
//! that asked an anycast address would get its answer from the host's own
//! address and drop it; it learns that address with IP_PKTINFO /
//! IPV6_RECVPKTINFO and sets it on each answer with `sendmsg`.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use socket2::SockAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use smallvec::SmallVec;

use super::batch::{RecvBatch, SendBatch, BATCH};
use crate::config::limits::MAX_UDP_QUERY;
use crate::pipeline::{Incoming, Step, Worker};
use crate::query::{ClientHints, Transport};

/// Largest datagram a wildcard socket reads, so that one past
/// [`MAX_UDP_QUERY`] is seen whole and rejected like on the batched path.
const MAX_DATAGRAM: usize = 65_535;

/// Serves one worker's UDP socket until the runtime stops (or the drain
/// aborts this loop; answers still being resolved go out after that).
pub async fn serve(worker: Arc<Worker>, socket: std::net::UdpSocket) -> io::Result<()> {
    let wildcard = socket.local_addr()?.ip().is_unspecified();
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    if wildcard {
        return serve_wildcard(worker, socket).await;
    }
    let fd = socket.as_raw_fd();
    let mut incoming = RecvBatch::default();
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
        let mut peers: SmallVec<[SocketAddr; BATCH]> = SmallVec::new();
        let batch: SmallVec<[Incoming<'_>; BATCH]> = (0..count)
            .filter_map(|i| incoming.get(i))
            .map(|datagram| {
                peers.push(datagram.peer);
                incoming_datagram(datagram.bytes, datagram.oversized, datagram.peer)
            })
            .collect();
        worker.start_batch(&batch, |i, step| {
            let peer = peers[i];
            match step {
                Step::Reply(reply) => outgoing.push(reply, peer),
                Step::Drop => {}
                Step::Resolve(pending) => {
                    let (worker, socket) = (worker.clone(), socket.clone());
                    // Boxed: tokio copies a task's whole future when it is spawned and again
                    // when it completes; this one is kilobytes, its box a pointer.
                    tokio::spawn(Box::pin(async move {
                        // None: the response phase dropped it; send nothing.
                        if let Some(reply) = worker.finish_in_task(pending).await {
                            let _ = socket.send_to(&reply, peer).await;
                        }
                    }));
                }
            }
        });
        drop(batch);
        send_all(&socket, &mut outgoing).await;
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
async fn send_all(socket: &UdpSocket, outgoing: &mut SendBatch) {
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

/// The receive loop of a wildcard socket: the same as the fast path, with
/// each query's destination address carried to its answer.
async fn serve_wildcard(worker: Arc<Worker>, socket: Arc<UdpSocket>) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = socket
            .async_io(Interest::READABLE, || {
                recv_with_destination(socket.as_raw_fd(), &mut buf)
            })
            .await;
        let Ok(Received {
            len,
            peer,
            destination,
            oversized,
        }) = received
        else {
            continue;
        };
        let datagram = incoming_datagram(&buf[..len], oversized, peer);
        match worker.start_incoming(&datagram, Instant::now()) {
            Step::Reply(reply) => {
                let _ = send_from(&socket, &reply, peer, destination).await;
            }
            Step::Drop => {}
            Step::Resolve(pending) => {
                let (worker, socket) = (worker.clone(), socket.clone());
                tokio::spawn(async move {
                    if let Some(reply) = worker.finish_in_task(pending).await {
                        let _ = send_from(&socket, &reply, peer, destination).await;
                    }
                });
            }
        }
    }
}

/// Where a datagram was sent: its destination address and the interface it
/// came in on (needed to answer from an IPv6 link-local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub ip: IpAddr,
    pub ifindex: u32,
}

/// Asks the kernel to report each datagram's destination (wildcard sockets).
pub fn enable_pktinfo(socket: &socket2::Socket, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    super::set_int_option(socket, level, name, 1)
}

/// Room for one control message (IP_PKTINFO, IPV6_PKTINFO, UDP_SEGMENT),
/// aligned for cmsghdr.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct ControlBuffer(pub(super) [u8; 64]);

impl Default for ControlBuffer {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// One datagram read by [`recv_with_destination`].
struct Received {
    len: usize,
    peer: SocketAddr,
    /// None if the kernel gave none.
    destination: Option<Destination>,
    /// Longer than the buffer: the kernel cut it (MSG_TRUNC).
    oversized: bool,
}

/// `recvmsg` of one datagram with its destination.
fn recv_with_destination(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: all-zero is a valid sockaddr_storage / msghdr.
    let mut peer: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut control = ControlBuffer::default();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut peer as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: every pointer in msg points at live buffers of the stated sizes.
    let len = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let peer = socket_addr(&peer)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP address"))?;
    Ok(Received {
        len: len as usize,
        peer,
        destination: destination_of(&msg),
        oversized: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// The IPv4 or IPv6 address in a `sockaddr_storage` the kernel filled.
pub(crate) fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Reads the destination out of the control messages `recvmsg` filled.
fn destination_of(msg: &libc::msghdr) -> Option<Destination> {
    // SAFETY: msg was filled by recvmsg; the CMSG_* macros stay within
    // msg_controllen, and each payload is read unaligned at its own size.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                let ip = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                return Some(Destination {
                    ip: ip.into(),
                    ifindex: info.ipi_ifindex as u32,
                });
            }
            if header.cmsg_level == libc::IPPROTO_IPV6 && header.cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                return Some(Destination {
                    ip: Ipv6Addr::from(info.ipi6_addr.s6_addr).into(),
                    ifindex: info.ipi6_ifindex,
                });
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Sends `reply` to `peer` from the address the query was sent to.
async fn send_from(
    socket: &UdpSocket,
    reply: &[u8],
    peer: SocketAddr,
    destination: Option<Destination>,
) -> io::Result<usize> {
    // Multicast or broadcast destinations are not ours to answer from.
    let source = destination.filter(|d| match d.ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    });
    let Some(source) = source else {
        return socket.send_to(reply, peer).await;
    };
    socket
        .async_io(Interest::WRITABLE, || {
            send_with_source(socket.as_raw_fd(), reply, peer, source)
        })
        .await
}

/// `sendmsg` with an IP_PKTINFO / IPV6_PKTINFO control message naming the source.
fn send_with_source(
    fd: RawFd,
    reply: &[u8],
    peer: SocketAddr,
    source: Destination,
) -> io::Result<usize> {
    let peer = SockAddr::from(peer);
    let mut control = ControlBuffer::default();
    let mut iov = libc::iovec {
        iov_base: reply.as_ptr() as *mut libc::c_void,
        iov_len: reply.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = peer.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = peer.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: the control buffer is large and aligned enough for one
    // in_pktinfo or in6_pktinfo message (CMSG_SPACE of either is at most 40).
    unsafe {
        let (level, kind, size) = match source.ip {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                mem::size_of::<libc::in_pktinfo>(),
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                mem::size_of::<libc::in6_pktinfo>(),
            ),
        };
        msg.msg_controllen = libc::CMSG_SPACE(size as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size as u32) as _;
        let data = libc::CMSG_DATA(cmsg);
        match source.ip {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast::<libc::in_pktinfo>(), info);
            }
            IpAddr::V6(v6) => {
                // The interface matters only for link-local sources.
                let scoped = v6.segments()[0] & 0xffc0 == 0xfe80;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: if scoped { source.ifindex } else { 0 },
                };
                std::ptr::write_unaligned(data.cast::<libc::in6_pktinfo>(), info);
            }
        }
    }
    // SAFETY: every pointer in msg points at live buffers of the stated sizes.
    let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}
