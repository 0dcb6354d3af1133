//! The anycast edge lab (issue 9): two Picket edges announcing one /32 with
//! BIRD 2 over BGP to a router that spreads queries over both (ECMP), built
//! from network namespaces by `tests/lab/edge-lab.sh`. The load comes from
//! this process, on a thread moved into the `client` namespace, so every
//! query's fate and the edge that answered it (by NSID) are known.
//!
//! Asserts: queries from many source ports reach both edges; a killed edge
//! is routed around within 2 s; a drained edge (SIGTERM, drain hook
//! `birdc disable anycast`) loses no query and exits 0; it comes back.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::QueryBuilder;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

const ANYCAST: &str = "192.0.2.53:53";
/// A query unanswered this long is lost.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// The lab's namespaces and processes; torn down on drop, even on failure.
struct Lab {
    script: PathBuf,
    dir: PathBuf,
}

impl Lab {
    fn up() -> Lab {
        let lab = Lab {
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/edge-lab.sh"),
            dir: std::env::temp_dir().join(format!("picket-edge-lab-{}", std::process::id())),
        };
        // PICKET_LAB_BIN: another build to try (a shared target directory
        // may hold another branch's binary by the time the test runs).
        let picket = std::env::var("PICKET_LAB_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_picket").to_owned());
        lab.run(&["up", &picket], 60);
        lab
    }

    /// Runs a lab command, killed after `limit` seconds; its stdout.
    fn run(&self, args: &[&str], limit: u64) -> String {
        let mut child = Command::new("bash")
            .arg(&self.script)
            .arg(&self.dir)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tests/lab/edge-lab.sh");
        let deadline = Instant::now() + Duration::from_secs(limit);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("lab {args:?} took over {limit} s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        assert!(status.success(), "lab {args:?} failed: {status}\n{out}");
        out
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "edge1.check.log",
            "edge2.check.log",
            "edge1.picket.log",
            "edge2.picket.log",
        ] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {name}\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = Command::new("timeout")
            .arg("30")
            .arg("bash")
            .arg(&self.script)
            .arg(&self.dir)
            .arg("down")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One query: when it was sent (since the test's epoch) and which edge
/// answered it (None: lost or failed).
#[derive(Debug, Clone)]
struct Shot {
    at: Duration,
    edge: Option<String>,
}

/// Sends `count` queries at `rate` per second from the `client` namespace,
/// each from a fresh socket (a new source port, so ECMP may pick either
/// edge) for a name never asked before (so each goes to the upstream).
fn load(epoch: Instant, tag: &'static str, rate: u32, count: u32) -> JoinHandle<Vec<Shot>> {
    std::thread::spawn(move || {
        let ns = File::open("/var/run/netns/client").expect("the client namespace");
        // SAFETY: moves only this thread into the namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let target: SocketAddr = ANYCAST.parse().unwrap();
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity(count as usize);
            for i in 0..count {
                tokio::time::sleep_until(start + Duration::from_secs(1) * i / rate).await;
                let name = format!("q{i}.{tag}.lab.test");
                tasks.push(tokio::spawn(async move {
                    let at = epoch.elapsed();
                    let edge = ask(target, &name).await;
                    Shot { at, edge }
                }));
            }
            let mut shots = Vec::with_capacity(tasks.len());
            for task in tasks {
                shots.push(task.await.unwrap());
            }
            shots
        })
    })
}

/// The NSID of the edge that answered `name`, or None.
async fn ask(target: SocketAddr, name: &str) -> Option<String> {
    let socket = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    socket.connect(target).await.ok()?;
    let query = QueryBuilder::new(name, RecordType::A).nsid().build();
    socket.send(&query.to_vec().unwrap()).await.ok()?;
    let mut buf = [0u8; 1500];
    let len = tokio::time::timeout(QUERY_TIMEOUT, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let answer = Message::from_vec(&buf[..len]).ok()?;
    if answer.metadata.id != query.metadata.id
        || answer.metadata.response_code != ResponseCode::NoError
        || answer.answers.is_empty()
    {
        return None;
    }
    match answer.edns.as_ref()?.option(EdnsCode::NSID)? {
        EdnsOption::NSID(id) => Some(String::from_utf8_lossy(id.as_ref()).into_owned()),
        _ => None,
    }
}

fn count(shots: &[Shot], edge: &str) -> usize {
    shots
        .iter()
        .filter(|s| s.edge.as_deref() == Some(edge))
        .count()
}

fn lost(shots: &[Shot]) -> Vec<&Shot> {
    shots.iter().filter(|s| s.edge.is_none()).collect()
}

fn assert_spread(shots: &[Shot], what: &str) {
    let (one, two) = (count(shots, "edge1"), count(shots, "edge2"));
    eprintln!(
        "lab: {what}: edge1 {one}, edge2 {two}, lost {}",
        lost(shots).len()
    );
    assert!(lost(shots).is_empty(), "{what}: lost {:?}", lost(shots));
    let third = shots.len() / 3;
    assert!(
        one >= third && two >= third,
        "{what}: edge1 {one}, edge2 {two} of {}",
        shots.len()
    );
}

#[test]
#[ignore = "builds network namespaces and runs BIRD 2: needs root, bird2, iproute2, dig, python3; run by .ci/run"]
fn anycast_edges_spread_fail_over_and_drain() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the edge lab needs root");
    let began = Instant::now();
    let lab = Lab::up();
    let epoch = Instant::now();

    // 1. Many source ports: both edges.
    let shots = load(epoch, "spread", 400, 400).join().unwrap();
    assert_spread(&shots, "spread");

    // 2. Kill Picket on edge1 under 200 q/s: the health check withdraws the
    //    route and queries succeed again through edge2.
    let running = load(epoch, "kill", 200, 800);
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = epoch.elapsed();
    lab.run(&["kill", "1"], 10);
    let shots = running.join().unwrap();
    let failed = lost(&shots);
    let last_failure = failed.iter().map(|s| s.at).max();
    let failover = last_failure.map_or(Duration::ZERO, |at| at.saturating_sub(killed_at));
    eprintln!(
        "lab: kill: {} of {} queries failed, the last {:?} after the kill",
        failed.len(),
        shots.len(),
        failover
    );
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?}"
    );
    let after = shots
        .iter()
        .filter(|s| s.at > killed_at + Duration::from_secs(2));
    assert!(after.clone().count() > 100);
    assert!(after.clone().all(|s| s.edge.as_deref() == Some("edge2")));

    // 3. Edge1 comes back.
    lab.run(&["start", "1"], 10);
    lab.run(&["wait-paths", "2", "20"], 30);

    // 4. Drain edge2 (SIGTERM; its hook withdraws the route) under 200 q/s:
    //    nothing lost, exit 0, the traffic moves to edge1.
    let running = load(epoch, "drain", 200, 1000);
    std::thread::sleep(Duration::from_secs(1));
    let drained_at = epoch.elapsed();
    let exit = lab.run(&["drain", "2"], 30);
    let drain_took = epoch.elapsed() - drained_at;
    let shots = running.join().unwrap();
    eprintln!(
        "lab: drain: {} of {} queries lost, edge2 answered {} (the last {:?} after SIGTERM), picket {} after {:?}",
        lost(&shots).len(),
        shots.len(),
        count(&shots, "edge2"),
        shots
            .iter()
            .filter(|s| s.edge.as_deref() == Some("edge2"))
            .map(|s| s.at.saturating_sub(drained_at))
            .max()
            .unwrap_or_default(),
        exit.trim(),
        drain_took
    );
    assert_eq!(exit.trim(), "exit=0");
    assert!(lost(&shots).is_empty(), "drain lost {:?}", lost(&shots));
    assert!(
        count(&shots, "edge2") > 0,
        "edge2 took traffic before the drain"
    );
    let late = shots
        .iter()
        .filter(|s| s.at > drained_at + Duration::from_secs(1));
    assert!(late.clone().all(|s| s.edge.as_deref() == Some("edge1")));
    assert_eq!(lab.run(&["paths"], 10).trim(), "1");

    // 5. Edge2 comes back and takes its share again.
    lab.run(&["start", "2"], 10);
    lab.run(&["wait-paths", "2", "20"], 30);
    let shots = load(epoch, "back", 400, 400).join().unwrap();
    assert_spread(&shots, "after the drained edge came back");

    drop(lab);
    let took = began.elapsed();
    eprintln!("lab: took {took:?}");
    assert!(took < Duration::from_secs(180));
}
