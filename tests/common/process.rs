//! The picket binary as a separate process, for tests that need what only a
//! process has (its RSS, its exit status, its stderr).

use std::net::SocketAddr;
use std::process::{Child, Command};

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

/// `picket serve` on a free loopback port (UDP and TCP); killed on drop.
pub struct PicketProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl PicketProcess {
    /// Starts `picket serve --listen ADDR ARGS...`; `configure` adjusts the
    /// command first (log level, environment, where stderr goes).
    pub fn serve<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_picket"));
        command
            .args(["serve", "--listen", &addr.to_string()])
            .args(args);
        configure(&mut command);
        let child = command.spawn().expect("picket starts");
        Self { child, addr }
    }
}

impl Drop for PicketProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
