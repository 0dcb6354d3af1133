//! DNS over a stream (RFC 7766): 2-byte length framing, several queries per
//! connection answered as they complete (out of order), an idle timeout that
//! shortens under pressure, and a place in the connection table
//! ([`super::conns`]) that sheds it when a more productive client needs
//! room. DoT (RFC 7858) runs the same code over TLS.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::conns::{accept_loop, ConnectionTable, OpenConnection};
use crate::config::Limits;
use crate::pipeline::{Step, Worker};
use crate::query::ClientHints;

/// After a shed, how long the connection has to write the answers it owes
/// before it is closed regardless.
const SHED_GRACE: Duration = Duration::from_secs(1);

/// Accepts TCP connections on one worker's listener until the runtime stops.
pub async fn serve(
    worker: Arc<Worker>,
    listener: std::net::TcpListener,
    table: Arc<ConnectionTable>,
) -> std::io::Result<()> {
    let limits = worker.shared().settings.limits.clone();
    accept_loop(worker, listener, table, move |a| {
        let limits = limits.clone();
        async move { serve_stream(a.worker, a.stream, a.hints, &limits, &a.connection).await }
    })
    .await
}

/// Serves DNS messages on one established stream until the client closes it,
/// goes idle, sends a broken frame, a drain closes the listeners, or the
/// connection is shed; then writes the answers still owed and closes (a
/// shed connection gets [`SHED_GRACE`] for that).
pub async fn serve_stream<S>(
    worker: Arc<Worker>,
    stream: S,
    hints: ClientHints,
    limits: &Limits,
    connection: &OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(limits.tcp_max_pipelined.max(1));
    let write_timeout = limits.tcp_idle_timeout;
    let writing = write_answers(writer, rx, write_timeout);
    let reading = read_queries(worker, reader, tx, hints, limits, connection);
    let exchange = async {
        tokio::join!(reading, writing);
    };
    let shed_and_grace = async {
        connection.shed().await;
        sleep(SHED_GRACE).await;
    };
    tokio::select! {
        () = exchange => {}
        () = shed_and_grace => {}
    }
}

async fn read_queries<R: AsyncRead>(
    worker: Arc<Worker>,
    reader: R,
    tx: mpsc::Sender<Vec<u8>>,
    hints: ClientHints,
    limits: &Limits,
    connection: &OpenConnection,
) {
    tokio::pin!(reader);
    let outstanding = Arc::new(Semaphore::new(limits.tcp_max_pipelined.max(1)));
    let closed = worker.shared().drain.closed();
    tokio::pin!(closed);
    let shed = connection.shed();
    tokio::pin!(shed);
    loop {
        let idle = if connection.table().under_pressure() {
            limits.tcp_idle_timeout_pressure
        } else {
            limits.tcp_idle_timeout
        };
        let message = tokio::select! {
            biased;
            () = &mut closed => break,
            () = &mut shed => break,
            message = read_frame(&mut reader, idle) => message,
        };
        let Some(message) = message else {
            break;
        };
        // The connection counts as busy until the answer is handed to the
        // writer, and as active since then (see `super::conns`).
        let query = connection.activity().begin_query();
        match worker.start(&message, &hints) {
            Step::Reply(reply) => {
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            Step::Drop => {}
            Step::Resolve(pending) => {
                // Bounded pipelining: past the limit we stop reading until an
                // answer goes out (backpressure through the socket).
                let Ok(permit) = outstanding.clone().acquire_owned().await else {
                    break;
                };
                let (worker, tx) = (worker.clone(), tx.clone());
                tokio::spawn(async move {
                    // None: the response phase dropped it. No frame at all
                    // (a zero-length one is no DNS message); the connection
                    // goes on serving the client's other queries.
                    if let Some(reply) = worker.finish(pending).await {
                        let _ = tx.send(reply).await;
                    }
                    drop((permit, query));
                });
            }
        }
    }
}

/// Reads one length-prefixed message. None on EOF, idle timeout, or a
/// message that does not arrive in time once started (slowloris): the
/// length prefix has `idle` to arrive, then the message `idle` more.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, idle: Duration) -> Option<Vec<u8>> {
    let mut framer = Framer::new();
    let mut deadline = Instant::now() + idle;
    loop {
        let had_length = framer.has_length();
        let read = timeout_at(deadline, reader.read(framer.spare())).await;
        let n = read.ok()?.ok()?;
        if n == 0 {
            // EOF, between messages or inside one.
            return None;
        }
        if let Some(message) = framer.advance(n) {
            return Some(message);
        }
        if !had_length && framer.has_length() {
            deadline = Instant::now() + idle;
        }
    }
}

/// RFC 7766 framing of a byte stream into messages, pure and incremental:
/// the stream may arrive split anywhere. It holds at most one message and
/// its 2-byte length, and never takes bytes past the message it is reading,
/// so nothing of the next message is buffered.
///
/// Readers either fill [`Framer::spare`] in place and report with
/// [`Framer::advance`], or hand over bytes with [`Framer::push`].
#[derive(Debug, Default)]
pub struct Framer {
    length: [u8; 2],
    /// Bytes of `length` received (0 to 2; 2 only while `message` is read).
    length_read: usize,
    /// The message being read, sized to its length once that is known.
    message: Vec<u8>,
    /// Bytes of `message` received.
    message_read: usize,
}

impl Framer {
    /// A framer at the start of a stream (or between two messages).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the current message's length is known (the message itself
    /// is being read). False between messages.
    pub fn has_length(&self) -> bool {
        self.length_read == 2
    }

    /// Bytes held of the current message, its length prefix included: at
    /// most 2 plus that message's length, less one.
    pub fn buffered(&self) -> usize {
        self.length_read + self.message_read
    }

    /// Where the next bytes of the stream go: the rest of the length prefix
    /// or the rest of the message, no further. Never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.has_length() {
            &mut self.message[self.message_read..]
        } else {
            &mut self.length[self.length_read..]
        }
    }

    /// Takes note that the first `n` bytes of [`Framer::spare`] were filled
    /// and returns the message if that completed one (an empty message, of
    /// length 0, included). `n` must not exceed the spare room.
    pub fn advance(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.has_length() {
            self.message_read += n;
            assert!(
                self.message_read <= self.message.len(),
                "advance past the message"
            );
            if self.message_read < self.message.len() {
                return None;
            }
        } else {
            self.length_read += n;
            assert!(self.length_read <= 2, "advance past the length");
            if self.length_read < 2 {
                return None;
            }
            let len = u16::from_be_bytes(self.length) as usize;
            if len > 0 {
                self.message = vec![0u8; len];
                return None;
            }
        }
        self.length_read = 0;
        self.message_read = 0;
        Some(std::mem::take(&mut self.message))
    }

    /// Copies bytes of the stream in, up to the end of the current message:
    /// how many were taken (at least one, unless `input` is empty), and the
    /// message if it is complete. The caller passes the rest on next.
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Vec<u8>>) {
        let mut taken = 0;
        while taken < input.len() {
            let spare = self.spare();
            let n = spare.len().min(input.len() - taken);
            spare[..n].copy_from_slice(&input[taken..taken + n]);
            taken += n;
            if let Some(message) = self.advance(n) {
                return (taken, Some(message));
            }
        }
        (taken, None)
    }
}

async fn write_answers<W: AsyncWrite>(
    writer: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
) {
    tokio::pin!(writer);
    let mut framed = Vec::with_capacity(1024);
    while let Some(answer) = rx.recv().await {
        framed.clear();
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        match timeout(write_timeout, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            // A client that does not read its answers loses its connection.
            _ => return,
        }
    }
    let _ = timeout(Duration::from_secs(1), writer.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three messages, the middle one empty: `[0, 3] abc [0, 0] [0, 2] de`.
    const STREAM: &[u8] = &[0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'd', b'e'];
    const MESSAGES: [&[u8]; 3] = [b"abc", b"", b"de"];

    /// Feeds `chunks` in order; every message, and the bytes left held.
    fn feed(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, usize) {
        let mut framer = Framer::new();
        let mut messages = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (used, message) = framer.push(rest);
                assert!(used > 0);
                assert!(framer.buffered() <= 2 + u16::MAX as usize);
                rest = &rest[used..];
                messages.extend(message);
            }
        }
        (messages, framer.buffered())
    }

    #[test]
    fn whole_stream() {
        let (messages, held) = feed(&[STREAM]);
        assert_eq!(messages, MESSAGES);
        assert_eq!(held, 0);
    }

    #[test]
    fn split_at_every_point() {
        for i in 0..=STREAM.len() {
            let (messages, held) = feed(&[&STREAM[..i], &STREAM[i..]]);
            assert_eq!(messages, MESSAGES, "split at {i}");
            assert_eq!(held, 0);
        }
    }

    #[test]
    fn split_at_every_pair_of_points() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let chunks = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                let (messages, held) = feed(&chunks);
                assert_eq!(messages, MESSAGES, "split at {i} and {j}");
                assert_eq!(held, 0);
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(feed(&chunks).0, MESSAGES);
    }

    #[test]
    fn push_stops_at_the_end_of_a_message() {
        let mut framer = Framer::new();
        assert_eq!(framer.push(STREAM), (5, Some(b"abc".to_vec())));
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.push(&STREAM[5..]), (2, Some(Vec::new())));
        assert_eq!(framer.push(&STREAM[7..8]), (1, None));
        assert!(!framer.has_length());
        assert_eq!(framer.push(&STREAM[8..10]), (2, None));
        assert!(framer.has_length());
        assert_eq!(framer.buffered(), 3);
        assert_eq!(framer.push(&[]), (0, None));
        assert_eq!(framer.push(&STREAM[10..]), (1, Some(b"de".to_vec())));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn incomplete_tail_is_held() {
        let (messages, held) = feed(&[&STREAM[..STREAM.len() - 1]]);
        assert_eq!(messages, &MESSAGES[..2]);
        assert_eq!(held, 3);
        let (messages, held) = feed(&[&[0xff, 0xff, 1, 2, 3]]);
        assert!(messages.is_empty());
        assert_eq!(held, 5);
    }

    #[test]
    fn spare_never_reaches_past_the_message() {
        let mut framer = Framer::new();
        assert_eq!(framer.spare().len(), 2);
        framer.spare()[0] = 1;
        assert_eq!(framer.advance(1), None);
        assert_eq!(framer.spare().len(), 1);
        framer.spare()[0] = 0;
        assert_eq!(framer.advance(1), None);
        assert_eq!(framer.spare().len(), 256);
        assert_eq!(framer.advance(200), None);
        assert_eq!(framer.spare().len(), 56);
        assert_eq!(framer.advance(56).map(|m| m.len()), Some(256));
        assert_eq!(framer.spare().len(), 2);
    }

    /// The async reader over a stream that arrives in pieces.
    async fn read_all(chunks: Vec<Vec<u8>>, idle: Duration) -> Vec<Option<Vec<u8>>> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut out = Vec::new();
        loop {
            let message = read_frame(&mut server, idle).await;
            let end = message.is_none();
            out.push(message);
            if end {
                break;
            }
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn read_frame_over_split_stream() {
        for i in 0..=STREAM.len() {
            let chunks = vec![STREAM[..i].to_vec(), STREAM[i..].to_vec()];
            let got = read_all(chunks, Duration::from_secs(5)).await;
            let mut want: Vec<_> = MESSAGES.iter().map(|m| Some(m.to_vec())).collect();
            want.push(None);
            assert_eq!(got, want, "split at {i}");
        }
    }

    #[tokio::test]
    async fn read_frame_eof_inside_a_message() {
        let got = read_all(vec![STREAM[..7].to_vec(), vec![0]], Duration::from_secs(5)).await;
        assert_eq!(got, [Some(b"abc".to_vec()), Some(Vec::new()), None]);
        let got = read_all(vec![STREAM[..9].to_vec()], Duration::from_secs(5)).await;
        assert_eq!(got, [Some(b"abc".to_vec()), Some(Vec::new()), None]);
    }

    #[tokio::test(start_paused = true)]
    async fn read_frame_times_out_per_stage() {
        let idle = Duration::from_secs(10);
        let (mut client, mut server) = tokio::io::duplex(64);
        // The length arrives in two halves 4 s apart, then the message in
        // two halves 4 s apart: 12 s in all, but each stage within 10 s.
        let writer = tokio::spawn(async move {
            for chunk in [&[0u8][..], &[4], b"ab", b"cd"] {
                tokio::time::sleep(Duration::from_secs(4)).await;
                client.write_all(chunk).await.unwrap();
            }
            // One byte of a length 4 s later, then silence.
            tokio::time::sleep(Duration::from_secs(4)).await;
            client.write_all(&[0]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(client);
        });
        let start = Instant::now();
        assert_eq!(read_frame(&mut server, idle).await, Some(b"abcd".to_vec()));
        assert_eq!(start.elapsed(), Duration::from_secs(16));
        // The 10 s start when the reader asks; half a length does not
        // renew them.
        let start = Instant::now();
        assert_eq!(read_frame(&mut server, idle).await, None);
        assert_eq!(start.elapsed(), idle);
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn read_frame_slow_message_times_out() {
        let idle = Duration::from_secs(10);
        let (mut client, mut server) = tokio::io::duplex(64);
        // A byte of the message every 6 s: the message's 10 s are not
        // renewed by each byte.
        let writer = tokio::spawn(async move {
            client.write_all(&[0, 4]).await.unwrap();
            for byte in b"abcd" {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client.write_all(&[*byte]).await.unwrap();
            }
        });
        let start = Instant::now();
        assert_eq!(read_frame(&mut server, idle).await, None);
        assert_eq!(start.elapsed(), idle);
        writer.abort();
    }
}
