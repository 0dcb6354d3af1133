//! The command line as an operator's script drives it: `picket check` and
//! `picket explain` exit codes and output.

mod common;

use common::files::temp_dir;
use common::process::{assert_mentions, run_picket as picket};

#[test]
fn check_passes_the_shipped_policies_and_runs_their_tests() {
    let (code, out) = picket(&["check", "policies/examples"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn check_names_file_path_and_column_and_exits_1() {
    let dir = temp_dir("cli");
    std::fs::write(
        dir.join("p.json"),
        r#"{ "organizations": [ { "id": "x", "rules": [
  { "id": "r1", "expression": "dns.src_ip in {10.0.0.0/33}", "action": "block" } ] } ] }"#,
    )
    .unwrap();
    let (code, out) = picket(&["check", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}");
    // The file, the place in it, and Wirefilter's line and column.
    assert_mentions(
        "picket check",
        &out,
        &["p.json: organizations[0].rules[0].expression", "(1:16)"],
    );
    assert_eq!(
        out.matches("Network length 33").count(),
        1,
        "each problem once: {out}"
    );
}

#[test]
fn explain_shows_the_deciding_rule_and_the_answer() {
    let (code, out) = picket(&[
        "explain",
        "ads.example",
        "A",
        "--client",
        "10.0.0.5",
        "--policies",
        "policies/examples",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_mentions(
        "picket explain",
        &out,
        &[
            "organization: acme",
            "decision: rule acme/block-ads",
            "EDE 17",
        ],
    );
}

#[test]
fn a_bad_nameserver_port_is_refused_with_the_expected_form() {
    let (code, out) = picket(&[
        "serve",
        "--recursive",
        "--nameserver-port",
        "127.0.0.10:5300",
    ]);
    assert_ne!(code, 0, "{out}");
    // The flag and the fix.
    assert_mentions(
        "picket serve",
        &out,
        &["--nameserver-port", "IP=PORT, e.g. 127.0.0.10=5300"],
    );
}

#[test]
fn a_local_zone_nodefault_that_names_no_local_zone_is_refused_naming_the_zones() {
    let (code, out) = picket(&["serve", "--local-zone-nodefault", "example.com"]);
    assert_ne!(code, 0, "{out}");
    assert_mentions(
        "picket serve",
        &out,
        &[
            "--local-zone-nodefault example.com",
            "localhost, invalid, onion",
        ],
    );
}

#[test]
fn a_malformed_upstream_is_refused_naming_the_value_and_the_fix() {
    for (value, fix) in [
        ("tls://192.0.2.53", "e.g. tls://9.9.9.9#dns.quad9.net"),
        ("https://dns.example/dns-query", "add #IP"),
        (
            "ftp://192.0.2.53",
            "use tls:// (DoT), https:// (DoH), quic:// (DoQ)",
        ),
        (
            "quic://dns.example#dns.example",
            "takes the server's address",
        ),
    ] {
        let (code, out) = picket(&["serve", "--upstream", value]);
        assert_ne!(code, 0, "{value}: {out}");
        // The flag, the value and the fix.
        assert_mentions(value, &out, &["--upstream", value, fix]);
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused_naming_it() {
    let dir = temp_dir("cli-ca");
    let file = dir.join("empty.pem");
    std::fs::write(&file, "not a certificate\n").unwrap();
    let path = file.to_str().unwrap();
    let (code, out) = picket(&[
        "serve",
        "--upstream",
        "tls://127.0.0.1:1#dns.test",
        "--ca-file",
        path,
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(code, 0, "{out}");
    // The file, and what to give.
    assert_mentions("--ca-file", &out, &[path, "-----BEGIN CERTIFICATE-----"]);
}

/// Every `--flag` token in a help text, sorted and deduplicated (flags named
/// inside descriptions are flags too, so they belong to the same set).
fn long_flags(help: &str) -> Vec<String> {
    let mut flags = std::collections::BTreeSet::new();
    let mut rest = help;
    while let Some(at) = rest.find("--") {
        let name: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if !name.is_empty() {
            flags.insert(format!("--{name}"));
        }
        rest = &rest[at + 2 + name.len()..];
    }
    flags.into_iter().collect()
}

/// `picket SUBCOMMAND --help` (`"bundle sign"`: a subcommand's own subcommand).
fn help_of(subcommand: &str) -> String {
    let mut args: Vec<&str> = subcommand.split(' ').collect();
    args.push("--help");
    let (code, help) = picket(&args);
    assert_eq!(code, 0, "{help}");
    help
}

// Operators' scripts name these flags: renaming or dropping one breaks them.
#[test]
fn the_long_flags_of_every_subcommand_stay_the_same() {
    let serve = [
        "--admin-token",
        "--allow-from",
        "--allow-private-nameservers",
        "--allow-rollback",
        "--block-page",
        "--block-page-address",
        "--block-page-tls",
        "--blocklist",
        "--ca-file",
        "--cache-size",
        "--case-randomization",
        "--chaos-version",
        "--cookie-secret-file",
        "--dnssec",
        "--dnstap",
        "--dnstap-identity",
        "--dnstap-queue",
        "--dnstap-upstream",
        "--dnstap-version",
        "--doh",
        "--doh3",
        "--doq",
        "--dot",
        "--drain-grace",
        "--drain-hook",
        "--drain-hook-timeout",
        "--drain-timeout",
        "--health-name",
        "--help",
        "--listen",
        "--local-zone-nodefault",
        "--log-client-ip",
        "--log-exclude",
        "--log-format",
        "--log-level",
        "--max-ttl",
        "--metrics",
        "--min-ttl",
        "--nameserver-port",
        "--negative-trust-anchor",
        "--no-local-zones",
        "--no-policy",
        "--no-prefetch",
        "--no-qname-minimisation",
        "--nsid",
        "--policies",
        "--policy-interval",
        "--policy-key",
        "--policy-url",
        "--proxy-protocol-from",
        "--query-log",
        "--query-log-buffer",
        "--query-log-max-bytes",
        "--rate-limit",
        "--rate-limit-burst",
        "--rate-limit-slip",
        "--rebind-protection",
        "--recursive",
        "--resolv-conf",
        "--root-hints",
        "--stale-window",
        "--state-dir",
        "--threads",
        "--tls-cert",
        "--tls-key",
        "--tls-name",
        "--tls-self-signed",
        "--trust-anchor",
        "--upstream",
        "--upstream-timeout-ms",
    ];
    let check = [
        "--blocklist",
        "--help",
        "--no-policy",
        "--policies",
        "--policy-key",
    ];
    let explain = [
        "--at",
        "--blocklist",
        "--client",
        "--help",
        "--no-policy",
        "--org",
        "--policies",
        "--transport",
    ];
    assert_eq!(long_flags(&help_of("serve")), serve);
    assert_eq!(long_flags(&help_of("check")), check);
    assert_eq!(long_flags(&help_of("explain")), explain);
    // keygen's help names the flag its output is for.
    assert_eq!(long_flags(&help_of("keygen")), ["--help", "--policy-key"]);
    assert_eq!(
        long_flags(&help_of("bundle sign")),
        ["--help", "--key", "--out", "--version"]
    );
    assert_eq!(
        long_flags(&help_of("bundle verify")),
        ["--help", "--policy-key"]
    );
    assert_eq!(
        long_flags(&help_of("import gateway")),
        ["--help", "--lists"]
    );
}

/// `(short, long, <VALUE>, default, env)` of each option line of a help text,
/// sorted by the long flag (help sections may order them differently).
fn option_lines(help: &str) -> Vec<[String; 5]> {
    let bracketed = |line: &str, tag: &str| {
        line.split_once(tag)
            .and_then(|(_, rest)| rest.split_once(']'))
            .map_or(String::new(), |(value, _)| value.to_string())
    };
    let mut lines: Vec<[String; 5]> = help
        .lines()
        .filter(|l| l.starts_with("      --") || l.starts_with("  -"))
        .map(|line| {
            let mut words = line.split_whitespace().peekable();
            let short = match words.peek() {
                Some(w) if !w.starts_with("--") => words.next().unwrap().trim_end_matches(','),
                _ => "",
            };
            let long = words.next().unwrap_or_default();
            let value = words.next().filter(|w| w.starts_with('<')).unwrap_or("");
            let env = bracketed(line, "[env: ");
            [
                short.to_string(),
                long.to_string(),
                value.to_string(),
                bracketed(line, "[default: "),
                env.trim_end_matches('=').to_string(),
            ]
        })
        .collect();
    lines.sort_by(|a, b| a[1].cmp(&b[1]));
    lines
}

// Value syntax, defaults and environment variables are as much a part of the
// contract as the names.
#[test]
fn the_value_names_defaults_and_env_of_serve_stay_the_same() {
    let expected: Vec<[String; 5]> = [
        ["", "--admin-token", "<TOKEN>", "", "PICKET_ADMIN_TOKEN"],
        ["", "--allow-from", "<CIDR>", "", ""],
        ["", "--allow-private-nameservers", "", "", ""],
        ["", "--allow-rollback", "", "", ""],
        ["", "--block-page", "<ADDR>", "", ""],
        ["", "--block-page-address", "<IP>", "", ""],
        ["", "--block-page-tls", "<ADDR>", "", ""],
        ["", "--blocklist", "<FILE>", "", ""],
        ["", "--ca-file", "<FILE>", "", ""],
        ["", "--cache-size", "<BYTES>", "256MiB", ""],
        ["", "--case-randomization", "", "", ""],
        ["", "--chaos-version", "<TEXT>", "", ""],
        ["", "--cookie-secret-file", "<FILE>", "", ""],
        ["", "--dnssec", "<MODE>", "validate", ""],
        ["", "--dnstap", "<TARGET>", "", ""],
        ["", "--dnstap-identity", "<TEXT>", "", ""],
        ["", "--dnstap-queue", "<MESSAGES>", "65536", ""],
        ["", "--dnstap-upstream", "", "", ""],
        ["", "--dnstap-version", "<TEXT>", "", ""],
        ["", "--doh", "<ADDR>", "", ""],
        ["", "--doh3", "<ADDR>", "", ""],
        ["", "--doq", "<ADDR>", "", ""],
        ["", "--dot", "<ADDR>", "", ""],
        ["", "--drain-grace", "<DURATION>", "5s", ""],
        ["", "--drain-hook", "<CMD>", "", ""],
        ["", "--drain-hook-timeout", "<DURATION>", "10s", ""],
        ["", "--drain-timeout", "<DURATION>", "5s", ""],
        ["", "--health-name", "<NAME>", "", ""],
        ["-h", "--help", "", "", ""],
        ["", "--listen", "<ADDR>", "127.0.0.1:5353", ""],
        ["", "--local-zone-nodefault", "<ZONE>", "", ""],
        ["", "--log-client-ip", "<MODE>", "truncate", ""],
        ["", "--log-exclude", "<FILE>", "", ""],
        ["", "--log-format", "<FORMAT>", "text", ""],
        ["", "--log-level", "<LEVEL>", "info", "RUST_LOG"],
        ["", "--max-ttl", "<SECONDS>", "86400", ""],
        ["", "--metrics", "<ADDR>", "", ""],
        ["", "--min-ttl", "<SECONDS>", "0", ""],
        ["", "--nameserver-port", "<IP=PORT>", "", ""],
        ["", "--negative-trust-anchor", "<ZONE>", "", ""],
        ["", "--no-local-zones", "", "", ""],
        ["", "--no-policy", "", "", ""],
        ["", "--no-prefetch", "", "", ""],
        ["", "--no-qname-minimisation", "", "", ""],
        ["", "--nsid", "<TEXT>", "", ""],
        ["", "--policies", "<DIR>", "", ""],
        ["", "--policy-interval", "<DURATION>", "30s", ""],
        ["", "--policy-key", "<PUB>", "", ""],
        ["", "--policy-url", "<URL>", "", ""],
        ["", "--proxy-protocol-from", "<CIDR>", "", ""],
        ["", "--query-log", "<PATH|->", "", ""],
        ["", "--query-log-buffer", "<LINES>", "65536", ""],
        ["", "--query-log-max-bytes", "<BYTES>", "", ""],
        ["", "--rate-limit", "<QPS>", "0", ""],
        ["", "--rate-limit-burst", "<N>", "0", ""],
        ["", "--rate-limit-slip", "<N>", "2", ""],
        ["", "--rebind-protection", "", "", ""],
        ["", "--recursive", "", "", ""],
        ["", "--resolv-conf", "<FILE>", "/etc/resolv.conf", ""],
        ["", "--root-hints", "<FILE>", "", ""],
        ["", "--stale-window", "<SECONDS>", "0", ""],
        ["", "--state-dir", "<DIR>", "", ""],
        ["", "--threads", "<N>", "", ""],
        ["", "--tls-cert", "<FILE>", "", ""],
        ["", "--tls-key", "<FILE>", "", ""],
        ["", "--tls-name", "<NAME>", "", ""],
        ["", "--tls-self-signed", "", "", ""],
        ["", "--trust-anchor", "<FILE>", "", ""],
        ["", "--upstream", "<UPSTREAM>", "", ""],
        ["", "--upstream-timeout-ms", "<MS>", "800", ""],
    ]
    .map(|fields| fields.map(String::from))
    .to_vec();
    assert_eq!(option_lines(&help_of("serve")), expected);
}

#[test]
fn a_value_outside_a_fixed_set_is_refused_with_the_valid_ones() {
    for (flag, wrong, valid) in [
        ("--dnssec", "on", "[possible values: validate, off]"),
        ("--log-format", "xml", "[possible values: text, json]"),
        (
            "--log-client-ip",
            "partial",
            "[possible values: none, truncate, full]",
        ),
    ] {
        let (code, out) = picket(&["serve", flag, wrong]);
        assert_eq!(code, 2, "clap's usage error: {out}");
        assert!(
            out.contains(&format!("invalid value '{wrong}' for '{flag}")),
            "{out}"
        );
        assert!(out.contains(valid), "{out}");
    }
}

#[test]
fn every_value_of_a_fixed_set_is_accepted() {
    for (flag, value) in [
        ("--dnssec", "validate"),
        ("--dnssec", "off"),
        ("--log-format", "text"),
        ("--log-format", "json"),
        ("--log-client-ip", "none"),
        ("--log-client-ip", "truncate"),
        ("--log-client-ip", "full"),
    ] {
        // `--threads 0` stops serve right after the flags are parsed: reaching
        // that error means clap took the value.
        let (code, out) = picket(&["serve", flag, value, "--threads", "0"]);
        // Exit status 2 like a usage error: the message tells them apart.
        assert_eq!(code, 2, "{flag} {value}: {out}");
        assert!(
            out.contains("--threads must be at least 1"),
            "{flag} {value}: {out}"
        );
    }
}

#[test]
fn the_admin_token_needs_the_admin_listener_and_a_header_safe_value() {
    let (code, out) = picket(&["serve", "--admin-token", "k4m9x2q7w8e3r5t6y1u0i9o8p"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("--admin-token protects the admin listener: add --metrics ADDR"),
        "{out}"
    );
    for bad in ["two words", "   "] {
        let (code, out) = picket(&["serve", "--metrics", "127.0.0.1:0", "--admin-token", bad]);
        assert_ne!(code, 0, "{bad:?}: {out}");
        assert!(out.contains("--admin-token"), "{bad:?}: {out}");
    }
}
