//! The command line: `picket serve | check | explain`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::app::Server;
use crate::config::{parse_addr, parse_size, Settings};
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
    Serve(ServeArgs),
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

    /// Randomise the letter case of names sent to authoritative servers over
    /// UDP and drop answers that do not echo it (0x20, draft-vixie-dnsext-dns0x20).
    #[arg(long = "case-randomization")]
    pub case_randomization: bool,

    /// Recursive mode may query nameservers on loopback, private and other
    /// special-use addresses (like Unbound's `do-not-query-localhost: no`).
    /// Off by default: a delegation there is usually an attack or a leak.
    #[arg(long = "allow-private-nameservers")]
    pub allow_private_nameservers: bool,

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

    /// Per-attempt upstream timeout in milliseconds.
    #[arg(long = "upstream-timeout-ms", value_name = "MS", default_value_t = 800)]
    pub upstream_timeout_ms: u64,

    /// resolv.conf to take default upstreams from.
    #[arg(
        long = "resolv-conf",
        value_name = "FILE",
        default_value = "/etc/resolv.conf"
    )]
    pub resolv_conf: PathBuf,

    /// Log level (error, warn, info, debug, trace), or a RUST_LOG-style filter.
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        env = "RUST_LOG",
        default_value = "info"
    )]
    pub log_level: String,
}

impl ServeArgs {
    /// Turns the flags into checked settings.
    pub fn settings(&self) -> Result<Settings> {
        let mut s = Settings {
            listen: self.listen.clone(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
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
            if self.root_hints.is_some() || self.trust_anchor.is_some() {
                bail!("--root-hints and --trust-anchor apply to recursive mode: add --recursive or drop --upstream");
            }
            return Ok(s);
        }
        s.upstreams.clear();
        s.recursion = Some(self.recursion_settings(s.threads)?);
        Ok(s)
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
        Ok(r)
    }
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<i32> {
    crate::observe::init_tracing(&args.log_level);
    let settings = args.settings()?;
    tracing::info!(
        listen = ?settings.listen,
        upstreams = ?settings.upstreams,
        recursive = settings.recursion.is_some(),
        threads = settings.threads,
        cache_bytes = settings.cache.max_bytes,
        "starting picket"
    );
    let server = Server::start(settings)?;
    tracing::info!(addrs = ?server.local_addrs(), "answering");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(wait_for_stop_signal())?;
    tracing::info!("stopping");
    server.stop();
    Ok(0)
}

async fn wait_for_stop_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
