//! The query log: one JSON line per query (DESIGN.md §5, research
//! reliability.md §3).
//!
//! The line is formatted on the worker thread (only when the log is on) and
//! handed to a writer thread through a bounded channel. When the writer falls
//! behind (slow disk, a full pipe), lines are dropped and counted: a DNS
//! answer never waits for the log. The writer batches lines into one buffered
//! write, rotates by size (rename to `PATH.1`), and reopens the file on
//! request (SIGHUP from logrotate).
//!
//! Privacy: the client address is truncated by default (/24 for IPv4, /56
//! for IPv6), can be left out entirely, and is written in full only when asked.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::outcome::Outcome;
use crate::protocol::wire::rcode;

/// Default bound of the channel to the writer, in lines (~16 MiB of lines at most).
pub const DEFAULT_BUFFER_LINES: usize = 65_536;
/// How long [`QueryLog::close`] waits for the writer to flush.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How often an idle writer looks at its flags.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// Lines written per batch before a flush.
const BATCH: usize = 1024;
/// Capacity a line starts with; a typical line is 250-300 bytes.
const LINE_CAPACITY: usize = 320;

/// How much of the client's address goes into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientIpMode {
    /// Left out.
    None,
    /// The network: /24 for IPv4, /56 for IPv6 (host bits zeroed).
    #[default]
    Truncate,
    /// The whole address.
    Full,
}

impl std::str::FromStr for ClientIpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "truncate" => Ok(Self::Truncate),
            "full" => Ok(Self::Full),
            other => Err(format!(
                "`{other}` is not a client IP mode: use none, truncate or full"
            )),
        }
    }
}

impl ClientIpMode {
    /// The address as this mode logs it.
    pub fn apply(self, ip: IpAddr) -> Option<IpAddr> {
        match self {
            Self::None => None,
            Self::Full => Some(ip),
            Self::Truncate => Some(truncate(ip)),
        }
    }
}

/// Zeroes the host part: /24 for IPv4 (and IPv4-mapped IPv6), /56 for IPv6.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(truncate_v4(v4)),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 72) - 1))),
        },
    }
}

fn truncate_v4(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(ip.to_bits() & 0xffff_ff00)
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (`--query-log -`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// `--query-log` and its companions.
#[derive(Debug, Clone)]
pub struct QueryLogSettings {
    pub target: LogTarget,
    /// Rotate (rename to `PATH.1`) once the file would grow past this many bytes.
    pub max_bytes: Option<u64>,
    pub client_ip: ClientIpMode,
    /// Names (and their subdomains) never logged, one per line.
    pub exclude: Option<PathBuf>,
    /// Lines that may wait for the writer before new ones are dropped.
    pub buffer_lines: usize,
}

impl QueryLogSettings {
    /// Logging to `target` with the defaults.
    pub fn new(target: LogTarget) -> Self {
        Self {
            target,
            max_bytes: None,
            client_ip: ClientIpMode::default(),
            exclude: None,
            buffer_lines: DEFAULT_BUFFER_LINES,
        }
    }
}

/// Names that are not logged; an entry covers its subdomains.
#[derive(Debug, Default)]
pub struct Exclusions {
    names: HashSet<Box<str>>,
}

impl Exclusions {
    /// Reads one domain per line; `#` starts a comment, a leading `*.` and a
    /// trailing dot are ignored.
    pub fn load(path: &Path) -> io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses the list's text.
    pub fn parse(text: &str) -> Self {
        let names = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(|line| {
                let name = line.trim_start_matches("*.").trim_end_matches('.');
                name.to_ascii_lowercase().into_boxed_str()
            })
            .filter(|name| !name.is_empty())
            .collect();
        Self { names }
    }

    /// Entries on the list.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether `qname` (lower case, no trailing dot) or a parent is listed.
    pub fn covers(&self, qname: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let mut name = qname;
        loop {
            if self.names.contains(name) {
                return true;
            }
            match name.find('.') {
                Some(dot) => name = &name[dot + 1..],
                None => return false,
            }
        }
    }
}

/// Reads one of the log's counters (for a metrics probe).
pub type CounterRead = Box<dyn Fn() -> u64 + Send + Sync>;

/// Counters and flags shared with the writer thread.
#[derive(Debug, Default)]
struct State {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    reopen: AtomicBool,
    closing: AtomicBool,
}

/// The query log of one server.
pub struct QueryLog {
    tx: SyncSender<Vec<u8>>,
    state: Arc<State>,
    exclude: Exclusions,
    client_ip: ClientIpMode,
    /// Signalled by the writer thread when it exits; taken by the first close.
    done: Mutex<Option<Receiver<()>>>,
}

impl fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryLog")
            .field("state", &self.state)
            .field("exclude", &self.exclude.len())
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

impl QueryLog {
    /// Opens the target now (so a bad path fails at start) and starts the writer thread.
    pub fn open(settings: &QueryLogSettings) -> io::Result<QueryLog> {
        let exclude = match &settings.exclude {
            Some(path) => Exclusions::load(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot read --log-exclude {}: {e}", path.display()),
                )
            })?,
            None => Exclusions::default(),
        };
        let sink = Sink::open(&settings.target, settings.max_bytes)?;
        let (tx, rx) = mpsc::sync_channel(settings.buffer_lines.max(1));
        let (done_tx, done_rx) = mpsc::channel();
        let state = Arc::new(State::default());
        let writer_state = state.clone();
        std::thread::Builder::new()
            .name("picket-querylog".into())
            .spawn(move || {
                write_lines(rx, sink, &writer_state);
                let _ = done_tx.send(());
            })?;
        Ok(QueryLog {
            tx,
            state,
            exclude,
            client_ip: settings.client_ip,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// Logs one query unless its name is excluded. Never blocks: if the
    /// writer is behind, the line is dropped and counted.
    #[inline]
    pub fn record(&self, outcome: &Outcome<'_>) {
        if self.exclude.covers(outcome.qname) {
            return;
        }
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        format_line(outcome, self.client_ip, SystemTime::now(), &mut line);
        self.send(line);
    }

    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the writer to reopen its file (after logrotate moved it away).
    pub fn reopen(&self) {
        self.state.reopen.store(true, Ordering::Relaxed);
        // Wake an idle writer; if the channel is full it is busy and sees the flag soon.
        let _ = self.tx.try_send(Vec::new());
    }

    /// Flushes what is queued and stops the writer; waits at most a couple
    /// of seconds (a writer stuck on a full pipe is abandoned). Idempotent.
    pub fn close(&self) {
        let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        self.state.closing.store(true, Ordering::Relaxed);
        let _ = self.tx.try_send(Vec::new());
        if done.recv_timeout(CLOSE_WAIT).is_err() {
            tracing::warn!("the query-log writer did not finish in time; unwritten lines are lost");
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Write and reopen errors.
    pub fn errors(&self) -> u64 {
        self.state.errors.load(Ordering::Relaxed)
    }

    /// Readers of the counters for metric probes.
    pub fn counters(&self) -> [(&'static str, CounterRead); 3] {
        let (a, b, c) = (self.state.clone(), self.state.clone(), self.state.clone());
        [
            (
                super::metrics::name::QUERYLOG_LINES,
                Box::new(move || a.written.load(Ordering::Relaxed)),
            ),
            (
                super::metrics::name::QUERYLOG_DROPPED,
                Box::new(move || b.dropped.load(Ordering::Relaxed)),
            ),
            (
                super::metrics::name::QUERYLOG_ERRORS,
                Box::new(move || c.errors.load(Ordering::Relaxed)),
            ),
        ]
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: batches lines into the buffered sink, flushes when the
/// queue is empty, and handles reopen and close requests.
fn write_lines(rx: Receiver<Vec<u8>>, mut sink: Sink, state: &State) {
    let mut failing = false;
    loop {
        let first = match rx.recv_timeout(IDLE_TICK) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let closing = state.closing.load(Ordering::Relaxed);
        let mut result = Ok(());
        let mut n: u64 = 0;
        let mut next = first;
        while let Some(line) = next {
            if line.is_empty() {
                // A wake-up from reopen() or close(), in order with the lines.
                result = result.and(sink.flush());
                reopen_if_asked(&mut sink, state);
            } else {
                result = result.and(sink.write_line(&line));
                n += 1;
            }
            // While closing, drain everything that is queued; else flush every batch.
            next = if closing || n < BATCH as u64 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        result = result.and(sink.flush());
        match result {
            Ok(()) => {
                state.written.fetch_add(n, Ordering::Relaxed);
                if failing {
                    tracing::info!(target = %sink.describe(), "query log writable again");
                    failing = false;
                }
            }
            Err(e) => {
                state.errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(target = %sink.describe(), error = %e, "cannot write the query log; lines are lost until it recovers");
                    failing = true;
                }
            }
        }
        reopen_if_asked(&mut sink, state);
        if closing {
            break;
        }
    }
    let _ = sink.flush();
}

fn reopen_if_asked(sink: &mut Sink, state: &State) {
    if !state.reopen.swap(false, Ordering::Relaxed) {
        return;
    }
    match sink.reopen() {
        Ok(()) => tracing::info!(target = %sink.describe(), "query log reopened"),
        Err(e) => {
            state.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %sink.describe(), error = %e, "cannot reopen the query log; still writing to the old file");
        }
    }
}

/// Buffer of the writer, one batch of lines.
const WRITE_BUFFER: usize = 256 << 10;

enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File {
        path: PathBuf,
        out: BufWriter<File>,
        /// Bytes in the current file (for rotation).
        size: u64,
        max: Option<u64>,
    },
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    fn open(target: &LogTarget, max: Option<u64>) -> io::Result<Sink> {
        match target {
            LogTarget::Stdout => Ok(Sink::Stdout(BufWriter::with_capacity(
                WRITE_BUFFER,
                io::stdout(),
            ))),
            LogTarget::File(path) => {
                let file = open_append(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot open --query-log {}: {e}", path.display()),
                    )
                })?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok(Sink::File {
                    path: path.clone(),
                    out: BufWriter::with_capacity(WRITE_BUFFER, file),
                    size,
                    max: max.filter(|m| *m > 0),
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Sink::Stdout(_) => "stdout".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(line),
            Sink::File {
                path,
                out,
                size,
                max,
            } => {
                if let Some(max) = *max {
                    if *size > 0 && *size + line.len() as u64 > max {
                        out.flush()?;
                        let mut rotated = OsString::from(path.as_os_str());
                        rotated.push(".1");
                        std::fs::rename(&*path, &rotated)?;
                        *out = BufWriter::with_capacity(WRITE_BUFFER, open_append(path)?);
                        *size = 0;
                    }
                }
                out.write_all(line)?;
                *size += line.len() as u64;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File { out, .. } => out.flush(),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(_) => Ok(()),
            Sink::File {
                path, out, size, ..
            } => {
                out.flush()?;
                let file = open_append(path)?;
                *size = file.metadata().map(|m| m.len()).unwrap_or(0);
                *out = BufWriter::with_capacity(WRITE_BUFFER, file);
                Ok(())
            }
        }
    }
}

/// One line of the log. Field order is the output order.
#[derive(Serialize)]
struct Line<'a> {
    time: Rfc3339,
    org: Option<&'a str>,
    transport: &'static str,
    client: Option<IpAddr>,
    qname: &'a str,
    qtype: Option<QType>,
    rcode: Option<Rcode>,
    action: &'static str,
    rule_id: Option<&'a str>,
    rule_name: Option<&'a str>,
    cache: &'static str,
    upstream: Option<SocketAddr>,
    duration_us: u64,
    ede: Option<u16>,
}

/// Appends the JSON line for `o` (with its newline) to `out`.
pub fn format_line(o: &Outcome<'_>, client_ip: ClientIpMode, now: SystemTime, out: &mut Vec<u8>) {
    let line = Line {
        time: Rfc3339(now),
        org: Some(o.org).filter(|org| !org.is_empty()),
        transport: o.transport.as_str(),
        client: client_ip.apply(o.client_ip),
        qname: o.qname,
        qtype: (o.qtype != 0 || !o.qname.is_empty()).then_some(QType(o.qtype)),
        rcode: o.rcode.map(Rcode),
        action: o.action,
        rule_id: o.rule.map(|(id, _)| id),
        rule_name: o.rule.map(|(_, name)| name),
        cache: o.cache.as_str(),
        upstream: o.upstream,
        duration_us: o.duration.as_micros().min(u64::MAX as u128) as u64,
        ede: o.ede,
    };
    // Writing to a Vec cannot fail, and every field serializes.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// A query type as its mnemonic (`AAAA`), or `TYPE65280` (RFC 3597) when unknown.
struct QType(u16);

impl fmt::Display for QType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use hickory_proto::rr::RecordType;
        match RecordType::from(self.0) {
            RecordType::Unknown(n) => write!(f, "TYPE{n}"),
            known => f.write_str(known.into()),
        }
    }
}

impl Serialize for QType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A response code as its mnemonic (`NXDOMAIN`), or `RCODE11` when unnamed.
struct Rcode(u16);

impl Serialize for Rcode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match rcode::name(self.0) {
            "OTHER" => s.collect_str(&format_args!("RCODE{}", self.0)),
            name => s.serialize_str(name),
        }
    }
}

/// A time as RFC 3339 UTC with microseconds: `2026-03-01T12:34:56.789012Z`.
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_micros()
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::CacheStatus;
    use crate::query::Transport;

    fn outcome() -> Outcome<'static> {
        Outcome {
            transport: Transport::Udp,
            client_ip: "198.51.100.77".parse().unwrap(),
            org: "acme",
            qname: "www.example.test",
            qtype: 28,
            rcode: Some(3),
            action: "block",
            rule: Some(("r7", "no \"ads\"")),
            cache: CacheStatus::None,
            upstream: Some("192.0.2.53:53".parse().unwrap()),
            ede: Some(15),
            duration: Duration::from_nanos(12_345_678),
        }
    }

    #[test]
    fn rfc3339_times() {
        let at = |secs: u64, micros: u32| {
            Rfc3339(UNIX_EPOCH + Duration::new(secs, micros * 1000)).to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_772_368_496, 789_012), "2026-03-01T12:34:56.789012Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
    }

    #[test]
    fn line_has_every_field() {
        let mut out = Vec::new();
        format_line(
            &outcome(),
            ClientIpMode::Truncate,
            UNIX_EPOCH + Duration::from_secs(86_400),
            &mut out,
        );
        assert_eq!(*out.last().unwrap(), b'\n');
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text.trim_end(),
            r#"{"time":"1970-01-02T00:00:00.000000Z","org":"acme","transport":"udp","client":"198.51.100.0","qname":"www.example.test","qtype":"AAAA","rcode":"NXDOMAIN","action":"block","rule_id":"r7","rule_name":"no \"ads\"","cache":"none","upstream":"192.0.2.53:53","duration_us":12345,"ede":15}"#
        );
    }

    #[test]
    fn unusual_values() {
        let mut o = outcome();
        o.org = "";
        o.qtype = 65_280;
        o.rcode = Some(11);
        o.rule = None;
        o.upstream = None;
        o.ede = None;
        let mut out = Vec::new();
        format_line(&o, ClientIpMode::None, UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["org"], serde_json::Value::Null);
        assert_eq!(v["client"], serde_json::Value::Null);
        assert_eq!(v["qtype"], "TYPE65280");
        assert_eq!(v["rcode"], "RCODE11");
        assert_eq!(v["rule_id"], serde_json::Value::Null);
        o.qname = "";
        o.qtype = 0;
        o.rcode = None;
        out.clear();
        format_line(&o, ClientIpMode::Full, UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["qtype"], serde_json::Value::Null);
        assert_eq!(v["rcode"], serde_json::Value::Null);
        assert_eq!(v["client"], "198.51.100.77");
    }

    #[test]
    fn client_truncation() {
        let t = |s: &str| truncate(s.parse().unwrap()).to_string();
        assert_eq!(t("203.0.113.200"), "203.0.113.0");
        assert_eq!(t("2001:db8:1234:56ff:1:2:3:4"), "2001:db8:1234:5600::");
        assert_eq!(t("::ffff:203.0.113.200"), "203.0.113.0");
        assert_eq!(t("::1"), "::");
    }

    #[test]
    fn exclusions_cover_subdomains() {
        let ex = Exclusions::parse("# health checks\nExample.COM.\n*.internal.test  # ours\n\n");
        assert_eq!(ex.len(), 2);
        assert!(ex.covers("example.com"));
        assert!(ex.covers("a.b.example.com"));
        assert!(!ex.covers("notexample.com"));
        assert!(!ex.covers("com"));
        assert!(ex.covers("x.internal.test"));
        assert!(ex.covers("internal.test"));
        assert!(!Exclusions::default().covers("example.com"));
    }

    #[test]
    fn writes_rotates_and_reopens() {
        let dir = std::env::temp_dir().join(format!("picket-qlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.log");
        let mut settings = QueryLogSettings::new(LogTarget::File(path.clone()));
        settings.max_bytes = Some(1000);
        let log = QueryLog::open(&settings).unwrap();
        for _ in 0..10 {
            log.record(&outcome());
        }
        log.close();
        assert_eq!(log.written(), 10);
        assert_eq!(log.dropped(), 0);
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.join("q.log.1")).unwrap();
        assert!(current.len() <= 1000 && rotated.len() <= 1000);
        assert!(current.lines().chain(rotated.lines()).count() <= 10);
        for line in current.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }

        // logrotate: move the file away, reopen, the next lines go to a new file.
        let settings = QueryLogSettings::new(LogTarget::File(path.clone()));
        let log = QueryLog::open(&settings).unwrap();
        std::fs::rename(&path, dir.join("moved.log")).unwrap();
        log.reopen();
        log.record(&outcome());
        log.close();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
