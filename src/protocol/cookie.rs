//! DNS Cookies (RFC 7873), the server's side, with RFC 9018's interoperable server cookie.
//!
//! A client that sends a COOKIE option gets its client cookie back followed by a server cookie:
//! version 1, three reserved bytes, the time in whole seconds, and SipHash-2-4 of the client
//! cookie, those eight bytes and the client's address under a 16-byte secret. The client sends
//! it back on its next queries, and a resolver that forged the client's address could not have
//! read it.
//!
//! What a valid server cookie earns: a client over its rate limit is answered anyway
//! (`--rate-limit`; BIND exempts such queries from its rate limits too). Its source address
//! cannot be forged: the cookie was sent to that address, and only this process's secret (or
//! its fleet's) makes it. A cookie is valid when it is one Picket made ([`ServerSecret::verifies`]): 16 bytes,
//! version 1, its hash right for the client cookie and address, and its time at most an hour
//! old and at most five minutes ahead (RFC 9018 §4.3). Any other server cookie earns nothing
//! and is not an error (RFC 7873 §5.2.4): the query is answered like one with only a client
//! cookie, and no BADCOOKIE makes a client retry. Every answer carries a fresh server cookie
//! (§5.2.3). Only a query's first COOKIE option counts (§5.2); a malformed one (a client
//! cookie that is not 8 bytes, a server cookie not of 8 to 32) makes the query a FORMERR
//! (§5.2.2), in [`super::parse`].
//!
//! Nodes of a fleet behind one anycast address share their secrets (`--cookie-secret-file`,
//! [`CookieSecrets`]), so that a cookie one node made is valid on all of them: a client's
//! queries may reach any node, and each would otherwise earn its exemption anew.

use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a client cookie (RFC 7873 §4.1).
pub const CLIENT_LEN: usize = 8;
/// Length of the server cookie Picket makes (RFC 9018 §4).
pub const SERVER_LEN: usize = 16;
/// The COOKIE option Picket sends back: the client's cookie, then its own.
pub type Reply = [u8; CLIENT_LEN + SERVER_LEN];

/// RFC 9018's server cookie version.
const VERSION: u8 = 1;
/// How old a server cookie may be and still be valid, in seconds (RFC 9018 §4.3).
const MAX_AGE: i64 = 3600;
/// How far ahead of this server's clock a server cookie may be, in seconds (RFC 9018 §4.3: the
/// clock may have been stepped back since the cookie was made).
const MAX_AHEAD: i64 = 300;

/// A query's first COOKIE option (RFC 7873 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    /// The client cookie.
    pub client: [u8; CLIENT_LEN],
    /// The server cookie, when it has the length of the ones Picket makes; any other is kept
    /// as none, since it cannot be valid here.
    pub server: Option<[u8; SERVER_LEN]>,
}

/// Whether a COOKIE option of `len` bytes is well formed: a client cookie alone, or one followed
/// by a server cookie of 8 to 32 bytes (RFC 7873 §4, §5.2.2).
pub fn valid_len(len: usize) -> bool {
    len == CLIENT_LEN || (CLIENT_LEN + 8..=CLIENT_LEN + 32).contains(&len)
}

/// One secret server cookies are made and checked with.
#[derive(Clone)]
pub struct ServerSecret([u8; 16]);

impl ServerSecret {
    /// A fresh random secret.
    pub fn random() -> Self {
        let mut secret = [0; 16];
        rand::fill(&mut secret);
        Self(secret)
    }

    /// A given secret (tests, and RFC 9018's examples).
    pub fn from_bytes(secret: [u8; 16]) -> Self {
        Self(secret)
    }

    /// The COOKIE option answering `client`'s cookie from `ip`, made now.
    pub fn reply(&self, client: [u8; CLIENT_LEN], ip: IpAddr) -> Reply {
        self.reply_at(client, ip, now_seconds())
    }

    /// [`Self::reply`] at `now`, seconds since the epoch (serial arithmetic: it wraps in 2106).
    pub fn reply_at(&self, client: [u8; CLIENT_LEN], ip: IpAddr, now: u32) -> Reply {
        let mut head = [VERSION, 0, 0, 0, 0, 0, 0, 0];
        head[4..].copy_from_slice(&now.to_be_bytes());
        let hash = self.hash(&client, &head, ip);
        let mut out = [0; CLIENT_LEN + SERVER_LEN];
        out[..CLIENT_LEN].copy_from_slice(&client);
        out[CLIENT_LEN..CLIENT_LEN + 8].copy_from_slice(&head);
        out[CLIENT_LEN + 8..].copy_from_slice(&hash.to_le_bytes());
        out
    }

    /// Whether `cookies`' server cookie is one this secret made for `ip` and its client cookie,
    /// in the last hour (and no more than five minutes ahead of now).
    pub fn verifies(&self, cookies: &Cookies, ip: IpAddr) -> bool {
        self.verifies_at(cookies, ip, now_seconds())
    }

    /// [`Self::verifies`] at `now`, seconds since the epoch.
    pub fn verifies_at(&self, cookies: &Cookies, ip: IpAddr, now: u32) -> bool {
        let Some(server) = &cookies.server else {
            return false;
        };
        let (head, hash) = server.split_at(8);
        let made = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        // Serial arithmetic (RFC 1982, as RFC 9018 §4.3 asks): the difference read as signed.
        let age = i64::from(now.wrapping_sub(made) as i32);
        let hash = u64::from_le_bytes(hash.try_into().expect("8 bytes"));
        head[0] == VERSION
            && (-MAX_AHEAD..=MAX_AGE).contains(&age)
            && self.hash(&cookies.client, head, ip) == hash
    }

    /// SipHash-2-4 (RFC 9018 §4.4) of the client cookie, the version, reserved and time bytes
    /// and the client's address. The standard library's `SipHasher` is SipHash-2-4 keyed with
    /// the secret's two little-endian halves, over the bytes written; it is deprecated only as
    /// a general-purpose hasher, and RFC 9018's test vectors pin it here.
    #[allow(deprecated)]
    fn hash(&self, client: &[u8], head: &[u8], ip: IpAddr) -> u64 {
        use std::hash::Hasher;
        let half = |i: usize| u64::from_le_bytes(self.0[i..i + 8].try_into().expect("8 bytes"));
        let mut h = std::hash::SipHasher::new_with_keys(half(0), half(8));
        h.write(client);
        h.write(head);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.finish()
    }
}

/// Most secrets a `--cookie-secret-file` may hold: the one in use, the next one being rolled
/// out, and the last one (Unbound keeps an active and a staging secret).
pub const MAX_SECRETS: usize = 3;

/// The secrets of a process: the first makes server cookies, and a cookie any of them made is
/// valid. That is how a fleet rolls its secret over without a client losing its exemption: add
/// the new secret second on every node, then, once every node has it, move it first, and an
/// hour later (a cookie's lifetime) remove the old one (RFC 9018 §4.2's rollover, Unbound's
/// `cookie-secret-file`).
#[derive(Clone, Debug)]
pub struct CookieSecrets(Vec<ServerSecret>);

impl CookieSecrets {
    /// One fresh random secret, this process's alone.
    pub fn random() -> Self {
        Self(vec![ServerSecret::random()])
    }

    /// The secrets `path` holds, or an error naming the file, the line and the fix.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cookie secret file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// One secret per line as 32 hexadecimal digits (16 bytes, as `openssl rand -hex 16`
    /// prints them), the one in use first; blank lines and `#` comments are skipped. The
    /// error starts with the line's number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut secrets = Vec::new();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let secret = parse_hex_secret(line).ok_or_else(|| {
                format!(
                    "{number}: `{line}` is not a cookie secret: write 32 hexadecimal digits \
                     (16 bytes), e.g. the output of `openssl rand -hex 16`"
                )
            })?;
            if secrets.len() == MAX_SECRETS {
                return Err(format!(
                    "{number}: more than {MAX_SECRETS} secrets: keep the one in use, the next and the last"
                ));
            }
            secrets.push(ServerSecret::from_bytes(secret));
        }
        match secrets.is_empty() {
            true => Err("1: no secret: write one line of 32 hexadecimal digits, e.g. the output of `openssl rand -hex 16`".into()),
            false => Ok(Self(secrets)),
        }
    }

    /// How many secrets there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The COOKIE option answering `client`'s cookie from `ip`, made now with the first secret.
    pub fn reply(&self, client: [u8; CLIENT_LEN], ip: IpAddr) -> Reply {
        self.0[0].reply(client, ip)
    }

    /// Whether any of the secrets made `cookies`' server cookie for `ip`, within its lifetime.
    pub fn verifies(&self, cookies: &Cookies, ip: IpAddr) -> bool {
        let now = now_seconds();
        self.0
            .iter()
            .any(|secret| secret.verifies_at(cookies, ip, now))
    }
}

/// 32 hexadecimal digits as 16 bytes.
fn parse_hex_secret(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut secret = [0u8; 16];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(secret)
}

/// Seconds since the epoch, the time in a server cookie (serial arithmetic: it wraps in 2106).
fn now_seconds() -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs() as u32
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hex;

    fn rfc_secret() -> ServerSecret {
        ServerSecret::from_bytes(hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap())
    }

    /// RFC 9018 Appendix A.1 and A.2: one client learning, then renewing, its server cookie.
    #[test]
    fn rfc_9018_test_vectors() {
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let learnt = rfc_secret().reply_at(client, ip, 1_559_731_985);
        assert_eq!(
            learnt.to_vec(),
            hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
        );
        let renewed = rfc_secret().reply_at(client, ip, 1_559_734_385);
        assert_eq!(
            renewed.to_vec(),
            hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")
        );
    }

    #[test]
    fn another_address_or_secret_gets_another_cookie() {
        let client = [7; 8];
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let secret = rfc_secret();
        assert_ne!(secret.reply_at(client, a, 1), secret.reply_at(client, b, 1));
        assert_ne!(
            secret.reply_at(client, a, 1),
            ServerSecret::random().reply_at(client, a, 1)
        );
    }

    /// RFC 9018 Appendix A.1's cookie, sent back: valid from its own second to an hour later,
    /// and up to five minutes before it (a clock behind the issuer's).
    #[test]
    fn a_server_cookie_is_valid_for_its_client_address_and_hour_only() {
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let made = 1_559_731_985;
        let reply = rfc_secret().reply_at(client, ip, made);
        let cookies = Cookies {
            client,
            server: Some(reply[8..].try_into().unwrap()),
        };
        let secret = rfc_secret();
        for now in [made, made + 3600, made - 300] {
            assert!(secret.verifies_at(&cookies, ip, now), "at {now}");
        }
        for now in [made + 3601, made - 301] {
            assert!(!secret.verifies_at(&cookies, ip, now), "at {now}");
        }
        let elsewhere: IpAddr = "198.51.100.101".parse().unwrap();
        assert!(!secret.verifies_at(&cookies, elsewhere, made));
        assert!(!ServerSecret::random().verifies_at(&cookies, ip, made));
        let other_client = Cookies {
            client: [0; 8],
            ..cookies
        };
        assert!(!secret.verifies_at(&other_client, ip, made));
        for byte in [0, 1, 5, 15] {
            let mut server = cookies.server.unwrap();
            server[byte] ^= 1;
            let altered = Cookies {
                server: Some(server),
                ..cookies
            };
            assert!(
                !secret.verifies_at(&altered, ip, made),
                "byte {byte} altered"
            );
        }
        let client_only = Cookies {
            server: None,
            ..cookies
        };
        assert!(!secret.verifies_at(&client_only, ip, made));
    }

    #[test]
    fn a_secret_file_holds_one_to_three_secrets_and_any_of_them_verifies() {
        let text = "# in use\n\
                    e5e973e5a6b2a43f48e7dc849e37bfcf\n\n\
                    # the next one\n  00112233445566778899AABBCCDDEEFF  \n";
        let secrets = CookieSecrets::parse(text).unwrap();
        assert_eq!(secrets.len(), 2);
        let client = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        // The first secret makes the cookie: RFC 9018's own secret, checked by its vector.
        let made = secrets.reply(client, ip);
        let first = rfc_secret();
        let cookies = |reply: Reply| Cookies {
            client,
            server: Some(reply[CLIENT_LEN..].try_into().unwrap()),
        };
        let now = now_seconds();
        assert!(first.verifies_at(&cookies(made), ip, now));
        // A cookie the second secret made is valid too; one of a third, unknown, is not.
        let second = hex("00112233445566778899aabbccddeeff");
        let second = ServerSecret::from_bytes(second.try_into().unwrap());
        assert!(secrets.verifies(&cookies(second.reply(client, ip)), ip));
        let stranger = ServerSecret::from_bytes([7; 16]);
        assert!(!secrets.verifies(&cookies(stranger.reply(client, ip)), ip));
    }

    #[test]
    fn a_bad_secret_file_names_the_line_and_the_fix() {
        let cases = [
            ("", "1: no secret"),
            ("# nothing\n", "1: no secret"),
            (
                "e5e973e5a6b2a43f48e7dc849e37bfc\n",
                "1: `e5e973e5a6b2a43f48e7dc849e37bfc` is not a cookie secret",
            ),
            (
                "\nzz e973e5a6b2a43f48e7dc849e37bfcf\n",
                "2: `zz e973e5a6b2a43f48e7dc849e37bfcf`",
            ),
            (
                "e5e973e5a6b2a43f48e7dc849e37bfcf e5\n",
                "1: `e5e973e5a6b2a43f48e7dc849e37bfcf e5`",
            ),
        ];
        for (text, start) in cases {
            let error = CookieSecrets::parse(text).unwrap_err();
            assert!(error.starts_with(start), "{text:?}: {error}");
            assert!(error.contains("openssl rand -hex 16"), "{error}");
        }
        let four = "00000000000000000000000000000000\n".repeat(4);
        let error = CookieSecrets::parse(&four).unwrap_err();
        assert!(error.starts_with("4: more than 3 secrets"), "{error}");
    }

    #[test]
    fn option_lengths() {
        for len in [8, 16, 24, 40] {
            assert!(valid_len(len), "{len}");
        }
        for len in [0, 7, 9, 15, 41] {
            assert!(!valid_len(len), "{len}");
        }
    }
}
