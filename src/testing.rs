//! Helpers the library's unit tests share (the integration tests have theirs in `tests/common`).

use std::path::PathBuf;

use hickory_proto::rr::Name;

/// `s` as a DNS name; panics on a malformed one (tests write their names by hand).
pub(crate) fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// An empty directory `picket-{tag}-{pid}` under the system's temporary directory, made anew
/// (whatever an earlier run left there is removed first).
pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("picket-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles only when `T` may be shared between the runtime's threads.
pub(crate) fn assert_send_sync<T: Send + Sync>() {}
