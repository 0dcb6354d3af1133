//! The query log: one JSON line per query (fields, privacy and rotation:
//! docs/observability.md).
//!
//! Only when the log is on, the worker formats the line straight into its
//! thread's own pending buffer; a writer thread takes every buffer each
//! [`FLUSH_EVERY`] and writes it with one call. The number of pending lines
//! is bounded: when the writer falls behind (slow disk, a full pipe), lines
//! are dropped and counted, and a DNS answer never waits for the log. The
//! writer rotates by size (rename to `PATH.1`) and reopens the file on
//! request (SIGHUP from logrotate).
//!
//! Privacy: the client address is truncated by default (/24 for IPv4, /56
//! for IPv6), can be left out entirely, and is written in full only when asked.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, PrimitiveDateTime};

use super::outcome::Outcome;
use super::slots::{lock, Local, ThreadSlots};
use crate::protocol::wire::rcode;

/// Default bound on lines waiting for the writer (~17 MiB of lines at most).
pub const DEFAULT_BUFFER_LINES: usize = 65_536;
/// How long [`QueryLog::close`] waits for the writer to flush.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long [`QueryLog::reopen`] waits for the writer to switch files.
const REOPEN_WAIT: Duration = Duration::from_secs(1);
/// How often the writer takes what the workers formatted and writes it:
/// lines reach the file at most this late, and the buffers must hold this
/// long's worth of queries (65,536 lines in 10 ms: 6.5 million q/s). Short,
/// so that a worker's buffer stays small enough to be in cache.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// A writer's spare buffer larger than this is given back after a burst.
const KEEP_SPARE: usize = 4 << 20;

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

/// Where a counter is in `T`.
pub(crate) type CounterField<T> = fn(&T) -> &AtomicU64;

/// Metric probes reading counters of `shared`: each a metric name and the
/// counter it reads.
pub(crate) fn counter_probes<T: Send + Sync + 'static, const N: usize>(
    shared: &Arc<T>,
    counters: [(&'static str, CounterField<T>); N],
) -> [(&'static str, CounterRead); N] {
    counters.map(|(name, counter)| {
        let shared = shared.clone();
        let read: CounterRead = Box::new(move || counter(&shared).load(Ordering::Relaxed));
        (name, read)
    })
}

/// Lines one worker thread formatted that the writer has not taken yet.
#[derive(Debug, Default)]
struct Unwritten {
    bytes: Vec<u8>,
    lines: u64,
}

/// What the workers and the writer thread share.
#[derive(Debug, Default)]
struct Inner {
    /// Every thread's pending lines (a thread registers on its first line).
    slots: Arc<ThreadSlots<Unwritten>>,
    /// Lines pending across all threads, and the bound on it.
    queued: AtomicU64,
    max_queued: u64,
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    /// Reopen requests made and served (a generation count).
    reopen_asked: AtomicU64,
    reopen_done: AtomicU64,
    closing: AtomicBool,
}

thread_local! {
    /// This thread's pending lines for each live query log.
    static SLOTS: Local<Unwritten> = const { RefCell::new(Vec::new()) };
}

/// The query log of one server.
///
/// Hot path: the line is formatted straight into this thread's own pending
/// buffer (an uncontended mutex: the writer takes it once per
/// [`FLUSH_EVERY`]), so there is no allocation, no channel and no wake-up per
/// query. The bound is on lines pending across all threads; past it lines
/// are dropped and counted. Lines of one thread stay in order; lines of
/// different threads are ordered by their `time`, not by position.
pub struct QueryLog {
    inner: Arc<Inner>,
    exclude: Exclusions,
    client_ip: ClientIpMode,
    /// Signalled by the writer thread when it exits; taken by the first close.
    done: Mutex<Option<Receiver<()>>>,
}

impl fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryLog")
            .field("inner", &self.inner)
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
        let (done_tx, done_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            max_queued: settings.buffer_lines.max(1) as u64,
            ..Inner::default()
        });
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("picket-querylog".into())
            .spawn(move || {
                write_lines(&writer, sink);
                let _ = done_tx.send(());
            })?;
        Ok(QueryLog {
            inner,
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
        let inner = &self.inner;
        // Reserve the line before it becomes visible to the writer, whose
        // subtraction must never run ahead of this addition.
        if inner.queued.fetch_add(1, Ordering::Relaxed) >= inner.max_queued {
            inner.queued.fetch_sub(1, Ordering::Relaxed);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = SystemTime::now();
        self.inner.slots.with(&SLOTS, |pending| {
            format_line(outcome, self.client_ip, now, &mut pending.bytes);
            pending.lines += 1;
        });
    }

    /// Reopens the file (after logrotate moved it away): lines recorded
    /// before the call go to the old file, later ones to the new. Waits for
    /// the writer (at most a second, if it is stuck).
    pub fn reopen(&self) {
        let asked = self.inner.reopen_asked.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + REOPEN_WAIT;
        while self.inner.reopen_done.load(Ordering::Acquire) < asked {
            if Instant::now() > deadline {
                tracing::warn!(
                    "the query-log writer is stuck; it reopens the file when it recovers"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Writes what is pending and stops the writer; waits at most a couple
    /// of seconds (a writer stuck on a full pipe is abandoned). Idempotent.
    pub fn close(&self) {
        let Some(done) = lock(&self.done).take() else {
            return;
        };
        self.inner.closing.store(true, Ordering::Release);
        if done.recv_timeout(CLOSE_WAIT).is_err() {
            tracing::warn!("the query-log writer did not finish in time; unwritten lines are lost");
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Readers of the counters for metric probes.
    pub fn counters(&self) -> [(&'static str, CounterRead); 3] {
        use super::metrics::name;
        counter_probes(
            &self.inner,
            [
                (name::QUERYLOG_LINES, |inner| &inner.written),
                (name::QUERYLOG_DROPPED, |inner| &inner.dropped),
                (name::QUERYLOG_ERRORS, |inner| &inner.errors),
            ],
        )
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: every [`FLUSH_EVERY`] it swaps each worker's pending
/// buffer for an empty one and writes it out; it serves reopen requests
/// (writing what is pending to the old file first) and stops on close.
fn write_lines(inner: &Inner, mut sink: Sink) {
    let mut spare = Vec::new();
    let mut failing = false;
    loop {
        // Read before taking lines: close() comes once no more lines do.
        let closing = inner.closing.load(Ordering::Acquire);
        let asked = inner.reopen_asked.load(Ordering::Acquire);
        if asked != inner.reopen_done.load(Ordering::Relaxed) {
            drain(inner, &mut sink, &mut spare, &mut failing);
            match sink.reopen() {
                Ok(()) => tracing::info!(target = %sink.describe(), "query log reopened"),
                Err(e) => {
                    inner.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target = %sink.describe(), error = %e, "cannot reopen the query log; still writing to the old file");
                }
            }
            inner.reopen_done.store(asked, Ordering::Release);
        }
        drain(inner, &mut sink, &mut spare, &mut failing);
        if closing {
            break;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

/// Writes every thread's pending lines and flushes.
fn drain(inner: &Inner, sink: &mut Sink, spare: &mut Vec<u8>, failing: &mut bool) {
    let slots = inner.slots.all();
    let mut result = Ok(());
    let mut written = 0;
    for slot in &slots {
        let lines = {
            let mut pending = lock(slot);
            if pending.lines == 0 {
                continue;
            }
            std::mem::swap(&mut pending.bytes, spare);
            std::mem::take(&mut pending.lines)
        };
        inner.queued.fetch_sub(lines, Ordering::Relaxed);
        let wrote = sink.write_lines(spare);
        if wrote.is_ok() {
            written += lines;
        }
        result = result.and(wrote);
        spare.clear();
        if spare.capacity() > KEEP_SPARE {
            spare.shrink_to(KEEP_SPARE);
        }
    }
    if written > 0 {
        result = result.and(sink.flush());
    }
    // Slots of threads that are gone (only the registry holds them), once
    // empty, are forgotten.
    drop(slots);
    inner.slots.forget_gone(|pending| pending.lines > 0);
    match result {
        Ok(()) => {
            inner.written.fetch_add(written, Ordering::Relaxed);
            if *failing {
                tracing::info!(target = %sink.describe(), "query log writable again");
                *failing = false;
            }
        }
        Err(e) => {
            inner.errors.fetch_add(1, Ordering::Relaxed);
            if !*failing {
                tracing::warn!(target = %sink.describe(), error = %e, "cannot write the query log; lines are lost until it recovers");
                *failing = true;
            }
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

    /// Writes a batch of whole lines (line by line when rotating by size).
    fn write_lines(&mut self, batch: &[u8]) -> io::Result<()> {
        match self {
            Sink::File { max: Some(_), .. } => {
                for line in batch.split_inclusive(|b| *b == b'\n') {
                    self.write_line(line)?;
                }
                Ok(())
            }
            Sink::File { out, size, .. } => {
                out.write_all(batch)?;
                *size += batch.len() as u64;
                Ok(())
            }
            Sink::Stdout(out) => out.write_all(batch),
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

/// Appends the JSON line for `o` (with its newline) to `out`:
///
/// ```text
/// {"time":"2026-03-01T12:34:56.789012Z","org":null,"transport":"udp","client":"198.51.100.0",
///  "qname":"www.example.test","qtype":"A","rcode":"NOERROR","action":"resolve","rule_id":null,
///  "rule_name":null,"audited":[],"cache":"hit","upstream":null,"duration_us":41,"ede":null}
/// ```
///
/// Written by hand (strings escaped by serde_json) because it runs for every
/// query: about 3x faster than deriving `Serialize` for a line struct, and
/// no allocation beyond growing `out`.
pub fn format_line(o: &Outcome<'_>, client_ip: ClientIpMode, now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    push_time(out, now);
    out.extend_from_slice(b"\",\"org\":");
    push_opt_str(out, Some(o.org).filter(|org| !org.is_empty()));
    out.extend_from_slice(b",\"transport\":\"");
    out.extend_from_slice(o.transport.as_str().as_bytes());
    out.extend_from_slice(b"\",\"client\":");
    match client_ip.apply(o.client_ip) {
        Some(ip) => {
            out.push(b'"');
            push_ip(out, ip);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"qname\":");
    push_str(out, o.qname);
    out.extend_from_slice(b",\"qtype\":");
    if o.qtype != 0 || !o.qname.is_empty() {
        out.push(b'"');
        push_qtype(out, o.qtype);
        out.push(b'"');
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"rcode\":");
    match o.rcode {
        Some(code) => {
            out.push(b'"');
            match rcode::name(code) {
                "OTHER" => {
                    out.extend_from_slice(b"RCODE");
                    push_u64(out, code.into());
                }
                name => out.extend_from_slice(name.as_bytes()),
            }
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"action\":");
    push_str(out, o.action.as_str());
    out.extend_from_slice(b",\"rule_id\":");
    push_opt_str(out, o.rule.map(|(id, _)| id));
    out.extend_from_slice(b",\"rule_name\":");
    push_opt_str(out, o.rule.map(|(_, name)| name));
    out.extend_from_slice(b",\"audited\":[");
    for (i, (id, _)) in o.audited.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, id);
    }
    out.push(b']');
    out.extend_from_slice(b",\"cache\":\"");
    out.extend_from_slice(o.cache.as_str().as_bytes());
    out.extend_from_slice(b"\",\"upstream\":");
    match o.upstream {
        Some(upstream) => {
            // Only on misses; the standard formatter is fine there.
            push_str(out, &upstream.to_string());
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"duration_us\":");
    push_u64(out, o.duration.as_micros().min(u64::MAX as u128) as u64);
    out.extend_from_slice(b",\"ede\":");
    match o.ede {
        Some(code) => push_u64(out, code.into()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON string, escaped by serde_json.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` zero-padded to `width` digits (n < 10^width).
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A query type's mnemonic (`AAAA`, via hickory's `RecordType`), or
/// `TYPE65280` (RFC 3597) when it has none.
pub(crate) fn push_qtype(out: &mut Vec<u8>, qtype: u16) {
    use hickory_proto::rr::RecordType;
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => {
            out.extend_from_slice(b"TYPE");
            push_u64(out, n.into());
        }
        known => out.extend_from_slice(<&'static str>::from(known).as_bytes()),
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-03-01T12:34:56.789012Z`. The calendar comes
/// from the `time` crate; the digits are written here, without a format description, because
/// this runs for every query.
fn push_time(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let utc = i64::try_from(since.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc());
    push_padded(out, utc.year().clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_padded(out, u8::from(utc.month()).into(), 2);
    out.push(b'-');
    push_padded(out, utc.day().into(), 2);
    out.push(b'T');
    push_padded(out, utc.hour().into(), 2);
    out.push(b':');
    push_padded(out, utc.minute().into(), 2);
    out.push(b':');
    push_padded(out, utc.second().into(), 2);
    out.push(b'.');
    push_padded(out, since.subsec_micros().into(), 6);
    out.push(b'Z');
}

/// A time as RFC 3339 UTC with microseconds: `2026-03-01T12:34:56.789012Z`.
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(27);
        push_time(&mut text, self.0);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::CacheStatus;
    use crate::query::ActionLabel;
    use crate::upstream::Upstream;

    fn outcome() -> Outcome<'static> {
        Outcome {
            qtype: 28,
            rcode: Some(3),
            action: ActionLabel::Block,
            rule: Some(("r7", "no \"ads\"")),
            cache: CacheStatus::None,
            upstream: Some(Box::leak(Box::new(Upstream::from(
                "192.0.2.53:53".parse::<std::net::SocketAddr>().unwrap(),
            )))),
            ede: Some(15),
            duration: Duration::from_nanos(12_345_678),
            ..Outcome::sample()
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
            r#"{"time":"1970-01-02T00:00:00.000000Z","org":"acme","transport":"udp","client":"198.51.100.0","qname":"www.example.test","qtype":"AAAA","rcode":"NXDOMAIN","action":"block","rule_id":"r7","rule_name":"no \"ads\"","audited":[],"cache":"none","upstream":"192.0.2.53:53","duration_us":12345,"ede":15}"#
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
        o.audited = &[("txt", "Log TXT"), ("odd\"id", "")];
        let mut out = Vec::new();
        format_line(&o, ClientIpMode::None, UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["audited"], serde_json::json!(["txt", "odd\"id"]));
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
        o.client_ip = "2001:db8:1234:56ff::53".parse().unwrap();
        out.clear();
        format_line(&o, ClientIpMode::Truncate, UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client"], "2001:db8:1234:5600::");
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
    fn lines_from_many_threads_are_all_written() {
        let dir = crate::testing::fresh_dir("qlog-threads");
        let path = dir.join("q.log");
        let log = Arc::new(
            QueryLog::open(&QueryLogSettings::new(LogTarget::File(path.clone()))).unwrap(),
        );
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        log.record(&outcome());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The threads are gone: their slots are forgotten once written out.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.inner.slots.len() > 0 {
            assert!(
                Instant::now() < deadline,
                "slots of finished threads are kept"
            );
            std::thread::sleep(FLUSH_EVERY);
        }
        log.close();
        assert_eq!((log.written(), log.dropped()), (4000, 0));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            4000
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_rotates_and_reopens() {
        let dir = crate::testing::fresh_dir("qlog");
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
