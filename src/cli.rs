//! The command line: `picket serve | check | explain`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::admission::{AccessList, RateLimitSettings};
use crate::app::{Reloader, Server};
use crate::config::PolicySource;
use crate::config::{normalize_name, parse_addr, parse_duration, parse_size, Settings, TlsSource};
use crate::listener::tls::Tls;
use crate::observe::{ClientIpMode, LogTarget, QueryLogSettings};
use crate::query::{ClientHints, Transport};
use crate::upstream::recursor::{check_trust_anchor, parse_root_hints};
use crate::upstream::{servers_from_resolv_conf, DnssecMode, RecursorSettings};

/// Picket: a fast filtering recursive DNS resolver.
#[derive(Debug, Parser)]
#[command(name = "picket", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer DNS queries.
    Serve(Box<ServeArgs>),
    /// Validate the policies and run their tests; exit status 1 on any error or failed test.
    Check(CheckArgs),
    /// Show which rule decides a query and why, and the answer that would be sent.
    Explain(ExplainArgs),
    /// Print a fresh random DoH path token or DoT server name label (25 characters of a-z0-9, 129 bits).
    Token,
}

/// `picket check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy directory (the same as --policies). Default: the policy `serve` runs without
    /// --policies, the built-in default (no organization, no rule).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Policy directory.
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Option<PathBuf>,

    /// Check the built-in default policy (what `serve --no-policy` runs).
    #[arg(long = "no-policy", conflicts_with_all = ["policies", "dir"])]
    pub no_policy: bool,

    /// A `serve --blocklist` file to check with the policy (repeatable).
    #[arg(long = "blocklist", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,
}

/// `picket explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The query name, e.g. ads.example.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The query type (mnemonic or number).
    #[arg(value_name = "TYPE", default_value = "A")]
    pub qtype: String,

    /// The client's address.
    #[arg(long = "client", value_name = "IP", default_value = "127.0.0.1")]
    pub client: IpAddr,

    /// Evaluate as this organization, whatever the client address says.
    #[arg(long = "org", value_name = "ID")]
    pub org: Option<String>,

    /// The transport the query arrives over (udp, tcp, doh, dot).
    #[arg(long = "transport", value_name = "NAME", default_value = "udp", value_parser = parse_transport)]
    pub transport: Transport,

    /// Policy directory. Default: the policy `serve` runs without --policies, the built-in
    /// default (no organization, no rule).
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Option<PathBuf>,

    /// Explain with the built-in default policy (what `serve --no-policy` runs).
    #[arg(long = "no-policy", conflicts_with = "policies")]
    pub no_policy: bool,

    /// A `serve --blocklist` file to explain with the policy (repeatable).
    #[arg(long = "blocklist", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,
}

/// `picket serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to answer on, UDP and TCP (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:5353", value_parser = |s: &str| parse_addr(s, 53))]
    pub listen: Vec<SocketAddr>,

    /// Upstream nameserver to forward to, IP[:PORT] (repeatable). Default: the
    /// nameservers of /etc/resolv.conf, never Picket itself.
    #[arg(long = "upstream", value_name = "ADDR[:PORT]", value_parser = |s: &str| parse_addr(s, 53))]
    pub upstream: Vec<SocketAddr>,

    /// Resolve by iterating from the root servers instead of forwarding. Also
    /// the default when no --upstream is given and resolv.conf names no usable
    /// nameserver.
    #[arg(long, conflicts_with = "upstream")]
    pub recursive: bool,

    /// Root hints in zone-file format (`. NS a.root-servers.net.` plus A/AAAA
    /// glue, like named.root). Default: the IANA root servers, built in.
    #[arg(long = "root-hints", value_name = "FILE")]
    pub root_hints: Option<PathBuf>,

    /// DNSSEC in recursive mode: `validate` (AD on secure answers, SERVFAIL
    /// with EDE 6 on bogus ones; CD=1 skips it) or `off`.
    #[arg(long, value_name = "MODE", default_value = "validate", value_parser = ["validate", "off"])]
    pub dnssec: String,

    /// Trust anchors (DS or DNSKEY records in zone-file format, like
    /// Unbound's trust-anchor-file) instead of the built-in root KSKs.
    #[arg(long = "trust-anchor", value_name = "FILE")]
    pub trust_anchor: Option<PathBuf>,

    /// Recursive mode: randomise the letter case of names sent to authoritative
    /// servers over UDP and drop answers that do not echo it (0x20,
    /// draft-vixie-dnsext-dns0x20). Forwarding always does it.
    #[arg(long = "case-randomization")]
    pub case_randomization: bool,

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

    /// Worker threads, each with its own sockets. Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

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

    /// Directory of policy files (*.json), reloaded on change and on SIGHUP, e.g.
    /// `--policies policies/examples`. Default: the built-in default policy, with no
    /// organization and no rule (resolve everything, block nothing).
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Option<PathBuf>,

    /// Run with the built-in default policy: resolve everything (--blocklist and
    /// --rebind-protection still apply). The same as giving no --policies.
    #[arg(long = "no-policy", conflicts_with = "policies")]
    pub no_policy: bool,

    /// Block every name on this list (and its subdomains) with NXDOMAIN for
    /// every client (repeatable; plain, hosts or adblock format).
    #[arg(long = "blocklist", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,

    /// Per-attempt upstream timeout in milliseconds.
    #[arg(long = "upstream-timeout-ms", value_name = "MS", default_value_t = 800)]
    pub upstream_timeout_ms: u64,

    /// Address to answer DNS over HTTPS on (RFC 8484), e.g. 127.0.0.1:8443 (repeatable).
    /// Clients use https://HOST:PORT/dns-query. Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "doh", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 443))]
    pub doh: Vec<SocketAddr>,

    /// Address to answer DNS over TLS on (RFC 7858), e.g. 127.0.0.1:853 (repeatable).
    /// Needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long = "dot", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 853))]
    pub dot: Vec<SocketAddr>,

    /// TLS certificate chain for DoH and DoT (PEM, server certificate first).
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

    /// resolv.conf to take default upstreams from.
    #[arg(
        long = "resolv-conf",
        value_name = "FILE",
        default_value = "/etc/resolv.conf"
    )]
    pub resolv_conf: PathBuf,

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

    /// Log level (error, warn, info, debug, trace), or a RUST_LOG-style filter.
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        env = "RUST_LOG",
        default_value = "info"
    )]
    pub log_level: String,

    /// Process log format on stderr: `text` (for people) or `json` (one object per line, for log shippers).
    #[arg(long = "log-format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Block public names whose answers hold private or special-use addresses
    /// (DNS rebinding), except names under private zones and names a policy
    /// rule explicitly allows.
    #[arg(long = "rebind-protection")]
    pub rebind_protection: bool,

    /// Networks allowed to query (repeatable, CIDR). Others get REFUSED.
    /// Default: loopback and private ranges, so a fresh install is not an open resolver.
    #[arg(long = "allow-from", value_name = "CIDR", value_parser = parse_net)]
    pub allow_from: Vec<ipnet::IpNet>,

    /// Per-client UDP rate limit in queries/s per /24 (IPv4) or /56 (IPv6); 0 = off.
    #[arg(long = "rate-limit", value_name = "QPS", default_value_t = 0)]
    pub rate_limit: u32,

    /// Burst allowed above --rate-limit.
    #[arg(long = "rate-limit-burst", value_name = "N", default_value_t = 0)]
    pub rate_limit_burst: u32,

    /// Over the rate limit, answer every Nth query with TC=1 (so spoofed
    /// victims can retry over TCP) and drop the rest; 0 drops all.
    #[arg(long = "rate-limit-slip", value_name = "N", default_value_t = 2)]
    pub rate_limit_slip: u32,

    /// Serve Prometheus metrics on http://ADDR/metrics, with /healthz and
    /// /readyz (IP[:PORT], port 9153 if omitted). Off by default.
    #[arg(long = "metrics", value_name = "ADDR", value_parser = |s: &str| parse_addr(s, 9153))]
    pub metrics: Option<SocketAddr>,

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
    pub log_client_ip: ClientIpMode,

    /// Never log queries for the names in FILE (one per line) or their subdomains.
    #[arg(long = "log-exclude", value_name = "FILE")]
    pub log_exclude: Option<PathBuf>,
}

impl ServeArgs {
    /// Where the DoH/DoT certificate comes from (clap has checked that the
    /// file flags come in pairs and exclude --tls-self-signed).
    fn tls_source(&self) -> Option<TlsSource> {
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

    /// Turns the flags into checked settings.
    pub fn settings(&self) -> Result<Settings> {
        let mut s = Settings {
            listen: self.listen.clone(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            doh: self.doh.clone(),
            dot: self.dot.clone(),
            tls: self.tls_source(),
            ..Settings::default()
        };
        if s.threads == 0 {
            bail!("--threads must be at least 1");
        }
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
        s.forwarder.attempt_timeout = Duration::from_millis(self.upstream_timeout_ms.max(1));
        s.forwarder.total_timeout = s.forwarder.attempt_timeout * 3;
        self.apply_serving(&mut s)?;
        s.metrics = self.metrics;
        s.query_log = self.query_log_settings()?;
        if !self.recursive && self.upstream.is_empty() {
            // No usable resolv.conf (missing, unreadable or only ourselves):
            // recurse rather than refuse to start.
            s.upstreams = match servers_from_resolv_conf(&self.resolv_conf, &s.listen) {
                Ok(servers) => servers,
                Err(e) => {
                    tracing::warn!(
                        path = %self.resolv_conf.display(),
                        error = %e,
                        "cannot read upstreams from resolv.conf"
                    );
                    Vec::new()
                }
            };
        } else {
            s.upstreams = self.upstream.clone();
        }
        let recursive = self.recursive || s.upstreams.is_empty();
        if !recursive {
            if self.root_hints.is_some()
                || self.trust_anchor.is_some()
                || !self.nameserver_port.is_empty()
            {
                bail!("--root-hints, --trust-anchor and --nameserver-port apply to recursive mode: add --recursive or drop --upstream");
            }
            return Ok(s);
        }
        s.upstreams.clear();
        s.recursion = Some(self.recursion_settings(s.threads)?);
        Ok(s)
    }

    /// `--query-log` and its companions.
    fn query_log_settings(&self) -> Result<Option<QueryLogSettings>> {
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
            client_ip: self.log_client_ip,
            exclude: self.log_exclude.clone(),
            buffer_lines: self.query_log_buffer,
        }))
    }

    /// Identity, health, drain, policy and admission settings.
    fn apply_serving(&self, s: &mut Settings) -> Result<()> {
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
        s.drain.grace = self.drain_grace;
        s.drain.hook = self.drain_hook.clone().filter(|h| !h.trim().is_empty());
        s.drain.hook_timeout = self.drain_hook_timeout;
        s.drain.finish_timeout = self.drain_timeout;
        s.rebind_protection = self.rebind_protection;
        s.policies = policy_source(self.policies.as_deref(), self.no_policy);
        s.blocklists = self.blocklist.clone();
        if !self.allow_from.is_empty() {
            s.access = AccessList::new(self.allow_from.clone());
        }
        if self.rate_limit > 0 {
            s.rate_limit = Some(RateLimitSettings {
                qps: self.rate_limit,
                burst: self.rate_limit_burst,
                slip: self.rate_limit_slip,
            });
        }
        Ok(())
    }

    fn recursion_settings(&self, threads: usize) -> Result<RecursorSettings> {
        let mut r = RecursorSettings {
            threads,
            case_randomization: self.case_randomization,
            dnssec: if self.dnssec == "off" {
                DnssecMode::Off
            } else {
                DnssecMode::Validate
            },
            ..RecursorSettings::default()
        };
        if let Some(path) = &self.root_hints {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read root hints {}", path.display()))?;
            r.root_hints = parse_root_hints(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("bad root hints in {}", path.display()))?;
        }
        if let Some(path) = &self.trust_anchor {
            r.trust_anchor = Some(
                check_trust_anchor(path)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("bad trust anchor file {}", path.display()))?,
            );
        }
        if self.allow_private_nameservers {
            r.deny_servers.clear();
        }
        r.nameserver_ports = self.nameserver_port.iter().copied().collect();
        Ok(r)
    }
}

/// Where the policy comes from, for `serve`, `check` and `explain` alike: `--policies DIR`,
/// else the built-in default (no organization, no rule), which is also what `--no-policy`
/// asks for. No directory is looked up implicitly, so one command line means one policy
/// wherever it is run from (a clone or not).
pub fn policy_source(dir: Option<&Path>, no_policy: bool) -> PolicySource {
    match dir {
        Some(dir) if !no_policy => PolicySource::Dir(dir.to_path_buf()),
        _ => PolicySource::None,
    }
}

/// `./policies` when it holds policy files that a command without `--policies` does not use
/// (Picket once picked it up implicitly): worth a note, never a silent switch of policy.
fn unused_policy_dir(dir: Option<&Path>, no_policy: bool) -> Option<&'static Path> {
    let candidate = Path::new("policies");
    let has_json = || {
        std::fs::read_dir(candidate).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    };
    (dir.is_none() && !no_policy && has_json()).then_some(candidate)
}

/// The note for [`unused_policy_dir`], on stderr so `check` and `explain` output stays as is.
fn note_unused_policy_dir(dir: Option<&Path>, no_policy: bool) {
    if let Some(unused) = unused_policy_dir(dir, no_policy) {
        eprintln!(
            "note: the policy files in {}/ are not used without --policies: this is the built-in \
             default policy; add `--policies {}` to use them",
            unused.display(),
            unused.display()
        );
    }
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Check(args) => check(args),
        Command::Explain(args) => explain(args),
        Command::Token => {
            println!("{}", crate::policy::token::generate());
            Ok(0)
        }
    }
}

fn check(args: CheckArgs) -> Result<i32> {
    let dir = args.dir.or(args.policies);
    note_unused_policy_dir(dir.as_deref(), args.no_policy);
    let source = policy_source(dir.as_deref(), args.no_policy);
    let loaded = source.load(&args.blocklist, None);
    let mut out = std::io::stdout().lock();
    match crate::policy::check::report(loaded, &source.to_string(), &mut out) {
        Ok(report) if report.is_ok() => Ok(0),
        Ok(_) => Ok(1),
        // `check::report` has already printed every problem with its place.
        Err(_) => Ok(1),
    }
}

fn explain(args: ExplainArgs) -> Result<i32> {
    let qtype = parse_qtype(&args.qtype)?;
    note_unused_policy_dir(args.policies.as_deref(), args.no_policy);
    let source = policy_source(args.policies.as_deref(), args.no_policy);
    let policy = source
        .load(&args.blocklist, None)
        .map_err(|e| match &source {
            PolicySource::Dir(dir) => {
                anyhow::anyhow!("cannot load the policy in {}:\n{e}", dir.display())
            }
            PolicySource::None => anyhow::anyhow!("cannot load the --blocklist files:\n{e}"),
        })?;
    let hints = ClientHints::plain(args.client, args.transport);
    print!(
        "{}",
        crate::policy::explain::explain(&policy, &args.name, qtype, &hints, args.org.as_deref())
    );
    Ok(0)
}

/// A query type by mnemonic (`AAAA`) or number (`28`).
fn parse_qtype(text: &str) -> Result<u16> {
    if let Ok(n) = text.parse::<u16>() {
        return Ok(n);
    }
    let rtype =
        hickory_proto::rr::RecordType::from_str(&text.to_ascii_uppercase()).map_err(|_| {
            anyhow::anyhow!(
                "unknown query type `{text}`: use a mnemonic such as A, AAAA, MX, or a number"
            )
        })?;
    Ok(u16::from(rtype))
}

fn parse_transport(text: &str) -> Result<Transport, String> {
    Transport::ALL
        .into_iter()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| format!("unknown transport `{text}`: use udp, tcp, doh or dot"))
}

fn serve(args: ServeArgs) -> Result<i32> {
    crate::observe::init_tracing(&args.log_level, args.log_format == "json");
    let settings = args.settings()?;
    if let Some(unused) = unused_policy_dir(args.policies.as_deref(), args.no_policy) {
        tracing::warn!(
            dir = %unused.display(),
            "policy files there are not used without --policies: running the built-in default \
             policy (no rule); add --policies to use them"
        );
    }
    tracing::info!(
        listen = ?settings.listen,
        upstreams = ?settings.upstreams,
        recursive = settings.recursion.is_some(),
        threads = settings.threads,
        cache_bytes = settings.cache.max_bytes,
        metrics = ?settings.metrics,
        policy = %settings.policies,
        "starting picket"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Listen for signals before answering, so an early SIGTERM drains too
    // and an early SIGHUP (a certificate renewal) reloads instead of killing.
    let (mut signals, hup) = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        anyhow::Ok((StopSignals::new()?, signal(SignalKind::hangup())?))
    })?;
    let server = Server::start(settings)?;
    tracing::info!(
        addrs = ?server.local_addrs(),
        doh = ?server.doh_addrs(),
        dot = ?server.dot_addrs(),
        "answering"
    );
    if let Some(tls) = server.tls().filter(|tls| tls.is_self_signed()) {
        tracing::warn!(
            sha256 = %tls.fingerprint(),
            "DoH/DoT use a throwaway self-signed certificate: clients must skip verification \
             (curl -k, --doh-insecure) or pin this fingerprint"
        );
    }
    let (shared, tls) = (server.shared().clone(), server.tls().cloned());
    let reloader = Reloader::spawn(move || reload_everything(&shared, tls.as_deref()))?;
    runtime.spawn(request_reload_on_sighup(hup, reloader));
    runtime.block_on(async move {
        let name = signals.next().await;
        tracing::info!(signal = name, "stopping");
        // A second signal cuts the drain short; later ones change nothing.
        server
            .drain(async move {
                let name = signals.next().await;
                tracing::info!(signal = name, "stopping now");
            })
            .await
    });
    // The reload thread is detached and this runtime holds no blocking work:
    // a reload under way never delays the exit.
    runtime.shutdown_background();
    Ok(0)
}

/// SIGHUP: hands the reload to the reload thread and goes back to waiting.
/// Nothing here blocks, so this runtime, which also waits for SIGTERM and
/// runs the drain, is never held up by a slow reload.
async fn request_reload_on_sighup(mut hup: tokio::signal::unix::Signal, reloader: Reloader) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the policy, reopening the query log");
        reloader.request();
    }
}

/// On the reload thread: the query log is reopened (logrotate moved it) and
/// the DoH/DoT certificate re-read first, as they take no time, then the
/// policy is reloaded (the last good one stays on error, likewise the
/// certificate).
fn reload_everything(shared: &crate::pipeline::Shared, tls: Option<&Tls>) {
    shared.observer.reopen_log();
    if let Some(tls) = tls {
        reload_tls(tls);
    }
    crate::app::reload_and_log(shared);
}

fn reload_tls(tls: &Tls) {
    match tls.reload() {
        Ok(()) if tls.is_self_signed() => {
            tracing::info!("SIGHUP: the self-signed TLS certificate stays (no files to read)")
        }
        Ok(()) => tracing::info!(sha256 = %tls.fingerprint(), "SIGHUP: TLS certificate reloaded"),
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "SIGHUP: TLS certificate not reloaded, keeping the old one"
        ),
    }
}

/// SIGTERM and SIGINT.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next one; returns its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
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
