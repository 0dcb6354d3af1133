//! The policy engine: which organization a client belongs to, and what to do with its query.
//!
//! A [`PolicySet`] is loaded and validated once ([`PolicySet::load_dir`]) from `policies/*.json`
//! (the language is documented in `policies/README.md`) and then shared read-only (`Arc`,
//! `ArcSwap`). Evaluation is synchronous and allocation-light:
//!
//! * [`PolicySet::identify`] maps a client (DoH token, DoT SNI label, address) to an
//!   [`Identity`];
//! * [`evaluate`] runs the request phase: the global rules, then the organization's, first
//!   decisive match wins, `audit` matches are recorded and evaluation continues;
//! * [`evaluate_response`] runs the response phase on the upstream answer: rules reading
//!   `dns.response.*`, and CNAME cloaking (every CNAME target is checked as if asked directly).
//!
//! Rules that are only a test of names (`list.ads`, `dns.fqdn == "x.example"`,
//! `dns.fqdn in {...}` or an `or` of those) are answered from hash indexes; every other rule is
//! a Wirefilter filter, compiled once while loading and shared with the rest of the `PolicySet`
//! (no query compiles anything; see `exec.rs` for why this needs the patched Wirefilter in
//! `vendor/wirefilter-engine`).

mod config;
mod error;
mod eval;
mod exec;
mod fingerprint;
mod identity;
mod lists;
mod load;
mod remote;
mod rules;
mod schedule;
mod sources;

pub mod bundle;
pub mod check;
pub mod explain;
pub mod token;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The rule shape `picket import` writes, the one policy files are read with.
pub(crate) use config::RuleJson;
pub use error::{Issue, IssueKind, PolicyError};
pub use eval::{
    evaluate, evaluate_at, evaluate_response, evaluate_response_after, evaluate_response_at,
    evaluate_with_phase, hit_reuse_key, response_reuse_key, RequestPhase,
};
pub use lists::InvalidLine;
pub use remote::{Downloaded, RemoteLists, FETCH_RESULTS as LIST_FETCH_RESULTS};
pub(crate) use schedule::ScheduleJson;
pub use schedule::When;
pub use sources::FileStamp;

use crate::query::{ActionLabel, ClientHints};

/// The rule that decided, or an audit rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// `org/id`, or just `id` for a global rule: unique across the policy, and the one
    /// spelling every output uses (EDE EXTRA-TEXT, `explain`, query log, metrics), so a
    /// global rule and an organization's rule with the same id are never confused.
    /// Built once at load so the hot path never formats it; `org()` and `id()` are
    /// slices of it.
    pub key: Arc<str>,
    /// Where the id starts in `key` (0 for a global rule).
    id_at: usize,
    /// Rule name (for people).
    pub name: Arc<str>,
}

impl RuleRef {
    /// A rule `id` of organization `org` (`""`: the global policy).
    pub fn new(org: &str, id: &str, name: &str) -> Self {
        let (key, id_at) = if org.is_empty() {
            (id.into(), 0)
        } else {
            (format!("{org}/{id}").into(), org.len() + 1)
        };
        RuleRef {
            key,
            id_at,
            name: name.into(),
        }
    }

    /// Organization id, `""` for the global policy.
    pub fn org(&self) -> &str {
        &self.key[..self.id_at.saturating_sub(1)]
    }

    /// Rule id (unique within its organization).
    pub fn id(&self) -> &str {
        &self.key[self.id_at..]
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// How a blocked query is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockMode {
    /// NXDOMAIN with an SOA in the authority section (negative caching, RFC 2308).
    NxDomain,
    /// NOERROR with no answer (and an SOA).
    NoData,
    /// REFUSED.
    Refused,
    /// `0.0.0.0` for A, `::` for AAAA, NODATA for other types.
    Null,
    /// These addresses (a block page): A records from the IPv4 ones, AAAA from the IPv6 ones,
    /// NODATA when there is none of the query's family or for other types.
    Addresses(Vec<IpAddr>),
}

impl BlockMode {
    /// Lower-case name as written in policies.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NxDomain => "nxdomain",
            Self::NoData => "nodata",
            Self::Refused => "refused",
            Self::Null => "null",
            Self::Addresses(_) => "addresses",
        }
    }
}

/// The synthesized answer of a `block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAnswer {
    /// What to answer.
    pub mode: BlockMode,
    /// TTL of synthesized records (and of the SOA's negative TTL).
    pub ttl: u32,
    /// Extended DNS Error code: 15 (Blocked) or 17 (Filtered). EXTRA-TEXT carries the rule id.
    pub ede: u16,
    /// `"block_page": true`: A/AAAA queries are answered with the block page's address when
    /// Picket serves one (`--block-page`), so a browser shows why; otherwise `mode` applies.
    pub block_page: bool,
    /// `"block_reason"`: the text the block page shows the person who was blocked.
    pub reason: Option<Box<str>>,
}

impl BlockAnswer {
    /// A block answered by `mode` alone: no block page, no reason.
    pub fn plain(mode: BlockMode, ttl: u32, ede: u16) -> Self {
        Self {
            mode,
            ttl,
            ede,
            block_page: false,
            reason: None,
        }
    }
}

/// EDE 15, "Blocked" (RFC 8914).
pub const EDE_BLOCKED: u16 = 15;
/// EDE 17, "Filtered" (RFC 8914).
pub const EDE_FILTERED: u16 = 17;

/// The synthesized answer of an `override`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideAnswer {
    /// A/AAAA records to answer with (by the query's family; NODATA for other families).
    pub addresses: Vec<IpAddr>,
    /// A CNAME to answer with; the pipeline then resolves the target and appends it.
    pub cname: Option<Arc<str>>,
    /// TTL of the synthesized records.
    pub ttl: u32,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Resolve normally: no rule decided (`group` None, `Verdict::rule` None), an `allow` rule
    /// (`group` None, rule Some) or a `resolve` rule (`group` Some: the named upstream group).
    Resolve {
        /// Upstream group for split DNS.
        group: Option<Arc<str>>,
    },
    /// Answer with a synthesized block.
    Block(BlockAnswer),
    /// Answer with configured records or a CNAME.
    Override(OverrideAnswer),
    /// Answer REFUSED (no EDE beyond the rule id).
    Refuse,
    /// Send nothing.
    Drop,
    /// Answer with TC=1 and no records over UDP (forces the client to TCP); resolve normally over
    /// streams.
    Truncate,
}

impl Action {
    /// Bounded label for metrics and logs. `Resolve` is `resolve`; see [`Verdict::label`],
    /// which also tells `allow` apart.
    pub fn label(&self) -> ActionLabel {
        match self {
            Self::Resolve { .. } => ActionLabel::Resolve,
            Self::Block(_) => ActionLabel::Block,
            Self::Override(_) => ActionLabel::Override,
            Self::Refuse => ActionLabel::Refuse,
            Self::Drop => ActionLabel::Drop,
            Self::Truncate => ActionLabel::Truncate,
        }
    }
}

/// A rule's `action`, as policies spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Block,
    Allow,
    Override,
    Resolve,
    Audit,
    Refuse,
    Drop,
    Truncate,
}

impl RuleAction {
    /// Every action, in the order messages list them.
    pub const ALL: [RuleAction; 8] = [
        Self::Block,
        Self::Allow,
        Self::Override,
        Self::Resolve,
        Self::Audit,
        Self::Refuse,
        Self::Drop,
        Self::Truncate,
    ];

    /// The name a policy writes, which is also its [`ActionLabel`]'s.
    pub fn as_str(self) -> &'static str {
        self.label().as_str()
    }

    /// The action a policy names `name`; None for a name that is no action.
    pub fn from_name(name: &str) -> Option<RuleAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The label of what the action does.
    pub fn label(self) -> ActionLabel {
        match self {
            Self::Block => ActionLabel::Block,
            Self::Allow => ActionLabel::Allow,
            Self::Override => ActionLabel::Override,
            Self::Resolve => ActionLabel::Resolve,
            Self::Audit => ActionLabel::Audit,
            Self::Refuse => ActionLabel::Refuse,
            Self::Drop => ActionLabel::Drop,
            Self::Truncate => ActionLabel::Truncate,
        }
    }

    /// Whether a response-phase rule can take this action: such a rule runs after the
    /// upstream answered, when only keeping, blocking or dropping that answer is left.
    pub fn runs_on_answers(self) -> bool {
        matches!(
            self,
            Self::Block | Self::Allow | Self::Audit | Self::Refuse | Self::Drop
        )
    }
}

impl std::fmt::Display for RuleAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of evaluating a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// The deciding rule (None: no rule matched, resolve normally).
    pub rule: Option<RuleRef>,
    /// `audit` rules that matched before the decision, in evaluation order.
    pub audited: Vec<RuleRef>,
}

impl Verdict {
    /// No rule matched: resolve normally.
    pub fn resolve() -> Self {
        Self {
            action: Action::Resolve { group: None },
            rule: None,
            audited: Vec::new(),
        }
    }

    /// Bounded label for metrics and logs: `resolve` (no rule, or a `resolve` rule), `allow`,
    /// `block`, `override`, `refuse`, `drop`, `truncate`.
    pub fn label(&self) -> ActionLabel {
        match (&self.action, &self.rule) {
            (Action::Resolve { group: None }, Some(_)) => ActionLabel::Allow,
            (action, _) => action.label(),
        }
    }

    /// The EXTRA-TEXT of the Extended DNS Error for a block: `blocked by rule acme/malware`
    /// (or `filtered by rule ...` for EDE 17). None when the action is not a block.
    pub fn ede_text(&self) -> Option<String> {
        match (&self.action, &self.rule) {
            (Action::Block(b), Some(r)) => Some(format!(
                "{} by rule {r}",
                if b.ede == EDE_FILTERED {
                    "filtered"
                } else {
                    "blocked"
                }
            )),
            (Action::Block(_), None) => Some("blocked".to_owned()),
            _ => None,
        }
    }

    /// Whether the query goes on to be resolved (no rule, `allow` or `resolve`).
    pub fn resolves(&self) -> bool {
        matches!(self.action, Action::Resolve { .. })
    }
}

/// What the response phase may look at in an upstream answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerFacts<'a> {
    /// Every A/AAAA address in the answer section.
    pub addresses: &'a [IpAddr],
    /// Every CNAME target in the chain, lower case, no trailing dot.
    pub cnames: &'a [&'a str],
}

/// Who a client is, for one query. Only meaningful with the [`PolicySet`] that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An organization (index into the policy's organizations).
    Org(u32),
    /// No organization: only the global policy applies.
    NoOrg,
    /// A DoH token that matches no organization (the DoH listener answers 404).
    UnknownToken,
}

impl Identity {
    /// The organization id, `""` for none.
    pub fn org_id<'p>(&self, policy: &'p PolicySet) -> &'p str {
        match self {
            Self::Org(i) => policy.orgs.get(*i as usize).map(|o| &*o.id).unwrap_or(""),
            _ => "",
        }
    }

    /// The organization's `name`, if it has one.
    pub fn org_name<'p>(&self, policy: &'p PolicySet) -> Option<&'p str> {
        match self {
            Self::Org(i) => policy.orgs.get(*i as usize)?.name.as_deref(),
            _ => None,
        }
    }
}

/// Counts for logs, metrics and `picket check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Organizations.
    pub organizations: usize,
    /// Rules (global and all organizations), enabled or not.
    pub rules: usize,
    /// Enabled rules.
    pub rules_enabled: usize,
    /// Enabled rules answered from the name index (no Wirefilter evaluation).
    pub rules_indexed: usize,
    /// Enabled Wirefilter rules of the form `NAME-TEST and ...`, run only when the name test
    /// (checked from the index) matches.
    pub rules_guarded: usize,
    /// Enabled response-phase rules.
    pub rules_response: usize,
    /// Lists.
    pub lists: usize,
    /// List entries, summed over lists.
    pub list_entries: u64,
    /// Distinct domains in the shared suffix structure.
    pub distinct_domains: usize,
    /// Approximate memory of the list structure, in bytes.
    pub list_bytes: usize,
    /// Invalid list lines (skipped).
    pub invalid_lines: u64,
    /// Some of them, with file and line.
    pub invalid_samples: Vec<InvalidLine>,
    /// Named upstream groups.
    pub upstream_groups: usize,
    /// Policy tests defined.
    pub tests: usize,
}

/// A parsed and validated policy. `Send + Sync`; share it in an `Arc`/`ArcSwap`.
pub struct PolicySet {
    version: u64,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) global: rules::Ruleset,
    pub(crate) orgs: Vec<rules::Org>,
    /// The entries of every list, shared with the previous policy when no list changed.
    pub(crate) loaded: Arc<sources::LoadedLists>,
    /// The lists, by list id.
    pub(crate) lists: Vec<rules::ListMeta>,
    pub(crate) ident: identity::IdentityIndex,
    pub(crate) upstreams: BTreeMap<String, Vec<SocketAddr>>,
    pub(crate) tests: Vec<load::LoadedTest>,
    /// `url` lists and how often each is downloaded again.
    pub(crate) remote: Vec<(String, std::time::Duration)>,
}

/// What a load adds to the policy files, and what it may reuse.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// `--blocklist` files: one global list, `list.blocklist`, and a global rule (id
    /// `blocklist`) after the global policy's own rules that blocks every name on it with
    /// NXDOMAIN for every client (so global `allow` rules still make exceptions).
    pub blocklists: &'a [PathBuf],
    /// The policy in force. When none of the list sources changed since it was loaded (same
    /// files by identity, size and change times; same inline domains), the new policy shares
    /// its lists instead of reading them again: a reload then needs no second table.
    pub previous: Option<&'a PolicySet>,
    /// The downloads of `url` lists (a list not downloaded yet loads empty). None: every `url`
    /// list loads empty (`picket check` validates their declarations, downloads nothing).
    pub remote: Option<&'a RemoteLists>,
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("version", &self.version)
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PolicySet {
    /// Load and validate `dir/*.json` and the list files they reference (relative to `dir`).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        load::load_dir(dir, &LoadOptions::default())
    }

    /// [`load_dir`](Self::load_dir) with `--blocklist` files and the policy it replaces.
    pub fn load_dir_with(dir: &Path, opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
        load::load_dir(dir, opts)
    }

    /// Load from memory: `(relative path, content)` pairs, e.g. `include_str!`ed files.
    /// Top-level `*.json` entries are policy files; the others are list files they reference
    /// by the same relative path.
    pub fn load_embedded(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
        load::load_embedded(files, &LoadOptions::default())
    }

    /// [`load_embedded`](Self::load_embedded) with `--blocklist` files and the policy it
    /// replaces.
    pub fn load_embedded_with(
        files: &[(&str, &str)],
        opts: &LoadOptions<'_>,
    ) -> Result<PolicySet, PolicyError> {
        load::load_embedded(files, opts)
    }

    /// No policy files, only the `--blocklist` files of `opts` (an empty policy without them).
    pub fn blocklists_only(opts: &LoadOptions<'_>) -> Result<PolicySet, PolicyError> {
        if opts.blocklists.is_empty() {
            return Ok(Self::empty());
        }
        load::build(load::no_files(), &[], opts)
    }

    /// A policy that allows everything.
    pub fn empty() -> PolicySet {
        load::build_empty()
    }

    /// Changes on every load (a process-wide counter).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The directory the policy was loaded from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Which organization a client belongs to: by DoH token (an unknown token gives
    /// [`Identity::UnknownToken`]), else by DoT SNI label, else by the longest client network
    /// that contains the address, else [`Identity::NoOrg`].
    pub fn identify(&self, hints: &ClientHints) -> Identity {
        self.ident.identify(hints).0
    }

    /// The organization with this id.
    pub fn org_by_id(&self, id: &str) -> Option<Identity> {
        if id.is_empty() {
            return Some(Identity::NoOrg);
        }
        self.orgs
            .iter()
            .position(|o| &*o.id == id)
            .map(|i| Identity::Org(i as u32))
    }

    /// Organization ids, in load order.
    pub fn org_ids(&self) -> impl Iterator<Item = &str> {
        self.orgs.iter().map(|o| &*o.id)
    }

    /// The addresses of a named upstream group.
    pub fn upstream_group(&self, name: &str) -> Option<&[SocketAddr]> {
        self.upstreams.get(name).map(Vec::as_slice)
    }

    /// All upstream groups.
    pub fn upstream_groups(&self) -> impl Iterator<Item = (&str, &[SocketAddr])> {
        self.upstreams
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Whether answers for this client need [`evaluate_response`]: there is an enabled
    /// response-phase rule, or a blocking request rule (CNAME targets are checked against it).
    pub fn has_response_rules(&self, id: &Identity) -> bool {
        if self.global.needs_response_phase() {
            return true;
        }
        match self.org(id) {
            Some(org) => org.rules.needs_response_phase(),
            None => false,
        }
    }

    /// The `(organization, rule key)` pairs a rule hit can be counted under (`""`: clients of
    /// no organization), for registering metric series at load: each enabled global rule under
    /// `""`, then per organization its own enabled rules and the global ones again (a global
    /// rule decides for every client).
    pub fn rule_series(&self) -> Vec<(&str, &str)> {
        fn keys(rs: &rules::Ruleset) -> Vec<&str> {
            rs.rules
                .iter()
                .filter(|r| r.enabled)
                .map(|r| &*r.r.key)
                .collect()
        }
        let global = keys(&self.global);
        let mut out: Vec<(&str, &str)> = global.iter().map(|&k| ("", k)).collect();
        for org in &self.orgs {
            let own = keys(&org.rules);
            out.extend(
                own.into_iter()
                    .chain(global.iter().copied())
                    .map(|k| (&*org.id, k)),
            );
        }
        out
    }

    /// Counts for logs and `picket check`.
    pub fn stats(&self) -> PolicyStats {
        let all = std::iter::once(&self.global).chain(self.orgs.iter().map(|o| &o.rules));
        let mut s = PolicyStats {
            organizations: self.orgs.len(),
            lists: self.lists.len(),
            list_entries: (0..self.lists.len())
                .map(|i| self.domains().list_len(i as u32))
                .sum(),
            distinct_domains: self.domains().len(),
            list_bytes: self.domains().heap_bytes(),
            invalid_lines: self.loaded.invalid_lines,
            invalid_samples: self.loaded.invalid_samples.clone(),
            upstream_groups: self.upstreams.len(),
            tests: self.tests.len(),
            ..PolicyStats::default()
        };
        for rs in all {
            s.rules += rs.rules.len();
            for r in &rs.rules {
                if r.enabled {
                    s.rules_enabled += 1;
                    if r.indexed.is_some() {
                        s.rules_indexed += 1;
                    }
                    if r.guard.is_some() {
                        s.rules_guarded += 1;
                    }
                    if r.phase == rules::Phase::Response {
                        s.rules_response += 1;
                    }
                }
            }
        }
        s
    }

    /// The `url` lists, with their refresh intervals.
    pub fn url_lists(&self) -> &[(String, std::time::Duration)] {
        &self.remote
    }

    /// The one suffix table of every list.
    pub(crate) fn domains(&self) -> &lists::DomainSet {
        &self.loaded.set
    }

    /// Whether this policy reads its lists from the same load as `other` (a reload that found
    /// no list changed).
    pub fn shares_lists_with(&self, other: &PolicySet) -> bool {
        Arc::ptr_eq(&self.loaded, &other.loaded)
    }

    pub(crate) fn org(&self, id: &Identity) -> Option<&rules::Org> {
        match id {
            Identity::Org(i) => self.orgs.get(*i as usize),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_set_is_send_sync() {
        crate::testing::assert_send_sync::<(PolicySet, Verdict)>();
    }

    #[test]
    fn labels() {
        let mut v = Verdict::resolve();
        assert_eq!(v.label().as_str(), "resolve");
        v.rule = Some(RuleRef::new("", "a", "a"));
        assert_eq!(v.label().as_str(), "allow");
        v.action = Action::Resolve {
            group: Some("corp".into()),
        };
        assert_eq!(v.label().as_str(), "resolve");
        v.action = Action::Drop;
        assert_eq!(v.label().as_str(), "drop");
    }
}
