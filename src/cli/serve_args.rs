//! `picket serve`'s flags, grouped by concern (each group is one section of
//! `picket serve --help`), and their translation into checked [`Settings`].
//!
//! Flag names, value syntax, defaults and env vars are a contract with
//! operators' scripts (pinned by tests/cli.rs): regrouping moves a flag to
//! another section of the help, never renames it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::admission::{AccessList, RateLimitSettings};
use crate::config::{
    normalize_name, parse_addr, parse_duration, parse_size, BlockPageSettings, FleetSettings,
    PolicySource, Settings, TlsSource,
};
use crate::local::zones::LocalZones;
use crate::observe::{ClientIpMode, DnstapSettings, DnstapTarget, LogTarget, QueryLogSettings};
use crate::upstream::recursor::{check_trust_anchor, parse_root_hints};
use crate::upstream::{
    read_ca_file, servers_from_resolv_conf, DnssecMode, RecursorSettings, Upstream,
};

use super::PolicyArgs;

/// `picket serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listeners: ListenerArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub resolution: ResolutionArgs,
    #[command(flatten)]
    pub dnssec: DnssecArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub policy: FilterArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub drain: DrainArgs,
    #[command(flatten)]
    pub logs: LogArgs,
    #[command(flatten)]
    pub query_log: QueryLogArgs,
    #[command(flatten)]
    pub dnstap: DnstapArgs,
    #[command(flatten)]
    pub block_page: BlockPageArgs,
}

/// The block page `"block_page": true` rules send browsers to.
#[derive(Debug, Args)]
#[command(next_help_heading = "Block page")]
pub struct BlockPageArgs {
    /// Serve the block page over HTTP on ADDR, e.g. 192.0.2.10:80. Rules with
    /// "block_page": true then answer A/AAAA with its address (see --block-page-address).
    #[arg(long = "block-page", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 80))]
    pub http: Option<SocketAddr>,

    /// Serve the block page over HTTPS on ADDR, e.g. 192.0.2.10:443, with the --tls-cert
    /// certificate (or --tls-self-signed). Browsers warn unless they trust its CA.
    #[arg(long = "block-page-tls", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 443))]
    pub https: Option<SocketAddr>,

    /// The address answers send browsers to, when it is not the one the block page listens on
    /// (behind NAT, or listening on 0.0.0.0). Repeatable: IPv4 for A, IPv6 for AAAA queries.
    #[arg(long = "block-page-address", value_name = "IP")]
    pub address: Vec<IpAddr>,
}

impl BlockPageArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        if self.http.is_none() && self.https.is_none() {
            if !self.address.is_empty() {
                bail!("--block-page-address says where the block page is: add --block-page ADDR (HTTP) or --block-page-tls ADDR (HTTPS)");
            }
            return Ok(());
        }
        s.block_page = Some(BlockPageSettings::new(
            self.http,
            self.https,
            self.address.clone(),
        )?);
        Ok(())
    }
}

/// Where and how queries are received.
#[derive(Debug, Args)]
#[command(next_help_heading = "Listeners")]
pub struct ListenerArgs {
    /// Address to answer on, UDP and TCP (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:5353", value_parser = |s: &str| parse_addr(s, 53))]
    pub listen: Vec<SocketAddr>,

    /// Address to answer DNS over HTTPS on (RFC 8484), e.g. 127.0.0.1:8443 (repeatable).
    /// Clients use https://HOST:PORT/dns-query. Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "doh", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 443))]
    pub doh: Vec<SocketAddr>,

    /// Address to answer DNS over TLS on (RFC 7858), e.g. 127.0.0.1:853 (repeatable).
    /// Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "dot", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 853))]
    pub dot: Vec<SocketAddr>,

    /// Address to answer DNS over QUIC on (RFC 9250, ALPN doq), UDP, e.g.
    /// 127.0.0.1:853 (repeatable). Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "doq", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 853))]
    pub doq: Vec<SocketAddr>,

    /// Address to answer DoH over HTTP/3 on, UDP, e.g. 127.0.0.1:8443 (repeatable).
    /// On the port number of a --doh address, that one advertises it (Alt-Svc).
    /// Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "doh3", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 443))]
    pub doh3: Vec<SocketAddr>,

    /// Worker threads, each with its own sockets. Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The certificate DoH and DoT present.
#[derive(Debug, Args)]
#[command(next_help_heading = "TLS (DoH, DoT, DoQ, DoH3 and the block page)")]
pub struct TlsArgs {
    /// TLS certificate chain for DoH, DoT, DoQ and DoH3 (PEM, server certificate first).
    /// Read again on SIGHUP.
    #[arg(
        long = "tls-cert",
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM: PKCS#8, RSA or EC). Read again on SIGHUP.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Make a throwaway self-signed certificate for localhost, 127.0.0.1 and ::1
    /// (and every --tls-name), and print its SHA-256 fingerprint. For trying
    /// DoH/DoT out; clients must skip verification or pin the fingerprint.
    #[arg(long = "tls-self-signed")]
    pub tls_self_signed: bool,

    /// Extra DNS name or IP for the --tls-self-signed certificate (repeatable).
    #[arg(long = "tls-name", value_name = "NAME", requires = "tls_self_signed")]
    pub tls_name: Vec<String>,

    /// Extra CA certificates (PEM) trusted wherever Picket is a TLS client: DoT/DoH/DoQ
    /// upstreams (besides the built-in Mozilla roots), policy bundles and list URLs (besides
    /// the system's), e.g. a private CA.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Where answers come from: upstreams to forward to, or recursion from the roots.
#[derive(Debug, Args)]
#[command(next_help_heading = "Upstreams and recursion")]
pub struct ResolutionArgs {
    /// Upstream nameserver to forward to (repeatable): IP[:PORT] (UDP/TCP),
    /// tls://IP[:PORT]#NAME (DoT), https://HOST[:PORT]/PATH[#IP] (DoH; #IP is
    /// where HOST is reached, needed when HOST is a name) or
    /// quic://IP[:PORT]#NAME (DoQ). Default: the nameservers of
    /// /etc/resolv.conf, never Picket itself.
    #[arg(long = "upstream", value_name = "UPSTREAM", value_parser = Upstream::parse)]
    pub upstream: Vec<Upstream>,

    /// resolv.conf to take default upstreams from.
    #[arg(
        long = "resolv-conf",
        value_name = "FILE",
        default_value = "/etc/resolv.conf"
    )]
    pub resolv_conf: PathBuf,

    /// Per-attempt upstream timeout in milliseconds.
    #[arg(long = "upstream-timeout-ms", value_name = "MS", default_value_t = 800)]
    pub upstream_timeout_ms: u64,

    /// Resolve by iterating from the root servers instead of forwarding. Also
    /// the default when no --upstream is given and resolv.conf names no usable
    /// nameserver.
    #[arg(long, conflicts_with = "upstream")]
    pub recursive: bool,

    /// Root hints in zone-file format (`. NS a.root-servers.net.` plus A/AAAA
    /// glue, like named.root). Default: the IANA root servers, built in.
    #[arg(long = "root-hints", value_name = "FILE")]
    pub root_hints: Option<PathBuf>,

    /// Recursive mode: randomise the letter case of names sent to authoritative
    /// servers over UDP and drop answers that do not echo it (0x20,
    /// draft-vixie-dnsext-dns0x20). Forwarding always does it.
    #[arg(long = "case-randomization")]
    pub case_randomization: bool,

    /// Recursive mode: ask every server the whole name instead of one label
    /// more than its zone (QNAME minimisation, RFC 9156, on by default), as
    /// Unbound's `qname-minimisation: no`. For test suites whose fake servers
    /// answer only the full name (Deckard's `query-minimization: off`).
    #[arg(long = "no-qname-minimisation")]
    pub no_qname_minimisation: bool,

    /// Recursive mode may query nameservers on loopback, private and other
    /// special-use addresses (like Unbound's `do-not-query-localhost: no`).
    /// Off by default: a delegation there is usually an attack or a leak.
    #[arg(long = "allow-private-nameservers")]
    pub allow_private_nameservers: bool,

    /// Labs: in recursive mode, send queries for nameserver IP to PORT
    /// instead of 53, e.g. `--nameserver-port 127.0.0.10=5300` for a fake
    /// hierarchy on unprivileged ports (repeatable; loopback and private
    /// addresses also need --allow-private-nameservers).
    #[arg(long = "nameserver-port", value_name = "IP=PORT", value_parser = parse_nameserver_port)]
    pub nameserver_port: Vec<(IpAddr, u16)>,

    /// Send ZONE and the locally served zones under it upstream instead of
    /// answering them here (repeatable), e.g. `10.in-addr.arpa` for an
    /// office resolver that knows its own reverse names. The zones:
    /// localhost, invalid, onion, home.arpa, and the loopback, private and
    /// RFC 6303 reverse zones.
    #[arg(long = "local-zone-nodefault", value_name = "ZONE")]
    pub local_zone_nodefault: Vec<String>,

    /// Send every name upstream: no locally served zones at all.
    #[arg(long = "no-local-zones", conflicts_with = "local_zone_nodefault")]
    pub no_local_zones: bool,
}

/// DNSSEC validation, forwarding and recursive mode alike.
#[derive(Debug, Args)]
#[command(next_help_heading = "DNSSEC")]
pub struct DnssecArgs {
    /// DNSSEC: `validate` (AD on secure answers, SERVFAIL with an EDE on
    /// bogus ones; a CD=1 client gets them as they came) or `off`; forwarded answers too.
    #[arg(long, value_name = "MODE", default_value = "validate")]
    pub dnssec: DnssecFlag,

    /// Trust anchors (DS or DNSKEY records in zone-file format, like
    /// Unbound's trust-anchor-file) instead of the built-in root KSKs.
    #[arg(long = "trust-anchor", value_name = "FILE")]
    pub trust_anchor: Option<PathBuf>,

    /// Do not validate names at or under ZONE (RFC 7646: a zone whose
    /// DNSSEC is broken by mistake); repeatable.
    #[arg(long = "negative-trust-anchor", value_name = "ZONE", value_parser = parse_zone)]
    pub negative_trust_anchor: Vec<hickory_proto::rr::Name>,
}

/// A zone name for `--negative-trust-anchor`.
fn parse_zone(text: &str) -> Result<hickory_proto::rr::Name, String> {
    let mut name = hickory_proto::rr::Name::from_ascii(text).map_err(|e| {
        format!("{text:?} is not a domain name ({e}); give a zone such as example.com")
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// `--dnssec`. The variants carry no doc comments on purpose: clap would show
/// them as a multi-line "Possible values" list and the one-line help of every
/// other flag would change with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DnssecFlag {
    Validate,
    Off,
}

impl From<DnssecFlag> for DnssecMode {
    fn from(flag: DnssecFlag) -> Self {
        match flag {
            DnssecFlag::Validate => DnssecMode::Validate,
            DnssecFlag::Off => DnssecMode::Off,
        }
    }
}

/// The shared answer cache.
#[derive(Debug, Args)]
#[command(next_help_heading = "Cache")]
pub struct CacheArgs {
    /// Cache budget in bytes (units B, KiB, MiB, GiB).
    #[arg(long = "cache-size", value_name = "BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub cache_size: u64,

    /// Keep answers at least this many seconds, whatever their TTL.
    #[arg(long = "min-ttl", value_name = "SECONDS", default_value_t = 0)]
    pub min_ttl: u32,

    /// Keep answers at most this many seconds, and never serve a larger TTL.
    #[arg(long = "max-ttl", value_name = "SECONDS", default_value_t = 86_400)]
    pub max_ttl: u32,

    /// Serve expired answers for this many seconds when upstreams fail (RFC 8767; 0 = off).
    #[arg(long = "stale-window", value_name = "SECONDS", default_value_t = 0)]
    pub stale_window: u32,

    /// Do not refresh popular answers before they expire. By default a hit in the last tenth
    /// of an answer's TTL (TTLs of 10 s and more) starts one background refresh, like
    /// Unbound's `prefetch: yes`, so names asked often never miss.
    #[arg(long = "no-prefetch")]
    pub no_prefetch: bool,
}

/// What gets blocked or rewritten: the policy flags `check` and `explain` share, and
/// rebinding protection.
#[derive(Debug, Args)]
#[command(next_help_heading = "Policy")]
pub struct FilterArgs {
    #[command(flatten)]
    pub source: PolicyArgs,

    /// Pull signed policy bundles (`picket bundle sign`) from this https:// URL, polled every
    /// --policy-interval; each must verify with --policy-key before it is used.
    #[arg(long = "policy-url", value_name = "URL", requires = "policy_key", conflicts_with_all = ["policies", "no_policy"])]
    pub policy_url: Option<String>,

    /// The Ed25519 public key bundles must be signed with (base64, the last line `picket
    /// keygen` prints), or a file holding it.
    #[arg(long = "policy-key", value_name = "PUB", requires = "policy_url")]
    pub policy_key: Option<String>,

    /// Time between polls of --policy-url (jittered by 10%), e.g. 30s, 5m.
    #[arg(long = "policy-interval", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub policy_interval: Duration,

    /// Accept a bundle with a lower version than the one serving (rollback protection is off).
    #[arg(long = "allow-rollback", requires = "policy_url")]
    pub allow_rollback: bool,

    /// Directory where the last good policy bundle and list downloads are kept, so a restart
    /// while their servers are down serves them.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Block public names whose answers hold private or special-use addresses
    /// (DNS rebinding), except names under private zones and names a policy
    /// rule explicitly allows.
    #[arg(long = "rebind-protection")]
    pub rebind_protection: bool,
}

/// Who may query, and how fast.
#[derive(Debug, Args)]
#[command(next_help_heading = "Access and rate limits")]
pub struct AccessArgs {
    /// Networks allowed to query (repeatable, CIDR). Others get REFUSED.
    /// Default: loopback and private ranges, so a fresh install is not an open resolver.
    #[arg(long = "allow-from", value_name = "CIDR", value_parser = parse_net)]
    pub allow_from: Vec<ipnet::IpNet>,

    /// Per-client UDP rate limit in queries/s per /24 (IPv4) or /56 (IPv6); 0 = off. A query
    /// carrying a server cookie Picket gave its address (RFC 7873) is answered anyway.
    #[arg(long = "rate-limit", value_name = "QPS", default_value_t = 0)]
    pub rate_limit: u32,

    /// The secrets server cookies are made and checked with (RFC 7873, RFC 9018), shared by
    /// every node of a fleet so that one node's cookie earns its client the rate-limit
    /// exemption on all: one per line, 32 hex digits (`openssl rand -hex 16`), the one in use
    /// first, at most 3 (for a rollover). Read again on SIGHUP. Default: a random secret per
    /// process.
    #[arg(long = "cookie-secret-file", value_name = "FILE")]
    pub cookie_secret_file: Option<PathBuf>,

    /// Burst allowed above --rate-limit.
    #[arg(long = "rate-limit-burst", value_name = "N", default_value_t = 0)]
    pub rate_limit_burst: u32,

    /// Over the rate limit, answer every Nth query with TC=1 (so spoofed
    /// victims can retry over TCP) and drop the rest; 0 drops all.
    #[arg(long = "rate-limit-slip", value_name = "N", default_value_t = 2)]
    pub rate_limit_slip: u32,

    /// Load balancers to trust PROXY protocol v2 headers from (repeatable,
    /// CIDR), e.g. HAProxy with `send-proxy-v2`: on the TCP, DoT and DoH
    /// listeners their connections must start with one, and its source
    /// address is the client's (access list, policy, query log). A header
    /// from any other peer closes the connection. Not over UDP.
    #[arg(long = "proxy-protocol-from", value_name = "CIDR", value_parser = parse_net)]
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
}

/// Names answered locally about this node: NSID, CHAOS and the health name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Identity and health")]
pub struct IdentityArgs {
    /// This node's identity, sent as NSID (RFC 5001) to clients that ask and
    /// answered to CHAOS TXT `id.server.` / `hostname.bind.`. Default: the
    /// hostname; `--nsid ''` turns both off.
    #[arg(long, value_name = "TEXT")]
    pub nsid: Option<String>,

    /// Answer CHAOS TXT `version.bind.` / `version.server.` with TEXT
    /// (default: REFUSED, nothing to fingerprint).
    #[arg(long = "chaos-version", value_name = "TEXT")]
    pub chaos_version: Option<String>,

    /// A name answered locally for DNS health checks, never forwarded:
    /// A 127.0.0.1 / TXT "ok" while ready, SERVFAIL while starting, draining
    /// or without a working upstream. E.g. `--health-name health.picket.`
    #[arg(long = "health-name", value_name = "NAME")]
    pub health_name: Option<String>,
}

/// The graceful stop on SIGTERM/SIGINT.
#[derive(Debug, Args)]
#[command(next_help_heading = "Drain")]
pub struct DrainArgs {
    /// On SIGTERM/SIGINT, keep answering this long after turning not ready
    /// (while the route is withdrawn), e.g. 5s or 500ms.
    #[arg(long = "drain-grace", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Shell command run (`sh -c`) when a drain begins, before the grace
    /// period, e.g. `birdc disable anycast`.
    #[arg(long = "drain-hook", value_name = "CMD")]
    pub drain_hook: Option<String>,

    /// The drain hook is killed after this long.
    #[arg(long = "drain-hook-timeout", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub drain_hook_timeout: Duration,

    /// After the grace period the listeners close; queries in flight and open
    /// TCP exchanges get this long to finish before Picket exits.
    #[arg(long = "drain-timeout", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// The process's own logs and metrics.
#[derive(Debug, Args)]
#[command(next_help_heading = "Logs and metrics")]
pub struct LogArgs {
    /// Log level (error, warn, info, debug, trace), or a RUST_LOG-style filter.
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        env = "RUST_LOG",
        default_value = "info"
    )]
    pub log_level: String,

    /// Process log format on stderr: `text` (for people) or `json` (one object per line, for log shippers).
    #[arg(long = "log-format", value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics on http://ADDR/metrics, with /healthz,
    /// /readyz, the dashboard on / and its JSON under /api/ (IP[:PORT], port
    /// 9153 if omitted), e.g. 127.0.0.1:9153. Off by default.
    #[arg(long = "metrics", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 9153))]
    pub metrics: Option<SocketAddr>,

    /// Bearer token the admin listener asks for on everything but /metrics,
    /// /healthz and /readyz (the dashboard and /api/). Make one with
    /// `picket token`; the environment keeps it out of `ps`.
    #[arg(
        long = "admin-token",
        value_name = "TOKEN",
        env = "PICKET_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

impl LogArgs {
    /// `--admin-token`, which protects the admin listener and needs it.
    fn admin_token(&self) -> Result<Option<String>> {
        let Some(token) = &self.admin_token else {
            return Ok(None);
        };
        if self.metrics.is_none() {
            bail!("--admin-token protects the admin listener: add --metrics ADDR, e.g. --metrics 127.0.0.1:9153");
        }
        let token = token.trim();
        if token.is_empty() {
            bail!("--admin-token is empty: give a token, e.g. one made by `picket token`, or leave the flag out");
        }
        if token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("--admin-token must be 1 to 256 printable ASCII characters without spaces (it travels in an HTTP header), e.g. one made by `picket token`");
        }
        Ok(Some(token.to_string()))
    }
}

/// `--log-format` (no doc comments on the variants: see [`DnssecFlag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// dnstap telemetry (Frame Streams to a collector).
#[derive(Debug, Args)]
#[command(next_help_heading = "dnstap")]
pub struct DnstapArgs {
    /// Send every client query and response as dnstap messages to a Frame
    /// Streams collector: unix:PATH (e.g. fstrm_capture -u PATH) or
    /// tcp:HOST:PORT (e.g. Vector's dnstap source). Off by default.
    #[arg(long = "dnstap", value_name = "TARGET", value_parser = DnstapTarget::parse)]
    pub dnstap: Option<DnstapTarget>,

    /// The identity field of every dnstap message. Default: the host name.
    #[arg(long = "dnstap-identity", value_name = "TEXT", requires = "dnstap")]
    pub dnstap_identity: Option<String>,

    /// The version field of every dnstap message. Default: "picket VERSION".
    #[arg(long = "dnstap-version", value_name = "TEXT", requires = "dnstap")]
    pub dnstap_version: Option<String>,

    /// Also send the queries Picket sends upstream and their answers
    /// (FORWARDER_QUERY/RESPONSE when forwarding).
    #[arg(long = "dnstap-upstream", requires = "dnstap")]
    pub dnstap_upstream: bool,

    /// dnstap messages waiting for the writer at most (then dropped and counted).
    #[arg(long = "dnstap-queue", value_name = "MESSAGES", default_value_t = crate::config::limits::DNSTAP_QUEUE, requires = "dnstap")]
    pub dnstap_queue: usize,
}

impl DnstapArgs {
    fn settings(&self) -> Result<Option<DnstapSettings>> {
        let Some(target) = &self.dnstap else {
            return Ok(None);
        };
        if self.dnstap_queue == 0 {
            bail!("--dnstap-queue must be at least 1");
        }
        Ok(Some(DnstapSettings {
            target: target.clone(),
            identity: self.dnstap_identity.clone(),
            version: self.dnstap_version.clone(),
            upstream: self.dnstap_upstream,
            queue: self.dnstap_queue,
        }))
    }
}

/// One JSON line per query.
#[derive(Debug, Args)]
#[command(next_help_heading = "Query log")]
pub struct QueryLogArgs {
    /// Write one JSON line per query to this file (appended), or to standard
    /// output with `-`. Off by default.
    #[arg(long = "query-log", value_name = "PATH|-")]
    pub query_log: Option<String>,

    /// Rotate the query log once it would grow past this size: the file is
    /// renamed to PATH.1 (replacing an older one) and a new one started.
    /// Without it, rotate externally (logrotate) and send SIGHUP to reopen.
    #[arg(long = "query-log-max-bytes", value_name = "BYTES", value_parser = parse_size)]
    pub query_log_max_bytes: Option<u64>,

    /// Query-log lines that may wait for the writer; past that, lines are
    /// dropped (and counted), never delaying answers.
    #[arg(long = "query-log-buffer", value_name = "LINES", default_value_t = crate::observe::querylog::DEFAULT_BUFFER_LINES)]
    pub query_log_buffer: usize,

    /// How much of the client address the query log keeps: none, truncate
    /// (/24 for IPv4, /56 for IPv6) or full.
    #[arg(
        long = "log-client-ip",
        value_name = "MODE",
        default_value = "truncate"
    )]
    pub log_client_ip: LogClientIp,

    /// Never log queries for the names in FILE (one per line) or their subdomains.
    #[arg(long = "log-exclude", value_name = "FILE")]
    pub log_exclude: Option<PathBuf>,
}

/// `--log-client-ip` (no doc comments on the variants: see [`DnssecFlag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogClientIp {
    None,
    Truncate,
    Full,
}

impl From<LogClientIp> for ClientIpMode {
    fn from(flag: LogClientIp) -> Self {
        match flag {
            LogClientIp::None => ClientIpMode::None,
            LogClientIp::Truncate => ClientIpMode::Truncate,
            LogClientIp::Full => ClientIpMode::Full,
        }
    }
}

impl ServeArgs {
    /// Turns the flags into checked settings. The groups are checked in a
    /// fixed order, so of several mistakes the same one is reported first.
    pub fn settings(&self) -> Result<Settings> {
        let mut s = Settings::default();
        self.listeners.apply(&mut s)?;
        s.tls = self.tls.source();
        s.ca_file = self.tls.ca_file.clone();
        self.cache.apply(&mut s)?;
        self.resolution.apply_timeouts(&mut s);
        self.identity.apply(&mut s)?;
        self.drain.apply(&mut s);
        self.policy.apply(&mut s)?;
        self.access.apply(&mut s);
        s.metrics = self.logs.metrics;
        s.admin_token = self.logs.admin_token()?;
        s.client_ip = self.query_log.log_client_ip.into();
        s.query_log = self.query_log.settings()?;
        s.dnstap = self.dnstap.settings()?;
        self.block_page.apply(&mut s)?;
        self.apply_resolution(&mut s)?;
        Ok(s)
    }

    /// Forwarding to `--upstream` (or resolv.conf's nameservers), else
    /// recursion. Needs `s.listen` already set.
    fn apply_resolution(&self, s: &mut Settings) -> Result<()> {
        let r = &self.resolution;
        if let Some(path) = &self.tls.ca_file {
            s.forwarder.ca_roots = read_ca_file(path)?;
        }
        s.upstreams = if r.recursive || !r.upstream.is_empty() {
            r.upstream.clone()
        } else {
            r.upstreams_from_resolv_conf(&s.listen)
                .into_iter()
                .map(Upstream::from)
                .collect()
        };
        // No usable resolv.conf (missing, unreadable or only ourselves):
        // recurse rather than refuse to start.
        let recursive = r.recursive || s.upstreams.is_empty();
        s.dnssec = self.dnssec.dnssec.into();
        s.negative_trust_anchors = self.dnssec.negative_trust_anchor.clone();
        s.local_zones = match r.no_local_zones {
            true => LocalZones::none(),
            false => LocalZones::without(&r.local_zone_nodefault)?,
        };
        if let Some(path) = &self.dnssec.trust_anchor {
            s.trust_anchor = Some(
                check_trust_anchor(path)
                    .with_context(|| format!("bad trust anchor file {}", path.display()))?,
            );
        }
        if !recursive {
            if r.root_hints.is_some() || !r.nameserver_port.is_empty() {
                bail!("--root-hints and --nameserver-port apply to recursive mode: add --recursive or drop --upstream");
            }
            return Ok(());
        }
        s.upstreams.clear();
        s.recursion = Some(self.recursion_settings()?);
        Ok(())
    }

    fn recursion_settings(&self) -> Result<RecursorSettings> {
        let r = &self.resolution;
        let mut settings = RecursorSettings {
            case_randomization: r.case_randomization,
            qname_minimisation: !r.no_qname_minimisation,
            dnssec: self.dnssec.dnssec.into(),
            negative_anchors: self.dnssec.negative_trust_anchor.clone(),
            ..RecursorSettings::default()
        };
        if let Some(path) = &r.root_hints {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read root hints {}", path.display()))?;
            settings.root_hints = parse_root_hints(&text)
                .with_context(|| format!("bad root hints in {}", path.display()))?;
        }
        if let Some(path) = &self.dnssec.trust_anchor {
            settings.trust_anchor = Some(
                check_trust_anchor(path)
                    .with_context(|| format!("bad trust anchor file {}", path.display()))?,
            );
        }
        if r.allow_private_nameservers {
            settings.deny_servers.clear();
        }
        settings.nameserver_ports = r.nameserver_port.iter().copied().collect();
        Ok(settings)
    }
}

impl ListenerArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        s.listen = self.listen.clone();
        s.threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if s.threads == 0 {
            bail!("--threads must be at least 1");
        }
        s.doh = self.doh.clone();
        s.dot = self.dot.clone();
        s.doq = self.doq.clone();
        s.doh3 = self.doh3.clone();
        Ok(())
    }
}

impl TlsArgs {
    /// Where the DoH/DoT certificate comes from (clap has checked that the
    /// file flags come in pairs and exclude --tls-self-signed).
    fn source(&self) -> Option<TlsSource> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ if self.tls_self_signed => Some(TlsSource::SelfSigned {
                names: self.tls_name.clone(),
            }),
            _ => None,
        }
    }
}

impl CacheArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        if self.min_ttl > self.max_ttl {
            bail!(
                "--min-ttl ({}) is larger than --max-ttl ({}): lower --min-ttl or raise --max-ttl",
                self.min_ttl,
                self.max_ttl
            );
        }
        s.cache.max_bytes = self.cache_size;
        s.cache.min_ttl = self.min_ttl;
        s.cache.max_ttl = self.max_ttl;
        s.cache.stale_window = self.stale_window;
        s.cache.prefetch = !self.no_prefetch;
        Ok(())
    }
}

impl ResolutionArgs {
    /// The whole exchange gets three attempts' worth, so one slow upstream
    /// still leaves time to fail over.
    fn apply_timeouts(&self, s: &mut Settings) {
        s.forwarder.attempt_timeout = Duration::from_millis(self.upstream_timeout_ms.max(1));
        s.forwarder.total_timeout = s.forwarder.attempt_timeout * 3;
    }

    /// resolv.conf's nameservers other than our own listeners; none (and a
    /// warning) when it cannot be read.
    fn upstreams_from_resolv_conf(&self, listen: &[SocketAddr]) -> Vec<SocketAddr> {
        servers_from_resolv_conf(&self.resolv_conf, listen).unwrap_or_else(|e| {
            tracing::warn!(
                path = %self.resolv_conf.display(),
                error = %e,
                "cannot read upstreams from resolv.conf"
            );
            Vec::new()
        })
    }
}

impl IdentityArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        s.nsid = match &self.nsid {
            None => hostname(),
            Some(text) if text.is_empty() => None,
            Some(text) if text.len() > 255 => bail!(
                "--nsid is {} bytes long; at most 255 fit (RFC 5001 allows more, but a TXT string holds 255)",
                text.len()
            ),
            Some(text) => Some(text.as_bytes().to_vec()),
        };
        s.version_text = self.chaos_version.clone().filter(|t| !t.is_empty());
        s.health_name = match &self.health_name {
            None => None,
            Some(name) => Some(normalize_name(name).with_context(|| {
                format!("--health-name `{name}` is not a DNS name, e.g. health.picket.")
            })?),
        };
        Ok(())
    }
}

impl DrainArgs {
    fn apply(&self, s: &mut Settings) {
        s.drain.grace = self.drain_grace;
        s.drain.hook = self.drain_hook.clone().filter(|h| !h.trim().is_empty());
        s.drain.hook_timeout = self.drain_hook_timeout;
        s.drain.finish_timeout = self.drain_timeout;
    }
}

impl FilterArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        s.rebind_protection = self.rebind_protection;
        s.policies = self.source.source();
        s.blocklists = self.source.blocklist.clone();
        s.state_dir = self.state_dir.clone();
        if let (Some(url), Some(key)) = (&self.policy_url, &self.policy_key) {
            if !url.starts_with("https://") {
                bail!("--policy-url {url}: only https:// URLs are fetched");
            }
            let key = crate::policy::bundle::parse_public_key(key)
                .map_err(|e| anyhow::anyhow!("--policy-key: {e}"))?;
            let interval = crate::fleet::check_interval(self.policy_interval, &s.limits)
                .map_err(|e| anyhow::anyhow!("--policy-interval: {e}"))?;
            s.policies = PolicySource::Url(FleetSettings {
                url: url.clone(),
                key,
                interval,
                allow_rollback: self.allow_rollback,
            });
        }
        Ok(())
    }
}

impl AccessArgs {
    /// Without flags the defaults of [`Settings`] stay: the private-range
    /// access list and no rate limit.
    fn apply(&self, s: &mut Settings) {
        if !self.allow_from.is_empty() {
            s.access = AccessList::new(self.allow_from.clone());
        }
        s.proxy_protocol_from = self.proxy_protocol_from.clone();
        s.cookie_secret_file = self.cookie_secret_file.clone();
        if self.rate_limit > 0 {
            s.rate_limit = Some(RateLimitSettings {
                qps: self.rate_limit,
                burst: self.rate_limit_burst,
                slip: self.rate_limit_slip,
            });
        }
    }
}

impl QueryLogArgs {
    /// `--query-log` and its companions, which mean nothing without it.
    fn settings(&self) -> Result<Option<QueryLogSettings>> {
        let Some(target) = &self.query_log else {
            if self.log_exclude.is_some() || self.query_log_max_bytes.is_some() {
                bail!("--log-exclude and --query-log-max-bytes apply to the query log: add --query-log PATH (or - for stdout)");
            }
            return Ok(None);
        };
        let target = match target.as_str() {
            "-" => LogTarget::Stdout,
            "" => bail!("--query-log needs a path, or - for standard output"),
            path => LogTarget::File(PathBuf::from(path)),
        };
        if target == LogTarget::Stdout && self.query_log_max_bytes.is_some() {
            bail!("--query-log-max-bytes needs a file: standard output cannot be rotated");
        }
        if self.query_log_buffer == 0 {
            bail!("--query-log-buffer must be at least 1");
        }
        Ok(Some(QueryLogSettings {
            target,
            max_bytes: self.query_log_max_bytes,
            client_ip: self.log_client_ip.into(),
            exclude: self.log_exclude.clone(),
            buffer_lines: self.query_log_buffer,
        }))
    }
}

/// The host's name (the default NSID), None if it cannot be read.
fn hostname() -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    (len > 0).then(|| buf[..len].to_vec())
}

/// `IP=PORT`, for `--nameserver-port`.
fn parse_nameserver_port(text: &str) -> Result<(IpAddr, u16), String> {
    let wrong = || format!("`{text}` is not IP=PORT, e.g. 127.0.0.10=5300");
    let (ip, port) = text.split_once('=').ok_or_else(wrong)?;
    let ip = ip.trim().parse::<IpAddr>().map_err(|_| wrong())?;
    let port = port.trim().parse::<u16>().ok().filter(|&p| p > 0);
    Ok((ip, port.ok_or_else(wrong)?))
}

/// Parses a CIDR network, or a single address as a /32 or /128.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("`{text}` is not a network: expected CIDR such as 192.0.2.0/24 or an address")
        })
}
