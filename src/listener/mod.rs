//! Transports: bytes and a peer in, bytes out. No DNS semantics beyond
//! framing; everything else happens in [`crate::pipeline`].

mod batch;
mod cmsg;
pub mod conns;
pub mod doh;
pub mod doh3;
pub mod doq;
pub mod dot;
mod h2_records;
pub mod outbox;
pub mod proxy;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

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
    set_dont_fragment(&socket, addr.is_ipv6())?;
    if addr.ip().is_unspecified() {
        // A wildcard socket answers from each query's destination (udp.rs, cmsg.rs).
        cmsg::enable_pktinfo(&socket, addr.is_ipv6())?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A UDP port on `ip` that no socket holds, for a listener asked for port 0.
///
/// The kernel's own pick for a socket with SO_REUSEPORT can be a port that
/// another SO_REUSEPORT socket of the same user already holds: Linux lets
/// such sockets share a port, and its port-0 pick for UDP does not skip
/// them (TCP's does). Two servers would then split each other's queries
/// without a word. A socket without SO_REUSEPORT conflicts with any socket
/// on its port, so the kernel's pick for it is a port no one holds; it is
/// closed at once, and the caller binds there (and picks again if something
/// took the port in between).
pub fn unshared_udp_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    let probe = std::net::UdpSocket::bind((ip, 0))?;
    Ok(probe.local_addr()?.port())
}

/// Sends every answer with Don't Fragment set and never fragments one (RFC 9715 §3.1, R1:
/// a UDP responder sets IP_DONTFRAG), ignoring path MTU reports (`IP_PMTUDISC_PROBE`): a
/// forged ICMP "fragmentation needed" can neither make Picket fragment its answers (the
/// fragment-spoofing attacks on DNS) nor shrink what it sends. Answers are at most
/// [`Limits::max_udp_payload`](crate::config::limits::Limits) bytes (1232), which fits the
/// MTU of every interface that carries IPv6 and nearly every IPv4 one.
///
/// It is also cheaper: an IPv4 datagram with DF set needs no IP ID (the kernel writes 0),
/// where one that may be fragmented has an ID drawn from the kernel's shared, hashed
/// counters for every answer (`__ip_select_ident`, about 1.3 % of a cache hit's CPU).
/// Linux's default (`IP_PMTUDISC_WANT`) sets DF but still draws the ID, since it allows
/// local fragmentation; Unbound sets `IP_PMTUDISC_OMIT` (no DF, an ID per answer).
fn set_dont_fragment(socket: &Socket, ipv6: bool) -> std::io::Result<()> {
    let (level, name, value) = match ipv6 {
        false => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        ),
        true => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        ),
    };
    set_int_option(socket, level, name, value)
}

/// `setsockopt` of a `c_int` option (those socket2 has no method for).
pub(crate) fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a valid socket, and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Whether Picket runs under socket_wrapper (cwrap.org), the `LD_PRELOAD`
/// library that test harnesses such as Deckard run resolvers under: it
/// turns every IP socket into a Unix datagram or stream socket in
/// `SOCKET_WRAPPER_DIR`, and is active only when that variable is set.
///
/// Such a socket refuses `SO_REUSEPORT` (`EOPNOTSUPP`), and the library
/// does not wrap `recvmmsg` and `sendmmsg` (Debian's 1.3.5): they would
/// reach the Unix socket with IP addresses it cannot take. So under it
/// Picket runs one worker, binds each listener once, and reads and writes
/// one datagram per `recvmsg` and `sendmsg`, calls the library translates.
/// A harness measures answers, not speed, so nothing else changes.
pub fn socket_wrapper_active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE
        .get_or_init(|| std::env::var_os("SOCKET_WRAPPER_DIR").is_some_and(|dir| !dir.is_empty()))
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
    if !socket_wrapper_active() {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket's path-MTU discovery mode, as `getsockopt` reports it.
    fn mtu_discover(socket: &std::net::UdpSocket, ipv6: bool) -> libc::c_int {
        let (level, name) = match ipv6 {
            false => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            true => (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
        };
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket, and a c_int buffer of the stated size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value
    }

    /// Listeners of other servers (here: 400 of them) never share the port
    /// picked for a listener asked for port 0; the kernel's own pick for a
    /// SO_REUSEPORT socket lands on one of theirs about 6 times in 400.
    #[test]
    fn a_port_picked_for_port_0_is_held_by_no_other_listener() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let others: Vec<_> = (0..400).map(|_| bind_udp(any).unwrap()).collect();
        let taken: std::collections::HashSet<u16> = others
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        let shared: Vec<u16> = (0..400)
            .map(|_| unshared_udp_port(any.ip()).unwrap())
            .filter(|port| taken.contains(port))
            .collect();
        assert_eq!(shared, [] as [u16; 0], "ports other listeners hold");
    }

    #[test]
    fn udp_answers_are_sent_unfragmentable_ignoring_path_mtu_reports() {
        let v4 = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(mtu_discover(&v4, false), libc::IP_PMTUDISC_PROBE);
        let wildcard = bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
        assert_eq!(mtu_discover(&wildcard, false), libc::IP_PMTUDISC_PROBE);
        // Hosts without IPv6 on loopback cannot bind [::1]; the IPv4 checks stand alone then.
        if let Ok(v6) = bind_udp("[::1]:0".parse().unwrap()) {
            assert_eq!(mtu_discover(&v6, true), libc::IPV6_PMTUDISC_PROBE);
        }
    }
}
