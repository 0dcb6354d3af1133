//! The dnstap writer thread: connects to the collector, runs the Frame
//! Streams handshake, encodes and writes queued events, and reconnects with
//! backoff when the collector goes away. It never blocks the query path:
//! what cannot be sent is dropped and counted.

use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{fstrm, Counters, DnstapTarget, Event, Header};
use crate::config::limits::{
    DNSTAP_BACKOFF_MAX, DNSTAP_BACKOFF_MIN, DNSTAP_FLUSH_EVERY, DNSTAP_IO_TIMEOUT,
    DNSTAP_STABLE_SESSION,
};

/// What the query path sends the writer.
pub(crate) enum Command {
    Event(Event),
    /// Finish the session and exit (at shutdown).
    Stop,
}

/// One connection to the collector.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub(crate) struct Writer {
    target: DnstapTarget,
    header: Header,
    counters: Arc<Counters>,
}

impl Writer {
    pub(crate) fn new(target: DnstapTarget, header: Header, counters: Arc<Counters>) -> Self {
        Self {
            target,
            header,
            counters,
        }
    }

    /// Runs until [`Command::Stop`] or until every sender is gone.
    ///
    /// A session that fails within [`DNSTAP_STABLE_SESSION`] of its start
    /// counts as a failed attempt: the next one waits out the backoff as a
    /// refused connection would. A collector that accepts the handshake and
    /// then fails at once (out of disk, a broken relay) would otherwise be
    /// reconnected to, and logged, at the rate of queries.
    pub(crate) fn run(&self, commands: Receiver<Command>) {
        let mut backoff = DNSTAP_BACKOFF_MIN;
        let mut announced_failure = false;
        loop {
            let mut session = match self.connect() {
                Ok(session) => {
                    tracing::info!(target = %self.target, "dnstap: connected to the collector");
                    announced_failure = false;
                    session
                }
                Err(error) => {
                    if !announced_failure {
                        tracing::warn!(target = %self.target, %error,
                            "dnstap: cannot reach the collector; messages are dropped (and counted) until it is back");
                        announced_failure = true;
                    }
                    if self.drop_for(&commands, backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(DNSTAP_BACKOFF_MAX);
                    continue;
                }
            };
            let started = Instant::now();
            match self.serve(&mut session, &commands) {
                Ok(()) => {
                    let _ = session.flush();
                    let _ = fstrm::close(session.get_mut());
                    return;
                }
                Err(error) => {
                    tracing::warn!(target = %self.target, %error, "dnstap: the collector connection failed; reconnecting");
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            if started.elapsed() >= DNSTAP_STABLE_SESSION {
                backoff = DNSTAP_BACKOFF_MIN;
                continue;
            }
            if self.drop_for(&commands, backoff) {
                return;
            }
            backoff = (backoff * 2).min(DNSTAP_BACKOFF_MAX);
        }
    }

    fn connect(&self) -> io::Result<BufWriter<Box<dyn Stream>>> {
        let mut stream: Box<dyn Stream> = match &self.target {
            DnstapTarget::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(DNSTAP_IO_TIMEOUT))?;
                s.set_write_timeout(Some(DNSTAP_IO_TIMEOUT))?;
                Box::new(s)
            }
            DnstapTarget::Tcp(hostport) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
                let s = TcpStream::connect_timeout(&addr, DNSTAP_IO_TIMEOUT)?;
                s.set_read_timeout(Some(DNSTAP_IO_TIMEOUT))?;
                s.set_write_timeout(Some(DNSTAP_IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        fstrm::open(&mut stream)?;
        Ok(BufWriter::with_capacity(64 * 1024, stream))
    }

    /// Writes events until Stop (Ok) or a write error (Err: reconnect).
    /// Flushes when the queue runs dry, and at least every
    /// [`DNSTAP_FLUSH_EVERY`] while it does not.
    fn serve(
        &self,
        session: &mut BufWriter<Box<dyn Stream>>,
        commands: &Receiver<Command>,
    ) -> io::Result<()> {
        let mut last_flush = Instant::now();
        loop {
            let command = match commands.try_recv() {
                Ok(c) => c,
                Err(_) => {
                    session.flush()?;
                    last_flush = Instant::now();
                    match commands.recv_timeout(DNSTAP_FLUSH_EVERY) {
                        Ok(c) => c,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            };
            let Command::Event(event) = command else {
                return Ok(());
            };
            for frame in self.header.encode(&event) {
                if let Err(e) = fstrm::write_data(session, &frame) {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                self.counters.frames.fetch_add(1, Ordering::Relaxed);
            }
            if last_flush.elapsed() >= DNSTAP_FLUSH_EVERY {
                session.flush()?;
                last_flush = Instant::now();
            }
        }
    }

    /// While disconnected: drops (and counts) what arrives for `wait`.
    /// True when the writer must stop.
    fn drop_for(&self, commands: &Receiver<Command>, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match commands.recv_timeout(left) {
                Ok(Command::Event(_)) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}
