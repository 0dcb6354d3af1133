//! One query to one authoritative server: a socket on a random source port
//! the kernel drew for this server, serving it for a few answered queries
//! at most, and a random ID per query (RFC 5452; see `upstream::sockets`),
//! 0x20 where the server keeps case, EDNS with a 1232-byte payload, TCP
//! after TC=1. An answer counts only if it comes
//! from the server's address and port (the socket is connected), repeats
//! our ID and our question; anything else is ignored and the wait goes on.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::upstream::forward::{Case, Check, SentQuery};
use crate::upstream::sockets::{self, Port, UdpPool, Unanswered};
use crate::upstream::{UpstreamError, UpstreamQuery};

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
    let name_wire = wire_name(name);
    let question = UpstreamQuery {
        name_wire: &name_wire,
        qtype: qtype.into(),
        qclass: u16::from(DNSClass::IN),
        dnssec_ok: how.dnssec_ok,
        cd: false,
    };
    let payload = how.edns.then_some(how.payload);
    let case = if how.randomize_case {
        Case::Random
    } else {
        Case::AsIs
    };
    let deadline = tokio::time::Instant::from_std(started) + how.timeout;
    let query = SentQuery::iterative(&question, case, payload);
    // The UDP wait ends at `deadline` (`sockets::ask`): no timer of its own here.
    let mut message = udp(sockets, server, &query, deadline).await?;
    let mut over_tcp = false;
    if message.metadata.truncation {
        // TCP after TC=1 gets a fresh attempt's time: the UDP answer proved
        // the server alive.
        let query = SentQuery::iterative(&question, Case::AsIs, payload);
        message = match tokio::time::timeout(how.timeout, tcp(server, &query)).await {
            Err(_) => return Err(ExchangeError::Timeout),
            Ok(answer) => answer?,
        };
        over_tcp = true;
    }
    Ok(Exchanged {
        message,
        rtt: started.elapsed(),
        over_tcp,
    })
}

/// `name` in wire form, uncompressed, in its own case.
fn wire_name(name: &Name) -> Vec<u8> {
    let mut wire = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    wire
}

async fn udp(
    sockets: &UdpPool,
    server: SocketAddr,
    query: &SentQuery,
    deadline: tokio::time::Instant,
) -> Result<Message, ExchangeError> {
    let lease = sockets
        .lease(server, Port::Authority)
        .map_err(|e| match e {
            UpstreamError::Overloaded => ExchangeError::Overloaded,
            _ => ExchangeError::Network,
        })?;
    // An answer in another case is a forger's guess or a server that does
    // not keep case: the wait goes on for the real one, and only if none
    // comes is the server reported as not keeping case. Only a datagram with
    // our ID and question is parsed.
    let mut other_case = false;
    let take = |datagram: &[u8]| match query.check(datagram) {
        Check::Ours => Message::from_vec(datagram).ok(),
        Check::OtherCase => {
            other_case |= Message::from_vec(datagram).is_ok();
            None
        }
        Check::NotOurs => None,
    };
    match sockets::ask(&lease, &query.message, deadline, take).await {
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
async fn tcp(server: SocketAddr, query: &SentQuery) -> Result<Message, ExchangeError> {
    let net = |_: io::Error| ExchangeError::Network;
    let bytes = &query.message;
    let mut stream = TcpStream::connect(server).await.map_err(net)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(net)?;
    let len = stream.read_u16().await.map_err(net)? as usize;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await.map_err(net)?;
    if query.check(&answer) != Check::Ours {
        return Err(ExchangeError::Network);
    }
    Message::from_vec(&answer).map_err(|_| ExchangeError::Network)
}

/// Whether an answer says the server cannot handle EDNS (RFC 6891 §7:
/// FORMERR without an OPT record), so it is asked again without it.
pub(crate) fn refuses_edns(message: &Message) -> bool {
    message.metadata.response_code == ResponseCode::FormErr && message.edns.is_none()
}
