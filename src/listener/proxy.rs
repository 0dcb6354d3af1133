//! PROXY protocol version 2 (HAProxy's `proxy-protocol.txt`, §2.2): a load
//! balancer in front of Picket's TCP, DoT and DoH listeners prepends one
//! binary header to each connection saying who the client is. Only peers in
//! `--proxy-protocol-from` may send it, and they must: the header's source
//! address then stands for the client everywhere (access list, per-client
//! connection cap, organization, `dns.src_ip`, query log). A header from any
//! other peer closes the connection, so a client cannot claim another's
//! address; so does a trusted peer that sends none, as it would otherwise
//! be taken for the client itself.
//!
//! The parser is ours ([`parse`]: pure, bounded, fuzzed by
//! `fuzz/fuzz_targets/proxy_header.rs`): the v2 format is 16 fixed bytes and
//! an address block, and owning it keeps the reads exact (nothing past the
//! header is consumed, so TLS or DNS framing starts where it should) and
//! the bounds in `src/config/limits.rs`. Version 1 (text) is not read: it
//! is the older form, and HAProxy, AWS NLB and dnsdist all send v2.
//!
//! Not over UDP: a datagram's source address, and so whether it came from
//! a trusted proxy, can be forged, and a forged header would pick any
//! client address past the access list and the rate limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

use crate::config::Settings;

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The signature, version and command, family and transport, and length.
pub const FIXED_LEN: usize = 16;
/// Smallest bound [`parse`] may be given: the fixed part and the largest
/// address block (AF_UNIX, 216 bytes).
pub const MIN_HEADER_BOUND: usize = FIXED_LEN + 216;
/// While an untrusted peer's first bytes could still be the start of a
/// signature, how long to wait before looking again (the bytes arrive
/// together from any real sender, so this is rarely reached).
const PEEK_AGAIN: Duration = Duration::from_millis(10);

/// The family and transport bytes a PROXY command may carry (spec §2.2:
/// "other values are unspecified and ... must be rejected as invalid").
const KNOWN_FAMILIES: [u8; 7] = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];

/// What a valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection is the proxy's own (LOCAL: its health checks), or the
    /// address family carries no IP address (UNSPEC, AF_UNIX): the peer
    /// itself is the client.
    Local,
    /// PROXY: the original client's address and port.
    Proxied(SocketAddr),
}

/// Why a header is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol v2 signature")]
    Signature,
    #[error("PROXY protocol version {0}, only version 2 is read")]
    Version(u8),
    #[error("PROXY command {0}, only LOCAL (0) and PROXY (1) exist")]
    Command(u8),
    #[error("unknown address family and transport {0:#04x}")]
    Family(u8),
    #[error("a header of {len} bytes, over the bound of {max}")]
    TooLong { len: usize, max: usize },
    #[error("an address block of {len} bytes, too short for its family ({need})")]
    Short { len: usize, need: usize },
}

/// Reads the header at the start of `input`: `Ok(None)` while it is
/// incomplete (all of it so far valid), else the header and its length.
/// A header longer than `max` (at least [`MIN_HEADER_BOUND`]) is an error
/// as soon as its length field is in, so a reader never buffers more.
pub fn parse(input: &[u8], max: usize) -> Result<Option<(Header, usize)>, ProxyError> {
    let max = max.max(MIN_HEADER_BOUND);
    let seen = input.len().min(SIGNATURE.len());
    if input[..seen] != SIGNATURE[..seen] {
        return Err(ProxyError::Signature);
    }
    // Each byte is judged as soon as it is in, so a peer that is not
    // sending v2 is refused without waiting for more.
    let command = match input.get(12) {
        Some(&byte) if byte >> 4 != 2 => return Err(ProxyError::Version(byte >> 4)),
        Some(&byte) if byte & 0x0f > 1 => return Err(ProxyError::Command(byte & 0x0f)),
        Some(&byte) => byte & 0x0f,
        None => return Ok(None),
    };
    // High nibble: UNSPEC, INET, INET6, UNIX; low: UNSPEC, STREAM, DGRAM.
    // LOCAL: "the receiver must ... use the real connection endpoints and
    // discard the protocol block including the family", so any will do.
    let family = match input.get(13) {
        Some(&family) if command == 1 && !KNOWN_FAMILIES.contains(&family) => {
            return Err(ProxyError::Family(family))
        }
        Some(&family) => family,
        None => return Ok(None),
    };
    let Some(fixed) = input.get(..FIXED_LEN) else {
        return Ok(None);
    };
    let len = FIXED_LEN + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > max {
        return Err(ProxyError::TooLong { len, max });
    }
    let Some(block) = input.get(FIXED_LEN..len) else {
        return Ok(None);
    };
    if command == 0 {
        return Ok(Some((Header::Local, len)));
    }
    let need = |need: usize| {
        if block.len() < need {
            Err(ProxyError::Short {
                len: block.len(),
                need,
            })
        } else {
            Ok(())
        }
    };
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    // Address blocks may be followed by TLVs, which are skipped.
    let header = match family {
        0x00 => Header::Local,
        0x11 | 0x12 => {
            need(12)?;
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Header::Proxied(SocketAddr::new(IpAddr::V4(ip), port(8)))
        }
        0x21 | 0x22 => {
            need(36)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            Header::Proxied(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port(32),
            ))
        }
        0x31 | 0x32 => {
            need(216)?;
            Header::Local
        }
        // Refused above already; kept an error rather than a panic.
        other => return Err(ProxyError::Family(other)),
    };
    Ok(Some((header, len)))
}

/// Why a connection is closed before it is served.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("a PROXY header from a peer outside --proxy-protocol-from; if it is your load balancer, add its address to --proxy-protocol-from")]
    Untrusted,
    #[error("a malformed PROXY header ({0}); check the load balancer sends PROXY protocol version 2 (HAProxy: send-proxy-v2)")]
    Malformed(ProxyError),
    #[error("no complete PROXY header in time from a peer in --proxy-protocol-from; make it send PROXY protocol version 2 (HAProxy: send-proxy-v2), or remove it from --proxy-protocol-from")]
    Missing,
    #[error("the peer closed the connection without sending anything")]
    Closed,
    #[error("the connection failed before a PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// The trusted proxies of the stream listeners (`--proxy-protocol-from`).
#[derive(Debug)]
pub struct Proxies {
    trusted: Vec<IpNet>,
    max_header: usize,
    header_timeout: Duration,
}

impl Proxies {
    /// From the settings; None when no proxy is trusted (no header is read
    /// or looked for at all).
    pub fn from_settings(settings: &Settings) -> Option<Proxies> {
        if settings.proxy_protocol_from.is_empty() {
            return None;
        }
        Some(Proxies {
            trusted: settings.proxy_protocol_from.clone(),
            max_header: settings.limits.proxy_header_max_bytes,
            header_timeout: settings.limits.proxy_header_timeout,
        })
    }

    /// Whether `peer` may (and must) send a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The client of a new connection from `peer`: from a trusted peer, the
    /// header's source (or the peer, for LOCAL), its header consumed; from
    /// any other, the peer, once its first bytes show no header. The stream
    /// is left at the first byte after any header.
    pub async fn client(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, Refused> {
        if self.trusts(peer.ip()) {
            match timeout(self.header_timeout, self.read_header(stream)).await {
                Ok(Ok(Header::Proxied(client))) => Ok(client),
                Ok(Ok(Header::Local)) => Ok(peer),
                Ok(Err(refused)) => Err(refused),
                Err(_) => Err(Refused::Missing),
            }
        } else {
            match timeout(self.header_timeout, no_header(stream)).await {
                Ok(Ok(())) => Ok(peer),
                Ok(Err(refused)) => Err(refused),
                // Nothing (or half a signature) yet: the client is slow to
                // ask, which the listener's own timeouts deal with; a header
                // completed later is no DNS, TLS or HTTP and fails there.
                Err(_) => Ok(peer),
            }
        }
    }

    /// Reads exactly one header: its fixed part, then its address block.
    async fn read_header(&self, stream: &mut TcpStream) -> Result<Header, Refused> {
        let mut buf = vec![0u8; FIXED_LEN];
        // A connection closed before its first byte is a proxy's health
        // check (HAProxy's plain `check`), not a missing header.
        let first = stream.read(&mut buf).await?;
        if first == 0 {
            return Err(Refused::Closed);
        }
        read_exact(stream, &mut buf[first..]).await?;
        let len = match parse(&buf, self.max_header) {
            Ok(Some((header, _))) => return Ok(header),
            Ok(None) => FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]])),
            Err(ProxyError::Signature) => return Err(Refused::Missing),
            Err(e) => return Err(Refused::Malformed(e)),
        };
        buf.resize(len, 0);
        read_exact(stream, &mut buf[FIXED_LEN..]).await?;
        match parse(&buf, self.max_header) {
            Ok(Some((header, _))) => Ok(header),
            // Cannot be: the buffer holds the length the header gave.
            Ok(None) => Err(Refused::Missing),
            Err(e) => Err(Refused::Malformed(e)),
        }
    }
}

/// `read_exact`, with an end of stream in the middle reported as missing.
async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), Refused> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Refused::Missing),
        Err(e) => Err(Refused::Io(e)),
    }
}

/// Waits until the first bytes of an untrusted peer's stream are known not
/// to be a PROXY header (without consuming them); an error if they are one.
async fn no_header(stream: &mut TcpStream) -> Result<(), Refused> {
    let mut first = [0u8; SIGNATURE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        if first[..n] != SIGNATURE[..n] {
            return Ok(());
        }
        if n == SIGNATURE.len() {
            return Err(Refused::Untrusted);
        }
        // A prefix of the signature: a DNS length of 3338 or more, or a
        // header on its way. Look again once more may have arrived.
        sleep(PEEK_AGAIN).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: command, family byte, address block.
    pub fn header(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v4_block() -> Vec<u8> {
        let mut block = vec![198, 51, 100, 7, 192, 0, 2, 1];
        block.extend_from_slice(&40000u16.to_be_bytes());
        block.extend_from_slice(&53u16.to_be_bytes());
        block
    }

    #[test]
    fn proxied_ipv4_and_ipv6() {
        let h = header(1, 0x11, &v4_block());
        assert_eq!(
            parse(&h, 4096),
            Ok(Some((
                Header::Proxied("198.51.100.7:40000".parse().unwrap()),
                28
            )))
        );
        let mut block = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0x9c, 0x40, 0, 53]);
        let h = header(1, 0x21, &block);
        assert_eq!(
            parse(&h, 4096),
            Ok(Some((
                Header::Proxied("[2001:db8::7]:40000".parse().unwrap()),
                52
            )))
        );
    }

    #[test]
    fn tlvs_are_skipped_and_what_follows_is_left() {
        let mut block = v4_block();
        // PP2_TYPE_AUTHORITY "dns.example", then PP2_TYPE_NOOP.
        block.extend_from_slice(&[0x02, 0, 11]);
        block.extend_from_slice(b"dns.example");
        block.extend_from_slice(&[0x04, 0, 0]);
        let mut stream = header(1, 0x11, &block);
        let len = stream.len();
        stream.extend_from_slice(&[0, 29, 0xab, 0xcd]);
        let (h, used) = parse(&stream, 4096).unwrap().unwrap();
        assert_eq!(used, len);
        assert_eq!(h, Header::Proxied("198.51.100.7:40000".parse().unwrap()));
    }

    #[test]
    fn local_unspec_and_unix_keep_the_peer() {
        assert_eq!(
            parse(&header(0, 0x11, &v4_block()), 4096),
            Ok(Some((Header::Local, 28)))
        );
        assert_eq!(
            parse(&header(0, 0x00, &[]), 4096),
            Ok(Some((Header::Local, 16)))
        );
        // LOCAL ignores even a family it does not know.
        assert_eq!(
            parse(&header(0, 0x77, &[]), 4096),
            Ok(Some((Header::Local, 16)))
        );
        assert_eq!(
            parse(&header(1, 0x00, &[]), 4096),
            Ok(Some((Header::Local, 16)))
        );
        assert_eq!(
            parse(&header(1, 0x31, &[0; 216]), 4096),
            Ok(Some((Header::Local, 232)))
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let h = header(1, 0x11, &v4_block());
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut], 4096), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_headers_are_refused_as_soon_as_they_are_seen() {
        assert_eq!(parse(b"\r\n\r\nX", 4096), Err(ProxyError::Signature));
        assert_eq!(
            parse(b"PROXY TCP4 ", 4096),
            Err(ProxyError::Signature),
            "v1"
        );
        assert_eq!(parse(&[0, 29], 4096), Err(ProxyError::Signature), "DNS");
        assert_eq!(
            parse(&[0x16, 3, 1], 4096),
            Err(ProxyError::Signature),
            "TLS"
        );
        let mut h = header(1, 0x11, &v4_block());
        h[12] = 0x11;
        assert_eq!(parse(&h[..13], 4096), Err(ProxyError::Version(1)));
        assert_eq!(
            parse(&header(2, 0x11, &v4_block()), 4096),
            Err(ProxyError::Command(2))
        );
        assert_eq!(
            parse(&header(1, 0x41, &[]), 4096),
            Err(ProxyError::Family(0x41))
        );
        assert_eq!(
            parse(&header(1, 0x13, &v4_block()), 4096),
            Err(ProxyError::Family(0x13))
        );
        assert_eq!(
            parse(&header(1, 0x11, &[0; 11]), 4096),
            Err(ProxyError::Short { len: 11, need: 12 })
        );
        assert_eq!(
            parse(&header(1, 0x21, &[0; 35]), 4096),
            Err(ProxyError::Short { len: 35, need: 36 })
        );
        // Too long: refused from the fixed part alone, before the block.
        let mut long = header(1, 0x11, &[]);
        long[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(
            parse(&long, 4096),
            Err(ProxyError::TooLong {
                len: 5016,
                max: 4096
            })
        );
        // A bound below the largest address block is raised to it.
        assert_eq!(
            parse(&header(1, 0x31, &[0; 216]), 16),
            Ok(Some((Header::Local, 232)))
        );
    }

    /// The seed corpus of `fuzz/fuzz_targets/proxy_header.rs` (first byte:
    /// the bound selector, 0 for the smallest bound), each as its name says.
    #[test]
    fn the_fuzz_seeds_parse_as_their_names_say() {
        let expected = [
            (
                "bad_command",
                "error: PROXY command 2, only LOCAL (0) and PROXY (1) exist",
            ),
            (
                "bad_version",
                "error: PROXY protocol version 1, only version 2 is read",
            ),
            ("half_header", "incomplete"),
            ("local_health_check", "local 16"),
            ("plain_dns", "error: no PROXY protocol v2 signature"),
            (
                "short_block",
                "error: an address block of 4 bytes, too short for its family (12)",
            ),
            ("tcp4_then_dns", "client 10.9.8.7:40000 28"),
            ("tcp6_with_tlvs", "client [2001:db8::7]:40000 69"),
            (
                "tls_client_hello_start",
                "error: no PROXY protocol v2 signature",
            ),
            (
                "too_long",
                "error: a header of 5016 bytes, over the bound of 232",
            ),
            ("udp4", "client 10.9.8.7:40000 28"),
            ("unix", "local 232"),
            (
                "unknown_family",
                "error: unknown address family and transport 0x41",
            ),
            ("unspec_proxy", "local 16"),
            ("v1_text", "error: no PROXY protocol v2 signature"),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/proxy_header");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let listed: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, listed, "every seed has an expected outcome");
        for (name, want) in expected {
            let data = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(data[0], 0, "{name}: smallest bound");
            let got = match parse(&data[1..], MIN_HEADER_BOUND) {
                Ok(Some((Header::Proxied(client), len))) => format!("client {client} {len}"),
                Ok(Some((Header::Local, len))) => format!("local {len}"),
                Ok(None) => "incomplete".to_string(),
                Err(e) => format!("error: {e}"),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn trust_is_by_network_and_ipv4_mapped_counts_as_ipv4() {
        let settings = Settings {
            proxy_protocol_from: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::1/128".parse().unwrap(),
            ],
            ..Settings::default()
        };
        let proxies = Proxies::from_settings(&settings).unwrap();
        assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("2001:db8::1".parse().unwrap()));
        assert!(!proxies.trusts("2001:db8::2".parse().unwrap()));
        assert!(!proxies.trusts("127.0.0.1".parse().unwrap()));
        assert!(Proxies::from_settings(&Settings::default()).is_none());
    }
}
