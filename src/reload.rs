//! The one place policy reloads run: the `picket-reload` thread.
//!
//! Everything that wants the policy loaded again asks [`Reloader::request`] and goes back to
//! its own work: SIGHUP (`cli.rs`), the policy watcher (a changed policy or list file,
//! `app.rs`) and the list refresher (a downloaded `url` list changed, `fleet.rs`). So no
//! signal handler, watcher, download or query ever waits for a load (a 1M-domain list takes a
//! while), requests made while a reload runs make one reload after it whatever asked for them,
//! and two reloads never run side by side.
//!
//! One thread also keeps a reload's memory near a file reload's: glibc gives each thread a malloc
//! arena of its own, and a table built on a thread other than the one that built the table it
//! replaces cannot reuse the space that one frees. Refreshing a 1M-domain `url` list on the
//! refresher's own thread peaked 5 MiB higher than a reload of the same list file
//! (`benches/reload_rss.sh`).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use anyhow::{Context, Result};

use crate::config::limits::MAP_APART_BYTES;
use crate::listener::tls::Tls;
use crate::pipeline::Shared;

/// What asks for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// SIGHUP: the query log is reopened and the TLS certificate read again too.
    Sighup,
    /// A policy file or list file changed (the policy watcher).
    FilesChanged,
    /// A downloaded `url` list changed (the list refresher).
    ListDownloaded,
    /// `Server::reload_policy`, a call from the library's user.
    Call,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::Sighup,
        Reason::FilesChanged,
        Reason::ListDownloaded,
        Reason::Call,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn name(self) -> &'static str {
        match self {
            Reason::Sighup => "SIGHUP",
            Reason::FilesChanged => "files changed",
            Reason::ListDownloaded => "list downloaded",
            Reason::Call => "call",
        }
    }
}

/// The reasons of the requests one reload answers (those that waited together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested(u8);

impl Requested {
    pub fn contains(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    fn add(&mut self, reason: Reason) {
        self.0 |= reason.bit();
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<Reason> for Requested {
    fn from(reason: Reason) -> Self {
        Requested(reason.bit())
    }
}

/// The reasons joined with ", " (the `requested_by` field of the `policy reloaded` log line).
impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Reason::ALL
            .into_iter()
            .filter(|r| self.contains(*r))
            .map(Reason::name)
            .collect();
        f.write_str(&names.join(", "))
    }
}

#[derive(Default)]
struct Pending {
    requested: Requested,
    closed: bool,
}

/// Hands reloads to the `picket-reload` thread; cloned by everyone who asks for them.
#[derive(Clone)]
pub struct Reloader {
    pending: Arc<(Mutex<Pending>, Condvar)>,
}

impl Reloader {
    /// Starts the thread; `reload` runs once per batch of requests, with their reasons. The
    /// thread is detached: a stop never waits for a reload to finish ([`Reloader::close`]).
    pub fn spawn(reload: impl Fn(Requested) + Send + 'static) -> Result<Self> {
        let pending = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let waiting = pending.clone();
        std::thread::Builder::new()
            .name("picket-reload".into())
            .spawn(move || {
                while let Some(requested) = wait_for_requests(&waiting) {
                    reload(requested);
                }
            })
            .context("cannot start the reload thread")?;
        Ok(Self { pending })
    }

    /// The reload thread of a server: SIGHUP also reopens the query log and reads the TLS
    /// certificate and the cookie secrets again; every reason reloads the policy.
    pub fn for_server(shared: Arc<Shared>, tls: Option<Arc<Tls>>) -> Result<Self> {
        Self::spawn(move |requested| {
            if requested.contains(Reason::Sighup) {
                shared.observer.reopen_log();
                if let Some(tls) = &tls {
                    reload_tls(&shared, tls);
                }
                reload_cookie_secrets(&shared);
            }
            reload_and_log(&shared, requested);
        })
    }

    /// Asks for a reload and returns at once.
    pub fn request(&self, reason: Reason) {
        let (pending, wake) = &*self.pending;
        pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requested
            .add(reason);
        wake.notify_one();
    }

    /// Ends the thread once the reload under way, if any, is done; later requests do nothing.
    pub fn close(&self) {
        let (pending, wake) = &*self.pending;
        pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        wake.notify_one();
    }
}

/// Blocks until a reload is requested, and takes the requests made until then (they make one
/// reload); None once closed.
fn wait_for_requests(pending: &(Mutex<Pending>, Condvar)) -> Option<Requested> {
    let (pending, wake) = pending;
    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
    while pending.requested.is_empty() && !pending.closed {
        pending = wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
    }
    if pending.closed {
        return None;
    }
    Some(std::mem::take(&mut pending.requested))
}

/// Reloads the policy and logs the result, with what asked for it.
pub fn reload_and_log(shared: &Shared, requested: Requested) {
    match shared.reload_policy() {
        Ok(r) => {
            tracing::info!(
                version = r.version,
                lists_reused = r.lists_reused,
                took_ms = r.took.as_millis() as u64,
                requested_by = %requested,
                "policy reloaded"
            );
            // Shared lists were reported when they were read.
            crate::app::log_policy(&shared.policy.load(), !r.lists_reused);
        }
        Err(e) => {
            tracing::error!(error = %e, requested_by = %requested, "policy reload failed: keeping the last good policy")
        }
    }
}

/// Makes the allocator give each block of [`MAP_APART_BYTES`] or more (a list's table) a
/// mapping of its own, so the table a reload replaces goes back to the system when it is freed
/// instead of staying in a malloc arena beside the next one (see the constant). Called at start,
/// before the first policy is loaded. An operator's own `MALLOC_MMAP_THRESHOLD_` is left in force.
/// It is glibc's setting: in a binary built with `--features mimalloc` Rust's allocations go to
/// mimalloc, which gives a block this large pages of its own and returns them after its purge
/// delay (benches/README.md, *Fifth round*), and the setting then covers only what C code
/// allocates.
pub fn map_large_blocks_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
            return;
        }
        let bytes = libc::c_int::try_from(MAP_APART_BYTES).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt sets one of glibc malloc's parameters; it takes no pointer.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) } != 1 {
            tracing::warn!(
                bytes,
                "malloc refused a fixed mmap threshold: a reload may peak higher"
            );
        }
    }
}

fn reload_cookie_secrets(shared: &Shared) {
    match shared.reload_cookie_secrets() {
        Ok(None) => {}
        Ok(Some(secrets)) => tracing::info!(secrets, "SIGHUP: cookie secrets reloaded"),
        Err(error) => tracing::error!(
            %error,
            "SIGHUP: cookie secrets not reloaded, keeping the ones in use"
        ),
    }
}

fn reload_tls(shared: &Shared, tls: &Tls) {
    match crate::app::reload_certificate(shared, tls) {
        Ok(()) if tls.is_self_signed() => {
            tracing::info!("SIGHUP: the self-signed TLS certificate stays (no files to read)")
        }
        Ok(()) => tracing::info!(sha256 = %tls.fingerprint(), "SIGHUP: TLS certificate reloaded"),
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "SIGHUP: TLS certificate not reloaded, keeping the old one"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A reloader whose reloads report their reasons and thread on `started`, then wait for a
    /// message on `finish`; `runs` counts them.
    struct Gated {
        reloader: Reloader,
        started: mpsc::Receiver<(Requested, Option<String>)>,
        finish: mpsc::Sender<()>,
        runs: Arc<AtomicUsize>,
    }

    fn gated() -> Gated {
        let runs = Arc::new(AtomicUsize::new(0));
        let (started, reload_started) = mpsc::channel();
        let (finish, may_finish) = mpsc::channel::<()>();
        let may_finish = Mutex::new(may_finish);
        let counted = runs.clone();
        let reloader = Reloader::spawn(move |requested| {
            counted.fetch_add(1, Ordering::SeqCst);
            let thread = std::thread::current().name().map(str::to_owned);
            started.send((requested, thread)).unwrap();
            let _ = may_finish.lock().unwrap().recv();
        })
        .unwrap();
        Gated {
            reloader,
            started: reload_started,
            finish,
            runs,
        }
    }

    impl Gated {
        /// No reload starts any more, and `runs` ran in all.
        fn assert_no_more_than(&self, runs: usize) {
            let more = self.started.recv_timeout(Duration::from_millis(300));
            assert!(more.is_err(), "one reload too many: {more:?}");
            assert_eq!(self.runs.load(Ordering::SeqCst), runs);
        }
    }

    /// Requests made while a reload runs make one reload after it, not one each.
    #[test]
    fn reload_requests_during_a_reload_coalesce_into_one() {
        let g = gated();
        g.reloader.request(Reason::Sighup);
        g.started.recv().unwrap();
        for _ in 0..5 {
            g.reloader.request(Reason::Sighup);
        }
        g.finish.send(()).unwrap();
        g.started
            .recv()
            .expect("one more reload for the five requests");
        g.finish.send(()).unwrap();
        g.assert_no_more_than(2);
    }

    /// A list download, a file change and a SIGHUP asked for from their own threads while a
    /// reload runs make one reload after it, on the reload thread, which knows all three
    /// (so it reopens the query log, as the SIGHUP asked).
    #[test]
    fn downloads_file_changes_and_sighup_reload_together_on_the_reload_thread() {
        let g = gated();
        g.reloader.request(Reason::FilesChanged);
        let (first, thread) = g.started.recv().unwrap();
        assert_eq!(first, Requested::from(Reason::FilesChanged));
        assert_eq!(thread.as_deref(), Some("picket-reload"));
        let askers: Vec<_> = [Reason::ListDownloaded, Reason::Sighup, Reason::FilesChanged]
            .into_iter()
            .map(|reason| {
                let reloader = g.reloader.clone();
                std::thread::spawn(move || reloader.request(reason))
            })
            .collect();
        for asker in askers {
            asker.join().unwrap();
        }
        g.finish.send(()).unwrap();
        let (second, thread) = g.started.recv().expect("one reload for the three");
        assert_eq!(thread.as_deref(), Some("picket-reload"));
        assert!(second.contains(Reason::ListDownloaded));
        assert!(second.contains(Reason::Sighup));
        assert!(second.contains(Reason::FilesChanged));
        assert!(!second.contains(Reason::Call));
        assert_eq!(second.to_string(), "SIGHUP, files changed, list downloaded");
        g.finish.send(()).unwrap();
        g.assert_no_more_than(2);
    }

    /// A block of twice [`MAP_APART_BYTES`] gets a mapping of its own even after a 16 MiB one
    /// was freed (glibc's own threshold would have risen to 16 MiB and put it in an arena, which
    /// keeps its pages when it is freed). Read from the block's own chunk header (glibc's
    /// `IS_MMAPPED` bit, 0x2 of the size word just before the pointer). Checked in a process
    /// of its own (this test binary, run again for this test alone): beside other tests an
    /// arena may hold a free chunk or a top of 2 MiB already, which malloc carves before it
    /// considers a mapping, whatever the threshold.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn large_blocks_stay_mapped_after_a_larger_one_was_freed() {
        const ALONE: &str = "PICKET_TEST_MALLOC_ALONE";
        const NAME: &str = "reload::tests::large_blocks_stay_mapped_after_a_larger_one_was_freed";
        if std::env::var_os(ALONE).is_none() {
            let run = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .expect("the test binary runs again");
            let said = String::from_utf8_lossy(&run.stdout);
            assert!(run.status.success(), "alone, the check failed:\n{said}");
            assert!(said.contains("1 passed"), "the check ran alone: {said}");
            return;
        }
        const IS_MMAPPED: usize = 0x2;
        map_large_blocks_apart();
        drop(std::hint::black_box(vec![1u8; 16 << 20]));
        let block = std::hint::black_box(vec![1u8; 2 * MAP_APART_BYTES]);
        // SAFETY: the block came from glibc's malloc (the System allocator, alignment 1), whose
        // chunks keep their size word in the machine word before the pointer.
        let size_word = unsafe { *block.as_ptr().cast::<usize>().sub(1) };
        assert!(
            size_word & IS_MMAPPED != 0,
            "a 2 MiB block was carved from an arena (size word {size_word:#x})"
        );
    }

    /// After close, the thread ends and requests run nothing.
    #[test]
    fn a_closed_reloader_reloads_no_more() {
        let g = gated();
        g.reloader.close();
        g.reloader.request(Reason::ListDownloaded);
        g.assert_no_more_than(0);
    }
}
