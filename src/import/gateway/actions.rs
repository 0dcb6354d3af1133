//! Gateway rule actions and their settings, as Picket actions.

use serde::Deserialize;

use super::translate::{quote, slug, MATCH_ALL};
use crate::policy::RuleJson;

/// The `rule_settings` of a Gateway rule that a DNS import reads (Gateway sends many more,
/// often as `null`; they are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RuleSettings {
    pub block_page_enabled: Option<bool>,
    pub block_reason: Option<String>,
    pub override_ips: Option<Vec<String>>,
    pub override_host: Option<String>,
    pub resolve_dns_through_cloudflare: Option<bool>,
    pub dns_resolvers: Option<DnsResolvers>,
    pub resolve_dns_internally: Option<serde_json::Value>,
}

/// `rule_settings.dns_resolvers`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DnsResolvers {
    pub ipv4: Option<Vec<Resolver>>,
    pub ipv6: Option<Vec<Resolver>>,
}

/// One custom resolver.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Resolver {
    pub ip: String,
    pub port: Option<u16>,
    pub route_through_private_network: Option<bool>,
    pub vnet_id: Option<String>,
}

/// What one Gateway rule became.
#[derive(Debug, Default)]
pub struct Carried {
    pub rules: Vec<RuleJson>,
    /// An upstream group the rules resolve through: (name, addresses).
    pub upstream: Option<(String, Vec<String>)>,
    /// Differences worth a warning that do not stop the rule from being imported.
    pub notes: Vec<String>,
}

/// The search engines' "safe" names (what each one documents for network-level enforcement)
/// and the names that are sent there.
struct SafeTarget {
    suffix: &'static str,
    engine: &'static str,
    cname: &'static str,
    names: &'static [&'static str],
}

const GOOGLE_NAMES: &[&str] = &[
    "google.com",
    "www.google.com",
    "google.co.uk",
    "www.google.co.uk",
    "google.de",
    "www.google.de",
    "google.fr",
    "www.google.fr",
    "google.es",
    "www.google.es",
    "google.it",
    "www.google.it",
    "google.nl",
    "www.google.nl",
    "google.pt",
    "www.google.pt",
    "google.pl",
    "www.google.pl",
    "google.ca",
    "www.google.ca",
    "google.com.au",
    "www.google.com.au",
    "google.com.br",
    "www.google.com.br",
    "google.com.mx",
    "www.google.com.mx",
    "google.co.in",
    "www.google.co.in",
    "google.co.jp",
    "www.google.co.jp",
    "google.ch",
    "www.google.ch",
    "google.be",
    "www.google.be",
    "google.at",
    "www.google.at",
    "google.ie",
    "www.google.ie",
    "google.se",
    "www.google.se",
];

const YOUTUBE_NAMES: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// Gateway's SafeSearch covers Google, Bing, DuckDuckGo, Yandex and YouTube.
const SAFESEARCH: &[SafeTarget] = &[
    SafeTarget {
        suffix: "google",
        engine: "Google",
        cname: "forcesafesearch.google.com",
        names: GOOGLE_NAMES,
    },
    SafeTarget {
        suffix: "bing",
        engine: "Bing",
        cname: "strict.bing.com",
        names: &["bing.com", "www.bing.com"],
    },
    SafeTarget {
        suffix: "duckduckgo",
        engine: "DuckDuckGo",
        cname: "safe.duckduckgo.com",
        names: &[
            "duckduckgo.com",
            "www.duckduckgo.com",
            "start.duckduckgo.com",
        ],
    },
    SafeTarget {
        suffix: "yandex",
        engine: "Yandex",
        cname: "familysearch.yandex.ru",
        names: &["yandex.ru", "www.yandex.ru", "yandex.com", "www.yandex.com"],
    },
    SafeTarget {
        suffix: "youtube",
        engine: "YouTube",
        cname: "restrictmoderate.youtube.com",
        names: YOUTUBE_NAMES,
    },
];

/// YouTube Restricted Mode is YouTube's strict setting.
const YTRESTRICTED: &[SafeTarget] = &[SafeTarget {
    suffix: "youtube",
    engine: "YouTube",
    cname: "restrict.youtube.com",
    names: YOUTUBE_NAMES,
}];

/// Why a Gateway rule is not imported at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotImported {
    #[error(
        "a {0} rule cannot test the answer (dns.resolved_ips, dns.response.*): Gateway does not \
         allow it either"
    )]
    AnswerTest(String),
    #[error(
        "the action {0:?} has no Picket equivalent for DNS (block, allow, override, safesearch, \
         ytrestricted and resolve are imported)"
    )]
    UnknownAction(String),
    #[error("override_ips holds values that are not IP addresses: {0:?}")]
    OverrideNotIps(Vec<String>),
    #[error("an override rule with neither override_ips nor override_host")]
    NoOverrideTarget,
    #[error(
        "resolve_dns_internally (a Cloudflare internal DNS view) has no Picket equivalent: write \
         an upstream group for the view's nameservers"
    )]
    InternalView,
    #[error("a resolve rule with no dns_resolvers")]
    NoResolvers,
}

/// Carries over the action of a rule whose expression became `base.expression`; Err says
/// why the rule cannot be imported at all.
pub fn carry(
    action: &str,
    settings: &RuleSettings,
    base: RuleJson,
    response: bool,
) -> Result<Carried, NotImported> {
    if response && !matches!(action, "block" | "allow") {
        return Err(NotImported::AnswerTest(action.to_owned()));
    }
    match action {
        "allow" => Ok(one(RuleJson {
            action: "allow".into(),
            ..base
        })),
        "block" => Ok(block(settings, base)),
        "override" => over(settings, base),
        "safesearch" => Ok(safe(SAFESEARCH, base)),
        "ytrestricted" => Ok(safe(YTRESTRICTED, base)),
        "resolve" => resolve(settings, base),
        other => Err(NotImported::UnknownAction(other.to_owned())),
    }
}

fn one(rule: RuleJson) -> Carried {
    Carried {
        rules: vec![rule],
        ..Carried::default()
    }
}

/// Gateway answers a blocked A/AAAA query with 0.0.0.0/:: (Picket's `null` mode), or the
/// block page's address when the rule enables it.
fn block(settings: &RuleSettings, base: RuleJson) -> Carried {
    let reason = settings.block_reason.clone().filter(|r| !r.is_empty());
    one(RuleJson {
        action: "block".into(),
        mode: Some("null".into()),
        block_page: settings.block_page_enabled.filter(|on| *on),
        block_reason: reason,
        ..base
    })
}

fn over(settings: &RuleSettings, base: RuleJson) -> Result<Carried, NotImported> {
    let ips = settings.override_ips.clone().unwrap_or_default();
    let host = settings.override_host.clone().filter(|h| !h.is_empty());
    let bad: Vec<String> = ips
        .iter()
        .filter(|i| i.parse::<std::net::IpAddr>().is_err())
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(NotImported::OverrideNotIps(bad));
    }
    let mut carried = match (ips.is_empty(), host) {
        (false, host) => {
            let mut c = one(RuleJson {
                action: "override".into(),
                addresses: Some(ips),
                ..base
            });
            if let Some(h) = host {
                c.notes.push(format!(
                    "override_host {h:?} is ignored: the rule has override_ips"
                ));
            }
            c
        }
        (true, Some(h)) => one(RuleJson {
            action: "override".into(),
            cname: Some(h.trim_end_matches('.').to_ascii_lowercase()),
            ..base
        }),
        (true, None) => return Err(NotImported::NoOverrideTarget),
    };
    carried.rules[0].mode = None;
    Ok(carried)
}

/// One `override` (CNAME) rule per engine, limited to that engine's names. Other names the
/// rule matches go on to the next rules: an import never lets them skip a later block.
fn safe(targets: &[SafeTarget], base: RuleJson) -> Carried {
    let mut rules = Vec::new();
    for t in targets {
        let names: Vec<String> = t.names.iter().map(|n| quote(n)).collect();
        let names = format!("dns.fqdn in {{{}}}", names.join(" "));
        let expression = if base.expression == MATCH_ALL {
            names
        } else {
            format!("({}) and {names}", base.expression)
        };
        rules.push(RuleJson {
            id: format!("{}-{}", base.id, t.suffix),
            name: base
                .name
                .as_ref()
                .map(|name| format!("{name} ({})", t.engine)),
            expression,
            action: "override".into(),
            cname: Some(t.cname.to_owned()),
            ..base.clone()
        });
    }
    Carried {
        rules,
        ..Carried::default()
    }
}

fn resolve(settings: &RuleSettings, base: RuleJson) -> Result<Carried, NotImported> {
    if settings
        .resolve_dns_internally
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(NotImported::InternalView);
    }
    let mut notes = Vec::new();
    let addrs = match &settings.dns_resolvers {
        Some(r) => resolver_addresses(r, &mut notes),
        None if settings.resolve_dns_through_cloudflare == Some(true) => [
            "1.1.1.1",
            "1.0.0.1",
            "2606:4700:4700::1111",
            "2606:4700:4700::1001",
        ]
        .map(str::to_owned)
        .to_vec(),
        None => Vec::new(),
    };
    if addrs.is_empty() {
        return Err(NotImported::NoResolvers);
    }
    let group = if settings.dns_resolvers.is_some() {
        slug(base.name.as_deref().unwrap_or_default(), '-')
    } else {
        "cloudflare".to_owned()
    };
    Ok(Carried {
        rules: vec![RuleJson {
            action: "resolve".into(),
            upstream: Some(group.clone()),
            ..base
        }],
        upstream: Some((group, addrs)),
        notes,
    })
}

fn resolver_addresses(r: &DnsResolvers, notes: &mut Vec<String>) -> Vec<String> {
    let v4 = r.ipv4.iter().flatten().map(|x| (x, x.ip.clone()));
    let v6 = r.ipv6.iter().flatten().map(|x| (x, format!("[{}]", x.ip)));
    v4.chain(v6)
        .map(|(x, host)| {
            if x.route_through_private_network == Some(true) || x.vnet_id.is_some() {
                notes.push(format!(
                    "the resolver {} is reached through a Cloudflare private network in \
                     Gateway; Picket sends to it directly",
                    x.ip
                ));
            }
            format!("{host}:{}", x.port.unwrap_or(53))
        })
        .collect()
}
