//! The Picket policy an import writes: the shape of `policies/*.json` (`policies/README.md`),
//! with its keys in the order people read them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::RuleJson;

/// One policy file.
#[derive(Debug, Default, Serialize)]
pub struct PolicyOut {
    pub description: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, Vec<String>>,
    pub global: GlobalOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<OrgOut>,
}

/// The global policy: every imported rule lives here, in Gateway's order, as Gateway's
/// rules apply to the whole account (locations are tested with `org.id`).
#[derive(Debug, Default, Serialize)]
pub struct GlobalOut {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lists: BTreeMap<String, ListOut>,
    pub rules: Vec<RuleJson>,
}

/// An inline list.
#[derive(Debug, Clone, Serialize)]
pub struct ListOut {
    pub description: String,
    pub domains: Vec<String>,
}

/// An organization made for a Gateway location or DoH subdomain.
#[derive(Debug, Clone, Serialize)]
pub struct OrgOut {
    pub id: String,
    pub name: String,
    pub description: String,
    pub networks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub doh_tokens: Vec<String>,
}
