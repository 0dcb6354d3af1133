//! Typed, checked settings the server runs with (built from the command line
//! in `cli.rs`), and the limits with their provenance (`limits.rs`).

pub mod limits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use limits::Limits;

use ipnet::IpNet;

use crate::admission::{AccessList, RateLimitSettings};
use crate::cache::CacheSettings;
use crate::clock::Clock;
use crate::observe::{ClientIpMode, DnstapSettings, QueryLogSettings};
use crate::policy::{LoadOptions, PolicyError, PolicySet};
use crate::upstream::{DnssecMode, ForwarderSettings, RecursorSettings, Upstream};

/// Everything `picket serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses to answer on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Upstream nameservers (forwarding mode): plain, DoT, DoH or DoQ.
    pub upstreams: Vec<Upstream>,
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
    /// Names answered here and never sent upstream (`localhost`, `invalid`,
    /// private reverse zones...; `--local-zone-nodefault`, `--no-local-zones`).
    pub local_zones: crate::local::zones::LocalZones,
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
    /// The secrets server cookies are made with, shared by a fleet (`--cookie-secret-file`,
    /// read again on SIGHUP); None: a random one for this process.
    pub cookie_secret_file: Option<PathBuf>,
    /// Addresses to answer DNS over HTTPS on (RFC 8484), TCP only.
    pub doh: Vec<SocketAddr>,
    /// Addresses to answer DNS over TLS on (RFC 7858), TCP only.
    pub dot: Vec<SocketAddr>,
    /// Addresses to answer DNS over QUIC on (RFC 9250), UDP only.
    pub doq: Vec<SocketAddr>,
    /// Addresses to answer DoH over HTTP/3 on (RFC 9114), UDP only. A DoH
    /// listener on the same port number advertises it (`Alt-Svc`).
    pub doh3: Vec<SocketAddr>,
    /// Where the DoH/DoT/DoQ certificate comes from; required when any is on.
    pub tls: Option<TlsSource>,
    /// Peers whose PROXY protocol v2 header is trusted on the TCP, DoT and
    /// DoH listeners (`--proxy-protocol-from`): from them a header is
    /// required and its source address is the client's; from anyone else a
    /// header closes the connection. Empty: no PROXY protocol at all.
    pub proxy_protocol_from: Vec<IpNet>,
    /// Block public names that resolve to private addresses (`--rebind-protection`).
    pub rebind_protection: bool,
    /// Extra CA certificates (PEM) trusted for HTTPS fetches (`--ca-file`): policy bundles
    /// and list URLs served under a private CA.
    pub ca_file: Option<PathBuf>,
    /// Where the last good policy bundle and list downloads are kept (`--state-dir`), so a
    /// restart while their servers are down serves them. None: kept in memory only.
    pub state_dir: Option<PathBuf>,
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
    /// dnstap output (`--dnstap`).
    pub dnstap: Option<DnstapSettings>,
    /// How much of a client's address the query log and the dashboard show
    /// (`--log-client-ip`; the query log's own setting says the same).
    pub client_ip: ClientIpMode,
    /// Record what the dashboard shows (with the admin listener only). Off
    /// only to measure what it costs (benches/querylog.rs).
    pub dashboard: bool,
    /// Bearer token the admin listener asks for on everything but `/metrics`,
    /// `/healthz` and `/readyz` (`--admin-token`; None: no token).
    pub admin_token: Option<String>,
    /// The block page (`--block-page`, `--block-page-tls`; None: off, and
    /// `"block_page": true` rules answer with their `mode`).
    pub block_page: Option<BlockPageSettings>,
}

/// Where the block page is served and which addresses answers point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPageSettings {
    /// Plain HTTP (`--block-page ADDR`).
    pub http: Option<SocketAddr>,
    /// HTTPS with the `--tls-cert` certificate (`--block-page-tls ADDR`).
    pub https: Option<SocketAddr>,
    /// The A/AAAA addresses `"block_page": true` rules answer with.
    pub addresses: Vec<std::net::IpAddr>,
}

impl BlockPageSettings {
    /// The block page on `http` and/or `https`, answered as `addresses`
    /// (`--block-page-address`) or, when none are given, as the listen
    /// addresses' IPs: a wildcard listen address (`0.0.0.0`, `::`) is no
    /// address a client can be sent to, so then `addresses` are needed.
    pub fn new(
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
        addresses: Vec<std::net::IpAddr>,
    ) -> Result<Self, ValueError> {
        let mut addresses = addresses;
        if addresses.is_empty() {
            for listen in http.iter().chain(https.iter()) {
                if listen.ip().is_unspecified() {
                    return Err(ValueError::BlockPageWildcard(*listen));
                }
                if !addresses.contains(&listen.ip()) {
                    addresses.push(listen.ip());
                }
            }
        }
        if let Some(bad) = addresses
            .iter()
            .find(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(ValueError::BlockPageAddress(*bad));
        }
        Ok(Self {
            http,
            https,
            addresses,
        })
    }
}

impl Settings {
    /// Whether anything beyond the built-in neutral default filters answers
    /// (`--policies`, `--blocklist`, `--rebind-protection`): then Firefox's
    /// canary domain says so (`crate::local`).
    pub fn filters(&self) -> bool {
        self.policies != PolicySource::None || !self.blocklists.is_empty() || self.rebind_protection
    }
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
            local_zones: Default::default(),
            threads: 1,
            cache: CacheSettings::default(),
            forwarder: ForwarderSettings::default(),
            limits: Limits::default(),
            policies: PolicySource::None,
            blocklists: Vec::new(),
            access: AccessList::default(),
            rate_limit: None,
            cookie_secret_file: None,
            doh: Vec::new(),
            dot: Vec::new(),
            doq: Vec::new(),
            doh3: Vec::new(),
            tls: None,
            proxy_protocol_from: Vec::new(),
            rebind_protection: false,
            ca_file: None,
            state_dir: None,
            clock: Clock::system(),
            nsid: None,
            version_text: None,
            health_name: None,
            drain: DrainSettings::default(),
            metrics: None,
            query_log: None,
            dnstap: None,
            client_ip: ClientIpMode::default(),
            dashboard: true,
            admin_token: None,
            block_page: None,
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
    /// A policy bundle file (`picket bundle sign`), its signature checked when a key is given.
    Bundle {
        file: PathBuf,
        key: Option<ed25519_dalek::VerifyingKey>,
    },
    /// Signed bundles polled from a URL (`--policy-url`); see `src/fleet.rs`.
    Url(FleetSettings),
}

/// `--policy-url` and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// `https://` URL of the bundle.
    pub url: String,
    /// The key bundles must be signed with (`--policy-key`).
    pub key: ed25519_dalek::VerifyingKey,
    /// Time between polls (`--policy-interval`), jittered.
    pub interval: Duration,
    /// Accept a bundle with a lower version than the one serving (`--allow-rollback`).
    pub allow_rollback: bool,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("built-in default policy (no organization, no rule)"),
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Bundle { file, .. } => write!(f, "{}", file.display()),
            Self::Url(fleet) => write!(f, "{}", fleet.url),
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
        self.load_with(&LoadOptions {
            blocklists,
            previous,
            remote: None,
        })
    }

    /// [`load`](Self::load) with every option (`url` lists' downloads).
    pub fn load_with(&self, opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
        let opts = *opts;
        match self {
            Self::None => PolicySet::blocklists_only(&opts),
            Self::Dir(dir) => PolicySet::load_dir_with(dir, &opts),
            Self::Bundle { file, key } => load_bundle_file(file, key.as_ref(), &opts),
            // The poller (src/fleet.rs) loads what it fetches; a load from here is of no
            // bundle yet: the built-in default, and the node reports not ready.
            Self::Url(_) => PolicySet::blocklists_only(&opts),
        }
    }
}

/// A flag value that is not what the flag takes.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not a size: expected a number with an optional unit, e.g. 256MiB")]
    NotASize(String),
    #[error("unknown size unit `{unit}` in `{text}`: use B, KiB, MiB or GiB")]
    SizeUnit { unit: String, text: String },
    #[error("size `{0}` is too large")]
    SizeTooLarge(String),
    #[error(
        "`{text}` is not a duration ({reason}): expected a number with a unit, e.g. 5s or 500ms"
    )]
    NotADuration { text: String, reason: String },
    #[error("duration `{0}` is out of range")]
    DurationOutOfRange(String),
    #[error("`{0}` is not an address: expected IP or IP:PORT, e.g. 127.0.0.1:53 or [::1]:53")]
    NotAnAddress(String),
    #[error("the block page listens on every address ({0}), which is no address to put in answers: say which one clients reach it at with --block-page-address IP (repeatable, IPv4 and IPv6)")]
    BlockPageWildcard(SocketAddr),
    #[error("--block-page-address {0} is no address a client can connect to: give the block page's unicast address, e.g. --block-page-address 192.0.2.10")]
    BlockPageAddress(std::net::IpAddr),
}

/// Reads, checks and loads a bundle file; its problems are reported as the file's.
fn load_bundle_file(
    file: &std::path::Path,
    key: Option<&ed25519_dalek::VerifyingKey>,
    opts: &LoadOptions<'_>,
) -> Result<PolicySet, PolicyError> {
    use crate::policy::bundle::Bundle;
    let fail = |msg: String| PolicyError {
        issues: vec![crate::policy::Issue::new_io(file, msg)],
    };
    let bytes = std::fs::read(file).map_err(|e| fail(format!("cannot read the bundle: {e}")))?;
    let max = Limits::default().max_bundle_bytes;
    let bundle = match key {
        Some(key) => Bundle::open(&bytes, key, max),
        None => Bundle::open_unverified(&bytes, max),
    }
    .map_err(|e| fail(e.to_string()))?;
    bundle.load(opts)
}

/// Parses a byte size such as `256MiB`, `1GiB`, `64k`, `1000000`.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| ValueError::NotASize(text.to_owned()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(ValueError::SizeUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| ValueError::SizeTooLarge(text.to_owned()))
}

/// Parses a duration such as `5s`, `500ms`, `2m`, `1m30s` (humantime's units) or `5`
/// (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| ValueError::DurationOutOfRange(text.to_owned()));
    }
    humantime::parse_duration(t).map_err(|e| ValueError::NotADuration {
        text: text.to_owned(),
        reason: e.to_string(),
    })
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
pub fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr, ValueError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = text.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| ValueError::NotAnAddress(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_addresses() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .to_string()
            .contains("unit"));
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
