//! Every kind of bad policy input gives an error naming the file, the JSON path and, where
//! there is one, the line and column. Never a panic.

mod common;

use common::{dir_with, policy_file_dir};
use picket::policy::{IssueKind, PolicySet};

/// A policy file's text: whole, or one rule added after the `ok` rule of organization `o`
/// (which has list `l` and sees upstream group `corp`).
#[derive(Clone, Copy)]
enum Policy {
    Text(&'static str),
    Rule(&'static str),
}

impl Policy {
    fn text(self) -> String {
        match self {
            Self::Text(text) => text.to_owned(),
            Self::Rule(rule) => rules(rule),
        }
    }
}

/// Load `text` as `p.json` and return the error message.
fn err(text: &str) -> String {
    let d = policy_file_dir("policy-err", text);
    match PolicySet::load_dir(&d) {
        Ok(_) => panic!("loaded: {text}"),
        Err(e) => e.to_string(),
    }
}

fn rules(r: &str) -> String {
    format!(
        r#"{{
  "upstreams": {{"corp": ["127.0.0.1:5300"]}},
  "organizations": [
    {{"id": "o", "networks": ["10.0.0.0/8"], "lists": {{"l": {{"domains": ["a.example"]}}}},
      "rules": [
        {{"id": "ok", "expression": "dns.qtype == 1", "action": "allow"}},
        {r}
      ]}}
  ]
}}"#
    )
}

/// Loads each case's policy and checks that the error contains every fragment.
fn assert_errors(cases: &[(Policy, &[&str])]) {
    for (policy, fragments) in cases {
        let e = err(&policy.text());
        for fragment in *fragments {
            assert!(e.contains(fragment), "expected {fragment:?} in: {e}");
        }
    }
}

#[test]
fn json_syntax_errors_have_line_and_column() {
    assert_errors(&[
        (
            Policy::Text("{\n  \"organizations\": [\n    {\"id\": \"o\",,}\n  ]\n}"),
            &["p.json:3:16: "],
        ),
        (Policy::Text("{}\n}"), &["p.json:2:1: trailing characters"]),
    ]);
}

#[test]
fn schema_errors_name_the_path_and_position() {
    assert_errors(&[
        // An unknown field.
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "colour": "red"}"#,
            ),
            &[
                "p.json:7:79: ",
                "organizations[0].rules[1].colour: unknown field `colour`",
            ],
        ),
        (
            Policy::Text(r#"{"organisations": []}"#),
            &["p.json:1:16: organisations: unknown field `organisations`"],
        ),
        // A wrong type.
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "ttl": "soon"}"#,
            ),
            &["organizations[0].rules[1].ttl: invalid type: string \"soon\""],
        ),
        // A missing required field.
        (
            Policy::Rule(r#"{"id": "r", "action": "block"}"#),
            &["organizations[0].rules[1]: missing field `expression`"],
        ),
    ]);
}

#[test]
fn expression_errors_have_line_and_column() {
    assert_errors(&[
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.fqdn == \"x\" and dns.src_ip in {10.0.0.0/33}", "action": "block"}"#,
            ),
            &[
                "p.json: organizations[0].rules[1].expression: Filter parsing error (1:36):",
                "Network length 33 is too long",
            ],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1 and\n dns.qname == \"x\"", "action": "block"}"#,
            ),
            &["expression: Filter parsing error (2:2):", "unknown field"],
        ),
        // An unknown field in an expression.
        (
            Policy::Rule(r#"{"id": "r", "expression": "list.nope", "action": "block"}"#),
            &[
                "organizations[0].rules[1].expression",
                "^^^^^^^^^ unknown field",
            ],
        ),
        // Another organization's list is not visible.
        (
            Policy::Text(
                r#"{"organizations": [
          {"id": "a", "lists": {"mine": {"domains": ["a.example"]}}},
          {"id": "b", "rules": [{"id": "r", "expression": "list.mine", "action": "block"}]}
        ]}"#,
            ),
            &["organizations[1].rules[0].expression"],
        ),
    ]);
}

#[test]
fn action_errors() {
    assert_errors(&[
        (
            Policy::Rule(r#"{"id": "r", "expression": "dns.qtype == 1", "action": "blok"}"#),
            &["organizations[0].rules[1].action: unknown action \"blok\" (expected one of block, allow, override, resolve, audit, refuse, drop, truncate)"],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "cname": "x.example"}"#,
            ),
            &["rules[1].cname: \"cname\" is not a setting of action \"block\""],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "mode": "blackhole"}"#,
            ),
            &["rules[1].mode: unknown block mode \"blackhole\""],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "ede": "censored"}"#,
            ),
            &["rules[1].ede: unknown ede"],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "block", "addresses": ["300.1.1.1"]}"#,
            ),
            &["rules[1].addresses[0]: \"300.1.1.1\" is not an IP address"],
        ),
        (
            Policy::Rule(r#"{"id": "r", "expression": "dns.qtype == 1", "action": "override"}"#),
            &["rules[1]: an override needs exactly one of"],
        ),
        (
            Policy::Rule(r#"{"id": "r", "expression": "dns.qtype == 1", "action": "resolve"}"#),
            &["rules[1].upstream: a resolve rule needs"],
        ),
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.response.ip == 10.0.0.1", "action": "override", "cname": "x.example"}"#,
            ),
            &["rules[1].action: action \"override\" cannot be used in a response-phase rule"],
        ),
        // A resolve to an upstream group nobody defined.
        (
            Policy::Rule(
                r#"{"id": "r", "expression": "dns.qtype == 1", "action": "resolve", "upstream": "lab"}"#,
            ),
            &["organizations[0].rules[1].upstream: unknown upstream group \"lab\" (defined: corp)"],
        ),
    ]);
}

#[test]
fn list_errors() {
    assert_errors(&[
        (
            Policy::Text(r#"{"global": {"lists": {"ads": {"file": "lists/nope.txt"}}}}"#),
            &[
                "p.json: global.lists.ads.file: cannot read list file",
                "lists/nope.txt",
            ],
        ),
        (
            Policy::Text(r#"{"global": {"lists": {"bad-name": {"domains": []}}}}"#),
            &["global.lists.bad-name: list name"],
        ),
        (
            Policy::Text(
                r#"{"global": {"lists": {"x": {"domains": ["ok.example", "not valid"]}}}}"#,
            ),
            &["global.lists.x.domains[1]: \"not valid\": not a valid domain name"],
        ),
        (
            Policy::Text(r#"{"global": {"lists": {"x": {}}}}"#),
            &["global.lists.x: a list needs exactly one of"],
        ),
        (
            Policy::Text(
                r#"{"global": {"lists": {"x": {"domains": []}}},
            "organizations": [{"id": "o", "lists": {"x": {"domains": []}}}]}"#,
            ),
            &["organizations[0].lists.x: list \"x\" is already defined by the global policy"],
        ),
    ]);
}

#[test]
fn duplicate_ids() {
    assert_errors(&[
        (
            Policy::Text(r#"{"organizations": [{"id": "o"}, {"id": "o"}]}"#),
            &["organizations[1].id: duplicate organization id \"o\""],
        ),
        (
            Policy::Rule(r#"{"id": "ok", "expression": "dns.qtype == 2", "action": "block"}"#),
            &["organizations[0].rules[1].id: duplicate rule id \"ok\""],
        ),
        (
            Policy::Text(
                r#"{"organizations": [{"id": "a", "doh_tokens": ["un9a0qm4muyzesoy6u5bvmz30"]}, {"id": "b", "doh_tokens": ["un9a0qm4muyzesoy6u5bvmz30"]}]}"#,
            ),
            &["organizations[1].doh_tokens[0]: DoH token \"un9a0qm4muyzesoy6u5bvmz30\" is already used by organization \"a\""],
        ),
        (
            Policy::Text(
                r#"{"organizations": [{"id": "a", "dot_names": ["sl43womakvjot5ocos68vlx0e"]}, {"id": "b", "dot_names": ["sl43womakvjot5ocos68vlx0e"]}]}"#,
            ),
            &["organizations[1].dot_names[0]: DoT name \"sl43womakvjot5ocos68vlx0e\" is already used"],
        ),
        (
            Policy::Text(
                r#"{"organizations": [{"id": "a", "networks": ["10.0.0.0/8"]}, {"id": "b", "networks": ["10.1.2.3/8"]}]}"#,
            ),
            &["organizations[1].networks[0]: network 10.0.0.0/8 is already claimed by organization \"a\""],
        ),
    ]);
}

#[test]
fn rule_ids_are_not_empty_and_have_no_slash() {
    assert_errors(&[
        (
            Policy::Rule(r#"{"id": "", "expression": "dns.qtype == 2", "action": "block"}"#),
            &["organizations[0].rules[1].id: empty rule id"],
        ),
        (
            Policy::Text(
                r#"{"global": {"rules": [
        {"id": "acme/x", "expression": "dns.qtype == 2", "action": "block"}]}}"#,
            ),
            &["global.rules[0].id: rule id \"acme/x\" contains '/'"],
        ),
    ]);
}

#[test]
fn bad_identity_values() {
    assert_errors(&[
        (
            Policy::Text(r#"{"organizations": [{"id": "o", "networks": ["10.0.0.0/40"]}]}"#),
            &["organizations[0].networks[0]: \"10.0.0.0/40\" is not a network"],
        ),
        (
            Policy::Text(r#"{"organizations": [{"id": "o", "doh_tokens": ["a/b"]}]}"#),
            &["organizations[0].doh_tokens[0]: a DoH token must be"],
        ),
        (
            Policy::Text(r#"{"organizations": [{"id": "o", "dot_names": ["Acme.example"]}]}"#),
            &["organizations[0].dot_names[0]"],
        ),
        (
            Policy::Text(r#"{"organizations": [{"id": ""}]}"#),
            &["organizations[0].id: organization id \"\""],
        ),
        (
            Policy::Text(r#"{"upstreams": {"u": ["nowhere"]}}"#),
            &["upstreams.u[0]: \"nowhere\" is not an address"],
        ),
    ]);
}

#[test]
fn duplicates_across_files() {
    let d = dir_with(
        "policy-err",
        &[
            (
                "a.json",
                r#"{"global": {}, "upstreams": {"u": ["127.0.0.1"]}, "organizations": [{"id": "o"}]}"#,
            ),
            (
                "b.json",
                r#"{"global": {}, "upstreams": {"u": ["127.0.0.1"]}, "organizations": [{"id": "o"}]}"#,
            ),
        ],
    );
    let e = PolicySet::load_dir(&d).unwrap_err();
    let s = e.to_string();
    assert_eq!(e.issues.len(), 3, "{s}");
    assert!(e.issues.iter().all(|i| i.kind == IssueKind::Duplicate));
    assert!(
        s.contains("b.json: upstreams.u: upstream group \"u\" is defined twice"),
        "{s}"
    );
    assert!(
        s.contains("b.json: global: a global policy is already defined in"),
        "{s}"
    );
    assert!(
        s.contains("b.json: organizations[0].id: duplicate organization id \"o\" (also in"),
        "{s}"
    );
}

/// DoH tokens and DoT names identify an organization to whoever presents them, so guessable
/// ones (the organization's id, a short suffix, a run of characters) do not load: `check`
/// names each with file, line and column, without repeating the secret.
#[test]
fn guessable_tokens_and_dot_names_are_rejected_with_their_place() {
    let text = r#"{"organizations": [{
  "id": "acme",
  "doh_tokens": ["y3zdxoilh3cvc9bcp7r5b1kv7", "acme-7f3c9a"],
  "dot_names": ["acme", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
}]}"#;
    let d = policy_file_dir("policy-err", text);
    let e = PolicySet::load_dir(&d).unwrap_err();
    let s = e.to_string();
    assert_eq!(e.issues.len(), 3, "{s}");
    assert!(e.issues.iter().all(|i| i.kind == IssueKind::Invalid), "{s}");
    for (place, what) in [
        ("p.json:3:47: organizations[0].doh_tokens[1]", "DoH token"),
        ("p.json:4:17: organizations[0].dot_names[0]", "DoT name"),
        ("p.json:4:25: organizations[0].dot_names[1]", "DoT name"),
    ] {
        let line = s
            .lines()
            .find(|l| l.contains(place))
            .unwrap_or_else(|| panic!("{place}: {s}"));
        assert!(line.contains(&format!("this {what} has about")), "{line}");
        assert!(line.contains("at least 64 are needed"), "{line}");
        assert!(line.contains("picket token"), "{line}");
    }
    assert!(
        !s.contains("7f3c9a") && !s.contains("aaaa"),
        "the secret is not repeated: {s}"
    );

    // Several organizations, in order: each weak value at its own place, even when an earlier
    // organization has an empty array or the same weak value.
    let text = r#"{"organizations": [
  {"id": "a", "doh_tokens": ["alpha-1234"]},
  {"id": "b", "doh_tokens": []},
  {"id": "c", "doh_tokens": ["y3zdxoilh3cvc9bcp7r5b1kv7", "alpha-1234"]}
]}"#;
    let d = policy_file_dir("policy-err", text);
    let s = PolicySet::load_dir(&d).unwrap_err().to_string();
    assert!(
        s.contains("p.json:2:30: organizations[0].doh_tokens[0]: this DoH token"),
        "{s}"
    );
    assert!(
        s.contains("p.json:4:59: organizations[2].doh_tokens[1]: this DoH token"),
        "{s}"
    );
}

#[test]
fn several_problems_are_all_reported() {
    let e = err(&rules(
        r#"{"id": "a", "expression": "bogus", "action": "block"},
           {"id": "b", "expression": "dns.qtype == 1", "action": "nope"}"#,
    ));
    assert!(e.starts_with("2 problems in the policy:"), "{e}");
    assert!(
        e.contains("rules[1].expression") && e.contains("rules[2].action"),
        "{e}"
    );
}

#[test]
fn missing_directory() {
    let e = PolicySet::load_dir(std::path::Path::new("/nonexistent/picket-policies"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/picket-policies: cannot read policy directory"),
        "{e}"
    );
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "",
        "null",
        "[]",
        "{\"organizations\": {}}",
        "{\"global\": {\"rules\": [{\"id\": \"x\", \"expression\": \"\", \"action\": \"block\"}]}}",
        "{\"global\": {\"rules\": [{\"id\": \"x\", \"expression\": \"(((\", \"action\": \"block\"}]}}",
        "{\"global\": {\"rules\": [{\"id\": \"x\", \"expression\": \"dns.fqdn matches \\\"(\\\"\", \"action\": \"block\"}]}}",
        "{\"tests\": [{\"name\": \"x\"}]}",
        "\u{feff}{}",
    ];
    for s in samples {
        let d = policy_file_dir("policy-err", s);
        let _ = PolicySet::load_dir(&d)
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
}

/// An unknown action is a load error placed at the action's line and column (the end of its
/// string, like JSON errors), never a default action.
#[test]
fn unknown_action_is_placed_and_lists_the_valid_actions() {
    let d = policy_file_dir(
        "policy-err",
        &rules(r#"{"id": "r", "expression": "dns.qtype == 1", "action": "blok"}"#),
    );
    let e = PolicySet::load_dir(&d).unwrap_err();
    assert_eq!(e.issues.len(), 1, "{e}");
    assert_eq!(e.issues[0].kind, IssueKind::Invalid, "{e}");
    assert_eq!(e.issues[0].position, Some((7, 68)), "{e}");
    assert!(
        e.to_string().contains("p.json:7:68: organizations[0].rules[1].action: unknown action \"blok\" (expected one of block, allow, override, resolve, audit, refuse, drop, truncate)"),
        "{e}"
    );
    // A global rule, after organizations in the file, with the same misspelling.
    let e = err(&format!(
        "{},\n\"global\": {{\"rules\": [\n {{\"id\": \"g\", \"expression\": \"dns.qtype == 1\", \"action\": \"blok\"}}]}}}}",
        rules(r#"{"id": "r", "expression": "dns.qtype == 1", "action": "blok"}"#)
            .trim_end()
            .trim_end_matches('}'),
    ));
    assert!(
        e.contains("p.json:7:68: organizations[0].rules[1].action: unknown action"),
        "{e}"
    );
    assert!(
        e.contains("p.json:12:61: global.rules[0].action: unknown action"),
        "{e}"
    );
}
