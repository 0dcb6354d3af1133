//! DNS client helpers for tests, over UDP and TCP, all with timeouts.
//!
//! The I/O and the timeouts run on a private background runtime, and callers
//! only await its result. So the helpers behave the same under any test
//! runtime, including `#[tokio::test(start_paused = true)]`, where a timeout
//! on the test's own clock would fire as soon as the runtime goes idle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsOption, NSIDPayload};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::authority::parse_name;

/// How long helpers that expect an answer wait for it.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long raw helpers wait before reporting "no answer".
pub const RAW_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds a query: RD=1, EDNS payload 1232, random ID unless set.
#[derive(Clone, Debug)]
pub struct QueryBuilder {
    id: u16,
    query: Query,
    op_code: OpCode,
    recursion_desired: bool,
    checking_disabled: bool,
    edns: Option<Edns>,
}

impl QueryBuilder {
    pub fn new(name: &str, rtype: RecordType) -> Self {
        Self {
            id: rand::random(),
            query: Query::query(parse_name(name), rtype),
            op_code: OpCode::Query,
            recursion_desired: true,
            checking_disabled: false,
            edns: Some(default_edns()),
        }
    }

    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn op_code(mut self, op_code: OpCode) -> Self {
        self.op_code = op_code;
        self
    }

    pub fn rd(mut self, on: bool) -> Self {
        self.recursion_desired = on;
        self
    }

    pub fn cd(mut self, on: bool) -> Self {
        self.checking_disabled = on;
        self
    }

    /// Sends no OPT record at all.
    pub fn no_edns(mut self) -> Self {
        self.edns = None;
        self
    }

    /// EDNS UDP payload size (hickory clamps it to at least 512).
    pub fn payload(mut self, size: u16) -> Self {
        self.edns_mut().set_max_payload(size);
        self
    }

    pub fn dnssec_ok(mut self, on: bool) -> Self {
        self.edns_mut().set_dnssec_ok(on);
        self
    }

    pub fn edns_version(mut self, version: u8) -> Self {
        self.edns_mut().set_version(version);
        self
    }

    /// Adds any EDNS option (enables EDNS if it was off).
    pub fn option(mut self, option: EdnsOption) -> Self {
        self.edns_mut().options_mut().insert(option);
        self
    }

    /// Asks for the server's NSID (RFC 5001: an empty NSID option).
    pub fn nsid(self) -> Self {
        self.option(EdnsOption::NSID(
            NSIDPayload::new(Vec::new()).expect("empty NSID"),
        ))
    }

    pub fn build(&self) -> Message {
        let mut message = Message::new(self.id, MessageType::Query, self.op_code);
        message.metadata.recursion_desired = self.recursion_desired;
        message.metadata.checking_disabled = self.checking_disabled;
        message.add_query(self.query.clone());
        message.edns = self.edns.clone();
        message
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.build().to_vec().expect("test query encodes")
    }

    fn edns_mut(&mut self) -> &mut Edns {
        self.edns.get_or_insert_with(default_edns)
    }
}

fn default_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(1232); // Edns::new() says 512
    edns
}

/// A query for `name` A with ID `id` (RD set, EDNS), as bytes: what a DoH,
/// DoT or DoQ test sends.
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    QueryBuilder::new(name, RecordType::A).id(id).to_bytes()
}

/// Queries `server` over UDP (RD=1, EDNS 1232); panics if nothing comes back.
pub async fn query_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let query = QueryBuilder::new(name, rtype).build();
    send_udp(server, &query)
        .await
        .unwrap_or_else(|| panic!("no UDP answer from {server} for {name} {rtype}"))
}

/// Like [`query_udp`], from the local address `from` (another loopback
/// address is another client: another organization, rate-limit bucket...).
pub async fn query_udp_from(
    from: &str,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Message {
    let bytes = QueryBuilder::new(name, rtype).to_bytes();
    let from: SocketAddr = from.parse().expect("a socket address such as 127.0.5.7:0");
    let reply = off_runtime(async move {
        let socket = UdpSocket::bind(from).await.expect("bind client UDP");
        socket.connect(server).await.expect("connect client UDP");
        socket.send(&bytes).await.expect("send UDP query");
        timeout(ANSWER_TIMEOUT, recv_datagram(&socket))
            .await
            .ok()
            .flatten()
    })
    .await;
    parse(&reply.unwrap_or_else(|| panic!("no UDP answer from {server} for {name} {rtype}")))
}

/// Sends `query` over UDP; the first datagram back, parsed, or `None` after
/// [`ANSWER_TIMEOUT`]. No ID or question matching: tests see what came.
pub async fn send_udp(server: SocketAddr, query: &Message) -> Option<Message> {
    let bytes = query.to_vec().expect("test query encodes");
    let reply = exchange_udp(server, bytes, ANSWER_TIMEOUT).await?;
    Some(parse(&reply))
}

/// A blocking UDP client socket on `bind`, whose reads give up after
/// [`ANSWER_TIMEOUT`]. Unconnected, so an answer from any address is seen
/// (and its source can be checked), and many queries can be sent before any
/// answer is read.
pub fn unconnected_udp(bind: SocketAddr) -> std::net::UdpSocket {
    let socket = std::net::UdpSocket::bind(bind).expect("a loopback UDP port");
    socket
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("a read timeout");
    socket
}

/// Sends raw bytes over UDP; the first datagram back, or `None` after
/// [`RAW_TIMEOUT`].
pub async fn send_udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    exchange_udp(server, bytes.to_vec(), RAW_TIMEOUT).await
}

/// Sends raw bytes over UDP and collects every datagram that arrives within
/// `window`, in arrival order.
pub async fn send_udp_collect(server: SocketAddr, bytes: &[u8], window: Duration) -> Vec<Vec<u8>> {
    let bytes = bytes.to_vec();
    off_runtime(async move {
        let socket = connected_udp(server).await;
        socket.send(&bytes).await.expect("send UDP query");
        let mut datagrams = Vec::new();
        let collect = async {
            while let Some(datagram) = recv_datagram(&socket).await {
                datagrams.push(datagram);
            }
        };
        let _ = timeout(window, collect).await;
        datagrams
    })
    .await
}

async fn exchange_udp(server: SocketAddr, bytes: Vec<u8>, wait: Duration) -> Option<Vec<u8>> {
    off_runtime(async move {
        let socket = connected_udp(server).await;
        socket.send(&bytes).await.expect("send UDP query");
        timeout(wait, recv_datagram(&socket)).await.ok().flatten()
    })
    .await
}

/// Connected, so only the server's datagrams reach us and a closed port
/// fails fast through ICMP instead of timing out.
async fn connected_udp(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => "127.0.0.1:0".parse().expect("static address"),
        SocketAddr::V6(_) => "[::1]:0".parse().expect("static address"),
    };
    let socket = UdpSocket::bind(local).await.expect("bind client UDP");
    socket.connect(server).await.expect("connect client UDP");
    socket
}

/// `None` when the socket reports an error (e.g. ICMP port unreachable).
async fn recv_datagram(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65535];
    let len = socket.recv(&mut buf).await.ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Queries `server` over TCP on a fresh connection; panics if nothing comes back.
pub async fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let query = QueryBuilder::new(name, rtype).build();
    send_tcp(server, &query)
        .await
        .unwrap_or_else(|| panic!("no TCP answer from {server} for {name} {rtype}"))
}

/// Sends `query` on a fresh TCP connection; the first answer, or `None`.
pub async fn send_tcp(server: SocketAddr, query: &Message) -> Option<Message> {
    let client = TcpClient::connect(server).await;
    client.send(query).await;
    client.recv().await
}

/// What [`TcpClient::next_frame`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data(Vec<u8>),
    /// The server closed (or reset) the connection.
    Closed,
    Timeout,
}

/// One TCP connection that can pipeline queries: frames are read as they
/// arrive, in whatever order the server sends them.
pub struct TcpClient {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    frames: Arc<Mutex<mpsc::UnboundedReceiver<Vec<u8>>>>,
    reader: JoinHandle<()>,
}

impl TcpClient {
    /// Connects; panics if the server refuses.
    pub async fn connect(server: SocketAddr) -> TcpClient {
        off_runtime(async move {
            let stream = TcpStream::connect(server)
                .await
                .unwrap_or_else(|e| panic!("TCP connect to {server}: {e}"));
            let (reader, writer) = stream.into_split();
            let (sender, frames) = mpsc::unbounded_channel();
            TcpClient {
                writer: Arc::new(Mutex::new(writer)),
                frames: Arc::new(Mutex::new(frames)),
                reader: tokio::spawn(read_frames(reader, sender)),
            }
        })
        .await
    }

    /// Sends `query` as one length-prefixed frame.
    pub async fn send(&self, query: &Message) {
        self.send_frame(&query.to_vec().expect("test query encodes"))
            .await;
    }

    /// Sends a query for `name`/`rtype` and returns its ID, to match answers.
    pub async fn send_query(&self, name: &str, rtype: RecordType) -> u16 {
        let query = QueryBuilder::new(name, rtype).build();
        self.send(&query).await;
        query.metadata.id
    }

    /// Sends `message` with the 2-byte length prefix added.
    pub async fn send_frame(&self, message: &[u8]) {
        let len = u16::try_from(message.len()).expect("frame fits 64 KiB");
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(message);
        self.send_bytes(&frame).await;
    }

    /// Sends exactly `bytes`, no framing (e.g. a split length prefix).
    pub async fn send_bytes(&self, bytes: &[u8]) {
        let (writer, bytes) = (Arc::clone(&self.writer), bytes.to_vec());
        off_runtime(async move {
            let mut writer = writer.lock().await;
            writer.write_all(&bytes).await.expect("TCP write");
        })
        .await;
    }

    /// Half-closes: the server sees end of input but may still answer.
    pub async fn shutdown_write(&self) {
        let writer = Arc::clone(&self.writer);
        off_runtime(async move {
            let _ = writer.lock().await.shutdown().await;
        })
        .await;
    }

    /// The next answer, parsed; `None` on close or after [`ANSWER_TIMEOUT`].
    pub async fn recv(&self) -> Option<Message> {
        self.recv_raw().await.map(|bytes| parse(&bytes))
    }

    /// The next raw frame; `None` on close or after [`ANSWER_TIMEOUT`].
    pub async fn recv_raw(&self) -> Option<Vec<u8>> {
        match self.next_frame(ANSWER_TIMEOUT).await {
            Frame::Data(bytes) => Some(bytes),
            Frame::Closed | Frame::Timeout => None,
        }
    }

    /// Up to `count` answers in arrival order; stops early on close or timeout.
    pub async fn recv_n(&self, count: usize) -> Vec<Message> {
        let mut answers = Vec::with_capacity(count);
        while answers.len() < count {
            match self.recv().await {
                Some(answer) => answers.push(answer),
                None => break,
            }
        }
        answers
    }

    /// The next frame, telling a close apart from silence.
    pub async fn next_frame(&self, wait: Duration) -> Frame {
        let frames = Arc::clone(&self.frames);
        off_runtime(async move {
            let mut frames = frames.lock().await;
            match timeout(wait, frames.recv()).await {
                Ok(Some(bytes)) => Frame::Data(bytes),
                Ok(None) => Frame::Closed,
                Err(_) => Frame::Timeout,
            }
        })
        .await
    }
}

impl Drop for TcpClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Forwards whole frames until the connection ends or the client is gone.
async fn read_frames(mut reader: OwnedReadHalf, frames: mpsc::UnboundedSender<Vec<u8>>) {
    loop {
        let Ok(len) = reader.read_u16().await else {
            return;
        };
        let mut frame = vec![0u8; usize::from(len)];
        if reader.read_exact(&mut frame).await.is_err() || frames.send(frame).is_err() {
            return;
        }
    }
}

/// Waits `duration` of real time, whatever the caller's clock says.
pub async fn real_sleep(duration: Duration) {
    off_runtime(sleep(duration)).await;
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("unparsable answer ({e}): {bytes:02x?}"))
}

/// Runs `future` on the helpers' own runtime and awaits its result.
async fn off_runtime<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match io_runtime().spawn(future).await {
        Ok(output) => output,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn io_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-client-io")
            .enable_all()
            .build()
            .expect("test client runtime")
    })
}

/// Waits until a server spawned as a separate process answers anything over UDP (at most 60 s:
/// a debug build starting on a busy machine can take seconds). A closed port fails a try at once
/// (ICMP port unreachable), so tries are spaced out on the real clock.
pub async fn wait_until_answering(addr: SocketAddr) {
    let probe = QueryBuilder::new("health.invalid", RecordType::A).to_bytes();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if send_udp_raw(addr, &probe).await.is_some() {
            return;
        }
        real_sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing started answering on {addr} within 60 s");
}
