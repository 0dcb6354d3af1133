//! RSA signatures by keys of 512 to 1023 bits (RFC 3110 allows 512 to 4096), which ring, and
//! so hickory-proto's verifier, refuses: it verifies RSA from 1024 bits up only.
//!
//! Such keys are weak, but what a validator does with them is not a signer's choice: Unbound,
//! BIND and Knot Resolver verify them, and a zone signed with one is secure for them. A
//! validator that cannot verify its signatures would call the zone bogus and answer SERVFAIL
//! for names its peers answer. So [`verify`] checks RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.2) for
//! these keys: the signature to the public exponent modulo the key, compared with the encoding
//! of the data's digest. It runs only after hickory-proto's verification failed, for a key
//! shorter than 1024 bits, within the validator's verification budget like any other.

use num_bigint::BigUint;

/// The modulus lengths, in bits, verified here: RFC 3110's lower bound up to ring's.
const BITS: std::ops::Range<u64> = 512..1024;
/// The longest public exponent accepted, in bytes (DNSSEC keys use 3 or 65537; a long one
/// would only make the exponentiation dear).
const MAX_EXPONENT_BYTES: usize = 4;

/// The DER DigestInfo prefixes of RFC 8017 §9.2, note 1.
const SHA1_PREFIX: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// The digests RSA DNSSEC algorithms sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    /// RSASHA1 (5) and RSASHA1-NSEC3-SHA1 (7).
    Sha1,
    /// RSASHA256 (8).
    Sha256,
    /// RSASHA512 (10).
    Sha512,
}

impl Digest {
    /// The digest of a DNSSEC algorithm number, when it is an RSA one.
    pub(crate) fn of_algorithm(algorithm: u8) -> Option<Self> {
        match algorithm {
            5 | 7 => Some(Self::Sha1),
            8 => Some(Self::Sha256),
            10 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn info(self, data: &[u8]) -> Vec<u8> {
        let (prefix, algorithm) = match self {
            Self::Sha1 => (SHA1_PREFIX, &ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
            Self::Sha256 => (SHA256_PREFIX, &ring::digest::SHA256),
            Self::Sha512 => (SHA512_PREFIX, &ring::digest::SHA512),
        };
        let mut info = prefix.to_vec();
        info.extend_from_slice(ring::digest::digest(algorithm, data).as_ref());
        info
    }
}

/// Whether `public_key` (RFC 3110 §2: the exponent's length, the exponent, the modulus) is an
/// RSA key shorter than ring verifies and no shorter than RFC 3110 allows.
pub(crate) fn is_short(public_key: &[u8]) -> bool {
    split_key(public_key).is_some_and(|(_, modulus)| BITS.contains(&modulus.bits()))
}

/// Whether `signature` is `public_key`'s RSASSA-PKCS1-v1_5 signature of `data` with `digest`,
/// for a key [`is_short`]; false for any other key.
pub(crate) fn verify(digest: Digest, public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let Some((exponent, modulus)) = split_key(public_key) else {
        return false;
    };
    if !BITS.contains(&modulus.bits()) {
        return false;
    }
    let length = modulus.bits().div_ceil(8) as usize;
    let s = BigUint::from_bytes_be(signature);
    // RFC 8017 §8.2.2 step 1 and §5.2.2 step 1: the signature is the modulus's length and less.
    if signature.len() != length || s >= modulus {
        return false;
    }
    let encoded = s.modpow(&exponent, &modulus).to_bytes_be();
    encoded_digest(&encoded, length).is_some_and(|info| info == digest.info(data))
}

/// The exponent and the modulus of an RFC 3110 key.
fn split_key(key: &[u8]) -> Option<(BigUint, BigUint)> {
    let (length, rest) = match key.split_first()? {
        (0, rest) if rest.len() >= 2 => (
            usize::from(u16::from_be_bytes([rest[0], rest[1]])),
            &rest[2..],
        ),
        (&length, rest) => (usize::from(length), rest),
    };
    if length == 0 || length > MAX_EXPONENT_BYTES || rest.len() <= length {
        return None;
    }
    let (exponent, modulus) = rest.split_at(length);
    Some((
        BigUint::from_bytes_be(exponent),
        BigUint::from_bytes_be(modulus),
    ))
}

/// The DigestInfo in an EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2) of `length` bytes, given
/// without its leading zero byte (as a number's bytes come): 0x01, at least eight 0xFF, 0x00,
/// then the DigestInfo.
fn encoded_digest(encoded: &[u8], length: usize) -> Option<&[u8]> {
    if encoded.len() != length - 1 || encoded.first() != Some(&0x01) {
        return None;
    }
    let padding = encoded[1..].iter().take_while(|&&b| b == 0xff).count();
    let rest = &encoded[1 + padding..];
    match (padding >= 8, rest.split_first()) {
        (true, Some((0x00, info))) => Some(info),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hex;

    /// A 512-bit key made with `openssl genrsa 512`, in RFC 3110's form (exponent 65537).
    fn key() -> Vec<u8> {
        let mut key = vec![3, 0x01, 0x00, 0x01];
        key.extend(hex(
            "E751AAFD4DD1107A95BF7FEFE951F20383EDC4E223A44A12FBE9230C15D621A0\
             1BDAC68CF87B4134329FCFC2E70857AC3AB9B9D3D605B51749C5F553B6F3D3F9",
        ));
        key
    }

    const MESSAGE: &[u8] = b"picket short rsa test message";

    /// `openssl dgst -sha1 -sign` and `-sha256 -sign` of [`MESSAGE`] with that key.
    fn signatures() -> [(Digest, Vec<u8>); 2] {
        [
            (
                Digest::Sha1,
                hex(
                    "37472adfe85f80a88ae46f1c62161a63b8147563f1b62ca58578cf631ba3f149\
                     38643980db986969781e69f48103896cf0fb70340262a1f13a1f46e952354497",
                ),
            ),
            (
                Digest::Sha256,
                hex(
                    "49781b89454e493bf3af2b815ef3b247c66304aefa46ec195e8ab48b3c6a1047\
                     89fd69fefc440f999146c518655b0e0173ab9b719ad3f4998ef7e2c44d8806a4",
                ),
            ),
        ]
    }

    #[test]
    fn openssl_signatures_by_a_512_bit_key_verify() {
        assert!(is_short(&key()));
        for (digest, signature) in signatures() {
            assert!(verify(digest, &key(), MESSAGE, &signature), "{digest:?}");
        }
    }

    #[test]
    fn another_message_digest_signature_or_key_does_not() {
        let [(sha1, signature), (sha256, other)] = signatures();
        assert!(!verify(
            sha1,
            &key(),
            b"picket short rsa test messagf",
            &signature
        ));
        assert!(
            !verify(sha256, &key(), MESSAGE, &signature),
            "the SHA-1 signature as SHA-256"
        );
        assert!(!verify(sha1, &key(), MESSAGE, &other));
        let mut flipped = signature.clone();
        flipped[40] ^= 1;
        assert!(!verify(sha1, &key(), MESSAGE, &flipped));
        assert!(
            !verify(sha1, &key(), MESSAGE, &signature[1..]),
            "one byte short"
        );
        let mut exponent_3 = key();
        exponent_3.splice(1..4, [3]);
        exponent_3[0] = 1;
        assert!(!verify(sha1, &exponent_3, MESSAGE, &signature));
    }

    #[test]
    fn keys_ring_verifies_and_keys_below_512_bits_are_not_short() {
        let long = [&[3u8, 1, 0, 1][..], &[0xC5; 128]].concat();
        assert!(!is_short(&long), "1024 bits: ring's");
        let tiny = [&[3u8, 1, 0, 1][..], &[0xC5; 63]].concat();
        assert!(!is_short(&tiny), "504 bits: below RFC 3110");
        assert!(!is_short(&[0, 0]));
        assert!(!is_short(&[]));
        assert!(!is_short(&[9, 1, 2, 3]), "an exponent longer than the key");
    }
}
