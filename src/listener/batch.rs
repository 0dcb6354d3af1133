//! Datagrams in batches: `recvmmsg` reads up to [`BATCH`] queries in one
//! system call and `sendmmsg` writes the answers in one, instead of a
//! `recvfrom` and a `sendto` per query. On a loaded resolver most of the
//! CPU per cached answer is the kernel's, and the system call entry, file
//! lookup and security checks are paid once per batch instead of per packet.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::udp::socket_addr;
use crate::config::limits::MAX_UDP_QUERY;

/// Datagrams per system call. Unbound's `recvmmsg` patches and Knot use 32-64.
pub const BATCH: usize = 32;
/// Room for one query. A larger datagram is cut by the kernel, which says
/// so with MSG_TRUNC: [`RecvBatch::get`] reports it as oversized, never as
/// the query its first bytes may look like.
pub const SLOT: usize = MAX_UDP_QUERY;

/// Buffers for one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs` and `headers` only ever point into
// this struct's own heap buffers, and are rewritten before every use.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
        Self {
            bufs: vec![0u8; BATCH * SLOT],
            addrs: vec![unsafe { mem::zeroed() }; BATCH],
            iovs: vec![unsafe { mem::zeroed() }; BATCH],
            headers: vec![unsafe { mem::zeroed() }; BATCH],
        }
    }
}

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams without blocking; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            // SAFETY: all-zero is a valid msghdr.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            self.headers[i] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
        }
        // SAFETY: every header points at live buffers of the stated sizes,
        // owned by self and not moved during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Datagram `i` of the last [`recv`](Self::recv) and who sent it.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(SLOT);
        let peer = socket_addr(&self.addrs[i])?;
        Some(Datagram {
            bytes: &self.bufs[i * SLOT..i * SLOT + len],
            peer,
            oversized: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

/// One datagram received.
pub struct Datagram<'a> {
    /// What was read: all of it, or its first [`SLOT`] bytes when oversized.
    pub bytes: &'a [u8],
    pub peer: SocketAddr,
    /// Longer than [`SLOT`]: the kernel cut it (MSG_TRUNC).
    pub oversized: bool,
}

/// Answers collected during one batch, sent with one `sendmmsg`. The
/// vectors `sendmmsg` reads are kept between batches, so a batch allocates
/// nothing once they have grown to the batch size.
#[derive(Default)]
pub struct SendBatch {
    replies: Vec<(Vec<u8>, SockAddr)>,
    iovs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs` and `headers` point into `replies`,
// and are rewritten before every `sendmmsg`; in between they are never read.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Queues an answer.
    pub fn push(&mut self, reply: Vec<u8>, peer: SocketAddr) {
        self.replies.push((reply, SockAddr::from(peer)));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Sends what the socket takes without blocking; returns how many were
    /// sent (from the front). The rest stay queued.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        self.iovs.clear();
        self.iovs
            .extend(self.replies.iter().map(|(reply, _)| libc::iovec {
                iov_base: reply.as_ptr() as *mut libc::c_void,
                iov_len: reply.len(),
            }));
        self.headers.clear();
        let iovs = self.iovs.iter_mut();
        self.headers
            .extend(self.replies.iter().zip(iovs).map(|((_, peer), iov)| {
                // SAFETY: all-zero is a valid msghdr.
                let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
                hdr.msg_name = peer.as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = peer.len();
                hdr.msg_iov = iov;
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            }));
        // SAFETY: every header points at replies, addresses and iovecs that
        // live until the call returns.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        self.replies.drain(..sent as usize);
        Ok(sent as usize)
    }

    /// Gives up on the first queued answer (its destination refused it).
    pub fn skip_first(&mut self) {
        if !self.replies.is_empty() {
            self.replies.remove(0);
        }
    }
}
