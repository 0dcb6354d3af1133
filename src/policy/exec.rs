//! Compiled Wirefilter filters: compiled once per load, shared by every thread.
//!
//! # Why it looks like this
//!
//! A Wirefilter `Filter<'s>` borrows the `Scheme` it was parsed with, and each ruleset has its
//! own scheme (its `list.<name>` fields are the lists that ruleset can see, so they change from
//! policy to policy). A ruleset therefore keeps both in one [`Filters`], a `self_cell` that owns
//! the scheme and holds the filters that borrow it: no `unsafe`, and nothing leaked per policy.
//!
//! Picket builds Wirefilter from `vendor/wirefilter-engine` (0.6.1 with a small patch, see its
//! `PICKET.md`), because the published 0.6.1 leaves only unsafe or slow choices:
//!
//! * `Filter<'s>::execute` took `&ExecutionContext<'s>`, the same lifetime as the filter (and
//!   `Filter` is invariant in it), while the context's byte values (`LhsValue::Bytes(&[u8])`,
//!   there is no owned variant) must outlive it. A filter that outlives one query could only
//!   read `'static` bytes: the query name had to be transmuted to `'static`, leaked, or the
//!   filters compiled again for every query (milliseconds for a large `in {...}` set). The
//!   patched `execute` takes a context of any lifetime, so each evaluation builds a small
//!   [`ExecutionContext`] that borrows the query's own bytes: one allocation per ruleset that
//!   reaches a filter, which costs no more than the thread-local cache lookup it replaces
//!   (`benches/policy.rs`, medians of three runs of each build in one session: typical
//!   organization 412 → 434 ns/query on a list hit, 410 → 381 on a miss).
//! * `Filter` was neither `Send` nor `Sync`, so each thread compiled its own copy lazily on its
//!   first query after a reload. Patched filters are `Send + Sync`: the loader compiles every
//!   filter once, while loading, and the `PolicySet` carries them to every thread. A query never
//!   compiles anything.
//!
//! The safe designs that keep the published crate all cost more: `self_cell` alone (or one
//! `'static` scheme per process) removes the scheme borrow but not the values' lifetime;
//! copying each name into an arena owned next to the scheme grows without bound unless the
//! filters are periodically compiled again; a fresh `ExecutionContext` changes nothing, since
//! its lifetime is still the filter's.
//!
//! Every field a rule reads must have a value (Wirefilter panics otherwise). The callers set the
//! fields the rules they run read ([`Uses`]); [`Bound::matches`] also gives any field a rule
//! reads that was not set a neutral value first, so a wrong `Uses` cannot become a panic.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use self_cell::self_cell;
use wirefilter::{ExecutionContext, Filter, Scheme};

use super::rules::{
    ListFields, Rule, Ruleset, Uses, BASE_FIELDS, F_DO, F_FQDN, F_ORG, F_QCLASS, F_QTYPE,
    F_QTYPE_NAME, F_RESP_CNAME, F_RESP_IP, F_SRC_IP, F_TRANSPORT,
};

/// One rule's compiled filter and the fields it reads.
pub(crate) struct CompiledRule<'s> {
    filter: Filter<'s>,
    uses: Uses,
}

/// By rule index; None for a rule that is not compiled (disabled, or answered by the index).
pub(crate) type CompiledRules<'s> = Vec<Option<CompiledRule<'s>>>;

self_cell!(
    /// A ruleset's Wirefilter scheme and the compiled filters that borrow it.
    pub(crate) struct Filters {
        owner: Arc<Scheme>,
        // Not covariant: `Filter<'s>` is invariant in `'s`.
        #[not_covariant]
        dependent: CompiledRules,
    }
);

/// Which rules [`Filters::compile`] compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// The rules evaluation runs through Wirefilter: enabled and not answered by the index
    /// (guarded rules are compiled).
    Evaluated,
    /// Every enabled rule (`explain` shows whether indexed rules match too).
    AllEnabled,
}

impl Filters {
    /// Compile `which` of `rules`, whose expressions were validated with `scheme` at load.
    pub(crate) fn compile(scheme: Arc<Scheme>, rules: &[Rule], which: Which) -> Filters {
        Filters::new(scheme, |scheme| {
            rules
                .iter()
                .map(|rule| compile_rule(scheme, rule, which))
                .collect()
        })
    }

    /// The scheme the filters were compiled with.
    pub(crate) fn scheme(&self) -> &Arc<Scheme> {
        self.borrow_owner()
    }

    /// How many rules have a compiled filter.
    #[cfg(test)]
    pub(crate) fn compiled_count(&self) -> usize {
        self.with_dependent(|_, rules| rules.iter().flatten().count())
    }

    /// Run `f` with a fresh context holding `q`'s values for the fields in `uses`.
    /// `slots` says where each field sits in the scheme ([`FieldSlots::of`] this scheme).
    ///
    /// `'c` is any lifetime that the filters and the query's values both outlive: the context
    /// only borrows, for as long as `f` runs.
    pub(crate) fn bind<'c, R>(
        &'c self,
        slots: &'c FieldSlots,
        q: &Fields<'c>,
        uses: Uses,
        f: impl FnOnce(&mut Bound<'_, '_, 'c>) -> R,
    ) -> R {
        let ctx = ExecutionContext::new(self.borrow_owner());
        self.with_dependent(|_, rules| {
            let mut b = Bound {
                rules,
                ctx,
                slots,
                set: Uses::default(),
            };
            b.set_request(q, uses);
            f(&mut b)
        })
    }
}

fn compile_rule<'s>(scheme: &'s Scheme, rule: &Rule, which: Which) -> Option<CompiledRule<'s>> {
    let evaluated = rule.indexed.is_none() || which == Which::AllEnabled;
    if !rule.enabled || !evaluated {
        return None;
    }
    // Load parsed the expression with this scheme and kept the rule only if it parsed.
    let ast = scheme.parse(&rule.expression).ok()?;
    Some(CompiledRule {
        filter: ast.compile(),
        uses: rule.uses,
    })
}

impl Ruleset {
    /// [`Filters::bind`] on this ruleset's compiled filters.
    pub(crate) fn bind<'c, R>(
        &'c self,
        q: &Fields<'c>,
        uses: Uses,
        f: impl FnOnce(&mut Bound<'_, '_, 'c>) -> R,
    ) -> R {
        self.filters.bind(&self.field_slots, q, uses, f)
    }
}

/// Where each field a query sets sits in one ruleset's scheme, by index: looked up once when
/// the ruleset is built, so that a query sets its values without hashing every field's name
/// (Wirefilter's `set_field_value` looks the name up on each call).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSlots {
    /// By [`BASE_FIELDS`] index.
    base: [Option<usize>; BASE_FIELDS.len()],
    /// The `list.<name>` fields of global lists, by bit.
    global: Vec<Option<usize>>,
    /// The `list.<name>` fields of the organization's lists, by bit.
    org: Vec<Option<usize>>,
}

impl FieldSlots {
    /// The slots of `lists` and the base fields in `scheme` (None for a field it lacks: such
    /// a field is never set, as `set_field_value` would have failed for it).
    pub(crate) fn of(scheme: &Scheme, lists: &ListFields) -> Self {
        let slot = |name: &str| scheme.field_index(name);
        Self {
            base: BASE_FIELDS.map(|(name, _)| slot(name)),
            global: lists.global.iter().map(|n| slot(n)).collect(),
            org: lists.org.iter().map(|n| slot(n)).collect(),
        }
    }
}

/// The request-phase values of one query, as Wirefilter sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'q> {
    pub fqdn: &'q [u8],
    pub qtype: u16,
    pub qtype_name: QtypeName<'q>,
    pub qclass: u16,
    pub src_ip: IpAddr,
    pub transport: &'static str,
    pub dnssec_ok: bool,
    pub org_id: &'q str,
    /// Global lists the name is on.
    pub global_lists: u64,
    /// Organization lists the name is on.
    pub org_lists: u64,
}

/// The query type mnemonic: static for known types, `TYPEnnn` in a caller's buffer otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) enum QtypeName<'q> {
    Static(&'static str),
    Buf(&'q [u8]),
}

impl<'q> QtypeName<'q> {
    pub(crate) fn as_bytes(&self) -> &'q [u8] {
        match *self {
            Self::Static(s) => s.as_bytes(),
            Self::Buf(b) => b,
        }
    }
}

/// Compiled filters with a context of one query's values, borrowed for `'q`.
pub(crate) struct Bound<'f, 's, 'q> {
    rules: &'f [Option<CompiledRule<'s>>],
    ctx: ExecutionContext<'q>,
    slots: &'f FieldSlots,
    /// The fields that have a value.
    set: Uses,
}

impl<'q> Bound<'_, '_, 'q> {
    fn set_request(&mut self, q: &Fields<'q>, uses: Uses) {
        let on = |f: usize| uses.base & (1 << f) != 0;
        if on(F_FQDN) {
            self.set_base(F_FQDN, q.fqdn);
        }
        if on(F_QTYPE) {
            self.set_base(F_QTYPE, i32::from(q.qtype));
        }
        if on(F_QTYPE_NAME) {
            self.set_base(F_QTYPE_NAME, q.qtype_name.as_bytes());
        }
        if on(F_QCLASS) {
            self.set_base(F_QCLASS, i32::from(q.qclass));
        }
        if on(F_SRC_IP) {
            self.set_base(F_SRC_IP, q.src_ip);
        }
        if on(F_TRANSPORT) {
            self.set_base(F_TRANSPORT, q.transport);
        }
        if on(F_DO) {
            self.set_base(F_DO, q.dnssec_ok);
        }
        if on(F_ORG) {
            self.set_base(F_ORG, q.org_id);
        }
        self.set_lists(uses, q.global_lists, q.org_lists);
    }

    /// Set base field `f` (an index into `BASE_FIELDS`).
    fn set_base(&mut self, f: usize, value: impl Into<wirefilter::LhsValue<'q>>) {
        // The scheme has every base field, and callers pass the field's type.
        if let Some(Some(at)) = self.slots.base.get(f) {
            self.ctx.set_field_value_at(*at, value);
        }
        self.set.base |= 1 << f;
    }

    /// Set the `list.<name>` fields selected by `uses` from the membership masks.
    fn set_lists(&mut self, uses: Uses, global: u64, org: u64) {
        for bit in bits(uses.global) {
            if let Some(Some(at)) = self.slots.global.get(bit) {
                self.ctx.set_field_value_at(*at, global & (1 << bit) != 0);
            }
        }
        for bit in bits(uses.org) {
            if let Some(Some(at)) = self.slots.org.get(bit) {
                self.ctx.set_field_value_at(*at, org & (1 << bit) != 0);
            }
        }
        self.set = self.set.union(Uses {
            base: 0,
            global: uses.global,
            org: uses.org,
        });
    }

    /// Set the response-phase fields (one address or one CNAME target at a time).
    pub(crate) fn set_response(&mut self, ip: IpAddr, cname: &'q str) {
        self.set_base(F_RESP_IP, ip);
        self.set_base(F_RESP_CNAME, cname);
    }

    /// Run rule `idx`'s filter. A rule without a filter does not match.
    pub(crate) fn matches(&mut self, idx: u32) -> bool {
        let rules = self.rules;
        let Some(Some(rule)) = rules.get(idx as usize) else {
            return false;
        };
        self.set_missing(rule.uses);
        rule.filter.execute(&self.ctx).unwrap_or(false)
    }

    /// Give the fields in `uses` that have no value yet a neutral one (empty, zero, false,
    /// `0.0.0.0`; class IN, transport `udp`), so that no filter reads an unset field.
    fn set_missing(&mut self, uses: Uses) {
        let base = uses.base & !self.set.base;
        let global = uses.global & !self.set.global;
        let org = uses.org & !self.set.org;
        if u64::from(base) | global | org == 0 {
            return;
        }
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        for f in bits(u64::from(base)).filter(|&f| f < BASE_FIELDS.len()) {
            match f {
                F_QTYPE => self.set_base(f, 0i32),
                F_QCLASS => self.set_base(f, 1i32),
                F_SRC_IP | F_RESP_IP => self.set_base(f, unspecified),
                F_TRANSPORT => self.set_base(f, "udp"),
                F_DO => self.set_base(f, false),
                // The Bytes fields: dns.fqdn, dns.qtype.name, org.id, dns.response.cname.
                _ => self.set_base(f, ""),
            }
        }
        let missing = Uses {
            base: 0,
            global,
            org,
        };
        self.set_lists(missing, 0, 0);
    }
}

/// The indices of the bits set in `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(bit)
    })
}

#[cfg(test)]
mod tests {
    use super::super::rules::{build_scheme, uses_of, Effect, Phase};
    use super::super::{Action, RuleAction, RuleRef};
    use super::*;

    fn lists() -> ListFields {
        ListFields {
            global: vec!["list.g".into()],
            org: vec!["list.o".into()],
        }
    }

    /// A ruleset of Wirefilter rules (none indexed), compiled as the loader does.
    fn ruleset(exprs: &[&str]) -> Ruleset {
        let lf = lists();
        let scheme = Arc::new(build_scheme(&lf));
        let rules = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let uses = uses_of(&scheme.parse(e).unwrap(), &lf);
                Rule {
                    r: RuleRef::new("", &format!("r{i}"), "r"),
                    enabled: true,
                    expression: (*e).into(),
                    effect: Effect::Decide(Action::Refuse),
                    action: RuleAction::Refuse,
                    phase: Phase::Request,
                    uses,
                    indexed: None,
                    guard: None,
                    schedule: None,
                }
            })
            .collect();
        Ruleset::new(scheme, lf, rules)
    }

    fn fields(fqdn: &[u8]) -> Fields<'_> {
        Fields {
            fqdn,
            qtype: 1,
            qtype_name: QtypeName::Static("A"),
            qclass: 1,
            src_ip: IpAddr::from([10, 0, 0, 5]),
            transport: "udp",
            dnssec_ok: false,
            org_id: "acme",
            global_lists: 0,
            org_lists: 0,
        }
    }

    const ALL: Uses = Uses {
        base: u16::MAX,
        global: u64::MAX,
        org: u64::MAX,
    };

    /// Which of `rs`'s rules match `f`, with every field bound.
    fn matching(rs: &Ruleset, f: &Fields<'_>) -> Vec<u32> {
        rs.bind(f, ALL, |b| {
            (0..rs.rules.len() as u32)
                .filter(|&i| b.matches(i))
                .collect()
        })
    }

    #[test]
    fn compiled_filters_are_shared_between_threads() {
        crate::testing::assert_send_sync::<(Filters, Ruleset)>();
    }

    #[test]
    fn filters_are_compiled_at_load() {
        let rs = ruleset(&["dns.qtype == 1", r#"dns.fqdn contains "ads""#]);
        assert_eq!(rs.filters.compiled_count(), 2);
    }

    #[test]
    fn the_context_borrows_a_name_shorter_lived_than_the_filters() {
        let rs = ruleset(&[r#"dns.fqdn == "a.example""#, r#"dns.fqdn contains "ads""#]);
        for (name, want) in [
            ("a.example", vec![0]),
            ("x.ads.example", vec![1]),
            ("b.example", vec![]),
        ] {
            // A fresh heap copy each time, dropped at the end of the iteration: the filters
            // (compiled once, above) outlive every name they read.
            let owned: Vec<u8> = name.as_bytes().to_vec();
            assert_eq!(matching(&rs, &fields(&owned)), want, "{name}");
        }
    }

    #[test]
    fn every_field_and_list_reaches_the_filters() {
        let rs = ruleset(&[
            r#"dns.qtype.name == "TYPE65280""#,
            r#"org.id == "acme" and dns.qclass == 3 and dns.edns.do"#,
            r#"dns.src_ip in {10.0.0.0/8} and dns.transport == "tcp""#,
            "list.g and not list.o",
            "dns.qtype == 65280",
        ]);
        let buf = b"TYPE65280".to_vec();
        let mut f = fields(b"a.example");
        f.qtype = 65280;
        f.qtype_name = QtypeName::Buf(&buf);
        f.qclass = 3;
        f.dnssec_ok = true;
        f.transport = "tcp";
        f.global_lists = 1;
        assert_eq!(matching(&rs, &f), vec![0, 1, 2, 3, 4]);
        f.org_lists = 1;
        f.org_id = "other";
        f.src_ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(matching(&rs, &f), vec![0, 4]);
    }

    /// Fields are set by the index resolved when the ruleset was built: every base and list
    /// field has one, and a value is taken only at an index the scheme has, of the field's type.
    #[test]
    fn fields_are_set_by_their_index_in_the_scheme() {
        let lf = lists();
        let scheme = build_scheme(&lf);
        let slots = FieldSlots::of(&scheme, &lf);
        for (i, (name, _)) in BASE_FIELDS.iter().enumerate() {
            assert_eq!(slots.base[i], scheme.field_index(name), "{name}");
            assert!(slots.base[i].is_some(), "{name}");
        }
        assert_eq!(slots.global, [scheme.field_index("list.g")]);
        assert_eq!(slots.org, [scheme.field_index("list.o")]);
        let mut ctx = ExecutionContext::new(&scheme);
        let fqdn = slots.base[F_FQDN].unwrap();
        assert!(
            !ctx.set_field_value_at(fqdn, 1i32),
            "an Int into a Bytes field"
        );
        assert!(ctx.set_field_value_at(fqdn, &b"a.example"[..]));
        let past_the_end = BASE_FIELDS.len() + lf.global.len() + lf.org.len();
        assert!(!ctx.set_field_value_at(past_the_end, true));
    }

    #[test]
    fn response_fields_are_set_per_answer_value() {
        let rs = ruleset(&[
            "dns.response.ip in {192.168.0.0/16}",
            r#"dns.response.cname contains "tracker""#,
        ]);
        let f = fields(b"a.example");
        let none = Uses::default();
        let seen = rs.bind(&f, none, |b| {
            let mut seen = Vec::new();
            for (ip, cname) in [
                ([192, 168, 1, 1], ""),
                ([192, 0, 2, 1], "x.tracker.example"),
            ] {
                b.set_response(IpAddr::from(ip), cname);
                seen.push((b.matches(0), b.matches(1)));
            }
            seen
        });
        assert_eq!(seen, vec![(true, false), (false, true)]);
    }

    #[test]
    fn a_field_left_unset_reads_as_neutral_instead_of_panicking() {
        // Wirefilter panics on a field without a value; `matches` fills in what the caller's
        // `Uses` left out.
        let rs = ruleset(&[
            r#"dns.fqdn == "" and dns.qclass == 1 and dns.transport == "udp""#,
            "dns.qtype == 0 and not dns.edns.do and not list.g and not list.o",
            "dns.src_ip == 0.0.0.0 and dns.response.ip == 0.0.0.0",
            r#"org.id == "" and dns.qtype.name == "" and dns.response.cname == """#,
        ]);
        let f = fields(b"a.example");
        let got = rs.bind(&f, Uses::default(), |b| {
            (0..4).map(|i| b.matches(i)).collect::<Vec<_>>()
        });
        assert_eq!(got, vec![true; 4]);
    }

    #[test]
    fn unset_fields_do_not_override_bound_ones() {
        let rs = ruleset(&[r#"dns.fqdn == "a.example" and dns.qtype == 1"#]);
        let f = fields(b"a.example");
        let only_fqdn = Uses {
            base: 1 << F_FQDN,
            ..Uses::default()
        };
        // dns.qtype was not bound, so it reads 0 and the rule does not match; dns.fqdn keeps
        // the bound name.
        assert!(!rs.bind(&f, only_fqdn, |b| b.matches(0)));
        assert!(rs.bind(&f, ALL, |b| b.matches(0)));
    }

    #[test]
    fn rules_without_filters_do_not_match() {
        let rs = ruleset(&["dns.qtype == 1"]);
        let f = fields(b"a.example");
        assert_eq!(
            rs.bind(&f, ALL, |b| (b.matches(0), b.matches(1))),
            (true, false)
        );
    }

    #[test]
    fn one_compile_serves_many_threads() {
        let rs = ruleset(&[
            r#"dns.fqdn contains "n1x" and dns.qtype == 1"#,
            r#"dns.fqdn matches "^n2x[.]""#,
            r#"dns.fqdn in {"n3x.example" "n4x.example"}"#,
        ]);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let rs = &rs;
                s.spawn(move || {
                    for i in 0..200u32 {
                        let k = (t + i) % 4 + 1;
                        let name = format!("n{k}x.example");
                        let want = match k {
                            1 => vec![0],
                            2 => vec![1],
                            // n3x and n4x: both in the set.
                            _ => vec![2],
                        };
                        assert_eq!(matching(rs, &fields(name.as_bytes())), want, "{name}");
                    }
                });
            }
        });
    }

    #[test]
    fn contains_agrees_with_a_plain_substring_search() {
        // The patched Wirefilter searches with memchr's `Finder` (vendor/wirefilter-engine).
        let needles = ["", "a", "ab", "aab", "abcabd", "ads", "zz"];
        let hay = [
            "",
            "a",
            "b",
            "aab",
            "abcabcabd",
            "xads.example",
            "ab",
            "abab",
        ];
        let exprs: Vec<String> = needles
            .iter()
            .map(|n| format!(r#"dns.fqdn contains "{n}""#))
            .collect();
        let exprs: Vec<&str> = exprs.iter().map(String::as_str).collect();
        let rs = ruleset(&exprs);
        for h in hay {
            let want: Vec<u32> = (0..needles.len() as u32)
                .filter(|&i| {
                    let n = needles[i as usize].as_bytes();
                    n.is_empty() || h.as_bytes().windows(n.len()).any(|w| w == n)
                })
                .collect();
            assert_eq!(matching(&rs, &fields(h.as_bytes())), want, "{h:?}");
        }
    }
}
