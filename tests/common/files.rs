//! Scratch directories for tests that write policies, lists or logs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh empty directory under the system's temporary directory, its name
/// starting `picket-{tag}-` and unique to this process and call (a directory
/// left by an earlier process with the same id is emptied).
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "picket-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh directory holding `files` (name relative to it, text); the
/// directories a name needs are made.
pub fn dir_with(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(tag);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// A fresh directory holding one policy file, `p.json`, with `json` in it.
pub fn policy_file_dir(tag: &str, json: &str) -> PathBuf {
    dir_with(tag, &[("p.json", json)])
}
