//! Control messages on UDP sockets: the destination a query was sent to
//! (IP_PKTINFO / IPV6_PKTINFO, read on wildcard sockets), the source an
//! answer must leave from (the same options, written), and the segment size
//! of a segmented send (UDP_SEGMENT).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Room for the control messages of one datagram or message: a pktinfo
/// (CMSG_SPACE of in6_pktinfo is 40 bytes) and a segment size (24 bytes)
/// fit exactly. Aligned for cmsghdr.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct ControlBuffer(pub(super) [u8; 64]);

impl Default for ControlBuffer {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// Where a datagram was sent: its destination address and the interface it
/// came in on (needed to answer from an IPv6 link-local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination {
    pub ip: IpAddr,
    pub ifindex: u32,
}

impl Destination {
    /// The source an answer to a query sent here must carry, if the socket
    /// must name one: multicast or broadcast destinations are not ours to
    /// answer from, so those answers leave from the kernel's choice.
    pub fn answer_source(destination: Option<Destination>) -> Option<Destination> {
        destination.filter(|d| match d.ip {
            IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
            IpAddr::V6(v6) => !v6.is_multicast(),
        })
    }
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

/// Reads the destination out of the control messages `recvmsg` or
/// `recvmmsg` filled into `msg` (none on a socket without pktinfo).
pub(super) fn destination_of(msg: &libc::msghdr) -> Option<Destination> {
    if msg.msg_control.is_null() || msg.msg_controllen == 0 {
        return None;
    }
    // SAFETY: msg was filled by the kernel; the CMSG_* macros stay within
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

/// Writes the control messages of one outgoing message into `control` and
/// points `hdr` at them: the source address to send from, if any, and the
/// segment size, if the message carries several answers.
pub(super) fn write_controls(
    hdr: &mut libc::msghdr,
    control: &mut ControlBuffer,
    source: Option<Destination>,
    segment: Option<u16>,
) {
    let mut used = 0;
    if let Some(source) = source {
        used += match source.ip {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                put(control, used, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
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
                put(control, used, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
            }
        };
    }
    if let Some(segment) = segment {
        used += put(control, used, libc::SOL_UDP, libc::UDP_SEGMENT, segment);
    }
    if used == 0 {
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
    } else {
        hdr.msg_control = control.0.as_mut_ptr().cast();
        hdr.msg_controllen = used as _;
    }
}

/// Writes one control message carrying `payload` at byte `offset` of
/// `control`; returns the room it takes (CMSG_SPACE).
fn put<T>(control: &mut ControlBuffer, offset: usize, level: i32, kind: i32, payload: T) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(mem::size_of::<T>() as u32) as usize,
            libc::CMSG_LEN(mem::size_of::<T>() as u32) as usize,
        )
    };
    // A pktinfo and a segment size take at most 40 + 24 bytes.
    debug_assert!(offset + space <= control.0.len(), "control buffer overrun");
    // SAFETY: the message fits in the buffer (the callers write at most the
    // two messages above, 64 bytes); `offset` is a
    // sum of CMSG_SPACEs, so the header is aligned for cmsghdr in the
    // 8-aligned buffer; the payload is written unaligned.
    unsafe {
        let cmsg = control.0.as_mut_ptr().add(offset).cast::<libc::cmsghdr>();
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = len as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), payload);
    }
    space
}
