//! Validated rules and rulesets: the Wirefilter scheme, rule phases, and the name index that
//! answers trivially indexable rules without Wirefilter.

use std::sync::Arc;

use smallvec::SmallVec;
use wirefilter::{FilterAst, Scheme, Type};

use super::exec::{Filters, Which};
use super::schedule::RuleClock;
use super::{Action, RuleAction, RuleRef};

/// The fields every scheme has, in this order (bit `i` of a [`Uses::base`] mask is field `i`).
pub(crate) const BASE_FIELDS: [(&str, Type); 10] = [
    ("dns.fqdn", Type::Bytes),
    ("dns.qtype", Type::Int),
    ("dns.qtype.name", Type::Bytes),
    ("dns.qclass", Type::Int),
    ("dns.src_ip", Type::Ip),
    ("dns.transport", Type::Bytes),
    ("dns.edns.do", Type::Bool),
    ("org.id", Type::Bytes),
    ("dns.response.ip", Type::Ip),
    ("dns.response.cname", Type::Bytes),
];
pub(crate) const F_FQDN: usize = 0;
pub(crate) const F_QTYPE: usize = 1;
pub(crate) const F_QTYPE_NAME: usize = 2;
pub(crate) const F_QCLASS: usize = 3;
pub(crate) const F_SRC_IP: usize = 4;
pub(crate) const F_TRANSPORT: usize = 5;
pub(crate) const F_DO: usize = 6;
pub(crate) const F_ORG: usize = 7;
pub(crate) const F_RESP_IP: usize = 8;
pub(crate) const F_RESP_CNAME: usize = 9;

/// Mask of the response-phase fields.
pub(crate) const RESPONSE_MASK: u16 = (1 << F_RESP_IP) | (1 << F_RESP_CNAME);

/// Which fields an expression reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uses {
    /// Bits over [`BASE_FIELDS`].
    pub base: u16,
    /// Global lists, by bit.
    pub global: u64,
    /// The organization's own lists, by bit.
    pub org: u64,
}

impl Uses {
    pub(crate) fn union(self, o: Uses) -> Uses {
        Uses {
            base: self.base | o.base,
            global: self.global | o.global,
            org: self.org | o.org,
        }
    }
}

/// A list as known to the policy.
#[derive(Debug, Clone)]
pub(crate) struct ListMeta {
    pub name: String,
    /// Organization index, or None for a global list.
    pub owner: Option<u32>,
    /// Bit in the owner's mask (global lists: global mask; org lists: org mask).
    pub bit: u8,
    /// `file path` or `inline`.
    pub source: String,
}

/// When a rule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before resolution.
    Request,
    /// On the answer (the expression reads `dns.response.*`).
    Response,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Stop and do this (an `allow` is `Resolve { group: None }`).
    Decide(Action),
    /// Record and continue.
    Audit,
}

/// A rule that is only a test of the query name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameTest {
    /// `dns.fqdn == ...` / `dns.fqdn in {...}` values.
    pub names: Vec<Box<[u8]>>,
    /// `list.x` over global lists.
    pub global: u64,
    /// `list.x` over the organization's lists.
    pub org: u64,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub r: RuleRef,
    pub enabled: bool,
    pub expression: Box<str>,
    pub effect: Effect,
    /// The action as the policy names it.
    pub action: RuleAction,
    pub phase: Phase,
    pub uses: Uses,
    /// Some when the rule is answered from the name index (request phase only).
    pub indexed: Option<NameTest>,
    /// For a Wirefilter request rule of the form `NAME-TEST and ...`: the name test, a necessary
    /// condition checked from the index before the filter runs.
    pub guard: Option<NameTest>,
    /// When the rule takes part, if it has a schedule or an expiry (checked only once the rule
    /// matched, so unscheduled rules and non-matching queries never read a clock).
    pub schedule: Option<Arc<RuleClock>>,
}

impl Rule {
    /// Whether the rule can block (relevant for CNAME cloaking).
    pub(crate) fn blocks(&self) -> bool {
        matches!(self.effect, Effect::Decide(Action::Block(_)))
    }

    /// Whether the rule can judge two queries for the same name differently: it reads who asked
    /// or how (`dns.src_ip`, `dns.transport`), or its schedule makes it depend on the time.
    pub(crate) fn per_client(&self) -> bool {
        let client_fields = (1 << F_SRC_IP) | (1 << F_TRANSPORT);
        self.uses.base & client_fields != 0 || self.schedule.is_some()
    }
}

/// The fields of one ruleset's scheme beyond the base fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFields {
    /// `list.<name>` field names of global lists, by bit.
    pub global: Vec<Box<str>>,
    /// `list.<name>` field names of the organization's lists, by bit.
    pub org: Vec<Box<str>>,
}

/// The ordered rules of the global policy or of one organization.
pub(crate) struct Ruleset {
    /// The scheme and the filters of the rules evaluated with Wirefilter, compiled at load.
    pub filters: Filters,
    /// Where the base and `list.<name>` fields sit in the filters' scheme.
    pub field_slots: super::exec::FieldSlots,
    pub rules: Vec<Rule>,
    /// Exact-name index: name → request rules (indices, ascending) that match it.
    pub exact: hashbrown::HashMap<Box<[u8]>, SmallVec<[u32; 2]>>,
    /// Indexed request rules that test lists: (rule, global mask, org mask), ascending.
    pub list_rules: Vec<(u32, u64, u64)>,
    /// Request rules evaluated by Wirefilter on every query (no guard), ascending.
    pub wf_request: Vec<u32>,
    /// Whether some request rule is guarded (its guard is in `exact` / `list_rules`).
    pub has_guarded: bool,
    /// Response rules (all Wirefilter), ascending.
    pub response: Vec<u32>,
    /// Fields read by the Wirefilter request rules (set before evaluating them).
    pub wf_request_uses: Uses,
    /// Fields read by the response rules.
    pub response_uses: Uses,
    /// Some enabled request rule blocks (CNAME cloaking needs the answer).
    pub has_block: bool,
    /// Whether any rule needs list membership of the query name.
    pub needs_lists: bool,
    /// Some response rule reads a field of the client (`dns.src_ip`, `dns.transport`) or has a
    /// schedule: its verdict on an answer is not the same for every query of one name.
    pub response_per_client: bool,
    /// The same for any rule at all (CNAME cloaking runs the request rules on the targets).
    pub any_per_client: bool,
}

impl Ruleset {
    pub(crate) fn needs_response_phase(&self) -> bool {
        self.has_block || !self.response.is_empty()
    }

    pub(crate) fn has_request_rules(&self) -> bool {
        !(self.exact.is_empty()
            && self.list_rules.is_empty()
            && self.wf_request.is_empty()
            && !self.has_guarded)
    }

    /// Put rule `i` in the name indexes under the name test `t`.
    fn index(&mut self, i: u32, t: &NameTest) {
        for n in &t.names {
            let v = self.exact.entry(n.clone()).or_default();
            if v.last() != Some(&i) {
                v.push(i);
            }
        }
        if t.global != 0 || t.org != 0 {
            self.list_rules.push((i, t.global, t.org));
        }
    }

    /// Build the indexes from the rules and compile the filters of the others.
    pub(crate) fn new(scheme: Arc<Scheme>, list_fields: ListFields, rules: Vec<Rule>) -> Ruleset {
        let field_slots = super::exec::FieldSlots::of(&scheme, &list_fields);
        let filters = Filters::compile(scheme, &rules, Which::Evaluated);
        let mut rs = Ruleset {
            filters,
            field_slots,
            rules,
            exact: hashbrown::HashMap::new(),
            list_rules: Vec::new(),
            wf_request: Vec::new(),
            has_guarded: false,
            response: Vec::new(),
            wf_request_uses: Uses::default(),
            response_uses: Uses::default(),
            has_block: false,
            needs_lists: false,
            response_per_client: false,
            any_per_client: false,
        };
        let rules = std::mem::take(&mut rs.rules);
        for (i, rule) in rules.iter().enumerate() {
            if !rule.enabled {
                continue;
            }
            let i = i as u32;
            let per_client = rule.per_client();
            rs.any_per_client |= per_client;
            match (rule.phase, &rule.indexed) {
                (Phase::Response, _) => {
                    rs.response_per_client |= per_client;
                    rs.response.push(i);
                    rs.response_uses = rs.response_uses.union(rule.uses);
                }
                (Phase::Request, Some(t)) => {
                    rs.index(i, t);
                    rs.has_block |= rule.blocks();
                }
                (Phase::Request, None) => {
                    match &rule.guard {
                        Some(t) => {
                            rs.index(i, t);
                            rs.has_guarded = true;
                        }
                        None => rs.wf_request.push(i),
                    }
                    rs.wf_request_uses = rs.wf_request_uses.union(rule.uses);
                    rs.has_block |= rule.blocks();
                }
            }
            if rule.uses.global != 0 || rule.uses.org != 0 {
                rs.needs_lists = true;
            }
        }
        rs.rules = rules;
        rs
    }
}

/// An organization.
pub(crate) struct Org {
    pub id: Arc<str>,
    pub name: Option<String>,
    pub rules: Ruleset,
}

/// Build the scheme for a ruleset: the base fields plus `list.<name>` for each visible list.
pub(crate) fn build_scheme(list_fields: &ListFields) -> Scheme {
    let mut scheme =
        Scheme::with_capacity(BASE_FIELDS.len() + list_fields.global.len() + list_fields.org.len());
    for (name, ty) in BASE_FIELDS {
        // Names are distinct constants.
        let _ = scheme.add_field(name.to_owned(), ty);
    }
    for name in list_fields.global.iter().chain(&list_fields.org) {
        // List names are checked for duplicates before this.
        let _ = scheme.add_field(name.to_string(), Type::Bool);
    }
    scheme
}

/// Which fields a parsed expression reads.
pub(crate) fn uses_of(ast: &FilterAst<'_>, list_fields: &ListFields) -> Uses {
    let mut u = Uses::default();
    for (i, (name, _)) in BASE_FIELDS.iter().enumerate() {
        if ast.uses(name).unwrap_or(false) {
            u.base |= 1 << i;
        }
    }
    for (i, name) in list_fields.global.iter().enumerate() {
        if ast.uses(name).unwrap_or(false) {
            u.global |= 1 << i;
        }
    }
    for (i, name) in list_fields.org.iter().enumerate() {
        if ast.uses(name).unwrap_or(false) {
            u.org |= 1 << i;
        }
    }
    u
}

/// If the expression is only a disjunction of name tests (`list.x`, `dns.fqdn == "s"`,
/// `dns.fqdn in {"a" "b"}`), return them. Reads Wirefilter's serialized AST:
/// a field test is `{"field", "op", "rhs"?}`, a combination `{"op": "Or", "items"}`,
/// a negation `{"op": "Not", "arg"}`, parentheses are transparent.
pub(crate) fn name_test(ast: &FilterAst<'_>, list_fields: &ListFields) -> Option<NameTest> {
    let v = serde_json::to_value(ast).ok()?;
    let mut t = NameTest::default();
    if collect(&v, list_fields, &mut t) {
        t.names.sort();
        t.names.dedup();
        Some(t)
    } else {
        None
    }
}

/// If the expression is `A and B and ...` where some `A` is a name test (see [`name_test`]),
/// return that name test: the rule cannot match unless it does.
pub(crate) fn guard_test(ast: &FilterAst<'_>, list_fields: &ListFields) -> Option<NameTest> {
    let v = serde_json::to_value(ast).ok()?;
    if v.get("field").is_some() || v.get("op").and_then(|o| o.as_str()) != Some("And") {
        return None;
    }
    let items = v.get("items")?.as_array()?;
    items.iter().find_map(|item| {
        let mut t = NameTest::default();
        if collect(item, list_fields, &mut t) {
            t.names.sort();
            t.names.dedup();
            Some(t)
        } else {
            None
        }
    })
}

fn collect(v: &serde_json::Value, lf: &ListFields, t: &mut NameTest) -> bool {
    let op = v.get("op").and_then(|o| o.as_str());
    if let Some(field) = v.get("field").and_then(|f| f.as_str()) {
        match (field, op) {
            ("dns.fqdn", Some("Equal")) => match v.get("rhs").and_then(|r| r.as_str()) {
                Some(s) => {
                    t.names.push(s.as_bytes().into());
                    true
                }
                None => false,
            },
            ("dns.fqdn", Some("OneOf")) => match v.get("rhs").and_then(|r| r.as_array()) {
                Some(items) => items.iter().all(|s| match s.as_str() {
                    Some(s) => {
                        t.names.push(s.as_bytes().into());
                        true
                    }
                    None => false,
                }),
                None => false,
            },
            (f, Some("IsTrue")) if f.starts_with("list.") => {
                if let Some(i) = lf.global.iter().position(|n| &**n == f) {
                    t.global |= 1 << i;
                    true
                } else if let Some(i) = lf.org.iter().position(|n| &**n == f) {
                    t.org |= 1 << i;
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    } else if op == Some("Or") {
        match v.get("items").and_then(|i| i.as_array()) {
            Some(items) => items.iter().all(|i| collect(i, lf, t)),
            None => false,
        }
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lf() -> ListFields {
        ListFields {
            global: vec!["list.malware".into()],
            org: vec!["list.ads".into(), "list.x".into()],
        }
    }

    fn nt(expr: &str) -> Option<NameTest> {
        let lf = lf();
        let scheme = build_scheme(&lf);
        let ast = scheme.parse(expr).unwrap();
        name_test(&ast, &lf)
    }

    #[test]
    fn indexable_expressions() {
        let t = nt("list.ads").unwrap();
        assert_eq!((t.global, t.org, t.names.len()), (0, 1, 0));
        let t = nt("(list.malware) or list.x").unwrap();
        assert_eq!((t.global, t.org), (1, 2));
        let t = nt(r#"dns.fqdn == "a.example""#).unwrap();
        assert_eq!(t.names, vec![Box::<[u8]>::from(&b"a.example"[..])]);
        let t = nt(r#"dns.fqdn in {"b.example" "a.example"} || list.ads"#).unwrap();
        assert_eq!(t.names.len(), 2);
        assert_eq!(t.org, 1);
    }

    #[test]
    fn not_indexable_expressions() {
        assert!(nt("not list.ads").is_none());
        assert!(nt("list.ads and dns.qtype == 1").is_none());
        assert!(nt(r#"dns.fqdn contains "ads""#).is_none());
        assert!(nt(r#"dns.fqdn != "a""#).is_none());
        assert!(nt(r#"dns.fqdn == 61:62"#).is_none());
        assert!(nt(r#"list.ads or dns.transport == "udp""#).is_none());
    }

    #[test]
    fn guards() {
        let lf = lf();
        let scheme = build_scheme(&lf);
        let g = |e: &str| guard_test(&scheme.parse(e).unwrap(), &lf);
        let t = g(r#"dns.qtype == 1 and (list.ads or dns.fqdn == "a.example")"#).unwrap();
        assert_eq!((t.org, t.names.len()), (1, 1));
        assert!(g("list.ads and dns.qtype == 1").is_some());
        assert!(g("list.ads or dns.qtype == 1").is_none());
        assert!(g("not list.ads and dns.qtype == 1").is_none());
        assert!(g("list.ads").is_none());
    }

    #[test]
    fn uses() {
        let lf = lf();
        let scheme = build_scheme(&lf);
        let ast = scheme
            .parse(r#"dns.response.ip in {10.0.0.0/8} and list.x and list.malware"#)
            .unwrap();
        let u = uses_of(&ast, &lf);
        assert_eq!(u.base, 1 << F_RESP_IP);
        assert_eq!((u.global, u.org), (1, 2));
    }
}
