//! Outside processes for tests: the picket binary as a separate process (for
//! what only a process has: its RSS, its exit status, its stderr, its flags),
//! Debian programs run to completion or kept running beside a test, and the
//! free loopback ports they are told to use.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What `dig @server -p PORT +tries=1 +time=3 ARGS...` printed (Debian's dnsutils), run off
/// the async runtime: the user's view of an answer.
pub async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut all: Vec<String> = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        "+tries=1".into(),
        "+time=3".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new("dig").args(&all).output());
    let out = out
        .await
        .expect("dig's thread")
        .expect("dig runs (Debian dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field of a `/proc/PID/` file (`status`, `limits`, `smaps_rollup`): the
/// first number after `label` on its line.
pub fn proc_number(pid: u32, file: &str, label: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix(label));
    let number = line.and_then(|v| v.split_whitespace().next()?.parse().ok());
    number.unwrap_or_else(|| panic!("no {label} in /proc/{pid}/{file}:\n{text}"))
}

/// A port free for both UDP and TCP on 127.0.0.1, bound and released again:
/// a program that cannot say which port it picked (the picket binary,
/// HAProxy, Unbound) is told to bind it next.
///
/// Between the release and the program's bind another socket could take the
/// port. So the port comes from below the kernel's ephemeral range
/// (`ip_local_port_range`), where no `bind(0)` or outgoing connection of
/// another test lands, and this process never hands out the same port twice
/// (cargo runs one test binary at a time, its tests on threads).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (low, high) = ports_outside_the_ephemeral_range();
    let span = u32::from(high - low) + 1;
    // A start that differs between test binaries, then one step per call.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if bindable_for_udp_and_tcp(port) {
            return port;
        }
    }
    panic!("no port in {low}-{high} is free for both UDP and TCP on 127.0.0.1");
}

/// Ports the kernel never picks on its own: below `ip_local_port_range`
/// (32768-60999 by default), above the well-known and the common
/// registered ones.
fn ports_outside_the_ephemeral_range() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 20000.min(first_ephemeral / 2);
    (low, first_ephemeral.saturating_sub(1).max(low + 1000))
}

fn bindable_for_udp_and_tcp(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// 127.0.0.1 on a [`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Runs `program` with `args` to its end: its stdout then its stderr, as
/// one text (panics, naming the program, when it cannot be started).
pub fn run_program<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `program` with `args` in `dir` to its end and asserts it succeeded
/// (ldns-keygen, ldns-signzone): its stdout, trimmed. Panics with its stderr.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} (is its Debian package installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A child process (HAProxy, Unbound, the binary) killed and reaped when the
/// test lets go of it, passed or failed.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Spawns `command` (panics naming `what` when it cannot start).
    pub fn spawn(command: &mut Command, what: &str) -> Self {
        Self(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("{what} starts: {e}")),
        )
    }
}

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Unbound (`/usr/sbin/unbound`, package unbound) in the foreground
/// with its files in `dir`: `unbound.conf` holds a `server:` clause with what
/// every test needs (no daemon, chroot, syslog or IPv6) and then `server`'s
/// lines (indented two spaces, and any clauses after them).
pub fn start_unbound(dir: &Path, server: &str) -> KillOnDrop {
    start_unbound_with(dir, server, |_| {})
}

/// [`start_unbound`], with `configure` adjusting the command first (its
/// environment).
pub fn start_unbound_with(
    dir: &Path,
    server: &str,
    configure: impl FnOnce(&mut Command),
) -> KillOnDrop {
    let config = format!(
        "server:\n  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  \
         directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  do-ip6: no\n{server}",
        dir = dir.display(),
    );
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, config).unwrap();
    let mut unbound = Command::new("/usr/sbin/unbound");
    unbound.args(["-d", "-c"]).arg(&conf);
    configure(&mut unbound);
    KillOnDrop::spawn(&mut unbound, "/usr/sbin/unbound (Debian package unbound)")
}

/// The UDP address a `picket serve --listen 127.0.0.1:0` child bound, read
/// from its `answering addrs=[...]` log line (it logs at info level, the
/// default). A port picked for the child cannot be taken by another test
/// between a [`free_port`] and the child's bind, nor shared with another
/// SO_REUSEPORT listener (Picket picks for port 0 a port no socket holds:
/// `listener::unshared_udp_port`). Its stderr is drained on a thread
/// from then on, so the child never blocks on a full pipe. Panics when the
/// child exits or says nothing within 60 s, with what it did say.
pub fn answering_address(child: &mut Child) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Some(sender) = found.take() else {
                continue;
            };
            match first_answering_address(&line) {
                Some(addr) => {
                    let _ = sender.send(Ok(addr));
                }
                None => {
                    said.push_str(&line);
                    said.push('\n');
                    found = Some(sender);
                }
            }
        }
        if let Some(sender) = found {
            let _ = sender.send(Err(said));
        }
    });
    match address.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(addr)) => addr,
        Ok(Err(said)) => panic!("picket serve exited before answering; it said:\n{said}"),
        Err(_) => panic!("picket serve did not log `answering` within 60 s"),
    }
}

/// The first address of an `answering addrs=[A, B]` log line.
fn first_answering_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("answering") {
        return None;
    }
    let list = line.split("addrs=[").nth(1)?;
    list.split([',', ']']).next()?.trim().parse().ok()
}

/// Runs `picket ARGS...` to its end from the crate's directory: its exit
/// status and its stdout then stderr.
pub fn run_picket(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picket"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("picket runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Asserts that `out`, the output of `what` (a command, where it ran), holds
/// each of `texts`.
pub fn assert_mentions(what: &str, out: &str, texts: &[&str]) {
    for text in texts {
        assert!(out.contains(text), "{what}: no {text:?} in:\n{out}");
    }
}

/// `picket serve` on a free loopback port (UDP and TCP); killed on drop.
pub struct PicketProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl PicketProcess {
    /// Starts `picket serve --listen ADDR ARGS...`; `configure` adjusts the
    /// command first (log level, environment, where stderr goes).
    pub fn serve<S: AsRef<OsStr>>(args: &[S], configure: impl FnOnce(&mut Command)) -> Self {
        let mut options = Self::options();
        options.args(args);
        options.spawn_with(configure)
    }

    /// Flags for a `picket serve` to start, set by name: see [`ServeOptions`].
    pub fn options() -> ServeOptions {
        ServeOptions::default()
    }
}

impl PicketProcess {
    /// Sends it `signal` (SIGHUP, SIGTERM, ...); panics when that fails.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the child this test spawned and has not reaped.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(
            sent,
            0,
            "kill({signal}): {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for PicketProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line of a spawned `picket serve`, built flag by flag:
///
/// ```rust,ignore
/// let picket = PicketProcess::options()
///     .upstream(upstream.addr())
///     .dnssec_off()
///     .threads(1)
///     .quiet()
///     .spawn();
/// ```
#[derive(Clone, Default)]
pub struct ServeOptions {
    args: Vec<OsString>,
    quiet: bool,
}

impl ServeOptions {
    /// `--upstream SPEC` (an address or a `tls://`, `https://`, `quic://` URL).
    pub fn upstream(&mut self, spec: impl ToString) -> &mut Self {
        self.flag("--upstream", spec.to_string())
    }

    /// `--dnssec off`: the test authorities serve unsigned zones, which a
    /// validating resolver with the root's trust anchor judges bogus.
    pub fn dnssec_off(&mut self) -> &mut Self {
        self.flag("--dnssec", "off")
    }

    /// `--threads N`.
    pub fn threads(&mut self, n: usize) -> &mut Self {
        self.flag("--threads", n.to_string())
    }

    /// `--metrics ADDR`: the admin listener (metrics, health, dashboard).
    pub fn metrics(&mut self, admin: SocketAddr) -> &mut Self {
        self.flag("--metrics", admin.to_string())
    }

    /// `NAME VALUE` for any other flag that takes a value.
    pub fn flag(&mut self, name: &str, value: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(name.into());
        self.args.push(value.as_ref().into());
        self
    }

    /// Arguments as they are (switches, or flags built elsewhere).
    pub fn args<S: AsRef<OsStr>>(&mut self, args: &[S]) -> &mut Self {
        self.args.extend(args.iter().map(|a| a.as_ref().into()));
        self
    }

    /// Its stderr (the log) goes nowhere.
    pub fn quiet(&mut self) -> &mut Self {
        self.quiet = true;
        self
    }

    /// Starts it on a [`free_port`].
    pub fn spawn(&self) -> PicketProcess {
        self.spawn_with(|_| {})
    }

    /// Starts it at the default log level (RUST_LOG unset), its log (stderr)
    /// written to `log` for a test to read.
    pub fn spawn_logging_to(&self, log: &Path) -> PicketProcess {
        self.spawn_with(|command| {
            command
                .env_remove("RUST_LOG")
                .stderr(std::fs::File::create(log).unwrap());
        })
    }

    /// Starts it after `configure` adjusted the command (environment, where
    /// stderr goes).
    pub fn spawn_with(&self, configure: impl FnOnce(&mut Command)) -> PicketProcess {
        let addr = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_picket"));
        command
            .args(["serve", "--listen", &addr.to_string()])
            .args(&self.args);
        if self.quiet {
            command.stderr(Stdio::null());
        }
        configure(&mut command);
        let child = command.spawn().expect("picket starts");
        PicketProcess { child, addr }
    }
}
