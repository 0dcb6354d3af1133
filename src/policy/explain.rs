//! `picket explain NAME [TYPE] --client IP [--org ID]`: which organization, each rule and
//! whether it matched, the deciding rule, and the answer that would be sent.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::RecordType;

use super::check::normalize_qname;
use super::eval::{qtype_name, Query};
use super::exec::{Bound, Filters, Which};
use super::rules::{Effect, Phase, Ruleset, Uses};
use super::{evaluate_at, Action, BlockMode, Identity, PolicySet, RuleRef, Verdict, When};
use crate::query::{ClientHints, Facts};

/// Describe how `policy` treats the query `name`/`qtype` from the client in `hints`.
/// `org_override` evaluates as that organization (`""` for none) instead of identifying the client.
pub fn explain(
    policy: &PolicySet,
    name: &str,
    qtype: u16,
    hints: &ClientHints,
    org_override: Option<&str>,
) -> String {
    explain_at(policy, name, qtype, hints, org_override, When::Now)
}

/// [`explain`] with the rules' schedules judged at `when` (`picket explain --at`).
pub fn explain_at(
    policy: &PolicySet,
    name: &str,
    qtype: u16,
    hints: &ClientHints,
    org_override: Option<&str>,
    when: When,
) -> String {
    let mut out = String::new();
    let qname = normalize_qname(name);
    let _ = writeln!(
        out,
        "query: {}. {} from {} over {}",
        qname,
        type_label(qtype),
        hints.ip,
        hints.transport
    );
    if let When::At(t) = when {
        let _ = writeln!(out, "at: {t} (rule schedules judged at this instant)");
    }
    let id = describe_org(&mut out, policy, hints, org_override);
    describe_lists(&mut out, policy, &id, &qname);

    // The real decision, as the server computes it.
    let facts = Facts::question(&qname, qtype, hints);
    let verdict = evaluate_at(policy, &id, &facts, when);
    describe_rulesets(&mut out, policy, &id, &facts, (verdict.rule.as_ref(), when));
    describe_decision(&mut out, policy, &id, &verdict, RecordType::from(qtype));
    out
}

/// The organization the query is evaluated as, and why: `--org`, or how the client was
/// identified.
fn describe_org(
    out: &mut String,
    policy: &PolicySet,
    hints: &ClientHints,
    org_override: Option<&str>,
) -> Identity {
    let Some(o) = org_override else {
        let (id, reason) = policy.ident.identify(hints);
        match id {
            Identity::Org(_) => {
                let name = policy
                    .org(&id)
                    .and_then(|o| o.name.as_deref())
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default();
                let _ = writeln!(out, "organization: {}{name} ({reason})", id.org_id(policy));
            }
            _ => {
                let _ = writeln!(out, "organization: none ({reason})");
            }
        }
        return id;
    };
    match policy.org_by_id(o) {
        Some(id) => {
            let _ = writeln!(
                out,
                "organization: {} (given with --org)",
                if o.is_empty() { "none" } else { o }
            );
            id
        }
        None => {
            let known: Vec<&str> = policy.org_ids().collect();
            let _ = writeln!(
                out,
                "organization: unknown organization {o:?} (known: {}); evaluating with the global policy only",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            );
            Identity::NoOrg
        }
    }
}

/// The lists in scope for `id` that the name is on, with the entry that matched.
fn describe_lists(out: &mut String, policy: &PolicySet, id: &Identity, qname: &str) {
    let org_index = match id {
        Identity::Org(i) => Some(*i),
        _ => None,
    };
    let mut on = Vec::new();
    for (suffix, list) in policy.domains().lists_of(qname.as_bytes()) {
        if let Some(meta) = policy.lists.get(list as usize) {
            if meta.owner.is_none() || meta.owner == org_index {
                on.push(format!(
                    "list.{} (entry {suffix}, from {})",
                    meta.name, meta.source
                ));
            }
        }
    }
    if on.is_empty() {
        let _ = writeln!(out, "lists: the name is on none of the lists in scope");
    } else {
        let _ = writeln!(out, "lists: {}", on.join("; "));
    }
}

/// Every rule of the global policy and of the organization, and whether each matches.
fn describe_rulesets(
    out: &mut String,
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    (decided, when): (Option<&RuleRef>, When),
) {
    let mut buf = [0u8; 12];
    let tname = qtype_name(facts.qtype, &mut buf);
    let mut q = Query::new(policy, id, facts, tname);
    q.ensure_lists();
    let mut sections: Vec<(String, &Ruleset)> = vec![("global rules".to_owned(), &policy.global)];
    if let Some(o) = policy.org(id) {
        sections.push((format!("organization {} rules", o.id), &o.rules));
    }
    let mut reached = true;
    for (title, rs) in sections {
        if rs.rules.is_empty() {
            let _ = writeln!(out, "{title}: none");
            continue;
        }
        let _ = writeln!(out, "{title}:");
        // Indexed rules too: the listing says whether each rule matches, not only the decider.
        let compiled = Filters::compile(
            Arc::clone(rs.filters.scheme()),
            &rs.rules,
            Which::AllEnabled,
        );
        let all = Uses {
            base: u16::MAX,
            global: u64::MAX,
            org: u64::MAX,
        };
        compiled.bind(&rs.field_slots, &q.fields, all, |bound| {
            describe_rules(out, rs, bound, (decided, when), &mut reached);
        });
    }
}

/// The deciding rule, the audit rules that matched, and the answer that would be sent.
fn describe_decision(
    out: &mut String,
    policy: &PolicySet,
    id: &Identity,
    verdict: &Verdict,
    rtype: RecordType,
) {
    match &verdict.rule {
        Some(r) => {
            let _ = writeln!(
                out,
                "decision: rule {r} \"{}\" ({})",
                r.name,
                verdict.label()
            );
        }
        None => {
            let _ = writeln!(out, "decision: no rule matched: resolve normally");
        }
    }
    if !verdict.audited.is_empty() {
        let ids: Vec<String> = verdict.audited.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(out, "audited: {}", ids.join(", "));
    }
    let _ = writeln!(
        out,
        "answer: {}",
        describe_answer(policy, verdict, rtype, id)
    );
}

/// One line per rule of `rs` and whether it matched; `reached` turns false after the decider.
fn describe_rules(
    out: &mut String,
    rs: &Ruleset,
    bound: &mut Bound<'_, '_, '_>,
    (decided, when): (Option<&RuleRef>, When),
    reached: &mut bool,
) {
    for (i, rule) in rs.rules.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} \"{}\" [{}]{}: {}",
            i + 1,
            rule.r.id(),
            rule.r.name,
            rule.action,
            if rule.indexed.is_some() {
                " (name index)"
            } else if rule.guard.is_some() {
                " (guarded by the name index)"
            } else {
                ""
            },
            rule.expression.trim()
        );
        let status = if !rule.enabled {
            "disabled".to_owned()
        } else if !when.admits(rule.schedule.as_deref()) {
            "off: outside its schedule (or expired)".to_owned()
        } else if rule.phase == Phase::Response {
            "response phase: evaluated on the upstream answer (each address and CNAME target)"
                .to_owned()
        } else {
            let m = bound.matches(i as u32);
            let is_decider = decided == Some(&rule.r);
            match (m, *reached, is_decider, &rule.effect) {
                (true, _, true, _) => "MATCHED: decides".to_owned(),
                (true, true, _, Effect::Audit) => {
                    "matched: audit, recorded, evaluation continues".to_owned()
                }
                (true, false, _, _) => "would match, but an earlier rule decided".to_owned(),
                (true, true, false, _) => "matched (unexpected: not the deciding rule)".to_owned(),
                (false, true, _, _) => "not matched".to_owned(),
                (false, false, _, _) => {
                    "not reached (an earlier rule decided); would not match".to_owned()
                }
            }
        };
        let _ = writeln!(out, "     -> {status}");
        if decided == Some(&rule.r) {
            *reached = false;
        }
    }
}

fn type_label(qtype: u16) -> String {
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

/// The answer that would be sent, in words.
pub(crate) fn describe_answer(
    policy: &PolicySet,
    v: &Verdict,
    rtype: RecordType,
    id: &Identity,
) -> String {
    let ede = |code: u16| {
        format!(
            "EDE {code} \"{}\"",
            v.ede_text().unwrap_or_else(|| "blocked".to_owned())
        )
    };
    let inspect = if policy.has_response_rules(id) {
        "; the answer then goes through the response phase (response rules, CNAME cloaking)"
    } else {
        ""
    };
    match &v.action {
        Action::Resolve { group: None } if v.rule.is_some() => {
            "resolved normally by the default upstream (allow is final: no response-phase rule after it applies)".to_owned()
        }
        Action::Resolve { group: None } => format!("resolved normally by the default upstream{inspect}"),
        Action::Resolve { group: Some(g) } => {
            let addrs = policy
                .upstream_group(g)
                .map(|a| {
                    a.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!("forwarded to upstream group {g} ({addrs}){inspect}")
        }
        Action::Block(b) => {
            let what = match &b.mode {
                BlockMode::NxDomain => format!("NXDOMAIN with SOA (negative TTL {})", b.ttl),
                BlockMode::NoData => format!("NOERROR, no records (NODATA) with SOA (negative TTL {})", b.ttl),
                BlockMode::Refused => "REFUSED".to_owned(),
                BlockMode::Null => match rtype {
                    RecordType::A => format!("A 0.0.0.0 (TTL {})", b.ttl),
                    RecordType::AAAA => format!("AAAA :: (TTL {})", b.ttl),
                    _ => format!("NOERROR, no records (NODATA) with SOA (negative TTL {})", b.ttl),
                },
                BlockMode::Addresses(a) => records(a, rtype, b.ttl),
            };
            format!("{what}, {}{}", ede(b.ede), block_page_note(b, rtype))
        }
        Action::Override(o) => match &o.cname {
            Some(c) => format!(
                "CNAME {c} (TTL {}), then {c} is resolved and its records appended",
                o.ttl
            ),
            None => records(&o.addresses, rtype, o.ttl),
        },
        Action::Refuse => "REFUSED".to_owned(),
        Action::Drop => "no answer at all (the query is dropped)".to_owned(),
        Action::Truncate => {
            "over UDP an empty answer with TC=1 (the client retries over TCP); over TCP, DoT and DoH resolved normally".to_owned()
        }
    }
}

/// What a `"block_page": true` rule does instead when Picket serves a block page, and the
/// reason the page shows.
fn block_page_note(b: &super::BlockAnswer, rtype: RecordType) -> String {
    if !b.block_page {
        return String::new();
    }
    let instead = match rtype {
        RecordType::A | RecordType::AAAA => format!(
            "; when Picket serves a block page (--block-page, --block-page-tls): {rtype} records \
             with its address instead (NODATA when it has none of this family), TTL {}",
            b.ttl
        ),
        _ => "; a block page (--block-page) changes only A and AAAA answers".to_owned(),
    };
    match &b.reason {
        Some(reason) => format!("{instead}; the page shows the reason \"{reason}\""),
        None => instead,
    }
}

fn records(addrs: &[IpAddr], rtype: RecordType, ttl: u32) -> String {
    let pick: Vec<String> = addrs
        .iter()
        .filter(|a| match rtype {
            RecordType::A => a.is_ipv4(),
            RecordType::AAAA => a.is_ipv6(),
            _ => false,
        })
        .map(|a| format!("{rtype} {a}"))
        .collect();
    if pick.is_empty() {
        format!("NOERROR, no records (NODATA) with SOA (negative TTL {ttl}): no configured address of this type")
    } else {
        format!("{} (TTL {ttl})", pick.join(", "))
    }
}
