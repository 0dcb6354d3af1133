//! Wiring: binds the listeners, builds the shared state, starts one worker
//! thread per core (each a current-thread runtime owning one SO_REUSEPORT
//! socket per listener), and stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

use crate::config::Settings;
use crate::listener::tcp::ConnectionSlots;
use crate::listener::{bind_tcp, bind_udp, tcp, udp};
use crate::pipeline::{Shared, Worker};

/// Sockets of one worker.
struct WorkerSockets {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every listener and starts the workers. Port 0 picks one free port
    /// per listen address, the same for UDP and TCP and for every worker.
    pub fn start(settings: Settings) -> Result<Server> {
        if settings.listen.is_empty() {
            bail!(
                "no listen address: give at least one --listen ADDR, e.g. --listen 127.0.0.1:5353"
            );
        }
        let threads = settings.threads.max(1);
        let (addrs, mut per_worker) = bind_all(&settings.listen, threads)?;
        let shared = Arc::new(Shared::new(settings).map_err(anyhow::Error::msg)?);
        let tcp_slots = ConnectionSlots::new(shared.settings.limits.tcp_max_connections);
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::with_capacity(threads);
        for (index, sockets) in per_worker.drain(..).enumerate() {
            let (shared, slots, stopped) = (shared.clone(), tcp_slots.clone(), stopped.clone());
            let handle = std::thread::Builder::new()
                .name(format!("picket-worker-{index}"))
                .spawn(move || run_worker(shared, sockets, slots, stopped))
                .context("cannot start a worker thread")?;
            handles.push(handle);
        }
        Ok(Server {
            shared,
            addrs,
            stop,
            threads: handles,
        })
    }

    /// The addresses the server answers on (UDP and TCP), ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
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
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds UDP then TCP on each address, once per worker.
fn bind_all(
    listen: &[SocketAddr],
    workers: usize,
) -> Result<(Vec<SocketAddr>, Vec<WorkerSockets>)> {
    let mut per_worker: Vec<WorkerSockets> = (0..workers)
        .map(|_| WorkerSockets {
            udp: Vec::new(),
            tcp: Vec::new(),
        })
        .collect();
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
        let udp = bind_udp(wanted).with_context(|| format!("cannot bind UDP {wanted}: {hint}"))?;
        let addr = udp.local_addr()?;
        match bind_tcp(addr) {
            Ok(tcp) => return Ok((addr, udp, tcp)),
            Err(_) if wanted.port() == 0 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind TCP {addr}: {hint}")),
        }
    }
    bail!("no port free for both UDP and TCP on {}", wanted.ip())
}

fn run_worker(
    shared: Arc<Shared>,
    sockets: WorkerSockets,
    tcp_slots: Arc<ConnectionSlots>,
    mut stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let worker = Arc::new(Worker::new(shared));
        for socket in sockets.udp {
            tokio::spawn(udp::serve(worker.clone(), socket));
        }
        for listener in sockets.tcp {
            tokio::spawn(tcp::serve(worker.clone(), listener, tcp_slots.clone()));
        }
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    // Dropping the runtime cancels every task of this worker.
}
