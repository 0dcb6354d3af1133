//! What logging every query costs on the cache-hit workload (target under
//! 10 % of queries per second): the query log, and dnstap.
//!
//! Starts Picket in-process three times: without logs, with `--query-log` (a
//! file in a temp dir), and with `--dnstap` to an in-process collector that
//! reads and discards the frames; each with one worker thread and a tiny loopback upstream,
//! warms one name, then drives each with a client thread that keeps a window
//! of queries in flight over UDP. Three rounds, interleaved (off, on, off,
//! on, ...), so that drift in machine load hits both alike; reports the
//! median of each.
//!
//! Wall-clock q/s moves with whatever else the machine runs, so each round
//! also reads the CPU time Picket's own threads used (workers and the
//! query-log or dnstap writer, from /proc/self/task/*/schedstat): CPU per query is the
//! steadier figure, and its ratio is the capacity a server loses to logging.
//!
//! The same comparison is then made for the dashboard's recording (issue 21):
//! admin listener on in both servers, dashboard recording off and on.
//!
//! `cargo bench --bench querylog` (`-- --dashboard-only` for the dashboard's
//! part, with the per-query costs of the query log to compare); `QUERYLOG_BENCH_N` sets queries per round (default 200000),
//! `QUERYLOG_BENCH_WINDOW` the queries in flight (default 32).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{env_or, median};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use picket::app::Server;
use picket::config::Settings;
use picket::observe::{LogTarget, QueryLogSettings};
use picket::upstream::DnssecMode;

const ROUNDS: usize = 3;

fn main() {
    let only = |flag: &str| std::env::args().any(|a| a == flag);
    if only("--dashboard-only") {
        format_cost();
        dashboard_record_cost();
        dashboard_cost();
        return;
    }
    rule_hit_cost();
    if only("--rule-hits-only") {
        return;
    }
    format_cost();
    dashboard_record_cost();
    let n: usize = env_or("QUERYLOG_BENCH_N", 200_000);
    let window: usize = env_or("QUERYLOG_BENCH_WINDOW", 32);
    let upstream = spawn_upstream();
    let dir = std::env::temp_dir().join(format!("picket-querylog-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join("queries.log");

    let off = Server::start(settings(upstream, None)).expect("picket starts");
    let on = Server::start(settings(upstream, Some(log_path.clone()))).expect("picket starts");
    let mut tap_settings = settings(upstream, None);
    tap_settings.dnstap = Some(discarding_collector(&dir.join("tap.sock")));
    let tap = Server::start(tap_settings).expect("picket starts");
    let (off_addr, on_addr, tap_addr) = (
        off.local_addrs()[0],
        on.local_addrs()[0],
        tap.local_addrs()[0],
    );
    let name = "www.example.test";
    for addr in [off_addr, on_addr, tap_addr] {
        warm(addr, name);
    }
    let (mut tapped, mut cpu_tapped) = (Vec::new(), Vec::new());

    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut cpu_without, mut cpu_with) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let off_round = drive(off_addr, name, n, window);
        truncate(&log_path);
        let on_round = drive(on_addr, name, n, window);
        let tap_round = drive(tap_addr, name, n, window);
        println!(
            "round {round}: with dnstap {:>7.0} q/s {:>5.0} ns CPU/query (worker {:.0}, writer {:.0})",
            tap_round.qps, tap_round.cpu, tap_round.worker, tap_round.writer
        );
        tapped.push(tap_round.qps);
        cpu_tapped.push(tap_round.cpu);
        let (a, ca, b, cb) = (off_round.qps, off_round.cpu, on_round.qps, on_round.cpu);
        println!(
            "round {round}: without log {a:>7.0} q/s {ca:>5.0} ns CPU/query (worker {:.0}) | \
             with log {b:>7.0} q/s {cb:>5.0} ns CPU/query (worker {:.0}, writer {:.0})",
            off_round.worker, on_round.worker, on_round.writer
        );
        without.push(a);
        with.push(b);
        cpu_without.push(ca);
        cpu_with.push(cb);
    }
    let (a, b) = (median(&mut without), median(&mut with));
    let (ca, cb) = (median(&mut cpu_without), median(&mut cpu_with));
    let logged = on
        .shared()
        .observer
        .query_log()
        .map_or((0, 0), |l| (l.written(), l.dropped()));
    let tap_frames = tap
        .shared()
        .observer
        .dnstap()
        .map_or((0, 0), |d| (d.frames(), d.dropped()));
    on.stop();
    off.stop();
    tap.stop();
    let (c, cc) = (median(&mut tapped), median(&mut cpu_tapped));
    println!(
        "median of {ROUNDS}: with dnstap {c:.0} q/s ({:.1} % fewer than without), {cc:.0} ns CPU/query \
         ({:.1} % fewer q/s per core; {} frames written, {} messages dropped)",
        (1.0 - c / a) * 100.0,
        (1.0 - ca / cc) * 100.0,
        tap_frames.0,
        tap_frames.1
    );
    println!(
        "median of {ROUNDS}: without log {a:.0} q/s, with log {b:.0} q/s: {:.1} % fewer q/s \
         ({n} cache hits per round, {window} in flight, 1 worker; {} lines written, {} dropped)",
        (1.0 - b / a) * 100.0,
        logged.0,
        logged.1
    );
    println!(
        "median CPU of Picket's threads: without log {ca:.0} ns/query, with log {cb:.0} ns/query \
         (writer thread included): {:.1} % fewer q/s per core",
        (1.0 - ca / cb) * 100.0
    );
    let _ = std::fs::remove_dir_all(dir);
    dashboard_cost();
}

/// What the dashboard's recording costs on the same workload (issue 21: no
/// more than the query log): two servers with the admin listener (metrics)
/// on, one recording for the dashboard and one not, rounds interleaved as
/// above. The CPU figure includes the admin thread, which takes the workers'
/// batches into the top-N sketches and the recent ring.
fn dashboard_cost() {
    let n: usize = env_or("QUERYLOG_BENCH_N", 200_000);
    let window: usize = env_or("QUERYLOG_BENCH_WINDOW", 32);
    let upstream = spawn_upstream();
    let with_admin = |dashboard: bool| Settings {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        dashboard,
        ..settings(upstream, None)
    };
    let off = Server::start(with_admin(false)).expect("picket starts");
    let on = Server::start(with_admin(true)).expect("picket starts");
    let (off_addr, on_addr) = (off.local_addrs()[0], on.local_addrs()[0]);
    let name = "www.example.test";
    for addr in [off_addr, on_addr] {
        warm(addr, name);
    }
    let (mut qps_off, mut qps_on, mut cpu_off, mut cpu_on) = (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        let a = drive(off_addr, name, n, window);
        let b = drive(on_addr, name, n, window);
        println!(
            "round {round}: metrics only {:>7.0} q/s {:>5.0} ns CPU/query (worker {:.0}) | \
             metrics + dashboard {:>7.0} q/s {:>5.0} ns CPU/query (worker {:.0})",
            a.qps, a.cpu, a.worker, b.qps, b.cpu, b.worker
        );
        qps_off.push(a.qps);
        qps_on.push(b.qps);
        cpu_off.push(a.cpu);
        cpu_on.push(b.cpu);
    }
    on.stop();
    off.stop();
    let (a, b) = (median(&mut qps_off), median(&mut qps_on));
    let (ca, cb) = (median(&mut cpu_off), median(&mut cpu_on));
    println!(
        "median of {ROUNDS}: dashboard off {a:.0} q/s, on {b:.0} q/s: {:.1} % fewer q/s; \
         CPU {ca:.0} ns/query off, {cb:.0} ns/query on (admin thread included): {:.1} % fewer q/s per core",
        (1.0 - b / a) * 100.0,
        (1.0 - ca / cb) * 100.0
    );
}

/// What the worker records for a cache hit of `www.example.test` A from organization `org`.
fn cache_hit(org: &'static str) -> picket::observe::Outcome<'static> {
    picket::observe::Outcome {
        transport: picket::query::Transport::Udp,
        client_ip: "198.51.100.77".parse().unwrap(),
        client_port: 0,
        query: &[],
        reply: None,
        org,
        qname: "www.example.test",
        qtype: 1,
        rcode: Some(0),
        action: picket::query::ActionLabel::Resolve,
        rule: None,
        audited: &[],
        cache: picket::observe::CacheStatus::Hit,
        upstream: None,
        ede: None,
        duration: Duration::from_micros(3),
    }
}

/// The worker's share of the dashboard in isolation: `Dashboard::record`
/// on the calling thread, batches taken (untimed) between chunks as the
/// admin thread does every 250 ms.
fn dashboard_record_cost() {
    use picket::observe::{ClientIpMode, Dashboard, DashboardSettings};
    let outcome = cache_hit("acme");
    let limits = picket::config::Limits::default();
    let dashboard = Dashboard::new(DashboardSettings::new(&limits, ClientIpMode::Truncate))
        .expect("no exclusion list to read");
    let rounds = 1_000_000;
    let chunk = 10_000;
    let (mut spent, mut collecting) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds / chunk {
        let started = Instant::now();
        for _ in 0..chunk {
            dashboard.record(std::hint::black_box(&outcome));
        }
        spent += started.elapsed();
        let started = Instant::now();
        dashboard.collect();
        collecting += started.elapsed();
    }
    println!(
        "Dashboard::record on the calling thread: {:.0} ns; taking it into the sketches and ring (admin thread): {:.0} ns per query",
        spent.as_nanos() as f64 / rounds as f64,
        collecting.as_nanos() as f64 / rounds as f64
    );
}

/// The worker's share in isolation: formatting one line.
fn format_cost() {
    use picket::observe::{querylog::format_line, ClientIpMode};
    let outcome = cache_hit("");
    let rounds = 1_000_000;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let mut line = Vec::with_capacity(320);
        format_line(
            &outcome,
            ClientIpMode::Truncate,
            std::time::SystemTime::now(),
            &mut line,
        );
        bytes += std::hint::black_box(line).len();
    }
    let ns = started.elapsed().as_nanos() as f64 / rounds as f64;
    println!(
        "formatting one line (with its allocation and clock read): {ns:.0} ns, {} bytes",
        bytes / rounds
    );

    let metrics = picket::observe::Metrics::new(&[]);
    let started = Instant::now();
    for _ in 0..rounds {
        metrics.record(std::hint::black_box(&outcome));
    }
    let ns = started.elapsed().as_nanos() as f64 / rounds as f64;
    println!("recording one query in the metrics (query and cache counters): {ns:.0} ns");

    let dir = std::env::temp_dir().join(format!("picket-querylog-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log =
        picket::observe::QueryLog::open(&QueryLogSettings::new(LogTarget::File(dir.join("q.log"))))
            .expect("log opens");
    // In chunks well under the bound, letting the writer catch up (untimed)
    // between them, so nothing is dropped.
    let mut spent = Duration::ZERO;
    for _ in 0..rounds / 10_000 {
        let started = Instant::now();
        for _ in 0..10_000 {
            log.record(std::hint::black_box(&outcome));
        }
        spent += started.elapsed();
        std::thread::sleep(Duration::from_millis(15));
    }
    let ns = spent.as_nanos() as f64 / rounds as f64;
    log.close();
    println!(
        "QueryLog::record on the calling thread (the writer runs beside it): {ns:.0} ns, {} dropped",
        log.dropped()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Cost of counting one rule hit (`Metrics::rule_hit`), with 10 rule series registered, with
/// `MAX_RULE_SERIES` registered, and for a rule past the cap (counted under `_other`): five
/// interleaved rounds, medians. The cost must not depend on the number of series.
fn rule_hit_cost() {
    use picket::observe::metrics::MAX_RULE_SERIES;
    use picket::observe::Metrics;
    let ids: Vec<String> = (0..MAX_RULE_SERIES + 10)
        .map(|i| format!("acme/rule-{i}"))
        .collect();
    let few = Metrics::new(&[]);
    few.register_rules(ids[..10].iter().map(|id| ("acme", id.as_str())));
    let many = Metrics::new(&[]);
    many.register_rules(ids.iter().map(|id| ("acme", id.as_str())));
    let per_hit = |m: &Metrics, key: &str, rounds: u32| {
        let started = Instant::now();
        for _ in 0..rounds {
            m.rule_hit(std::hint::black_box("acme"), std::hint::black_box(key));
        }
        started.elapsed().as_nanos() as f64 / f64::from(rounds)
    };
    let past_cap_rounds = env_or("RULE_HIT_PAST_CAP_ROUNDS", 2_000) as u32;
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(per_hit(&few, &ids[3], 1_000_000));
        b.push(per_hit(&many, &ids[MAX_RULE_SERIES - 7], 1_000_000));
        c.push(per_hit(&many, &ids[MAX_RULE_SERIES + 3], past_cap_rounds));
    }
    println!(
        "rule hit: {:.0} ns with 10 series, {:.0} ns with {MAX_RULE_SERIES}, {:.0} ns past the cap (_other)",
        median(&mut a),
        median(&mut b),
        median(&mut c)
    );
}

fn settings(upstream: SocketAddr, log: Option<PathBuf>) -> Settings {
    Settings {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstreams: vec![upstream.into()],
        threads: 1,
        query_log: log.map(|p| QueryLogSettings::new(LogTarget::File(p))),
        // The loopback upstream is unsigned: validation (the default) would answer SERVFAIL.
        dnssec: DnssecMode::Off,
        ..Settings::default()
    }
}

/// Keeps the log from filling the disk between rounds (the writer appends).
fn truncate(path: &PathBuf) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(|f| f.set_len(0));
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn warm(server: SocketAddr, name: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send(&query(1, name)).unwrap();
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).expect("warm-up answer");
    assert!(len > 12 && buf[3] & 0x0f == 0, "warm-up failed");
}

/// CPU time used so far by the query-log and dnstap writer threads, in ns.
fn writers_cpu_ns() -> u64 {
    cpu_ns_of("picket-querylog") + cpu_ns_of("picket-dnstap")
}

/// A Frame Streams collector on a Unix socket that accepts dnstap and
/// discards it (a thread not named `picket-*`, so its CPU is not Picket's).
fn discarding_collector(path: &std::path::Path) -> picket::observe::DnstapSettings {
    use picket::observe::dnstap::fstrm::{control, Control};
    use std::io::{Read, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).expect("collector socket");
    std::thread::Builder::new()
        .name("bench-collector".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ = Control::read(&mut stream);
                let _ = stream.write_all(&Control::new(control::ACCEPT).encode());
                let mut sink = [0u8; 65_536];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            }
        })
        .expect("collector thread");
    picket::observe::DnstapSettings {
        target: picket::observe::DnstapTarget::Unix(path.to_path_buf()),
        identity: None,
        version: None,
        upstream: false,
        queue: picket::config::limits::DNSTAP_QUEUE,
    }
}

/// CPU time used so far by Picket's threads (named `picket-*`), in ns.
fn picket_cpu_ns() -> u64 {
    cpu_ns_of("picket-")
}

/// CPU time used so far by threads whose name starts with `prefix`, in ns.
fn cpu_ns_of(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One measured round.
struct Round {
    /// Queries per second (wall clock).
    qps: f64,
    /// CPU ns per query of Picket's threads (workers and log writer).
    cpu: f64,
    /// ... of the worker alone.
    worker: f64,
    /// ... of the log writer alone.
    writer: f64,
}

/// Sends `n` queries keeping `window` in flight. Waits for the log writer to
/// catch up, so that its work is counted.
fn drive(server: SocketAddr, name: &str, n: usize, window: usize) -> Round {
    let cpu_before = picket_cpu_ns();
    let writer_before = writers_cpu_ns();
    let worker_before = cpu_ns_of("picket-worker");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let packet = query(0x4242, name);
    let mut buf = [0u8; 1500];
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    while sent < window.min(n) {
        socket.send(&packet).unwrap();
        sent += 1;
    }
    while answered < n {
        match socket.recv(&mut buf) {
            Ok(_) => {
                answered += 1;
                if sent < n {
                    socket.send(&packet).unwrap();
                    sent += 1;
                }
            }
            // A lost datagram: count it as answered and refill the window.
            Err(_) => {
                let missing = sent - answered;
                answered += missing;
                for _ in 0..missing.min(n - sent) {
                    socket.send(&packet).unwrap();
                    sent += 1;
                }
            }
        }
    }
    let qps = n as f64 / started.elapsed().as_secs_f64();
    // Let the writer drain its queue (it flushes at once when idle).
    std::thread::sleep(Duration::from_millis(300));
    let cpu = picket_cpu_ns().saturating_sub(cpu_before) as f64 / n as f64;
    let writer = writers_cpu_ns().saturating_sub(writer_before) as f64 / n as f64;
    let worker = cpu_ns_of("picket-worker").saturating_sub(worker_before) as f64 / n as f64;
    Round {
        qps,
        cpu,
        worker,
        writer,
    }
}

/// An upstream that answers every A query with 192.0.2.1 (TTL 1 day).
fn spawn_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::response(q.metadata.id, OpCode::Query);
            reply.metadata.recursion_desired = q.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.add_queries(q.queries.clone());
            if let Some(question) = q.queries.first() {
                let rdata = RData::A(A::new(192, 0, 2, 1));
                reply.add_answer(Record::from_rdata(question.name().clone(), 86_400, rdata));
            }
            if let Some(edns) = q.edns.clone() {
                reply.set_edns(edns);
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
        }
    });
    addr
}
