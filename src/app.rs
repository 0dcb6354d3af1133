//! Wiring: binds the listeners, builds the shared state, starts one worker
//! thread per core (each a current-thread runtime owning one SO_REUSEPORT
//! socket per listener), one more for the QUIC listeners (DoQ, DoH3: one
//! endpoint per address, see [`crate::listener::quic`]) if any, the admin
//! listener (metrics, health) on its own thread, and stops them, at once
//! ([`Server::stop`]) or gracefully ([`Server::drain`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

use crate::blockpage;
use crate::config::{PolicySource, Settings};
use crate::health::NotReady;
use crate::listener::conns::{ConnectionTable, ShedReason};
use crate::listener::quic::{self, bind_quic, Service};
use crate::listener::tls::Tls;
use crate::listener::{bind_tcp, bind_udp, doh, dot, tcp, udp};
use crate::observe::metrics::name;
use crate::observe::{admin, LogTarget, Metrics};
use crate::pipeline::{Shared, Worker};
use crate::policy::{FileStamp, PolicySet};
use crate::query::Transport;
use crate::reload::{reload_and_log, Reason, Reloader};
use crate::upstream::recursor::RecursorStats;

/// Sockets of one worker.
#[derive(Default)]
struct WorkerSockets {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    doh: Vec<std::net::TcpListener>,
    dot: Vec<std::net::TcpListener>,
    doq: Vec<std::net::UdpSocket>,
    doh3: Vec<std::net::UdpSocket>,
}

/// What every worker shares besides the pipeline: connection caps (one per
/// transport, across workers; DoH over HTTP/2 and HTTP/3 share one) and
/// the TLS configuration.
#[derive(Clone)]
struct Common {
    tcp_conns: Arc<ConnectionTable>,
    doh_conns: Arc<ConnectionTable>,
    dot_conns: Arc<ConnectionTable>,
    doq_conns: Arc<ConnectionTable>,
    tls: Option<Arc<Tls>>,
    /// Per DoH address (in the order of each worker's `doh`), the DoH3
    /// port it advertises, if one shares its port number.
    doh_h3_ports: Arc<Vec<Option<u16>>>,
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    doh_addrs: Vec<SocketAddr>,
    dot_addrs: Vec<SocketAddr>,
    doq_addrs: Vec<SocketAddr>,
    doh3_addrs: Vec<SocketAddr>,
    tls: Option<Arc<Tls>>,
    admin_addr: Option<SocketAddr>,
    block_page_addrs: BlockPageAddrs,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    /// Where every reload runs (SIGHUP, file changes, list downloads).
    reloader: Reloader,
}

impl Server {
    /// Binds every listener and starts the workers. Port 0 picks one free port
    /// per listen address, the same for UDP and TCP and for every worker.
    /// Everything that can fail on the operator's input (addresses in use, a
    /// bad certificate or policy) fails here, before any thread starts.
    pub fn start(mut settings: Settings) -> Result<Server> {
        if settings.listen.is_empty() {
            bail!(
                "no listen address: give at least one --listen ADDR, e.g. --listen 127.0.0.1:5353"
            );
        }
        let tls = load_tls(&settings)?;
        raise_open_file_limit(&settings.limits);
        let threads = worker_count(&settings);
        let mut sockets = Sockets::bind(&settings, threads)?;
        // What is really served, for DDR (`crate::ddr`): the ports the
        // kernel picked for port 0.
        settings.doh = sockets.doh_addrs.clone();
        settings.dot = sockets.dot_addrs.clone();
        settings.doq = sockets.doq_addrs.clone();
        settings.doh3 = sockets.doh3_addrs.clone();
        crate::reload::map_large_blocks_apart();
        let shared = build_shared(settings)?;
        if let Some(tls) = &tls {
            shared.set_tls_name(tls.dns_name());
        }
        let common = Common::new(&shared, tls.clone(), sockets.doh_h3_ports());
        // The QUIC listeners' thread runs like a worker with only those sockets.
        let quic_thread = !sockets.quic.doq.is_empty() || !sockets.quic.doh3.is_empty();
        if quic_thread {
            sockets.per_worker.push(std::mem::take(&mut sockets.quic));
        }
        let threads = threads + usize::from(quic_thread);
        let (stop, stopped) = watch::channel(false);
        let reloader = Reloader::for_server(shared.clone(), tls.clone())?;
        let mut server = Server {
            shared: shared.clone(),
            addrs: sockets.addrs,
            doh_addrs: sockets.doh_addrs,
            dot_addrs: sockets.dot_addrs,
            doq_addrs: sockets.doq_addrs,
            doh3_addrs: sockets.doh3_addrs,
            tls,
            admin_addr: None,
            block_page_addrs: sockets.block_page_addrs,
            stop,
            threads: Vec::with_capacity(threads + 1),
            reloader: reloader.clone(),
        };
        if let Some(listener) = sockets.admin {
            server.start_admin(listener, &common, &stopped)?;
        }
        server.start_block_page(sockets.block_page, &stopped)?;
        let workers_serving = server.start_workers(sockets.per_worker, &common, &stopped)?;
        start_policy_watch(&shared, &reloader, &stopped)?;
        crate::fleet::spawn(shared.clone(), stopped.clone())?;
        crate::fleet::spawn_list_refresh(shared.clone(), reloader, stopped.clone())?;
        // Ready once every worker serves its sockets (a worker that failed
        // to start closes its end, and we never turn ready).
        if workers_serving.iter().take(threads).count() == threads {
            shared.readiness.set_started();
        } else {
            bail!("a worker thread failed to start");
        }
        Ok(server)
    }

    /// The admin listener (metrics, health) on its own thread, with the
    /// scrape-time probes it reports. Without metrics there is nothing to serve.
    fn start_admin(
        &mut self,
        listener: std::net::TcpListener,
        common: &Common,
        stopped: &watch::Receiver<bool>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let Some(metrics) = shared.observer.metrics() else {
            return Ok(());
        };
        register_probes(metrics, &shared, &common.connection_tables());
        let addr = listener.local_addr()?;
        let ready = {
            let shared = shared.clone();
            Box::new(move || {
                let details = match &shared.fleet {
                    Some(fleet) => format!("{}\n", fleet.describe()),
                    None => String::new(),
                };
                (shared.ready(), details)
            })
        };
        let served = admin::Admin {
            metrics: metrics.clone(),
            ready,
            dashboard: shared.observer.dashboard().cloned(),
            token: shared.settings.admin_token.clone(),
            status: status_reader(Arc::downgrade(&shared)),
            explain: explainer(Arc::downgrade(&shared)),
        };
        let handle = admin::spawn(listener, served, stopped.clone())
            .context("cannot start the admin thread")?;
        self.threads.push(handle);
        tracing::info!(%addr, "metrics on http://{addr}/metrics, health on /healthz and /readyz");
        if shared.observer.dashboard().is_some() {
            tracing::info!(%addr, "dashboard on http://{addr}/, its JSON under /api/");
        }
        if !addr.ip().is_loopback() && shared.settings.admin_token.is_none() {
            tracing::warn!(%addr, "the dashboard and /api/ (recent queries, clients) are open to anyone who can reach {addr}: add --admin-token TOKEN, or listen on loopback (--metrics 127.0.0.1:9153)");
        }
        self.admin_addr = Some(addr);
        Ok(())
    }

    /// The block page's listeners on a thread of their own (none without
    /// `--block-page` or `--block-page-tls`).
    fn start_block_page(
        &mut self,
        listeners: blockpage::Listeners,
        stopped: &watch::Receiver<bool>,
    ) -> Result<()> {
        let Some(page) = self.shared.block_page.clone() else {
            return Ok(());
        };
        let handle = blockpage::spawn(
            listeners,
            self.shared.clone(),
            page.clone(),
            self.tls.clone(),
            stopped.clone(),
        )
        .context("cannot start the block page thread")?;
        self.threads.push(handle);
        let addresses: Vec<String> = page.addresses().iter().map(ToString::to_string).collect();
        let addresses = addresses.join(" ");
        if let Some(addr) = self.block_page_addrs.http {
            tracing::info!(%addr, %addresses, "block page on http://{addr}/, answered as {addresses}");
        }
        if let Some(addr) = self.block_page_addrs.https {
            tracing::info!(%addr, %addresses, "block page on https://{addr}/, answered as {addresses}; browsers warn unless they trust the certificate's CA");
        }
        Ok(())
    }

    /// One thread per worker; returns the channel on which each reports that
    /// it serves its sockets.
    fn start_workers(
        &mut self,
        per_worker: Vec<WorkerSockets>,
        common: &Common,
        stopped: &watch::Receiver<bool>,
    ) -> Result<mpsc::Receiver<()>> {
        let (serving, workers_serving) = mpsc::channel();
        for (index, sockets) in per_worker.into_iter().enumerate() {
            let (shared, common, stopped) = (self.shared.clone(), common.clone(), stopped.clone());
            let serving = serving.clone();
            let handle = std::thread::Builder::new()
                .name(format!("picket-worker-{index}"))
                .spawn(move || run_worker(shared, sockets, common, stopped, serving))
                .context("cannot start a worker thread")?;
            self.threads.push(handle);
        }
        Ok(workers_serving)
    }

    /// Graceful stop (SIGTERM): not ready at once (the health name answers
    /// SERVFAIL, `/readyz` 503), run the drain hook, keep answering for the
    /// grace period while the route is withdrawn, then close the listeners,
    /// let queries already accepted and open TCP exchanges finish (bounded),
    /// and stop the workers. `cut_short` (a second signal) ends the grace
    /// period and the wait early: once it has resolved it is never polled
    /// again (a future resumed after completion panics). Returns what was
    /// still in flight when the workers stopped (0 when nothing was cut off).
    pub async fn drain(mut self, cut_short: impl Future<Output = ()>) -> usize {
        tokio::pin!(cut_short);
        let settings = self.shared.settings.drain.clone();
        let began = Instant::now();
        self.shared.readiness.set_draining();
        tracing::info!(grace = ?settings.grace, "draining: not ready");
        if let Some(hook) = &settings.hook {
            run_hook(hook, settings.hook_timeout).await;
        }
        let cut = tokio::select! {
            () = tokio::time::sleep(settings.grace.saturating_sub(began.elapsed())) => false,
            () = &mut cut_short => true,
        };
        if cut {
            tracing::warn!(
                "second stop signal: grace period cut short, not waiting for queries in flight"
            );
        }
        self.shared.drain.close();
        let inflight = self.shared.drain.inflight();
        tracing::info!(
            inflight,
            "draining: listeners closed, finishing queries in flight"
        );
        let left = if cut {
            inflight
        } else {
            tokio::select! {
                left = self.shared.drain.wait_idle(settings.finish_timeout) => left,
                () = &mut cut_short => self.shared.drain.inflight(),
            }
        };
        if left > 0 {
            tracing::warn!(
                left,
                "draining: stopping with queries or connections still open"
            );
        }
        self.shutdown();
        tracing::info!(took = ?began.elapsed(), "drained");
        left
    }

    /// Reloads the policy (SIGHUP, file changes); the last good one stays on error.
    pub fn reload_policy(&self) {
        reload_and_log(&self.shared, Reason::Call.into());
    }

    /// Asks the reload thread for a reload (SIGHUP: `cli.rs`) and returns at once.
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// Reads the certificate files again (SIGHUP), see [`reload_certificate`].
    pub fn reload_certificate(&self) -> Result<()> {
        match &self.tls {
            Some(tls) => reload_certificate(&self.shared, tls),
            None => Ok(()),
        }
    }

    /// The addresses the server answers on (UDP and TCP), ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The addresses DoH answers on, ports resolved.
    pub fn doh_addrs(&self) -> &[SocketAddr] {
        &self.doh_addrs
    }

    /// The addresses DoT answers on, ports resolved.
    pub fn dot_addrs(&self) -> &[SocketAddr] {
        &self.dot_addrs
    }

    /// The addresses DoQ answers on, ports resolved.
    pub fn doq_addrs(&self) -> &[SocketAddr] {
        &self.doq_addrs
    }

    /// The addresses DoH over HTTP/3 answers on, ports resolved.
    pub fn doh3_addrs(&self) -> &[SocketAddr] {
        &self.doh3_addrs
    }

    /// The TLS configuration of DoH, DoT, DoQ and DoH3 (None when none is on).
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// The admin listener's address (`--metrics`), port resolved.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The addresses the block page answers on (HTTP, HTTPS), ports resolved.
    pub fn block_page_addrs(&self) -> BlockPageAddrs {
        self.block_page_addrs
    }

    /// Reopens the query log (SIGHUP, after logrotate moved it).
    pub fn reopen_logs(&self) {
        self.shared.observer.reopen_log();
    }

    /// The shared state (cache, counters), for tests and the admin listener.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops the workers and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        self.reloader.close();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        // Every worker is gone: write out the query log's last lines.
        self.shared.observer.close();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Every socket `start` binds, before any thread runs.
struct Sockets {
    addrs: Vec<SocketAddr>,
    doh_addrs: Vec<SocketAddr>,
    dot_addrs: Vec<SocketAddr>,
    doq_addrs: Vec<SocketAddr>,
    doh3_addrs: Vec<SocketAddr>,
    per_worker: Vec<WorkerSockets>,
    /// The QUIC listeners, for a thread of their own.
    quic: WorkerSockets,
    admin: Option<std::net::TcpListener>,
    block_page: blockpage::Listeners,
    block_page_addrs: BlockPageAddrs,
}

/// Where the block page listens, ports resolved (None: not served that way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockPageAddrs {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

impl Sockets {
    /// DNS listeners first, then DoH, DoT, DoQ, DoH3 and the admin
    /// listener, so an address in use is reported in that order.
    fn bind(settings: &Settings, threads: usize) -> Result<Sockets> {
        let (addrs, mut per_worker) = bind_all(&settings.listen, threads)?;
        let doh_addrs = bind_stream_only(&settings.doh, &mut per_worker, "DoH", |s| &mut s.doh)?;
        let dot_addrs = bind_stream_only(&settings.dot, &mut per_worker, "DoT", |s| &mut s.dot)?;
        let mut quic = WorkerSockets::default();
        let doq_addrs = bind_quic_all(&settings.doq, &mut quic.doq, "DoQ")?;
        let doh3_addrs = bind_quic_all(&settings.doh3, &mut quic.doh3, "DoH3")?;
        let admin = match settings.metrics {
            Some(addr) => Some(std::net::TcpListener::bind(addr).with_context(|| {
                format!("cannot bind the metrics listener {addr}: pick another with --metrics, e.g. --metrics 127.0.0.1:9153")
            })?),
            None => None,
        };
        let (block_page, block_page_addrs) = bind_block_page(settings)?;
        Ok(Sockets {
            addrs,
            doh_addrs,
            dot_addrs,
            doq_addrs,
            doh3_addrs,
            per_worker,
            quic,
            admin,
            block_page,
            block_page_addrs,
        })
    }

    /// For each DoH address, the port of a DoH3 listener on the same port
    /// number and address (or a wildcard of the same family on either side),
    /// which its responses advertise with `Alt-Svc`: a client reaches it at
    /// the host it already uses.
    fn doh_h3_ports(&self) -> Vec<Option<u16>> {
        let same_host = |a: &SocketAddr, b: &SocketAddr| {
            a.ip() == b.ip()
                || (a.is_ipv4() == b.is_ipv4()
                    && (a.ip().is_unspecified() || b.ip().is_unspecified()))
        };
        self.doh_addrs
            .iter()
            .map(|doh| {
                self.doh3_addrs
                    .iter()
                    .find(|h3| h3.port() == doh.port() && same_host(doh, h3))
                    .map(SocketAddr::port)
            })
            .collect()
    }
}

/// The block page's HTTP and HTTPS listeners, when it is served.
fn bind_block_page(settings: &Settings) -> Result<(blockpage::Listeners, BlockPageAddrs)> {
    let Some(page) = &settings.block_page else {
        return Ok(Default::default());
    };
    let bind = |addr: Option<SocketAddr>, flag: &str| -> Result<Option<std::net::TcpListener>> {
        addr.map(|addr| {
            std::net::TcpListener::bind(addr).with_context(|| {
                format!("cannot bind the block page listener {addr} ({flag}): is something else listening there? Pick another address")
            })
        })
        .transpose()
    };
    let listeners = blockpage::Listeners {
        http: bind(page.http, "--block-page")?,
        https: bind(page.https, "--block-page-tls")?,
    };
    let local = |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let addrs = BlockPageAddrs {
        http: local(&listeners.http),
        https: local(&listeners.https),
    };
    Ok((listeners, addrs))
}

/// Binds one QUIC socket per address (one endpoint each, on the QUIC thread).
fn bind_quic_all(
    listen: &[SocketAddr],
    slot: &mut Vec<std::net::UdpSocket>,
    what: &str,
) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(listen.len());
    for &wanted in listen {
        let socket = bind_quic(wanted).with_context(|| {
            format!("cannot bind {what} {wanted} (UDP): is something else listening there? Pick another port")
        })?;
        addrs.push(socket.local_addr()?);
        slot.push(socket);
    }
    Ok(addrs)
}

/// The DoH/DoT/DoQ/DoH3 certificate; any of them without one is refused
/// here rather than failing on the first connection.
fn load_tls(settings: &Settings) -> Result<Option<Arc<Tls>>> {
    let encrypted = [&settings.doh, &settings.dot, &settings.doq, &settings.doh3];
    let https_page = settings
        .block_page
        .as_ref()
        .is_some_and(|b| b.https.is_some());
    match &settings.tls {
        Some(source) => Ok(Some(Arc::new(Tls::load(source)?))),
        None if https_page => bail!(
            "--block-page-tls needs a certificate: give --tls-cert FILE --tls-key FILE (PEM, \
             from a CA the browsers trust), or --tls-self-signed to try things out"
        ),
        None if encrypted.iter().any(|addrs| !addrs.is_empty()) => bail!(
            "DoH, DoT, DoQ and DoH3 need a certificate: give --tls-cert FILE --tls-key FILE (PEM), \
             or --tls-self-signed to try things out"
        ),
        None => Ok(None),
    }
}

/// Reads the certificate files again for new DoH and DoT connections, and
/// advertises the new certificate's name over DDR; on error the old
/// certificate and name stay.
pub fn reload_certificate(shared: &Shared, tls: &Tls) -> Result<()> {
    tls.reload()?;
    shared.set_tls_name(tls.dns_name());
    Ok(())
}

/// Loads the first policy (a bad one stops the start, unlike a bad reload)
/// and builds the state every worker shares.
/// With `--policy-url` the first policy is the last good bundle in `--state-dir`, if any;
/// without one the node starts, answers with the built-in default and is not ready until a
/// bundle arrives.
fn build_shared(settings: Settings) -> Result<Arc<Shared>> {
    let fleet = match &settings.policies {
        PolicySource::Url(f) => Some(Arc::new(crate::fleet::Fleet::new(
            f.clone(),
            settings.state_dir.clone(),
            &settings.limits,
        ))),
        _ => None,
    };
    let remote = Arc::new(crate::policy::RemoteLists::new(settings.state_dir.clone()));
    let from_state = fleet
        .as_ref()
        .and_then(|f| f.load_state(&settings.blocklists, &remote));
    let policy = match from_state {
        Some(policy) => policy,
        None => settings
            .policies
            .load_with(&crate::policy::LoadOptions {
                blocklists: &settings.blocklists,
                previous: None,
                remote: Some(&remote),
            })
            .map_err(|e| anyhow::anyhow!("cannot load the policy:\n{e}"))?,
    };
    log_policy(&policy, true);
    log_observability(&settings);
    let missing = fleet.as_ref().is_some_and(|f| !f.has_policy());
    let shared = Shared::new(settings, policy, fleet, remote)?;
    shared.readiness.set_policy_missing(missing);
    Ok(Arc::new(shared))
}

impl Common {
    fn new(shared: &Shared, tls: Option<Arc<Tls>>, doh_h3_ports: Vec<Option<u16>>) -> Common {
        let limits = &shared.settings.limits;
        Common {
            tcp_conns: ConnectionTable::new(Transport::Tcp, limits.tcp_max_connections, limits),
            doh_conns: ConnectionTable::new(Transport::Doh, limits.doh_max_connections, limits),
            dot_conns: ConnectionTable::new(Transport::Dot, limits.dot_max_connections, limits),
            doq_conns: ConnectionTable::new(Transport::Doq, limits.doq_max_connections, limits),
            tls,
            doh_h3_ports: Arc::new(doh_h3_ports),
        }
    }

    fn connection_tables(&self) -> [(Transport, Arc<ConnectionTable>); 4] {
        [
            (Transport::Tcp, self.tcp_conns.clone()),
            (Transport::Doh, self.doh_conns.clone()),
            (Transport::Dot, self.dot_conns.clone()),
            (Transport::Doq, self.doq_conns.clone()),
        ]
    }
}

/// Reloads the policy when its files change, if there are files to watch.
fn start_policy_watch(
    shared: &Arc<Shared>,
    reloader: &Reloader,
    stopped: &watch::Receiver<bool>,
) -> Result<()> {
    let watched = matches!(shared.settings.policies, PolicySource::Dir(_));
    if watched || !shared.settings.blocklists.is_empty() {
        // Detached: it notices the stop on its next poll and exits.
        let (shared, reloader, stopped) = (shared.clone(), reloader.clone(), stopped.clone());
        std::thread::Builder::new()
            .name("picket-policy-watch".into())
            .spawn(move || watch_policy(shared, reloader, stopped))
            .context("cannot start the policy watcher")?;
    }
    Ok(())
}

/// Scrape-time readers of state kept elsewhere, registered in a fixed order
/// (cache, upstreams, policy, recursion, upstream health, connections).
fn register_probes(
    metrics: &Metrics,
    shared: &Arc<Shared>,
    connections: &[(Transport, Arc<ConnectionTable>)],
) {
    let read = SharedReader(Arc::downgrade(shared));
    register_cache_probes(metrics, &read);
    register_upstream_probes(metrics, &read);
    register_policy_probes(metrics, &read);
    if shared.recursor.is_some() {
        register_recursor_probes(metrics, &read);
    }
    register_upstream_health_probes(metrics, shared);
    register_connection_probes(metrics, connections);
    if shared.block_page.is_some() {
        register_block_page_probes(metrics, &read);
    }
}

fn register_block_page_probes(metrics: &Metrics, read: &SharedReader) {
    for scheme in blockpage::SCHEMES {
        for source in blockpage::Source::ALL {
            metrics.counter_probe(
                name::BLOCK_PAGE_REQUESTS,
                &[("scheme", scheme), ("source", source.as_str())],
                read.counter_with(move |s| {
                    s.block_page
                        .as_ref()
                        .map_or(0, |p| p.requests(scheme, source))
                }),
            );
        }
    }
}

/// What `/api/stats` says about the server itself. Holds the shared state
/// weakly, like the probes.
fn status_reader(weak: Weak<Shared>) -> admin::StatusRead {
    let started = Instant::now();
    Box::new(move || {
        let Some(s) = weak.upgrade() else {
            return serde_json::json!({ "ready": false, "not_ready": "stopped" });
        };
        let policy = s.policy.load();
        let stats = policy.stats();
        let last = s.policy_reloads.last().map(|r| {
            serde_json::json!({
                "time": crate::observe::querylog::Rfc3339(r.at).to_string(),
                "ok": r.error.is_none(),
                "error": r.error,
            })
        });
        let ready = s.ready();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": started.elapsed().as_secs(),
            "ready": ready.is_ok(),
            "not_ready": ready.err().map(NotReady::as_str),
            "draining": s.readiness.is_draining(),
            "policy": {
                "version": policy.version(),
                "source": s.settings.policies.to_string(),
                "organizations": stats.organizations,
                "rules": stats.rules,
                "lists": stats.lists,
                "reloads_ok": s.policy_reloads.ok.load(Ordering::Relaxed),
                "reloads_failed": s.policy_reloads.failed.load(Ordering::Relaxed),
                "last_reload": last,
            },
        })
    })
}

/// `/api/explain`: `picket explain` with the policy in force.
fn explainer(weak: Weak<Shared>) -> admin::ExplainRun {
    Box::new(move |ask| {
        let Some(s) = weak.upgrade() else {
            return "the server is stopping: nothing to explain\n".to_string();
        };
        let policy = s.policy.load();
        let hints = crate::query::ClientHints::plain(ask.client, ask.transport);
        crate::policy::explain::explain(&policy, &ask.name, ask.qtype, &hints, ask.org.as_deref())
    })
}

/// Makes probes that read the shared state. They hold it weakly: the metrics
/// live inside it, and a strong reference would be a cycle. Once it is gone
/// they read 0.
struct SharedReader(Weak<Shared>);

impl SharedReader {
    fn gauge(&self, f: fn(&Shared) -> f64) -> impl Fn() -> f64 + Send + Sync + 'static {
        let weak = self.0.clone();
        move || weak.upgrade().map_or(0.0, |s| f(&s))
    }

    fn counter_with(
        &self,
        f: impl Fn(&Shared) -> u64 + Send + Sync + 'static,
    ) -> impl Fn() -> u64 + Send + Sync + 'static {
        let weak = self.0.clone();
        move || weak.upgrade().map_or(0, |s| f(&s))
    }

    fn counter(&self, f: fn(&Shared) -> u64) -> impl Fn() -> u64 + Send + Sync + 'static {
        let weak = self.0.clone();
        move || weak.upgrade().map_or(0, |s| f(&s))
    }
}

fn register_cache_probes(metrics: &Metrics, read: &SharedReader) {
    metrics.gauge_probe(
        name::CACHE_ENTRIES,
        &[],
        read.gauge(|s| {
            // Settle moka's deferred bookkeeping so the count is exact.
            s.cache.run_pending_tasks();
            s.cache.entry_count() as f64
        }),
    );
    metrics.gauge_probe(
        name::CACHE_BYTES,
        &[],
        read.gauge(|s| s.cache.weighted_bytes() as f64),
    );
}

fn register_upstream_probes(metrics: &Metrics, read: &SharedReader) {
    metrics.gauge_probe(
        name::UPSTREAM_INFLIGHT,
        &[],
        read.gauge(|s| {
            let max = s.settings.limits.max_upstream_inflight;
            max.saturating_sub(s.upstream_permits.available_permits()) as f64
        }),
    );
    metrics.counter_probe(
        name::UPSTREAM_REJECTED,
        &[],
        read.counter(|s| s.forwarder_stats.rejected_answers.load(Ordering::Relaxed)),
    );
    metrics.counter_probe(
        name::UPSTREAM_TCP_RETRIES,
        &[],
        read.counter(|s| s.forwarder_stats.tcp_retries.load(Ordering::Relaxed)),
    );
    metrics.counter_probe(
        name::UPSTREAM_DECLINED,
        &[],
        read.counter(|s| s.forwarder_stats.declined.load(Ordering::Relaxed)),
    );
}

fn register_policy_probes(metrics: &Metrics, read: &SharedReader) {
    metrics.counter_probe(
        name::POLICY_RELOADS,
        &[("result", "success")],
        read.counter(|s| s.policy_reloads.ok.load(Ordering::Relaxed)),
    );
    metrics.counter_probe(
        name::POLICY_RELOADS,
        &[("result", "failure")],
        read.counter(|s| s.policy_reloads.failed.load(Ordering::Relaxed)),
    );
    metrics.gauge_probe(
        name::POLICY_VERSION,
        &[],
        read.gauge(|s| s.policy.load().version() as f64),
    );
    for result in crate::policy::LIST_FETCH_RESULTS {
        metrics.counter_probe(
            name::LIST_FETCH,
            &[("result", result)],
            read.counter_with(move |s| s.remote_lists.count(result)),
        );
    }
    let Some(fleet) = read.0.upgrade().and_then(|s| s.fleet.clone()) else {
        return;
    };
    for result in crate::fleet::RESULTS {
        let f = Arc::downgrade(&fleet);
        metrics.counter_probe(
            name::POLICY_BUNDLE_FETCH,
            &[("result", result)],
            move || f.upgrade().map_or(0, |f| f.count(result)),
        );
    }
    let f = Arc::downgrade(&fleet);
    metrics.gauge_probe(name::POLICY_BUNDLE_VERSION, &[], move || {
        f.upgrade().map_or(0.0, |f| f.version() as f64)
    });
    let f = Arc::downgrade(&fleet);
    metrics.gauge_probe(name::POLICY_BUNDLE_AGE, &[], move || {
        f.upgrade().map_or(f64::NAN, |f| f.age_seconds())
    });
}

/// Recursive mode only: forwarding has no recursor to read.
fn register_recursor_probes(metrics: &Metrics, read: &SharedReader) {
    fn stat(s: &Shared, field: fn(&RecursorStats) -> &AtomicU64) -> u64 {
        s.recursor
            .as_ref()
            .map_or(0, |r| field(r.stats()).load(Ordering::Relaxed))
    }
    metrics.counter_probe(
        name::RECURSOR_QUERIES,
        &[],
        read.counter(|s| stat(s, |r| &r.sent)),
    );
    type Read = fn(&Shared) -> u64;
    let events: [(&str, Read); 9] = [
        ("over_budget", |s| stat(s, |r| &r.over_budget)),
        ("tcp_retry", |s| stat(s, |r| &r.tcp)),
        ("held_down", |s| stat(s, |r| &r.held_down)),
        ("failure_cache_hit", |s| stat(s, |r| &r.failure_cache_hits)),
        ("scrubbed", |s| stat(s, |r| &r.scrubbed)),
        ("priming", |s| stat(s, |r| &r.primings)),
        ("priming_failed", |s| stat(s, |r| &r.priming_failures)),
        ("aggressive_nsec", |s| stat(s, |r| &r.aggressive_nsec)),
        ("bogus_retry", |s| stat(s, |r| &r.bogus_retries)),
    ];
    for (event, f) in events {
        metrics.counter_probe(name::RECURSOR_EVENTS, &[("event", event)], read.counter(f));
    }
}

/// One series per configured upstream; the health table is shared, not the
/// whole state, so no weak reference is needed.
fn register_upstream_health_probes(metrics: &Metrics, shared: &Shared) {
    for server in &shared.settings.upstreams {
        let health = shared.health.clone();
        let label = server.to_string();
        let server = [server.clone()];
        metrics.gauge_probe(name::UPSTREAM_HEALTHY, &[("upstream", &label)], move || {
            f64::from(u8::from(health.any_healthy(&server)))
        });
    }
}

/// Open stream connections and those shed, per transport (and reason).
fn register_connection_probes(
    metrics: &Metrics,
    connections: &[(Transport, Arc<ConnectionTable>)],
) {
    for (transport, table) in connections {
        let open = table.clone();
        metrics.gauge_probe(
            name::CONNECTIONS,
            &[("transport", transport.as_str())],
            move || open.open() as f64,
        );
        for reason in ShedReason::ALL {
            let table = table.clone();
            metrics.counter_probe(
                name::CONNECTIONS_SHED,
                &[
                    ("transport", transport.as_str()),
                    ("reason", reason.as_str()),
                ],
                move || table.shed_count(reason),
            );
        }
    }
}

/// Start-up log line for the query log.
fn log_observability(settings: &Settings) {
    let Some(q) = &settings.query_log else {
        return;
    };
    let target = match &q.target {
        LogTarget::Stdout => "stdout".to_string(),
        LogTarget::File(p) => p.display().to_string(),
    };
    tracing::info!(
        %target,
        client_ip = ?q.client_ip,
        max_bytes = ?q.max_bytes,
        exclude = ?q.exclude,
        buffer_lines = q.buffer_lines,
        "query log on"
    );
}

/// How often the policy directory is checked for changes.
const POLICY_POLL: Duration = Duration::from_secs(2);

/// Reloads the policy when a file under its directory (or a blocklist)
/// changes, checked by [`FileStamp`] (the same check that decides whether a reload reads a
/// list again) every [`POLICY_POLL`].
/// Polling needs no inotify limits and works on any filesystem, including
/// the ConfigMap and rsync replacements edge nodes receive.
fn watch_policy(shared: Arc<Shared>, reloader: Reloader, mut stopped: watch::Receiver<bool>) {
    let mut last = policy_fingerprint(&shared.settings);
    loop {
        std::thread::sleep(POLICY_POLL);
        if *stopped.borrow_and_update() {
            return;
        }
        let now = policy_fingerprint(&shared.settings);
        if now != last {
            last = now;
            reloader.request(Reason::FilesChanged);
        }
    }
}

/// Every policy file and blocklist, sorted, with its stamp.
fn policy_fingerprint(settings: &Settings) -> Vec<(PathBuf, Option<FileStamp>)> {
    let mut files: Vec<PathBuf> = settings.blocklists.clone();
    if let PolicySource::Dir(dir) = &settings.policies {
        collect_files(dir, 3, &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let stamp = FileStamp::of(&path);
            (path, stamp)
        })
        .collect()
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            collect_files(&path, depth - 1, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

pub(crate) fn log_policy(policy: &PolicySet, invalid_lines: bool) {
    let stats = policy.stats();
    tracing::info!(
        version = policy.version(),
        organizations = stats.organizations,
        rules = stats.rules,
        lists = stats.lists,
        list_entries = stats.list_entries,
        invalid_list_lines = stats.invalid_lines,
        "policy loaded"
    );
    for sample in stats.invalid_samples.iter().filter(|_| invalid_lines) {
        tracing::warn!(file = %sample.file.display(), line = sample.line, reason = sample.reason, text = %sample.text, "invalid list line skipped");
    }
}

/// `--threads`, or one worker under socket_wrapper, whose sockets refuse
/// the `SO_REUSEPORT` that lets workers share an address
/// ([`crate::listener::socket_wrapper_active`]).
fn worker_count(settings: &Settings) -> usize {
    let wanted = settings.threads.max(1);
    if wanted > 1 && crate::listener::socket_wrapper_active() {
        tracing::warn!(
            threads = wanted,
            "socket_wrapper is active (SOCKET_WRAPPER_DIR is set): one worker, one datagram per system call"
        );
        return 1;
    }
    wanted
}

/// Binds UDP then TCP on each address, once per worker.
fn bind_all(
    listen: &[SocketAddr],
    workers: usize,
) -> Result<(Vec<SocketAddr>, Vec<WorkerSockets>)> {
    let mut per_worker: Vec<WorkerSockets> =
        (0..workers).map(|_| WorkerSockets::default()).collect();
    let mut addrs = Vec::with_capacity(listen.len());
    for &wanted in listen {
        let (addr, first_udp, first_tcp) = bind_pair(wanted)?;
        addrs.push(addr);
        per_worker[0].udp.push(first_udp);
        per_worker[0].tcp.push(first_tcp);
        for sockets in per_worker.iter_mut().skip(1) {
            sockets
                .udp
                .push(bind_udp(addr).with_context(|| format!("cannot bind UDP {addr}"))?);
            sockets
                .tcp
                .push(bind_tcp(addr).with_context(|| format!("cannot bind TCP {addr}"))?);
        }
    }
    Ok((addrs, per_worker))
}

/// Binds UDP and TCP on the same address; with port 0, retries until a port
/// is free for both.
fn bind_pair(
    wanted: SocketAddr,
) -> Result<(SocketAddr, std::net::UdpSocket, std::net::TcpListener)> {
    let hint = "is another DNS server running there? Pick another with --listen, e.g. --listen 127.0.0.1:5300";
    for _ in 0..16 {
        let addr = match wanted.port() {
            0 => {
                let port = crate::listener::unshared_udp_port(wanted.ip())
                    .with_context(|| format!("cannot bind UDP {wanted}: {hint}"))?;
                SocketAddr::new(wanted.ip(), port)
            }
            _ => wanted,
        };
        let udp = match bind_udp(addr) {
            Ok(udp) => udp,
            // Taken since the pick: pick again.
            Err(_) if wanted.port() == 0 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind UDP {wanted}: {hint}")),
        };
        match bind_tcp(addr) {
            Ok(tcp) => return Ok((addr, udp, tcp)),
            Err(_) if wanted.port() == 0 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind TCP {addr}: {hint}")),
        }
    }
    bail!("no port free for both UDP and TCP on {}", wanted.ip())
}

/// Binds a TCP-only listener (DoH, DoT) on each address, once per worker;
/// port 0 picks one port, the same for every worker.
fn bind_stream_only(
    listen: &[SocketAddr],
    per_worker: &mut [WorkerSockets],
    what: &str,
    slot: impl Fn(&mut WorkerSockets) -> &mut Vec<std::net::TcpListener>,
) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(listen.len());
    for &wanted in listen {
        let mut addr = wanted;
        for sockets in per_worker.iter_mut() {
            let listener = bind_tcp(addr).with_context(|| {
                format!("cannot bind {what} {addr}: is something else listening there? Pick another port")
            })?;
            addr = listener.local_addr()?;
            slot(sockets).push(listener);
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

fn run_worker(
    shared: Arc<Shared>,
    sockets: WorkerSockets,
    common: Common,
    mut stopped: watch::Receiver<bool>,
    serving: mpsc::Sender<()>,
) {
    // Answers held in the outbox leave before the worker sleeps.
    let runtime = match crate::listener::outbox::worker_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let closed = shared.drain.closed();
        let worker = Arc::new(Worker::new(shared));
        let loops = spawn_serve_loops(&worker, sockets, &common);
        let _ = serving.send(());
        let draining = tokio::select! {
            () = closed => true,
            _ = stopped.wait_for(|stop| *stop) => false,
        };
        if draining {
            // Stop receiving and accepting (the sockets close as the loops
            // drop them); answers in flight and open connections run on
            // until the stop.
            for receive_loop in &loops {
                receive_loop.abort();
            }
            let _ = stopped.wait_for(|stop| *stop).await;
        }
        // The last scheduler pass may have held answers and not parked since.
        crate::listener::outbox::flush();
    });
    // Dropping the runtime cancels every task of this worker.
}

/// One receive or accept loop per socket of this worker, on its runtime.
fn spawn_serve_loops(
    worker: &Arc<Worker>,
    sockets: WorkerSockets,
    common: &Common,
) -> Vec<tokio::task::JoinHandle<std::io::Result<()>>> {
    let mut loops = Vec::new();
    for socket in sockets.udp {
        loops.push(tokio::spawn(udp::serve(worker.clone(), socket)));
    }
    for listener in sockets.tcp {
        loops.push(tokio::spawn(tcp::serve(
            worker.clone(),
            listener,
            common.tcp_conns.clone(),
        )));
    }
    // Start guarantees a TLS configuration whenever DoH, DoT or QUIC is on.
    if let Some(tls) = &common.tls {
        for (listener, &h3_port) in sockets.doh.into_iter().zip(common.doh_h3_ports.iter()) {
            loops.push(tokio::spawn(doh::serve(
                worker.clone(),
                listener,
                tls.clone(),
                common.doh_conns.clone(),
                h3_port,
            )));
        }
        let doq = sockets
            .doq
            .into_iter()
            .map(|s| (s, Service::Doq, &common.doq_conns));
        let doh3 = sockets
            .doh3
            .into_iter()
            .map(|s| (s, Service::Doh3, &common.doh_conns));
        for (socket, service, table) in doq.chain(doh3) {
            let (worker, tls, table) = (worker.clone(), tls.clone(), table.clone());
            loops.push(tokio::spawn(quic::serve(
                worker, socket, tls, table, service,
            )));
        }
        for listener in sockets.dot {
            loops.push(tokio::spawn(dot::serve(
                worker.clone(),
                listener,
                tls.clone(),
                common.dot_conns.clone(),
            )));
        }
    }
    loops
}

/// Runs the drain hook with `sh -c`, killed (its whole process group) after
/// `limit`; its output goes where ours goes. Failures are logged, never fatal.
async fn run_hook(command: &str, limit: Duration) {
    let command = command.to_owned();
    let started = Instant::now();
    let ran = tokio::task::spawn_blocking(move || run_hook_blocking(&command, limit)).await;
    let took = started.elapsed();
    match ran {
        Ok(Ok(Some(status))) if status.success() => {
            tracing::info!(?took, "drain hook finished");
        }
        Ok(Ok(Some(status))) => tracing::warn!(?took, %status, "drain hook failed"),
        Ok(Ok(None)) => tracing::warn!(?limit, "drain hook timed out and was killed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot run the drain hook"),
        Err(e) => tracing::warn!(error = %e, "drain hook task failed"),
    }
}

fn run_hook_blocking(
    command: &str,
    limit: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::CommandExt;
    tracing::info!(command, "running the drain hook");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // SAFETY: signalling the process group we created for the hook.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Raises the soft open-file limit to the hard one (as far as Linux's
/// `nr_open` default): the upstream sockets in use and pooled, and the
/// stream listeners' connections, come to thousands of descriptors, and
/// many systems start services at a soft limit of 1024. Warns when even
/// that leaves too little room; then sizes the descriptor table for them
/// ([`reserve_descriptor_table`]).
fn raise_open_file_limit(limits: &crate::config::Limits) {
    const NR_OPEN: libc::rlim_t = 1 << 20;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a valid pointer to an `rlimit`.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = limit.rlim_max.min(NR_OPEN);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        if limit.rlim_cur < wanted && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            wanted
        } else {
            limit.rlim_cur
        }
    };
    let needed = limits.max_upstream_sockets
        + limits.upstream_udp_pool
        + limits.tcp_max_connections
        + limits.dot_max_connections
        + limits.doh_max_connections;
    if (soft as u128) < needed as u128 {
        tracing::warn!(
            open_files = soft,
            needed,
            "the open-file limit is below what the socket limits allow: raise it \
             (LimitNOFILE=65536 in the systemd unit, or ulimit -n) or queries fail \
             when descriptors run out"
        );
    }
    reserve_descriptor_table(needed.min(usize::try_from(soft).unwrap_or(usize::MAX)));
}

/// Grows the process's descriptor table to `descriptors` entries now, before
/// any query: the kernel never shrinks it, so opening the upstream pool's
/// sockets later never grows it. Each growth (the table doubles: 256, 512,
/// ... 8192 entries as the pool fills) waits in `expand_fdtable` for an RCU
/// grace period once the process has threads, and a worker that opens a
/// socket then stalls for 6-10 ms with every query it holds: that was the
/// forwarded misses' p99 of 6-13 ms after the pool came (benches/README.md).
/// `F_DUPFD` at the last entry makes the table that large; the duplicate is
/// closed at once. Best effort: a failure only leaves the growth to later.
fn reserve_descriptor_table(descriptors: usize) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let Ok(last) = libc::c_int::try_from(descriptors.saturating_sub(1)) else {
        return;
    };
    let Ok(probe) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    // SAFETY: F_DUPFD only reads `probe`'s descriptor and returns a new one
    // (the lowest free at or above `last`, never one in use), or -1.
    let duplicate = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_DUPFD_CLOEXEC, last) };
    if duplicate < 0 {
        tracing::debug!(descriptors, error = %std::io::Error::last_os_error(),
            "could not size the descriptor table ahead");
        return;
    }
    // SAFETY: `duplicate` was just returned by fcntl and is owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(duplicate) });
}
