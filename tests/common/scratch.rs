//! The scratch directory of one test process: every directory a test makes
//! for its files goes under it, and it is removed when the process exits,
//! so that repeated `cargo test` runs do not fill the temporary directory.
//! A process killed before its exit (a timeout) leaves its own behind; the
//! next test process removes those of processes that no longer run.
//!
//! Shared by the integration tests (`tests/common/files.rs`) and the
//! library's unit tests (`src/testing.rs`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of each process's directory: this, then its process id.
const PREFIX: &str = "picket-tests-";

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// `picket-tests-{pid}` under the system's temporary directory, made on
/// first use and removed at the process's exit.
pub fn root() -> &'static Path {
    ROOT.get_or_init(|| {
        remove_those_of_finished_processes();
        let root = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // SAFETY: `remove_root` takes nothing, returns nothing and does not
        // unwind (its errors are ignored), as `atexit` requires.
        unsafe { libc::atexit(remove_root) };
        root
    })
}

/// Run by `exit` once the test harness returns (whatever the tests' outcome).
extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Removes the scratch directories whose process no longer runs.
fn remove_those_of_finished_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
