//! Typed, checked settings the server runs with (built from the command line
//! in `cli.rs`), and the limits with their provenance (`limits.rs`).

pub mod limits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use limits::Limits;

use crate::admission::{AccessList, RateLimitSettings};
use crate::cache::CacheSettings;
use crate::clock::Clock;
use crate::observe::QueryLogSettings;
use crate::policy::{LoadOptions, PolicyError, PolicySet};
use crate::upstream::{DnssecMode, ForwarderSettings, RecursorSettings};

/// Everything `picket serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses to answer on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Upstream nameservers (forwarding mode).
    pub upstreams: Vec<SocketAddr>,
    /// Recursive mode: `RouteId::Default` iterates from the root hints instead
    /// of forwarding to `upstreams`.
    pub recursion: Option<RecursorSettings>,
    /// DNSSEC validation of forwarded answers (`--dnssec`; recursion reads
    /// its own copy in `RecursorSettings`).
    pub dnssec: DnssecMode,
    /// Trust anchors (`--trust-anchor` file text, DS or DNSKEY records);
    /// None: the built-in root KSKs.
    pub trust_anchor: Option<String>,
    /// Negative trust anchors (`--negative-trust-anchor`, RFC 7646): names
    /// at or under them are not validated.
    pub negative_trust_anchors: Vec<hickory_proto::rr::Name>,
    /// Worker threads (each with its own runtime and sockets).
    pub threads: usize,
    /// The shared cache.
    pub cache: CacheSettings,
    /// Upstream timeouts and pool size.
    pub forwarder: ForwarderSettings,
    /// Resource bounds.
    pub limits: Limits,
    /// Where the policy comes from.
    pub policies: PolicySource,
    /// Quick-start blocklists, blocked with NXDOMAIN for every client.
    pub blocklists: Vec<PathBuf>,
    /// Who may ask (`--allow-from`; default loopback and private ranges).
    pub access: AccessList,
    /// Per-client rate limiting (`--rate-limit`); None is off.
    pub rate_limit: Option<RateLimitSettings>,
    /// Addresses to answer DNS over HTTPS on (RFC 8484), TCP only.
    pub doh: Vec<SocketAddr>,
    /// Addresses to answer DNS over TLS on (RFC 7858), TCP only.
    pub dot: Vec<SocketAddr>,
    /// Where the DoH/DoT certificate comes from; required when either is on.
    pub tls: Option<TlsSource>,
    /// Block public names that resolve to private addresses (`--rebind-protection`).
    pub rebind_protection: bool,
    /// Clock for TTL aging (tests use a manual one).
    pub clock: Clock,
    /// This node's identity: sent as NSID (RFC 5001) to clients that ask and
    /// as the CHAOS TXT answer to `id.server.` / `hostname.bind.` (None: off).
    pub nsid: Option<Vec<u8>>,
    /// CHAOS TXT answer to `version.bind.` / `version.server.` (None: REFUSED).
    pub version_text: Option<String>,
    /// Name answered locally for DNS health checks (lower case, no trailing
    /// dot): A 127.0.0.1 / TXT "ok" when ready, SERVFAIL when not.
    pub health_name: Option<String>,
    /// Graceful stop on SIGTERM/SIGINT.
    pub drain: DrainSettings,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz` (None: off).
    pub metrics: Option<SocketAddr>,
    /// One JSON line per query (None: off).
    pub query_log: Option<QueryLogSettings>,
}

/// How a stop drains (see `Server::drain`).
#[derive(Debug, Clone)]
pub struct DrainSettings {
    /// Keep answering this long after turning not ready, so the route is
    /// withdrawn before the listeners close.
    pub grace: Duration,
    /// Shell command run (`sh -c`) as the drain begins, e.g. `birdc disable anycast`.
    pub hook: Option<String>,
    /// The hook is killed after this long.
    pub hook_timeout: Duration,
    /// Once the listeners close, how long in-flight queries and open
    /// TCP/DoT/DoH exchanges may take to finish.
    pub finish_timeout: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            hook: None,
            hook_timeout: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(5),
        }
    }
}

/// The certificate and key DoH and DoT present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files, read at start and again on SIGHUP.
    Files { cert: PathBuf, key: PathBuf },
    /// A throwaway certificate made at start for localhost, 127.0.0.1, ::1
    /// and these extra names (for trying things out; clients must skip
    /// verification or pin its fingerprint).
    SelfSigned { names: Vec<String> },
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            upstreams: Vec::new(),
            recursion: None,
            dnssec: DnssecMode::Validate,
            trust_anchor: None,
            negative_trust_anchors: Vec::new(),
            threads: 1,
            cache: CacheSettings::default(),
            forwarder: ForwarderSettings::default(),
            limits: Limits::default(),
            policies: PolicySource::None,
            blocklists: Vec::new(),
            access: AccessList::default(),
            rate_limit: None,
            doh: Vec::new(),
            dot: Vec::new(),
            tls: None,
            rebind_protection: false,
            clock: Clock::system(),
            nsid: None,
            version_text: None,
            health_name: None,
            drain: DrainSettings::default(),
            metrics: None,
            query_log: None,
        }
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The built-in default: no organization and no rule, so every query resolves and nothing
    /// is blocked that the operator did not ask for (`--blocklist`, `--rebind-protection`).
    /// Also what `--no-policy` asks for.
    None,
    /// A directory of `*.json` policy files, reloaded when they change.
    Dir(PathBuf),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("built-in default policy (no organization, no rule)"),
            Self::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

impl PolicySource {
    /// Loads the policy with the quick-start blocklists. `previous`, the policy in force, lends
    /// its lists when none of them changed (see [`LoadOptions::previous`]).
    pub fn load(
        &self,
        blocklists: &[PathBuf],
        previous: Option<&PolicySet>,
    ) -> Result<PolicySet, PolicyError> {
        let opts = LoadOptions {
            blocklists,
            previous,
        };
        match self {
            Self::None => PolicySet::blocklists_only(&opts),
            Self::Dir(dir) => PolicySet::load_dir_with(dir, &opts),
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

/// Parses a duration such as `5s`, `500ms`, `2m` or `5` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: expected a number with a unit, e.g. 5s or 500ms")
    })?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}`: use ms, s or m"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration `{text}` is out of range"))
}

/// Normalizes a DNS name for comparison with `Request::qname`: lower case,
/// no trailing dot; None for an empty or invalid name.
pub fn normalize_name(text: &str) -> Option<String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63);
    valid.then_some(name)
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
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            normalize_name("Health.Picket.").as_deref(),
            Some("health.picket")
        );
        assert_eq!(normalize_name("."), None);
        assert_eq!(normalize_name("a..b"), None);
    }
}
