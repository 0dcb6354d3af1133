//! The last good download of every `"url"` list, shared by the loader (which reads lists from
//! here, never from the network) and the refresher in `src/fleet.rs` (which downloads, off the
//! query path, and asks for a reload when a list changed).
//!
//! With `--state-dir`, each download is also kept there (`lists/<sha256 of the URL>.list`,
//! its ETag beside it), so a restart while a feed server is down loads the last good copy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One list as last downloaded.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: equal digests share the loaded list across reloads.
    pub digest: [u8; 32],
    pub etag: Option<String>,
}

/// Results of one list download, the `result` label of `picket_list_fetch_total`.
pub const FETCH_RESULTS: [&str; 5] = [
    // New content: the policy is reloaded with it.
    "updated",
    // 200 with the same bytes as before.
    "unchanged",
    // 304.
    "not_modified",
    // No usable answer (network, TLS, HTTP status, timeout, cut short): the old list stays.
    "fetch_failed",
    // Over Limits::max_list_download_bytes: cut off, the old list stays.
    "too_large",
];

/// Downloads by URL.
#[derive(Debug, Default)]
pub struct RemoteLists {
    state_dir: Option<PathBuf>,
    lists: Mutex<HashMap<String, Arc<Downloaded>>>,
    fetches: [AtomicU64; FETCH_RESULTS.len()],
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl RemoteLists {
    /// Kept in memory, and under `state_dir/lists/` when given.
    pub fn new(state_dir: Option<PathBuf>) -> RemoteLists {
        RemoteLists {
            state_dir,
            ..RemoteLists::default()
        }
    }

    /// Counts a download's result (one of [`FETCH_RESULTS`]).
    pub fn record(&self, result: &str) {
        if let Some(i) = FETCH_RESULTS.iter().position(|r| *r == result) {
            self.fetches[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Downloads that ended with `result`.
    pub fn count(&self, result: &str) -> u64 {
        FETCH_RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.fetches[i].load(Ordering::Relaxed))
    }

    fn paths(&self, url: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.state_dir.as_ref()?.join("lists");
        let name = super::bundle::sha256_hex(url.as_bytes());
        Some((
            dir.join(format!("{name}.list")),
            dir.join(format!("{name}.etag")),
        ))
    }

    /// The last good download of `url`: from memory, else from the state directory.
    pub fn get(&self, url: &str) -> Option<Arc<Downloaded>> {
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = lists.get(url) {
            return Some(d.clone());
        }
        let (list, etag) = self.paths(url)?;
        let bytes = std::fs::read(list).ok()?;
        let etag = std::fs::read_to_string(etag).ok().filter(|e| !e.is_empty());
        let d = Arc::new(Downloaded {
            digest: digest(&bytes),
            bytes,
            etag,
        });
        lists.insert(url.to_owned(), d.clone());
        Some(d)
    }

    /// Keeps a new download of `url`; returns whether it differs from the one before.
    pub fn put(&self, url: &str, bytes: Vec<u8>, etag: Option<String>) -> bool {
        let d = Downloaded {
            digest: digest(&bytes),
            bytes,
            etag,
        };
        let changed = self.get(url).is_none_or(|old| old.digest != d.digest);
        if let Some((list, etag_path)) = self.paths(url) {
            let saved = crate::fleet::write_atomically(&list, &d.bytes).and_then(|()| {
                crate::fleet::write_atomically(
                    &etag_path,
                    d.etag.as_deref().unwrap_or("").as_bytes(),
                )
            });
            if let Err(e) = saved {
                tracing::error!(%url, file = %list.display(), error = %e, "cannot keep the list download in --state-dir");
            }
        }
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.to_owned(), Arc::new(d));
        changed
    }
}
