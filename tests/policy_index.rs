//! Differential test: the indexed/guarded evaluation gives the same verdicts as evaluating every
//! rule's Wirefilter expression in order with a naive list lookup.

use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "common/scratch.rs"]
mod scratch;

use picket::policy::{evaluate, PolicySet};
use picket::query::{Facts, Transport};
use wirefilter::{ExecutionContext, Scheme, Type};

static N: AtomicUsize = AtomicUsize::new(0);

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.next() % v.len()]
    }
}

const LIST_A: [&str; 3] = ["n1.example", "n2.example", "deep.n3.example"];
const LIST_B: [&str; 2] = ["n2.example", "n4.example"];

fn on(list: &[&str], name: &str) -> bool {
    list.iter()
        .any(|d| name == *d || name.ends_with(&format!(".{d}")))
}

#[test]
fn indexed_and_guarded_rules_agree_with_plain_wirefilter() {
    let exprs = [
        "list.a",
        "list.b",
        "list.a or list.b",
        r#"dns.fqdn == "n1.example""#,
        r#"dns.fqdn in {"n2.example" "x.n4.example" "n5.example"}"#,
        r#"list.b or dns.fqdn == "n5.example""#,
        "list.a and dns.qtype == 1",
        r#"dns.fqdn == "n4.example" and dns.qtype == 28"#,
        r#"(list.b or dns.fqdn == "n5.example") and not dns.qtype == 16"#,
        "dns.qtype == 28",
        r#"dns.fqdn contains "3""#,
        "not list.a",
        r#"list.a and dns.fqdn contains "deep""#,
    ];
    let actions = ["block", "audit", "allow", "audit"];
    let names = [
        "n1.example",
        "a.n1.example",
        "n2.example",
        "n3.example",
        "deep.n3.example",
        "x.deep.n3.example",
        "n4.example",
        "x.n4.example",
        "n5.example",
        "n6.example",
    ];
    let mut rng = Lcg(7);
    for round in 0..40 {
        let count = 1 + rng.next() % 8;
        let mut rules = Vec::new();
        for i in 0..count {
            rules.push((
                format!("r{i}"),
                *rng.pick(&exprs),
                *rng.pick(&actions),
                rng.next() % 6 != 0,
            ));
        }
        let json_rules: Vec<String> = rules
            .iter()
            .map(|(id, e, a, en)| {
                format!(
                    r#"{{"id": "{id}", "expression": "{}", "action": "{a}", "enabled": {en}}}"#,
                    e.replace('"', "\\\"")
                )
            })
            .collect();
        let policy = format!(
            r#"{{"global": {{"lists": {{"a": {{"domains": {:?}}}, "b": {{"domains": {:?}}}}},
                "rules": [{}]}}}}"#,
            LIST_A,
            LIST_B,
            json_rules.join(",")
        );
        let dir = scratch::root().join(format!(
            "policy-index-{}",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.json"), &policy).unwrap();
        let p = PolicySet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}\n{policy}"));

        let scheme = Scheme::try_from_iter(
            [
                ("dns.fqdn", Type::Bytes),
                ("dns.qtype", Type::Int),
                ("list.a", Type::Bool),
                ("list.b", Type::Bool),
            ]
            .iter()
            .map(|(n, t)| (n.to_string(), *t)),
        )
        .unwrap();
        let filters: Vec<_> = rules
            .iter()
            .map(|(_, e, _, _)| scheme.parse(e).unwrap().compile())
            .collect();
        for name in names {
            for qtype in [1u16, 16, 28] {
                let mut ctx = ExecutionContext::new(&scheme);
                ctx.set_field_value("dns.fqdn", name).unwrap();
                ctx.set_field_value("dns.qtype", i32::from(qtype)).unwrap();
                ctx.set_field_value("list.a", on(&LIST_A, name)).unwrap();
                ctx.set_field_value("list.b", on(&LIST_B, name)).unwrap();
                let mut want_rule = None;
                let mut want_audit = Vec::new();
                for (k, (id, _, action, enabled)) in rules.iter().enumerate() {
                    if !*enabled || !filters[k].execute(&ctx).unwrap() {
                        continue;
                    }
                    if *action == "audit" {
                        want_audit.push(id.clone());
                    } else {
                        want_rule = Some(id.clone());
                        break;
                    }
                }
                let facts = Facts {
                    qname: name,
                    qtype,
                    qclass: 1,
                    client_ip: "192.0.2.1".parse().unwrap(),
                    transport: Transport::Udp,
                    dnssec_ok: false,
                };
                let v = evaluate(&p, &picket::policy::Identity::NoOrg, &facts);
                let got_rule = v.rule.as_ref().map(|r| r.id().to_string());
                let got_audit: Vec<String> = v.audited.iter().map(|r| r.id().to_string()).collect();
                assert_eq!(
                    (got_rule, got_audit),
                    (want_rule, want_audit),
                    "round {round}, {name} type {qtype}\n{policy}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
