//! Ends a TLS record with each HTTP/2 response, so a client that reads one
//! record at a time never finds the end of one response and a piece of the
//! next in the same read.
//!
//! hyper's HTTP/2 server gathers the frames of every response ready at once
//! into one write, and rustls makes one TLS record of each write: several
//! DoH answers then share a record. That is valid HTTP/2, but dnsperf's DoH
//! client (2.10) keeps one answer buffer per connection and, when a second
//! response's DATA arrives in the read that completed the first, pauses
//! nghttp2 on it; nghttp2 counts the paused chunk as consumed, dnsperf drops
//! those bytes, and the second answer reaches it empty and times out.
//! nghttp2-based servers (Unbound) write each frame on its own and so never
//! meet that bug. Cutting after each frame that ends a stream keeps the
//! records as large as before for everything else (a response's HEADERS
//! and DATA still travel together) and costs one record header (22 bytes
//! with TLS 1.3) per answer instead of one per batch of answers. The
//! records of a batch are sealed into the TLS session and leave together,
//! one system call as before, not one per answer.
//!
//! The wrapper only reads the frame headers (RFC 9113 §4.1) of what the
//! server writes; a connection that is not HTTP/2 passes through untouched.

use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A connection's stream that ends a write (and so a TLS record) after each
/// HTTP/2 frame that ends a stream, when `frames` is set.
pub struct ResponseRecords<S> {
    inner: S,
    frames: Option<FrameCuts>,
}

impl<S> ResponseRecords<S> {
    /// `http2`: whether the server speaks HTTP/2 on this connection (ALPN
    /// `h2`); otherwise writes pass through as they come.
    pub fn new(inner: S, http2: bool) -> Self {
        let frames = http2.then(FrameCuts::default);
        Self { inner, frames }
    }
}

/// Where the server's outgoing frame stream stands: inside a frame header
/// (`header_len` of its bytes seen) or inside a payload.
#[derive(Clone, Default)]
struct FrameCuts {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    payload_left: usize,
    /// The current frame is the last of a response (END_STREAM, headers
    /// complete).
    ends_response: bool,
    /// A HEADERS frame with END_STREAM but without END_HEADERS was seen:
    /// the response ends with the CONTINUATION that completes its headers.
    ending_in_continuation: bool,
}

impl FrameCuts {
    /// Moves over the start of `bytes`, stopping just past the end of the
    /// first frame that ends a response: how many bytes it moved over, and
    /// whether it stopped at such an end (which may be the end of `bytes`).
    fn advance(&mut self, bytes: &[u8]) -> (usize, bool) {
        let mut at = 0;
        while at < bytes.len() {
            if self.header_len < FRAME_HEADER {
                let take = (FRAME_HEADER - self.header_len).min(bytes.len() - at);
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[at..at + take]);
                self.header_len += take;
                at += take;
                if self.header_len == FRAME_HEADER {
                    self.start_payload();
                }
            } else {
                let take = self.payload_left.min(bytes.len() - at);
                self.payload_left -= take;
                at += take;
            }
            if self.header_len == FRAME_HEADER && self.payload_left == 0 {
                self.header_len = 0;
                if std::mem::take(&mut self.ends_response) {
                    return (at, true);
                }
            }
        }
        (at, false)
    }

    /// A frame header is complete: note its payload length and whether
    /// the frame is the last of a response.
    fn start_payload(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        let end_stream = flags & END_STREAM != 0;
        let end_headers = flags & END_HEADERS != 0;
        self.ends_response = match kind {
            DATA => end_stream,
            HEADERS => {
                self.ending_in_continuation = end_stream && !end_headers;
                end_stream && end_headers
            }
            CONTINUATION if end_headers => std::mem::take(&mut self.ending_in_continuation),
            _ => false,
        };
    }

    /// How many of `bufs`' bytes, in order, reach the end of the first
    /// frame that ends a response (all of them if none ends there).
    fn limit(&self, bufs: &[IoSlice<'_>]) -> usize {
        let mut probe = self.clone();
        let mut total = 0;
        for buf in bufs {
            let (moved, response_ended) = probe.advance(buf);
            total += moved;
            if response_ended {
                break;
            }
        }
        total
    }

    /// Moves over the first `n` bytes of `bufs`, the ones just written.
    fn commit(&mut self, bufs: &[IoSlice<'_>], mut n: usize) {
        for buf in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(buf.len());
            self.advance(&buf[..take]);
            n -= take;
        }
    }
}

/// The first `limit` bytes of `bufs`, as slices.
fn truncated<'a>(bufs: &'a [IoSlice<'a>], mut limit: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(bufs.len());
    for buf in bufs {
        if limit == 0 {
            break;
        }
        let take = limit.min(buf.len());
        out.push(IoSlice::new(&buf[..take]));
        limit -= take;
    }
    out
}

/// A TLS stream that can seal plaintext into records of their own without
/// sending them yet: the records of a batch of responses then still leave
/// in one system call, at the write that ends the batch or at the flush.
pub trait SealRecords {
    /// Seals what it takes of `bufs` as one or more records: how many bytes.
    fn seal(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl<IO> SealRecords for tokio_rustls::server::TlsStream<IO> {
    fn seal(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.get_mut().1.writer().write_vectored(bufs)
    }
}

/// `bufs` without their first `skip` bytes.
fn after<'a>(bufs: &'a [IoSlice<'a>], mut skip: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(bufs.len());
    for buf in bufs {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        out.push(IoSlice::new(&buf[skip..]));
        skip = 0;
    }
    out
}

impl<S: AsyncWrite + SealRecords + Unpin> AsyncWrite for ResponseRecords<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Each response that ends before the end of `bufs` is sealed as records
    /// of its own; the rest goes through the TLS stream's own write, which
    /// seals it too and sends everything sealed so far.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(frames) = this.frames.as_mut() else {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        };
        let mut sealed = 0;
        loop {
            let rest = after(bufs, sealed);
            let remaining: usize = rest.iter().map(|b| b.len()).sum();
            let limit = frames.limit(&rest);
            let piece = truncated(&rest, limit);
            let taken = if limit < remaining {
                this.inner.seal(&piece)?
            } else {
                0
            };
            if taken == 0 {
                // The last piece, or the TLS stream's buffer is full: its
                // own write sends (or waits for the socket).
                return match Pin::new(&mut this.inner).poll_write_vectored(cx, &piece) {
                    Poll::Ready(Ok(n)) => {
                        frames.commit(&piece, n);
                        Poll::Ready(Ok(sealed + n))
                    }
                    Poll::Pending if sealed > 0 => Poll::Ready(Ok(sealed)),
                    other => other,
                };
            }
            frames.commit(&piece, taken);
            sealed += taken;
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ResponseRecords<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        out.extend_from_slice(payload);
        out
    }

    /// The pieces `stream` is cut into when written in one go.
    fn cuts(stream: &[u8]) -> Vec<usize> {
        let mut frames = FrameCuts::default();
        let mut at = 0;
        let mut pieces = Vec::new();
        while at < stream.len() {
            let (moved, _) = frames.advance(&stream[at..]);
            pieces.push(moved);
            at += moved;
        }
        pieces
    }

    #[test]
    fn a_frame_header_split_across_writes_is_followed() {
        let data = frame(DATA, END_STREAM, &[7; 20]);
        let next = frame(HEADERS, END_HEADERS, b"h");
        let mut frames = FrameCuts::default();
        assert_eq!(frames.advance(&data[..4]), (4, false));
        let mut rest = data[4..].to_vec();
        rest.extend_from_slice(&next);
        assert_eq!(frames.advance(&rest), (data.len() - 4, true));
        assert_eq!(frames.advance(&next), (next.len(), false));
    }

    #[test]
    fn cuts_after_each_frame_that_ends_a_response() {
        let settings = frame(0x4, 0, &[0; 6]);
        let head = frame(HEADERS, END_HEADERS, b"hpack");
        let data = frame(DATA, END_STREAM, &[7; 40]);
        let window = frame(0x8, 0, &[0, 0, 1, 0]);
        let mut stream = settings.clone();
        stream.extend_from_slice(&head);
        stream.extend_from_slice(&data);
        stream.extend_from_slice(&head);
        stream.extend_from_slice(&data);
        stream.extend_from_slice(&window);
        let first = settings.len() + head.len() + data.len();
        assert_eq!(
            cuts(&stream),
            vec![first, head.len() + data.len(), window.len()]
        );
    }

    #[test]
    fn a_response_of_headers_alone_ends_at_its_last_header_block() {
        let only_head = frame(HEADERS, END_HEADERS | END_STREAM, b"404");
        let open = frame(HEADERS, END_STREAM, b"part");
        let more = frame(CONTINUATION, 0, b"more");
        let last = frame(CONTINUATION, END_HEADERS, b"last");
        let empty_end = frame(DATA, END_STREAM, b"");
        let unfinished = frame(DATA, 0, b"body");
        let mut stream = only_head.clone();
        for part in [&open, &more, &last, &unfinished, &empty_end] {
            stream.extend_from_slice(part);
        }
        assert_eq!(
            cuts(&stream),
            vec![
                only_head.len(),
                open.len() + more.len() + last.len(),
                unfinished.len() + empty_end.len()
            ]
        );
    }

    #[test]
    fn vectored_writes_are_cut_across_slices() {
        let head = frame(HEADERS, END_HEADERS, b"h");
        let data = frame(DATA, END_STREAM, &[1; 300]);
        let (data_head, payload) = data.split_at(FRAME_HEADER);
        let mut second = head.clone();
        second.extend_from_slice(data_head);
        let bufs = [
            IoSlice::new(&head),
            IoSlice::new(data_head),
            IoSlice::new(payload),
            IoSlice::new(&second),
        ];
        let frames = FrameCuts::default();
        let limit = frames.limit(&bufs);
        assert_eq!(limit, head.len() + data.len());
        assert_eq!(truncated(&bufs, limit).len(), 3);
    }
}
