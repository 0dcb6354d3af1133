//! One query to one authoritative server: a pooled socket on a freshly
//! drawn random source port and a random ID per query (RFC 5452; see
//! `upstream::sockets`), 0x20 where the server keeps case, EDNS with a
//! 1232-byte payload, TCP after TC=1. An answer counts only if it comes
//! from the server's address and port (the socket is connected), repeats
//! our ID and our question; anything else is ignored and the wait goes on.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::upstream::forward;
use crate::upstream::sockets::{self, Port, UdpPool, Unanswered};
use crate::upstream::UpstreamError;

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
    /// No socket free under `max_upstream_sockets`: our load, not the server's fault.
    Overloaded,
}

/// Sends `name`/`qtype` to `server` from one of `sockets` and waits up to
/// `how.timeout`.
pub(crate) async fn exchange(
    sockets: &UdpPool,
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
        let mut answer = udp(sockets, server, &query, how.randomize_case, deadline).await?;
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
    sockets: &UdpPool,
    server: SocketAddr,
    query: &Message,
    exact_case: bool,
    deadline: tokio::time::Instant,
) -> Result<Message, ExchangeError> {
    let bytes = query.to_vec().map_err(|_| ExchangeError::Network)?;
    let lease = sockets.lease(server, Port::Fresh).map_err(|e| match e {
        UpstreamError::Overloaded => ExchangeError::Overloaded,
        _ => ExchangeError::Network,
    })?;
    // An answer in another case is a forger's guess or a server that does
    // not keep case: the wait goes on for the real one, and only if none
    // comes is the server reported as not keeping case.
    let mut other_case = false;
    let take = |datagram: &[u8]| {
        let answer = Message::from_vec(datagram).ok()?;
        match check(&answer, query, exact_case) {
            Ok(true) => Some(answer),
            Ok(false) => None,
            Err(_) => {
                other_case = true;
                None
            }
        }
    };
    match sockets::ask(&lease, &bytes, deadline, take).await {
        Ok(answer) => {
            lease.answered();
            Ok(answer)
        }
        Err(Unanswered::Timeout) if other_case => Err(ExchangeError::OtherCase),
        Err(Unanswered::Timeout) => Err(ExchangeError::Timeout),
        Err(Unanswered::Network(_)) => Err(ExchangeError::Network),
    }
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

/// 0x20 (draft-vixie-dnsext-dns0x20): each letter upper or lower case at random.
fn randomize_case(name: &Name) -> Name {
    let mut text = name.to_ascii().into_bytes();
    forward::randomize_case(&mut text);
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
