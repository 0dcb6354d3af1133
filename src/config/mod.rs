//! Typed, checked settings the server runs with (built from the command line
//! in `cli.rs`), and the limits with their provenance (`limits.rs`).

pub mod limits;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use limits::Limits;

use crate::cache::CacheSettings;
use crate::clock::Clock;
use crate::upstream::{ForwarderSettings, RecursorSettings};

/// Everything `picket serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses to answer on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Upstream nameservers (forwarding mode).
    pub upstreams: Vec<SocketAddr>,
    /// Recursive mode: `Route::Default` iterates from the root hints instead
    /// of forwarding to `upstreams`.
    pub recursion: Option<RecursorSettings>,
    /// Worker threads (each with its own runtime and sockets).
    pub threads: usize,
    /// The shared cache.
    pub cache: CacheSettings,
    /// Upstream timeouts and pool size.
    pub forwarder: ForwarderSettings,
    /// Resource bounds.
    pub limits: Limits,
    /// Directory of policy files (None: allow everything).
    pub policies: Option<PathBuf>,
    /// Quick-start blocklists, blocked with NXDOMAIN for every client.
    pub blocklists: Vec<PathBuf>,
    /// Clock for TTL aging (tests use a manual one).
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            upstreams: Vec::new(),
            recursion: None,
            threads: 1,
            cache: CacheSettings::default(),
            forwarder: ForwarderSettings::default(),
            limits: Limits::default(),
            policies: None,
            blocklists: Vec::new(),
            clock: Clock::system(),
        }
    }
}

/// Parses a byte size such as `256MiB`, `1GiB`, `64k`, `1000000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a size: expected a number with an optional unit, e.g. 256MiB")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`: use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Parses `IP` or `IP:PORT` (IPv6 as `[::1]:53`), defaulting the port.
pub fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = text.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| {
            format!(
                "`{text}` is not an address: expected IP or IP:PORT, e.g. 127.0.0.1:53 or [::1]:53"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_addresses() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert!(parse_size("12 parsecs").unwrap_err().contains("unit"));
        assert_eq!(
            parse_addr("192.0.2.1", 53).unwrap().to_string(),
            "192.0.2.1:53"
        );
        assert_eq!(
            parse_addr("[::1]:5300", 53).unwrap().to_string(),
            "[::1]:5300"
        );
        assert_eq!(parse_addr("::1", 53).unwrap().to_string(), "[::1]:53");
        assert!(parse_addr("nameserver", 53).is_err());
    }
}
