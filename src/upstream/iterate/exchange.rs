//! One query to one authoritative server: a fresh socket (so a fresh random
//! source port) and a random ID per query (RFC 5452), 0x20 where the server
//! keeps case, EDNS with a 1232-byte payload, TCP after TC=1. An answer
//! counts only if it comes from the server's address and port (the socket
//! is connected), repeats our ID and our question; anything else is
//! ignored and the wait goes on.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How one query is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    pub(crate) edns: bool,
    pub(crate) dnssec_ok: bool,
    pub(crate) randomize_case: bool,
    pub(crate) payload: u16,
    pub(crate) timeout: Duration,
}

/// What came back.
pub(crate) struct Exchanged {
    pub(crate) message: Message,
    pub(crate) rtt: Duration,
    pub(crate) over_tcp: bool,
}

#[derive(Debug)]
pub(crate) enum ExchangeError {
    Timeout,
    /// A well-formed answer to our ID and question in another case (0x20):
    /// the server does not preserve case, or a forger guessed all but it.
    OtherCase,
    Network,
}

/// Sends `name`/`qtype` to `server` and waits up to `how.timeout`.
pub(crate) async fn exchange(
    server: SocketAddr,
    name: &Name,
    qtype: RecordType,
    how: How,
) -> Result<Exchanged, ExchangeError> {
    let started = Instant::now();
    let sent_name = if how.randomize_case {
        randomize_case(name)
    } else {
        name.clone()
    };
    let query = build(&sent_name, qtype, how);
    let deadline = tokio::time::Instant::now() + how.timeout;
    let work = async {
        let mut answer = udp(server, &query, how.randomize_case, deadline).await?;
        let mut over_tcp = false;
        if answer.metadata.truncation {
            let lower = build(name, qtype, how);
            answer = tcp(server, &lower).await?;
            over_tcp = true;
        }
        Ok((answer, over_tcp))
    };
    // TCP after TC=1 gets a fresh attempt's time: the UDP answer proved
    // the server alive.
    match tokio::time::timeout(how.timeout * 2, work).await {
        Err(_) => Err(ExchangeError::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok((message, over_tcp))) => Ok(Exchanged {
            message,
            rtt: started.elapsed(),
            over_tcp,
        }),
    }
}

/// Our query: RD=0 (we iterate), a random ID, EDNS unless the server
/// refused it, DO as asked.
fn build(name: &Name, qtype: RecordType, how: How) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name.clone(), qtype));
    if how.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(how.payload);
        edns.set_dnssec_ok(how.dnssec_ok);
        message.set_edns(edns);
    }
    message
}

/// The answer is ours: a response with our ID and our question (the name
/// in our exact case when 0x20 is on).
fn check(answer: &Message, query: &Message, exact_case: bool) -> Result<bool, ExchangeError> {
    if answer.metadata.id != query.metadata.id
        || answer.metadata.message_type != MessageType::Response
        || answer.queries.len() != 1
    {
        return Ok(false);
    }
    let (theirs, ours) = (&answer.queries[0], &query.queries[0]);
    if theirs.query_type() != ours.query_type()
        || theirs.query_class() != ours.query_class()
        || theirs.name() != ours.name()
    {
        return Ok(false);
    }
    if exact_case && !theirs.name().eq_case(ours.name()) {
        return Err(ExchangeError::OtherCase);
    }
    Ok(true)
}

async fn udp(
    server: SocketAddr,
    query: &Message,
    exact_case: bool,
    deadline: tokio::time::Instant,
) -> Result<Message, ExchangeError> {
    let bytes = query.to_vec().map_err(|_| ExchangeError::Network)?;
    let socket = connected_udp_socket(server).map_err(|_| ExchangeError::Network)?;
    socket
        .send(&bytes)
        .await
        .map_err(|_| ExchangeError::Network)?;
    // An answer in another case is a forger's guess or a server that does
    // not keep case: the wait goes on for the real one, and only if none
    // comes is the server reported as not keeping case.
    let mut other_case = false;
    loop {
        let ready = tokio::time::timeout_at(deadline, socket.readable()).await;
        match ready {
            Err(_) if other_case => return Err(ExchangeError::OtherCase),
            Err(_) => return Err(ExchangeError::Timeout),
            Ok(Err(_)) => return Err(ExchangeError::Network),
            Ok(Ok(())) => {}
        }
        let Some(answer) = receive(&socket)? else {
            continue;
        };
        match check(&answer, query, exact_case) {
            Ok(true) => return Ok(answer),
            Ok(false) => {}
            Err(_) => other_case = true,
        }
    }
}

thread_local! {
    /// The datagram buffer of this thread's exchanges: any size a server
    /// may send, allocated and zeroed once rather than per query (that was
    /// a tenth of a miss's CPU in the recursion bench).
    static DATAGRAM: RefCell<Vec<u8>> = RefCell::new(vec![0; 65_535]);
}

/// Reads one datagram from a socket that polled readable and parses it:
/// `None` when it was a false alarm or not a DNS message (the wait goes on).
fn receive(socket: &UdpSocket) -> Result<Option<Message>, ExchangeError> {
    DATAGRAM.with_borrow_mut(|buf| match socket.try_recv(buf) {
        Ok(len) => Ok(Message::from_vec(&buf[..len]).ok()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(_) => Err(ExchangeError::Network),
    })
}

/// One query over a fresh TCP connection. No 0x20: an off-path forger
/// cannot inject into the stream without its sequence numbers.
async fn tcp(server: SocketAddr, query: &Message) -> Result<Message, ExchangeError> {
    let net = |_: io::Error| ExchangeError::Network;
    let bytes = query.to_vec().map_err(|_| ExchangeError::Network)?;
    let mut stream = TcpStream::connect(server).await.map_err(net)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(net)?;
    let len = stream.read_u16().await.map_err(net)? as usize;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await.map_err(net)?;
    let answer = Message::from_vec(&answer).map_err(|_| ExchangeError::Network)?;
    match check(&answer, query, false)? {
        true => Ok(answer),
        false => Err(ExchangeError::Network),
    }
}

/// A UDP socket for one query, connected to `server`: Linux binds it to a
/// random free port (see `forward::connected_udp_socket`), and it receives
/// only from the server's address and port.
fn connected_udp_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let kind = Type::DGRAM.nonblocking().cloexec();
    let socket = Socket::new(Domain::for_address(server), kind, Some(Protocol::UDP))?;
    socket.connect(&server.into())?;
    UdpSocket::from_std(socket.into())
}

/// 0x20 (draft-vixie-dnsext-dns0x20): each letter upper or lower case at random.
fn randomize_case(name: &Name) -> Name {
    let mut text = name.to_ascii().into_bytes();
    let mut bits: u64 = 0;
    let mut left = 0;
    for letter in text.iter_mut().filter(|b| b.is_ascii_alphabetic()) {
        if left == 0 {
            bits = rand::random();
            left = 64;
        }
        if bits & 1 == 1 {
            letter.make_ascii_uppercase();
        } else {
            letter.make_ascii_lowercase();
        }
        bits >>= 1;
        left -= 1;
    }
    String::from_utf8(text)
        .ok()
        .and_then(|t| Name::from_ascii(t).ok())
        .unwrap_or_else(|| name.clone())
}

/// Whether an answer says the server cannot handle EDNS (RFC 6891 §7:
/// FORMERR without an OPT record), so it is asked again without it.
pub(crate) fn refuses_edns(message: &Message) -> bool {
    message.metadata.response_code == ResponseCode::FormErr && message.edns.is_none()
}
