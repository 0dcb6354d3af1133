//! The last good download of every `"url"` list, shared by the loader (which reads lists from
//! here, never from the network) and the refresher in `src/fleet.rs` (which downloads, off the
//! query path, and asks for a reload when a list changed).
//!
//! A download is streamed into a file as it arrives and hashed on the way, and the loader reads
//! it back line by line as it reads list files, so neither a download nor the last good copy is
//! ever held in memory: a refresh of a 1M-domain list costs the new table beside the old one,
//! as a reload of a changed list file does. With `--state-dir`, the file is
//! `lists/<sha256 of the URL>.list` (its ETag beside it), so a restart while a feed server is
//! down loads the last good copy; without it, an unnamed temporary file (created and unlinked
//! at once, so nothing is left behind).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One list as last downloaded.
#[derive(Debug)]
pub struct Downloaded {
    /// The body, open for reading (positioned reads: any number of readers at once). The open
    /// handle, not a path, so a newer download renamed over the file does not change what a
    /// reader stamped with this digest reads.
    file: Arc<File>,
    /// SHA-256 of the body: equal digests share the loaded list across reloads.
    pub digest: [u8; 32],
    pub etag: Option<String>,
}

impl Downloaded {
    /// The body from its first byte (wrap it in a `BufReader`).
    pub fn reader(&self) -> impl Read {
        BodyReader {
            file: Arc::clone(&self.file),
            offset: 0,
        }
    }
}

/// Reads a shared file from its own offset.
struct BodyReader {
    file: Arc<File>,
    offset: u64,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// A download on its way to disk ([`RemoteLists::begin`]): written, hashed, and kept by
/// [`RemoteLists::keep`]. Dropped without being kept (a failed or cut-off download), its
/// partial file is removed and the last good copy stays.
pub struct Incoming {
    file: File,
    hash: ring::digest::Context,
    /// With `--state-dir`: the partial file, renamed over the last good copy when kept.
    partial: Option<PathBuf>,
}

impl Write for Incoming {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(partial) = self.partial.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
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

/// SHA-256 of a file, read through a small buffer.
fn digest_of(mut file: impl Read) -> std::io::Result<[u8; 32]> {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(finish(hash))
}

fn finish(hash: ring::digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}

/// Distinguishes the unnamed temporary files of one process.
static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

impl RemoteLists {
    /// Downloads kept under `state_dir/lists/` when given, else in unnamed temporary files.
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
        let file = File::open(list).ok()?;
        let digest = digest_of(BodyReader {
            file: Arc::new(file.try_clone().ok()?),
            offset: 0,
        })
        .ok()?;
        let etag = std::fs::read_to_string(etag).ok().filter(|e| !e.is_empty());
        let d = Arc::new(Downloaded {
            file: Arc::new(file),
            digest,
            etag,
        });
        lists.insert(url.to_owned(), d.clone());
        Some(d)
    }

    /// A file for a new download of `url` to be written into: beside the last good copy in
    /// the state directory, else an unnamed temporary file.
    pub fn begin(&self, url: &str) -> std::io::Result<Incoming> {
        let hash = ring::digest::Context::new(&ring::digest::SHA256);
        let read_write = || {
            let mut o = OpenOptions::new();
            o.read(true).write(true).create(true).truncate(true);
            o
        };
        if let Some((list, _)) = self.paths(url) {
            if let Some(dir) = list.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let partial = list.with_extension("partial");
            let file = read_write().open(&partial)?;
            return Ok(Incoming {
                file,
                hash,
                partial: Some(partial),
            });
        }
        let n = TEMP_FILES.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("picket-list-{}-{n}", std::process::id()));
        let file = read_write().create_new(true).open(&path)?;
        // Unlinked at once: the open handle is all that is needed, and nothing outlives us.
        std::fs::remove_file(&path)?;
        Ok(Incoming {
            file,
            hash,
            partial: None,
        })
    }

    /// Keeps a complete download of `url` as its last good copy; returns whether its content
    /// differs from the one before.
    pub fn keep(
        &self,
        url: &str,
        mut incoming: Incoming,
        etag: Option<String>,
    ) -> std::io::Result<bool> {
        incoming.file.flush()?;
        let digest = finish(incoming.hash.clone());
        // Before the new file replaces the old one, which `get` would otherwise read.
        let changed = self.get(url).is_none_or(|old| old.digest != digest);
        if incoming.partial.is_some() {
            // On disk before it replaces the last good copy (an error leaves the partial file
            // to `Drop`).
            incoming.file.sync_all()?;
        }
        // A partial file exists only with a state dir, so both are there or neither.
        if let (Some(partial), Some((list, etag_path))) = (incoming.partial.take(), self.paths(url))
        {
            let installed = std::fs::rename(&partial, &list).and_then(|()| {
                crate::fleet::write_atomically(&etag_path, etag.as_deref().unwrap_or("").as_bytes())
            });
            if let Err(e) = installed {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        }
        let file = incoming.file.try_clone()?;
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                url.to_owned(),
                Arc::new(Downloaded {
                    file: Arc::new(file),
                    digest,
                    etag,
                }),
            );
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    const URL: &str = "https://feeds.example/ads.txt";

    fn download(remote: &RemoteLists, body: &[u8], etag: &str) -> bool {
        let mut incoming = remote.begin(URL).unwrap();
        // In pieces, as the body arrives.
        for piece in body.chunks(7) {
            incoming.write_all(piece).unwrap();
        }
        remote.keep(URL, incoming, Some(etag.into())).unwrap()
    }

    fn lines(d: &Downloaded) -> Vec<String> {
        std::io::BufReader::new(d.reader())
            .lines()
            .map(Result::unwrap)
            .collect()
    }

    fn state_dir(tag: &str) -> PathBuf {
        crate::testing::fresh_path(&format!("remote-{tag}"))
    }

    /// A state dir holding one download of `URL`: `a.example`, ETag "v1".
    fn with_a_download(tag: &str) -> (PathBuf, RemoteLists) {
        let dir = state_dir(tag);
        let remote = RemoteLists::new(Some(dir.clone()));
        assert!(download(&remote, b"a.example\n", "\"v1\""));
        (dir, remote)
    }

    #[test]
    fn a_download_is_kept_in_the_state_dir_read_back_and_found_after_a_restart() {
        let dir = state_dir("kept");
        let remote = RemoteLists::new(Some(dir.clone()));
        assert!(download(&remote, b"a.example\nb.example\n", "\"v1\""));
        let d = remote.get(URL).unwrap();
        assert_eq!(lines(&d), ["a.example", "b.example"]);
        // Two readers at once each read from the start.
        let (mut r1, mut r2) = (d.reader(), d.reader());
        let (mut b1, mut b2) = ([0u8; 4], [0u8; 4]);
        r1.read_exact(&mut b1).unwrap();
        r2.read_exact(&mut b2).unwrap();
        assert_eq!((&b1, &b2), (b"a.ex", b"a.ex"));

        let restarted = RemoteLists::new(Some(dir.clone()));
        let again = restarted.get(URL).expect("loaded from --state-dir");
        assert_eq!(again.digest, d.digest);
        assert_eq!(again.etag.as_deref(), Some("\"v1\""));
        assert_eq!(lines(&again), ["a.example", "b.example"]);
        let files: Vec<_> = std::fs::read_dir(dir.join("lists")).unwrap().collect();
        assert_eq!(
            files.len(),
            2,
            "the list and its ETag, no partial file: {files:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_same_content_is_unchanged_and_new_content_replaces_it() {
        let (dir, remote) = with_a_download("changed");
        let first = remote.get(URL).unwrap();
        assert!(!download(&remote, b"a.example\n", "\"v2\""), "same bytes");
        assert_eq!(remote.get(URL).unwrap().digest, first.digest);
        assert!(download(&remote, b"c.example\n", "\"v3\""));
        assert_eq!(lines(&remote.get(URL).unwrap()), ["c.example"]);
        // A reader of the older download still reads what it was stamped with.
        assert_eq!(lines(&first), ["a.example"]);
        // A fresh process compares against the copy on disk.
        let restarted = RemoteLists::new(Some(dir.clone()));
        assert!(!download(&restarted, b"c.example\n", "\"v3\""));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_abandoned_download_leaves_the_last_good_copy_and_no_partial_file() {
        let (dir, remote) = with_a_download("abandoned");
        let mut incoming = remote.begin(URL).unwrap();
        incoming.write_all(b"cut.exa").unwrap();
        drop(incoming); // cut off, too large or failed: never kept
        assert_eq!(lines(&remote.get(URL).unwrap()), ["a.example"]);
        let restarted = RemoteLists::new(Some(dir.clone()));
        assert_eq!(lines(&restarted.get(URL).unwrap()), ["a.example"]);
        assert_eq!(std::fs::read_dir(dir.join("lists")).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn without_a_state_dir_the_download_is_an_unnamed_file() {
        let remote = RemoteLists::new(None);
        let prefix = format!("picket-list-{}-", std::process::id());
        assert!(download(&remote, b"a.example\n", "\"v1\""));
        assert_eq!(lines(&remote.get(URL).unwrap()), ["a.example"]);
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert_eq!(left, 0, "nothing named in the temporary directory");
        assert!(
            RemoteLists::new(None).get(URL).is_none(),
            "nothing kept across processes"
        );
    }
}
