//! The JSON shape of `policies/*.json` (documented in `policies/README.md`).
//!
//! Everything is `deny_unknown_fields`; a missing `Option` field is `None` (serde's rule),
//! other fields say when they have a default. Values that need more than a type check (actions,
//! addresses, networks, expressions) are validated in `load.rs` so that errors carry a JSON path.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileJson {
    /// Free text.
    #[allow(dead_code)]
    pub description: Option<String>,
    /// The global policy: evaluated before every organization's rules, and for clients with none.
    pub global: Option<GlobalJson>,
    /// Named upstream groups for `resolve` rules.
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// Organizations.
    pub organizations: Vec<OrgJson>,
    /// Policy tests that are not tied to a section.
    pub tests: Vec<TestJson>,
    /// The file's text, to place problems found after parsing (weak tokens) at a line and column.
    #[serde(skip)]
    pub text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GlobalJson {
    #[allow(dead_code)]
    pub description: Option<String>,
    pub lists: BTreeMap<String, ListJson>,
    pub rules: Vec<RuleJson>,
    pub tests: Vec<TestJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgJson {
    pub id: String,
    pub name: Option<String>,
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub doh_tokens: Vec<String>,
    #[serde(default)]
    pub dot_names: Vec<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, ListJson>,
    #[serde(default)]
    pub rules: Vec<RuleJson>,
    #[serde(default)]
    pub tests: Vec<TestJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ListJson {
    #[allow(dead_code)]
    pub description: Option<String>,
    /// A list file, relative to the policy directory.
    pub file: Option<String>,
    /// Inline domains.
    pub domains: Option<Vec<String>>,
    /// An `https://` URL the list is downloaded from, and refreshed.
    #[serde(default)]
    pub url: Option<String>,
    /// How often a `url` list is downloaded again (`"6h"`, `"30m"`).
    #[serde(default)]
    pub refresh: Option<String>,
    /// `"lines"` (plain, hosts or adblock; the default) or `"rpz"` (an RPZ zone file).
    #[serde(default)]
    pub format: Option<String>,
    /// For an RPZ list, which of its entries it takes: `"block"` (CNAME . and CNAME *.; the
    /// default), `"nxdomain"`, `"nodata"` or `"passthru"`.
    #[serde(default)]
    pub rpz: Option<String>,
}

/// A rule, as read from a policy file and as `picket import` writes one (absent settings are
/// left out, in this order).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleJson {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[allow(dead_code)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub expression: String,
    pub action: String,
    // Action settings (validated against the action in load.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ede: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_page: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
    /// When the rule takes part (Gateway-shaped weekly ranges in a time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<super::schedule::ScheduleJson>,
    /// RFC 3339 instant after which the rule is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestJson {
    /// The query name.
    pub name: String,
    /// Query type mnemonic or number (default `A`).
    #[serde(default, rename = "type")]
    pub qtype: Option<TypeJson>,
    /// Client address (default 127.0.0.1).
    pub client: Option<String>,
    /// `udp` (default), `tcp`, `doh`, `dot`.
    pub transport: Option<String>,
    pub doh_token: Option<String>,
    pub dot_name: Option<String>,
    /// Evaluate as this organization (`""` for none) instead of identifying the client.
    pub org: Option<String>,
    #[serde(default)]
    pub dnssec_ok: bool,
    /// A simulated upstream answer, to exercise response rules and CNAME cloaking.
    pub answer: Option<AnswerJson>,
    /// RFC 3339 instant at which the rules' schedules are judged (default: now).
    #[serde(default)]
    pub at: Option<String>,
    pub expect: ExpectJson,
    #[allow(dead_code)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum TypeJson {
    Name(String),
    Number(u16),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AnswerJson {
    pub addresses: Vec<String>,
    pub cnames: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectJson {
    /// `resolve`, `allow`, `block`, `override`, `refuse`, `drop`, `truncate`.
    pub action: String,
    /// The deciding rule id; `null` asserts that no rule decided; absent: not checked.
    #[serde(default, deserialize_with = "some")]
    pub rule: Option<Option<String>>,
    /// The organization the client is identified as (`""` for none).
    pub org: Option<String>,
    /// For `resolve` rules: the upstream group.
    pub upstream: Option<String>,
    /// The audit rules that matched, in order.
    pub audited: Option<Vec<String>>,
}

/// Distinguish an explicit `null` (Some(None)) from an absent field (None).
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}
