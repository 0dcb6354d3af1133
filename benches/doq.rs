//! DNS over QUIC throughput (plain std::time, no harness): `cargo bench --bench doq`.
//!
//! Picket in-process with one worker and its QUIC thread, a quinn client in the same process
//! keeping `CONNECTIONS` connections with `STREAMS` queries in flight on each, every query its
//! own stream (RFC 9250). The name is on a blocklist, so every query is answered by the pipeline
//! (parse, policy, synthesis) without an upstream: what is measured is the QUIC listener's cost
//! on top of what every transport pays. Reported: queries per second, and CPU per query of the
//! QUIC thread alone (from /proc, so the client's share is not counted). Median of rounds.

mod common;

/// The tests' QUIC client (`tests/common/quic.rs`), which trusts exactly Picket's certificate,
/// and the modules it builds on.
#[allow(dead_code, unused_imports)]
#[path = "../tests/common"]
mod tests_common {
    pub mod files;
    pub mod quic;
    pub mod tls;
}

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use picket::app::Server;
use picket::config::{Settings, TlsSource};
use quinn::Connection;

use common::median;

const CONNECTIONS: usize = 8;
const STREAMS: usize = 16;
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;

/// `blocked.bench.test` A with ID 0, length-prefixed.
fn framed_query() -> Vec<u8> {
    let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["blocked", "bench", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// Queries one after another on new streams of `connection` until `until`.
async fn stream_loop(connection: Connection, until: Instant, done: Arc<AtomicU64>) {
    let query = framed_query();
    while Instant::now() < until {
        let (mut send, mut recv) = connection.open_bi().await.expect("a stream");
        send.write_all(&query).await.expect("the query goes out");
        send.finish().expect("FIN");
        let answer = recv.read_to_end(4096).await.expect("an answer");
        assert!(answer.len() > 14, "an answer, not {answer:?}");
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// utime + stime of the thread named `name`, from /proc.
fn thread_cpu(name: &str) -> Duration {
    let tick = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let path = task.expect("a task").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).expect("its stat");
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        return Duration::from_secs_f64(ticks * tick);
    }
    panic!("no thread named {name}");
}

fn main() {
    let dir = std::env::temp_dir().join(format!("picket-bench-doq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("blocked.txt");
    std::fs::write(&list, "blocked.bench.test\n").unwrap();
    let settings = Settings {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        // Never asked: every query is blocked locally.
        upstreams: vec!["127.0.0.1:9".parse().unwrap()],
        threads: 1,
        doq: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(TlsSource::SelfSigned { names: vec![] }),
        blocklists: vec![list],
        ..Settings::default()
    };
    let server = Server::start(settings).expect("picket starts");
    let addr: SocketAddr = server.doq_addrs()[0];
    let cert = server.tls().unwrap().certificate();
    // With one worker, the QUIC thread is the second.
    let quic_thread = "picket-worker-1";

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut rates = Vec::new();
    let mut cpu_per_query = Vec::new();
    runtime.block_on(async {
        let endpoint = tests_common::quic::client_endpoint(cert, &[b"doq"]);
        let mut connections = Vec::new();
        for _ in 0..CONNECTIONS {
            let connecting = endpoint.connect(addr, "localhost").unwrap();
            connections.push(connecting.await.expect("a handshake"));
        }
        for round in 0..=ROUNDS {
            let done = Arc::new(AtomicU64::new(0));
            let (began, cpu_began) = (Instant::now(), thread_cpu(quic_thread));
            let until = began + ROUND;
            let mut tasks = Vec::new();
            for connection in &connections {
                for _ in 0..STREAMS {
                    tasks.push(tokio::spawn(stream_loop(
                        connection.clone(),
                        until,
                        done.clone(),
                    )));
                }
            }
            for task in tasks {
                task.await.unwrap();
            }
            let (took, cpu) = (began.elapsed(), thread_cpu(quic_thread) - cpu_began);
            let queries = done.load(Ordering::Relaxed);
            // Round 0 warms up (handshakes settle, pages fault in).
            if round > 0 {
                rates.push(queries as f64 / took.as_secs_f64());
                cpu_per_query.push(cpu.as_secs_f64() * 1e6 / queries as f64);
            }
        }
    });
    println!(
        "doq: {CONNECTIONS} connections x {STREAMS} streams in flight, {ROUNDS} rounds of {ROUND:?}"
    );
    println!("doq: {:.0} queries/s (median)", median(&mut rates));
    println!(
        "doq: {:.1} us CPU per query on the QUIC thread (median)",
        median(&mut cpu_per_query)
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
