//! `picket check [DIR]`: validate policies and run the tests written next to them.
//!
//! ```text
//! policies/: 1 organization, 9 rules (9 enabled, 4 indexed, 1 response-phase), 3 lists, 12 entries
//! warning: policies/lists/ads.txt:7: not a valid domain name: bad..example
//! FAIL policies/example.json: organizations[0].tests[2]: ads.example A from 10.0.0.5: expected block by rule ads, got resolve (no rule)
//! 11 passed, 1 failed
//! ```

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::RecordType;

use super::config::{AnswerJson, ExpectJson, TestJson, TypeJson};
use super::error::{Issue, IssueKind};
use super::{
    evaluate_at, evaluate_response_at, AnswerFacts, Identity, PolicyError, PolicySet, PolicyStats,
    Verdict, When,
};
use crate::query::{ClientHints, Facts, Transport};

/// A failed policy test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The policy file the test is in.
    pub file: PathBuf,
    /// JSON path of the test, e.g. `organizations[0].tests[2]`.
    pub path: String,
    /// What was expected and what happened.
    pub error: TestError,
}

/// Why a policy test did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestError {
    /// The test cannot be run as written (an unknown organization, query type, ...).
    #[error("invalid test: {0}")]
    Invalid(String),
    /// The query got another verdict than the test expects.
    #[error("{query}: expected {expected}, got {got}")]
    Mismatch {
        /// The query, e.g. `ads.example A from 10.0.0.5 (org acme)`.
        query: String,
        /// What differs, e.g. `action "block", rule "ads"`.
        expected: String,
        /// The verdict, e.g. `resolve (no rule)`.
        got: String,
    },
}

impl std::fmt::Display for TestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.path, self.error)
    }
}

/// The outcome of `picket check`.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Policy counts (including invalid list lines).
    pub stats: PolicyStats,
    /// Tests run.
    pub tests: usize,
    /// Tests passed.
    pub passed: usize,
    /// Tests failed.
    pub failures: Vec<TestFailure>,
}

impl CheckReport {
    /// The policy loaded and every test passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Load and validate `dir`, print a summary, warnings for invalid list lines, and run every
/// policy test, printing failures and a final `N passed, N failed` line to `out`.
///
/// A policy that does not load is an `Err` (its problems are also printed to `out`); failed tests
/// are in the report. The exit code is the caller's choice.
pub fn run(dir: &Path, out: &mut impl Write) -> Result<CheckReport, PolicyError> {
    report(PolicySet::load_dir(dir), &dir.display().to_string(), out)
}

/// [`run`] for a policy loaded by the caller (from a directory, memory or none at all), named
/// `label` in the report.
pub fn report(
    loaded: Result<PolicySet, PolicyError>,
    label: &str,
    out: &mut impl Write,
) -> Result<CheckReport, PolicyError> {
    let policy = match loaded {
        Ok(p) => p,
        Err(e) => {
            for issue in &e.issues {
                let _ = writeln!(out, "error: {issue}");
            }
            let _ = writeln!(
                out,
                "{label}: {} problem(s), policy not loaded",
                e.issues.len()
            );
            return Err(e);
        }
    };
    run_policy(&policy, label, out).map_err(|e| {
        PolicyError::one(Issue::new(
            IssueKind::Io,
            None,
            "",
            format!("writing the report: {e}"),
        ))
    })
}

/// Print the summary of an already loaded policy and run its tests.
pub fn run_policy(
    policy: &PolicySet,
    label: &str,
    out: &mut impl Write,
) -> std::io::Result<CheckReport> {
    let stats = policy.stats();
    writeln!(
        out,
        "{label}: {} organization(s), {} rule(s) ({} enabled, {} indexed, {} guarded by the index, {} response-phase), {} list(s), {} list entries ({} distinct domains), {} upstream group(s)",
        stats.organizations,
        stats.rules,
        stats.rules_enabled,
        stats.rules_indexed,
        stats.rules_guarded,
        stats.rules_response,
        stats.lists,
        stats.list_entries,
        stats.distinct_domains,
        stats.upstream_groups,
    )?;
    if stats.invalid_lines > 0 {
        for s in &stats.invalid_samples {
            writeln!(
                out,
                "warning: {}:{}: {}: {}",
                s.file.display(),
                s.line,
                s.reason,
                s.text
            )?;
        }
        writeln!(
            out,
            "warning: {} invalid list line(s) skipped{}",
            stats.invalid_lines,
            if stats.invalid_lines as usize > stats.invalid_samples.len() {
                " (first ones shown)"
            } else {
                ""
            }
        )?;
    }
    let mut report = CheckReport {
        stats,
        ..CheckReport::default()
    };
    for t in &policy.tests {
        report.tests += 1;
        match run_test(policy, &t.test) {
            Ok(()) => report.passed += 1,
            Err(error) => {
                let failure = TestFailure {
                    file: t.file.clone(),
                    path: t.path.clone(),
                    error,
                };
                writeln!(out, "FAIL {failure}")?;
                report.failures.push(failure);
            }
        }
    }
    writeln!(
        out,
        "{} passed, {} failed",
        report.passed,
        report.failures.len()
    )?;
    Ok(report)
}

/// Parse a query type: a mnemonic (`AAAA`), `TYPE65280`, or a number.
pub(crate) fn parse_qtype(s: &str) -> Option<u16> {
    let up = s.trim().to_ascii_uppercase();
    if let Some(n) = up.strip_prefix("TYPE") {
        if let Ok(n) = n.parse::<u16>() {
            return Some(n);
        }
    }
    if let Ok(n) = up.parse::<u16>() {
        return Some(n);
    }
    RecordType::from_str(&up).ok().map(u16::from)
}

pub(crate) fn parse_transport(s: &str) -> Option<Transport> {
    Transport::ALL.into_iter().find(|t| t.as_str() == s)
}

/// Lower case, no trailing dot.
pub(crate) fn normalize_qname(name: &str) -> String {
    let n = name.trim().trim_end_matches('.');
    n.to_ascii_lowercase()
}

fn run_test(policy: &PolicySet, t: &TestJson) -> Result<(), TestError> {
    let (qtype, client, transport) = test_query(t)?;
    let hints = ClientHints {
        ip: client,
        port: 0,
        transport,
        doh_token: t.doh_token.clone(),
        dot_label: t.dot_name.clone(),
    };
    let id = match &t.org {
        Some(o) => policy
            .org_by_id(o)
            .ok_or_else(|| TestError::Invalid(format!("unknown organization {o:?}")))?,
        None => policy.identify(&hints),
    };
    let qname = normalize_qname(&t.name);
    let facts = Facts {
        qname: &qname,
        qtype,
        qclass: 1,
        client_ip: client,
        transport,
        dnssec_ok: t.dnssec_ok,
    };
    let when = match &t.at {
        None => When::Now,
        Some(text) => When::At(text.parse().map_err(|e| {
            TestError::Invalid(format!(
                "\"at\": {text:?} is not an RFC 3339 instant (e.g. 2027-01-04T10:00:00Z): {e}"
            ))
        })?),
    };
    let verdict = test_verdict(policy, &id, &facts, t.answer.as_ref(), when)?;
    let problems = mismatches(policy, &id, &verdict, &t.expect);
    if problems.is_empty() {
        return Ok(());
    }
    let query = format!(
        "{} {} from {}{}",
        t.name,
        RecordType::from(qtype),
        client,
        match id {
            Identity::Org(_) => format!(" (org {})", id.org_id(policy)),
            _ => String::new(),
        }
    );
    let got_rule = verdict.rule.as_ref().map(|r| r.id());
    let got = match got_rule {
        Some(r) => format!("{} by rule {r}", verdict.label()),
        None => format!("{} (no rule)", verdict.label()),
    };
    Err(TestError::Mismatch {
        query,
        expected: problems.join(", "),
        got,
    })
}

/// The query type, client address and transport of a test (A from 127.0.0.1 over UDP unless
/// it says otherwise).
fn test_query(t: &TestJson) -> Result<(u16, IpAddr, Transport), TestError> {
    let qtype = match &t.qtype {
        None => 1,
        Some(TypeJson::Number(n)) => *n,
        Some(TypeJson::Name(s)) => {
            parse_qtype(s).ok_or_else(|| TestError::Invalid(format!("unknown query type {s:?}")))?
        }
    };
    let client: IpAddr = match &t.client {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(c) => c
            .parse()
            .map_err(|_| TestError::Invalid(format!("client {c:?} is not an IP address")))?,
    };
    let transport = match &t.transport {
        None => Transport::Udp,
        Some(s) => parse_transport(s).ok_or_else(|| {
            TestError::Invalid(format!(
                "transport {s:?} (expected udp, tcp, doh, dot or doq)"
            ))
        })?,
    };
    Ok((qtype, client, transport))
}

/// The verdict on a test's query: the request phase, then, when that resolves and the test
/// gives an upstream answer, the response phase on it (which only counts when it does not
/// resolve too).
fn test_verdict(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    answer: Option<&AnswerJson>,
    when: When,
) -> Result<Verdict, TestError> {
    let verdict = evaluate_at(policy, id, facts, when);
    let Some(answer) = answer.filter(|_| verdict.resolves()) else {
        return Ok(verdict);
    };
    let mut addresses = Vec::new();
    for a in &answer.addresses {
        addresses.push(
            a.parse::<IpAddr>()
                .map_err(|_| TestError::Invalid(format!("answer address {a:?}")))?,
        );
    }
    let cnames: Vec<String> = answer.cnames.iter().map(|c| normalize_qname(c)).collect();
    let cname_refs: Vec<&str> = cnames.iter().map(String::as_str).collect();
    let facts_answer = AnswerFacts {
        addresses: &addresses,
        cnames: &cname_refs,
    };
    Ok(
        match evaluate_response_at(policy, id, facts, &facts_answer, when) {
            Some(v) if !v.resolves() => v,
            _ => verdict,
        },
    )
}

/// What the verdict got other than the test expected, one phrase each (empty: it passes).
fn mismatches(policy: &PolicySet, id: &Identity, verdict: &Verdict, e: &ExpectJson) -> Vec<String> {
    let mut problems = Vec::new();
    if e.action != verdict.label().as_str() {
        problems.push(format!("action {:?}", e.action));
    }
    let got_rule = verdict.rule.as_ref().map(|r| r.id().to_string());
    if let Some(rule) = e.rule.as_ref().filter(|&rule| rule != &got_rule) {
        problems.push(match rule {
            Some(r) => format!("rule {r:?}"),
            None => "no rule".to_owned(),
        });
    }
    let got_org = id.org_id(policy);
    if let Some(org) = e.org.as_ref().filter(|&org| org != got_org) {
        problems.push(format!("organization {org:?} (got {got_org:?})"));
    }
    if let Some(up) = &e.upstream {
        let got_group = match &verdict.action {
            super::Action::Resolve { group: Some(g) } => Some(&**g),
            _ => None,
        };
        if got_group != Some(up.as_str()) {
            problems.push(format!("upstream group {up:?} (got {got_group:?})"));
        }
    }
    if let Some(audited) = &e.audited {
        let got: Vec<&str> = verdict.audited.iter().map(|r| r.id()).collect();
        if got != audited.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!("audited {audited:?} (got {got:?})"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtypes() {
        assert_eq!(parse_qtype("aaaa"), Some(28));
        assert_eq!(parse_qtype("TYPE65280"), Some(65280));
        assert_eq!(parse_qtype("16"), Some(16));
        assert_eq!(parse_qtype("nope"), None);
    }
}
