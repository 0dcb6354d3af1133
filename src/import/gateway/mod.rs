//! `picket import gateway FILE [--lists FILE]`: a Cloudflare Gateway rules export as a Picket
//! policy.
//!
//! The input is what Gateway's API returns for its rules (`{"result": [...]}`, or the bare
//! array) and, for rules that reference lists (`$<uuid>`), its lists with their items. DNS
//! rules (`"filters": ["dns"]`) and resolver policies (`["dns_resolver"]`, the `resolve`
//! action) are carried over; other rules are skipped with a warning. Picket's evaluation is
//! Gateway's (ordered rules, first match wins, response-phase conditions judged on the
//! answer), so precedence becomes the order of the global rules and each expression is
//! translated condition by condition (`translate.rs`). Whatever cannot be carried over is
//! named in a warning; a rule whose conditions Picket cannot evaluate is imported disabled.

mod actions;
mod expr;
mod output;
mod translate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::policy::{RuleJson, ScheduleJson};
use actions::{Carried, RuleSettings};
use output::PolicyOut;
use translate::{slug, Scope, MATCH_ALL};

pub use expr::{parse as parse_expression, Expr, ParseError};

/// Lists per scope in a Picket policy (one bit each in a `u64`).
const MAX_LISTS: usize = 64;

/// Why nothing could be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: not valid JSON: {message} (give the Gateway API's response as it was saved)")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {what}")]
    Shape { file: String, what: String },
}

/// Something that was not carried over as it was, for the person importing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The Gateway rule's name, when it is about one rule.
    pub rule: Option<String>,
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "rule {r:?}: {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// The policy and what did not carry over.
#[derive(Debug)]
pub struct Import {
    /// The policy as JSON text (one `policies/*.json` file).
    pub policy: String,
    pub warnings: Vec<Warning>,
    /// Why Picket's loader rejects the policy, if it does: the import checks its own output,
    /// so that a translation it got wrong is never handed over as if it were good.
    pub load_error: Option<String>,
}

/// A Gateway list from the lists export.
#[derive(Debug, Clone, Default)]
pub struct GatewayList {
    pub name: String,
    /// `DOMAIN`, `IP`, ... (Gateway's `type`).
    pub kind: String,
    pub description: String,
    pub items: Vec<String>,
}

/// One input file: its name (for messages) and text.
pub struct Input<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

/// Reads the rules export `rules` (and the lists export `lists`) and imports them.
pub fn import_files(rules: &Path, lists: Option<&Path>) -> Result<Import, ImportError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| ImportError::Read {
            file: p.display().to_string(),
            source,
        })
    };
    let rules_text = read(rules)?;
    let lists_text = lists.map(read).transpose()?;
    let (rules_name, lists_name) = (
        rules.display().to_string(),
        lists.map(|p| p.display().to_string()).unwrap_or_default(),
    );
    import(
        Input {
            file: &rules_name,
            text: &rules_text,
        },
        lists_text.as_deref().map(|text| Input {
            file: &lists_name,
            text,
        }),
    )
}

/// Imports a rules export (and a lists export).
pub fn import(rules: Input<'_>, lists: Option<Input<'_>>) -> Result<Import, ImportError> {
    let mut scope = Scope::default();
    if let Some(l) = &lists {
        scope.gateway_lists = Some(read_lists(l)?);
    }
    let mut importer = Importer {
        scope,
        policy: PolicyOut::default(),
        warnings: Vec::new(),
        ids: BTreeSet::new(),
    };
    let rules_in = read_rules(&rules, &mut importer.warnings)?;
    let total = rules_in.len();
    for rule in ordered(rules_in, &mut importer.warnings) {
        importer.rule(&rule);
    }
    Ok(importer.finish(rules.file, total))
}

/// The array of a Gateway API response (`{"result": [...]}`) or a bare array.
fn result_array(input: &Input<'_>, what: &str) -> Result<Vec<Value>, ImportError> {
    let doc: Value = serde_json::from_str(input.text).map_err(|e| ImportError::Json {
        file: input.file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let shape = |what: String| ImportError::Shape {
        file: input.file.to_owned(),
        what,
    };
    match doc {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match o.remove("result") {
            Some(Value::Array(items)) => Ok(items),
            _ if o.get("success") == Some(&Value::Bool(false)) => Err(shape(format!(
                "this is an API error response, not {what}: {}",
                o.get("errors").map(Value::to_string).unwrap_or_default()
            ))),
            _ => Err(shape(format!(
                "expected {what}: the Gateway API's response ({{\"result\": [...]}}) or an array"
            ))),
        },
        _ => Err(shape(format!(
            "expected {what}: the Gateway API's response ({{\"result\": [...]}}) or an array"
        ))),
    }
}

/// A Gateway rule, as much of it as an import reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GatewayRule {
    id: Option<String>,
    name: String,
    description: Option<String>,
    enabled: Option<bool>,
    precedence: Option<i64>,
    action: String,
    filters: Option<Vec<String>>,
    traffic: Option<String>,
    identity: Option<String>,
    device_posture: Option<String>,
    rule_settings: Option<RuleSettings>,
    schedule: Option<Value>,
    expiration: Option<Expiration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Expiration {
    expires_at: Option<String>,
}

fn read_rules(
    input: &Input<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<GatewayRule>, ImportError> {
    let mut rules = Vec::new();
    for (i, v) in result_array(input, "Gateway rules")?
        .into_iter()
        .enumerate()
    {
        let name = v.get("name").and_then(Value::as_str).map(str::to_owned);
        match serde_json::from_value::<GatewayRule>(v) {
            Ok(r) => rules.push(r),
            Err(e) => warnings.push(Warning {
                rule: Some(name.unwrap_or_else(|| format!("#{}", i + 1))),
                text: format!("skipped: not a Gateway rule ({e})"),
            }),
        }
    }
    Ok(rules)
}

fn read_lists(input: &Input<'_>) -> Result<BTreeMap<String, GatewayList>, ImportError> {
    let mut lists = BTreeMap::new();
    for (i, v) in result_array(input, "Gateway lists")?.iter().enumerate() {
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let Some(id) = v.get("id").and_then(Value::as_str) else {
            return Err(ImportError::Shape {
                file: input.file.to_owned(),
                what: format!("list #{} has no \"id\"", i + 1),
            });
        };
        // Items are `{"value": ...}` objects in the API, plain strings are accepted too.
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let items = items
            .filter_map(|i| {
                i.as_str()
                    .or_else(|| i.get("value").and_then(Value::as_str))
            })
            .map(str::to_owned)
            .collect();
        let list = GatewayList {
            name: text("name"),
            kind: text("type"),
            description: text("description"),
            items,
        };
        lists.insert(id.to_owned(), list);
    }
    Ok(lists)
}

/// DNS rules by precedence, then resolver policies by precedence (Gateway runs resolver
/// policies after the DNS policies of the query phase); other rules are left out.
fn ordered(rules: Vec<GatewayRule>, warnings: &mut Vec<Warning>) -> Vec<GatewayRule> {
    let (mut dns, mut resolver) = (Vec::new(), Vec::new());
    for r in rules {
        let filters = r.filters.clone().unwrap_or_default();
        if filters.iter().any(|f| f == "dns") {
            dns.push(r);
        } else if filters.iter().any(|f| f == "dns_resolver") || r.action == "resolve" {
            resolver.push(r);
        } else {
            warnings.push(Warning {
                rule: Some(r.name.clone()),
                text: format!("skipped: filters {filters:?} (only DNS rules are imported)"),
            });
        }
    }
    // Stable: rules of equal precedence keep the export's order.
    dns.sort_by_key(|r| r.precedence.unwrap_or(i64::MAX));
    resolver.sort_by_key(|r| r.precedence.unwrap_or(i64::MAX));
    dns.extend(resolver);
    dns
}

struct Importer {
    scope: Scope,
    policy: PolicyOut,
    warnings: Vec<Warning>,
    /// Rule ids used so far.
    ids: BTreeSet<String>,
}

impl Importer {
    fn warn(&mut self, rule: &GatewayRule, text: String) {
        self.warnings.push(Warning {
            rule: Some(rule.name.clone()),
            text,
        });
    }

    fn rule(&mut self, r: &GatewayRule) {
        let id = self.rule_id(r);
        let slug = slug(if r.name.is_empty() { &id } else { &r.name }, '_');
        let (expression, response, mut problems, notes) = self.expression(r, &slug);
        for (what, text) in [
            ("identity", &r.identity),
            ("device_posture", &r.device_posture),
        ] {
            if let Some(t) = text.as_deref().filter(|t| !t.trim().is_empty()) {
                problems.push(format!("Picket cannot evaluate the {what} condition `{t}`"));
            }
        }
        for n in notes {
            self.warn(r, n);
        }
        let (schedule, schedule_note) = schedule(r.schedule.as_ref());
        if let Some(n) = schedule_note {
            self.warn(r, n);
        }
        let base = RuleJson {
            id,
            name: Some(if r.name.is_empty() {
                r.id.clone().unwrap_or_default()
            } else {
                r.name.clone()
            }),
            description: description(r, &expression),
            enabled: r.enabled.unwrap_or(true) && problems.is_empty(),
            expression,
            schedule,
            expires_at: r.expiration.as_ref().and_then(|e| e.expires_at.clone()),
            ..RuleJson::default()
        };
        let default = RuleSettings::default();
        let settings = r.rule_settings.as_ref().unwrap_or(&default);
        match actions::carry(&r.action, settings, base, response) {
            Ok(carried) => self.add(r, carried, problems),
            Err(why) => self.warn(r, format!("skipped: {why}")),
        }
    }

    /// The rule's expression in Picket's terms, whether it reads the answer, the conditions
    /// that could not be carried over, and notes.
    fn expression(
        &mut self,
        r: &GatewayRule,
        slug: &str,
    ) -> (String, bool, Vec<String>, Vec<String>) {
        let traffic = r.traffic.as_deref().unwrap_or("").trim();
        if traffic.is_empty() {
            return (MATCH_ALL.to_owned(), false, Vec::new(), Vec::new());
        }
        match expr::parse(traffic) {
            Ok(e) => {
                let t = self.scope.translate(&e, slug);
                (t.expression, t.response, t.problems, t.notes)
            }
            Err(e) => {
                let field = self.scope.placeholder(
                    slug,
                    "unparsed",
                    format!("Stands for the Gateway expression `{traffic}`, which could not be read ({e})."),
                );
                let problem = format!(
                    "the expression could not be read ({e}); it became the empty list {field}"
                );
                (field, false, vec![problem], Vec::new())
            }
        }
    }

    fn add(&mut self, r: &GatewayRule, carried: Carried, problems: Vec<String>) {
        for p in &problems {
            self.warn(r, format!("{p}; imported disabled"));
        }
        for n in carried.notes {
            self.warn(r, n);
        }
        let mut rules = carried.rules;
        if let Some((name, addrs)) = carried.upstream {
            let name = self.upstream(name, addrs);
            for rule in &mut rules {
                rule.upstream = Some(name.clone());
            }
        }
        for rule in &rules {
            self.ids.insert(rule.id.clone());
        }
        self.policy.global.rules.extend(rules);
    }

    /// Adds an upstream group; a name taken by other addresses gets a number.
    fn upstream(&mut self, name: String, addrs: Vec<String>) -> String {
        let ups = &mut self.policy.upstreams;
        let name = (1..)
            .map(|n| {
                if n == 1 {
                    name.clone()
                } else {
                    format!("{name}-{n}")
                }
            })
            .find(|n| ups.get(n).is_none_or(|a| *a == addrs))
            .unwrap_or(name);
        ups.insert(name.clone(), addrs);
        name
    }

    /// The Gateway rule's id, made unique (and free of `/`, which Picket reserves).
    fn rule_id(&self, r: &GatewayRule) -> String {
        let base = match r.id.as_deref().filter(|i| !i.is_empty()) {
            Some(id) => id.replace('/', "-"),
            None => slug(&r.name, '-'),
        };
        // Room for the `-google` ... `-other` ids a safesearch rule adds.
        let taken = |id: &str| {
            self.ids
                .iter()
                .any(|t| t == id || t.starts_with(&format!("{id}-")))
        };
        (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|id| !taken(id))
            .unwrap_or(base)
    }

    fn finish(mut self, file: &str, total: usize) -> Import {
        self.policy.global.lists = std::mem::take(&mut self.scope.lists);
        self.policy.organizations = std::mem::take(&mut self.scope.orgs);
        if self.policy.global.lists.len() > MAX_LISTS {
            self.warnings.push(Warning {
                rule: None,
                text: format!(
                    "the policy has {} lists, Picket allows {MAX_LISTS} in the global policy: \
                     merge some before loading it",
                    self.policy.global.lists.len()
                ),
            });
        }
        self.policy.description = format!(
            "Imported from the Cloudflare Gateway rules in {file} by `picket import gateway`: \
             {total} Gateway rules, {} Picket rules, {} warnings.",
            self.policy.global.rules.len(),
            self.warnings.len()
        );
        let mut policy = serde_json::to_string_pretty(&self.policy).unwrap_or_default();
        policy.push('\n');
        let load_error = crate::policy::PolicySet::load_embedded(&[("gateway.json", &policy)])
            .err()
            .map(|e| e.to_string());
        Import {
            policy,
            warnings: self.warnings,
            load_error,
        }
    }
}

/// The Gateway description, where the rule came from, and the Gateway expression when the
/// Picket one reads differently.
fn description(r: &GatewayRule, expression: &str) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(d) = r.description.as_deref().filter(|d| !d.is_empty()) {
        parts.push(d.to_owned());
    }
    let id = r.id.as_deref().unwrap_or("(no id)");
    let precedence = r
        .precedence
        .map(|p| format!(", precedence {p}"))
        .unwrap_or_default();
    parts.push(format!("Gateway rule {id}{precedence}."));
    let traffic = r.traffic.as_deref().unwrap_or("").trim();
    if !traffic.is_empty() && traffic != expression {
        parts.push(format!("Gateway expression: {traffic}"));
    }
    Some(parts.join(" "))
}

/// A Gateway schedule in Picket's (the same) shape; a note when its time zone is missing.
fn schedule(s: Option<&Value>) -> (Option<ScheduleJson>, Option<String>) {
    let Some(Value::Object(o)) = s else {
        return (None, None);
    };
    let text = |key: &str| {
        o.get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let out = ScheduleJson {
        time_zone: text("time_zone").or_else(|| text("timezone")),
        mon: text("mon"),
        tue: text("tue"),
        wed: text("wed"),
        thu: text("thu"),
        fri: text("fri"),
        sat: text("sat"),
        sun: text("sun"),
    };
    let note = out.time_zone.is_none().then(|| {
        "the schedule has no time_zone: Gateway takes the client's, Picket uses UTC; add \
         \"time_zone\" to the rule's schedule"
            .to_owned()
    });
    (Some(out), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rules: &str) -> (Value, Vec<String>) {
        let import = import(
            Input {
                file: "rules.json",
                text: rules,
            },
            None,
        )
        .unwrap();
        let warnings = import.warnings.iter().map(ToString::to_string).collect();
        (serde_json::from_str(&import.policy).unwrap(), warnings)
    }

    #[test]
    fn schedules_carry_over_and_a_missing_zone_is_reported() {
        let (p, w) = run(
            r#"[{"name": "a", "action": "block", "filters": ["dns"], "traffic": "dns.fqdn == \"a.example\"",
                 "schedule": {"mon": "08:00-12:00", "tue": null, "timezone": "Europe/Berlin"}},
                {"name": "b", "action": "block", "filters": ["dns"], "traffic": "",
                 "schedule": {"fri": "18:00-24:00"}}]"#,
        );
        let rules = &p["global"]["rules"];
        assert_eq!(rules[0]["schedule"]["time_zone"], "Europe/Berlin");
        assert_eq!(rules[0]["schedule"]["mon"], "08:00-12:00");
        assert!(rules[0]["schedule"].get("tue").is_none());
        assert_eq!(rules[1]["expression"], MATCH_ALL);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("rule \"b\": the schedule has no time_zone"),
            "{w:?}"
        );
    }

    #[test]
    fn ids_stay_unique_and_unreadable_rules_are_named() {
        let (p, w) = run(r#"{"result": [
                {"id": "x", "name": "one", "action": "allow", "filters": ["dns"], "traffic": "dns.fqdn == \"a\""},
                {"id": "x", "name": "two", "action": "allow", "filters": ["dns"], "traffic": "dns.fqdn == \"b\""},
                {"name": "three", "action": 7}
            ]}"#);
        let ids: Vec<&str> = p["global"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["x", "x-2"]);
        assert!(
            w[0].starts_with("rule \"three\": skipped: not a Gateway rule"),
            "{w:?}"
        );
    }

    #[test]
    fn values_are_written_as_picket_loads_them() {
        let import = import(
            Input {
                file: "rules.json",
                text: r#"[{"name": "q", "action": "block", "filters": ["dns"],
                   "traffic": "dns.src_ip == \"10.0.0.1\" and dns.query_rtype == 16"}]"#,
            },
            None,
        )
        .unwrap();
        assert_eq!(import.load_error, None, "{}", import.policy);
        assert!(
            import.policy.contains("dns.src_ip == 10.0.0.1"),
            "{}",
            import.policy
        );
        assert!(
            import.warnings[0].text.contains("compared by name"),
            "{:?}",
            import.warnings
        );
    }

    #[test]
    fn unparsable_expressions_are_imported_disabled() {
        let (p, w) = run(
            r#"[{"name": "bad", "action": "block", "filters": ["dns"], "traffic": "dns.fqdn == "}]"#,
        );
        assert_eq!(p["global"]["rules"][0]["enabled"], false);
        assert_eq!(p["global"]["rules"][0]["expression"], "list.bad_unparsed");
        assert!(w[0].contains("could not be read"), "{w:?}");
    }
}
