//! Where list entries come from (list files, embedded files, inline arrays, `--blocklist`
//! files), how they are read, and when a reload can skip reading them.
//!
//! Two things keep a reload's memory near the steady state:
//!
//! * **Reuse.** Every source is stamped before it is read: a file by its identity and last
//!   change (device, inode, size, mtime, ctime), inline domains by the domains themselves. A
//!   reload whose stamps all equal the policy in force shares that policy's [`LoadedLists`]
//!   (an `Arc`) instead of building a second table beside it. That is the common reload: a
//!   rule edit, a SIGHUP, a policy sync that rewrote only the JSON.
//! * **Streaming.** A list file is read one line at a time through a small buffer, never
//!   whole, so loading a 1M-line list holds the table and nothing the size of the file.
//!
//! A file is stamped before it is read, so a change that lands while it is being read leaves
//! the older stamp behind and the next reload reads the file again.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Issue, IssueKind};
use super::lists::{self, DomainSet, Format, InvalidLine, ListId, LoadCounts};
use super::remote::{Downloaded, RemoteLists};

/// Total samples of invalid list lines kept.
const MAX_SAMPLES: usize = 50;
/// Read buffer for list files.
const READ_BUFFER: usize = 64 * 1024;

/// Where list files named by policies are read from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// Relative to a directory.
    Dir(&'a Path),
    /// From (relative path, content) pairs.
    Memory(&'a [(&'a str, &'a str)]),
}

/// Where a policy declared a list: for messages about it.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub file: PathBuf,
    pub path: String,
}

/// One list's entries, in list-id order (the n-th input is list id n).
#[derive(Debug, Clone)]
pub(crate) enum ListInput {
    /// A file named by a policy, relative to the policy [`Source`].
    File {
        rel: String,
        format: Format,
        declared: Declared,
    },
    /// A `"url"` list: its last good download (`RemoteLists`), empty until there is one.
    Url {
        url: String,
        format: Format,
        declared: Declared,
    },
    /// The `--blocklist` files, as given on the command line: one list.
    Blocklist(Vec<PathBuf>),
    /// Domains written in the policy, already validated and normalised.
    Inline(Vec<Box<[u8]>>),
}

/// What a list source was when it was read; equal stamps mean equal entries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    /// Files on disk: their paths and, when they could be read, identity and last change.
    Files(Vec<(PathBuf, Option<FileStamp>)>),
    /// A file given in memory (embedded, or from a policy bundle): its path and the SHA-256 of
    /// its text, so a bundle that changes a list reloads it and one that does not shares it.
    Embedded(String, [u8; 32]),
    /// Inline domains.
    Inline(Vec<Box<[u8]>>),
    /// A list URL and the SHA-256 of its download (None: none yet).
    Remote(String, Option<[u8; 32]>),
}

impl Stamp {
    fn files(paths: &[PathBuf]) -> Stamp {
        Stamp::Files(
            paths
                .iter()
                .map(|p| (p.clone(), FileStamp::of(p)))
                .collect(),
        )
    }
}

/// A file's identity and last change: equal stamps mean an unchanged file. The one change
/// check of the policy: list reuse on reload and the policy watcher (`app.rs`) both use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// None when the file cannot be read (missing, no permission).
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Every list of a policy, loaded into the one shared suffix table, with what loading them
/// reported. Shared (`Arc`) between a policy and its reloads while no source changes.
#[derive(Debug)]
pub(crate) struct LoadedLists {
    /// Each input's stamp and format (a format change reads the same file differently).
    stamps: Vec<(Stamp, Format)>,
    pub set: DomainSet,
    /// Invalid lines over all list files (skipped, never fatal).
    pub invalid_lines: u64,
    /// Some of them, with file and line.
    pub invalid_samples: Vec<InvalidLine>,
}

impl LoadedLists {
    /// No lists.
    pub(crate) fn empty() -> Arc<LoadedLists> {
        Arc::new(LoadedLists {
            stamps: Vec::new(),
            set: DomainSet::new(),
            invalid_lines: 0,
            invalid_samples: Vec::new(),
        })
    }
}

/// Where an input's text comes from, once resolved.
enum Opened<'a> {
    Paths(Vec<PathBuf>),
    Text(&'a str),
    Inline(&'a [Box<[u8]>]),
    Downloaded(Option<std::sync::Arc<Downloaded>>),
}

impl ListInput {
    /// Resolve the input against the policy source: paths to read, embedded text, or the
    /// inline domains. Err: the issue for an embedded list file that is not there.
    fn open<'a>(
        &'a self,
        source: Source<'a>,
        remote: Option<&RemoteLists>,
    ) -> Result<Opened<'a>, Issue> {
        match (self, source) {
            (ListInput::Inline(d), _) => Ok(Opened::Inline(d)),
            (ListInput::Url { url, .. }, _) => {
                Ok(Opened::Downloaded(remote.and_then(|r| r.get(url))))
            }
            (ListInput::Blocklist(files), _) => Ok(Opened::Paths(files.clone())),
            (ListInput::File { rel, .. }, Source::Dir(dir)) => {
                Ok(Opened::Paths(vec![dir.join(rel)]))
            }
            (ListInput::File { rel, .. }, Source::Memory(files)) => {
                let rel = rel.trim_start_matches("./");
                match files.iter().find(|(name, _)| *name == rel) {
                    Some((_, text)) => Ok(Opened::Text(text)),
                    None => {
                        Err(self
                            .unreadable(None, format!("cannot read list file {rel}: not embedded")))
                    }
                }
            }
        }
    }

    fn format(&self) -> Format {
        match self {
            ListInput::File { format, .. } | ListInput::Url { format, .. } => *format,
            _ => Format::Lines,
        }
    }

    fn stamp(&self, source: Source<'_>, remote: Option<&RemoteLists>) -> Stamp {
        match (self, source) {
            (ListInput::Url { url, .. }, _) => Stamp::Remote(
                url.clone(),
                remote.and_then(|r| r.get(url)).map(|d| d.digest),
            ),
            (ListInput::Inline(d), _) => Stamp::Inline(d.clone()),
            (ListInput::File { rel, .. }, Source::Memory(files)) => {
                let name = rel.trim_start_matches("./");
                let text = files.iter().find(|(n, _)| *n == name).map_or("", |f| f.1);
                let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                let mut hash = [0u8; 32];
                hash.copy_from_slice(digest.as_ref());
                Stamp::Embedded(rel.clone(), hash)
            }
            (ListInput::File { rel, .. }, Source::Dir(dir)) => Stamp::files(&[dir.join(rel)]),
            (ListInput::Blocklist(files), _) => Stamp::files(files),
        }
    }

    /// The issue for a source that cannot be read: a policy's list file is reported where it
    /// was declared, a `--blocklist` file by its own path.
    fn unreadable(&self, path: Option<&Path>, msg: String) -> Issue {
        match self {
            ListInput::File { declared, .. } | ListInput::Url { declared, .. } => Issue::new(
                IssueKind::Unresolved,
                Some(&declared.file),
                format!("{}.file", declared.path),
                msg,
            ),
            _ => Issue::new(IssueKind::Unresolved, path, "", msg),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            ListInput::Blocklist(_) => "blocklist",
            _ => "list file",
        }
    }
}

/// Load every list, or share `previous` when no source changed since it was loaded.
pub(crate) fn load(
    source: Source<'_>,
    inputs: &[ListInput],
    previous: Option<&Arc<LoadedLists>>,
    remote: Option<&RemoteLists>,
) -> Result<Arc<LoadedLists>, Vec<Issue>> {
    let stamps: Vec<(Stamp, Format)> = inputs
        .iter()
        .map(|i| (i.stamp(source, remote), i.format()))
        .collect();
    if let Some(prev) = previous {
        if prev.stamps == stamps {
            return Ok(Arc::clone(prev));
        }
    }
    let mut loaded = LoadedLists {
        stamps,
        set: DomainSet::new(),
        invalid_lines: 0,
        invalid_samples: Vec::new(),
    };
    // One pass to size the table for every entry, so it is allocated once, at its final
    // size, instead of doubling (and copying) while the lists are read.
    let mut lines = 0usize;
    for input in inputs {
        lines += match input.open(source, remote) {
            Ok(Opened::Paths(paths)) => paths
                .iter()
                .map(|p| File::open(p).and_then(count_lines).unwrap_or(0))
                .sum(),
            Ok(Opened::Text(t)) => t.bytes().filter(|&b| b == b'\n').count() + 1,
            Ok(Opened::Downloaded(Some(d))) => count_lines(d.reader()).unwrap_or(0),
            Ok(Opened::Downloaded(None)) => 0,
            Ok(Opened::Inline(d)) => d.len(),
            Err(_) => 0,
        };
    }
    loaded.set.reserve(lines);
    let mut issues = Vec::new();
    for input in inputs {
        let id = loaded.set.new_list();
        let mut counts = LoadCounts::default();
        read_into(
            &mut loaded.set,
            id,
            input,
            (source, remote),
            &mut counts,
            &mut issues,
        );
        loaded.invalid_lines += counts.invalid;
        let room = MAX_SAMPLES.saturating_sub(loaded.invalid_samples.len());
        loaded
            .invalid_samples
            .extend(counts.samples.into_iter().take(room));
    }
    if issues.is_empty() {
        Ok(Arc::new(loaded))
    } else {
        Err(issues)
    }
}

/// The issues of the sources that cannot be read, without reading any (for a policy that
/// failed before its lists were loaded: every problem is still reported at once).
pub(crate) fn unreadable(source: Source<'_>, inputs: &[ListInput]) -> Vec<Issue> {
    let mut issues = Vec::new();
    for input in inputs {
        match input.open(source, None) {
            Ok(Opened::Paths(paths)) => {
                for p in paths {
                    if let Err(e) = File::open(&p) {
                        let msg = format!("cannot read {} {}: {e}", input.what(), p.display());
                        issues.push(input.unreadable(Some(&p), msg));
                    }
                }
            }
            Ok(_) => {}
            Err(issue) => issues.push(issue),
        }
    }
    issues
}

fn read_into(
    set: &mut DomainSet,
    id: ListId,
    input: &ListInput,
    (source, remote): (Source<'_>, Option<&RemoteLists>),
    counts: &mut LoadCounts,
    issues: &mut Vec<Issue>,
) {
    let format = input.format();
    match input.open(source, remote) {
        // Not downloaded yet: empty until the refresher brings it (and reloads).
        Ok(Opened::Downloaded(None)) => {}
        Ok(Opened::Downloaded(Some(d))) => {
            let ListInput::Url { url, .. } = input else {
                return;
            };
            // Streamed from the download's file, as a list file is.
            let reader = BufReader::with_capacity(READ_BUFFER, d.reader());
            if let Err(e) = lists::load_lines(set, id, reader, Path::new(url), format, counts) {
                let msg = format!("cannot read the download of list {url}: {e}");
                issues.push(input.unreadable(None, msg));
            }
        }
        Err(issue) => issues.push(issue),
        Ok(Opened::Inline(domains)) => {
            for d in domains {
                set.insert(d, id);
            }
        }
        Ok(Opened::Text(text)) => {
            let name = match input {
                ListInput::File { rel, .. } => Path::new(rel.as_str()),
                _ => Path::new(""),
            };
            // Reading from memory cannot fail.
            let _ = lists::load_lines(set, id, text.as_bytes(), name, format, counts);
        }
        Ok(Opened::Paths(paths)) => {
            for path in paths {
                let read = File::open(&path).and_then(|file| {
                    let reader = BufReader::with_capacity(READ_BUFFER, file);
                    lists::load_lines(set, id, reader, &path, format, counts)
                });
                if let Err(e) = read {
                    let msg = format!("cannot read {} {}: {e}", input.what(), path.display());
                    issues.push(input.unreadable(Some(&path), msg));
                }
            }
        }
    }
}

/// Lines in a file, read through a small buffer.
fn count_lines(mut file: impl Read) -> std::io::Result<usize> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut lines = 1;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(lines),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_input(rel: &str) -> ListInput {
        ListInput::File {
            rel: rel.into(),
            format: Format::Lines,
            declared: Declared {
                file: "p.json".into(),
                path: "global.lists.l".into(),
            },
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        crate::testing::fresh_dir(&format!("sources-{tag}"))
    }

    #[test]
    fn unchanged_sources_share_the_loaded_lists_and_a_change_reloads() {
        let dir = temp_dir("reuse");
        std::fs::write(dir.join("a.txt"), "a.example\nbad..line\n").unwrap();
        let inputs = vec![
            file_input("a.txt"),
            ListInput::Inline(vec![b"i.example".to_vec().into()]),
        ];
        let first = load(Source::Dir(&dir), &inputs, None, None).unwrap();
        assert_eq!(first.set.len(), 2);
        assert_eq!(first.invalid_lines, 1);
        let again = load(Source::Dir(&dir), &inputs, Some(&first), None).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "nothing changed: shared");

        // Same size, new content: the stamp (mtime/ctime) still tells.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("a.txt"), "b.example\nbad..line\n").unwrap();
        let changed = load(Source::Dir(&dir), &inputs, Some(&again), None).unwrap();
        assert!(!Arc::ptr_eq(&again, &changed));
        assert_eq!(changed.set.lists_of(b"b.example").len(), 1);
        assert!(changed.set.lists_of(b"a.example").is_empty());

        // Different inline domains: reloaded too.
        let inputs2 = vec![
            file_input("a.txt"),
            ListInput::Inline(vec![b"j.example".to_vec().into()]),
        ];
        let inline = load(Source::Dir(&dir), &inputs2, Some(&changed), None).unwrap();
        assert!(!Arc::ptr_eq(&changed, &inline));
        assert_eq!(
            inline.set.lists_of(b"j.example"),
            vec![("j.example".into(), 1)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_names_where_it_was_declared() {
        let dir = temp_dir("missing");
        let err = load(Source::Dir(&dir), &[file_input("nope.txt")], None, None).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "global.lists.l.file");
        assert!(err[0].message.contains("nope.txt"), "{}", err[0].message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_url_list_is_read_from_its_download_and_shared_until_it_changes() {
        use std::io::Write;
        let url = "https://feeds.example/big.txt";
        let input = vec![ListInput::Url {
            url: url.into(),
            format: Format::Lines,
            declared: Declared {
                file: "p.json".into(),
                path: "global.lists.feed".into(),
            },
        }];
        let remote = RemoteLists::new(None);
        let source = Source::Memory(&[]);
        let none = load(source, &input, None, Some(&remote)).unwrap();
        assert_eq!(none.set.len(), 0, "not downloaded yet: empty");

        // Bigger than the read buffer, so the list is read in several pieces.
        let keep = |body: &str| {
            let mut incoming = remote.begin(url).unwrap();
            incoming.write_all(body.as_bytes()).unwrap();
            remote.keep(url, incoming, None).unwrap()
        };
        let body: String = (0..20_000).map(|i| format!("d{i}.example\n")).collect();
        assert!(body.len() > READ_BUFFER);
        assert!(keep(&body));
        let first = load(source, &input, Some(&none), Some(&remote)).unwrap();
        assert_eq!(first.set.len(), 20_000);
        assert_eq!(first.set.lists_of(b"d19999.example").len(), 1);

        assert!(!keep(&body), "same bytes");
        let same = load(source, &input, Some(&first), Some(&remote)).unwrap();
        assert!(Arc::ptr_eq(&first, &same), "unchanged download: shared");

        assert!(keep("new.example\n"));
        let changed = load(source, &input, Some(&same), Some(&remote)).unwrap();
        assert_eq!(changed.set.len(), 1);
        assert!(changed.set.lists_of(b"d1.example").is_empty());
    }

    #[test]
    fn lines_are_counted_across_buffer_boundaries() {
        let dir = temp_dir("count");
        let text = "x.example\n".repeat(READ_BUFFER / 5);
        std::fs::write(dir.join("c.txt"), &text).unwrap();
        assert_eq!(
            count_lines(File::open(dir.join("c.txt")).unwrap()).unwrap(),
            READ_BUFFER / 5 + 1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
