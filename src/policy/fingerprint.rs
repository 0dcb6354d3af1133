//! Keyed 64-bit fingerprints of domain names, for the list table ([`super::lists::DomainSet`]).
//!
//! A fingerprint is SipHash-1-3, under a 128-bit key, of the name's bytes read right to left.
//! Reading right to left makes every parent suffix (`test`, `example.test`, `a.example.test`)
//! a prefix of the message, so one pass over a query name gives the fingerprint of each suffix:
//! the state is copied and finalised at each label boundary.
//!
//! # Why keyed, and why SipHash
//!
//! The table stores fingerprints, not names, so two names with one fingerprint are one entry.
//! A fixed hash lets anyone compute a name that the table takes for a listed one: the
//! multiply-rotate hash used before could be collided byte by byte without any search (see
//! `tests/list_fingerprints.rs`), and a name taken for an allow-listed one is allowed, which
//! also skips rebinding screening. Under a secret random key a collision needs the key:
//! SipHash is a pseudo-random function (Aumasson and Bernstein, 2012), built for exactly this
//! (hash tables fed by attackers); its 1-3 variant is what Rust's `HashMap` uses. An attacker
//! who never sees a fingerprint can only guess: each query name is a fresh 2^-64 chance per
//! probed slot, so confirming `allow` matches against the stored name would buy nothing
//! measurable and cost ~22 MB for a 1M-name table plus a cache miss per match.
//!
//! The price is the finalisation (four rounds) per suffix; the bytes themselves cost less, 8 per
//! round where the old hash took a serial multiply per byte. `benches/policy.rs` (1M-domain
//! list, one rule, medians of three interleaved runs on a busy 2-core machine): 214 → 233 ns
//! per evaluation for a list hit (+9 %), 162 → 193 ns for a miss (+19 %), a typical
//! organization's ~400 ns unchanged within noise; loading 1M domains 477 → 576 ms CPU.
//!
//! The key is drawn once per process from the operating system's CSPRNG
//! ([`FingerprintKey::process`]) and never changes: unchanged lists are carried over from one
//! policy to the next on reload, with the fingerprints computed when they were first loaded.

use std::sync::OnceLock;

/// A secret 128-bit SipHash key. Its `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FingerprintKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

impl FingerprintKey {
    /// The key of this process: random, drawn on first use, the same until the process ends.
    pub(crate) fn process() -> Self {
        static KEY: OnceLock<FingerprintKey> = OnceLock::new();
        *KEY.get_or_init(Self::random)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub(crate) fn random() -> Self {
        use rand::TryRngCore;
        let mut os = rand::rngs::OsRng;
        // Without OS randomness no secure key exists; std's HashMap (also SipHash keyed from
        // the OS) fails the same way, so there is nothing safer to fall back to.
        let mut draw = || {
            os.try_next_u64()
                .expect("the operating system's random number generator works")
        };
        Self {
            k0: draw(),
            k1: draw(),
        }
    }

    /// A given key (tests).
    #[cfg(test)]
    pub(crate) fn from_parts(k0: u64, k1: u64) -> Self {
        Self { k0, k1 }
    }
}

/// SipHash with `C` compression and `D` finalisation rounds over a message fed one byte at a
/// time; [`finish`](Self::finish) does not consume the state, so a longer message can go on.
#[derive(Clone, Copy)]
struct Sip<const C: usize, const D: usize> {
    v: [u64; 4],
    /// Bytes of the current word so far, little-endian.
    word: u64,
    /// Message length so far.
    len: usize,
}

/// SipHash-1-3: Rust's `HashMap` choice, the fast variant.
type Sip13 = Sip<1, 3>;

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl<const C: usize, const D: usize> Sip<C, D> {
    #[inline(always)]
    fn new(key: &FingerprintKey) -> Self {
        Self {
            v: [
                key.k0 ^ 0x736f_6d65_7073_6575,
                key.k1 ^ 0x646f_7261_6e64_6f6d,
                key.k0 ^ 0x6c79_6765_6e65_7261,
                key.k1 ^ 0x7465_6462_7974_6573,
            ],
            word: 0,
            len: 0,
        }
    }

    #[inline(always)]
    fn compress(v: &mut [u64; 4], m: u64) {
        v[3] ^= m;
        for _ in 0..C {
            sip_round(v);
        }
        v[0] ^= m;
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * (self.len % 8));
        self.len += 1;
        if self.len % 8 == 0 {
            Self::compress(&mut self.v, self.word);
            self.word = 0;
        }
    }

    /// The hash of the message so far.
    #[inline(always)]
    fn finish(&self) -> u64 {
        let mut v = self.v;
        let last = self.word | ((self.len as u64) << 56);
        Self::compress(&mut v, last);
        v[2] ^= 0xff;
        for _ in 0..D {
            sip_round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

/// Never 0: 0 marks an empty slot of the table.
#[inline(always)]
fn nonzero(h: u64) -> u64 {
    h.max(1)
}

/// Fingerprint of a whole (already normalised) domain, equal to the suffix walk's.
pub(crate) fn fingerprint(key: &FingerprintKey, name: &[u8]) -> u64 {
    let mut sip = Sip13::new(key);
    for &b in name.iter().rev() {
        sip.push(b);
    }
    nonzero(sip.finish())
}

/// Fingerprints of every suffix of `qname` at label boundaries, shortest first, with the
/// suffix's start.
#[inline]
pub(crate) fn suffix_fingerprints(
    key: &FingerprintKey,
    qname: &[u8],
    out: &mut smallvec::SmallVec<[(u64, usize); 8]>,
) {
    let mut sip = Sip13::new(key);
    for i in (0..qname.len()).rev() {
        sip.push(qname[i]);
        if i == 0 || qname[i - 1] == b'.' {
            out.push((nonzero(sip.finish()), i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reversed(name: &[u8]) -> Vec<u8> {
        name.iter().rev().copied().collect()
    }

    /// The same byte-at-a-time code with SipHash-2-4's rounds gives std's SipHash-2-4 (the
    /// reference implementation Rust ships) for every length across word boundaries.
    #[test]
    #[allow(deprecated)] // std::hash::SipHasher: deprecated for hash tables, fine as a reference
    fn matches_the_reference_siphash() {
        use std::hash::Hasher;
        for (k0, k1) in [
            (0, 0),
            (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            (u64::MAX, 7),
        ] {
            let key = FingerprintKey::from_parts(k0, k1);
            let message: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            for len in 0..message.len() {
                let mut ours = Sip::<2, 4>::new(&key);
                for &b in &message[..len] {
                    ours.push(b);
                }
                let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
                reference.write(&message[..len]);
                assert_eq!(ours.finish(), reference.finish(), "length {len}");
            }
        }
        // The published test vector: key 00..0f, empty message.
        let key = FingerprintKey::from_parts(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(Sip::<2, 4>::new(&key).finish(), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn suffix_walk_gives_each_suffix_its_own_fingerprint() {
        let key = FingerprintKey::random();
        let name = b"a.bb.example.test";
        let mut fps = smallvec::SmallVec::new();
        suffix_fingerprints(&key, name, &mut fps);
        let starts: Vec<usize> = fps.iter().map(|&(_, s)| s).collect();
        assert_eq!(starts, [13, 5, 2, 0]);
        for (fp, start) in fps {
            assert_eq!(fp, fingerprint(&key, &name[start..]));
            let mut sip = Sip13::new(&key);
            for b in reversed(&name[start..]) {
                sip.push(b);
            }
            assert_eq!(
                fp,
                nonzero(sip.finish()),
                "SipHash-1-3 of the reversed suffix"
            );
        }
    }

    /// Fingerprints depend on the key: the same name under two keys differs, and the process
    /// key is one random draw, kept.
    #[test]
    fn fingerprints_depend_on_the_process_key() {
        let name = b"partner.example";
        let one = FingerprintKey::from_parts(1, 2);
        let two = FingerprintKey::from_parts(1, 3);
        assert_ne!(fingerprint(&one, name), fingerprint(&two, name));
        assert_eq!(fingerprint(&one, name), fingerprint(&one, name));
        let process = FingerprintKey::process();
        assert_eq!(process, FingerprintKey::process(), "one key per process");
        assert_ne!(process, FingerprintKey::random(), "drawn at random");
        assert_ne!(process, FingerprintKey::from_parts(0, 0));
        assert_eq!(format!("{process:?}"), "FingerprintKey(..)");
    }
}
