//! Observability over real exchanges (issue 5): `/metrics` scraped over HTTP
//! after a known sequence of UDP/TCP queries, `/healthz` and `/readyz`, and
//! the query log (fields, client-address modes, exclusions, logrotate, and a
//! writer that is stuck without slowing answers down).

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::picket::config::Settings;
use ::picket::observe::{ClientIpMode, LogTarget, QueryLogSettings};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

const ZONE: &str = r#"
example.test.      3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.      3600 IN NS  ns1.example.test.
www.example.test.   300 IN A   192.0.2.1
mail.example.test.  300 IN A   192.0.2.1
mail.example.test.  300 IN MX  10 mail.example.test.
"#;

/// Test settings with the admin listener on a free loopback port.
fn with_metrics(upstreams: &[SocketAddr]) -> Settings {
    let mut settings = test_settings(upstreams);
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    settings
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "picket-observe-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

fn log_to(path: &Path) -> QueryLogSettings {
    QueryLogSettings::new(LogTarget::File(path.to_path_buf()))
}

/// Picket with `settings` and its query log to `path`, `adjust`ed.
fn start_logging(
    mut settings: Settings,
    path: &Path,
    adjust: impl FnOnce(&mut QueryLogSettings),
) -> Picket {
    let mut log = log_to(path);
    adjust(&mut log);
    settings.query_log = Some(log);
    start_picket_with(settings)
}

/// Every sample of a scrape: `name{labels}` as rendered → value.
async fn scrape(picket: &Picket) -> HashMap<String, f64> {
    let answer = http_get(picket.server.admin_addr().expect("metrics on"), "/metrics").await;
    assert_eq!(answer.status, 200);
    parse_exposition(&answer.body)
}

fn parse_exposition(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (
                series.to_string(),
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

/// The value of one series (0 when absent: a counter that never moved).
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

fn queries(transport: &str, action: &str, rcode: &str) -> String {
    format!(r#"picket_queries_total{{transport="{transport}",action="{action}",rcode="{rcode}"}}"#)
}

/// A header-only query claiming two questions (FORMERR) and a runt (dropped).
const FORMERR_PACKET: [u8; 12] = [0x12, 0x34, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0];
const RUNT_PACKET: [u8; 5] = [1, 2, 3, 4, 5];

/// Misses, hits, an NXDOMAIN, a FORMERR and a dropped runt, over UDP and TCP.
async fn known_sequence(picket: &Picket) {
    for _ in 0..3 {
        let a = query_udp(picket.addr, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&a).len(), 1);
    }
    assert_eq!(
        rcode(&query_tcp(picket.addr, "www.example.test", RecordType::A).await),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(&query_tcp(picket.addr, "mail.example.test", RecordType::MX).await),
        ResponseCode::NoError
    );
    for _ in 0..2 {
        let nx = query_udp(picket.addr, "nx.example.test", RecordType::A).await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    }
    let formerr = send_udp_raw(picket.addr, &FORMERR_PACKET)
        .await
        .expect("FORMERR answer");
    assert_eq!(formerr[3] & 0x0f, 1);
    assert!(send_udp_raw(picket.addr, &RUNT_PACKET).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_sequence_exactly() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(with_metrics(&[upstream.addr()]));
    // A second server in the same process must not share counters.
    let bystander = start_picket_with(with_metrics(&[upstream.addr()]));

    known_sequence(&picket).await;
    let held = TcpClient::connect(picket.addr).await;
    held.send_query("www.example.test", RecordType::A).await;
    assert!(held.recv().await.is_some());

    // Earlier TCP clients have closed; the server notices their EOF soon.
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = scrape(&picket).await;
        if value(&m, r#"picket_connections_open{transport="tcp"}"#) == 1.0
            || Instant::now() > deadline
        {
            break m;
        }
        real_sleep(Duration::from_millis(10)).await;
    };
    let up = upstream.addr();
    let expect = [
        (queries("udp", "resolve", "NOERROR"), 3.0),
        (queries("tcp", "resolve", "NOERROR"), 3.0),
        (queries("udp", "resolve", "NXDOMAIN"), 2.0),
        (queries("udp", "malformed", "FORMERR"), 1.0),
        (queries("udp", "malformed", "none"), 1.0),
        (r#"picket_cache_lookups_total{result="hit"}"#.into(), 5.0),
        (r#"picket_cache_lookups_total{result="miss"}"#.into(), 3.0),
        (r#"picket_cache_lookups_total{result="stale"}"#.into(), 0.0),
        ("picket_cache_entries".into(), 3.0),
        (
            format!(r#"picket_upstream_queries_total{{upstream="{up}"}}"#),
            3.0,
        ),
        (
            format!(r#"picket_upstream_errors_total{{upstream="{up}",kind="timeout"}}"#),
            0.0,
        ),
        (
            format!(r#"picket_upstream_latency_seconds_count{{upstream="{up}"}}"#),
            3.0,
        ),
        (
            format!(r#"picket_upstream_latency_seconds_bucket{{upstream="{up}",le="+Inf"}}"#),
            3.0,
        ),
        (
            format!(r#"picket_upstream_healthy{{upstream="{up}"}}"#),
            1.0,
        ),
        ("picket_upstream_inflight".into(), 0.0),
        (r#"picket_connections_open{transport="tcp"}"#.into(), 1.0),
        (
            r#"picket_policy_reloads_total{result="failure"}"#.into(),
            0.0,
        ),
    ];
    for (series, want) in &expect {
        assert_eq!(value(&m, series), *want, "{series}\n{m:#?}");
    }
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("picket_queries_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 10.0, "no other query series: {m:#?}");
    assert!(value(&m, "picket_cache_bytes") > 0.0);
    assert!(
        !m.keys().any(|k| k.contains("example.test")),
        "never a query name as a label"
    );

    drop(held);
    let others = scrape(&bystander).await;
    assert!(
        !others
            .keys()
            .any(|k| k.starts_with("picket_queries_total{")),
        "{others:#?}"
    );
    assert_eq!(value(&others, "picket_cache_entries"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_unknown_paths() {
    let upstream = Authority::start(ZONE);
    let mut settings = with_metrics(&[upstream.addr()]);
    settings.drain.grace = Duration::from_millis(600);
    settings.drain.finish_timeout = Duration::from_millis(200);
    let picket = start_picket_with(settings);
    let admin = picket.server.admin_addr().unwrap();
    assert_eq!(
        http_get(admin, "/healthz").await.status_and_body(),
        (200, "ok\n")
    );
    assert_eq!(
        http_get(admin, "/readyz").await.status_and_body(),
        (200, "ready\n")
    );
    assert_eq!(http_get(admin, "/").await.status, 200, "the dashboard");
    assert_eq!(http_get(admin, "/nowhere").await.status, 404);
    assert_eq!(http_get(admin, "/metrics/extra").await.status, 404);

    // A graceful stop turns not ready at once and keeps answering for the
    // grace period.
    let addr = picket.addr;
    let draining = tokio::spawn(picket.server.drain(std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(2);
    while http_get(admin, "/readyz").await.status != 503 {
        assert!(Instant::now() < deadline, "still ready while draining");
        real_sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        http_get(admin, "/readyz").await.status_and_body(),
        (503, "not ready: draining\n")
    );
    assert_eq!(http_get(admin, "/healthz").await.status, 200);
    let a = query_udp(addr, "www.example.test", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(draining.await.unwrap(), 0);
    // Stopped: the admin listener is gone with the workers.
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

/// A policy directory with one organization (the loopback clients) that
/// blocks `ads.example.test`.
fn policy_dir(dir: &TempDir) -> PathBuf {
    let policies = dir.path("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("lab.json"),
        // The global rule shares its id with one of lab's: their series and log
        // lines must stay apart (`no-ads` against `lab/no-ads`).
        r#"{ "global": { "rules": [
            { "id": "no-ads", "name": "Block trackers", "expression": "dns.fqdn == \"tracker.example.test\"", "action": "block" }
        ] },
        "organizations": [ { "id": "lab", "networks": ["127.0.0.0/8"], "rules": [
            { "id": "watch-www", "name": "Watch www", "expression": "dns.fqdn == \"www.example.test\"", "action": "audit" },
            { "id": "no-ads", "name": "Block ads", "expression": "dns.fqdn == \"ads.example.test\"", "action": "block" }
        ] } ] }"#,
    )
    .unwrap();
    policies
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_reloads_version_and_rule_hits() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("policy");
    let policies = policy_dir(&dir);
    let log = dir.path("queries.log");
    let mut settings = with_metrics(&[upstream.addr()]);
    settings.policies = ::picket::config::PolicySource::Dir(policies.clone());
    settings.query_log = Some(log_to(&log));
    let picket = start_picket_with(settings);

    for _ in 0..2 {
        let blocked = query_udp(picket.addr, "ads.example.test", RecordType::A).await;
        assert_eq!(rcode(&blocked), ResponseCode::NXDomain);
    }
    query_udp(picket.addr, "www.example.test", RecordType::A).await;
    let tracker = query_udp(picket.addr, "tracker.example.test", RecordType::A).await;
    assert_eq!(rcode(&tracker), ResponseCode::NXDomain);
    let m = scrape(&picket).await;
    assert_eq!(
        value(&m, r#"picket_rule_hits_total{org="lab",rule="lab/no-ads"}"#),
        2.0,
        "{m:#?}"
    );
    assert_eq!(
        value(&m, r#"picket_rule_hits_total{org="lab",rule="no-ads"}"#),
        1.0,
        "the global rule of the same id has its own series: {m:#?}"
    );
    assert_eq!(value(&m, &queries("udp", "block", "NXDOMAIN")), 3.0);
    assert_eq!(
        value(
            &m,
            r#"picket_rule_hits_total{org="lab",rule="lab/watch-www"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, &queries("udp", "resolve", "NOERROR")), 1.0);
    let version = picket.server.shared().policy.load().version() as f64;
    assert_eq!(value(&m, "picket_policy_version"), version);
    assert_eq!(
        value(&m, r#"picket_policy_reloads_total{result="success"}"#),
        0.0
    );

    // A good reload, then a broken file: the last good policy stays.
    picket.server.reload_policy();
    std::fs::write(policies.join("broken.json"), "{ not json").unwrap();
    picket.server.reload_policy();
    let m = scrape(&picket).await;
    assert_eq!(
        value(&m, r#"picket_policy_reloads_total{result="success"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"picket_policy_reloads_total{result="failure"}"#),
        1.0
    );
    let reloaded = picket.server.shared().policy.load().version() as f64;
    assert!(reloaded > version);
    assert_eq!(value(&m, "picket_policy_version"), reloaded);

    picket.server.stop();
    let lines = read_log(&log);
    assert_eq!(lines.len(), 4);
    for blocked in &lines[..2] {
        assert_fields(
            "a blocked query's line",
            blocked,
            &[
                ("org", "lab"),
                ("action", "block"),
                ("rule_id", "lab/no-ads"),
                ("rule_name", "Block ads"),
                ("rcode", "NXDOMAIN"),
                ("cache", "none"),
            ],
        );
        assert!(blocked["ede"].is_u64());
    }
    assert_eq!(lines[2]["org"], "lab");
    assert_eq!(lines[2]["rule_id"], Value::Null);
    assert_eq!(lines[2]["action"], "resolve");
    assert_eq!(lines[2]["audited"], serde_json::json!(["lab/watch-www"]));
    assert_eq!(lines[3]["rule_id"], "no-ads", "the global rule");
    assert_eq!(lines[3]["rule_name"], "Block trackers");
    assert_eq!(lines[0]["audited"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_once_the_only_upstream_is_dead() {
    let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut settings = with_metrics(&[dead]);
    settings.forwarder.attempt_timeout = Duration::from_millis(100);
    settings.forwarder.total_timeout = Duration::from_millis(600);
    let picket = start_picket_with(settings);
    let admin = picket.server.admin_addr().unwrap();
    // Never asked yet: presumed to answer.
    assert_eq!(http_get(admin, "/readyz").await.status, 200);

    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    let ready = http_get(admin, "/readyz").await;
    assert_eq!(ready.status_and_body(), (503, "not ready: no upstream\n"));
    assert_eq!(http_get(admin, "/healthz").await.status, 200);

    let m = scrape(&picket).await;
    let attempts = value(
        &m,
        r#"picket_upstream_queries_total{upstream="127.0.0.1:1"}"#,
    );
    let errors = value(
        &m,
        r#"picket_upstream_errors_total{upstream="127.0.0.1:1",kind="timeout"}"#,
    ) + value(
        &m,
        r#"picket_upstream_errors_total{upstream="127.0.0.1:1",kind="network"}"#,
    );
    assert!(attempts >= 3.0, "{m:#?}");
    assert_eq!(errors, attempts);
    assert_eq!(
        value(
            &m,
            r#"picket_upstream_latency_seconds_count{upstream="127.0.0.1:1"}"#
        ),
        0.0
    );
    assert_eq!(
        value(&m, r#"picket_upstream_healthy{upstream="127.0.0.1:1"}"#),
        0.0
    );
    assert_eq!(value(&m, &queries("udp", "resolve", "SERVFAIL")), 1.0);
    assert_eq!(
        value(&m, r#"picket_cache_lookups_total{result="miss"}"#),
        1.0
    );
}

/// Reads the log after the server stopped (stopping flushes it), in time
/// order (each worker thread's lines are in order; the threads' interleave).
fn read_log(path: &Path) -> Vec<Value> {
    let mut lines: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    lines.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn query_log_lines_carry_every_field() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("fields");
    let path = dir.path("queries.log");
    let picket = start_logging(with_metrics(&[upstream.addr()]), &path, |_| {});
    known_sequence(&picket).await;
    let m = scrape(&picket).await;
    picket.server.stop();

    let lines = read_log(&path);
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let up = upstream.addr().to_string();
    for line in &lines {
        let time = line["time"].as_str().unwrap();
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
        assert_eq!(line["org"], Value::Null);
        assert_eq!(line["client"], "127.0.0.0", "default: truncated to /24");
        assert!(line["duration_us"].as_u64().is_some());
        assert_eq!(line["rule_id"], Value::Null);
        assert_eq!(line["rule_name"], Value::Null);
    }
    let first = &lines[0];
    assert_fields(
        "the first line",
        first,
        &[
            ("transport", "udp"),
            ("qname", "www.example.test"),
            ("qtype", "A"),
            ("rcode", "NOERROR"),
            ("action", "resolve"),
            ("cache", "miss"),
            ("upstream", &up),
        ],
    );
    assert_eq!(first["ede"], Value::Null);
    assert_eq!(lines[1]["cache"], "hit");
    assert_eq!(lines[1]["upstream"], Value::Null);
    assert_eq!(lines[3]["transport"], "tcp");
    assert_eq!(lines[4]["qname"], "mail.example.test");
    assert_eq!(lines[4]["qtype"], "MX");
    assert_eq!(lines[5]["rcode"], "NXDOMAIN");
    assert_eq!(lines[5]["cache"], "miss");
    assert_eq!(lines[6]["cache"], "hit");
    assert_eq!(lines[7]["action"], "malformed");
    assert_eq!(lines[7]["rcode"], "FORMERR");
    assert_eq!(lines[7]["qtype"], Value::Null);
    assert_eq!(lines[8]["rcode"], Value::Null, "dropped: no answer sent");
    assert_eq!(value(&m, "picket_querylog_dropped_total"), 0.0);
    // Lines are flushed as soon as the writer's queue is empty.
    assert!(value(&m, "picket_querylog_lines_total") <= 9.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_address_modes() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("modes");
    for (mode, want) in [
        (ClientIpMode::None, Value::Null),
        (ClientIpMode::Truncate, Value::from("127.0.0.0")),
        (ClientIpMode::Full, Value::from("127.0.0.1")),
    ] {
        let path = dir.path(&format!("{mode:?}.log"));
        let settings = test_settings(&[upstream.addr()]);
        let picket = start_logging(settings, &path, |log| log.client_ip = mode);
        query_udp(picket.addr, "www.example.test", RecordType::A).await;
        picket.server.stop();
        let lines = read_log(&path);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["client"], want, "{mode:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(&upstream.addr().to_string(), "upstream");
        if mode != ClientIpMode::Full {
            assert!(
                !text.contains("127.0.0.1"),
                "{mode:?} leaks the address: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_names_and_their_subdomains_are_not_logged() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("exclude");
    let path = dir.path("queries.log");
    let list = dir.path("exclude.txt");
    std::fs::write(&list, "# monitoring probes\nmail.example.test\n").unwrap();
    let settings = test_settings(&[upstream.addr()]);
    let picket = start_logging(settings, &path, |log| log.exclude = Some(list));
    query_udp(picket.addr, "mail.example.test", RecordType::A).await;
    query_udp(picket.addr, "deep.sub.mail.example.test", RecordType::A).await;
    query_udp(picket.addr, "www.example.test", RecordType::A).await;
    query_udp(picket.addr, "notmail.example.test", RecordType::A).await;
    picket.server.stop();
    let names: Vec<String> = read_log(&path)
        .iter()
        .map(|l| l["qname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["www.example.test", "notmail.example.test"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reopens_the_log_after_logrotate_moved_it() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("reopen");
    let path = dir.path("queries.log");
    let picket = start_logging(test_settings(&[upstream.addr()]), &path, |_| {});
    query_udp(picket.addr, "www.example.test", RecordType::A).await;
    let rotated = dir.path("queries.log.1");
    wait_for_lines(&path, 1).await;
    std::fs::rename(&path, &rotated).unwrap();
    picket.server.reopen_logs();
    query_udp(picket.addr, "mail.example.test", RecordType::A).await;
    picket.server.stop();
    assert_eq!(read_log(&rotated)[0]["qname"], "www.example.test");
    let after = read_log(&path);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["qname"], "mail.example.test");
}

async fn wait_for_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
        assert!(Instant::now() < deadline, "the query log was not flushed");
        real_sleep(Duration::from_millis(10)).await;
    }
}

/// A FIFO whose read end is open (so writers may open it) but never read.
struct StuckPipe {
    path: PathBuf,
    reader: std::fs::File,
}

fn stuck_pipe(dir: &TempDir) -> StuckPipe {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.path("stuck.fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    // Smallest pipe buffer, so the writer blocks after a few lines (best effort).
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    StuckPipe { path, reader }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_log_writer_never_delays_answers() {
    let upstream = Authority::start(ZONE);
    let dir = TempDir::new("stuck");
    let pipe = stuck_pipe(&dir);
    let settings = with_metrics(&[upstream.addr()]);
    let picket = start_logging(settings, &pipe.path, |log| log.buffer_lines = 64);
    query_udp(picket.addr, "www.example.test", RecordType::A).await;

    // Plenty more lines than the pipe, the writer's buffer and the queue hold.
    const N: usize = 3_000;
    let addr = picket.addr;
    let slowest = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let query = QueryBuilder::new("www.example.test", RecordType::A)
            .id(7)
            .to_bytes();
        let mut buf = [0u8; 1500];
        let mut slowest = Duration::ZERO;
        for i in 0..N {
            let sent = Instant::now();
            socket.send(&query).unwrap();
            let len = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("query {i} unanswered: {e}"));
            assert!(len > 12 && buf[3] & 0x0f == 0);
            slowest = slowest.max(sent.elapsed());
        }
        slowest
    })
    .await
    .unwrap();
    // A writer that held answers up would hold them until the stop (no bound at all); 3 s is
    // far above any scheduling delay of a busy machine.
    assert!(
        slowest < Duration::from_secs(3),
        "an answer waited {slowest:?}"
    );

    let m = scrape(&picket).await;
    assert_eq!(
        value(&m, &queries("udp", "resolve", "NOERROR")),
        (N + 1) as f64
    );
    let dropped = value(&m, "picket_querylog_dropped_total");
    let written = value(&m, "picket_querylog_lines_total");
    eprintln!(
        "stuck writer: {written} lines written, {dropped} dropped, slowest answer {slowest:?}"
    );
    assert!(dropped > 0.0, "{m:#?}");
    assert!(written + dropped <= (N + 1) as f64);
    // Stopping gives up on the stuck writer after a bounded wait.
    let stopping = Instant::now();
    picket.server.stop();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    drop(pipe.reader);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_and_rate_limited_queries_are_counted() {
    use ::picket::admission::RateLimitSettings;
    let upstream = Authority::start(ZONE);

    // Outside the access list: REFUSED (EDE 18), counted as `denied`.
    let mut settings = with_metrics(&[upstream.addr()]);
    settings.access = allow_only(&["192.0.2.0/24"]);
    let closed = start_picket_with(settings);
    let refused = query_udp(closed.addr, "www.example.test", RecordType::A).await;
    assert_eq!(rcode(&refused), ResponseCode::Refused);
    assert_eq!(ede(&refused).map(|(code, _)| code), Some(18));
    let m = scrape(&closed).await;
    assert_eq!(
        value(&m, &queries("udp", "denied", "REFUSED")),
        1.0,
        "{m:#?}"
    );
    assert_eq!(upstream.queries(), 0);

    // Over the rate limit (1 q/s, no burst, no slip): dropped, counted.
    let mut settings = with_metrics(&[upstream.addr()]);
    settings.rate_limit = Some(RateLimitSettings {
        qps: 1,
        burst: 0,
        slip: 0,
    });
    let limited = start_picket_with(settings);
    let query = QueryBuilder::new("www.example.test", RecordType::A).to_bytes();
    let mut answered = 0;
    for _ in 0..3 {
        answered += usize::from(send_udp_raw(limited.addr, &query).await.is_some());
    }
    let m = scrape(&limited).await;
    let dropped = value(&m, &queries("udp", "ratelimited", "none"));
    assert!(answered >= 1 && dropped >= 1.0, "{m:#?}");
    assert_eq!(answered as f64 + dropped, 3.0);
}

/// A UDP datagram over 4096 bytes is counted as malformed, whatever its
/// first bytes say: FORMERR for a query's header, nothing for a response's.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_datagrams_are_counted_as_malformed() {
    let upstream = Authority::start(ZONE);
    let picket = start_picket_with(with_metrics(&[upstream.addr()]));
    let mut oversized = QueryBuilder::new("www.example.test", RecordType::A).to_bytes();
    oversized.resize(5000, 0);
    let formerr = send_udp_raw(picket.addr, &oversized)
        .await
        .expect("FORMERR answer");
    assert_eq!(formerr[3] & 0x0f, 1);
    oversized[2] |= 0x80;
    assert!(send_udp_raw(picket.addr, &oversized).await.is_none());

    let m = scrape(&picket).await;
    assert_eq!(value(&m, &queries("udp", "malformed", "FORMERR")), 1.0);
    assert_eq!(value(&m, &queries("udp", "malformed", "none")), 1.0);
    assert_eq!(value(&m, &queries("udp", "resolve", "NOERROR")), 0.0);
    assert_eq!(upstream.queries(), 0);
}
