//! DNS over QUIC (RFC 9250): ALPN `doq`, one query per client-initiated
//! bidirectional stream, each message with a 2-byte length prefix as over
//! TCP, the client's FIN after its query and ours after the answer. The
//! message ID must be 0 on the wire (§4.2.1); the answer echoes it. As for
//! DoT, the first label of the server name (SNI) is passed on as
//! [`ClientHints::dot_label`] to identify an organization.
//!
//! Errors (§4.3): a stream that is not one length-prefixed message, or a
//! message whose ID is not 0 or that is no DNS query at all, closes the
//! connection with DOQ_PROTOCOL_ERROR. A query a `drop` rule does not
//! answer, or one that does not arrive within `doq_stream_timeout`, has
//! its stream reset with DOQ_REQUEST_CANCELLED, so the client learns at
//! once instead of holding the stream until its own timeout. A graceful
//! stop or a shed closes with DOQ_NO_ERROR once the answers in progress
//! are out (a drain) or at once (a shed).
//!
//! 0-RTT is off (§4.5): see [`super::tls`].

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::conns::OpenConnection;
use super::doh::MAX_MESSAGE;
use super::dot::first_label;
use super::quic::server_name;
use crate::pipeline::{Handled, Worker};
use crate::query::{ClientHints, Transport};

/// No error: the connection closes normally (RFC 9250 §4.3).
pub const DOQ_NO_ERROR: VarInt = VarInt::from_u32(0x0);
/// The peer broke the DoQ protocol (RFC 9250 §4.3).
pub const DOQ_PROTOCOL_ERROR: VarInt = VarInt::from_u32(0x2);
/// A stream's query was cancelled (RFC 9250 §4.3).
pub const DOQ_REQUEST_CANCELLED: VarInt = VarInt::from_u32(0x3);

/// Answers the streams of one connection until the client closes it, it is
/// idle for the QUIC idle timeout, it is shed, or a drain begins.
pub(super) async fn serve_connection(
    worker: Arc<Worker>,
    connection: Connection,
    open: OpenConnection,
) {
    let mut hints = ClientHints::from_peer(connection.remote_address(), Transport::Doq);
    hints.dot_label = server_name(&connection).as_deref().and_then(first_label);
    let hints = Arc::new(hints);
    let mut streams = JoinSet::new();
    let mut closed = std::pin::pin!(worker.shared().drain.closed());
    let draining = loop {
        tokio::select! {
            accepted = connection.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let busy = open.activity().begin_query();
                    let (worker, connection, hints) = (worker.clone(), connection.clone(), hints.clone());
                    streams.spawn(async move {
                        answer_stream(&worker, &connection, send, recv, &hints).await;
                        drop(busy);
                    });
                }
                // Closed by the client, idle, or a protocol error we raised.
                Err(_) => return,
            },
            // Reap finished streams so the set holds only those in progress.
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = &mut closed => break true,
            () = open.shed() => break false,
        }
    };
    if draining {
        // A drain bounds the wait itself; new streams are not accepted.
        while streams.join_next().await.is_some() {}
    }
    connection.close(DOQ_NO_ERROR, b"");
}

/// Reads one query from a stream and writes its answer.
async fn answer_stream(
    worker: &Worker,
    connection: &Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    hints: &ClientHints,
) {
    let limits = &worker.shared().settings.limits;
    let read = timeout(limits.doq_stream_timeout, recv.read_to_end(2 + MAX_MESSAGE)).await;
    let stream = match read {
        Ok(Ok(stream)) => stream,
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            return protocol_error(
                connection,
                "a stream carries one DNS message of at most 65535 bytes",
            );
        }
        // The client reset the stream or the connection is gone.
        Ok(Err(_)) => return,
        Err(_) => {
            let _ = recv.stop(DOQ_REQUEST_CANCELLED);
            let _ = send.reset(DOQ_REQUEST_CANCELLED);
            return;
        }
    };
    let query = match unframe(&stream) {
        Ok(query) => query,
        Err(reason) => return protocol_error(connection, reason),
    };
    match worker.handle(query, hints).await {
        Handled::Reply(reply) => {
            let mut framed = Vec::with_capacity(2 + reply.len());
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            framed.extend_from_slice(&reply);
            if send.write_all(&framed).await.is_ok() && send.finish().is_ok() {
                // Until the client acknowledges the answer: closing the
                // connection (a drain, once every stream is done) discards
                // data not yet delivered. Bounded by the idle timeout.
                let _ = send.stopped().await;
            }
        }
        Handled::Dropped => {
            let _ = send.reset(DOQ_REQUEST_CANCELLED);
        }
        Handled::Malformed => protocol_error(connection, "not a DNS query"),
    }
}

/// Closes the connection for a protocol error (RFC 9250 §4.3.3), saying why.
fn protocol_error(connection: &Connection, reason: &str) {
    connection.close(DOQ_PROTOCOL_ERROR, reason.as_bytes());
}

/// The DNS message of a stream: exactly one, after its 2-byte length
/// (RFC 9250 §4.2), with message ID 0 (§4.2.1). The error says what is
/// wrong, for the CONNECTION_CLOSE reason.
pub fn unframe(stream: &[u8]) -> Result<&[u8], &'static str> {
    let Some((length, message)) = stream.split_first_chunk::<2>() else {
        return Err("a stream starts with the 2-byte length of its DNS message");
    };
    if usize::from(u16::from_be_bytes(*length)) != message.len() {
        return Err("the length prefix does not match the DNS message the stream carries");
    }
    match message {
        [0, 0, ..] => Ok(message),
        [_, _, ..] => Err("the DNS message ID must be 0 over DoQ (RFC 9250 section 4.2.1)"),
        _ => Err("a stream starts with the 2-byte length of its DNS message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_one_length_prefixed_message_with_id_0() {
        let query = [0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut stream = vec![0, 12];
        stream.extend_from_slice(&query);
        assert_eq!(unframe(&stream), Ok(&query[..]));

        let mut with_id = stream.clone();
        with_id[2] = 0x12;
        assert!(unframe(&with_id).unwrap_err().contains("must be 0"));
        let mut longer = stream.clone();
        longer.push(0);
        assert!(unframe(&longer).unwrap_err().contains("does not match"));
        assert!(unframe(&stream[..5])
            .unwrap_err()
            .contains("does not match"));
        assert!(unframe(&[0]).unwrap_err().contains("2-byte length"));
        assert!(unframe(&[]).unwrap_err().contains("2-byte length"));
        // A message too short for an ID is no query either.
        assert!(unframe(&[0, 1, 0]).unwrap_err().contains("2-byte length"));
    }
}
