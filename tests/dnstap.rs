//! dnstap output (`--dnstap`), read back the way a collector reads it.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::picket::config::Settings;
use ::picket::observe::dnstap::fstrm::{self, control, Control};
use ::picket::observe::dnstap::proto::{self, message::Type};
use ::picket::observe::{DnstapSettings, DnstapTarget};
use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use prost::Message as _;

const ZONE: &str = "
example.test.      3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.      3600 IN NS  ns1.example.test.
www.example.test.   300 IN A   192.0.2.1
";

/// A Frame Streams collector on a Unix socket, as fstrm_capture is: it
/// accepts sessions one after another and keeps every dnstap message.
struct Collector {
    path: PathBuf,
    messages: Arc<Mutex<Vec<proto::Dnstap>>>,
    /// Content types of the START frames seen.
    started: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    /// For each STOP frame seen, how many messages had arrived before it.
    stopped_after: Arc<Mutex<Vec<usize>>>,
}

impl Collector {
    fn start(path: PathBuf) -> Collector {
        let listener = UnixListener::bind(&path).expect("bind the collector socket");
        Self::serve(path, move || listener.accept().map(|(stream, _)| stream))
    }

    /// The same collector on TCP (`--dnstap tcp:HOST:PORT`).
    fn start_tcp() -> (Collector, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = move || listener.accept().map(|(stream, _)| stream);
        (Self::serve(PathBuf::new(), accept), addr)
    }

    /// Runs the reader's side of every session `accept` hands over, one
    /// after another, on a thread of its own.
    fn serve<S: Read + Write>(
        path: PathBuf,
        mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    ) -> Collector {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let stopped_after = Arc::new(Mutex::new(Vec::new()));
        let (m, s, e) = (messages.clone(), started.clone(), stopped_after.clone());
        std::thread::spawn(move || {
            while let Ok(mut stream) = accept() {
                let _ = session(&mut stream, &m, &s, &e);
            }
        });
        Collector {
            path,
            messages,
            started,
            stopped_after,
        }
    }

    fn messages(&self) -> Vec<proto::Message> {
        let all = self.messages.lock().unwrap();
        all.iter().filter_map(|d| d.message.clone()).collect()
    }

    /// Waits (bounded) until `count` messages arrived.
    fn wait_for(&self, count: usize) -> Vec<proto::Message> {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let seen = self.messages();
            if seen.len() >= count || Instant::now() > until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The reader's side: READY → ACCEPT, START, data frames until STOP → FINISH.
fn session(
    stream: &mut (impl Read + Write),
    messages: &Mutex<Vec<proto::Dnstap>>,
    started: &Mutex<Vec<Vec<Vec<u8>>>>,
    stopped_after: &Mutex<Vec<usize>>,
) -> std::io::Result<()> {
    let ready = Control::read(stream)?;
    assert_eq!(ready.kind, control::READY);
    assert!(ready.content_types.iter().any(|t| t == fstrm::CONTENT_TYPE));
    stream.write_all(&Control::new(control::ACCEPT).encode())?;
    let start = Control::read(stream)?;
    assert_eq!(start.kind, control::START);
    started.lock().unwrap().push(start.content_types);
    loop {
        let mut len = [0; 4];
        stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            // A control frame: STOP ends the session.
            let mut rest = [0; 8];
            stream.read_exact(&mut rest)?;
            let kind = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            assert_eq!(kind, control::STOP);
            stopped_after
                .lock()
                .unwrap()
                .push(messages.lock().unwrap().len());
            stream.write_all(&Control::new(control::FINISH).encode())?;
            return Ok(());
        }
        let mut frame = vec![0; len];
        stream.read_exact(&mut frame)?;
        let decoded = proto::Dnstap::decode(frame.as_slice()).expect("a dnstap message");
        messages.lock().unwrap().push(decoded);
    }
}

fn dnstap_settings(upstreams: &[SocketAddr], socket: &std::path::Path, upstream: bool) -> Settings {
    let mut settings = test_settings(upstreams);
    settings.dnstap = Some(DnstapSettings {
        target: DnstapTarget::Unix(socket.to_path_buf()),
        identity: Some("edge-test-1".into()),
        version: None,
        upstream,
        queue: 1024,
    });
    settings
}

/// Picket forwarding to the test zone's authority and sending dnstap (its
/// upstream exchanges too when `upstream`) to a collector on a Unix socket in
/// a fresh directory.
struct Tap {
    dir: PathBuf,
    collector: Collector,
    upstream: Authority,
    picket: Picket,
}

impl Tap {
    fn start(tag: &str, upstream: bool) -> Tap {
        let dir = temp_dir(tag);
        let collector = Collector::start(dir.join("tap.sock"));
        let authority = Authority::start(ZONE);
        let settings = dnstap_settings(&[authority.addr()], &collector.path, upstream);
        Tap {
            dir,
            collector,
            upstream: authority,
            picket: start_picket_with(settings),
        }
    }

    /// Stops Picket (which ends the dnstap session) and removes the
    /// directory; the collector keeps what it received.
    fn stop(self) -> Collector {
        self.picket.server.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.collector
    }
}

fn of_type(messages: &[proto::Message], kind: Type) -> Vec<proto::Message> {
    messages
        .iter()
        .filter(|m| m.r#type == kind as i32)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_queries_and_responses_reach_the_collector_verbatim() {
    let tap = Tap::start("dnstap", false);

    // A UDP query from a socket whose port we know, and its answer as received.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = QueryBuilder::new("www.example.test", RecordType::A)
        .id(4242)
        .to_bytes();
    client.send_to(&query, tap.picket.addr).await.unwrap();
    let mut buf = vec![0; 4096];
    let len = tokio::time::timeout(ANSWER_TIMEOUT, client.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = buf[..len].to_vec();
    let tcp = query_tcp(tap.picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&tcp).len(), 1);

    let seen = tap.collector.wait_for(4);
    let queries = of_type(&seen, Type::ClientQuery);
    let responses = of_type(&seen, Type::ClientResponse);
    assert_eq!((queries.len(), responses.len()), (2, 2), "{seen:#?}");
    let udp_query = queries
        .iter()
        .find(|m| m.socket_protocol == Some(proto::SocketProtocol::Udp as i32))
        .expect("the UDP query");
    assert_eq!(udp_query.query_message.as_deref(), Some(query.as_slice()));
    assert_eq!(
        udp_query.query_address.as_deref(),
        Some(&[127, 0, 0, 1][..])
    );
    assert_eq!(
        udp_query.query_port,
        Some(u32::from(client.local_addr().unwrap().port()))
    );
    assert_eq!(
        udp_query.socket_family,
        Some(proto::SocketFamily::Inet as i32)
    );
    assert!(udp_query.query_time_sec.unwrap() > 1_700_000_000);
    let udp_response = responses
        .iter()
        .find(|m| m.socket_protocol == Some(proto::SocketProtocol::Udp as i32))
        .expect("the UDP response");
    assert_eq!(
        udp_response.response_message.as_deref(),
        Some(answer.as_slice())
    );
    assert!(udp_response.response_time_sec >= udp_response.query_time_sec);
    assert!(queries
        .iter()
        .any(|m| m.socket_protocol == Some(proto::SocketProtocol::Tcp as i32)));
    // No upstream messages unless asked for.
    assert!(of_type(&seen, Type::ForwarderQuery).is_empty());
    let all = tap.collector.messages.lock().unwrap().clone();
    assert!(all
        .iter()
        .all(|d| d.identity.as_deref() == Some(&b"edge-test-1"[..])));
    assert!(all[0].version.as_ref().unwrap().starts_with(b"picket "));
    assert_eq!(
        tap.collector.started.lock().unwrap()[0],
        vec![fstrm::CONTENT_TYPE.to_vec()]
    );
    tap.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_exchanges_are_forwarder_messages_with_dnstap_upstream() {
    let tap = Tap::start("dnstap-up", true);
    let answer = query_udp(tap.picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer).len(), 1);

    let seen = tap.collector.wait_for(4);
    let sent = of_type(&seen, Type::ForwarderQuery);
    let got = of_type(&seen, Type::ForwarderResponse);
    assert_eq!((sent.len(), got.len()), (1, 1), "{seen:#?}");
    let server = tap.upstream.addr();
    assert_eq!(
        sent[0].response_address.as_deref(),
        Some(&[127, 0, 0, 1][..])
    );
    assert_eq!(sent[0].response_port, Some(u32::from(server.port())));
    // Verbatim: the query as the authority received it (0x20 case and all).
    let asked = Message::from_vec(sent[0].query_message.as_deref().unwrap()).unwrap();
    let received = tap
        .upstream
        .last_query()
        .expect("the authority saw the query");
    assert_eq!(asked.metadata.id, received.metadata.id);
    assert_eq!(asked.queries, received.queries);
    let reply = Message::from_vec(got[0].response_message.as_deref().unwrap()).unwrap();
    assert_eq!(reply.metadata.id, asked.metadata.id);
    assert_eq!(reply.answers.len(), 1);
    tap.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_comes_late_gets_what_follows_and_drops_are_counted() {
    let dir = temp_dir("dnstap-late");
    let socket = dir.join("tap.sock");
    let upstream = Authority::start(ZONE);
    let mut settings = dnstap_settings(&[upstream.addr()], &socket, false);
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    let picket = start_picket_with(settings);
    // No collector yet: answers still come, the messages are dropped.
    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer).len(), 1);
    let metrics = picket.server.admin_addr().expect("metrics listener");
    let dropped = wait_for_metric(metrics, "picket_dnstap_dropped_total", |v| v >= 1.0).await;
    assert!(dropped >= 1.0);

    let collector = Collector::start(socket);
    // The writer retries with backoff; queries keep flowing until one lands.
    let until = Instant::now() + Duration::from_secs(20);
    while collector.messages().is_empty() && Instant::now() < until {
        query_udp(picket.addr, "www.example.test", RecordType::A).await;
        real_sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !collector.messages().is_empty(),
        "no message after the collector came up"
    );
    let frames = wait_for_metric(metrics, "picket_dnstap_frames_total", |v| v >= 1.0).await;
    assert!(frames >= 1.0);
    picket.server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A collector that accepts the handshake and then closes every session at
/// once (a relay that lost its own sink) is reconnected to with backoff,
/// not at the rate of queries: 40 queries over 2 s, each of which would
/// find the session gone, open at most 6 sessions (100, 200, 400, 800 ms of
/// backoff), and Picket goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_closes_every_session_is_reconnected_to_with_backoff() {
    let dir = temp_dir("dnstap-closing");
    let socket = dir.join("tap.sock");
    let listener = UnixListener::bind(&socket).expect("bind the collector socket");
    let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sessions.clone();
    std::thread::spawn(move || {
        while let Ok((mut stream, _)) = listener.accept() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut handshake = || -> std::io::Result<()> {
                Control::read(&mut stream)?;
                stream.write_all(&Control::new(control::ACCEPT).encode())?;
                Control::read(&mut stream)?;
                Ok(())
            };
            let _ = handshake();
            // Dropped: closed right after START.
        }
    });
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(dnstap_settings(&[upstream.addr()], &socket, false));
    for _ in 0..40 {
        let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&answer).len(), 1);
        real_sleep(Duration::from_millis(50)).await;
    }
    let opened = sessions.load(std::sync::atomic::Ordering::SeqCst);
    picket.server.stop();
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        (1..=6).contains(&opened),
        "{opened} sessions in 2 s: reconnected without backoff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_server_ends_the_session_with_stop_and_delivers_everything() {
    let tap = Tap::start("dnstap-stop", false);
    for _ in 0..20 {
        query_udp(tap.picket.addr, "www.example.test", RecordType::A).await;
    }
    let collector = tap.stop();
    // Stop flushed the queue, then sent STOP: every message came before it. (Read when the
    // collector's thread has seen STOP, not when stop returns: on a loaded machine that thread
    // may not have run yet, and stop waits for the collector's FINISH only so long.)
    poll_until("the collector saw STOP", || async {
        !collector.stopped_after.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*collector.stopped_after.lock().unwrap(), [40]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_collector_gets_the_same_messages() {
    let (collector, addr) = Collector::start_tcp();
    let upstream = Authority::start(ZONE);
    let mut settings = dnstap_settings(&[upstream.addr()], Path::new("unused"), false);
    settings.dnstap.as_mut().unwrap().target = DnstapTarget::Tcp(addr.to_string());
    let picket = start_picket_with(settings);
    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer).len(), 1);
    let seen = collector.wait_for(2);
    assert_eq!(of_type(&seen, Type::ClientQuery).len(), 1, "{seen:#?}");
    assert_eq!(of_type(&seen, Type::ClientResponse).len(), 1, "{seen:#?}");
    picket.server.stop();
}

/// The ecosystem's own tools: Debian's fstrm_capture receives the session
/// from the picket binary, and dnstap-ldns decodes what it wrote.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs fstrm_capture (fstrm-bin) and dnstap-ldns from Debian; run by .ci/run"]
async fn fstrm_capture_and_dnstap_ldns_read_what_picket_sends() {
    use std::process::{Command, Stdio};
    let dir = temp_dir("dnstap-peer");
    let (socket, capture) = (dir.join("tap.sock"), dir.join("out.fstrm"));
    let mut fstrm = Command::new("fstrm_capture")
        .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
        .arg(&socket)
        .arg("-w")
        .arg(&capture)
        .stderr(Stdio::null())
        .spawn()
        .expect("fstrm_capture (apt-get install fstrm-bin)");
    let until = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < until {
        real_sleep(Duration::from_millis(20)).await;
    }
    let upstream = Authority::start(ZONE);
    let mut picket = PicketProcess::options()
        .upstream(upstream.addr())
        .dnssec_off()
        .flag("--dnstap", format!("unix:{}", socket.display()))
        .args(&["--dnstap-upstream"])
        .flag("--dnstap-identity", "lab-node-7")
        .flag("--drain-grace", "0s")
        .quiet()
        .spawn();
    wait_until_answering(picket.addr).await;
    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer).len(), 1);
    query_tcp(picket.addr, "nothing.example.test", RecordType::AAAA).await;
    // SIGTERM: Picket sends what is queued, then STOP.
    send_signal(picket.child.id(), "TERM");
    let _ = picket.child.wait();
    send_signal(fstrm.id(), "INT");
    let _ = fstrm.wait();

    let out = Command::new("dnstap-ldns")
        .args(["-q", "-r"])
        .arg(&capture)
        .output()
        .expect("dnstap-ldns (apt-get install dnstap-ldns)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |kind: &str, what: &str| text.lines().any(|l| l.contains(kind) && l.contains(what));
    assert!(
        line(" CQ 127.0.0.1 UDP ", "\"www.example.test.\" IN A"),
        "{text}"
    );
    assert!(
        line(" CR 127.0.0.1 UDP ", "\"www.example.test.\" IN A"),
        "{text}"
    );
    assert!(
        line(" CQ 127.0.0.1 TCP ", "\"nothing.example.test.\" IN AAAA"),
        "{text}"
    );
    assert!(line(" FQ 127.0.0.1 UDP ", "IN A"), "{text}");
    assert!(line(" FR 127.0.0.1 UDP ", "IN A"), "{text}");
    let yaml = Command::new("dnstap-ldns")
        .args(["-y", "-r"])
        .arg(&capture)
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&yaml.stdout);
    assert!(yaml.contains("identity: \"lab-node-7\""), "{yaml}");
    assert!(yaml.contains("type: CLIENT_RESPONSE"), "{yaml}");
    assert!(
        yaml.contains("192.0.2.1"),
        "the answer's address in the decoded response: {yaml}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends a signal with kill(1): no libc in the tests.
fn send_signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// Polls `/metrics` until `name` satisfies `done` (bounded), and returns it.
async fn wait_for_metric(admin: SocketAddr, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let value = metric(admin, name).await;
        if done(value) || Instant::now() > until {
            return value;
        }
        real_sleep(Duration::from_millis(50)).await;
    }
}

/// The dnstap types build.rs generates from the committed descriptor set
/// (src/observe/dnstap/dnstap.fds) must be exactly what prost-build generates
/// from dnstap.proto through protoc, so the schema is the one source of truth.
/// `PICKET_REGENERATE=1` rewrites the descriptor set instead of comparing.
#[test]
#[ignore = "needs protoc (Debian's protobuf-compiler); run by .ci/run"]
fn codegen_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/observe/dnstap");
    let out = temp_dir("dnstap-codegen");
    prost_build::Config::new()
        .out_dir(&out)
        .file_descriptor_set_path(out.join("dnstap.fds"))
        .compile_protos(&[root.join("dnstap.proto")], &[&root])
        .expect("protoc compiles dnstap.proto");
    let generated = std::fs::read_to_string(out.join("dnstap.rs")).unwrap();
    let descriptors = std::fs::read(out.join("dnstap.fds")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let committed_path = root.join("dnstap.fds");
    if std::env::var_os("PICKET_REGENERATE").is_some() {
        std::fs::write(&committed_path, &descriptors).unwrap();
        return;
    }
    let built = include_str!(concat!(env!("OUT_DIR"), "/dnstap.rs"));
    assert!(
        built == generated,
        "{} is stale: regenerate it with PICKET_REGENERATE=1 cargo test --test dnstap -- --ignored codegen",
        committed_path.display()
    );
}
