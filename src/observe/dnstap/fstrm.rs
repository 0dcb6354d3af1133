//! Frame Streams, the framing dnstap is carried in, bidirectional mode (the
//! mode of a Unix or TCP socket: fstrm_capture, Vector, dnstap-receiver).
//!
//! A data frame is a big-endian 32-bit length and that many payload bytes. A
//! control frame starts with a zero "length" (the escape), then the control
//! frame's own length, its type, and its fields (content type strings). The
//! writer's side of a session:
//!
//! ```text
//! writer ── READY(content types) ──▶ reader
//! writer ◀── ACCEPT(content type) ── reader
//! writer ── START(content type) ──▶  reader
//! writer ── data frames ... ──▶      reader
//! writer ── STOP ──▶                 reader
//! writer ◀── FINISH ──                reader
//! ```

use std::io::{self, Read, Write};

/// The content type of dnstap payloads.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Control frame types.
pub mod control {
    pub const ACCEPT: u32 = 0x01;
    pub const START: u32 = 0x02;
    pub const STOP: u32 = 0x03;
    pub const READY: u32 = 0x04;
    pub const FINISH: u32 = 0x05;
}

/// The one control field type: a content type string.
const FIELD_CONTENT_TYPE: u32 = 0x01;

/// The longest control frame accepted from a reader: a handful of content
/// types. The Frame Streams reference implementation caps it at 512 bytes.
pub const MAX_CONTROL_FRAME: usize = 512;

/// A control frame: its type and its content-type fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub kind: u32,
    pub content_types: Vec<Vec<u8>>,
}

impl Control {
    /// A control frame carrying our content type (READY, ACCEPT, START), or
    /// none (STOP, FINISH).
    pub fn new(kind: u32) -> Self {
        let content_types = match kind {
            control::STOP | control::FINISH => Vec::new(),
            _ => vec![CONTENT_TYPE.to_vec()],
        };
        Self {
            kind,
            content_types,
        }
    }

    /// The frame's bytes, escape included.
    pub fn encode(&self) -> Vec<u8> {
        let body_len: usize = 4 + self
            .content_types
            .iter()
            .map(|t| 8 + t.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(8 + body_len);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.extend_from_slice(&self.kind.to_be_bytes());
        for t in &self.content_types {
            out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t);
        }
        out
    }

    /// Reads one control frame (escape first). Anything else, or a frame
    /// longer than [`MAX_CONTROL_FRAME`], is an `InvalidData` error.
    pub fn read(reader: &mut impl Read) -> io::Result<Self> {
        let escape = read_u32(reader)?;
        if escape != 0 {
            return Err(invalid("expected a control frame, got a data frame"));
        }
        let len = read_u32(reader)? as usize;
        if !(4..=MAX_CONTROL_FRAME).contains(&len) {
            return Err(invalid("control frame length out of range"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        Self::decode_body(&body)
    }

    fn decode_body(body: &[u8]) -> io::Result<Self> {
        let kind = be32(&body[..4]);
        let mut rest = &body[4..];
        let mut content_types = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 8 {
                return Err(invalid("truncated control field"));
            }
            let (field, len) = (be32(&rest[..4]), be32(&rest[4..8]) as usize);
            let value = rest
                .get(8..8 + len)
                .ok_or_else(|| invalid("control field longer than its frame"))?;
            if field == FIELD_CONTENT_TYPE {
                content_types.push(value.to_vec());
            }
            rest = &rest[8 + len..];
        }
        Ok(Self {
            kind,
            content_types,
        })
    }

    /// Whether the frame offers dnstap's content type (or, as the
    /// specification allows, no content type at all).
    pub fn carries_dnstap(&self) -> bool {
        self.content_types.is_empty() || self.content_types.iter().any(|t| t == CONTENT_TYPE)
    }
}

/// Writes one data frame.
pub fn write_data(writer: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    writer.write_all(&(payload.len() as u32).to_be_bytes())?;
    writer.write_all(payload)
}

/// The writer's opening: READY, wait for ACCEPT of our content type, START.
pub fn open(stream: &mut (impl Read + Write)) -> io::Result<()> {
    stream.write_all(&Control::new(control::READY).encode())?;
    stream.flush()?;
    let accept = Control::read(stream)?;
    if accept.kind != control::ACCEPT || !accept.carries_dnstap() {
        return Err(invalid(
            "the collector did not accept protobuf:dnstap.Dnstap",
        ));
    }
    stream.write_all(&Control::new(control::START).encode())?;
    stream.flush()
}

/// The writer's closing: STOP, then wait for FINISH (bounded by the
/// stream's read timeout).
pub fn close(stream: &mut (impl Read + Write)) -> io::Result<()> {
    stream.write_all(&Control::new(control::STOP).encode())?;
    stream.flush()?;
    let finish = Control::read(stream)?;
    if finish.kind != control::FINISH {
        return Err(invalid("expected FINISH after STOP"));
    }
    Ok(())
}

fn read_u32(reader: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    reader.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("frame streams: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_round_trip() {
        for kind in [
            control::READY,
            control::ACCEPT,
            control::START,
            control::STOP,
            control::FINISH,
        ] {
            let frame = Control::new(kind);
            let bytes = frame.encode();
            assert_eq!(&bytes[..4], &[0, 0, 0, 0], "escape");
            assert_eq!(Control::read(&mut bytes.as_slice()).unwrap(), frame);
        }
    }

    #[test]
    fn ready_frame_matches_the_specification_bytes() {
        // escape, length 30, READY, content type field (1) of 22 bytes.
        let mut expected = vec![0, 0, 0, 0, 0, 0, 0, 30, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
        expected.extend_from_slice(CONTENT_TYPE);
        assert_eq!(Control::new(control::READY).encode(), expected);
    }

    #[test]
    fn malformed_control_frames_are_errors_not_panics() {
        let cases: [&[u8]; 5] = [
            &[0, 0, 0, 5],                                  // data frame
            &[0, 0, 0, 0, 0, 0, 0, 2],                      // too short
            &[0, 0, 0, 0, 0, 0, 0x10, 0],                   // too long
            &[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0], // truncated field
            &[0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9],
        ];
        for case in cases {
            assert!(Control::read(&mut &case[..]).is_err(), "{case:?}");
        }
    }

    /// A reader that answers ACCEPT, then FINISH, as fstrm_capture does.
    struct Collector {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Collector {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Collector {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_session_is_ready_accept_start_data_stop_finish() {
        let mut replies = Control::new(control::ACCEPT).encode();
        replies.extend(Control::new(control::FINISH).encode());
        let mut peer = Collector {
            input: io::Cursor::new(replies),
            written: Vec::new(),
        };
        open(&mut peer).unwrap();
        write_data(&mut peer, b"payload").unwrap();
        close(&mut peer).unwrap();
        let mut seen = peer.written.as_slice();
        assert_eq!(Control::read(&mut seen).unwrap().kind, control::READY);
        assert_eq!(Control::read(&mut seen).unwrap().kind, control::START);
        assert_eq!(read_u32(&mut seen).unwrap(), 7);
        assert_eq!(&seen[..7], b"payload");
        seen = &seen[7..];
        assert_eq!(Control::read(&mut seen).unwrap().kind, control::STOP);
    }

    #[test]
    fn a_collector_that_wants_another_content_type_is_refused() {
        let other = Control {
            kind: control::ACCEPT,
            content_types: vec![b"protobuf:other".to_vec()],
        };
        let mut peer = Collector {
            input: io::Cursor::new(other.encode()),
            written: Vec::new(),
        };
        assert!(open(&mut peer).is_err());
    }
}
