//! Transports: bytes and a peer in, bytes out. No DNS semantics beyond
//! framing; everything else happens in [`crate::pipeline`].

mod batch;
pub mod conns;
pub mod doh;
pub mod doh3;
pub mod doq;
pub mod dot;
mod h2_records;
pub mod proxy;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel receive buffer asked for on UDP sockets, so bursts queue instead of
/// being dropped (the kernel caps it at net.core.rmem_max).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Pending-connection backlog of TCP listeners.
const TCP_BACKLOG: i32 = 1024;

/// A UDP socket with SO_REUSEPORT, so that every worker can own one on the
/// same address and the kernel spreads datagrams across them.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    prepare(&socket, addr)?;
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    if addr.ip().is_unspecified() {
        // A wildcard socket answers from each query's destination (udp.rs).
        udp::enable_pktinfo(&socket, addr.is_ipv6())?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener with SO_REUSEPORT (one per worker, like UDP).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    prepare(&socket, addr)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}

fn prepare(socket: &Socket, addr: SocketAddr) -> std::io::Result<()> {
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(())
}
