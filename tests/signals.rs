//! The binary under signals, as an init system or an operator sends them:
//! any sequence of SIGTERM, SIGINT and SIGHUP ends with exit status 0 and
//! no panic, and a reload that never finishes does not hold up a stop.

mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::https::HttpsServer;
use common::{a_query, policy_file_dir, temp_dir, PicketProcess, ServeOptions};
use libc::{SIGHUP, SIGINT, SIGTERM};

/// Bound on every wait here (start-up, a log line, the exit): generous for
/// a loaded machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `picket serve` whose stderr log is read line by line.
struct Running {
    process: PicketProcess,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Running {
    /// Starts the binary (one worker, its info log on a pipe) with `options`.
    fn start(options: &mut ServeOptions) -> Running {
        let mut process = options
            .threads(1)
            .flag("--log-level", "info")
            .spawn_with(|command| {
                command
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
            });
        let stderr = process.child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Running {
            process,
            lines,
            log: Vec::new(),
        };
        running.wait_for_log("answering");
        running
    }

    /// Waits for the next log line containing `needle` and returns it;
    /// panics with the log if none comes.
    fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with `{needle}`:\n{}", self.log.join("\n"));
    }

    fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    /// Waits for the exit; the status (None if it did not come) and the
    /// whole log.
    fn exit(&mut self) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.process.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_some() {
            // The child is gone: its stderr ends, and the reader with it.
            self.log.extend(self.lines.iter());
        } else {
            self.log.extend(self.lines.try_iter());
        }
        (status, self.log.join("\n"))
    }
}

/// An upstream that takes queries and never answers, so that a query stays
/// in flight through a drain.
fn silent_upstream() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// Sends a query to Picket and waits until it reached the upstream (it is
/// then in flight, waiting for an answer that does not come).
fn query_in_flight(picket: &Running, upstream: &UdpSocket) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let query = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a',
        b'm', b'p', b'l', b'e', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
    ];
    client.send_to(&query, picket.process.addr).unwrap();
    let mut buf = [0u8; 512];
    upstream
        .recv_from(&mut buf)
        .expect("the query reaches the upstream");
}

fn name(signal: libc::c_int) -> &'static str {
    match signal {
        SIGTERM => "TERM",
        SIGINT => "INT",
        SIGHUP => "HUP",
        _ => "?",
    }
}

/// Every sequence, 10 ms apart, with a query in flight through the drain
/// (so the drain has something to wait for when the second signal comes):
/// exit status 0, and no panic.
#[test]
fn any_sequence_of_signals_ends_with_exit_zero_and_no_panic() {
    let sequences: [&[libc::c_int]; 5] = [
        &[SIGTERM, SIGTERM],
        &[SIGTERM, SIGINT],
        &[SIGTERM, SIGTERM, SIGTERM],
        &[SIGHUP, SIGTERM],
        &[SIGINT, SIGHUP],
    ];
    for sequence in sequences {
        let names: Vec<&str> = sequence.iter().map(|&s| name(s)).collect();
        let upstream = silent_upstream();
        let mut picket = Running::start(
            PicketProcess::options()
                .args(&["--no-policy"])
                .upstream(upstream.local_addr().unwrap())
                .dnssec_off()
                .flag("--upstream-timeout-ms", "1000")
                .flag("--drain-grace", "1s")
                .flag("--drain-timeout", "10s"),
        );
        query_in_flight(&picket, &upstream);
        for (i, &signal) in sequence.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            picket.signal(signal);
        }
        let (status, log) = picket.exit();
        let status = status.unwrap_or_else(|| panic!("{names:?}: picket did not exit:\n{log}"));
        assert!(!log.contains("panicked"), "{names:?}: a panic:\n{log}");
        assert_eq!(status.code(), Some(0), "{names:?}:\n{log}");
        assert!(log.contains("drained"), "{names:?}: drained:\n{log}");
    }
}

/// A policy reload that never ends (its list is a FIFO nobody writes: the
/// far end of a 1M-domain list on slow storage) does not hold up SIGTERM:
/// the process stops, exit status 0, while the reload is still running.
#[test]
fn sigterm_during_a_reload_that_never_ends_stops_at_once() {
    let dir = temp_dir("signals-reload");
    let list = dir.join("blocklist.txt");
    std::fs::write(&list, "blocked.example.test\n").unwrap();
    let mut picket = Running::start(
        PicketProcess::options()
            .args(&["--no-policy"])
            .flag("--blocklist", &list)
            .upstream("127.0.0.1:9")
            .flag("--drain-grace", "0s"),
    );
    std::fs::remove_file(&list).unwrap();
    make_fifo(&list);

    picket.signal(SIGHUP);
    picket.wait_for_log("SIGHUP: reloading");
    // Reloads are coalesced: more requests while one runs change nothing.
    picket.signal(SIGHUP);
    picket.signal(SIGTERM);
    let (status, log) = picket.exit();
    let status = status.unwrap_or_else(|| panic!("SIGTERM waited for the reload:\n{log}"));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("stopping"), "{log}");
    assert!(
        !log.contains("policy reloaded"),
        "the reload cannot have finished:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn make_fifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// A reload stuck on a list file (a FIFO nobody writes: a list on a hung mount) holds up
/// neither the `url` list refresher nor SIGHUP: downloads go on, and what they and a SIGHUP
/// ask for meanwhile waits for the one reload thread and runs as one reload after the stuck
/// one, which names them all (`requested_by`) and puts the newest download in force.
#[test]
fn list_downloads_go_on_during_a_stuck_reload_and_reload_once_with_sighup_after_it() {
    let dir = temp_dir("signals-url-reload");
    let list = dir.join("blocklist.txt");
    std::fs::write(&list, "blocked.example.test\n").unwrap();
    let feeds = HttpsServer::start();
    feeds.publish("ads.txt", "ads-1.example.test\n");
    let policies = policy_file_dir(
        "signals-url-policy",
        &format!(
            r#"{{ "global": {{
              "lists": {{ "ads": {{ "url": "{}", "refresh": "1s" }} }},
              "rules": [ {{ "id": "ads", "expression": "list.ads", "action": "block" }} ] }} }}"#,
            feeds.url("ads.txt")
        ),
    );
    let mut picket = Running::start(
        PicketProcess::options()
            .flag("--policies", &policies)
            .flag("--blocklist", &list)
            .flag("--ca-file", &feeds.ca_file)
            .upstream("127.0.0.1:9"),
    );
    let first = picket.wait_for_log("policy reloaded");
    assert!(first.contains("requested_by=list downloaded"), "{first}");

    // The list file becomes a FIFO (a second name kept to write it later): the SIGHUP reload
    // blocks opening it.
    let pipe = dir.join("pipe");
    make_fifo(&pipe);
    std::fs::hard_link(&pipe, dir.join("pipe-writer")).unwrap();
    std::fs::rename(&pipe, &list).unwrap();
    picket.signal(SIGHUP);
    picket.wait_for_log("SIGHUP: reloading");

    // Two new versions of the url list are downloaded while that reload is stuck.
    for version in 2..=3 {
        feeds.publish("ads.txt", format!("ads-{version}.example.test\n"));
        wait_for(
            &format!("version {version} of the list is downloaded"),
            || {
                let full = feeds.requests("ads.txt");
                full.iter().filter(|s| s.status == 200).count() >= version
            },
        );
    }
    picket.signal(SIGHUP);
    picket.wait_for_log("SIGHUP: reloading");

    // The list file is a file again, and the stuck reload gets the FIFO's end.
    let file = dir.join("file");
    std::fs::write(&file, "blocked.example.test\n").unwrap();
    std::fs::rename(&file, &list).unwrap();
    std::fs::write(dir.join("pipe-writer"), "blocked.example.test\n").unwrap();
    let stuck = picket.wait_for_log("policy reloaded");
    assert!(stuck.contains("SIGHUP"), "{stuck}");
    let after = picket.wait_for_log("policy reloaded");
    assert!(
        after.contains("SIGHUP") && after.contains("list downloaded"),
        "one reload for the downloads and the second SIGHUP: {after}\n{}",
        picket.log.join("\n")
    );
    assert_eq!(rcode(&picket, "ads-3.example.test"), 3, "NXDOMAIN");
    assert_eq!(rcode(&picket, "blocked.example.test"), 3, "NXDOMAIN");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `done` until it holds; panics after [`PATIENCE`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The RCODE of Picket's answer to `name` A over UDP.
fn rcode(picket: &Running, name: &str) -> u8 {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client
        .send_to(&a_query(0x4242, name), picket.process.addr)
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = client.recv_from(&mut buf).expect("an answer");
    assert!(n >= 12, "a DNS header");
    buf[3] & 0x0f
}
