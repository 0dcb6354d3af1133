//! Helpers the library's unit tests share (the integration tests have theirs in `tests/common`).

use std::path::PathBuf;

use hickory_proto::rr::Name;

/// `s` as a DNS name; panics on a malformed one (tests write their names by hand).
pub(crate) fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[path = "../tests/common/scratch.rs"]
mod scratch;

/// A path `{tag}` in this test process's scratch directory (removed when the tests end) with
/// nothing there (whatever an earlier test with this tag left is removed).
pub(crate) fn fresh_path(tag: &str) -> PathBuf {
    let path = scratch::root().join(tag);
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// [`fresh_path`], made an empty directory.
pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
    let dir = fresh_path(tag);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes `text` spells in hexadecimal; panics on anything else (test vectors).
pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Compiles only when `T` may be shared between the runtime's threads.
pub(crate) fn assert_send_sync<T: Send + Sync>() {}
