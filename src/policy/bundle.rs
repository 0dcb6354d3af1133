//! Signed policy bundles: one file that carries a policy directory (its `*.json` files and the
//! list files they name) from a control plane to every node, signed with Ed25519.
//!
//! The format (documented in the README, *Fleet*), all integers big-endian:
//!
//! ```text
//! "PICKETB1"                      8 bytes, magic and format version
//! manifest length M               4 bytes
//! manifest                        M bytes of JSON: {"format":1,"version":N,"created":UNIX_SECONDS,
//!                                 "files":[{"path":"p.json","size":123,"sha256":"hex"},...]}
//! payload                         the files' bytes, concatenated in manifest order
//! signature                       64 bytes, Ed25519 over every byte before it
//! ```
//!
//! A reader checks the size cap, then the signature over the raw bytes, and only then parses
//! the manifest: nothing an attacker wrote is interpreted before the signature says who wrote
//! it. The manifest's `version` is what rollback protection compares; `created` is for the
//! bundle's age. A plain length-prefixed container (not tar) keeps the reader small enough to
//! read at a glance and leaves no path, link or permission semantics to get wrong.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{LoadOptions, PolicyError, PolicySet};

/// The first bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"PICKETB1";
/// Manifest `format` this reader understands.
const FORMAT: u32 = 1;
const SIGNATURE_LEN: usize = 64;
/// Bytes before the manifest: magic and its length.
const HEADER_LEN: usize = MAGIC.len() + 4;
/// Files one bundle may carry: a policy directory has a few JSON files and up to 64 lists per
/// owner; this only stops a manifest from making the reader allocate without bound.
const MAX_FILES: usize = 4096;

/// Why a bundle was refused. Each message says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// Larger than the cap.
    TooLarge { size: u64, max: u64 },
    /// Not a bundle, or cut short.
    Malformed(String),
    /// The signature does not verify with the key given.
    BadSignature,
    /// Signed, but a file does not match its manifest entry.
    Content(String),
}

impl BundleError {
    /// Bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Content(_) => "malformed",
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, max } => write!(
                f,
                "the bundle is {size} bytes, over the {max}-byte limit (Limits::max_bundle_bytes): \
                 split large lists out as list URLs"
            ),
            Self::Malformed(why) => write!(
                f,
                "not a complete Picket policy bundle ({why}): a truncated download, or a file \
                 not made by `picket bundle sign`"
            ),
            Self::BadSignature => f.write_str(
                "the signature does not verify with the policy key: the bundle was altered, or \
                 signed with another key (compare `picket keygen`'s public key with --policy-key)",
            ),
            Self::Content(why) => {
                write!(f, "the bundle's content does not match its manifest: {why}")
            }
        }
    }
}

impl std::error::Error for BundleError {}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path, `/`-separated, never absolute nor with `..`.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

/// What a bundle says about itself (signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Container format (1).
    pub format: u32,
    /// Chosen by the signer, higher is newer: rollback protection compares it.
    pub version: u64,
    /// When it was signed, seconds since the Unix epoch.
    pub created: u64,
    /// The files, in payload order.
    pub files: Vec<FileEntry>,
}

/// A bundle whose signature verified (or, from [`Bundle::open_unverified`], whose
/// structure and hashes did) and whose files are text.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    /// (path, text) in manifest order.
    files: Vec<(String, String)>,
}

impl Bundle {
    /// Verifies `bytes` with `key`, then reads them. `max` caps the size before anything else.
    pub fn open(bytes: &[u8], key: &VerifyingKey, max: u64) -> Result<Bundle, BundleError> {
        let (signed, signature) = split_signature(bytes, max)?;
        key.verify(signed, &signature)
            .map_err(|_| BundleError::BadSignature)?;
        Self::read(signed)
    }

    /// Reads a bundle without checking who signed it (its structure and file hashes are still
    /// checked): for `picket check` without `--policy-key`.
    pub fn open_unverified(bytes: &[u8], max: u64) -> Result<Bundle, BundleError> {
        let (signed, _) = split_signature(bytes, max)?;
        Self::read(signed)
    }

    fn read(signed: &[u8]) -> Result<Bundle, BundleError> {
        let malformed = |s: &str| BundleError::Malformed(s.to_owned());
        let len = u32::from_be_bytes(signed[MAGIC.len()..HEADER_LEN].try_into().unwrap()) as usize;
        let manifest_end = HEADER_LEN
            .checked_add(len)
            .filter(|&e| e <= signed.len())
            .ok_or_else(|| malformed("the manifest runs past the end"))?;
        let manifest: Manifest = serde_json::from_slice(&signed[HEADER_LEN..manifest_end])
            .map_err(|e| BundleError::Malformed(format!("manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BundleError::Malformed(format!(
                "format {} (this Picket reads format {FORMAT}): upgrade Picket",
                manifest.format
            )));
        }
        if manifest.files.len() > MAX_FILES {
            return Err(malformed("too many files"));
        }
        let mut payload = &signed[manifest_end..];
        let mut files = Vec::with_capacity(manifest.files.len());
        let mut seen = BTreeSet::new();
        for entry in &manifest.files {
            if !safe_path(&entry.path) || !seen.insert(entry.path.as_str()) {
                return Err(BundleError::Content(format!(
                    "file path {:?} is absolute, has `..`, or appears twice",
                    entry.path
                )));
            }
            let size = usize::try_from(entry.size).unwrap_or(usize::MAX);
            if size > payload.len() {
                return Err(BundleError::Content(format!(
                    "{} is {} bytes but the payload has only {} left",
                    entry.path,
                    entry.size,
                    payload.len()
                )));
            }
            let (data, rest) = payload.split_at(size);
            payload = rest;
            if sha256_hex(data) != entry.sha256 {
                return Err(BundleError::Content(format!(
                    "{}: SHA-256 differs from the manifest",
                    entry.path
                )));
            }
            let text = std::str::from_utf8(data).map_err(|e| {
                BundleError::Content(format!("{} is not UTF-8 text ({e})", entry.path))
            })?;
            files.push((entry.path.clone(), text.to_owned()));
        }
        if !payload.is_empty() {
            return Err(BundleError::Content(format!(
                "{} bytes after the last file",
                payload.len()
            )));
        }
        Ok(Bundle { manifest, files })
    }

    /// The files, (relative path, text).
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(p, t)| (p.as_str(), t.as_str()))
    }

    /// Loads the policy it carries, as a directory with the same files would load (lists whose
    /// content equals those of `opts.previous` are shared with it).
    pub fn load(&self, opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
        let files: Vec<(&str, &str)> = self.files().collect();
        PolicySet::load_embedded_with(&files, opts)
    }
}

/// Splits off the signature after checking the size and the magic.
fn split_signature(bytes: &[u8], max: u64) -> Result<(&[u8], Signature), BundleError> {
    if bytes.len() as u64 > max {
        return Err(BundleError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    if bytes.len() < HEADER_LEN + SIGNATURE_LEN || !bytes.starts_with(MAGIC) {
        return Err(BundleError::Malformed(format!(
            "{} bytes, no {} header",
            bytes.len(),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    let (signed, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    let sig: [u8; SIGNATURE_LEN] = sig.try_into().expect("split at SIGNATURE_LEN");
    Ok((signed, Signature::from_bytes(&sig)))
}

fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Packs and signs the policy in `dir`: its `*.json` files and every list file they name. The
/// policy must load (a broken policy is never signed); its problems are the error.
pub fn pack(
    dir: &Path,
    key: &SigningKey,
    version: u64,
    created: u64,
) -> Result<Vec<u8>, PackError> {
    PolicySet::load_dir(dir).map_err(PackError::Policy)?;
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| PackError::Io(dir.to_path_buf(), e))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") && p.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).map_err(|e| PackError::Io(p.clone(), e))?;
            let parsed = super::load::parse_file(&p, &text)
                .map_err(|i| PackError::Policy(PolicyError::one(i)))?;
            names.extend(super::load::list_files(&parsed));
            names.insert(name);
        }
    }
    let mut files = Vec::new();
    let mut payload = Vec::new();
    for name in names {
        let rel = name.trim_start_matches("./").to_owned();
        if !safe_path(&rel) {
            return Err(PackError::Path(rel));
        }
        let path = dir.join(&rel);
        let data = std::fs::read(&path).map_err(|e| PackError::Io(path.clone(), e))?;
        files.push(FileEntry {
            path: rel,
            size: data.len() as u64,
            sha256: sha256_hex(&data),
        });
        payload.extend_from_slice(&data);
    }
    let manifest = Manifest {
        format: FORMAT,
        version,
        created,
        files,
    };
    let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let mut out = Vec::with_capacity(HEADER_LEN + manifest.len() + payload.len() + SIGNATURE_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(&manifest);
    out.extend_from_slice(&payload);
    let signature = key.sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    Ok(out)
}

/// Why `picket bundle sign` did not sign.
#[derive(Debug)]
pub enum PackError {
    Policy(PolicyError),
    Io(PathBuf, std::io::Error),
    Path(String),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy(e) => write!(
                f,
                "the policy does not load, so it is not signed (fix it; `picket check` shows the same):\n{e}"
            ),
            Self::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            Self::Path(p) => write!(
                f,
                "list file {p:?} is outside the policy directory: a bundle carries only files under it; move the list into the directory"
            ),
        }
    }
}

impl std::error::Error for PackError {}

/// A fresh signing key from the operating system's random source.
pub fn generate_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// The key file's text: the 32-byte Ed25519 seed in base64, one line.
pub fn key_file_text(key: &SigningKey) -> String {
    format!("{}\n", b64().encode(key.to_bytes()))
}

/// Why a signing key file or a `--policy-key` could not be read; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {}: {error} (make one with `picket keygen FILE`)", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a Picket signing key (32 bytes in base64, as `picket keygen` writes)", path.display())]
    NotASigningKey { path: PathBuf },
    /// A file named as the public key that does not hold one.
    #[error(
        "{0} does not hold an Ed25519 public key in base64 (the last line `picket keygen` prints)"
    )]
    NotAPublicKeyFile(String),
    #[error(
        "`{0}` is neither an Ed25519 public key in base64 (the last line `picket keygen` \
         prints) nor a file holding one"
    )]
    NotAPublicKey(String),
}

/// Reads a key file written by [`key_file_text`].
pub fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Unreadable {
        path: path.to_path_buf(),
        error,
    })?;
    let seed: [u8; 32] = b64()
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::NotASigningKey {
            path: path.to_path_buf(),
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key in base64, as `--policy-key` takes it.
pub fn public_key_text(key: &VerifyingKey) -> String {
    b64().encode(key.to_bytes())
}

/// A `--policy-key` value: the base64 public key, or a file holding it.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let decode = |s: &str| -> Option<VerifyingKey> {
        let bytes: [u8; 32] = b64().decode(s.trim()).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    };
    if let Some(key) = decode(text) {
        return Ok(key);
    }
    match std::fs::read_to_string(text) {
        Ok(content) => decode(&content).ok_or_else(|| KeyError::NotAPublicKeyFile(text.to_owned())),
        Err(_) => Err(KeyError::NotAPublicKey(text.to_owned())),
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_dir(tag: &str) -> PathBuf {
        let d = crate::testing::fresh_dir(&format!("bundle-{tag}"));
        std::fs::create_dir_all(d.join("lists")).unwrap();
        std::fs::write(
            d.join("p.json"),
            r#"{"global":{"lists":{"bad":{"file":"lists/bad.txt"}},
                "rules":[{"id":"b","expression":"list.bad","action":"block"}]}}"#,
        )
        .unwrap();
        std::fs::write(d.join("lists/bad.txt"), "bad.example\n").unwrap();
        std::fs::write(d.join("notes.txt"), "not named by any policy\n").unwrap();
        d
    }

    #[test]
    fn a_signed_bundle_opens_with_its_key_and_nothing_else() {
        let dir = policy_dir("roundtrip");
        let key = generate_key();
        let bytes = pack(&dir, &key, 7, 1_700_000_000).unwrap();
        let bundle = Bundle::open(&bytes, &key.verifying_key(), 1 << 20).unwrap();
        assert_eq!(bundle.manifest.version, 7);
        let names: Vec<&str> = bundle.files().map(|(p, _)| p).collect();
        assert_eq!(names, ["lists/bad.txt", "p.json"], "only named files");
        let policy = bundle.load(&LoadOptions::default()).unwrap();
        assert_eq!(policy.stats().list_entries, 1);

        let other = generate_key();
        assert_eq!(
            Bundle::open(&bytes, &other.verifying_key(), 1 << 20).unwrap_err(),
            BundleError::BadSignature
        );
        // Every single flipped byte is caught, whatever it hits.
        for at in [0, 9, HEADER_LEN + 3, bytes.len() - 70, bytes.len() - 1] {
            let mut t = bytes.clone();
            t[at] ^= 1;
            assert!(
                Bundle::open(&t, &key.verifying_key(), 1 << 20).is_err(),
                "{at}"
            );
        }
        // Cut short anywhere: refused.
        for len in [0, 5, HEADER_LEN + 10, bytes.len() - 1] {
            assert!(Bundle::open(&bytes[..len], &key.verifying_key(), 1 << 20).is_err());
        }
        assert!(matches!(
            Bundle::open(&bytes, &key.verifying_key(), 100),
            Err(BundleError::TooLarge { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_policy_is_not_signed() {
        let dir = policy_dir("broken");
        std::fs::write(dir.join("lists/bad.txt"), "").unwrap();
        std::fs::remove_file(dir.join("lists/bad.txt")).unwrap();
        let err = pack(&dir, &generate_key(), 1, 0).unwrap_err().to_string();
        assert!(err.contains("bad.txt"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let key = generate_key();
        let dir = policy_dir("key");
        let path = dir.join("k");
        std::fs::write(&path, key_file_text(&key)).unwrap();
        assert_eq!(read_key_file(&path).unwrap().to_bytes(), key.to_bytes());
        let public = public_key_text(&key.verifying_key());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
        assert!(parse_public_key("nope").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
