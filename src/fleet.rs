//! `--policy-url`: signed policy bundles pulled from a control plane (any HTTPS server, object
//! store or CDN), verified, loaded and swapped in as a reload does.
//!
//! One thread (`picket-policy-fetch`) polls the URL every `--policy-interval` (jittered,
//! conditional on the last ETag). A bundle is applied only if, in this order: it downloads
//! whole within the size and time limits, its signature verifies with `--policy-key` (before
//! anything in it is parsed), its version is not lower than the one serving (rollback
//! protection, unless `--allow-rollback`), and its policy loads. Anything else is refused,
//! logged with the reason and counted (`picket_policy_bundle_fetch_total{result}`), and the
//! policy in force keeps serving. An applied bundle is written to `--state-dir` (atomically:
//! a temporary file renamed over the old one), so a restart while the control plane is down
//! serves it again; it is verified again when read back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::{FleetSettings, Limits};
use crate::fetch::{jittered, FetchError, Fetched, Fetcher, Streamed};
use crate::pipeline::Shared;
use crate::policy::bundle::{sha256_hex, Bundle, BundleError};
use crate::policy::{LoadOptions, PolicyError, PolicySet, RemoteLists};
use crate::reload::{Reason, Reloader};

/// The file under `--state-dir` holding the last good bundle.
pub const STATE_BUNDLE: &str = "policy.bundle";

/// Results of one poll, the `result` label of `picket_policy_bundle_fetch_total`.
pub const RESULTS: [&str; 9] = [
    // A new bundle is in force.
    "applied",
    // 304: the server has nothing new.
    "not_modified",
    // Downloaded, and the same bytes as the bundle serving.
    "unchanged",
    // No usable answer: network, TLS, HTTP status, timeout, cut short.
    "fetch_failed",
    // Over Limits::max_bundle_bytes.
    "too_large",
    "bad_signature",
    // Not a bundle, or its files do not match its manifest.
    "malformed",
    // A lower version than the one serving, without --allow-rollback.
    "rollback",
    // Signed and whole, but its policy does not load.
    "load_failed",
];

/// The bundle in force.
#[derive(Debug, Clone)]
struct Serving {
    version: u64,
    created: u64,
    digest: String,
    bytes: Arc<[u8]>,
}

/// The state of `--policy-url`, shared with the pipeline (reloads, metrics, readiness).
#[derive(Debug)]
pub struct Fleet {
    pub settings: FleetSettings,
    state_dir: Option<PathBuf>,
    max_bytes: u64,
    serving: Mutex<Option<Serving>>,
    counts: [AtomicU64; RESULTS.len()],
}

impl Fleet {
    pub fn new(settings: FleetSettings, state_dir: Option<PathBuf>, limits: &Limits) -> Fleet {
        Fleet {
            settings,
            state_dir,
            max_bytes: limits.max_bundle_bytes,
            serving: Mutex::new(None),
            counts: Default::default(),
        }
    }

    fn serving(&self) -> Option<Serving> {
        self.serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls that ended with `result` (one of [`RESULTS`]).
    pub fn count(&self, result: &str) -> u64 {
        RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    fn record(&self, result: &'static str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether some bundle is in force.
    pub fn has_policy(&self) -> bool {
        self.serving().is_some()
    }

    /// The version of the bundle in force (0: none).
    pub fn version(&self) -> u64 {
        self.serving().map_or(0, |s| s.version)
    }

    /// Seconds since the bundle in force was signed (NaN: none).
    pub fn age_seconds(&self) -> f64 {
        match self.serving() {
            Some(s) => now_unix().saturating_sub(s.created) as f64,
            None => f64::NAN,
        }
    }

    /// One line for `/readyz`.
    pub fn describe(&self) -> String {
        match self.serving() {
            Some(s) => format!(
                "policy bundle version {} from {}, signed {}s ago",
                s.version,
                self.settings.url,
                now_unix().saturating_sub(s.created)
            ),
            None => format!(
                "no policy bundle yet from {} (nothing fetched, nothing in --state-dir)",
                self.settings.url
            ),
        }
    }

    /// The policy of the last good bundle in `--state-dir`, when there is one that verifies and
    /// loads (a start while the control plane is down serves it). Problems are logged: the
    /// node then starts with no policy and is not ready until a bundle is fetched.
    pub fn load_state(&self, blocklists: &[PathBuf], remote: &RemoteLists) -> Option<PolicySet> {
        let path = self.state_path()?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the last good policy bundle");
                return None;
            }
        };
        let opts = LoadOptions {
            blocklists,
            previous: None,
            remote: Some(remote),
        };
        match self.open(&bytes).map_err(|e| e.to_string()).and_then(|b| {
            b.load(&opts)
                .map(|p| (b.manifest.version, b.manifest.created, p))
                .map_err(|e| e.to_string())
        }) {
            Ok((version, created, policy)) => {
                tracing::info!(file = %path.display(), version, "serving the last good policy bundle from --state-dir until the URL answers");
                self.set_serving(version, created, bytes.into());
                Some(policy)
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "the policy bundle in --state-dir is not usable: ignored");
                None
            }
        }
    }

    /// The policy of the bundle in force, loaded again (SIGHUP: the `--blocklist` files may have
    /// changed), or the built-in default while there is none.
    pub fn reload(&self, opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
        match self.serving() {
            Some(s) => {
                let bundle = self.open(&s.bytes).map_err(|e| PolicyError {
                    issues: vec![crate::policy::Issue::new_io(
                        Path::new(&self.settings.url),
                        e.to_string(),
                    )],
                })?;
                bundle.load(opts)
            }
            None => PolicySet::blocklists_only(opts),
        }
    }

    fn open(&self, bytes: &[u8]) -> Result<Bundle, BundleError> {
        Bundle::open(bytes, &self.settings.key, self.max_bytes)
    }

    fn set_serving(&self, version: u64, created: u64, bytes: Arc<[u8]>) {
        *self.serving.lock().unwrap_or_else(PoisonError::into_inner) = Some(Serving {
            version,
            created,
            digest: sha256_hex(&bytes),
            bytes,
        });
    }

    fn state_path(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(STATE_BUNDLE))
    }

    /// Keeps `bytes` as the last good bundle; a failure is logged (the bundle still serves).
    fn save(&self, bytes: &[u8]) {
        let Some(path) = self.state_path() else {
            return;
        };
        if let Err(e) = write_atomically(&path, bytes) {
            tracing::error!(file = %path.display(), error = %e, "cannot keep the policy bundle in --state-dir: a restart while the URL is down will have no policy");
        }
    }
}

/// Writes `path` so that a reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the poller thread. Detached: it notices the stop between polls.
pub fn spawn(shared: Arc<Shared>, stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Some(fleet) = shared.fleet.clone() else {
        return Ok(());
    };
    spawn_fetching("picket-policy-fetch", shared, move |shared, fetcher| {
        poll_loop(shared, fleet, fetcher, stopped)
    })
}

/// Runs `task` on a thread of its own called `name`, in a runtime of its own, with a
/// [`Fetcher`] set up from the settings (`--ca-file`, the fetch timeouts).
fn spawn_fetching<F>(
    name: &str,
    shared: Arc<Shared>,
    task: impl FnOnce(Arc<Shared>, Fetcher) -> F + Send + 'static,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let limits = &shared.settings.limits;
    let fetcher = Fetcher::new(
        shared.settings.ca_file.as_deref(),
        limits.fetch_connect_timeout,
        limits.fetch_timeout,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(task(shared, fetcher)))?;
    Ok(())
}

async fn poll_loop(
    shared: Arc<Shared>,
    fleet: Arc<Fleet>,
    fetcher: Fetcher,
    mut stopped: watch::Receiver<bool>,
) {
    let mut etag: Option<String> = None;
    loop {
        let result = poll_once(&shared, &fleet, &fetcher, &mut etag).await;
        fleet.record(result);
        let pause = jittered(fleet.settings.interval);
        if stopped_during(pause, &mut stopped).await {
            return;
        }
    }
}

/// Sleeps for `pause` unless the process stops first; whether it did (the loop then ends).
async fn stopped_during(pause: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stopped.wait_for(|s| *s) => true,
    }
}

/// One poll; returns its result label. Refusals are logged here, with the reason.
async fn poll_once(
    shared: &Shared,
    fleet: &Fleet,
    fetcher: &Fetcher,
    etag: &mut Option<String>,
) -> &'static str {
    let url = &fleet.settings.url;
    let (bytes, new_etag) = match fetcher.get(url, etag.as_deref(), fleet.max_bytes).await {
        Ok(Fetched::NotModified) => return "not_modified",
        Ok(Fetched::Body { bytes, etag }) => (bytes, etag),
        Err(e) => {
            tracing::warn!(error = %e, "policy bundle not fetched: keeping the policy in force");
            return if e.label == "too_large" {
                "too_large"
            } else {
                "fetch_failed"
            };
        }
    };
    let serving = fleet.serving();
    let digest = sha256_hex(&bytes);
    if serving.as_ref().is_some_and(|s| s.digest == digest) {
        *etag = new_etag;
        return "unchanged";
    }
    // The signature first: nothing in the bundle is read before it verifies.
    let bundle = match fleet.open(&bytes) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%url, error = %e, "policy bundle refused: keeping the policy in force");
            return e.label();
        }
    };
    let version = bundle.manifest.version;
    if let Some(s) = serving.as_ref() {
        if version <= s.version && !fleet.settings.allow_rollback {
            let why = if version == s.version {
                "has the version serving but other content: sign changes with a higher --version"
            } else {
                "is older than the one serving (rollback protection): publish a newer version, or start with --allow-rollback to go back on purpose"
            };
            tracing::error!(%url, version, serving = s.version, "policy bundle refused: version {version} {why}");
            return "rollback";
        }
    }
    let created = bundle.manifest.created;
    let bytes: Arc<[u8]> = bytes.into();
    let loaded = shared.reload_with(|previous| {
        let policy = bundle.load(&LoadOptions {
            blocklists: &shared.settings.blocklists,
            previous,
            remote: Some(&shared.remote_lists),
        })?;
        // Loaded: it is swapped in right after this, so what reports the bundle in force
        // (metrics, /readyz) changes first, never after a query could see the new policy.
        fleet.save(&bytes);
        fleet.set_serving(version, created, bytes.clone());
        shared.readiness.set_policy_missing(false);
        Ok(policy)
    });
    match loaded {
        Ok(r) => {
            *etag = new_etag;
            tracing::info!(%url, version, lists_reused = r.lists_reused, took_ms = r.took.as_millis() as u64, "policy bundle applied");
            "applied"
        }
        Err(e) => {
            tracing::error!(%url, version, error = %e, "policy bundle refused: its policy does not load; keeping the policy in force");
            "load_failed"
        }
    }
}

/// Starts the thread that downloads `url` lists (when the policy has any, now or after a
/// reload): each when its `"refresh"` is due, conditional on its ETag, size-capped. A changed
/// list is kept (a file, in `--state-dir` when given) and a reload asked of `reloader`, which
/// parses it on the reload thread, never here nor on the query path; unchanged lists are shared. A failed download keeps
/// the old list and is counted (`picket_list_fetch_total{result}`).
pub fn spawn_list_refresh(
    shared: Arc<Shared>,
    reloader: Reloader,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    spawn_fetching("picket-list-fetch", shared, move |shared, fetcher| {
        refresh_loop(shared, fetcher, reloader, stopped)
    })
}

/// A list whose download failed is tried again after at most this long, not a whole refresh
/// interval later: a node that started while the feed was down would otherwise run without
/// the list for hours.
const LIST_RETRY: Duration = Duration::from_secs(60);

async fn refresh_loop(
    shared: Arc<Shared>,
    fetcher: Fetcher,
    reloader: Reloader,
    mut stopped: watch::Receiver<bool>,
) {
    let mut due: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    let max = shared.settings.limits.max_list_download_bytes;
    let tick = shared.settings.limits.min_fetch_interval;
    loop {
        let urls = shared.policy.load().url_lists().to_vec();
        let mut changed = false;
        for (url, refresh) in &urls {
            let now = tokio::time::Instant::now();
            if due.get(url).is_some_and(|t| *t > now) {
                continue;
            }
            let remote = &shared.remote_lists;
            let (result, next) = match refresh_one(&fetcher, remote, url, max).await {
                Ok(result) => (result, *refresh),
                Err(e) => {
                    tracing::warn!(error = %e, "list not downloaded: keeping the last good copy");
                    let label = if e.label == "too_large" {
                        "too_large"
                    } else {
                        "fetch_failed"
                    };
                    (label, (*refresh).min(LIST_RETRY))
                }
            };
            changed |= result == "updated";
            remote.record(result);
            due.insert(url.clone(), now + jittered(next));
        }
        if changed {
            // On the reload thread, with SIGHUP and file changes, not here (`crate::reload`).
            reloader.request(Reason::ListDownloaded);
        }
        if stopped_during(tick, &mut stopped).await {
            return;
        }
    }
}

/// Downloads `url` into a file (see `RemoteLists::begin`) and keeps it when complete: the
/// result (`updated`, `unchanged` or `not_modified`), or why nothing was kept.
async fn refresh_one(
    fetcher: &Fetcher,
    remote: &RemoteLists,
    url: &str,
    max: u64,
) -> Result<&'static str, FetchError> {
    let store_error = |e: std::io::Error| {
        FetchError {
        label: "write",
        message: format!("GET {url}: cannot store the list: {e} (check the space and permissions of --state-dir, or of the temporary directory without it)"),
    }
    };
    let etag = remote.get(url).and_then(|d| d.etag.clone());
    let mut incoming = remote.begin(url).map_err(store_error)?;
    match fetcher
        .get_into(url, etag.as_deref(), max, &mut incoming)
        .await?
    {
        Streamed::NotModified => Ok("not_modified"),
        Streamed::Written { etag } => match remote.keep(url, incoming, etag) {
            Ok(true) => Ok("updated"),
            Ok(false) => Ok("unchanged"),
            Err(e) => Err(store_error(e)),
        },
    }
}

/// A polling interval under the floor of [`Limits::min_fetch_interval`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{interval:?} is shorter than the {floor:?} floor (Limits::min_fetch_interval): poll less often")]
pub struct IntervalTooShort {
    pub interval: Duration,
    pub floor: Duration,
}

/// `interval` if it is not shorter than the limits allow.
pub fn check_interval(interval: Duration, limits: &Limits) -> Result<Duration, IntervalTooShort> {
    if interval < limits.min_fetch_interval {
        Err(IntervalTooShort {
            interval,
            floor: limits.min_fetch_interval,
        })
    } else {
        Ok(interval)
    }
}
