//! What a forwarded miss costs over a warm DoT upstream connection against
//! plain UDP (issue 18).
//!
//! One in-process upstream answers every A query with 192.0.2.1, over UDP
//! and over TLS (a certificate from a throwaway CA given to Picket as its
//! `--ca-file` roots). Two Pickets with one worker each forward to it, one
//! over UDP (a socket per query, 0x20), one over DoT (pipelined on one
//! warm connection). A client keeps a window of unique names in flight, so
//! every query is a miss. Rounds alternate UDP, DoT, UDP, DoT, ...; the
//! medians are reported: CPU µs of Picket's worker thread per miss (from
//! /proc/self/task/*/schedstat, the steady figure on a shared machine) and
//! wall-clock misses per second; then the latency of one miss at a time.
//!
//! `cargo bench --bench forward_upstream`; `FORWARD_BENCH_N` misses per
//! round (default 20000), `FORWARD_BENCH_WINDOW` in flight (default 16).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_or, median};
use picket::app::Server;
use picket::config::Settings;
use picket::upstream::{DnssecMode, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const ROUNDS: usize = 5;

fn main() {
    let n: usize = env_or("FORWARD_BENCH_N", 20_000);
    let window: usize = env_or("FORWARD_BENCH_WINDOW", 16);
    let (ca, server_config) = certificates();
    let (udp_addr, tls_addr) = spawn_upstream(server_config);

    let plain = start(vec![Upstream::from(udp_addr)], Vec::new());
    let dot = start(
        vec![Upstream::parse(&format!("tls://{tls_addr}#bench.test")).unwrap()],
        vec![ca],
    );
    let pickets = [
        ("udp", plain.local_addrs()[0]),
        ("dot", dot.local_addrs()[0]),
    ];
    // Warm: the DoT connection is open before the first measured round.
    for (_, addr) in pickets {
        drive(addr, "warm", 100, 1);
    }

    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (i, (label, addr)) in pickets.iter().enumerate() {
            let r = drive(*addr, &format!("r{round}{label}"), n, window);
            println!(
                "round {round} {label}: {:.1} µs worker CPU per miss, {:.0} misses/s",
                r.0, r.1
            );
            results[i].push(r);
        }
    }
    let mut summary = Vec::new();
    for (i, (label, _)) in pickets.iter().enumerate() {
        let mut cpu: Vec<f64> = results[i].iter().map(|r| r.0).collect();
        let mut qps: Vec<f64> = results[i].iter().map(|r| r.1).collect();
        summary.push((*label, median(&mut cpu), median(&mut qps)));
    }
    for (label, cpu, qps) in &summary {
        println!("{label}: median {cpu:.1} µs worker CPU per miss, {qps:.0} misses/s");
    }
    println!(
        "dot/udp: {:.2}× CPU per miss, {:.2}× misses/s",
        summary[1].1 / summary[0].1,
        summary[1].2 / summary[0].2
    );
    for (label, addr) in pickets {
        let mut lat: Vec<f64> = (0..ROUNDS)
            .map(|round| {
                let started = Instant::now();
                drive(addr, &format!("l{round}{label}"), 500, 1);
                started.elapsed().as_secs_f64() * 1e6 / 500.0
            })
            .collect();
        println!(
            "{label}: one miss at a time, median {:.0} µs per miss",
            median(&mut lat)
        );
    }
}

fn start(upstreams: Vec<Upstream>, ca_roots: Vec<CertificateDer<'static>>) -> Server {
    let mut settings = Settings {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstreams,
        threads: 1,
        // The in-process upstream is unsigned: validation (the default) would answer SERVFAIL.
        dnssec: DnssecMode::Off,
        ..Settings::default()
    };
    settings.forwarder.ca_roots = ca_roots;
    Server::start(settings).expect("picket starts")
}

/// A CA, and a server config with a certificate for bench.test it issued.
fn certificates() -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bench.test".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone(), ca_cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (ca_cert.der().clone(), Arc::new(config))
}

/// The answer to `query`: its header and question, QR and RA set, one A
/// record 192.0.2.1 (TTL 300), no EDNS.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    end += 5;
    let mut out = query.get(..end)?.to_vec();
    out[2] |= 0x80;
    out[3] |= 0x80;
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    Some(out)
}

/// The upstream, on a thread of its own (its CPU is not Picket's).
fn spawn_upstream(tls: Arc<rustls::ServerConfig>) -> (SocketAddr, SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    std::thread::Builder::new()
        .name("bench-upstream".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                udp.set_nonblocking(true).unwrap();
                tcp.set_nonblocking(true).unwrap();
                let udp = tokio::net::UdpSocket::from_std(udp).unwrap();
                let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = tcp.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let mut buf = vec![0u8; 65_535];
                            loop {
                                let Ok(len) = tls.read_u16().await else {
                                    return;
                                };
                                let query = &mut buf[..usize::from(len)];
                                if tls.read_exact(query).await.is_err() {
                                    return;
                                }
                                let Some(reply) = answer(query) else { return };
                                let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
                                frame.extend_from_slice(&reply);
                                if tls.write_all(&frame).await.is_err()
                                    || tls.flush().await.is_err()
                                {
                                    return;
                                }
                            }
                        });
                    }
                });
                let mut buf = [0u8; 1500];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    if let Some(reply) = answer(&buf[..len]) {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                }
            });
        })
        .unwrap();
    addrs
}

/// A query for `name` (RD, EDNS 1232).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
    q
}

/// CPU time so far of Picket's worker threads, in ns.
fn worker_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("picket-worker"))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `n` misses (`m<i>.<tag>.bench.test`), `window` in flight; (worker CPU
/// µs per miss, misses per second).
fn drive(server: SocketAddr, tag: &str, n: usize, window: usize) -> (f64, f64) {
    let cpu_before = worker_cpu_ns();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(2_000)))
        .unwrap();
    let packet = |i: usize| query(i as u16, &format!("m{i}.{tag}.bench.test"));
    let mut buf = [0u8; 1500];
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    while sent < window.min(n) {
        socket.send(&packet(sent)).unwrap();
        sent += 1;
    }
    while answered < n {
        let got = socket.recv(&mut buf).is_ok();
        // A lost datagram counts as answered, so the round ends.
        let done = if got { 1 } else { sent - answered };
        answered += done;
        for _ in 0..done.min(n - sent) {
            socket.send(&packet(sent)).unwrap();
            sent += 1;
        }
    }
    let qps = n as f64 / started.elapsed().as_secs_f64();
    let cpu = worker_cpu_ns().saturating_sub(cpu_before) as f64 / n as f64 / 1e3;
    (cpu, qps)
}
