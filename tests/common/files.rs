//! Scratch directories for tests that write policies, lists or logs, all
//! under the process's own one (`scratch`), removed when the tests end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "scratch.rs"]
mod scratch;

/// A fresh empty directory in this process's scratch directory, its name
/// starting `{tag}-` and unique to this call.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch::root().join(format!("{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
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
