//! The command line: `picket serve | check | explain | import | ...`.

use std::net::IpAddr;
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::app::Server;
use crate::config::PolicySource;
use crate::policy::bundle;
use crate::policy::When;
use crate::query::{ClientHints, Transport};
use crate::reload::{Reason, Reloader};

mod serve_args;
pub use serve_args::{
    AccessArgs, CacheArgs, DnssecArgs, DnssecFlag, DrainArgs, FilterArgs, IdentityArgs,
    ListenerArgs, LogArgs, LogClientIp, LogFormat, QueryLogArgs, ResolutionArgs, ServeArgs,
    TlsArgs,
};

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
    /// Write a new Ed25519 signing key for policy bundles to KEYFILE (mode 0600) and print its
    /// public key (base64, the last line), the value of `serve --policy-key`.
    Keygen(KeygenArgs),
    /// Sign or verify policy bundles (what `serve --policy-url` fetches).
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Turn another product's rules into a Picket policy (printed on stdout).
    #[command(subcommand)]
    Import(ImportCommand),
}

/// `picket import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Read a Cloudflare Gateway rules export (the API's list-rules response, or a bare array)
    /// and print a Picket policy; warnings on stderr name each rule that could not be carried
    /// over and why. Exit status 0 when a policy was written, even with warnings.
    Gateway(ImportGatewayArgs),
}

/// `picket import gateway`.
#[derive(Debug, Args)]
pub struct ImportGatewayArgs {
    /// The rules export (GET /accounts/ACCOUNT/gateway/rules, saved as is).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The lists export, each list with its items, for rules that reference lists ($<uuid>).
    #[arg(long = "lists", value_name = "FILE")]
    pub lists: Option<PathBuf>,
}

/// `picket keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the signing key; an existing file is never overwritten.
    #[arg(value_name = "KEYFILE")]
    pub keyfile: PathBuf,
}

/// `picket bundle ...`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Pack a policy directory (its *.json files and the list files they name) into one signed
    /// bundle. A policy that does not load is not signed.
    Sign(BundleSignArgs),
    /// Check a bundle's signature and content, and that its policy loads; exit status 1 if not.
    Verify(BundleVerifyArgs),
}

/// `picket bundle sign`.
#[derive(Debug, Args)]
pub struct BundleSignArgs {
    /// The policy directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The signing key (`picket keygen`).
    #[arg(long = "key", value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Where to write the bundle.
    #[arg(long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// The bundle's version: nodes refuse a lower one than they serve (rollback protection).
    /// Default: the current Unix time in seconds, which grows with every signing.
    #[arg(long = "version", value_name = "N")]
    pub version: Option<u64>,
}

/// `picket bundle verify`.
#[derive(Debug, Args)]
pub struct BundleVerifyArgs {
    /// The bundle.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The public key (base64, as `picket keygen` prints it) or a file holding it.
    #[arg(long = "policy-key", value_name = "PUB")]
    pub policy_key: String,
}

/// Where the policy comes from: the same flags for `serve`, `check` and `explain`, so the
/// three always see the same policy.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Directory of policy files (*.json), e.g. `--policies policies/examples`; `serve`
    /// reloads it on change and on SIGHUP. Default: the built-in default policy, with no
    /// organization and no rule (resolve everything, block nothing).
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Option<PathBuf>,

    /// Use the built-in default policy: resolve everything (--blocklist and rebinding
    /// protection still apply). The same as giving no --policies.
    #[arg(long = "no-policy", conflicts_with = "policies")]
    pub no_policy: bool,

    /// Block every name on this list (and its subdomains) with NXDOMAIN for
    /// every client (repeatable; plain, hosts or adblock format).
    #[arg(long = "blocklist", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,
}

impl PolicyArgs {
    /// The policy these flags name (see [`policy_source`]).
    pub fn source(&self) -> PolicySource {
        policy_source(self.policies.as_deref(), self.no_policy)
    }
}

/// `picket check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy directory (the same as --policies). Default: the policy `serve` runs without
    /// --policies, the built-in default (no organization, no rule).
    #[arg(value_name = "DIR", conflicts_with = "no_policy")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// When checking a policy bundle: the public key it must be signed with. Without it the
    /// bundle's content is checked but not who signed it.
    #[arg(long = "policy-key", value_name = "PUB")]
    pub policy_key: Option<String>,
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

    /// The transport the query arrives over (udp, tcp, doh, dot, doq).
    #[arg(long = "transport", value_name = "NAME", default_value = "udp", value_parser = parse_transport)]
    pub transport: Transport,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Judge the rules' schedules at this instant instead of now (RFC 3339, e.g.
    /// 2027-01-04T10:00:00Z or 2027-01-04T10:00:00+01:00).
    #[arg(long = "at", value_name = "RFC3339", value_parser = parse_instant)]
    pub at: Option<jiff::Timestamp>,
}

fn parse_instant(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse().map_err(|e| {
        format!("{text:?} is not an RFC 3339 instant (e.g. 2027-01-04T10:00:00Z): {e}")
    })
}

/// Where the policy comes from, for `serve`, `check` and `explain` alike: `--policies DIR`
/// (or a bundle file, `picket bundle sign`), else the built-in default (no organization, no
/// rule), which is also what `--no-policy` asks for. No directory is looked up implicitly, so
/// one command line means one policy wherever it is run from (a clone or not).
pub fn policy_source(dir: Option<&Path>, no_policy: bool) -> PolicySource {
    match dir {
        Some(file) if !no_policy && file.is_file() => PolicySource::Bundle {
            file: file.to_path_buf(),
            key: None,
        },
        Some(dir) if !no_policy => PolicySource::Dir(dir.to_path_buf()),
        _ => PolicySource::None,
    }
}

/// `./policies` when it holds policy files that a command without `--policies` does not use
/// (Picket once picked it up implicitly): worth a note, never a silent switch of policy.
fn unused_policy_dir(args: &PolicyArgs) -> Option<&'static Path> {
    let candidate = Path::new("policies");
    let has_json = || {
        std::fs::read_dir(candidate).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    };
    (args.policies.is_none() && !args.no_policy && has_json()).then_some(candidate)
}

/// The note for [`unused_policy_dir`], on stderr so `check` and `explain` output stays as is.
fn note_unused_policy_dir(args: &PolicyArgs) {
    if let Some(unused) = unused_policy_dir(args) {
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
        Command::Keygen(args) => keygen(&args),
        Command::Bundle(BundleCommand::Sign(args)) => bundle_sign(&args),
        Command::Bundle(BundleCommand::Verify(args)) => bundle_verify(&args),
        Command::Import(ImportCommand::Gateway(args)) => import_gateway(&args),
    }
}

fn import_gateway(args: &ImportGatewayArgs) -> Result<i32> {
    let import = crate::import::gateway::import_files(&args.file, args.lists.as_deref())?;
    for w in &import.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", import.policy);
    match import.load_error {
        None => Ok(0),
        Some(e) => {
            eprintln!(
                "error: the imported policy does not load in Picket (a translation the import \
                 got wrong; please report it with the Gateway rule):\n{e}"
            );
            Ok(1)
        }
    }
}

fn keygen(args: &KeygenArgs) -> Result<i32> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = bundle::generate_key();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.keyfile)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create {}: {e} (an existing key is never overwritten: choose another path)",
                args.keyfile.display()
            )
        })?;
    file.write_all(bundle::key_file_text(&key).as_bytes())?;
    file.sync_all()?;
    println!(
        "signing key written to {} (keep it secret; nodes need only the public key)",
        args.keyfile.display()
    );
    println!("public key (serve --policy-key):");
    println!("{}", bundle::public_key_text(&key.verifying_key()));
    Ok(0)
}

fn bundle_sign(args: &BundleSignArgs) -> Result<i32> {
    let key = bundle::read_key_file(&args.key)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let version = args.version.unwrap_or(created);
    let bytes = bundle::pack(&args.dir, &key, version, created)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.dir.display()))?;
    crate::fleet::write_atomically(&args.out, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "{}: version {version}, {} bytes, signed by {}",
        args.out.display(),
        bytes.len(),
        bundle::public_key_text(&key.verifying_key())
    );
    Ok(0)
}

fn bundle_verify(args: &BundleVerifyArgs) -> Result<i32> {
    let key = bundle::parse_public_key(&args.policy_key)
        .map_err(|e| anyhow::anyhow!("--policy-key: {e}"))?;
    let bytes = std::fs::read(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let max = crate::config::Limits::default().max_bundle_bytes;
    let opened = match bundle::Bundle::open(&bytes, &key, max) {
        Ok(b) => b,
        Err(e) => {
            println!("{}: refused: {e}", args.file.display());
            return Ok(1);
        }
    };
    if let Err(e) = opened.load(&crate::policy::LoadOptions::default()) {
        println!(
            "{}: signed, but its policy does not load:\n{e}",
            args.file.display()
        );
        return Ok(1);
    }
    let m = &opened.manifest;
    println!(
        "{}: good signature, version {}, created {} (Unix time), {} files",
        args.file.display(),
        m.version,
        m.created,
        m.files.len()
    );
    for f in &m.files {
        println!("  {} {} bytes sha256 {}", f.path, f.size, f.sha256);
    }
    Ok(0)
}

fn check(args: CheckArgs) -> Result<i32> {
    let mut policy = args.policy;
    policy.policies = args.dir.or(policy.policies);
    note_unused_policy_dir(&policy);
    let mut source = policy.source();
    if let Some(text) = &args.policy_key {
        let parsed =
            bundle::parse_public_key(text).map_err(|e| anyhow::anyhow!("--policy-key: {e}"))?;
        match &mut source {
            PolicySource::Bundle { key, .. } => *key = Some(parsed),
            _ => anyhow::bail!(
                "--policy-key checks a bundle's signature: give a bundle file, not a directory"
            ),
        }
    }
    let loaded = source.load(&policy.blocklist, None);
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
    note_unused_policy_dir(&args.policy);
    let source = args.policy.source();
    let policy = source
        .load(&args.policy.blocklist, None)
        .map_err(|e| match &source {
            PolicySource::Dir(dir) => {
                anyhow::anyhow!("cannot load the policy in {}:\n{e}", dir.display())
            }
            PolicySource::Bundle { file, .. } => {
                anyhow::anyhow!("cannot load the policy bundle {}:\n{e}", file.display())
            }
            PolicySource::Url(f) => anyhow::anyhow!("cannot load the policy from {}:\n{e}", f.url),
            PolicySource::None => anyhow::anyhow!("cannot load the --blocklist files:\n{e}"),
        })?;
    let hints = ClientHints::plain(args.client, args.transport);
    let when = args.at.map_or(When::Now, When::At);
    let (name, org) = (&args.name, args.org.as_deref());
    print!(
        "{}",
        crate::policy::explain::explain_at(&policy, name, qtype, &hints, org, when)
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
        .ok_or_else(|| format!("unknown transport `{text}`: use udp, tcp, doh, dot or doq"))
}

fn serve(args: ServeArgs) -> Result<i32> {
    crate::observe::init_tracing(
        &args.logs.log_level,
        args.logs.log_format == LogFormat::Json,
    );
    let settings = args.settings()?;
    log_starting(&args, &settings);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Listen for signals before answering, so an early SIGTERM drains too
    // and an early SIGHUP (a certificate renewal) reloads instead of killing.
    let (signals, hup) = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        anyhow::Ok((StopSignals::new()?, signal(SignalKind::hangup())?))
    })?;
    let server = Server::start(settings)?;
    log_answering(&server);
    runtime.spawn(request_reload_on_sighup(hup, server.reloader().clone()));
    runtime.block_on(drain_on_stop_signal(signals, server));
    // The reload thread is detached and this runtime holds no blocking work:
    // a reload under way never delays the exit.
    runtime.shutdown_background();
    Ok(0)
}

/// What the operator asked for, before anything is bound.
fn log_starting(args: &ServeArgs, settings: &crate::config::Settings) {
    if let Some(unused) = unused_policy_dir(&args.policy.source) {
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
}

/// The addresses actually bound (port 0 picks one), and the fingerprint
/// clients must pin when the certificate is a throwaway one.
fn log_answering(server: &Server) {
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
}

/// Waits for SIGTERM or SIGINT, then drains. A second signal cuts the drain
/// short; later ones change nothing.
async fn drain_on_stop_signal(mut signals: StopSignals, server: Server) {
    let name = signals.next().await;
    tracing::info!(signal = name, "stopping");
    server
        .drain(async move {
            let name = signals.next().await;
            tracing::info!(signal = name, "stopping now");
        })
        .await;
}

/// SIGHUP: hands the reload to the reload thread and goes back to waiting.
/// Nothing here blocks, so this runtime, which also waits for SIGTERM and
/// runs the drain, is never held up by a slow reload.
async fn request_reload_on_sighup(mut hup: tokio::signal::unix::Signal, reloader: Reloader) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the policy, the TLS certificate and the cookie secrets, reopening the query log");
        reloader.request(Reason::Sighup);
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
