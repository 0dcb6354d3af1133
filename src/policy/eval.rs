//! Evaluation: the request phase ([`evaluate`]) and the response phase ([`evaluate_response`]).
//!
//! Rules are ordered: the global rules, then the organization's. A rule's *position* is
//! `(0, i)` for global rule `i` and `(1, i)` for organization rule `i`; the first decisive match
//! by position wins. Response-phase rules and CNAME cloaking take part in the same order: in the
//! response phase only rules *before* the rule that decided the request (an `allow` or
//! `resolve`) apply, so an `allow` is final for everything after it.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::ControlFlow;

use hickory_proto::rr::RecordType;
use smallvec::SmallVec;

use super::exec::{Bound, Fields, QtypeName};
use super::rules::{Effect, Org, Ruleset, F_RESP_CNAME, F_RESP_IP};
use super::schedule::When;
use super::{Action, AnswerFacts, Identity, PolicySet, RuleRef, Verdict};
use crate::query::Facts;

/// `(ruleset, rule index)`: ruleset 0 is global, 1 the organization.
pub(crate) type Pos = (u8, u32);
pub(crate) const END: Pos = (2, 0);

/// The query type mnemonic (RFC 3597 `TYPEnnn` for unknown types).
pub(crate) fn qtype_name(qtype: u16, buf: &mut [u8; 12]) -> QtypeName<'_> {
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "TYPE{n}");
            let len = cur.position() as usize;
            QtypeName::Buf(&buf[..len])
        }
        t => QtypeName::Static(t.into()),
    }
}

/// Per-query state: the Wirefilter field values and the organization.
pub(crate) struct Query<'p: 'q, 'q> {
    pub policy: &'p PolicySet,
    /// When the rules' schedules are judged.
    pub when: When,
    pub org: Option<(u32, &'p Org)>,
    pub fields: Fields<'q>,
    lists_done: bool,
}

impl<'p: 'q, 'q> Query<'p, 'q> {
    pub(crate) fn new(
        policy: &'p PolicySet,
        id: &Identity,
        facts: &Facts<'q>,
        qtype_name: QtypeName<'q>,
    ) -> Self {
        let org = match id {
            Identity::Org(i) => policy.orgs.get(*i as usize).map(|o| (*i, o)),
            _ => None,
        };
        let org_id: &'p str = org.map(|(_, o)| &*o.id).unwrap_or("");
        Query {
            policy,
            when: When::Now,
            org,
            fields: Fields {
                fqdn: facts.qname.as_bytes(),
                qtype: facts.qtype,
                qtype_name,
                qclass: facts.qclass,
                src_ip: facts.client_ip,
                transport: facts.transport.as_str(),
                dnssec_ok: facts.dnssec_ok,
                org_id,
                global_lists: 0,
                org_lists: 0,
            },
            lists_done: false,
        }
    }

    /// The same query for another name (CNAME cloaking).
    fn with_name(&self, name: &'q str) -> Self {
        let mut fields = self.fields;
        fields.fqdn = name.as_bytes();
        fields.global_lists = 0;
        fields.org_lists = 0;
        Query {
            policy: self.policy,
            when: self.when,
            org: self.org,
            fields,
            lists_done: false,
        }
    }

    pub(crate) fn ensure_lists(&mut self) {
        if self.lists_done {
            return;
        }
        self.lists_done = true;
        let (g, o) = self
            .policy
            .list_masks(self.fields.fqdn, self.org.map(|(i, _)| i));
        self.fields.global_lists = g;
        self.fields.org_lists = o;
    }

    fn ruleset(&self, which: u8) -> Option<&'p Ruleset> {
        match which {
            0 => Some(&self.policy.global),
            _ => self.org.map(|(_, o)| &o.rules),
        }
    }
}

impl PolicySet {
    /// Which lists `name` (or a parent) is on: (global mask, mask of `org`'s lists).
    pub(crate) fn list_masks(&self, name: &[u8], org: Option<u32>) -> (u64, u64) {
        let (mut g, mut o) = (0u64, 0u64);
        self.domains().for_each_match(name, |_, ids| {
            for &id in ids {
                if let Some(m) = self.lists.get(id as usize) {
                    match m.owner {
                        None => g |= 1 << m.bit,
                        Some(owner) if Some(owner) == org => o |= 1 << m.bit,
                        Some(_) => {}
                    }
                }
            }
        });
        (g, o)
    }

    pub(crate) fn rule_at<'a>(
        &'a self,
        org: Option<(u32, &'a Org)>,
        pos: Pos,
    ) -> Option<&'a super::rules::Rule> {
        let rs = match pos.0 {
            0 => &self.global,
            _ => &org?.1.rules,
        };
        rs.rules.get(pos.1 as usize)
    }
}

/// Record an audit match or report a decision, for a rule that matched and whose schedule
/// admits it at `when` (a scheduled rule outside its ranges is passed over).
#[inline]
fn decides(rs: &Ruleset, i: u32, when: When, audited: &mut Vec<RuleRef>) -> bool {
    let rule = &rs.rules[i as usize];
    if !when.admits(rule.schedule.as_deref()) {
        return false;
    }
    match rule.effect {
        Effect::Audit => {
            audited.push(rule.r.clone());
            false
        }
        Effect::Decide(_) => true,
    }
}

/// Request-phase evaluation of one ruleset, rules before `limit` only.
fn eval_ruleset(
    rs: &Ruleset,
    q: &mut Query<'_, '_>,
    limit: u32,
    audited: &mut Vec<RuleRef>,
) -> Option<u32> {
    if rs.needs_lists {
        q.ensure_lists();
    }
    let when = q.when;
    let mut hits: SmallVec<[u32; 8]> = SmallVec::new();
    if !rs.exact.is_empty() {
        if let Some(v) = rs.exact.get(q.fields.fqdn) {
            hits.extend(v.iter().copied().filter(|&i| i < limit));
        }
    }
    let (g, o) = (q.fields.global_lists, q.fields.org_lists);
    if g | o != 0 {
        for &(i, rg, ro) in &rs.list_rules {
            if i >= limit {
                break;
            }
            if rg & g != 0 || ro & o != 0 {
                hits.push(i);
            }
        }
    }
    if hits.len() > 1 {
        hits.sort_unstable();
        hits.dedup();
    }
    // Candidates in rule order: index hits (fully indexed rules, which matched, and guarded
    // rules, whose guard matched) merged with the unguarded Wirefilter rules.
    let wf = &rs.wf_request;
    let (mut hi, mut wi) = (0usize, 0usize);
    let next = |hi: usize, wi: usize| -> Option<(u32, bool)> {
        let h = hits.get(hi).copied();
        let w = wf.get(wi).copied().filter(|&w| w < limit);
        match (h, w) {
            (Some(h), Some(w)) if h < w => Some((h, true)),
            (_, Some(w)) => Some((w, false)),
            (Some(h), None) => Some((h, true)),
            (None, None) => None,
        }
    };
    // Fully indexed hits before the first rule that needs Wirefilter: no context needed.
    loop {
        match next(hi, wi) {
            None => return None,
            Some((i, true)) if rs.rules[i as usize].indexed.is_some() => {
                hi += 1;
                if decides(rs, i, when, audited) {
                    return Some(i);
                }
            }
            Some(_) => break,
        }
    }
    rs.bind(&q.fields, rs.wf_request_uses, |b| {
        while let Some((i, from_hits)) = next(hi, wi) {
            if from_hits {
                hi += 1;
            } else {
                wi += 1;
            }
            let matched = rs.rules[i as usize].indexed.is_some() || b.matches(i);
            if matched && decides(rs, i, when, audited) {
                return Some(i);
            }
        }
        None
    })
}

/// Request phase over the global rules then the organization's, positions before `limit`.
pub(crate) fn request_phase(
    q: &mut Query<'_, '_>,
    limit: Pos,
    audited: &mut Vec<RuleRef>,
) -> Option<Pos> {
    for which in 0..2u8 {
        if which > limit.0 {
            break;
        }
        let Some(rs) = q.ruleset(which) else {
            continue;
        };
        let lim = if which == limit.0 { limit.1 } else { u32::MAX };
        if let Some(i) = eval_ruleset(rs, q, lim, audited) {
            return Some((which, i));
        }
    }
    None
}

fn verdict(q: &Query<'_, '_>, pos: Option<Pos>, audited: Vec<RuleRef>) -> Verdict {
    let rule = pos.and_then(|p| q.policy.rule_at(q.org, p));
    match rule {
        Some(rule) => Verdict {
            action: match &rule.effect {
                Effect::Decide(a) => a.clone(),
                Effect::Audit => Action::Resolve { group: None },
            },
            rule: Some(rule.r.clone()),
            audited,
        },
        None => Verdict {
            action: Action::Resolve { group: None },
            rule: None,
            audited,
        },
    }
}

/// Request phase: what to do with this query before resolving it.
///
/// `id` must come from [`PolicySet::identify`] on the same `policy` (an out-of-range
/// organization is treated as none). Never panics, allocates only for audit matches and for
/// the cloned settings of `override` / block-page answers.
pub fn evaluate(policy: &PolicySet, id: &Identity, facts: &Facts<'_>) -> Verdict {
    evaluate_at(policy, id, facts, When::Now)
}

/// [`evaluate`] with the rules' schedules judged at `when` (`picket explain --at`, policy tests).
pub fn evaluate_at(policy: &PolicySet, id: &Identity, facts: &Facts<'_>, when: When) -> Verdict {
    evaluate_phase_at(policy, id, facts, when).0
}

/// What the request phase of one query found, kept for that query's response phase
/// ([`evaluate_response_after`]) so that it does not run the request phase again: on a cache
/// hit that was a second evaluation of every request rule and a second list lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestPhase {
    /// Where the deciding rule is (None: no rule decided).
    pos: Option<Pos>,
    /// The list masks (global, organization), when the request phase looked them up.
    lists: Option<(u64, u64)>,
}

/// [`evaluate`], with what the response phase of the same query needs to skip the request phase.
pub fn evaluate_with_phase(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
) -> (Verdict, RequestPhase) {
    evaluate_phase_at(policy, id, facts, When::Now)
}

fn evaluate_phase_at(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    when: When,
) -> (Verdict, RequestPhase) {
    let mut buf = [0u8; 12];
    let name = qtype_name(facts.qtype, &mut buf);
    let mut q = Query::new(policy, id, facts, name);
    q.when = when;
    let org_empty = q.org.is_none_or(|(_, o)| !o.rules.has_request_rules());
    if !policy.global.has_request_rules() && org_empty {
        return (Verdict::resolve(), RequestPhase::default());
    }
    let mut audited = Vec::new();
    let pos = request_phase(&mut q, END, &mut audited);
    let phase = RequestPhase {
        pos,
        lists: q
            .lists_done
            .then_some((q.fields.global_lists, q.fields.org_lists)),
    };
    (verdict(&q, pos, audited), phase)
}

/// Response phase: inspect the upstream answer of a query whose request phase resolved it.
///
/// Runs the response-phase rules (a rule reading `dns.response.ip` once per answer address, with
/// `dns.response.cname` = `""`; a rule reading `dns.response.cname` once per CNAME target, with
/// `dns.response.ip` = `0.0.0.0`) and CNAME cloaking (each CNAME
/// target goes through the request-phase rules as if asked directly; a `block` there blocks the
/// answer, and the verdict names that rule). Only rules positioned before the request's deciding
/// rule apply (an `allow` is final).
///
/// Returns `None` to keep the answer as is. `Some(v)` replaces it with `v.action`, except when
/// `v.action` is `Resolve` (a response-phase `allow`, or only `audit` matches): then the answer is
/// kept and `v` is for the logs.
pub fn evaluate_response(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    answer: &AnswerFacts<'_>,
) -> Option<Verdict> {
    evaluate_response_at(policy, id, facts, answer, When::Now)
}

/// [`evaluate_response`] with the rules' schedules judged at `when`.
pub fn evaluate_response_at(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    answer: &AnswerFacts<'_>,
    when: When,
) -> Option<Verdict> {
    response_phase(policy, id, facts, answer, when, None)
}

/// [`evaluate_response`] for a query whose request phase [`evaluate_with_phase`] ran on the same
/// `policy`, `id` and `facts`: its result is reused instead of evaluated again.
pub fn evaluate_response_after(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    answer: &AnswerFacts<'_>,
    request: &RequestPhase,
) -> Option<Verdict> {
    response_phase(policy, id, facts, answer, When::Now, Some(request))
}

/// What [`evaluate_response_after`] decides for an answer of `has_cnames` (with or without
/// CNAME targets), when that is the same for every query of the name that a client of `id`
/// sends and whose request phase ended as `request` did: a non-zero key under which a caller may
/// remember that the response phase kept the answer (`None` from it) and skip the phase next
/// time for the same key. None when the verdict may differ between such queries: a rule that
/// runs reads the client's address or transport or has a schedule (CNAME targets run the
/// request rules too), or the parts do not fit the key.
///
/// The key holds the policy's version (a reload gives new keys), the organization and the
/// position of the request's deciding rule, which with the name, type, class and DO bit of the
/// query (the cache entry's own key) are everything the response phase reads otherwise.
pub fn response_reuse_key(
    policy: &PolicySet,
    id: &Identity,
    request: &RequestPhase,
    has_cnames: bool,
) -> Option<std::num::NonZeroU64> {
    let per_client = |rs: &super::rules::Ruleset| match has_cnames {
        true => rs.any_per_client,
        false => rs.response_per_client,
    };
    if per_client(&policy.global) || policy.org(id).is_some_and(|o| per_client(&o.rules)) {
        return None;
    }
    let who: u64 = match id {
        Identity::NoOrg => 1,
        Identity::UnknownToken => 2,
        Identity::Org(i) => u64::from(*i) + 3,
    };
    let pos: u64 = match request.pos {
        None => 0,
        Some((set, i)) => 1 + (u64::from(set) << 14) + u64::from(i),
    };
    let version = policy.version();
    let rule_fits = request.pos.is_none_or(|(_, i)| i < (1 << 14) - 1);
    if who >= 1 << 16 || !rule_fits || version >= 1 << 32 {
        return None;
    }
    std::num::NonZeroU64::new(version << 32 | who << 16 | pos)
}

/// A key under which a caller may remember that the whole policy passed a cache hit, and serve
/// the next hit on the same entry without it: no rule decided or audited the query, and the
/// response phase kept the answer. That holds for every query of the entry's name, type, class
/// and DO bit that a client of `id` sends under this policy, unless some rule reads who asked or
/// how, or has a schedule (then None). It is [`response_reuse_key`]'s key for a request phase
/// that no rule decided, with every rule counted (a hit served this way skips the request
/// phase too).
pub fn hit_reuse_key(policy: &PolicySet, id: &Identity) -> Option<std::num::NonZeroU64> {
    response_reuse_key(policy, id, &RequestPhase::default(), true)
}

fn response_phase(
    policy: &PolicySet,
    id: &Identity,
    facts: &Facts<'_>,
    answer: &AnswerFacts<'_>,
    when: When,
    request: Option<&RequestPhase>,
) -> Option<Verdict> {
    if !policy.has_response_rules(id) || (answer.addresses.is_empty() && answer.cnames.is_empty()) {
        return None;
    }
    let mut buf = [0u8; 12];
    let name = qtype_name(facts.qtype, &mut buf);
    let mut q = Query::new(policy, id, facts, name);
    q.when = when;
    let mut ignored = Vec::new();
    let decided = match request {
        Some(phase) => {
            if let Some((g, o)) = phase.lists {
                (q.fields.global_lists, q.fields.org_lists) = (g, o);
                q.lists_done = true;
            }
            phase.pos
        }
        None => request_phase(&mut q, END, &mut ignored),
    };
    let limit = match decided {
        None => END,
        Some(p) => match policy.rule_at(q.org, p).map(|r| &r.effect) {
            Some(Effect::Decide(Action::Resolve { .. })) => p,
            // The request phase answered by itself: there is no upstream answer to inspect.
            _ => return None,
        },
    };
    let mut best = cloaked_block(&q, answer.cnames, limit, &mut ignored);
    let mut audited: Vec<(Pos, RuleRef)> = Vec::new();
    best = response_rules(
        &mut q,
        answer,
        best.unwrap_or(limit).min(limit),
        &mut audited,
    )
    .or(best);
    let cut = best.unwrap_or(END);
    let audited: Vec<RuleRef> = audited
        .into_iter()
        .filter(|(p, _)| *p < cut)
        .map(|(_, r)| r)
        .collect();
    match best {
        Some(p) => Some(verdict(&q, Some(p), audited)),
        None if !audited.is_empty() => Some(verdict(&q, None, audited)),
        None => None,
    }
}

/// CNAME cloaking: the first rule before `limit` that blocks one of the
/// answer's CNAME targets, judged as if the target had been asked.
fn cloaked_block<'q>(
    q: &Query<'_, 'q>,
    cnames: &[&'q str],
    limit: Pos,
    ignored: &mut Vec<RuleRef>,
) -> Option<Pos> {
    let mut best: Option<Pos> = None;
    for target in cnames {
        if target.as_bytes() == q.fields.fqdn {
            continue;
        }
        let lim = best.unwrap_or(limit).min(limit);
        let mut t = q.with_name(target);
        ignored.clear();
        if let Some(p) = request_phase(&mut t, lim, ignored) {
            if q.policy.rule_at(q.org, p).is_some_and(|r| r.blocks()) {
                best = Some(p);
            }
        }
    }
    best
}

/// The response-phase rules of the global ruleset then the organization's,
/// positions before `cut`: the rule that decides, if any. Audit matches go
/// to `audited`.
fn response_rules(
    q: &mut Query<'_, '_>,
    answer: &AnswerFacts<'_>,
    cut: Pos,
    audited: &mut Vec<(Pos, RuleRef)>,
) -> Option<Pos> {
    for which in 0..2u8 {
        let Some(rs) = q.ruleset(which) else {
            continue;
        };
        if rs.response.is_empty() {
            continue;
        }
        if rs.needs_lists {
            q.ensure_lists();
        }
        let when = q.when;
        let flow = rs.bind(&q.fields, rs.response_uses, |b| {
            response_ruleset(b, rs, which, cut, when, answer, audited)
        });
        if let ControlFlow::Break(decided) = flow {
            return decided;
        }
    }
    None
}

/// The response-phase rules of ruleset `which`, positions before `cut`: `Break(Some(p))` when
/// rule `p` decides, `Break(None)` when `cut` is reached (no later ruleset applies either),
/// `Continue` when the ruleset ends first. Audit matches go to `audited`.
fn response_ruleset<'q>(
    b: &mut Bound<'_, '_, 'q>,
    rs: &Ruleset,
    which: u8,
    cut: Pos,
    when: When,
    answer: &AnswerFacts<'q>,
    audited: &mut Vec<(Pos, RuleRef)>,
) -> ControlFlow<Option<Pos>> {
    for &i in &rs.response {
        let p = (which, i);
        if p >= cut {
            return ControlFlow::Break(None);
        }
        let rule = &rs.rules[i as usize];
        if response_matches(b, i, rule.uses.base, answer) && when.admits(rule.schedule.as_deref()) {
            match rule.effect {
                Effect::Audit => audited.push((p, rule.r.clone())),
                Effect::Decide(_) => return ControlFlow::Break(Some(p)),
            }
        }
    }
    ControlFlow::Continue(())
}

/// Evaluate a response rule once per address if it reads `dns.response.ip` and once per CNAME
/// target if it reads `dns.response.cname` (so a rule that reads only one of them never sees the
/// other's placeholder).
fn response_matches<'q>(
    b: &mut Bound<'_, '_, 'q>,
    i: u32,
    uses: u16,
    answer: &AnswerFacts<'q>,
) -> bool {
    if uses & (1 << F_RESP_IP) != 0 {
        for &ip in answer.addresses {
            b.set_response(ip, "");
            if b.matches(i) {
                return true;
            }
        }
    }
    if uses & (1 << F_RESP_CNAME) == 0 {
        return false;
    }
    for cname in answer.cnames {
        b.set_response(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cname);
        if b.matches(i) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::load::{build, parse_file};
    use super::super::{BlockAnswer, BlockMode};
    use super::*;
    use crate::query::Transport;
    use std::path::Path;

    fn policy(json: &str) -> PolicySet {
        let f = parse_file(Path::new("t.json"), json).unwrap();
        build(
            super::super::sources::Source::Dir(Path::new(".")),
            &[(Path::new("t.json").into(), f)],
            &Default::default(),
        )
        .unwrap()
    }

    fn facts(name: &str, qtype: u16) -> Facts<'_> {
        Facts {
            qname: name,
            qtype,
            qclass: 1,
            client_ip: "10.0.0.5".parse().unwrap(),
            transport: Transport::Udp,
            dnssec_ok: false,
        }
    }

    fn rule_id(v: &Verdict) -> Option<&str> {
        v.rule.as_ref().map(|r| r.id())
    }

    const P: &str = r#"{
      "global": {
        "lists": {"malware": {"domains": ["bad.example"]}},
        "rules": [
          {"id": "aud", "expression": "dns.qtype == 16", "action": "audit"},
          {"id": "mal", "expression": "list.malware", "action": "block"}
        ]
      },
      "upstreams": {"corp": ["127.0.0.1:5300"]},
      "organizations": [{
        "id": "acme", "networks": ["10.0.0.0/8"],
        "lists": {"ads": {"domains": ["ads.example", "ok.ads.example"]}},
        "rules": [
          {"id": "ok", "expression": "dns.fqdn == \"ok.ads.example\"", "action": "allow"},
          {"id": "ads", "expression": "list.ads", "action": "block", "mode": "null"},
          {"id": "aaaa", "expression": "dns.qtype.name == \"AAAA\" and dns.fqdn contains \"v6\"", "action": "refuse"},
          {"id": "corp", "expression": "dns.fqdn == \"corp.internal\" or dns.fqdn contains \".corp.internal\"", "action": "resolve", "upstream": "corp"},
          {"id": "off", "enabled": false, "expression": "dns.fqdn == \"off.example\"", "action": "drop"},
          {"id": "rebind", "expression": "dns.response.ip in {10.0.0.0/8 192.168.0.0/16} and not dns.fqdn contains \"internal\"", "action": "block"}
        ]
      }]
    }"#;

    #[test]
    fn request_phase_first_match_and_audit() {
        let p = policy(P);
        let org = p.org_by_id("acme").unwrap();
        let v = evaluate(&p, &org, &facts("x.bad.example", 16));
        assert_eq!(rule_id(&v), Some("mal"));
        assert_eq!(v.audited.len(), 1);
        assert_eq!(v.audited[0].id(), "aud");
        assert_eq!(v.audited[0].org(), "");
        let v = evaluate(&p, &org, &facts("ok.ads.example", 1));
        assert_eq!(v.label().as_str(), "allow");
        let v = evaluate(&p, &org, &facts("x.ads.example", 1));
        assert_eq!(rule_id(&v), Some("ads"));
        assert!(matches!(
            v.action,
            Action::Block(BlockAnswer {
                mode: BlockMode::Null,
                ..
            })
        ));
        let v = evaluate(&p, &org, &facts("v6.example", 28));
        assert_eq!(v.action, Action::Refuse);
        let v = evaluate(&p, &org, &facts("v6.example", 1));
        assert_eq!(v.rule, None);
        let v = evaluate(&p, &org, &facts("a.corp.internal", 1));
        assert_eq!(
            v.action,
            Action::Resolve {
                group: Some("corp".into())
            }
        );
        let v = evaluate(&p, &org, &facts("off.example", 1));
        assert_eq!(v.rule, None);
        // No org: only global.
        let v = evaluate(&p, &Identity::NoOrg, &facts("x.ads.example", 1));
        assert_eq!(v.rule, None);
        let v = evaluate(&p, &Identity::NoOrg, &facts("bad.example", 1));
        assert_eq!(rule_id(&v), Some("mal"));
    }

    #[test]
    fn response_phase_and_cloaking() {
        let p = policy(P);
        let org = p.org_by_id("acme").unwrap();
        assert!(p.has_response_rules(&org));
        let screen = |f: &Facts<'_>, ip: &str, cnames: &[&str]| {
            let addresses = [ip.parse().unwrap()];
            let seen = AnswerFacts {
                addresses: &addresses,
                cnames,
            };
            let fresh = evaluate_response(&p, &org, f, &seen);
            // The pipeline's way, reusing its request phase, must come to the same verdict.
            let (_, phase) = evaluate_with_phase(&p, &org, f);
            assert_eq!(evaluate_response_after(&p, &org, f, &seen, &phase), fresh);
            fresh.map(|v| rule_id(&v).map(str::to_owned))
        };
        let f = facts("www.example", 1);
        assert_eq!(screen(&f, "192.168.1.1", &[]), Some(Some("rebind".into())));
        assert_eq!(screen(&f, "192.0.2.1", &[]), None);
        // CNAME cloaking to a listed name.
        let cn = ["tracker.ads.example"];
        assert_eq!(screen(&f, "192.0.2.1", &cn), Some(Some("ads".into())));
        // The allowed name is final: its CNAME to a listed name is not blocked.
        let f2 = facts("ok.ads.example", 1);
        assert_eq!(screen(&f2, "192.0.2.1", &cn), None);
        // Global malware via CNAME, even for a name the org would route.
        let cn = ["x.bad.example"];
        assert_eq!(screen(&f, "192.0.2.1", &cn), Some(Some("mal".into())));
    }

    #[test]
    fn a_reload_that_changes_the_list_fields_evaluates_with_the_new_ones() {
        let old = policy(
            r#"{"global": {
              "lists": {"a": {"domains": ["x.example"]}},
              "rules": [{"id": "old-a", "expression": "list.a and dns.qtype == 1", "action": "refuse"}]
            }}"#,
        );
        // The new policy has another list, so `list.a` is at another position in a scheme
        // with more fields, and the rules read the lists differently.
        let new = policy(
            r#"{"global": {
              "lists": {"b": {"domains": ["y.example"]}, "a": {"domains": ["z.example"]}},
              "rules": [
                {"id": "new-b", "expression": "list.b and dns.qtype == 1", "action": "refuse"},
                {"id": "not-a", "expression": "not list.a and dns.qtype == 28", "action": "drop"},
                {"id": "new-a", "expression": "list.a and dns.qtype == 1", "action": "drop"}
              ]
            }}"#,
        );
        let id = |p: &PolicySet, name: &str, qtype: u16| {
            rule_id(&evaluate(p, &Identity::NoOrg, &facts(name, qtype))).map(str::to_owned)
        };
        // Back and forth on one thread, as a worker sees the swap (and a query in flight under
        // the old policy).
        for _ in 0..2 {
            assert_eq!(id(&old, "x.example", 1).as_deref(), Some("old-a"));
            assert_eq!(id(&old, "z.example", 1), None);
            assert_eq!(id(&new, "x.example", 1), None);
            assert_eq!(id(&new, "y.example", 1).as_deref(), Some("new-b"));
            assert_eq!(id(&new, "z.example", 1).as_deref(), Some("new-a"));
            assert_eq!(id(&new, "x.example", 28).as_deref(), Some("not-a"));
            assert_eq!(id(&new, "z.example", 28), None);
        }
    }

    #[test]
    fn one_policy_evaluates_alike_on_several_threads() {
        let p = policy(P);
        let org = p.org_by_id("acme").unwrap();
        let cases: Vec<(&str, u16)> = vec![
            ("bad.example", 1),
            ("x.example", 16),
            ("corp.internal", 1),
            ("a.example", 65280),
            ("ok.example", 28),
            ("v6.example", 28),
        ];
        let want: Vec<Verdict> = cases
            .iter()
            .map(|(n, t)| evaluate(&p, &org, &facts(n, *t)))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for ((n, t), w) in cases.iter().zip(&want) {
                            assert_eq!(&evaluate(&p, &org, &facts(n, *t)), w, "{n} {t}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn a_response_verdict_is_reusable_only_when_no_rule_that_runs_depends_on_the_client() {
        let p = policy(
            r#"{"global": {"rules": [
                {"id": "rebind", "expression": "dns.response.ip in {10.0.0.0/8}", "action": "block"}
              ]},
              "organizations": [
                {"id": "plain", "networks": ["10.1.0.0/16"], "rules": [
                  {"id": "net", "expression": "dns.src_ip in {10.1.2.0/24} and dns.fqdn == \"a.example\"", "action": "block"}
                ]},
                {"id": "by-client", "networks": ["10.2.0.0/16"], "rules": [
                  {"id": "late", "expression": "dns.response.ip in {192.0.2.0/24} and dns.src_ip in {10.2.3.0/24}", "action": "block"}
                ]}
              ]}"#,
        );
        let (plain, by_client) = (
            p.org_by_id("plain").unwrap(),
            p.org_by_id("by-client").unwrap(),
        );
        let (_, phase) = evaluate_with_phase(&p, &plain, &facts("www.example", 1));
        let key = |id: &Identity, cnames| response_reuse_key(&p, id, &phase, cnames);
        // Response rules read only the answer: one key per organization.
        let (k_plain, k_none) = (key(&plain, false), key(&Identity::NoOrg, false));
        assert!(k_plain.is_some() && k_none.is_some());
        assert_ne!(k_plain, k_none);
        // A response rule reads dns.src_ip: none.
        assert_eq!(key(&by_client, false), None);
        // CNAME targets run the request rules, and plain's reads dns.src_ip: none with CNAMEs.
        assert_eq!(key(&plain, true), None);
        assert_eq!(key(&Identity::NoOrg, true), k_none);
        // Another load of the same policy (a reload): other keys.
        let again = policy(P);
        let (_, phase2) = evaluate_with_phase(&again, &Identity::NoOrg, &facts("www.example", 1));
        let k_again = response_reuse_key(&again, &Identity::NoOrg, &phase2, false);
        assert!(k_again.is_some());
        assert_ne!(k_again, k_none);
    }

    #[test]
    fn a_hit_is_reusable_only_when_no_rule_at_all_depends_on_the_client_or_the_time() {
        let p = policy(
            r#"{"global": {"rules": [
                {"id": "rebind", "expression": "dns.response.ip in {10.0.0.0/8}", "action": "block"}
              ]},
              "organizations": [
                {"id": "calm", "networks": ["10.1.0.0/16"], "rules": [
                  {"id": "ads", "expression": "dns.fqdn == \"ads.example\"", "action": "block"}
                ]},
                {"id": "net", "networks": ["10.2.0.0/16"], "rules": [
                  {"id": "n", "expression": "dns.src_ip in {10.2.3.0/24} and dns.fqdn == \"a.example\"", "action": "block"}
                ]},
                {"id": "timed", "networks": ["10.3.0.0/16"], "rules": [
                  {"id": "t", "expression": "dns.fqdn == \"games.example\"", "action": "block",
                   "schedule": {"time_zone": "UTC", "mon": "09:00-17:00"}}
                ]},
                {"id": "off", "networks": ["10.4.0.0/16"], "rules": [
                  {"id": "o", "expression": "dns.transport == \"tcp\"", "action": "block", "enabled": false}
                ]}
              ]}"#,
        );
        let org = |id| p.org_by_id(id).unwrap();
        let key = |id: &Identity| hit_reuse_key(&p, id);
        let (calm, none) = (key(&org("calm")), key(&Identity::NoOrg));
        assert!(calm.is_some() && none.is_some());
        assert_ne!(calm, none, "one key per organization");
        assert_eq!(key(&org("net")), None, "a request rule reads dns.src_ip");
        assert_eq!(key(&org("timed")), None, "a rule has a schedule");
        assert!(
            key(&org("off")).is_some(),
            "a disabled rule runs for no one"
        );
        let again = policy(P);
        assert_ne!(
            hit_reuse_key(&again, &Identity::NoOrg),
            none,
            "a reload: other keys"
        );
    }

    #[test]
    fn unknown_qtype_name() {
        let mut b = [0u8; 12];
        assert_eq!(qtype_name(65280, &mut b).as_bytes(), b"TYPE65280");
        assert_eq!(qtype_name(28, &mut b).as_bytes(), b"AAAA");
    }
}
