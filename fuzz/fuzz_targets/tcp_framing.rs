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

/// Through `push`, one chunk at a time.
fn by_push(stream: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut framer = Framer::new();
    let mut messages = Vec::new();
    let (mut fed, mut start) = (0, 0);
    for i in 0.. {
        if fed == stream.len() {
            break;
        }
        let size = chunk_size(sizes, i).min(stream.len() - fed);
        let mut chunk = &stream[fed..fed + size];
        while !chunk.is_empty() {
            let (used, message) = framer.push(chunk);
            assert!(used > 0 && used <= chunk.len());
            fed += used;
            chunk = &chunk[used..];
            if let Some(message) = message {
                assert_eq!(message, &stream[start + 2..fed]);
                messages.push(message);
                start = fed;
            } else {
                assert!(chunk.is_empty(), "push stops early only at a message's end");
            }
            check_held(&framer, stream, start, fed);
        }
    }
    (messages, start)
}

/// Through `spare` and `advance`, a read of at most the chunk size at a
/// time, as the async reader does.
fn by_reads(stream: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut framer = Framer::new();
    let mut messages = Vec::new();
    let (mut fed, mut start) = (0, 0);
    for i in 0.. {
        if fed == stream.len() {
            break;
        }
        let spare = framer.spare();
        assert!(!spare.is_empty());
        let n = spare
            .len()
            .min(stream.len() - fed)
            .min(chunk_size(sizes, i));
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        fed += n;
        if let Some(message) = framer.advance(n) {
            assert_eq!(message, &stream[start + 2..fed]);
            messages.push(message);
            start = fed;
        }
        check_held(&framer, stream, start, fed);
    }
    (messages, start)
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
