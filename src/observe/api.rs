//! The dashboard's JSON endpoints under `/api/` (read-only; README, "Dashboard"):
//!
//! - `/api/stats`: counters, last-hour series, upstream latency, and the
//!   server's state (version, uptime, readiness, policy and reloads);
//! - `/api/top?n=10&list=blocked`: the top-N lists of the last hour;
//! - `/api/recent?limit=100&name=&client=&action=&rule=`: the last queries;
//! - `/api/explain?name=&type=A&client=&org=&transport=udp`: the decision
//!   trace `picket explain` prints, with the policy in force.
//!
//! Every parameter is checked and bounded here; a bad one gets 400 with a
//! message naming the parameter, what is wrong and what would do.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::dashboard::{Dashboard, RecentFilter, TOP_LISTS};
use super::outcome::ACTIONS;
use crate::query::Transport;

/// An endpoint's answer: the JSON, or why the request gets a 400.
pub type Json = Result<Value, BadRequest>;

/// A request an endpoint refuses (400): the endpoint, the parameter at fault, and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {problem}")]
pub struct BadRequest {
    pub endpoint: &'static str,
    pub problem: String,
}

/// Longest query string read (a name is at most 253 bytes; percent-encoded,
/// three times that, plus the other parameters).
const MAX_QUERY: usize = 2048;

/// Longest name accepted (RFC 1035: 253 characters in text form).
const MAX_NAME: usize = 253;

/// What `/api/explain` asks about.
#[derive(Debug, Clone)]
pub struct Explain {
    pub name: String,
    pub qtype: u16,
    pub client: IpAddr,
    pub org: Option<String>,
    pub transport: Transport,
}

/// The endpoints, for `/api/`.
pub fn index() -> Value {
    json!({
        "endpoints": {
            "/api/stats": "counters, last-hour series (qps, blocked, cache hit ratio), upstream latency p50/p99, version, uptime, readiness, policy and reloads",
            "/api/top": "top-N lists of the last hour: ?n=10 (1 to the capacity), ?list=names|blocked|rules|clients|orgs (default: all)",
            "/api/recent": "the last queries, newest first: ?limit=100, ?name= (part of the name), ?client= (start of the address as shown), ?action=block, ?rule= (part of the rule id)",
            "/api/explain": "the decision trace of `picket explain`: ?name=ads.example&type=A&client=192.0.2.1 [&org=ID] [&transport=udp|tcp|doh|dot]",
        }
    })
}

/// `/api/stats`: the dashboard's figures and the server's state together.
pub fn stats(dashboard: &Dashboard, status: &dyn Fn() -> Value, query: &str) -> Json {
    Request::parse(query, "/api/stats", &[])?;
    let mut out = status();
    if let (Value::Object(out), Value::Object(figures)) = (&mut out, dashboard.stats()) {
        out.extend(figures);
    }
    Ok(out)
}

/// `/api/top`.
pub fn top(dashboard: &Dashboard, query: &str) -> Json {
    let r = Request::parse(query, "/api/top", &["n", "list"])?;
    let n = r.number("n", 10, dashboard.top_capacity())?;
    let list = r.get("list");
    if let Some(list) = list {
        if !TOP_LISTS.contains(&list) {
            return Err(r.bad(format!(
                "list={list:?} is not a list: use one of {}, or leave it out for all",
                TOP_LISTS.join(", ")
            )));
        }
    }
    Ok(dashboard.top(n, list))
}

/// `/api/recent`.
pub fn recent(dashboard: &Dashboard, query: &str) -> Json {
    let allowed = ["limit", "name", "client", "action", "rule"];
    let r = Request::parse(query, "/api/recent", &allowed)?;
    let capacity = dashboard.recent_capacity().max(1);
    let limit = r.number("limit", 100.min(capacity), capacity)?;
    let name = r.text("name", MAX_NAME)?.map(|n| n.to_ascii_lowercase());
    let client = r.text("client", 45)?;
    if let Some(c) = &client {
        if !c
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() || ch == '.' || ch == ':')
        {
            return Err(r.bad(format!(
                "client={c:?} is not (the start of) an address: use digits, dots and colons, e.g. client=192.0.2. or client=2001:db8:"
            )));
        }
    }
    let action = r.text("action", 16)?;
    if let Some(a) = &action {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(r.bad(format!(
                "action={a:?} is not an action: use one of {}",
                ACTIONS.join(", ")
            )));
        }
    }
    let rule = r.text("rule", 256)?;
    Ok(dashboard.recent(&RecentFilter {
        name,
        client,
        action,
        rule,
        limit,
    }))
}

/// `/api/explain`.
pub fn explain(query: &str, run: &dyn Fn(&Explain) -> String) -> Json {
    let allowed = ["name", "type", "client", "org", "transport"];
    let r = Request::parse(query, "/api/explain", &allowed)?;
    let example = "e.g. /api/explain?name=ads.example&type=A&client=192.0.2.1";
    let name = r
        .text("name", MAX_NAME + 1)?
        .ok_or_else(|| r.bad(format!("name= is missing: {example}")))?;
    let name = check_name(&name).map_err(|why| r.bad(format!("name={name:?} {why}")))?;
    let qtype = match r.get("type") {
        None => 1,
        Some(t) => parse_qtype(t).ok_or_else(|| {
            r.bad(format!("type={t:?} is not a query type: use a mnemonic such as A, AAAA, MX, or a number from 0 to 65535"))
        })?,
    };
    let client = r.get("client").ok_or_else(|| {
        r.bad(format!(
            "client= is missing: the address the query comes from, {example}"
        ))
    })?;
    let client: IpAddr = client.trim().parse().map_err(|_| {
        r.bad(format!(
            "client={client:?} is not an IP address: e.g. client=192.0.2.1 or client=2001:db8::1"
        ))
    })?;
    let org = r.text("org", 128)?;
    let transport = match r.get("transport") {
        None => Transport::Udp,
        Some(t) => *Transport::ALL
            .iter()
            .find(|x| x.as_str() == t)
            .ok_or_else(|| {
                r.bad(format!(
                    "transport={t:?} is not a transport: use udp, tcp, doh or dot"
                ))
            })?,
    };
    let ask = Explain {
        name,
        qtype,
        client,
        org,
        transport,
    };
    let trace = run(&ask);
    Ok(json!({
        "query": {
            "name": ask.name,
            "type": ask.qtype,
            "client": ask.client.to_string(),
            "org": ask.org,
            "transport": ask.transport.as_str(),
        },
        "trace": trace,
    }))
}

/// A name in text form, lower-cased without its trailing dot; or why not.
fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("is empty: give a name such as ads.example");
    }
    if name.len() > MAX_NAME {
        return Err("is longer than 253 characters, the most a DNS name has");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'))
    {
        return Err("has characters a DNS name does not: use letters, digits, - and _ (international names in their xn-- form)");
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err("has an empty label or one longer than 63 characters");
    }
    Ok(name)
}

fn parse_qtype(text: &str) -> Option<u16> {
    if let Ok(n) = text.parse::<u16>() {
        return Some(n);
    }
    use std::str::FromStr;
    hickory_proto::rr::RecordType::from_str(&text.to_ascii_uppercase())
        .ok()
        .map(u16::from)
}

/// The decoded value of the first `name` parameter of `query`, if any (for
/// the token; nothing is checked).
pub fn param(query: &str, name: &str) -> Option<String> {
    if query.len() > MAX_QUERY {
        return None;
    }
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k).ok()? == name).then(|| decode(v).ok()).flatten()
    })
}

/// A request's parameters, decoded and checked against those its endpoint takes.
#[derive(Debug)]
struct Request {
    endpoint: &'static str,
    params: Vec<(String, String)>,
}

impl Request {
    /// The parameters of `query`, decoded; unknown, repeated or undecodable ones are refused.
    fn parse(query: &str, endpoint: &'static str, allowed: &[&str]) -> Result<Self, BadRequest> {
        let mut r = Request {
            endpoint,
            params: Vec::new(),
        };
        if query.len() > MAX_QUERY {
            return Err(r.bad(format!(
                "the query string is {} bytes long; at most {MAX_QUERY} are read",
                query.len()
            )));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).map_err(|e| r.bad(format!("parameter {k:?}: {e}")))?;
            let v = decode(v).map_err(|e| r.bad(format!("{k}={v:?}: {e}")))?;
            if !allowed.contains(&k.as_str()) {
                let known = if allowed.is_empty() {
                    "it takes none".to_string()
                } else {
                    format!("it takes {}", allowed.join(", "))
                };
                return Err(r.bad(format!("unknown parameter {k:?}: {known} (see /api/)")));
            }
            if r.params.iter().any(|(seen, _)| *seen == k) {
                return Err(r.bad(format!("{k} is given twice: give it once")));
            }
            r.params.push((k, v));
        }
        Ok(r)
    }

    /// This endpoint's refusal for `problem`.
    fn bad(&self, problem: String) -> BadRequest {
        BadRequest {
            endpoint: self.endpoint,
            problem,
        }
    }

    /// The `name` parameter, unless absent or empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A text parameter of at most `max` characters.
    fn text(&self, name: &str, max: usize) -> Result<Option<String>, BadRequest> {
        match self.get(name) {
            Some(v) if v.chars().count() > max => Err(self.bad(format!(
                "{name}= is {} characters long; at most {max} are accepted",
                v.chars().count()
            ))),
            Some(v) => Ok(Some(v.to_string())),
            None => Ok(None),
        }
    }

    /// A count parameter from 1 to `max`.
    fn number(&self, name: &str, default: usize, max: usize) -> Result<usize, BadRequest> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.bad(format!(
                "{name}={v:?} is out of range: use a whole number from 1 to {max}, e.g. {}?{name}={default}",
                self.endpoint
            ))),
        }
    }
}

/// Percent-decoding (`+` is a space, as browsers encode forms).
fn decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a % not followed by two hex digits: percent-encode it as %25")?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_checked_and_bounded() {
        assert_eq!(decode("a%2Eb+c").unwrap(), "a.b c");
        assert!(decode("%zz").is_err());
        assert!(decode("%e9").is_err(), "not UTF-8");
        assert!(decode("%").is_err());
        let parse = |query: &str, endpoint, allowed: &[&str]| {
            Request::parse(query, endpoint, allowed).map_err(|e| e.to_string())
        };
        let r = parse("limit=5&name=ads", "/api/recent", &["limit", "name"]).unwrap();
        assert_eq!(r.get("name"), Some("ads"));
        let e = parse("limt=5", "/api/recent", &["limit"]).unwrap_err();
        assert!(
            e.contains("unknown parameter \"limt\"") && e.contains("limit"),
            "{e}"
        );
        assert!(parse("n=1&n=2", "/api/top", &["n"])
            .unwrap_err()
            .contains("twice"));
        assert!(parse(&"a".repeat(3000), "/api/top", &["n"]).is_err());
        for bad in ["0", "-1", "x", "1001", "99999999999999999999999"] {
            let r = parse(&format!("limit={bad}"), "/api/recent", &["limit"]).unwrap();
            let e = r.number("limit", 100, 1000).unwrap_err().to_string();
            assert!(
                e.starts_with("/api/recent: limit=") && e.contains("from 1 to 1000"),
                "{e}"
            );
        }
        assert_eq!(
            param("token=s%3Dcret&x=1", "token").as_deref(),
            Some("s=cret")
        );
    }

    #[test]
    fn explain_checks_its_query() {
        let run = |e: &Explain| format!("{} {} {} {:?}", e.name, e.qtype, e.client, e.org);
        let ok = explain("name=Ads.Example.&type=aaaa&client=10.0.0.5", &run).unwrap();
        assert_eq!(ok["trace"], "ads.example 28 10.0.0.5 None");
        assert_eq!(
            explain("name=x.example&client=::1&type=65280", &run).unwrap()["query"]["type"],
            65280
        );
        for (query, says) in [
            ("client=10.0.0.5", "name= is missing"),
            ("name=a.example", "client= is missing"),
            ("name=a.example&client=10.0.0.300", "not an IP address"),
            (
                "name=a.example&client=10.0.0.5&type=BOGUS",
                "not a query type",
            ),
            (
                "name=a%20b&client=10.0.0.5",
                "characters a DNS name does not",
            ),
            ("name=a..b&client=10.0.0.5", "empty label"),
            (
                "name=a.example&client=10.0.0.5&transport=quic",
                "not a transport",
            ),
            (
                "name=a.example&client=10.0.0.5&verbose=1",
                "unknown parameter",
            ),
        ] {
            let e = explain(query, &run).unwrap_err().to_string();
            assert!(
                e.starts_with("/api/explain: ") && e.contains(says),
                "{query}: {e}"
            );
        }
        let long = format!("name={}&client=10.0.0.5", "a".repeat(300));
        assert!(explain(&long, &run)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }
}
