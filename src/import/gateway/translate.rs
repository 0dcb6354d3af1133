//! Gateway traffic expressions to Picket expressions.
//!
//! Fields that Picket has under the same name and type are kept as written (`dns.fqdn`,
//! `dns.src_ip`); the others are renamed (`dns.query_rtype` → `dns.qtype.name`,
//! `dns.resolved_ips` → `dns.response.ip`, `dns.location` and `dns.doh_subdomain` →
//! `org.id`). `any(dns.domains[*] ...)`, "the name or one of its parent domains", is exactly
//! what a Picket list tests (an entry matches the domain and every subdomain), so the domains
//! become a list and the condition `list.<name>`: answered from the name index, and with no
//! array type needed in Picket's Wirefilter. A condition Picket cannot evaluate becomes an
//! empty list standing for it (its description quotes the Gateway condition), and the rule is
//! imported disabled: never silently widened or narrowed.

use std::collections::BTreeMap;

use super::expr::{Expr, Logic, Op, Test, Value};
use super::output::{ListOut, OrgOut};
use super::GatewayList;
use crate::policy::token;

/// Why a Gateway condition is not carried over (it becomes an empty placeholder list, and the
/// rule is imported disabled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCarried {
    #[error("the list ${0} is not known: give the lists export with --lists FILE")]
    ListsNotGiven(String),
    #[error("the list ${0} is not in the lists export")]
    ListNotExported(String),
    /// Cloudflare's content or security categories (the words name which).
    #[error("Picket has no Cloudflare {0}")]
    Categories(&'static str),
    #[error("Picket has no field like Gateway's {0}")]
    UnknownField(String),
    #[error(
        "Picket tests the answer one record at a time and cannot negate a condition on all of them"
    )]
    NegatedAnswer,
    #[error("{0} is not an array")]
    NotAnArray(String),
    #[error("{0} alone is not a condition")]
    NoComparison(String),
    #[error("record types are compared by name (\"AAAA\")")]
    TypeNumber,
    #[error("a comparison without a value")]
    NoValue,
    #[error("the list ${id} (\"{name}\") holds {kind} values where {wanted} values are compared")]
    ListKind {
        id: String,
        name: String,
        kind: String,
        wanted: &'static str,
    },
    #[error("the list ${id} (\"{name}\") is empty")]
    EmptyList { id: String, name: String },
    #[error(
        "the list ${id} (\"{name}\") has wildcard entries, which an exact name test cannot hold"
    )]
    WildcardList { id: String, name: String },
    #[error("the set holds values that are not domains")]
    SetOfNonDomains,
    #[error("Picket lists match a domain and its subdomains with == and in only")]
    DomainsOperator,
    #[error("not domain names: {0:?}")]
    NotDomainNames(Vec<String>),
    #[error("the list ${id} (\"{name}\") holds {kind} values, not domains")]
    NotADomainList {
        id: String,
        name: String,
        kind: String,
    },
    /// `dns.location` or `dns.doh_subdomain` with another operator.
    #[error("{0} is compared with ==, != or in only")]
    OrgOperator(String),
    #[error("the set holds values that are not strings")]
    SetOfNonStrings,
    #[error("{0} is compared with strings only")]
    OrgNotString(String),
}

/// What the translated rules share: the lists and organizations they need.
#[derive(Debug, Default)]
pub struct Scope {
    /// The lists export, by Gateway id (`--lists`); None when not given.
    pub gateway_lists: Option<BTreeMap<String, GatewayList>>,
    /// The Picket lists made so far, by name.
    pub lists: BTreeMap<String, ListOut>,
    /// Picket list name of each Gateway list used as domains.
    list_names: BTreeMap<String, String>,
    /// Organizations made for locations and DoH subdomains, in order of first use.
    pub orgs: Vec<OrgOut>,
    /// Organization id of each Gateway location id or DoH subdomain.
    org_ids: BTreeMap<String, String>,
}

/// One rule's expression in Picket's terms.
#[derive(Debug, Default)]
pub struct Translated {
    pub expression: String,
    /// It reads a response field (`dns.response.*`).
    pub response: bool,
    /// Conditions that could not be carried over: the rule must be imported disabled.
    pub problems: Vec<String>,
    /// What the operator must know but that does not change what the rule matches.
    pub notes: Vec<String>,
}

/// Matches every query (a Gateway rule with no traffic condition).
pub const MATCH_ALL: &str = "dns.qtype >= 0";

impl Scope {
    /// Translates `expr` for the rule whose list names start with `slug`.
    pub fn translate(&mut self, expr: &Expr, slug: &str) -> Translated {
        let mut t = Translator {
            scope: self,
            slug,
            out: Translated::default(),
            negated: false,
            answer_tests: 0,
        };
        t.out.expression = t.expr(expr);
        if t.answer_tests > 1 {
            t.out.problems.push(
                "it has several conditions on the answer: Gateway asks whether any record \
                 matches each, Picket whether one record matches them all"
                    .to_owned(),
            );
        }
        t.out
    }

    /// A list standing for a condition that cannot be carried over.
    pub fn placeholder(&mut self, slug: &str, what: &str, description: String) -> String {
        let name = self.list_name(slug, what);
        self.lists.insert(
            name.clone(),
            ListOut {
                description,
                domains: Vec::new(),
            },
        );
        format!("list.{name}")
    }

    /// A list name not used yet, `PREFIX_WHAT` (letters, digits and `_`).
    fn list_name(&self, prefix: &str, what: &str) -> String {
        let base = match (slug(prefix, '_'), what) {
            (prefix, "") => prefix,
            (prefix, what) => format!("{prefix}_{what}"),
        };
        (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}_{n}"),
            })
            .find(|n| !self.lists.contains_key(n))
            .unwrap_or(base)
    }

    fn gateway_list(&self, id: &str) -> Result<&GatewayList, NotCarried> {
        let Some(lists) = &self.gateway_lists else {
            return Err(NotCarried::ListsNotGiven(id.to_owned()));
        };
        lists
            .get(id)
            .ok_or_else(|| NotCarried::ListNotExported(id.to_owned()))
    }
}

/// Lower-case letters and digits of `text`, other runs of characters as one `sep`.
pub fn slug(text: &str, sep: char) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    // Short enough to read in a list name or an upstream group; cut at a word.
    let mut out = out.trim_end_matches(sep).to_owned();
    if out.len() > 32 {
        out.truncate(out[..32].rfind(sep).unwrap_or(32));
    }
    if out.is_empty() {
        "rule".to_owned()
    } else {
        out
    }
}

/// A domain as a Picket list or name test holds it: lower case, no trailing dot, no `*.`.
fn domain(s: &str) -> String {
    let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
    s.strip_prefix("*.").map(str::to_owned).unwrap_or(s)
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A Wirefilter string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How a kept field's values are written.
#[derive(Clone, Copy)]
enum Kind {
    /// Query names: lower case, no trailing dot; Gateway lists of domains inline.
    Name,
    /// Addresses and networks; Gateway lists of IPs inline.
    Ip,
    /// Record type mnemonics, upper case.
    Rtype,
}

struct Translator<'s> {
    scope: &'s mut Scope,
    slug: &'s str,
    out: Translated,
    /// Under an odd number of `not`s.
    negated: bool,
    /// Conditions on the answer seen so far.
    answer_tests: usize,
}

impl Translator<'_> {
    fn expr(&mut self, e: &Expr) -> String {
        match e {
            Expr::Combine(logic, items) => {
                let parts: Vec<String> = items.iter().map(|i| self.operand(i, *logic)).collect();
                parts.join(&format!(" {} ", logic.word()))
            }
            Expr::Not(inner) => {
                self.negated = !self.negated;
                let text = match **inner {
                    Expr::Test(_) => format!("not {}", self.expr(inner)),
                    _ => format!("not ({})", self.expr(inner)),
                };
                self.negated = !self.negated;
                text
            }
            Expr::Test(t) => self.test(t),
        }
    }

    /// A combination's operand, in parentheses when it combines differently.
    fn operand(&mut self, e: &Expr, parent: Logic) -> String {
        let text = self.expr(e);
        match e {
            Expr::Combine(l, _) if *l != parent => format!("({text})"),
            _ => text,
        }
    }

    fn test(&mut self, t: &Test) -> String {
        let result = match (t.field.as_str(), t.any) {
            ("dns.fqdn", false) => self.keep("dns.fqdn", t, Kind::Name),
            ("dns.domains", _) => self.domains(t),
            ("dns.src_ip", false) => self.keep("dns.src_ip", t, Kind::Ip),
            ("dns.query_rtype", false) => self.keep("dns.qtype.name", t, Kind::Rtype),
            ("dns.location", false) => self.org_test(t, Self::location_org),
            ("dns.doh_subdomain", false) => self.org_test(t, Self::doh_org),
            ("dns.resolved_ips" | "dns.resolved_ip", _) => {
                self.answer_test("dns.response.ip", t, Kind::Ip)
            }
            ("dns.response.cname", _) => self.answer_test("dns.response.cname", t, Kind::Name),
            (f @ ("dns.content_category" | "dns.security_category"), _) => {
                Err(NotCarried::Categories(category_words(f)))
            }
            (f, _) => Err(NotCarried::UnknownField(f.to_owned())),
        };
        result.unwrap_or_else(|why| self.unsupported(t, &why))
    }

    /// A condition on the answer. Picket runs a response rule once per record and it matches
    /// if one run does: Gateway's `any(...)` exactly, but not its negation (`not any`: no
    /// record matches), which would become "some record does not match".
    fn answer_test(&mut self, field: &str, t: &Test, kind: Kind) -> Result<String, NotCarried> {
        self.out.response = true;
        self.answer_tests += 1;
        if self.negated {
            return Err(NotCarried::NegatedAnswer);
        }
        self.keep(field, t, kind)
    }

    /// Records why `t` is not carried over and stands an empty list in for it.
    fn unsupported(&mut self, t: &Test, why: &NotCarried) -> String {
        let shown = if t.any {
            format!("any({})", t.text)
        } else {
            t.text.clone()
        };
        let what = match t.field.as_str() {
            "dns.content_category" => "content_categories",
            "dns.security_category" => "security_categories",
            _ => "unsupported",
        };
        let field = self.scope.placeholder(
            self.slug,
            what,
            format!(
                "Stands for the Gateway condition `{shown}` ({why}). Empty: put the domains it \
                 should match here (a file or a feed url), then enable the rules using it."
            ),
        );
        self.out.problems.push(format!(
            "`{shown}`: {why}; it became the empty list {field}"
        ));
        field
    }

    /// `FIELD OP VALUE` with Picket's field name, values normalised.
    fn keep(&mut self, field: &str, t: &Test, kind: Kind) -> Result<String, NotCarried> {
        if t.any && !matches!(field, "dns.response.ip" | "dns.response.cname") {
            return Err(NotCarried::NotAnArray(t.field.clone()));
        }
        let Some(op) = t.op else {
            return Err(NotCarried::NoComparison(t.field.clone()));
        };
        let value = self.value(&t.value, kind)?;
        Ok(format!("{field} {} {value}", op.symbol()))
    }

    fn value(&mut self, v: &Value, kind: Kind) -> Result<String, NotCarried> {
        Ok(match (v, kind) {
            // Addresses are bare in Wirefilter; a quoted one would not load.
            (Value::Str(s), Kind::Ip)
                if s.parse::<std::net::IpAddr>().is_ok() || s.contains('/') =>
            {
                s.clone()
            }
            (Value::Bare(_), Kind::Rtype) => return Err(NotCarried::TypeNumber),
            (Value::Str(s), _) => quote(&normalise(s, kind)),
            (Value::Bare(b), _) => b.clone(),
            (Value::Set(items), _) => {
                let items: Result<Vec<String>, NotCarried> =
                    items.iter().map(|i| self.value(i, kind)).collect();
                format!("{{{}}}", items?.join(" "))
            }
            (Value::List(id), _) => self.inline_list(id, kind)?,
            (Value::None, _) => return Err(NotCarried::NoValue),
        })
    }

    /// A Gateway list's items as a set (`dns.fqdn in $id` tests the exact name).
    fn inline_list(&mut self, id: &str, kind: Kind) -> Result<String, NotCarried> {
        let list = self.scope.gateway_list(id)?;
        let wanted = match kind {
            Kind::Ip => "IP",
            _ => "DOMAIN",
        };
        if !list.kind.is_empty() && !list.kind.eq_ignore_ascii_case(wanted) {
            return Err(NotCarried::ListKind {
                id: id.to_owned(),
                name: list.name.clone(),
                kind: list.kind.clone(),
                wanted,
            });
        }
        if list.items.is_empty() {
            return Err(NotCarried::EmptyList {
                id: id.to_owned(),
                name: list.name.clone(),
            });
        }
        if matches!(kind, Kind::Name) && list.items.iter().any(|i| i.starts_with("*.")) {
            return Err(NotCarried::WildcardList {
                id: id.to_owned(),
                name: list.name.clone(),
            });
        }
        let items: Vec<String> = list
            .items
            .iter()
            .map(|i| match kind {
                Kind::Ip => i.clone(),
                _ => quote(&normalise(i, kind)),
            })
            .collect();
        Ok(format!("{{{}}}", items.join(" ")))
    }

    /// `any(dns.domains[*] == "d")`, `... in {"d" ...}`, `... in $list`: a Picket list.
    fn domains(&mut self, t: &Test) -> Result<String, NotCarried> {
        let (domains, name, description) = match (t.op, &t.value) {
            (Some(Op::Eq), Value::Str(s)) => self.literal_domains(std::slice::from_ref(s))?,
            (Some(Op::In), Value::Set(items)) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| match i {
                        Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                self.literal_domains(&strings.ok_or(NotCarried::SetOfNonDomains)?)?
            }
            (Some(Op::In), Value::List(id)) => {
                if let Some(name) = self.scope.list_names.get(id) {
                    return Ok(format!("list.{name}"));
                }
                self.list_domains(id)?
            }
            _ => return Err(NotCarried::DomainsOperator),
        };
        let bad: Vec<&String> = domains.iter().filter(|d| !valid_domain(d)).collect();
        if !bad.is_empty() {
            return Err(NotCarried::NotDomainNames(
                bad.into_iter().cloned().collect(),
            ));
        }
        if let Value::List(id) = &t.value {
            self.scope.list_names.insert(id.clone(), name.clone());
        }
        self.scope.lists.insert(
            name.clone(),
            ListOut {
                description,
                domains,
            },
        );
        Ok(format!("list.{name}"))
    }

    fn literal_domains(
        &self,
        items: &[String],
    ) -> Result<(Vec<String>, String, String), NotCarried> {
        let name = self.scope.list_name(self.slug, "domains");
        let description = format!(
            "The domains (and their subdomains) of the Gateway condition any(dns.domains[*] ...) \
             of the rule {}.",
            self.slug
        );
        Ok((items.iter().map(|d| domain(d)).collect(), name, description))
    }

    fn list_domains(&self, id: &str) -> Result<(Vec<String>, String, String), NotCarried> {
        let list = self.scope.gateway_list(id)?;
        if !list.kind.is_empty() && !list.kind.eq_ignore_ascii_case("DOMAIN") {
            return Err(NotCarried::NotADomainList {
                id: id.to_owned(),
                name: list.name.clone(),
                kind: list.kind.clone(),
            });
        }
        let name = self.scope.list_name(&list.name, "");
        let description = format!(
            "Gateway list \"{}\" (${id}){}{}",
            list.name,
            if list.description.is_empty() {
                ""
            } else {
                ": "
            },
            list.description
        );
        let domains = list.items.iter().map(|d| domain(d)).collect();
        Ok((domains, name, description))
    }

    /// `dns.location` / `dns.doh_subdomain`: the same test on `org.id`, each value made an
    /// organization by `org`.
    fn org_test(
        &mut self,
        t: &Test,
        org: fn(&mut Self, &str) -> String,
    ) -> Result<String, NotCarried> {
        let op = match t.op {
            Some(op @ (Op::Eq | Op::Ne | Op::In)) => op,
            _ => return Err(NotCarried::OrgOperator(t.field.clone())),
        };
        let value = match &t.value {
            Value::Str(s) => quote(&org(self, s)),
            Value::Set(items) => {
                let mut ids = Vec::new();
                for i in items {
                    let Value::Str(s) = i else {
                        return Err(NotCarried::SetOfNonStrings);
                    };
                    ids.push(quote(&org(self, s)));
                }
                format!("{{{}}}", ids.join(" "))
            }
            _ => return Err(NotCarried::OrgNotString(t.field.clone())),
        };
        Ok(format!("org.id {} {value}", op.symbol()))
    }

    /// The organization standing for a Gateway location: its id is the location's.
    fn location_org(&mut self, location: &str) -> String {
        if let Some(id) = self.scope.org_ids.get(location) {
            return id.clone();
        }
        // Location ids are UUIDs, valid organization ids as they are.
        let id: String = location
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let id = if id.is_empty() {
            "location".to_owned()
        } else {
            id
        };
        self.scope.orgs.push(OrgOut {
            id: id.clone(),
            name: format!("Gateway location {location}"),
            description: "Made from a Gateway location: add its networks (or a DoH token from \
                          `picket token`) so that its clients are identified."
                .to_owned(),
            networks: Vec::new(),
            doh_tokens: Vec::new(),
        });
        self.out.notes.push(format!(
            "location {location} became the organization {id}: add its networks or DoH tokens"
        ));
        self.scope.org_ids.insert(location.to_owned(), id.clone());
        id
    }

    /// The organization standing for a location's DoH subdomain, which becomes its DoH token
    /// when it is random enough to be one.
    fn doh_org(&mut self, subdomain: &str) -> String {
        let key = format!("doh:{subdomain}");
        if let Some(id) = self.scope.org_ids.get(&key) {
            return id.clone();
        }
        // The id must not contain the subdomain: it would count as a known word of it.
        let n = 1 + self
            .scope
            .org_ids
            .keys()
            .filter(|k| k.starts_with("doh:"))
            .count();
        let (id, name) = (format!("doh-{n}"), format!("Gateway DoH endpoint {n}"));
        let context = token::context_words(&id, Some(&name));
        let context: Vec<&str> = context.iter().map(String::as_str).collect();
        let bits = token::estimate_bits(subdomain, &context);
        let strong = bits >= token::MIN_TOKEN_BITS;
        if !strong {
            self.out.notes.push(format!(
                "the DoH subdomain {subdomain:?} has about {bits:.0} bits of randomness, Picket \
                 needs {:.0} for a DoH token: the organization {id} was made without it; give \
                 it one from `picket token` and point its clients at /dns-query/TOKEN",
                token::MIN_TOKEN_BITS
            ));
        }
        self.scope.orgs.push(OrgOut {
            id: id.clone(),
            name,
            description: format!("Made from the Gateway DoH subdomain {subdomain}."),
            networks: Vec::new(),
            doh_tokens: if strong {
                vec![subdomain.to_owned()]
            } else {
                Vec::new()
            },
        });
        self.scope.org_ids.insert(key, id.clone());
        id
    }
}

fn normalise(s: &str, kind: Kind) -> String {
    match kind {
        Kind::Name => s.trim_end_matches('.').to_ascii_lowercase(),
        Kind::Rtype => s.to_ascii_uppercase(),
        Kind::Ip => s.to_owned(),
    }
}

fn category_words(field: &str) -> &'static str {
    if field == "dns.content_category" {
        "content categories"
    } else {
        "security categories"
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::parse;
    use super::*;

    fn scope_with_lists() -> Scope {
        let mut lists = BTreeMap::new();
        lists.insert(
            "11111111-2222-3333-4444-555555555555".to_owned(),
            GatewayList {
                name: "Blocked games".into(),
                kind: "DOMAIN".into(),
                description: String::new(),
                items: vec!["Games.example".into(), "play.example.".into()],
            },
        );
        lists.insert(
            "99999999-2222-3333-4444-555555555555".to_owned(),
            GatewayList {
                name: "Guests".into(),
                kind: "IP".into(),
                description: String::new(),
                items: vec!["10.9.0.0/16".into(), "2001:db8:9::/48".into()],
            },
        );
        Scope {
            gateway_lists: Some(lists),
            ..Scope::default()
        }
    }

    fn tr(scope: &mut Scope, text: &str) -> Translated {
        scope.translate(&parse(text).unwrap(), "r")
    }

    /// Asserts that `t` became the list `name` of `s`, holding `domains`.
    fn assert_list(s: &Scope, t: &Translated, name: &str, domains: &[&str]) {
        assert_eq!(t.expression, format!("list.{name}"));
        assert_eq!(s.lists[name].domains, domains);
    }

    /// `text` translated in a scope of its own, for tests that look only at the result.
    fn tr_alone(text: &str) -> Translated {
        tr(&mut Scope::default(), text)
    }

    #[test]
    fn same_fields_are_kept_as_written() {
        let t = tr_alone(
            r#"dns.fqdn == "WWW.Example.com." and dns.src_ip in {10.0.0.0/8 2001:db8::/32}"#,
        );
        assert_eq!(
            t.expression,
            r#"dns.fqdn == "www.example.com" and dns.src_ip in {10.0.0.0/8 2001:db8::/32}"#
        );
        assert!(t.problems.is_empty() && !t.response);
    }

    #[test]
    fn renamed_fields() {
        let mut s = Scope::default();
        let t = tr(
            &mut s,
            r#"dns.query_rtype in {"txt" "ANY"} or not(dns.fqdn matches "^x")"#,
        );
        assert_eq!(
            t.expression,
            r#"dns.qtype.name in {"TXT" "ANY"} or not dns.fqdn matches "^x""#
        );
        let t = tr(&mut s, "any(dns.resolved_ips[*] in {10.0.0.0/8})");
        assert_eq!(t.expression, "dns.response.ip in {10.0.0.0/8}");
        assert!(t.response);
    }

    #[test]
    fn domains_become_lists() {
        let mut s = Scope::default();
        let t = tr(
            &mut s,
            r#"any(dns.domains[*] in {"Ads.Example" "track.example."})"#,
        );
        assert_list(&s, &t, "r_domains", &["ads.example", "track.example"]);
        let t = tr(
            &mut s,
            r#"any(dns.domains[*] == "x.example") and dns.query_rtype == "A""#,
        );
        assert_eq!(
            t.expression,
            r#"list.r_domains_2 and dns.qtype.name == "A""#
        );
    }

    #[test]
    fn gateway_lists_resolve_once() {
        let mut s = scope_with_lists();
        let games = "$11111111-2222-3333-4444-555555555555";
        let t = tr(&mut s, &format!("any(dns.domains[*] in {games})"));
        assert_list(&s, &t, "blocked_games", &["games.example", "play.example"]);
        let t = tr(
            &mut s,
            &format!("not any(dns.domains[*] in {games}) or dns.fqdn in {games}"),
        );
        assert_eq!(
            t.expression,
            r#"not list.blocked_games or dns.fqdn in {"games.example" "play.example"}"#
        );
        let t = tr(
            &mut s,
            "dns.src_ip in $99999999-2222-3333-4444-555555555555",
        );
        assert_eq!(t.expression, "dns.src_ip in {10.9.0.0/16 2001:db8:9::/48}");
        // A list of the wrong type is a problem, not a guess.
        let t = tr(&mut s, &format!("dns.src_ip in {games}"));
        assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
    }

    #[test]
    fn lists_without_export_are_problems() {
        let mut s = Scope::default();
        let t = tr(&mut s, "any(dns.domains[*] in $abc)");
        assert!(t.problems[0].contains("--lists FILE"), "{:?}", t.problems);
        assert_eq!(t.expression, "list.r_unsupported");
        assert!(s.lists["r_unsupported"].domains.is_empty());
    }

    #[test]
    fn categories_become_empty_lists_and_problems() {
        let t = tr_alone(
            r#"any(dns.content_category[*] in {1 4}) and not(any(dns.security_category[*] in {68}))"#,
        );
        assert_eq!(
            t.expression,
            "list.r_content_categories and not list.r_security_categories"
        );
        assert_eq!(t.problems.len(), 2);
        assert!(t.problems[0].contains("content categories"));
    }

    #[test]
    fn locations_and_doh_subdomains_become_organizations() {
        let mut s = Scope::default();
        let loc = "f1b5c6d2-0000-4000-8000-00000000000a";
        let t = tr(
            &mut s,
            &format!(r#"dns.location in {{"{loc}"}} or dns.doh_subdomain == "9y65g5srsm""#),
        );
        assert_eq!(
            t.expression,
            format!(r#"org.id in {{"{loc}"}} or org.id == "doh-1""#)
        );
        assert_eq!(s.orgs.len(), 2);
        // Ten characters of a-z0-9 are about 52 bits: too few for a Picket DoH token.
        assert!(s.orgs[1].doh_tokens.is_empty());
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
        let strong = "k3u9x1qz7v0m2b8n4c6p5w7r";
        tr(&mut s, &format!(r#"dns.doh_subdomain == "{strong}""#));
        assert_eq!(s.orgs[2].doh_tokens, [strong]);
    }

    #[test]
    fn answer_conditions_are_carried_only_where_per_record_means_the_same() {
        let mut s = Scope::default();
        let ok = "any(dns.resolved_ips[*] in {10.0.0.0/8}) and not dns.fqdn == \"a\"";
        assert!(tr(&mut s, ok).problems.is_empty());
        let negated = tr(&mut s, "not(any(dns.resolved_ips[*] in {10.0.0.0/8}))");
        assert_eq!(negated.problems.len(), 1, "{:?}", negated.problems);
        let two = tr(
            &mut s,
            r#"any(dns.resolved_ips[*] == 10.0.0.1) and any(dns.response.cname[*] == "x.example")"#,
        );
        assert_eq!(two.problems.len(), 1, "{:?}", two.problems);
        assert!(two.response);
    }

    #[test]
    fn nesting_keeps_its_meaning() {
        let t = tr_alone(
            r#"(dns.fqdn == "a" or dns.fqdn == "b") and not (dns.fqdn == "c" or dns.fqdn == "d")"#,
        );
        assert_eq!(
            t.expression,
            r#"(dns.fqdn == "a" or dns.fqdn == "b") and not (dns.fqdn == "c" or dns.fqdn == "d")"#
        );
    }
}
