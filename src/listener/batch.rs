//! Datagrams in batches: `recvmmsg` reads up to [`BATCH`] queries in one
//! system call and `sendmmsg` writes the answers in one, instead of a
//! `recvfrom` and a `sendto` per query. On a loaded resolver most of the
//! CPU per cached answer is the kernel's, and the system call entry, file
//! lookup and security checks are paid once per batch instead of per packet.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::cmsg::{destination_of, write_controls, ControlBuffer, Destination};
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
    /// Each datagram's control messages (its destination, on a wildcard
    /// socket); empty on a socket bound to one address, which needs none.
    controls: Vec<ControlBuffer>,
    /// One datagram per `recvmsg` instead of `recvmmsg` ([`super::socket_wrapper_active`]).
    one_at_a_time: bool,
}

// SAFETY: the raw pointers inside `iovs` and `headers` only ever point into
// this struct's own heap buffers, and are rewritten before every use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Buffers for a socket; `destinations`: it reports each datagram's
    /// destination (pktinfo), and [`get`](Self::get) returns it.
    pub fn new(destinations: bool) -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
        Self {
            bufs: vec![0u8; BATCH * SLOT],
            addrs: vec![unsafe { mem::zeroed() }; BATCH],
            iovs: vec![unsafe { mem::zeroed() }; BATCH],
            headers: vec![unsafe { mem::zeroed() }; BATCH],
            controls: vec![ControlBuffer::default(); if destinations { BATCH } else { 0 }],
            one_at_a_time: super::socket_wrapper_active(),
        }
    }

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
            if let Some(control) = self.controls.get_mut(i) {
                hdr.msg_control = control.0.as_mut_ptr().cast();
                hdr.msg_controllen = control.0.len() as _;
            }
            self.headers[i] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
        }
        if self.one_at_a_time {
            return self.recv_one(fd);
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

    /// Reads one datagram with `recvmsg` into the first slot.
    fn recv_one(&mut self, fd: RawFd) -> io::Result<usize> {
        let header = &mut self.headers[0];
        // SAFETY: the header points at live buffers of the stated sizes,
        // owned by self and not moved during the call.
        let n = unsafe { libc::recvmsg(fd, &mut header.msg_hdr, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        header.msg_len = n as libc::c_uint;
        Ok(1)
    }

    /// Datagram `i` of the last [`recv`](Self::recv) and who sent it.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(SLOT);
        let peer = socket_addr(&self.addrs[i])?;
        Some(Datagram {
            bytes: &self.bufs[i * SLOT..i * SLOT + len],
            peer,
            destination: destination_of(&header.msg_hdr),
            oversized: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

/// One datagram received.
pub struct Datagram<'a> {
    /// What was read: all of it, or its first [`SLOT`] bytes when oversized.
    pub bytes: &'a [u8],
    pub peer: SocketAddr,
    /// The address it was sent to, on a socket that reports it.
    pub destination: Option<Destination>,
    /// Longer than [`SLOT`]: the kernel cut it (MSG_TRUNC).
    pub oversized: bool,
}

/// The IPv4 or IPv6 address in a `sockaddr_storage` the kernel filled.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
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

/// Most answers one message carries with UDP generic segmentation offload
/// (the kernel's `UDP_MAX_SEGMENTS` is 64 since Linux 4.18).
const MAX_SEGMENTS: usize = 64;
/// Most bytes of answers in one segmented message: an IPv4 datagram holds
/// at most 65,507 bytes of payload, and the kernel refuses more.
const MAX_SEGMENTED_BYTES: usize = 60_000;
/// Longest answer sent as a segment. Every segment must fit the route's
/// MTU with its headers, and 1232 bytes (DNS flag day 2020's EDNS size)
/// does on any link IPv6 runs on; a longer answer goes out on its own.
const MAX_SEGMENT: usize = 1232;

/// Answers collected during one batch, sent with one `sendmmsg`. The
/// vectors `sendmmsg` reads are kept between batches, so a batch allocates
/// nothing once they have grown to the batch size.
///
/// On a wildcard socket each answer names the address its query was sent to
/// as its source (a pktinfo control message), so that it leaves from there.
///
/// Answers of the same size to the same client (a forwarder or a load
/// generator with many queries in flight on one socket) go out as one
/// message the kernel cuts into datagrams (`UDP_SEGMENT`, Linux 4.18): the
/// route lookup, the IP output path and, on loopback, the delivery run once
/// per message instead of once per answer. The client still receives one
/// datagram per answer. A socket whose kernel or route refuses segmentation
/// turns it off for good and sends each answer on its own.
pub struct SendBatch {
    replies: Vec<Reply>,
    /// Each message's destination as `sendmmsg` reads it, in order (a
    /// `sockaddr_storage` each: built per message, not per answer).
    addresses: Vec<SockAddr>,
    iovs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Answers per message of the last `sendmmsg`, in order.
    answers_per_message: Vec<usize>,
    /// Each message's control messages: its source, if it names one, and
    /// its segment size, if it carries more than one answer.
    controls: Vec<ControlBuffer>,
    segmentation: bool,
    /// One answer per `sendmsg` instead of `sendmmsg` ([`super::socket_wrapper_active`]).
    one_at_a_time: bool,
}

struct Reply {
    bytes: Vec<u8>,
    peer: SocketAddr,
    /// The address to send it from (wildcard sockets), or the kernel's choice.
    source: Option<Destination>,
}

// SAFETY: the raw pointers in `iovs` and `headers` point into `replies`,
// `addresses` and `controls`, and are rewritten before every `sendmmsg`; in between they are
// never read.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            replies: Vec::new(),
            addresses: Vec::new(),
            iovs: Vec::new(),
            headers: Vec::new(),
            answers_per_message: Vec::new(),
            controls: Vec::new(),
            segmentation: !super::socket_wrapper_active(),
            one_at_a_time: super::socket_wrapper_active(),
        }
    }
}

impl SendBatch {
    /// Queues an answer to `peer`, to be sent from `source` if given.
    pub fn push(&mut self, reply: Vec<u8>, peer: SocketAddr, source: Option<Destination>) {
        self.replies.push(Reply {
            bytes: reply,
            peer,
            source,
        });
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// How many answers are queued.
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    /// Sends what the socket takes without blocking; returns how many
    /// answers were sent (from the front). The rest stay queued.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        self.plan_messages();
        self.write_headers();
        if self.one_at_a_time {
            return self.send_each(fd);
        }
        // SAFETY: every header points at replies, addresses, iovecs and
        // control messages that live, unmoved, until the call returns.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            let error = io::Error::last_os_error();
            if self.answers_per_message[0] > 1 && refuses_segmentation(&error) {
                // SAFETY: the caller's socket stays open for the call.
                let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let local = socket2::SockRef::from(&socket)
                    .local_addr()
                    .ok()
                    .and_then(|addr| addr.as_socket());
                tracing::warn!(
                    %error,
                    local = ?local,
                    "UDP segmentation offload refused on this socket; sending each answer on its own from now on"
                );
                self.segmentation = false;
                return Ok(0);
            }
            return Err(error);
        }
        let answers = self.answers_per_message[..sent as usize].iter().sum();
        self.replies.drain(..answers);
        Ok(answers)
    }

    /// Sends the queued answers with one `sendmsg` each (segmentation is
    /// off, so a message is an answer), as many as the socket takes.
    fn send_each(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut sent = 0;
        for header in &self.headers {
            // SAFETY: the header points at a reply, an address, an iovec and
            // a control message that live, unmoved, until the call returns.
            if unsafe { libc::sendmsg(fd, &header.msg_hdr, libc::MSG_DONTWAIT) } < 0 {
                match sent {
                    0 => return Err(io::Error::last_os_error()),
                    _ => break,
                }
            }
            sent += 1;
        }
        self.replies.drain(..sent);
        Ok(sent)
    }

    /// Orders the queue so that answers to one client from one source of one
    /// size are adjacent (longest first, so one shorter answer can close a
    /// run, as segmentation allows), and splits it into messages.
    fn plan_messages(&mut self) {
        self.answers_per_message.clear();
        if !self.segmentation {
            self.answers_per_message.resize(self.replies.len(), 1);
            return;
        }
        // Unstable: answers of one size to one client are interchangeable, and an
        // unstable sort moves the replies in place, not through scratch space.
        self.replies.sort_unstable_by(|a, b| {
            (a.peer.cmp(&b.peer))
                .then(a.source.cmp(&b.source))
                .then(b.bytes.len().cmp(&a.bytes.len()))
        });
        let mut start = 0;
        while start < self.replies.len() {
            let count = segment_run(&self.replies[start..]);
            self.answers_per_message.push(count);
            start += count;
        }
    }

    /// Points one `mmsghdr` per planned message at its answers.
    fn write_headers(&mut self) {
        self.iovs.clear();
        self.iovs
            .extend(self.replies.iter().map(|reply| libc::iovec {
                iov_base: reply.bytes.as_ptr() as *mut libc::c_void,
                iov_len: reply.bytes.len(),
            }));
        let messages = self.answers_per_message.len();
        // Every address before any header: the headers point into `addresses`,
        // which must not grow (and move) after the first one is written.
        self.addresses.clear();
        self.addresses.extend(
            message_runs(&self.answers_per_message)
                .map(|(first, _)| SockAddr::from(self.replies[first].peer)),
        );
        self.controls.clear();
        self.controls.resize(messages, ControlBuffer::default());
        self.headers.clear();
        for (message, (first, count)) in message_runs(&self.answers_per_message).enumerate() {
            let (reply, address) = (&self.replies[first], &self.addresses[message]);
            // SAFETY: all-zero is a valid msghdr.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = address.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = address.len();
            hdr.msg_iov = &mut self.iovs[first];
            hdr.msg_iovlen = count as _;
            let segment = (count > 1).then_some(reply.bytes.len() as u16);
            write_controls(&mut hdr, &mut self.controls[message], reply.source, segment);
            self.headers.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
    }

    /// Gives up on the first queued answer (its destination refused it).
    pub fn skip_first(&mut self) {
        if !self.replies.is_empty() {
            self.replies.remove(0);
        }
    }
}

/// Each planned message's first answer (an index into the queue) and its count of answers.
fn message_runs(answers_per_message: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    answers_per_message.iter().scan(0, |first, &count| {
        let run = (*first, count);
        *first += count;
        Some(run)
    })
}

/// How many answers from the front of `replies` one message can carry: a
/// run to one client from one source of one size, and at most one shorter answer after it
/// (the kernel cuts a message into segments of the first's size, the last
/// one possibly shorter).
fn segment_run(replies: &[Reply]) -> usize {
    let first = &replies[0];
    let size = first.bytes.len();
    if size > MAX_SEGMENT {
        return 1;
    }
    let mut count = 1;
    let mut bytes = size;
    for next in &replies[1..] {
        let len = next.bytes.len();
        if next.peer != first.peer
            || next.source != first.source
            || len > size
            || len == 0
            || count == MAX_SEGMENTS
            || bytes + len > MAX_SEGMENTED_BYTES
        {
            break;
        }
        count += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    count
}

/// Errors by which a kernel, a route or a socket refuses a segmented send
/// (no UDP_SEGMENT before Linux 4.18, a device without checksum offload, a
/// segment past the route's MTU, a socket without UDP checksums), as
/// opposed to a destination refusing one answer.
fn refuses_segmentation(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::net::{IpAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn receiver(loopback: &str) -> UdpSocket {
        let socket = UdpSocket::bind(loopback).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// A distinct datagram of `len` bytes: its number, then filler.
    fn numbered(number: u16, len: usize) -> Vec<u8> {
        let mut bytes = vec![0xA5; len];
        bytes[..2].copy_from_slice(&number.to_be_bytes());
        bytes
    }

    fn datagrams(socket: &UdpSocket, count: usize) -> BTreeSet<Vec<u8>> {
        let mut buf = [0u8; 4096];
        (0..count)
            .map(|_| {
                let len = socket.recv(&mut buf).expect("every answer arrives");
                buf[..len].to_vec()
            })
            .collect()
    }

    fn send_everything(batch: &mut SendBatch, socket: &UdpSocket) {
        for _ in 0..100 {
            if batch.is_empty() {
                return;
            }
            batch.send(socket.as_raw_fd()).expect("loopback takes them");
        }
        panic!("answers still queued after 100 sends");
    }

    #[test]
    fn answers_of_one_size_to_one_client_share_a_message_and_arrive_one_datagram_each() {
        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(sender) = UdpSocket::bind(loopback) else {
                eprintln!("skipped {loopback}: no such loopback here");
                continue;
            };
            let (a, b) = (receiver(loopback), receiver(loopback));
            let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            let mut batch = SendBatch::default();
            let mut expected_a = BTreeSet::new();
            let mut expected_b = BTreeSet::new();
            // Interleaved as a batch from two clients arrives: 10 of 40 bytes
            // and one of 30 to A, one too long to be a segment, 3 of 50 to B.
            for n in 0..10u16 {
                expected_a.insert(numbered(n, 40));
                batch.push(numbered(n, 40), to_a, None);
                if n < 3 {
                    expected_b.insert(numbered(100 + n, 50));
                    batch.push(numbered(100 + n, 50), to_b, None);
                }
            }
            for (number, len) in [(50, 30), (51, 2000)] {
                expected_a.insert(numbered(number, len));
                batch.push(numbered(number, len), to_a, None);
            }

            assert_eq!(batch.send(sender.as_raw_fd()).unwrap(), 15);
            // A: the ten and the shorter one, and the long one alone; B: three.
            let mut messages = batch.answers_per_message.clone();
            messages.sort();
            assert_eq!(messages, [1, 3, 11], "{loopback}");
            assert!(batch.is_empty());
            assert_eq!(datagrams(&a, 12), expected_a, "{loopback}");
            assert_eq!(datagrams(&b, 3), expected_b, "{loopback}");
        }
    }

    #[test]
    fn a_socket_that_refuses_segmentation_sends_each_answer_on_its_own() {
        let client = receiver("127.0.0.1:0");
        let to_client = client.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Without UDP checksums the kernel refuses segmented sends (EINVAL).
        let one: libc::c_int = 1;
        // SAFETY: a valid option value for a valid socket.
        let set = unsafe {
            libc::setsockopt(
                sender.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_NO_CHECK: {}", io::Error::last_os_error());
        let mut batch = SendBatch::default();
        let expected: BTreeSet<_> = (0..5).map(|n| numbered(n, 64)).collect();
        for reply in &expected {
            batch.push(reply.clone(), to_client, None);
        }

        send_everything(&mut batch, &sender);

        assert!(!batch.segmentation, "segmentation stays off on this socket");
        assert_eq!(batch.answers_per_message, [1; 5]);
        assert_eq!(datagrams(&client, 5), expected);
    }

    /// socket_wrapper's mode (`super::socket_wrapper_active`), on real sockets:
    /// the same queries and answers, one per system call.
    #[test]
    fn one_datagram_per_call_reads_every_query_and_sends_every_answer() {
        let listener = receiver("127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let client = receiver("127.0.0.1:0");
        let queries: Vec<_> = (0..3).map(|n| numbered(n, 30 + n as usize)).collect();
        for query in &queries {
            client
                .send_to(query, listener.local_addr().unwrap())
                .unwrap();
        }
        let mut incoming = RecvBatch::new(false);
        incoming.one_at_a_time = true;
        let mut read = Vec::new();
        while let Ok(count) = incoming.recv(listener.as_raw_fd()) {
            assert_eq!(count, 1);
            let datagram = incoming.get(0).unwrap();
            assert_eq!(datagram.peer, client.local_addr().unwrap());
            read.push(datagram.bytes.to_vec());
        }
        assert_eq!(read, queries);

        let mut outgoing = SendBatch::default();
        (outgoing.one_at_a_time, outgoing.segmentation) = (true, false);
        for query in &queries {
            outgoing.push(query.clone(), client.local_addr().unwrap(), None);
        }
        assert_eq!(outgoing.send(listener.as_raw_fd()).unwrap(), 3);
        assert!(outgoing.is_empty());
        assert_eq!(datagrams(&client, 3), queries.into_iter().collect());
    }

    #[test]
    fn queries_short_long_and_too_long_are_read_whole_in_one_batch() {
        let listener = receiver("127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let lens = [12, 512, 513, 1500, SLOT, SLOT + 1, 40];
        for (n, &len) in lens.iter().enumerate() {
            let mut query = numbered(n as u16, len);
            // Every byte of a long query is checked, across the split.
            for (i, byte) in query.iter_mut().enumerate().skip(2) {
                *byte = (i % 251) as u8;
            }
            client
                .send_to(&query, listener.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::new(false);
        let count = batch.recv(listener.as_raw_fd()).unwrap();
        assert_eq!(count, lens.len());
        for (n, &len) in lens.iter().enumerate() {
            let datagram = batch.get(n).unwrap();
            assert_eq!(datagram.peer, client.local_addr().unwrap());
            assert_eq!(datagram.oversized, len > SLOT, "query {n} of {len} bytes");
            assert_eq!(datagram.destination, None, "not asked for");
            let kept = len.min(SLOT);
            assert_eq!(datagram.bytes.len(), kept);
            assert_eq!(&datagram.bytes[..2], &(n as u16).to_be_bytes());
            assert!(
                datagram.bytes[2..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((i + 2) % 251) as u8),
                "query {n} of {len} bytes read whole"
            );
        }
    }

    /// A wildcard socket: each datagram of a batch carries the address it
    /// was sent to, and answers leave from it, segmented per source.
    #[test]
    fn a_wildcard_socket_reads_each_destination_and_answers_from_it() {
        let wildcard = UdpSocket::bind("0.0.0.0:0").unwrap();
        let socket = socket2::SockRef::from(&wildcard);
        super::super::cmsg::enable_pktinfo(&socket, false).unwrap();
        wildcard.set_nonblocking(true).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let client = receiver("127.0.0.1:0");
        let to_client = client.local_addr().unwrap();
        let targets: Vec<Ipv4Addr> = (2..=4).map(|last| Ipv4Addr::new(127, 0, 0, last)).collect();
        for (n, target) in targets.iter().enumerate() {
            for _ in 0..4 {
                client
                    .send_to(&numbered(n as u16, 30), (*target, port))
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(50));

        let mut incoming = RecvBatch::new(true);
        let count = incoming.recv(wildcard.as_raw_fd()).unwrap();
        assert_eq!(count, 12);
        let mut outgoing = SendBatch::default();
        for i in 0..count {
            let datagram = incoming.get(i).unwrap();
            let number = u16::from_be_bytes([datagram.bytes[0], datagram.bytes[1]]);
            assert_eq!(datagram.peer, to_client);
            let destination = datagram.destination.expect("pktinfo on a wildcard socket");
            assert_eq!(destination.ip, IpAddr::from(targets[number as usize]));
            // Each answer is its query: the test knows where it must come from.
            outgoing.push(datagram.bytes.to_vec(), datagram.peer, Some(destination));
        }
        assert_eq!(outgoing.send(wildcard.as_raw_fd()).unwrap(), 12);
        assert_eq!(
            outgoing.answers_per_message,
            [4, 4, 4],
            "one message per source"
        );

        let mut buf = [0u8; 64];
        for _ in 0..12 {
            let (len, from) = client.recv_from(&mut buf).expect("every answer arrives");
            assert_eq!(len, 30);
            let number = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            assert_eq!(from, SocketAddr::from((targets[number], port)));
        }
    }

    #[test]
    fn a_message_holds_at_most_64_answers_and_60000_bytes() {
        let peer: SocketAddr = "127.0.0.1:5300".parse().unwrap();
        let mut batch = SendBatch::default();
        for n in 0..100 {
            batch.push(numbered(n, 100), peer, None);
        }
        batch.plan_messages();
        assert_eq!(batch.answers_per_message, [64, 36]);

        let mut batch = SendBatch::default();
        for n in 0..100 {
            batch.push(numbered(n, 1000), peer, None);
        }
        batch.plan_messages();
        assert_eq!(batch.answers_per_message, [60, 40]);
    }
}
