//! RFC 7766 framing of a TCP (or DoT) stream that arrives split anywhere.
//! The input's first byte says how many chunk sizes follow (up to 31; none:
//! the stream comes whole), each the size of the next read less one, used
//! in turn; the rest is the stream. Fed in those chunks, through both
//! `push` and `spare`/`advance` (what the async reader uses), the framer
//! must give exactly the messages of the whole stream, hold exactly the
//! bytes of the message in progress (at most its length plus 2), and never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::listener::tcp::Framer;

/// The messages of a whole stream, read the obvious way, and where the
/// incomplete tail (if any) starts.
fn reference(stream: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut messages = Vec::new();
    let mut at = 0;
    while stream.len() - at >= 2 {
        let len = u16::from_be_bytes([stream[at], stream[at + 1]]) as usize;
        let Some(message) = stream.get(at + 2..at + 2 + len) else {
            break;
        };
        messages.push(message);
        at += 2 + len;
    }
    (messages, at)
}

/// Checks what the framer holds after `fed` bytes of `stream`, the current
/// message having started at `start`.
fn check_held(framer: &Framer, stream: &[u8], start: usize, fed: usize) {
    let held = framer.buffered();
    assert_eq!(held, fed - start, "holds exactly the message in progress");
    assert_eq!(framer.has_length(), held >= 2);
    if held >= 2 {
        let len = u16::from_be_bytes([stream[start], stream[start + 1]]) as usize;
        assert!(held < 2 + len, "a complete message is never held");
    }
    assert!(held <= 2 + u16::MAX as usize);
}

/// The size of read `i`: the sizes in turn, or everything if there are none.
fn chunk_size(sizes: &[u8], i: usize) -> usize {
    match sizes.len() {
        0 => usize::MAX,
        n => sizes[i % n] as usize + 1,
    }
}

/// A stream being fed to a framer, and the messages it gave so far.
struct Feed<'a> {
    stream: &'a [u8],
    framer: Framer,
    messages: Vec<Vec<u8>>,
    /// Bytes fed so far, and where the message in progress starts.
    fed: usize,
    start: usize,
}

impl<'a> Feed<'a> {
    fn new(stream: &'a [u8]) -> Self {
        Self {
            stream,
            framer: Framer::new(),
            messages: Vec::new(),
            fed: 0,
            start: 0,
        }
    }

    /// The size of read `i` (see [`chunk_size`]), at most what is left;
    /// `None` once the whole stream is fed.
    fn next_read(&self, sizes: &[u8], i: usize) -> Option<usize> {
        let left = self.stream.len() - self.fed;
        (left > 0).then(|| chunk_size(sizes, i).min(left))
    }

    /// After `used` more bytes went in, giving `message` if they completed one.
    fn took(&mut self, used: usize, message: Option<Vec<u8>>) {
        self.fed += used;
        if let Some(message) = message {
            assert_eq!(message, &self.stream[self.start + 2..self.fed]);
            self.messages.push(message);
            self.start = self.fed;
        }
        check_held(&self.framer, self.stream, self.start, self.fed);
    }

    /// The messages, and where the incomplete tail starts.
    fn done(self) -> (Vec<Vec<u8>>, usize) {
        (self.messages, self.start)
    }
}

/// Through `push`, one chunk at a time.
fn by_push(stream: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut feed = Feed::new(stream);
    for i in 0.. {
        let Some(size) = feed.next_read(sizes, i) else {
            break;
        };
        let mut chunk = &stream[feed.fed..feed.fed + size];
        while !chunk.is_empty() {
            let (used, message) = feed.framer.push(chunk);
            assert!(used > 0 && used <= chunk.len());
            chunk = &chunk[used..];
            if message.is_none() {
                assert!(chunk.is_empty(), "push stops early only at a message's end");
            }
            feed.took(used, message);
        }
    }
    feed.done()
}

/// Through `spare` and `advance`, a read of at most the chunk size at a
/// time, as the async reader does.
fn by_reads(stream: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut feed = Feed::new(stream);
    for i in 0.. {
        let Some(size) = feed.next_read(sizes, i) else {
            break;
        };
        let fed = feed.fed;
        let spare = feed.framer.spare();
        assert!(!spare.is_empty());
        let n = spare.len().min(size);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        let message = feed.framer.advance(n);
        feed.took(n, message);
    }
    feed.done()
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = (count as usize % 32).min(rest.len());
    let (sizes, stream) = rest.split_at(count);

    let (want, tail) = reference(stream);
    for (messages, end) in [
        by_push(stream, &[]),
        by_push(stream, sizes),
        by_reads(stream, &[]),
        by_reads(stream, sizes),
    ] {
        assert_eq!(messages, want);
        assert_eq!(end, tail);
    }
});
