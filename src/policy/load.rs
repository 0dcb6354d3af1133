//! Loading and validating `policies/*.json` into a [`PolicySet`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use wirefilter::Scheme;

use super::config::{FileJson, GlobalJson, ListJson, OrgJson, RuleJson, TestJson};
use super::error::{position_of, Issue, IssueKind, PolicyError};
use super::identity::IdentityIndex;
use super::lists;
use super::rules::{
    build_scheme, guard_test, name_test, uses_of, Effect, ListFields, ListMeta, NameTest, Org,
    Phase, Rule, Ruleset, Uses, RESPONSE_MASK,
};
use super::schedule::{RuleClock, Schedule};
use super::sources::{self, Declared, ListInput, LoadedLists, Source};
use super::token;
use super::{
    next_version, Action, BlockAnswer, BlockMode, LoadOptions, OverrideAnswer, PolicySet,
    RuleAction, RuleRef, EDE_BLOCKED, EDE_FILTERED,
};

/// A policy test and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct LoadedTest {
    pub file: PathBuf,
    pub path: String,
    pub test: TestJson,
}

/// How often a `url` list without `"refresh"` is downloaded again: public blocklists are
/// rebuilt from hourly (threat feeds) to daily (ad lists); hourly costs a 304 when nothing
/// changed.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// Default TTL of synthesized answers (block, override).
pub(crate) const DEFAULT_TTL: u32 = 60;
/// Lists per owner (global, or one organization): one bit each in a `u64`.
const MAX_LISTS: usize = 64;
/// The list, field and global rule of `--blocklist`.
const BLOCKLIST: &str = "blocklist";

/// What a rule's expression tells the evaluation.
struct Analysis {
    uses: Uses,
    /// The name test that is the whole expression, which the index answers alone.
    indexed: Option<NameTest>,
    /// A name test the expression starts with, checked before the filter runs.
    guard: Option<NameTest>,
    phase: Phase,
}

/// Where something being validated is written: its file, the file's text (to place problems
/// at a line and column) and its JSON path.
#[derive(Clone, Copy)]
struct At<'a> {
    file: &'a Path,
    text: &'a str,
    path: &'a str,
}

struct Builder {
    issues: Vec<Issue>,
    /// Every list's entries, by list id; read once the whole policy has validated.
    inputs: Vec<ListInput>,
    lists: Vec<ListMeta>,
    /// Where the last weak token or DoT name was found, per file and key, to place the next.
    locators: HashMap<(PathBuf, &'static str), Locator>,
    /// `url` lists and their refresh intervals.
    remote: Vec<(String, Duration)>,
}

impl Builder {
    fn issue(&mut self, kind: IssueKind, file: &Path, path: String, msg: impl Into<String>) {
        self.issues.push(Issue::new(kind, Some(file), path, msg));
    }

    /// An issue about `value`, a string in organization `org`'s array under `key` in `file`
    /// (whose text is `text`), placed at its line and column when it can be found.
    fn issue_at_value(
        &mut self,
        (file, text): (&Path, &str),
        (key, value, org): (&'static str, &str, u32),
        path: String,
        msg: impl Into<String>,
    ) {
        let locator = self.locators.entry((file.to_path_buf(), key)).or_default();
        let mut issue = Issue::new(IssueKind::Invalid, Some(file), path, msg);
        issue.position = locator.find(text, key, value, org);
        self.issues.push(issue);
    }

    /// Declare the lists of one owner and return their `list.<name>` fields by bit (the
    /// entries are read later, by [`sources::load`]).
    fn lists(
        &mut self,
        owner: Option<u32>,
        defs: &BTreeMap<String, ListJson>,
        file: &Path,
        prefix: &str,
        taken: &[Box<str>],
    ) -> Vec<Box<str>> {
        let mut fields = Vec::new();
        for (name, def) in defs {
            let path = format!("{prefix}.lists.{name}");
            let field: Box<str> = format!("list.{name}").into();
            if let Some((kind, msg)) = list_problem(name, &field, taken, fields.len()) {
                self.issue(kind, file, path, msg);
                continue;
            }
            let Some((source, input)) = self.list_input(def, file, &path) else {
                continue;
            };
            self.inputs.push(input);
            self.lists.push(ListMeta {
                name: name.clone(),
                owner,
                bit: fields.len() as u8,
                source,
            });
            fields.push(field);
        }
        fields
    }

    /// Where a list's entries come from (a file, a URL, or the policy itself) and how it is
    /// shown.
    fn list_input(
        &mut self,
        def: &ListJson,
        file: &Path,
        path: &str,
    ) -> Option<(String, ListInput)> {
        let declared = Declared {
            file: file.to_path_buf(),
            path: path.to_owned(),
        };
        let format = self.list_format(def, file, path)?;
        if def.refresh.is_some() && def.url.is_none() {
            self.issue(
                IssueKind::Invalid,
                file,
                format!("{path}.refresh"),
                "\"refresh\" applies to a \"url\" list: remove it, or give the list a url",
            );
            return None;
        }
        match (&def.file, &def.domains, &def.url) {
            (Some(f), None, None) => {
                let input = ListInput::File {
                    rel: f.clone(),
                    format,
                    declared,
                };
                Some((f.clone(), input))
            }
            (None, Some(domains), None) => {
                if format != lists::Format::Lines {
                    self.issue(
                        IssueKind::Invalid,
                        file,
                        format!("{path}.format"),
                        "inline \"domains\" are names, not an RPZ file: remove \"format\"",
                    );
                    return None;
                }
                let input = ListInput::Inline(self.inline_domains(domains, file, path));
                Some(("inline".to_owned(), input))
            }
            (None, None, Some(url)) => {
                let refresh = self.refresh(def.refresh.as_deref(), file, path)?;
                if !url.starts_with("https://") {
                    self.issue(
                        IssueKind::Invalid,
                        file,
                        format!("{path}.url"),
                        format!("{url:?}: only https:// list URLs are downloaded"),
                    );
                    return None;
                }
                self.remote.push((url.clone(), refresh));
                let input = ListInput::Url {
                    url: url.clone(),
                    format,
                    declared,
                };
                Some((url.clone(), input))
            }
            _ => {
                self.issue(
                    IssueKind::Invalid,
                    file,
                    path.to_owned(),
                    "a list needs exactly one of \"file\", \"url\" or \"domains\"",
                );
                None
            }
        }
    }

    /// A list's `"format"` (and `"rpz"` selection).
    fn list_format(&mut self, def: &ListJson, file: &Path, path: &str) -> Option<lists::Format> {
        let rpz = match def.rpz.as_deref() {
            None => lists::RpzPolicy::Block,
            Some(p) => match lists::RpzPolicy::parse(p) {
                Some(p) => p,
                None => {
                    self.issue(
                        IssueKind::Invalid,
                        file,
                        format!("{path}.rpz"),
                        format!("unknown RPZ selection {p:?} (expected block, nxdomain, nodata or passthru)"),
                    );
                    return None;
                }
            },
        };
        match def.format.as_deref() {
            None | Some("lines") if def.rpz.is_none() => Some(lists::Format::Lines),
            None | Some("lines") => {
                self.issue(
                    IssueKind::Invalid,
                    file,
                    format!("{path}.rpz"),
                    "\"rpz\" selects entries of an RPZ list: add \"format\": \"rpz\"",
                );
                None
            }
            Some("rpz") => Some(lists::Format::Rpz(rpz)),
            Some(other) => {
                self.issue(
                    IssueKind::Invalid,
                    file,
                    format!("{path}.format"),
                    format!("unknown list format {other:?} (expected \"lines\" or \"rpz\")"),
                );
                None
            }
        }
    }

    /// A `url` list's refresh interval: `DEFAULT_REFRESH` when absent, never under the floor.
    fn refresh(&mut self, text: Option<&str>, file: &Path, path: &str) -> Option<Duration> {
        let Some(text) = text else {
            return Some(DEFAULT_REFRESH);
        };
        let floor = crate::config::Limits::default().min_fetch_interval;
        let problem = match crate::config::parse_duration(text) {
            Ok(d) if d >= floor => return Some(d),
            Ok(_) => format!("{text:?} is under the {floor:?} floor (Limits::min_fetch_interval)"),
            Err(e) => e.to_string(),
        };
        self.issue(IssueKind::Invalid, file, format!("{path}.refresh"), problem);
        None
    }

    /// Validate and normalise the domains of an inline list.
    fn inline_domains(&mut self, domains: &[String], file: &Path, path: &str) -> Vec<Box<[u8]>> {
        let mut out = Vec::with_capacity(domains.len());
        let mut buf = Vec::new();
        for (i, d) in domains.iter().enumerate() {
            match lists::normalize_domain(d, &mut buf) {
                Ok(()) => out.push(buf.as_slice().into()),
                Err(e) => self.issue(
                    IssueKind::Invalid,
                    file,
                    format!("{path}.domains[{i}]"),
                    format!("{d:?}: {}", e.as_str()),
                ),
            }
        }
        out
    }

    /// The `--blocklist` list: one global list, `list.blocklist`, of all the files.
    fn blocklist(&mut self, files: &[PathBuf], global: &mut Vec<Box<str>>) -> Option<Rule> {
        if files.is_empty() {
            return None;
        }
        let field: Box<str> = format!("list.{BLOCKLIST}").into();
        let problem = if global.contains(&field) {
            Some(format!(
                "--blocklist needs the list name {BLOCKLIST:?}, which the global policy already uses"
            ))
        } else if global.len() >= MAX_LISTS {
            Some(format!(
                "--blocklist: the global policy already has {MAX_LISTS} lists"
            ))
        } else {
            None
        };
        if let Some(msg) = problem {
            self.issues
                .push(Issue::new(IssueKind::Duplicate, None, "", msg));
            return None;
        }
        let bit = global.len() as u8;
        self.inputs.push(ListInput::Blocklist(files.to_vec()));
        self.lists.push(ListMeta {
            name: BLOCKLIST.to_owned(),
            owner: None,
            bit,
            source: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
        global.push(field.clone());
        Some(blocklist_rule(field, bit))
    }

    /// Validate the rules of one ruleset (`appended`, the `--blocklist` rule, goes last).
    fn ruleset(
        &mut self,
        org: &Arc<str>,
        rules: &[RuleJson],
        lf: ListFields,
        at: At<'_>,
        upstreams: &BTreeMap<String, Vec<SocketAddr>>,
        appended: Option<Rule>,
    ) -> Ruleset {
        let scheme = Arc::new(build_scheme(&lf));
        let mut out = Vec::with_capacity(rules.len());
        let mut ids = HashSet::new();
        for (j, r) in rules.iter().enumerate() {
            let path = format!("{}.rules[{j}]", at.path);
            let at = At { path: &path, ..at };
            if !self.rule_id_fits(&r.id, &mut ids, at) {
                continue;
            }
            let Some((effect, action)) = self.action(r, upstreams, at) else {
                continue;
            };
            let Some(analysis) = self.expression(&r.expression, &scheme, &lf, at) else {
                continue;
            };
            if !self.action_fits_phase(action, analysis.phase, at) {
                continue;
            }
            let schedule = match Schedule::parse(r.schedule.as_ref(), r.expires_at.as_deref()) {
                Ok(s) => s.map(|s| Arc::new(RuleClock::new(s))),
                Err(e) => {
                    let path = format!("{}.{}", at.path, e.key);
                    let mut issue =
                        Issue::new(IssueKind::Invalid, Some(at.file), path.as_str(), e.message);
                    issue.position = position_of(at.text, &path);
                    self.issues.push(issue);
                    continue;
                }
            };
            out.push(Rule {
                r: RuleRef::new(org, &r.id, r.name.as_deref().unwrap_or(&r.id)),
                enabled: r.enabled,
                expression: r.expression.as_str().into(),
                effect,
                action,
                phase: analysis.phase,
                uses: analysis.uses,
                indexed: analysis.indexed,
                guard: analysis.guard,
                schedule,
            });
        }
        out.extend(appended);
        Ruleset::new(scheme, lf, out)
    }

    /// Whether a rule's id is usable: not empty, no `/`, not one of `ids` (the ruleset's so far,
    /// which it joins).
    fn rule_id_fits<'r>(&mut self, id: &'r str, ids: &mut HashSet<&'r str>, at: At<'_>) -> bool {
        let problem = if id.is_empty() {
            (IssueKind::Invalid, "empty rule id".to_owned())
        } else if id.contains('/') {
            // Rules are printed as `org/id`: a `/` in the id would make a global
            // rule `acme/x` read as organization acme's rule `x`.
            (
                IssueKind::Invalid,
                format!(
                    "rule id {id:?} contains '/', which Picket uses between an organization and its rule ids (acme/block-ads): rename the rule without '/'"
                ),
            )
        } else if !ids.insert(id) {
            (IssueKind::Duplicate, format!("duplicate rule id {id:?}"))
        } else {
            return true;
        };
        self.issue(problem.0, at.file, format!("{}.id", at.path), problem.1);
        false
    }

    /// Parse a rule's expression and read from it what the evaluation needs: the fields it
    /// uses, its phase and the name tests the index can check before it runs.
    fn expression(
        &mut self,
        expression: &str,
        scheme: &Scheme,
        lf: &ListFields,
        at: At<'_>,
    ) -> Option<Analysis> {
        let ast = match scheme.parse(expression) {
            Ok(ast) => ast,
            Err(e) => {
                let path = format!("{}.expression", at.path);
                self.issue(IssueKind::Expression, at.file, path, e.to_string());
                return None;
            }
        };
        let uses = uses_of(&ast, lf);
        // A rule that reads the response can only run once there is one.
        let phase = if uses.base & RESPONSE_MASK != 0 {
            Phase::Response
        } else {
            Phase::Request
        };
        let indexed = match phase {
            Phase::Request => name_test(&ast, lf),
            Phase::Response => None,
        };
        let guard = match (phase, &indexed) {
            (Phase::Request, None) => guard_test(&ast, lf),
            _ => None,
        };
        Some(Analysis {
            uses,
            indexed,
            guard,
            phase,
        })
    }

    /// Whether action `name` can run in `phase`.
    fn action_fits_phase(&mut self, name: RuleAction, phase: Phase, at: At<'_>) -> bool {
        if phase == Phase::Request || name.runs_on_answers() {
            return true;
        }
        self.issue(
            IssueKind::Invalid,
            at.file,
            format!("{}.action", at.path),
            format!(
                "action {:?} cannot be used in a response-phase rule (one that reads dns.response.*): use block, allow, audit, refuse or drop",
                name.as_str()
            ),
        );
        false
    }

    /// A rule's action and its settings, dispatched on the action's name: an unknown name is
    /// an error (never some default action).
    fn action(
        &mut self,
        r: &RuleJson,
        upstreams: &BTreeMap<String, Vec<SocketAddr>>,
        at: At<'_>,
    ) -> Option<(Effect, RuleAction)> {
        let Some(name) = RuleAction::from_name(&r.action) else {
            self.unknown_action(&r.action, at);
            return None;
        };
        let decide = Effect::Decide;
        let effect = match name {
            RuleAction::Block => self.block(r, at),
            RuleAction::Allow => self.bare(r, name, decide(Action::Resolve { group: None }), at),
            RuleAction::Override => self.override_answer(r, at),
            RuleAction::Resolve => self.resolve(r, upstreams, at),
            // An audit records the match and decides nothing.
            RuleAction::Audit => self.bare(r, name, Effect::Audit, at),
            RuleAction::Refuse => self.bare(r, name, decide(Action::Refuse), at),
            RuleAction::Drop => self.bare(r, name, decide(Action::Drop), at),
            RuleAction::Truncate => self.bare(r, name, decide(Action::Truncate), at),
        };
        Some((effect?, name))
    }

    /// An action name that is none of [`RuleAction::ALL`], placed at its line and column.
    fn unknown_action(&mut self, name: &str, at: At<'_>) {
        let path = format!("{}.action", at.path);
        let mut issue = Issue::new(
            IssueKind::Invalid,
            Some(at.file),
            path.as_str(),
            format!(
                "unknown action {name:?} (expected one of {})",
                RuleAction::ALL.map(RuleAction::as_str).join(", ")
            ),
        );
        issue.position = position_of(at.text, &path);
        self.issues.push(issue);
    }

    /// Whether rule `r` has only settings that action `name` takes (`allowed`); reports each
    /// one it does not take.
    fn settings_fit(
        &mut self,
        r: &RuleJson,
        name: RuleAction,
        allowed: &[&str],
        at: At<'_>,
    ) -> bool {
        let present = [
            ("mode", r.mode.is_some()),
            ("ttl", r.ttl.is_some()),
            ("ede", r.ede.is_some()),
            ("addresses", r.addresses.is_some()),
            ("cname", r.cname.is_some()),
            ("upstream", r.upstream.is_some()),
            ("block_page", r.block_page.is_some()),
            ("block_reason", r.block_reason.is_some()),
        ];
        let mut fit = true;
        for (key, _) in present
            .iter()
            .filter(|(key, is)| *is && !allowed.contains(key))
        {
            self.issue(
                IssueKind::Invalid,
                at.file,
                format!("{}.{key}", at.path),
                format!("{key:?} is not a setting of action {:?}", name.as_str()),
            );
            fit = false;
        }
        fit
    }

    /// An action without settings (allow, audit, refuse, drop, truncate): `effect`, if the
    /// rule has none.
    fn bare(
        &mut self,
        r: &RuleJson,
        name: RuleAction,
        effect: Effect,
        at: At<'_>,
    ) -> Option<Effect> {
        self.settings_fit(r, name, &[], at).then_some(effect)
    }

    /// `block`: how (mode and its addresses), for how long (ttl) and which EDE code.
    fn block(&mut self, r: &RuleJson, at: At<'_>) -> Option<Effect> {
        if !self.settings_fit(
            r,
            RuleAction::Block,
            &[
                "mode",
                "ttl",
                "ede",
                "addresses",
                "block_page",
                "block_reason",
            ],
            at,
        ) {
            return None;
        }
        let addresses = self.addresses(r, at)?;
        let mode = self.block_mode(r.mode.as_deref(), addresses, at)?;
        let ede = self.block_ede(r.ede.as_deref(), at)?;
        let ttl = r.ttl.unwrap_or(DEFAULT_TTL);
        Some(Effect::Decide(Action::Block(BlockAnswer {
            mode,
            ttl,
            ede,
            block_page: r.block_page.unwrap_or(false),
            reason: r.block_reason.as_deref().map(Box::from),
        })))
    }

    /// The answer of a block: `mode`, with `addresses` only for mode "addresses" (the mode
    /// when addresses are given, as NXDOMAIN is when they are not).
    fn block_mode(
        &mut self,
        mode: Option<&str>,
        addresses: Option<Vec<IpAddr>>,
        at: At<'_>,
    ) -> Option<BlockMode> {
        let (key, msg) = match (mode, addresses) {
            (None | Some("addresses"), Some(a)) => return Some(BlockMode::Addresses(a)),
            (None | Some("nxdomain"), None) => return Some(BlockMode::NxDomain),
            (Some("nodata"), None) => return Some(BlockMode::NoData),
            (Some("refused"), None) => return Some(BlockMode::Refused),
            (Some("null"), None) => return Some(BlockMode::Null),
            (Some("addresses"), None) => (
                "mode",
                "mode \"addresses\" needs \"addresses\": [...]".to_owned(),
            ),
            (Some(m @ ("nxdomain" | "nodata" | "refused" | "null")), Some(_)) => (
                "addresses",
                format!("\"addresses\" cannot be used with mode {m:?}"),
            ),
            (Some(m), _) => (
                "mode",
                format!(
                    "unknown block mode {m:?} (expected one of nxdomain, nodata, refused, null, addresses)"
                ),
            ),
        };
        let path = format!("{}.{key}", at.path);
        self.issue(IssueKind::Invalid, at.file, path, msg);
        None
    }

    /// The Extended DNS Error code of a block: Blocked (15) unless the policy says Filtered.
    fn block_ede(&mut self, ede: Option<&str>, at: At<'_>) -> Option<u16> {
        match ede {
            None | Some("blocked") => Some(EDE_BLOCKED),
            Some("filtered") => Some(EDE_FILTERED),
            Some(e) => {
                self.issue(
                    IssueKind::Invalid,
                    at.file,
                    format!("{}.ede", at.path),
                    format!("unknown ede {e:?} (expected \"blocked\" (15) or \"filtered\" (17))"),
                );
                None
            }
        }
    }

    /// `override`: answer with addresses or a CNAME (exactly one of them).
    fn override_answer(&mut self, r: &RuleJson, at: At<'_>) -> Option<Effect> {
        if !self.settings_fit(r, RuleAction::Override, &["ttl", "addresses", "cname"], at) {
            return None;
        }
        let addresses = self.addresses(r, at)?;
        let cname = match &r.cname {
            Some(c) => Some(self.cname(c, at)?),
            None => None,
        };
        if cname.is_some() == addresses.is_some() {
            self.issue(
                IssueKind::Invalid,
                at.file,
                at.path.to_owned(),
                "an override needs exactly one of \"addresses\" or \"cname\"",
            );
            return None;
        }
        Some(Effect::Decide(Action::Override(OverrideAnswer {
            addresses: addresses.unwrap_or_default(),
            cname,
            ttl: r.ttl.unwrap_or(DEFAULT_TTL),
        })))
    }

    /// The target of an override's CNAME, normalised like list domains.
    fn cname(&mut self, c: &str, at: At<'_>) -> Option<Arc<str>> {
        let mut buf = Vec::new();
        match lists::normalize_domain(c, &mut buf) {
            Ok(()) => Some(Arc::<str>::from(String::from_utf8_lossy(&buf).as_ref())),
            Err(e) => {
                self.issue(
                    IssueKind::Invalid,
                    at.file,
                    format!("{}.cname", at.path),
                    format!("{c:?}: {}", e.as_str()),
                );
                None
            }
        }
    }

    /// The `addresses` of a block or override: `Some(None)` when there are none, `None` when
    /// they are invalid (every bad one is reported).
    #[allow(clippy::option_option)]
    fn addresses(&mut self, r: &RuleJson, at: At<'_>) -> Option<Option<Vec<IpAddr>>> {
        let Some(list) = &r.addresses else {
            return Some(None);
        };
        let mut ok = true;
        let mut out = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Ok(ip) => out.push(ip),
                Err(_) => {
                    self.issue(
                        IssueKind::Invalid,
                        at.file,
                        format!("{}.addresses[{i}]", at.path),
                        format!("{a:?} is not an IP address"),
                    );
                    ok = false;
                }
            }
        }
        if list.is_empty() {
            let path = format!("{}.addresses", at.path);
            self.issue(IssueKind::Invalid, at.file, path, "empty address list");
            ok = false;
        }
        ok.then_some(Some(out))
    }

    /// `resolve`: send the query to the named upstream group, which must exist.
    fn resolve(
        &mut self,
        r: &RuleJson,
        upstreams: &BTreeMap<String, Vec<SocketAddr>>,
        at: At<'_>,
    ) -> Option<Effect> {
        if !self.settings_fit(r, RuleAction::Resolve, &["upstream"], at) {
            return None;
        }
        let path = format!("{}.upstream", at.path);
        match r.upstream.as_deref() {
            Some(g) if upstreams.contains_key(g) => Some(Effect::Decide(Action::Resolve {
                group: Some(g.into()),
            })),
            Some(g) => {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                let msg = format!(
                    "unknown upstream group {g:?} (defined: {})",
                    display_list(&known)
                );
                self.issue(IssueKind::Unresolved, at.file, path, msg);
                None
            }
            None => {
                self.issue(
                    IssueKind::Invalid,
                    at.file,
                    path,
                    "a resolve rule needs \"upstream\": the name of an upstream group",
                );
                None
            }
        }
    }
}

/// Why list `name` (field `field`) cannot be declared next to the `declared` lists of its
/// owner, `taken` being the global fields an organization's lists must not shadow.
fn list_problem(
    name: &str,
    field: &str,
    taken: &[Box<str>],
    declared: usize,
) -> Option<(IssueKind, String)> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some((
            IssueKind::Invalid,
            format!("list name {name:?} must be letters, digits and '_' (it becomes the field list.{name})"),
        ));
    }
    if taken.iter().any(|t| &**t == field) {
        return Some((
            IssueKind::Duplicate,
            format!("list {name:?} is already defined by the global policy"),
        ));
    }
    // One bit per list in a `u64`.
    (declared >= MAX_LISTS).then(|| {
        (
            IssueKind::Invalid,
            format!("at most {MAX_LISTS} lists per organization (and {MAX_LISTS} global)"),
        )
    })
}

fn display_list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Strip serde_json's " at line L column C" suffix (the position is reported separately).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix).unwrap_or(&s).to_owned()
}

/// Parse one policy file.
pub(crate) fn parse_file(file: &Path, text: &str) -> Result<FileJson, Issue> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<FileJson, _> = serde_path_to_error::deserialize(&mut de);
    let to_issue = |path: String, e: &serde_json::Error| {
        let mut issue = Issue::new(IssueKind::Json, Some(file), path, json_message(e));
        if e.line() > 0 {
            issue.position = Some((e.line(), e.column()));
        }
        issue
    };
    match parsed {
        Ok(mut f) => match de.end() {
            Ok(()) => {
                f.text = text.to_owned();
                Ok(f)
            }
            Err(e) => Err(to_issue(String::new(), &e)),
        },
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Err(to_issue(path, e.inner()))
        }
    }
}

pub(crate) fn build_empty() -> PolicySet {
    let lf = ListFields::default();
    PolicySet {
        version: next_version(),
        dir: None,
        global: Ruleset::new(Arc::new(build_scheme(&lf)), lf, Vec::new()),
        orgs: Vec::new(),
        loaded: LoadedLists::empty(),
        lists: Vec::new(),
        ident: IdentityIndex::default(),
        upstreams: BTreeMap::new(),
        tests: Vec::new(),
        remote: Vec::new(),
    }
}

fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

fn valid_org_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn load_dir(dir: &Path, opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
    let mut paths = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for entry in rd.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "json") && p.is_file() {
                    paths.push(p);
                }
            }
        }
        Err(e) => {
            return Err(Issue::new(
                IssueKind::Io,
                Some(dir),
                "",
                format!("cannot read policy directory: {e}"),
            )
            .into())
        }
    }
    paths.sort();
    let mut files = Vec::new();
    let mut issues = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => match parse_file(&p, &text) {
                Ok(f) => files.push((p, f)),
                Err(issue) => issues.push(issue),
            },
            Err(e) => issues.push(Issue::new(
                IssueKind::Io,
                Some(&p),
                "",
                format!("cannot read: {e}"),
            )),
        }
    }
    let built = build(Source::Dir(dir), &files, opts);
    finish(built, issues)
}

fn finish(
    built: Result<PolicySet, PolicyError>,
    mut issues: Vec<Issue>,
) -> Result<PolicySet, PolicyError> {
    match built {
        Ok(p) if issues.is_empty() => Ok(p),
        Ok(_) => Err(PolicyError { issues }),
        Err(mut e) => {
            issues.append(&mut e.issues);
            Err(PolicyError { issues })
        }
    }
}

/// Load from (relative path, content) pairs: top-level `*.json` files are policies, the
/// others are list files they may reference.
pub(crate) fn load_embedded(
    sources: &[(&str, &str)],
    opts: &LoadOptions<'_>,
) -> Result<PolicySet, PolicyError> {
    let mut names: Vec<&(&str, &str)> = sources
        .iter()
        .filter(|(n, _)| n.ends_with(".json") && !n.contains('/'))
        .collect();
    names.sort_by_key(|(n, _)| *n);
    let mut files = Vec::new();
    let mut issues = Vec::new();
    for (name, text) in names {
        let p = PathBuf::from(name);
        match parse_file(&p, text) {
            Ok(f) => files.push((p, f)),
            Err(issue) => issues.push(issue),
        }
    }
    let built = build(Source::Memory(sources), &files, opts).map(|mut p| {
        p.dir = None;
        p
    });
    finish(built, issues)
}

/// The list files a parsed policy file names (as written, relative to its directory): what a
/// bundle must carry besides the JSON files.
pub(crate) fn list_files(file: &FileJson) -> Vec<String> {
    let global = file.global.iter().flat_map(|g| g.lists.values());
    let orgs = file.organizations.iter().flat_map(|o| o.lists.values());
    global.chain(orgs).filter_map(|l| l.file.clone()).collect()
}

/// The source of a policy with no files (only `--blocklist` files, which name their own paths).
pub(crate) fn no_files() -> Source<'static> {
    Source::Memory(&[])
}

/// Build a policy from parsed files (in order).
pub(crate) fn build(
    source: Source<'_>,
    files: &[(PathBuf, FileJson)],
    opts: &LoadOptions<'_>,
) -> Result<PolicySet, PolicyError> {
    let mut b = Builder {
        issues: Vec::new(),
        inputs: Vec::new(),
        lists: Vec::new(),
        locators: HashMap::new(),
        remote: Vec::new(),
    };
    let upstreams = upstream_groups(&mut b, files);
    let (global, global_lf) = global_ruleset(&mut b, files, opts.blocklists, &upstreams);
    let (orgs, ident) = organizations(&mut b, files, &global_lf, &upstreams);
    let tests = loaded_tests(files);

    if !b.issues.is_empty() {
        let mut issues = b.issues;
        issues.extend(sources::unreadable(source, &b.inputs));
        return Err(PolicyError { issues });
    }
    // Only a policy that validated reads its lists (the expensive part), or shares them with
    // the policy in force when none changed.
    let previous = opts.previous.map(|p| &p.loaded);
    let loaded = sources::load(source, &b.inputs, previous, opts.remote)
        .map_err(|issues| PolicyError { issues })?;
    Ok(PolicySet {
        version: next_version(),
        dir: match source {
            Source::Dir(d) => Some(d.to_path_buf()),
            Source::Memory(_) => None,
        },
        global,
        orgs,
        loaded,
        lists: b.lists,
        ident,
        upstreams,
        tests,
        remote: b.remote,
    })
}

/// The upstream groups of every file, by name (a name defined twice keeps its first).
fn upstream_groups(
    b: &mut Builder,
    files: &[(PathBuf, FileJson)],
) -> BTreeMap<String, Vec<SocketAddr>> {
    let mut upstreams: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    for (file, f) in files {
        for (name, addrs) in &f.upstreams {
            let path = format!("upstreams.{name}");
            if upstreams.contains_key(name) {
                b.issue(
                    IssueKind::Duplicate,
                    file,
                    path,
                    format!("upstream group {name:?} is defined twice"),
                );
                continue;
            }
            if addrs.is_empty() {
                b.issue(
                    IssueKind::Invalid,
                    file,
                    path,
                    "an upstream group needs at least one address",
                );
                continue;
            }
            let group = upstream_group(b, addrs, file, &path);
            upstreams.insert(name.clone(), group);
        }
    }
    upstreams
}

/// The addresses of one upstream group (every bad one is reported).
fn upstream_group(b: &mut Builder, addrs: &[String], file: &Path, path: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        match parse_upstream(a) {
            Some(sa) => out.push(sa),
            None => b.issue(
                IssueKind::Invalid,
                file,
                format!("{path}[{i}]"),
                format!("{a:?} is not an address (\"IP\" or \"IP:port\", \"[IPv6]:port\")"),
            ),
        }
    }
    out
}

/// The global policy: its file, that file's text and the policy (only one file may have one).
fn global_source<'f>(
    b: &mut Builder,
    files: &'f [(PathBuf, FileJson)],
) -> Option<(&'f Path, &'f str, &'f GlobalJson)> {
    let mut found: Option<(&Path, &str, &GlobalJson)> = None;
    for (file, f) in files {
        let Some(g) = &f.global else {
            continue;
        };
        match found {
            None => found = Some((file.as_path(), f.text.as_str(), g)),
            Some((first, _, _)) => b.issue(
                IssueKind::Duplicate,
                file,
                "global".into(),
                format!("a global policy is already defined in {}", first.display()),
            ),
        }
    }
    found
}

/// The global ruleset, with the `--blocklist` rule, and the global list fields (which every
/// organization sees too).
fn global_ruleset(
    b: &mut Builder,
    files: &[(PathBuf, FileJson)],
    blocklists: &[PathBuf],
    upstreams: &BTreeMap<String, Vec<SocketAddr>>,
) -> (Ruleset, ListFields) {
    let global_src = global_source(b, files);
    let mut global_fields = match global_src {
        Some((file, _, g)) => b.lists(None, &g.lists, file, "global", &[]),
        None => Vec::new(),
    };
    // `--blocklist` is a global list after the global policy's own, and a rule after its rules
    // (so the global policy's allow rules make exceptions to it).
    let blocklist_rule = b.blocklist(blocklists, &mut global_fields);
    let global_lf = ListFields {
        global: global_fields,
        org: Vec::new(),
    };
    let Some((file, text, g)) = global_src else {
        let scheme = Arc::new(build_scheme(&global_lf));
        let rules = blocklist_rule.into_iter().collect();
        return (Ruleset::new(scheme, global_lf.clone(), rules), global_lf);
    };
    if blocklist_rule.is_some() && g.rules.iter().any(|r| r.id == BLOCKLIST) {
        b.issue(
            IssueKind::Duplicate,
            file,
            "global.rules".into(),
            format!("--blocklist needs the global rule id {BLOCKLIST:?}, which the global policy already uses"),
        );
    }
    let at = At {
        file,
        text,
        path: "global",
    };
    let no_org: Arc<str> = "".into();
    let lf = global_lf.clone();
    let global = b.ruleset(&no_org, &g.rules, lf, at, upstreams, blocklist_rule);
    (global, global_lf)
}

/// Every file's organizations, in order, and the index that identifies their clients.
fn organizations(
    b: &mut Builder,
    files: &[(PathBuf, FileJson)],
    global_lf: &ListFields,
    upstreams: &BTreeMap<String, Vec<SocketAddr>>,
) -> (Vec<Org>, IdentityIndex) {
    let mut orgs: Vec<Org> = Vec::new();
    let mut claims = Claims::default();
    for (file, f) in files {
        for (i, o) in f.organizations.iter().enumerate() {
            let prefix = format!("organizations[{i}]");
            let at = At {
                file,
                text: &f.text,
                path: &prefix,
            };
            orgs.extend(build_org(b, &mut claims, global_lf, upstreams, o, at));
        }
    }
    (orgs, claims.ident)
}

/// The tests of every file, each with where it was written.
fn loaded_tests(files: &[(PathBuf, FileJson)]) -> Vec<LoadedTest> {
    let mut tests = Vec::new();
    for (file, f) in files {
        let mut add = |prefix: String, list: &[TestJson]| {
            for (i, t) in list.iter().enumerate() {
                tests.push(LoadedTest {
                    file: file.clone(),
                    path: format!("{prefix}[{i}]"),
                    test: t.clone(),
                });
            }
        };
        if let Some(g) = &f.global {
            add("global.tests".into(), &g.tests);
        }
        for (i, o) in f.organizations.iter().enumerate() {
            add(format!("organizations[{i}].tests"), &o.tests);
        }
        add("tests".into(), &f.tests);
    }
    tests
}

/// What the organizations validated so far have claimed: ids, networks, DoH tokens and DoT
/// names, each of which identifies one organization only.
#[derive(Default)]
struct Claims {
    ident: IdentityIndex,
    /// Organization ids and the file of each.
    org_ids: BTreeMap<String, PathBuf>,
    /// Every organization's id by index, even one with problems (then the load fails, so
    /// indexes only have to be consistent when there are none), so messages can name the owner.
    seen: Vec<String>,
}

impl Claims {
    /// The id of the organization with index `index`, for messages.
    fn owner(&self, index: u32) -> &str {
        self.seen
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }
}

/// Validate one organization (at `at.path` in `at.file`); None if it has problems.
fn build_org(
    b: &mut Builder,
    claims: &mut Claims,
    global_lf: &ListFields,
    upstreams: &BTreeMap<String, Vec<SocketAddr>>,
    o: &OrgJson,
    at: At<'_>,
) -> Option<Org> {
    let index = claims.seen.len() as u32;
    claims.seen.push(o.id.clone());
    if !org_id_fits(b, claims, &o.id, at) {
        return None;
    }
    let id: Arc<str> = o.id.as_str().into();
    let networks_ok = org_networks(b, claims, &o.networks, index, at);
    let context = token::context_words(&o.id, o.name.as_deref());
    let tokens_ok = org_secrets(b, claims, &DOH_TOKEN, &o.doh_tokens, &context, index, at);
    let names_ok = org_secrets(b, claims, &DOT_NAME, &o.dot_names, &context, index, at);
    let lf = ListFields {
        global: global_lf.global.clone(),
        org: b.lists(Some(index), &o.lists, at.file, at.path, &global_lf.global),
    };
    let rules = b.ruleset(&id, &o.rules, lf, at, upstreams, None);
    if !(networks_ok && tokens_ok && names_ok) {
        return None;
    }
    Some(Org {
        id,
        name: o.name.clone(),
        rules,
    })
}

/// Whether an organization's id is valid and not taken (then it is claimed).
fn org_id_fits(b: &mut Builder, claims: &mut Claims, id: &str, at: At<'_>) -> bool {
    let path = format!("{}.id", at.path);
    if !valid_org_id(id) {
        b.issue(
            IssueKind::Invalid,
            at.file,
            path,
            format!("organization id {id:?} must be 1-64 letters, digits, '-', '_' or '.'"),
        );
        return false;
    }
    if let Some(prev) = claims.org_ids.get(id) {
        b.issue(
            IssueKind::Duplicate,
            at.file,
            path,
            format!(
                "duplicate organization id {id:?} (also in {})",
                prev.display()
            ),
        );
        return false;
    }
    claims.org_ids.insert(id.to_owned(), at.file.to_path_buf());
    true
}

/// Claim an organization's client networks; whether all were valid and free.
fn org_networks(
    b: &mut Builder,
    claims: &mut Claims,
    networks: &[String],
    index: u32,
    at: At<'_>,
) -> bool {
    each_entry(networks, "networks", at, |n, path| {
        let net = n
            .parse::<IpNet>()
            .ok()
            .or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from));
        let Some(net) = net else {
            let msg = format!("{n:?} is not a network (CIDR)");
            b.issue(IssueKind::Invalid, at.file, path, msg);
            return false;
        };
        let Some(prev) = claims.ident.add_network(net, index) else {
            return true;
        };
        let msg = format!(
            "network {} is already claimed by organization {:?}",
            net.trunc(),
            claims.owner(prev)
        );
        b.issue(IssueKind::Duplicate, at.file, path, msg);
        false
    })
}

/// Checks each entry of an organization's array `field` with `check` (given the entry's JSON
/// path); whether all passed. Every entry is checked, so that every problem is reported.
fn each_entry(
    values: &[String],
    field: &str,
    at: At<'_>,
    mut check: impl FnMut(&str, String) -> bool,
) -> bool {
    let mut ok = true;
    for (j, v) in values.iter().enumerate() {
        ok &= check(v, format!("{}.{field}[{j}]", at.path));
    }
    ok
}

/// A secret an organization's clients name it by: a DoH token or a DoT name.
struct SecretKind {
    /// The organization's JSON key holding them.
    field: &'static str,
    /// What one is called in messages.
    noun: &'static str,
    /// Why `value` is not well-formed, if it is not.
    malformed: fn(&str) -> Option<String>,
    /// Claims `value` for organization `index`; the previous owner if it was taken.
    claim: fn(&mut IdentityIndex, &str, u32) -> Option<u32>,
}

const DOH_TOKEN: SecretKind = SecretKind {
    field: "doh_tokens",
    noun: "DoH token",
    malformed: |t| {
        (!valid_token(t)).then(|| {
            "a DoH token must be 1-128 URL-safe characters (letters, digits, - _ . ~)".to_owned()
        })
    },
    claim: IdentityIndex::add_token,
};

const DOT_NAME: SecretKind = SecretKind {
    field: "dot_names",
    noun: "DoT name",
    malformed: |n| {
        (!valid_label(n)).then(|| {
            format!(
                "{n:?} must be one lower-case DNS label (the first label of the TLS server name)"
            )
        })
    },
    claim: IdentityIndex::add_dot_name,
};

/// Claim an organization's secrets of one kind; whether all were valid, hard to guess and free.
fn org_secrets(
    b: &mut Builder,
    claims: &mut Claims,
    kind: &SecretKind,
    values: &[String],
    context: &[String],
    index: u32,
    at: At<'_>,
) -> bool {
    each_entry(values, kind.field, at, |v, path| {
        if let Some(problem) = (kind.malformed)(v) {
            b.issue(IssueKind::Invalid, at.file, path, problem);
        } else if let Some(problem) = weak_token(v, context, kind.noun) {
            b.issue_at_value((at.file, at.text), (kind.field, v, index), path, problem);
        } else if let Some(prev) = (kind.claim)(&mut claims.ident, v, index) {
            let msg = format!(
                "{} {v:?} is already used by organization {:?}",
                kind.noun,
                claims.owner(prev)
            );
            b.issue(IssueKind::Duplicate, at.file, path, msg);
        } else {
            return true;
        }
        false
    })
}

/// Why `value` (a DoH token or DoT name of an organization whose words are `context`) is too
/// easy to guess, if it is. The message does not repeat the value: it is meant to be secret.
fn weak_token(value: &str, context: &[String], what: &str) -> Option<String> {
    let context: Vec<&str> = context.iter().map(String::as_str).collect();
    let bits = token::estimate_bits(value, &context);
    (bits < token::MIN_TOKEN_BITS).then(|| {
        format!(
            "this {what} has about {bits:.0} bits of randomness, at least {:.0} are needed: \
             anyone who guesses it gets this organization's policy; replace it with the \
             output of `picket token`",
            token::MIN_TOKEN_BITS
        )
    })
}

/// Places successive string values of one key's arrays in a policy file (organizations are
/// validated in file order), scanning forward only, so that placing every value of a large
/// file costs one pass over it.
#[derive(Debug, Default)]
struct Locator {
    /// The organization whose value was found last.
    org: Option<u32>,
    /// Where the array of the last value found starts (its key): the next search for the same
    /// organization starts here, for a later one just after it.
    array: usize,
    /// Byte offset up to which lines are counted.
    offset: usize,
    /// Lines before `offset`.
    line: usize,
    /// Byte offset where the line of `offset` starts.
    line_start: usize,
}

impl Locator {
    /// Line and column (1-based, columns in bytes like serde_json's) of the JSON string
    /// `value` of organization `org` in the next array under `"key"` that holds it; None if
    /// there is none.
    fn find(&mut self, text: &str, key: &str, value: &str, org: u32) -> Option<(usize, usize)> {
        let literal = serde_json::to_string(value).ok()?;
        let key = format!("\"{key}\"");
        let from = match self.org {
            Some(last) if last != org => self.array + 1,
            _ => self.array,
        };
        let rest = text.get(from..)?;
        let (array, found) = rest.match_indices(&key).find_map(|(start, _)| {
            let array = &rest[start..];
            let end = array.find(']').unwrap_or(array.len());
            let at = array[..end].find(&literal)?;
            Some((from + start, from + start + at))
        })?;
        (self.org, self.array) = (Some(org), array);
        Some(self.line_and_column(text, found))
    }

    fn line_and_column(&mut self, text: &str, at: usize) -> (usize, usize) {
        if at < self.offset {
            // The same value again, earlier in its array: count from the start.
            (self.offset, self.line, self.line_start) = (0, 0, 0);
        }
        let skipped = &text[self.offset..at];
        if let Some(newline) = skipped.rfind('\n') {
            self.line_start = self.offset + newline + 1;
            self.line += skipped.matches('\n').count();
        }
        self.offset = at;
        (self.line + 1, at - self.line_start + 1)
    }
}

/// The `--blocklist` rule: block every name on `field` (global list bit `bit`) with NXDOMAIN.
fn blocklist_rule(field: Box<str>, bit: u8) -> Rule {
    Rule {
        r: RuleRef::new("", BLOCKLIST, "--blocklist"),
        enabled: true,
        expression: field,
        effect: Effect::Decide(Action::Block(BlockAnswer::plain(
            BlockMode::NxDomain,
            DEFAULT_TTL,
            EDE_BLOCKED,
        ))),
        action: RuleAction::Block,
        phase: Phase::Request,
        uses: Uses {
            base: 0,
            global: 1 << bit,
            org: 0,
        },
        indexed: Some(NameTest {
            names: Vec::new(),
            global: 1 << bit,
            org: 0,
        }),
        guard: None,
        schedule: None,
    }
}
